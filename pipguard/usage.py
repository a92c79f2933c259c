"""How big the local cache may grow, what it did for the commands that used it, and sizes for people.

Counts are kept per process while it runs and added at exit as one line of JSON to ``usage.jsonl``
(opened ``O_APPEND``: the kernel puts each process's single write at the end, so concurrent installs never
lose or tear each other's lines and need no lock). Readers sum the lines; ``guard cache stats --reset``
empties the file, which is all the compaction it needs (a line is ~150 bytes per command that used the
cache). In a team's cache the file is the group's, so every member's lines go in. Nothing here may fail
a command: a cache that cannot take the line loses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from pathlib import Path

from pipguard.trust import Policy

FILE = "usage.jsonl"
COUNTS = ("hits", "misses", "builds", "waits", "evictions")
SECONDS = ("waited_seconds", "saved_seconds")
LINE_LIMIT = 4096  # one process's line is far shorter; a longer one is not ours and is skipped

# 10 GB, sccache's default: pipguard keeps only wheels it built from sdists, and those that are worth
# caching (CUDA and C++ extensions) run to hundreds of MB or more each; a cap that could not hold a
# working set of them would evict exactly the builds that cost most. Unbounded is not a default either:
# a long-lived CI runner's cache would grow until the disk is full.
DEFAULT_MAX_SIZE = 10 * 1000**3
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]i?)?b?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``10G``, ``500M``, ``20k``, ``1.5GiB`` or plain bytes (k, M, G, T decimal as pip shows
    sizes; Ki, Mi, Gi, Ti binary); ValueError for anything else."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (use bytes, or a number with k, M, G or T, such as 10G)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def format_size(size: float) -> str:
    """A size as pip prints one (``11 kB``, ``4.2 GB``, ``512 bytes``): decimal units, 1 decimal under 10."""
    if size < 1000:
        return f"{int(size)} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}" if size < 10 else f"{int(size)} {unit}"


def format_seconds(seconds: float) -> str:
    """``4.2s``, ``3m 20s``, ``2h 05m``: how long, at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


class Tally:
    """This process's counts, written once at exit (builds ahead add to them from several threads)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + amount

    def flush(self, base: Path, policy: Policy) -> None:
        """Append this process's counts as one line under ``base``, once; nothing if there are none."""
        values, self.values = self.values, {}
        if not any(values.values()):
            return
        line = (json.dumps(values, sort_keys=True) + "\n").encode()
        with contextlib.suppress(OSError):
            fd = os.open(base / FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, policy.file_mode)
            try:
                policy.share(fd)
                os.write(fd, line)
            finally:
                os.close(fd)


def read(base: Path) -> dict[str, float]:
    """Every count since the last reset, summed over the processes that added one (all names present)."""
    total: dict[str, float] = dict.fromkeys(COUNTS + SECONDS, 0)
    try:
        with open(base / FILE, "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return total
    for raw in lines:
        with contextlib.suppress(ValueError):
            values = json.loads(raw) if len(raw) < LINE_LIMIT else None
            if isinstance(values, dict):
                for name in total:
                    value = values.get(name, 0)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        total[name] += value
    return total


def reset(base: Path) -> None:
    """Start counting afresh: local counts and the remote tier's (``remote/stats.py``) both."""
    from pipguard.flocks import keep_locked
    from pipguard.remote import stats

    if not base.is_dir():
        return  # nothing counted yet
    with contextlib.suppress(FileNotFoundError):
        os.truncate(base / FILE, 0)
    fd = keep_locked(base / f"{stats.FILE}.lock")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(base / stats.FILE)
    finally:
        os.close(fd)
