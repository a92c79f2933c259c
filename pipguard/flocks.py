"""``flock`` as a liveness signal: a file its owner keeps locked is alive; one anyone can lock is not.

Records, build directories and cache entries all use it. The kernel drops a dead process's locks, so
no stale-lock heuristics are needed. POSIX only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(fd: int, exclusive: bool = False) -> bool:
    """Take the lock without waiting; False if a live process holds a conflicting one."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def keep_locked(path: Path, exclusive: bool = True) -> int:
    """Open (creating) ``path`` and hold a lock on it until the returned descriptor is closed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if exclusive else os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    return fd


def try_lock_path(path: Path, exclusive: bool = False) -> bool:
    """Whether ``path`` could be locked right now (the lock is dropped again): no live owner holds it.

    A missing file has no owner either."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        return try_lock(fd, exclusive)
    finally:
        os.close(fd)
