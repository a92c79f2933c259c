"""What a waiting or building process shows: a rich live view on a terminal, plain lines elsewhere.

Everything goes to stderr; pip's stdout is never touched. rich is imported only when a process
actually shows a live view. Plain lines start with ``pipguard:`` so CI logs can be grepped.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from typing import Any

from pipguard import settings
from pipguard.records import Participant

HEARTBEAT_SECONDS = 10.0
_verbosity = 0


def set_verbosity(level: int) -> None:
    """pip's -v / -q count: plain progress lines are info, shown unless -q."""
    global _verbosity
    _verbosity = level


def warn(message: str) -> None:
    """One warning line, shown even under -q (as pip's warnings are); -qq hides it."""
    if _verbosity > -2:
        sys.stderr.write(f"pipguard: warning: {message}\n")
        sys.stderr.flush()


def info(message: str) -> None:
    if _verbosity >= 0 and mode() != "off":
        sys.stderr.write(f"pipguard: {message}\n")
        sys.stderr.flush()


def mode() -> str:
    """live, plain or off: PIPGUARD_PROGRESS wins; live only on a real terminal outside CI and make -j."""
    override, _complaint = settings.progress_override()
    if override:
        return override
    if _verbosity < 0:
        return "off"
    if sys.stderr.isatty() and not settings.in_ci_or_make() and os.environ.get("TERM") != "dumb":
        return "live"
    return "plain"


def _elapsed(since: str) -> str:
    try:
        started = datetime.datetime.fromisoformat(since)
    except ValueError:
        return "?"
    seconds = max(0, int((datetime.datetime.now(started.tzinfo) - started).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def describe_holder(holder: Participant | None) -> str:
    if holder is None:
        return "a process that has not said who it is yet"
    return f"pid {holder.pid} on {holder.host} ({holder.phase}, {_elapsed(holder.since)}): {holder.command}"


def describe_waiters(waiters: list[Participant]) -> str:
    if not waiters:
        return "no other waiters"
    pids = ", ".join(str(w.pid) for w in waiters[:8]) + (", …" if len(waiters) > 8 else "")
    return f"{len(waiters)} other waiter{'s' if len(waiters) != 1 else ''} (pid {pids})"


class Progress:
    """One wait or one build, shown live or as plain lines; call :meth:`tick` from the poll loop."""

    def __init__(self, what: str, waiting: bool) -> None:
        self.what = what
        self.waiting = waiting
        self.mode = mode()
        self.started = time.monotonic()
        self._last_line = self.started
        self._live: Any = None
        self._announced = False

    def tick(self, holder: Participant | None, others: list[Participant]) -> None:
        if self.mode == "off":
            return
        if self.mode == "live":
            self._render_live(holder, others)
            return
        now = time.monotonic()
        if not self._announced:
            self._announced = True
            self._last_line = now
            if self.waiting:
                since = f" since {holder.since}" if holder else ""
                info(f"waiting for {self.what}: held by {describe_holder(holder)}{since}; {describe_waiters(others)}")
        elif self.waiting and now - self._last_line >= HEARTBEAT_SECONDS:
            self._last_line = now
            info(f"still waiting for {self.what} ({now - self.started:.0f}s): held by {describe_holder(holder)}")

    def _render_live(self, holder: Participant | None, others: list[Participant]) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        if self.waiting:
            text = Text(f"pipguard: waiting {elapsed:.0f}s for {self.what}\n", style="bold")
            text.append(f"  held by {describe_holder(holder)}\n")
            text.append(f"  {describe_waiters(others)}")
        else:
            text = Text(f"pipguard: building {self.what} ({elapsed:.0f}s)", style="bold")
            text.append(f"; {len(others)} waiting for it" if others else "")
        if self._live is None:
            console = Console(stderr=True, highlight=False, markup=False)
            self._live = Live(
                text,
                console=console,
                redirect_stdout=False,
                redirect_stderr=False,
                transient=True,
                refresh_per_second=4,
            )
            self._live.start()
        else:
            self._live.update(text)

    def pause(self) -> None:
        """Take the live view off the screen (it is transient: nothing stays behind)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def close(self, outcome: str) -> None:
        self.pause()
        info(outcome)


def detail(message: str) -> None:
    """A line shown only at ``-v`` (a summary users look for when they ask)."""
    if _verbosity >= 1:
        sys.stderr.write(f"pipguard: {message}\n")
        sys.stderr.flush()
