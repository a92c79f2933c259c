"""Who holds a lock and who waits for it: one small JSON file per participant, beside the lock.

A lock file says nothing about its holder, so each participant publishes a record and keeps it
``flock``-ed for as long as it lives. Publishing is *write a temp file, lock it, rename it into place*,
so a record is never visible unlocked while its owner lives. Every version of a record has a name of its
own (never reused), so a reader that manages to lock a record knows its owner is dead and may delete it
without any risk of deleting a newer, live one. POSIX only (``fcntl.flock``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import itertools
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipguard import settings, trust
from pipguard.errors import UntrustedCache
from pipguard.flocks import try_lock
from pipguard.redact import command_line

_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 60.0
RECORD_LIMIT = 1 << 16  # a record is a few hundred bytes
_sequence = itertools.count()


@dataclass(frozen=True)
class Participant:
    role: str  # "holder" or "waiter"
    kind: str  # "build" or "environment"
    key: str
    name: str
    version: str
    source: str
    pid: int
    host: str
    command: str
    since: str  # ISO-8601
    # holder: downloading, queued, preparing, waiting for a job, building, publishing, installing; waiter: waiting
    phase: str
    # The environment the process installs into (its sys.prefix, under the runner the target's): many
    # command lines read alike (``pip install x`` with $VIRTUAL_ENV), their environments do not.
    target: str = ""
    # The pipguard processes blocked until this one ends (it installs their build dependencies): a wait of
    # this process is a wait of theirs too (guard.py breaks cycles through them).
    parents: tuple[int, ...] = ()

    def public(self) -> dict[str, Any]:
        """The fields ``guard status --json`` shows for a holder or a waiter."""
        shown = {"pid": self.pid, "host": self.host, "command": self.command, "since": self.since}
        shown["target"] = self.target
        if self.role == "holder":
            shown["phase"] = self.phase
        return shown


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def this_process(role: str, kind: str, key: str, name: str, version: str, source: str, phase: str) -> Participant:
    return Participant(
        role=role,
        kind=kind,
        key=key,
        name=name,
        version=version,
        source=source,
        pid=os.getpid(),
        host=socket.gethostname(),
        command=command_line(_own_argv()),
        since=now_iso(),
        phase=phase,
        target=sys.prefix,
        parents=settings.parents(),
    )


def _own_argv() -> list[str]:
    """What the user typed, as far as this process knows it (``pipguard`` rather than a runner path)."""
    argv = settings.variable("PIPGUARD_ARGV")
    if argv:
        with contextlib.suppress(ValueError):
            loaded = json.loads(argv)
            if isinstance(loaded, list):
                return [str(word) for word in loaded]
    return ["pipguard", *sys.argv[1:]]


class Record:
    """This process's live record in one directory; locked until :meth:`remove` or death."""

    def __init__(self, directory: Path, participant: Participant) -> None:
        self.directory = directory
        self.participant = participant
        self._fd: int | None = None
        self._path: Path | None = None
        self._publish()

    def _publish(self) -> None:
        policy = trust.configured()
        policy.make_dir(self.directory)
        trust.check_directory(self.directory, policy)  # where readers will look
        p = self.participant
        name = f"{p.role}-{p.host}-{p.pid}-{next(_sequence)}-{os.urandom(4).hex()}.json"
        temp = self.directory / f"{_TEMP_PREFIX}{name}"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, policy.file_mode)
        try:
            policy.share(fd)  # a team's members read it, and remove it once its owner is dead
            os.write(fd, json.dumps(asdict(p)).encode())
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(temp, self.directory / name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        previous_fd, previous_path = self._fd, self._path
        self._fd, self._path = fd, self.directory / name
        if previous_fd is not None and previous_path is not None:
            _unlink_and_close(previous_path, previous_fd)

    def update(self, phase: str) -> None:
        """Publish a new version (a phase change), then drop the old one."""
        self.participant = replace(self.participant, phase=phase)
        self._publish()

    def remove(self) -> None:
        if self._fd is not None and self._path is not None:
            _unlink_and_close(self._path, self._fd)
        self._fd = self._path = None


def _unlink_and_close(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(fd)


def read(directory: Path) -> list[Participant]:
    """The live participants in ``directory``; records of dead owners are removed on the way.

    Only a real directory no other user can write to is read (unless the cache is shared on purpose, or is
    a team's that only its members can write), and in it only regular files: anything else planted there
    (a FIFO, a symlink) is passed over, never waited on. Reading is relative to the directory's
    descriptor, so nothing can be swapped in under the reader."""
    try:
        fd = trust.open_directory(directory, trust.configured())
    except (OSError, UntrustedCache):
        return []
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def _read_all(dir_fd: int) -> list[Participant]:
    found: dict[tuple[str, str, int], tuple[int, Participant]] = {}
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return []
    for name in names:
        if name.startswith(_TEMP_PREFIX):
            _remove_stale_temp(name, dir_fd)
            continue
        if not name.endswith(".json"):
            continue
        participant = _read_live(name, dir_fd)
        if participant is None:
            continue
        sequence = _sequence_of(name)
        ident = (participant.role, participant.host, participant.pid)
        if ident not in found or found[ident][0] < sequence:
            found[ident] = (sequence, participant)
    return sorted((p for _, p in found.values()), key=lambda p: (p.role != "holder", p.since, p.pid))


def _sequence_of(name: str) -> int:
    parts = name.rsplit("-", 2)
    try:
        return int(parts[-2])
    except (IndexError, ValueError):
        return -1


def _read_live(name: str, dir_fd: int) -> Participant | None:
    try:
        fd = trust.open_regular(name, dir_fd)
    except (OSError, ValueError):
        return None
    try:
        if not try_lock(fd):
            try:
                fields = json.loads(os.read(fd, RECORD_LIMIT))
                return Participant(**{**fields, "parents": tuple(fields.get("parents", ()))})
            except (OSError, ValueError, TypeError):
                return None
        # Lockable: its owner is gone. The name is never reused, so it is this dead record we remove.
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        return None
    finally:
        os.close(fd)


def _remove_stale_temp(name: str, dir_fd: int) -> None:
    """A temp record older than a minute and unlocked belongs to a process that died publishing."""
    try:
        fd = trust.open_regular(name, dir_fd)
    except (OSError, ValueError):
        return
    try:
        if time.time() - os.fstat(fd).st_mtime >= _STALE_TEMP_SECONDS and try_lock(fd):
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(fd)
