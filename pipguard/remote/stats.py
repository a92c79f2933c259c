"""Remote hit / miss / rejected / error counts, summed over processes, for ``guard cache info``.

Each process adds its own counts once, at exit, to one small JSON file in the local cache, under an
exclusive ``flock`` (read, add, write aside, rename): concurrent installs never lose each other's counts,
and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pipguard.flocks import keep_locked

FILE = "remote-stats.json"


def read(base: Path) -> dict[str, int]:
    """The counts so far under the cache layout directory ``base`` (empty if none)."""
    try:
        loaded = json.loads((base / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v for k, v in loaded.items() if isinstance(v, int) and not isinstance(v, bool)}


def add(base: Path, counts: Mapping[str, int]) -> None:
    """Add one process's counts; a cache that cannot take them loses them, nothing more."""
    if not any(counts.values()):
        return
    with contextlib.suppress(OSError):
        fd = keep_locked(base / f"{FILE}.lock")
        try:
            total = read(base)
            for name, value in counts.items():
                total[name] = total.get(name, 0) + value
            handle, temporary = tempfile.mkstemp(prefix=".remote-stats-", dir=base)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(total, out, sort_keys=True)
            os.replace(temporary, base / FILE)
        finally:
            os.close(fd)
