"""The job budget: how many builds this process runs at once, and GNU make's share of them.

A build child first *prepares* (pip starts, unpacks the source, fetches and installs the build
requirements: mostly waiting for the index, or for the process that installs a shared build environment)
and then runs build code (the backend's hooks: the CPU). Jobs are for the second part: a child says when
its build code is about to run (builder.py's gate) and waits there for a job, so a build that is only
waiting for the network holds no job while another could compile. Limits, none of them taken while waiting
for another process's lock (a thread that waits holds no job and no token):

- ``PIPGUARD_JOBS`` builds running build code at once in this process (default: the CPUs it may use);
- ``PREPARING_PER_JOB`` times as many children alive at once, preparing or building;
- under ``make -jN`` with a jobserver in ``MAKEFLAGS``: one build at a time runs on the token make gave
  this job; every other build running beside it takes a token (one byte read from the jobserver) and
  writes the same byte back when it ends, also on a failure or Ctrl-C. So ``make -j8`` with several
  pipguard targets never runs more than 8 jobs in all. Where make gives no token, builds wait.

make 4.4 names a fifo (``--jobserver-auth=fifo:PATH``); make 4.3 passes two descriptors
(``--jobserver-auth=R,W``, older ``--jobserver-fds=R,W``), and only to recipe lines marked ``+``. A
jobserver that ``MAKEFLAGS`` names but this process cannot reach (closed descriptors) means make did not
share its jobs: builds then run one at a time, as a sub-make in that situation runs with ``-j1``.

Reads never block for good: the jobserver is opened anew, non-blocking (a descriptor shared with make
must keep its flags), and polled, so a stop request (Ctrl-C) ends a wait for a token at once.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import select
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipguard.errors import BuildStopped

POLL_SECONDS = 0.1
PREPARING_PER_JOB = 3  # children alive per job: while some prepare, others build


@dataclass(frozen=True)
class JobserverAuth:
    """Where make's tokens are: a fifo path (make 4.4+), or a read and a write descriptor (make 4.3)."""

    fifo: str | None = None
    read_fd: int | None = None
    write_fd: int | None = None


def parse_makeflags(makeflags: str) -> JobserverAuth | None:
    """The jobserver ``MAKEFLAGS`` names (the last one wins, as in make), or None.

    ``-j`` alone (no limit) has no jobserver; a malformed value is treated as none."""
    found: JobserverAuth | None = None
    for word in makeflags.split():
        for prefix in ("--jobserver-auth=", "--jobserver-fds="):
            if not word.startswith(prefix):
                continue
            value = word[len(prefix) :]
            if value.startswith("fifo:"):
                found = JobserverAuth(fifo=value[len("fifo:") :]) if len(value) > len("fifo:") else None
                continue
            read, _, write = value.partition(",")
            try:
                read_fd, write_fd = int(read), int(write)
            except ValueError:
                found = None
                continue
            found = JobserverAuth(read_fd=read_fd, write_fd=write_fd) if read_fd >= 0 and write_fd >= 0 else None
    return found


