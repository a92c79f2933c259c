"""The gate of a build child: it prepares without a job, and waits for one before its build code runs.

A build child (builder.py) spends its first second or more preparing: pip starts, unpacks the source,
asks the index for the build requirements and installs them, or waits for the process that installs a
shared build environment (buildenv.py). Little of that is CPU. The backend's hooks are, and they are what
the job budget (jobs.py) is for. So the parent starts a child without a job, and the child stops at a
gate right before its first hook: the parent sees it waiting there, takes a job for it (waiting for one
if need be, biggest build first), and opens the gate.

The gate is a FIFO in the build's work directory, named to the child in ``PIPGUARD_GATE``. The child
opens it for reading, without blocking, and waits for a byte; the parent learns that the child waits when
its own non-blocking open for writing succeeds (it fails with ``ENXIO`` while no reader has it open), and
opens the gate by writing one byte. A parent that is gone opens it too: the child sees its pid gone. A
parent that closes its end without the byte (it could not take a job: the command stops) does not: the
child waits on until the parent stops it or is gone. A child whose parent cannot gate it (a writer's
sandbox runs pip's own runner, which has no gate) gets its job before it starts.

When jobs are scarce, the build with the most to compile goes first: the last build to end decides when
the command does (jobs.py), and a build's cost shows in its sources better than in its archive (msgpack's
one generated C file takes longer than psutil's bigger archive). So before it waits, the child writes
its *weight* beside the FIFO: the bytes of compiled-language sources in its tree (C, C++, Cython, Rust,
Fortran, CUDA, Objective-C). The parent takes the job with that weight; a child that wrote none has the
size its parent knew (the archive's).

The gate's directory is also where a child hands its parent what should outlive it (:func:`hand_back`):
a kept build environment's compile (buildenv.py), which the child's short life would give up.

What is gated is the build of the source the child was started for: a build requirement the child's pip
builds from source (build_deps.py) runs in a pipguard process of its own, under that process's budget.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipguard import settings

VARIABLE = "PIPGUARD_GATE"
FIFO_NAME = "gate"
WEIGHT_SUFFIX = ".weight"
CHECK_PARENT_SECONDS = 1.0
COMPILED_SOURCES = frozenset((".c", ".cc", ".cpp", ".cxx", ".c++", ".pyx", ".rs", ".f", ".f90", ".cu", ".m", ".mm"))
WEIGHT_FILES_LIMIT = 20_000  # a tree bigger than this is weighed by its first files only

_passed: list[bool] = []  # this child passed its gate (later hooks run at once)


class Gate:
    """The parent's side: made before the child starts, polled while the parent waits for it."""

    def __init__(self, work: Path, take_job: Callable[[int | None], None]) -> None:
        self.path = work / FIFO_NAME
        for stale in (self.path, self.path.with_name(self.path.name + WEIGHT_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # an earlier child's, in a work directory used again
        os.mkfifo(self.path, 0o600)
        self._take_job = take_job
        self.open = False

    def poll(self) -> None:
        """If the child waits at the gate: take a job for it (this may wait) and let it through."""
        if self.open:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # nobody reads it yet: the child is still preparing
            raise
        try:
            self._take_job(_read_weight(self.path))
            self.open = True
            with contextlib.suppress(BrokenPipeError):  # the child ended meanwhile: its exit says the rest
                os.write(fd, b"1")
        finally:
            os.close(fd)

    def take_job_now(self) -> None:
        """For a child that will not stop at the gate: its job before it starts."""
        self._take_job(None)
        self.open = True


def _read_weight(gate: Path) -> int | None:
    try:
        return max(0, int(gate.with_name(gate.name + WEIGHT_SUFFIX).read_text(encoding="ascii")))
    except (OSError, ValueError):
        return None


def weight(tree: str) -> int:
    """The bytes of compiled-language sources under ``tree`` (see the module's docstring)."""
    total = files = 0
    for directory, _subdirectories, names in os.walk(tree):
        for name in names:
            files += 1
            if files > WEIGHT_FILES_LIMIT:
                return total
            if os.path.splitext(name)[1].lower() in COMPILED_SOURCES:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(directory, name)).st_size
    return total


def wait_for_turn(tree: str | None) -> None:
    """The child's side, before each backend hook (of the source in ``tree``): the first writes its weight,
    then waits until the parent opens the gate."""
    path = settings.variable(VARIABLE)
    if _passed or not path:
        return
    _passed.append(True)
    if tree:
        with contextlib.suppress(OSError):
            staged = f"{path}{WEIGHT_SUFFIX}.tmp"
            with open(staged, "w", encoding="ascii") as handle:
                handle.write(str(weight(tree)))
            os.replace(staged, path + WEIGHT_SUFFIX)  # whole or not at all: the parent may read it at once
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # no gate after all (its work directory is gone: the parent is, too)
    try:
        while not select.select([fd], [], [], CHECK_PARENT_SECONDS)[0]:
            if not _parent_alive():
                return
        try:
            opened = os.read(fd, 1)
        except BlockingIOError:
            opened = b""
        while not opened and _parent_alive():
            # End of file with the parent alive: it closed the gate without opening it (it could not take
            # a job: the command stops) and is about to stop this child; its build code must not run.
            time.sleep(CHECK_PARENT_SECONDS)
    finally:
        os.close(fd)


def _parent_alive() -> bool:
    parents = settings.parents()
    if not parents:
        return False
    try:
        os.kill(parents[-1], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hand_back(name: str, request: dict[str, Any]) -> bool:
    """In a gated build child: leave ``request`` for the parent under ``name`` (whole, or not at all);
    False elsewhere (the caller does it itself)."""
    path = settings.variable(VARIABLE)
    if not path:
        return False
    target = os.path.join(os.path.dirname(path), name)
    try:
        with open(f"{target}.tmp", "w", encoding="utf-8") as handle:
            json.dump(request, handle)
        os.replace(f"{target}.tmp", target)
    except OSError:
        return False
    return True


def handed_back(work: Path, name: str) -> Any:
    """What the child in ``work`` handed back under ``name``, or None."""
    try:
        return json.loads((work / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
