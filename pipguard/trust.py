"""What pipguard trusts on disk: directories no other user can change, and files that are what they claim.

A wheel in the cache is installed, and a record is read, on the strength of where it lies. That is only
worth something if no other local user can put anything there, or swap the path for another one:

- every directory on the way to the cache root is owned by this user or root, and is not writable by
  anyone else, except a sticky one such as ``/tmp``, where the next component must be this user's or
  root's (nobody else may rename it then);
- every directory pipguard reads inside the cache is a real directory (opened with ``O_NOFOLLOW``), owned
  by this user or root, not writable by anyone else;
- every file it reads is opened with ``O_NOFOLLOW | O_NONBLOCK`` and used only if it is a regular file (a
  FIFO planted where a record should be must not hang a reader).

``PIPGUARD_TRUST_SHARED_CACHE=1`` waives the owner and mode checks (a cache shared on purpose), never the
checks on what a path is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pipguard.errors import UntrustedCache
from pipguard.keys import stream_sha256

WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
SYMLINK_DEPTH = 40  # the kernel's own limit (MAXSYMLINKS)
SHARED_HINT = "set PIPGUARD_TRUST_SHARED_CACHE=1 to use it anyway"


def trusted_owner(uid: int) -> bool:
    """This user, or root (who can change anything anyway)."""
    return uid in (os.getuid(), 0)


def check_ancestors(root: Path) -> None:
    """Raise UntrustedCache if another user can swap ``root`` (or anything on the way to it) for another.

    Follows the path as the kernel resolves it, symlinks included, and checks every directory a name is
    looked up in."""
    for directory, name in _lookups(os.path.abspath(root), 0):
        info = os.lstat(directory)
        if not trusted_owner(info.st_uid):
            raise UntrustedCache(f"{directory} (above the cache) belongs to another user; {SHARED_HINT}")
        if info.st_mode & WRITABLE_BY_OTHERS and not (
            info.st_mode & stat.S_ISVTX and trusted_owner(os.lstat(os.path.join(directory, name)).st_uid)
        ):
            raise UntrustedCache(f"{directory} (above the cache) can be written by other users; {SHARED_HINT}")


def _lookups(path: str, depth: int) -> list[tuple[str, str]]:
    """``(directory, name)`` for each name the kernel looks up to resolve the absolute ``path``."""
    if depth > SYMLINK_DEPTH:
        raise UntrustedCache(f"too many symbolic links on the way to {path}")
    found: list[tuple[str, str]] = []
    current = "/"
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        found.append((current, name))
        candidate = os.path.join(current, name)
        if os.path.islink(candidate):
            found += _lookups(os.path.join(current, os.readlink(candidate)), depth + 1)
            candidate = os.path.realpath(candidate)
        current = candidate
    return found


def open_directory(path: Path, shared: bool) -> int:
    """A descriptor of ``path``, a real directory no other user can write to (unless ``shared``).

    Raises UntrustedCache for a symlink, a non-directory or another user's directory; OSError if it cannot
    be opened (FileNotFoundError: there is nothing there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise UntrustedCache(f"{path} is not a directory (symlinks are not followed)") from exc
    try:
        check_private(path, os.fstat(fd), shared)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_directory(path: Path, shared: bool) -> None:
    """:func:`open_directory`, for a caller that only needs to know."""
    os.close(open_directory(path, shared))


def check_private(path: Path, info: os.stat_result, shared: bool) -> None:
    """Raise UntrustedCache if another user owns ``path`` or can write to it (unless ``shared``)."""
    if shared:
        return
    if not trusted_owner(info.st_uid):
        raise UntrustedCache(f"{path} belongs to another user; {SHARED_HINT}")
    if info.st_mode & WRITABLE_BY_OTHERS:
        raise UntrustedCache(f"{path} can be written by other users; {SHARED_HINT}")


def open_regular(name: str | Path, dir_fd: int | None = None) -> int:
    """A read-only descriptor of ``name``, a regular file (never a symlink, FIFO, socket or device).

    Opening never blocks (``O_NONBLOCK``: a FIFO with no writer would); ValueError for anything but a
    regular file, OSError if it cannot be opened."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{name} is not a regular file")
    return fd


def read_regular(name: str | Path, limit: int, dir_fd: int | None = None) -> bytes:
    """At most ``limit`` bytes of the regular file ``name`` (see :func:`open_regular`)."""
    with os.fdopen(open_regular(name, dir_fd), "rb") as handle:
        return handle.read(limit)


def matches(path: Path, size: int, sha256: str) -> bool:
    """Whether the regular file ``path`` has the size and sha256 a manifest or a handoff promised."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return os.fstat(handle.fileno()).st_size == size and stream_sha256(handle) == sha256