class Jobserver:
    """A client of make's jobserver: take a token, give it back."""

    def __init__(self, read_fd: int, write_fd: int, own: tuple[int, ...]) -> None:
        self._read = read_fd
        self._write = write_fd
        self._own = own  # descriptors opened here, closed by close()

    @classmethod
    def connect(cls, auth: JobserverAuth) -> Jobserver | None:
        """Open the jobserver non-blocking; None when this process cannot reach it."""
        try:
            if auth.fifo is not None:
                fd = os.open(auth.fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.close(fd)
                    return None
                return cls(fd, fd, (fd,))
            assert auth.read_fd is not None and auth.write_fd is not None
            for fd in (auth.read_fd, auth.write_fd):
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    return None
            # A new open file description of the same pipe: O_NONBLOCK here leaves make's own flags alone.
            fd = os.open(f"/proc/self/fd/{auth.read_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            return cls(fd, auth.write_fd, (fd,))
        except OSError:
            return None

    def try_take(self) -> bytes | None:
        """One token if one is free right now, else None."""
        try:
            token = os.read(self._read, 1)
        except (BlockingIOError, InterruptedError):
            return None
        return token or None

    def wait_readable(self, seconds: float) -> None:
        """Sleep until a token may be free, at most ``seconds``."""
        with contextlib.suppress(InterruptedError, OSError, ValueError):
            select.select([self._read], [], [], seconds)

    def give(self, token: bytes) -> None:
        """Write the token back (make counts its jobs by these bytes: never lose one)."""
        while True:
            try:
                os.write(self._write, token)
                return
            except BlockingIOError:  # a full pipe cannot happen with make's own tokens; wait rather than drop it
                select.select([], [self._write], [], POLL_SECONDS)
            except InterruptedError:
                continue

    def close(self) -> None:
        for fd in self._own:
            with contextlib.suppress(OSError):
                os.close(fd)


class _Places:
    """A number of places, handed out biggest first (see :class:`Budget`)."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: list[tuple[float, int]] = []  # (-size, arrival) of each one waiting for a place
        self._arrivals = itertools.count()
        self._turn = threading.Condition()

    def free(self) -> bool:
        with self._turn:
            return self._free > 0 and not self._waiting

    @contextlib.contextmanager
    def held(self, stopping: Callable[[], bool], size: int | None) -> Iterator[None]:
        me = (-math.inf if size is None else -float(size), next(self._arrivals))
        with self._turn:
            self._waiting.append(me)
            try:
                while not (self._free > 0 and min(self._waiting) == me):
                    self._turn.wait(POLL_SECONDS)
                    if stopping():
                        raise BuildStopped
            finally:
                self._waiting.remove(me)
                self._turn.notify_all()
            self._free -= 1
        try:
            yield
        finally:
            with self._turn:
                self._free += 1
                self._turn.notify_all()


class Budget:
    """The builds one process may run at once: ``PIPGUARD_JOBS``, and make's tokens beyond the first.

    When builds wait for a job (or a child's place), the biggest goes first. Builds ahead are known side by
    side and every one of them is needed, so what decides the command's end is the last build to finish:
    one big build started last runs alone while the other CPUs idle (5 C sdists: msgpack, asked for last,
    ran 9 s alone after the others). The cost of a build is not known before it runs: a job goes by the
    weight the child reports at its gate (its compiled-language sources, gate.py), a child's place by the
    archive's size (a tree or a VCS checkout, whose size is not known, counts as the biggest: it is
    usually the project being worked on). Equal ones go in the order they asked."""

    def __init__(self, jobs: int, jobserver: Jobserver | None) -> None:
        self.jobs = jobs
        self.jobserver = jobserver
        self._jobs = _Places(jobs)
        self._children = _Places(jobs * PREPARING_PER_JOB)
        self._implicit_free = True  # the token make gave this job: this process's first build runs on it
        self._lock = threading.Lock()

    def job_free(self) -> bool:
        """Whether a job is free and no build waits for one."""
        return self._jobs.free()

    def child(self, stopping: Callable[[], bool], size: int | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold one child's place (it prepares without a job, then takes one with :meth:`slot`)."""
        return self._children.held(stopping, size)

    @contextlib.contextmanager
    def slot(self, stopping: Callable[[], bool], size: int | None = None) -> Iterator[None]:
        """Hold one job for a build of ``size`` bytes (None: unknown), and a make token if it is not this
        process's only build; the biggest build waiting gets the next job (see the class)."""
        with self._jobs.held(stopping, size), self._token(stopping):
            yield

    @contextlib.contextmanager
    def _token(self, stopping: Callable[[], bool]) -> Iterator[None]:
        """make's share: the token make gave this job if it is free, else one from the jobserver."""
        if self.jobserver is None:
            yield
            return
        token = self._take(self.jobserver, stopping)
        try:
            yield
        finally:
            if token is None:
                with self._lock:
                    self._implicit_free = True
            else:
                self.jobserver.give(token)

    def _take(self, jobserver: Jobserver, stopping: Callable[[], bool]) -> bytes | None:
        """None for the implicit token, else a byte read from the jobserver (whichever is free first)."""
        while True:
            with self._lock:
                if self._implicit_free:
                    self._implicit_free = False
                    return None
            token = jobserver.try_take()
            if token is not None:
                return token
            if stopping():
                raise BuildStopped
            jobserver.wait_readable(POLL_SECONDS)


def budget_from_environment(jobs: int, makeflags: str) -> Budget:
    """The budget for ``PIPGUARD_JOBS`` (already parsed) under ``MAKEFLAGS``."""
    auth = parse_makeflags(makeflags)
    if auth is None:
        return Budget(jobs, None)
    jobserver = Jobserver.connect(auth)
    if jobserver is None:
        return Budget(1, None)  # make did not share its jobs with this recipe: one at a time, as make's -j1
    return Budget(jobs, jobserver)
