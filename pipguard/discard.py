"""Removing a directory that other processes may be reading: no reader ever sees half of it.

The directory is first renamed into a private temp directory on the same filesystem (atomic: a reader
finds it whole or not at all), then deleted there at leisure. The cache's damaged or removed entries and
the handoffs nobody waits for any more all go this way.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def discard(directory: Path, tmp: Path) -> None:
    """Move ``directory`` into a fresh directory under ``tmp``, then delete it; OSError if it cannot move."""
    aside = Path(tempfile.mkdtemp(prefix="discarded-", dir=tmp))
    try:
        directory.rename(aside / directory.name)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
