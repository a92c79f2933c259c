"""``pipguard guard shims``: a directory of ``pip`` and ``pip3`` that run this very pipguard.

Put first on PATH (``export PATH := $(shell pipguard guard shims):$(PATH)`` in a Makefile), it sends
every plain ``pip`` through pipguard. Each shim execs the absolute path of the pipguard that printed the
directory (or ``<its python> -m pipguard``), never a ``pipguard`` or ``pip`` looked up on PATH, so it
cannot recurse or pick another installation; pipguard then chooses the target as it would when typed
(target.py). There is no ``pip3.X``: the shims serve whatever environment is active when they run, which
need not be any one Python version.

The directory lives under the cache root, named after the command it runs, and is rewritten on every call
by *write a temp file, rename it into place*: parallel ``make -j`` jobs calling ``guard shims`` at once
never see a half-written shim, only whole old or whole new ones.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from pathlib import Path

SHIM_NAMES = ("pip", "pip3")


def own_command() -> list[str]:
    """How to run the pipguard of this process again: its console script by path, else ``python -m``."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.basename(argv0) != "__main__.py" and os.path.isfile(argv0):
        # Not resolved: a pipx symlink on PATH must stay the symlink, so the shim chooses as it does.
        return [os.path.abspath(argv0)]
    return [sys.executable, "-m", "pipguard"]


def shim_text(command: list[str]) -> str:
    words = " ".join(shlex.quote(word) for word in command)
    return (
        "#!/bin/sh\n"
        "# Written by `pipguard guard shims`: pip through pipguard (by absolute path: no PATH lookup).\n"
        f'exec {words} "$@"\n'
    )


def write_shims(cache_root: Path) -> Path:
    """Write (or rewrite) the shims for this pipguard and return their directory."""
    command = own_command()
    digest = hashlib.sha256("\0".join(command).encode()).hexdigest()[:16]
    directory = cache_root / "shims" / digest
    directory.mkdir(parents=True, exist_ok=True)
    text = shim_text(command).encode()
    for name in SHIM_NAMES:
        _write_atomically(directory / name, text)
    return directory


def _write_atomically(path: Path, data: bytes) -> None:
    """Leave ``path`` alone if it already holds ``data``; otherwise write a temp file and rename it over."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    temp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
