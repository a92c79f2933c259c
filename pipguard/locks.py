"""Advisory locks with visible holders and waiters, and a timeout that never fails an install.

The lock itself is a ``filelock.FileLock`` (``flock`` on POSIX; the kernel drops it when its holder dies,
so a waiter takes over within one poll). The lock file is never deleted. Beside it, records.py keeps who
holds and who waits. A wait that runs past ``PIPGUARD_LOCK_TIMEOUT`` ends with a warning naming the
holder, and the caller goes on without the lock (a duplicate build, never a failed install). In a team's
cache the lock file is the group's (0660), so that every member can open it to lock it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pipguard import records, trust
from pipguard.display import Progress, describe_holder, warn
from pipguard.errors import BuildStopped
from pipguard.records import Participant, Record

POLL_SECONDS = 0.05
REFRESH_SECONDS = 0.25


@dataclass(frozen=True)
class Subject:
    """What a lock protects, as records and displays name it."""

    kind: str  # "build" or "environment"
    key: str
    name: str
    version: str
    source: str  # redacted

    @property
    def what(self) -> str:
        if self.kind == "environment":
            return f"the environment {self.name}"
        label = f"{self.name} {self.version}".strip()
        if label and self.source:
            return f"{label} ({self.source})"
        return label or self.source


@dataclass
class Holding:
    """The outcome of taking a lock: held or timed out, how long it took, who held it before."""

    locked: bool
    waited: float
    wait_started: float | None  # wall-clock time this process began to wait; None if it never waited
    previous_holder: Participant | None
    record: Record | None
    directory: Path
    subject: Subject
    progress: Progress | None

    def end_wait(self, outcome: str) -> None:
        """The line that closes a wait: how long, and what came of it (the holder's wheel reused or not)."""
        if self.progress is not None:
            self.progress.close(f"waited {self.waited:.1f}s for {self.subject.what}; {outcome}")
            self.progress = None

    def phase(self, phase: str) -> None:
        if self.record is not None:
            self.record.update(phase=phase)

    def waiters(self) -> list[Participant]:
        return [p for p in records.read(self.directory) if p.role == "waiter"]


def _participant(role: str, subject: Subject, phase: str) -> Participant:
    return records.this_process(role, subject.kind, subject.key, subject.name, subject.version, subject.source, phase)


@contextlib.contextmanager
def hold(
    lock_path: Path,
    record_dir: Path,
    subject: Subject,
    timeout: float,
    phase: str,
    stopping: Callable[[], bool] = lambda: False,
    on_wait: Callable[[Participant | None], bool] = lambda holder: False,
) -> Iterator[Holding]:
    """Take the lock for ``subject``, showing who holds it while waiting; yield once held or timed out.

    A wait ends with :class:`BuildStopped` as soon as ``stopping`` says so (the command is interrupted:
    a thread waiting in the background cannot get the KeyboardInterrupt itself). ``on_wait`` sees the
    holder at each refresh of a wait (the guard breaks cycles of waits there); True from it ends the wait
    at once, without the lock and without a warning (the holder is blocked until this process ends)."""
    lock = FileLock(lock_path, preserve_lock_file=True, fallback_to_soft=False, mode=trust.configured().file_mode)
    waited = 0.0
    wait_started: float | None = None
    previous: Participant | None = None
    progress: Progress | None = None
    try:
        lock.acquire(blocking=False)
        locked = True
    except Timeout:
        wait_started = time.time()
        locked, waited, previous, progress = _wait(lock, record_dir, subject, timeout, stopping, on_wait)
    record = None
    try:
        if locked:
            record = Record(record_dir, _participant("holder", subject, phase))
        holding = Holding(locked, waited, wait_started, previous, record, record_dir, subject, progress)
        yield holding
        holding.end_wait("done")
    finally:
        if progress is not None:
            progress.pause()
        if record is not None:
            record.remove()
        if locked:
            lock.release()


def _acquire(lock: FileLock, timeout: float, cancel_check: Callable[[], bool]) -> bool:
    try:
        lock.acquire(timeout=timeout, poll_interval=POLL_SECONDS, cancel_check=cancel_check)
    except Timeout:
        return False
    return True


def _wait(
    lock: FileLock,
    record_dir: Path,
    subject: Subject,
    timeout: float,
    stopping: Callable[[], bool],
    on_wait: Callable[[Participant | None], bool],
) -> tuple[bool, float, Participant | None, Progress | None]:
    waiter = Record(record_dir, _participant("waiter", subject, "waiting"))
    progress = Progress(subject.what, waiting=True)
    started = time.monotonic()
    last_refresh = 0.0
    holder: Participant | None = None
    gave_way = False

    def refresh() -> bool:
        nonlocal last_refresh, holder, gave_way
        now = time.monotonic()
        if now - last_refresh >= REFRESH_SECONDS and not gave_way:
            last_refresh = now
            everyone = records.read(record_dir)
            holder = next((p for p in everyone if p.role == "holder"), holder)
            gave_way = on_wait(holder)
            if not gave_way:
                others = [p for p in everyone if p.role == "waiter" and p.pid != waiter.participant.pid]
                progress.tick(holder, others)
        return gave_way or stopping()

    try:
        locked = not refresh() and _acquire(lock, timeout, refresh)
    finally:
        waiter.remove()
    if gave_way and not locked:
        progress.pause()
        return False, time.monotonic() - started, holder, None
    if not locked and stopping():
        progress.pause()
        raise BuildStopped(f"stopped waiting for {subject.what}")
    waited = time.monotonic() - started
    if locked:
        progress.pause()
        return True, waited, holder, progress
    progress.pause()
    warn(
        f"timed out after {waited:.0f}s waiting for {subject.what}, held by {describe_holder(holder)}; "
        "going on without the lock (PIPGUARD_LOCK_TIMEOUT)"
    )
    return False, waited, holder, None
