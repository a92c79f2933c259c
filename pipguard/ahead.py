"""Builds ahead: the sdists a command will need are built side by side while pip resolves, one thread each.

pip builds one sdist after another, as its resolver reaches each. The seam learns early which sdists the
resolver will ask for: once pip has read the command's requirements, each one's best candidate as pip's
finder picks it (describe.requested_sdists), and each time the resolver learns a distribution's
dependencies, theirs (describe.dependency_sdists). Those that are sdists start here, in the background,
through the same guard (lock, cache, build, publish). When the resolver reaches one, the seam waits for its
build instead of starting another, and gets exactly what the guard would have returned, a failure included,
at exactly the moment pip would have met it. A build the resolver ends up not using (it settled on another
version) stays in the cache and is never installed.

Each build runs in a thread of this process, in a copy of the command's context (the output channel
lives in a ContextVar), and starts its build child from there: a new interpreter, since a fork of a
process with other threads alive is not safe (builder.py says why). The job budget (jobs.py) bounds how
many children are alive and how many run build code at once (a child prepares without a job, then waits
for one at its gate: gate.py), and hands the next place to the biggest build waiting (the last build to
end decides when the command does); threads beyond it wait, holding their build lock but no job and no
token.

The command's end: on success, builds still running are waited for (their wheels go into the cache for a
later install; none is installed now), and builds not started yet are dropped (pip did not need them).
On an error or an interruption, the guard's stop flag ends every build at once: children stopped, work
directories removed, nothing published.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from pipguard.sources import Source

MAX_THREADS = 64
POLL_SECONDS = 0.25

Result = tuple[Path, str | None]


class StoppableGuard(Protocol):
    def wheel_for(self, source: Source) -> Result | None: ...

    def stop(self) -> None:
        """Make every build of this guard end at once (BuildStopped)."""


class Ahead:
    """The background builds of one command, by the link URL the resolver will look them up with."""

    def __init__(self, guard: StoppableGuard) -> None:
        self._guard = guard
        self._pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="pipguard-build")
        self._futures: dict[str, Future[Result | None]] = {}

    def submit(self, url: str, source: Source) -> None:
        if url not in self._futures:
            context = contextvars.copy_context()
            self._futures[url] = self._pool.submit(context.run, self._guard.wheel_for, source)

    def __contains__(self, url: str) -> bool:
        return url in self._futures

    def running(self) -> bool:
        """Whether a build ahead has not ended yet (one more beside it is worth building ahead)."""
        return any(not future.done() for future in self._futures.values())

    def result(self, url: str) -> Result | None:
        """Wait for the build of ``url`` (in short slices: Ctrl-C reaches this thread at once)."""
        future = self._futures[url]
        while True:
            try:
                return future.result(timeout=POLL_SECONDS)
            except TimeoutError:
                continue

    def finish(self, failed: bool) -> None:
        """The command is over: wait for the builds running (or, if it failed, stop them); drop the rest."""
        for future in self._futures.values():
            future.cancel()  # only those not started yet
        if failed:
            self._guard.stop()
        try:
            self._pool.shutdown(wait=True)
        except KeyboardInterrupt:  # Ctrl-C while waiting for them: stop them instead, then unwind
            self._guard.stop()
            self._pool.shutdown(wait=True)
            raise
