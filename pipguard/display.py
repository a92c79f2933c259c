"""What a waiting or building process shows: a rich live view on a terminal, plain lines elsewhere.

Everything goes to stderr; pip's stdout is never touched. rich is imported only when a process
actually shows a live view. Plain lines start with ``pipguard:`` so CI logs can be grepped.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pipguard import settings
from pipguard.records import Participant

HEARTBEAT_SECONDS = 10.0
WIDTH = 120  # plain lines fit this many columns; detail goes on indented lines below


@dataclass(frozen=True)
class Output:
    """How the running command talks: pip's -v / -q count. Progress lines are info, shown unless -q;
    warnings are shown unless -qq (as pip's own)."""

    verbosity: int = 0


# Set once per command by the seam (``output_for``), read by every writer below; a thread that writes
# must run in a copy of the command's context.
_OUTPUT: ContextVar[Output] = ContextVar("pipguard_output", default=Output())


@contextlib.contextmanager
def output_for(verbosity: int) -> Iterator[Output]:
    """The output of one pip command, for as long as it runs."""
    output = Output(verbosity)
    token = _OUTPUT.set(output)
    try:
        yield output
    finally:
        _OUTPUT.reset(token)


def current() -> Output:
    """The running command's output settings (to keep for a line written after the command returns)."""
    return _OUTPUT.get()


def _verbosity() -> int:
    return _OUTPUT.get().verbosity


CONTINUATION = "pipguard:   "


def warn(message: str) -> None:
    """One warning line, shown even under -q (as pip's warnings are); -qq hides it."""
    if _verbosity() > -2:
        _BOARD.write(f"pipguard: warning: {message}\n")


def info(message: str, *details: str) -> None:
    """A progress line that fits ``WIDTH`` columns; ``details`` (and any overflow) go on indented lines.

    Every line starts with ``pipguard:``, continuations too, so a CI log can be grepped (or filtered) for
    pipguard's lines without catching pip's own indented output."""
    if _verbosity() >= 0 and mode() != "off":
        lines = [*_fit(f"pipguard: {message}"), *(f"{CONTINUATION}{detail}" for detail in details if detail)]
        _BOARD.write("\n".join(lines) + "\n")


def _fit(line: str) -> list[str]:
    """Break an overlong line at its last clause boundary that fits; the rest goes on an indented line."""
    if len(line) <= WIDTH:
        return [line]
    for separator, keep in (("; ", 0), (": ", 0), (" (", 1), (" ", 0)):
        cut = line.rfind(separator, 0, WIDTH)
        if cut > len("pipguard: "):
            return [line[:cut], CONTINUATION + line[cut + len(separator) - keep :]]
    return [line]


def mode() -> str:
    """live, plain or off: PIPGUARD_PROGRESS wins; live only on a real terminal outside CI and make -j."""
    override, _complaint = settings.progress_override()
    if override:
        return override
    if _verbosity() < 0:
        return "off"
    if sys.stderr.isatty() and not settings.in_ci_or_make() and os.environ.get("TERM") != "dumb":
        return "live"
    return "plain"


def elapsed(since: str) -> str:
    """How long ago ``since`` (ISO-8601) was, as ``42s`` or ``3m07s``."""
    try:
        started = datetime.datetime.fromisoformat(since)
    except ValueError:
        return "?"
    seconds = max(0, int((datetime.datetime.now(started.tzinfo) - started).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def describe_holder(holder: Participant | None) -> str:
    if holder is None:
        return _short_holder(holder)
    return f"{_short_holder(holder)}: {holder.command}"


def _short_holder(holder: Participant | None) -> str:
    if holder is None:
        return "a process that has not said who it is yet"
    return f"pid {holder.pid} on {holder.host} ({holder.phase}, {elapsed(holder.since)})"


def _holder_detail(holder: Participant | None) -> str:
    """The holder's command line and environment: the second line of a plain waiting message."""
    if holder is None:
        return ""
    return f"holder: {holder.command}" + (f", for {holder.target}" if holder.target else "")


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
                label, source = self._label()
                held = f"held by {_short_holder(holder)}; {describe_waiters(others)}"
                info(f"waiting for {label}: {held}", source, _holder_detail(holder))
        elif self.waiting and now - self._last_line >= HEARTBEAT_SECONDS:
            self._last_line = now
            label, _source = self._label()
            info(f"still waiting for {label} ({now - self.started:.0f}s): held by {_short_holder(holder)}")

    def _label(self) -> tuple[str, str]:
        """``name version`` for the first line, and where it comes from (a URL, a path) for the next."""
        label, _, source = self.what.partition(" (")
        return label, f"source: {source.removesuffix(')')}" if source else ""

    def _render_live(self, holder: Participant | None, others: list[Participant]) -> None:
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        if self.waiting:
            text = Text(f"pipguard: waiting {elapsed:.0f}s for {self.what}\n", style="bold")
            text.append(f"  held by {describe_holder(holder)}\n")
            text.append(f"  {describe_waiters(others)}")
        else:
            text = Text(f"pipguard: building {self.what} ({elapsed:.0f}s)", style="bold")
            text.append(f"; {len(others)} waiting for it" if others else "")
        self._live = True
        _BOARD.show(self, text)

    def pause(self) -> None:
        """Take this wait or build off the live block (it is transient: nothing stays behind)."""
        if self._live is not None:
            _BOARD.remove(self)
            self._live = None

    def close(self, outcome: str) -> None:
        self.pause()
        info(outcome)


def detail(message: str, output: Output | None = None) -> None:
    """A line shown only at ``-v`` (a summary users look for when they ask).

    ``output``: the command's, captured while it ran, for a line written after it (at exit)."""
    if (output or _OUTPUT.get()).verbosity >= 1:
        _BOARD.write(f"pipguard: {message}\n")


class _Board:
    """The one live block of a process: every wait and build in flight, one row each, gone when done.

    Builds run in several threads at once (ahead.py), and rich allows one live display per console: so
    one ``Live`` shows them all, started with the first row and stopped with the last, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, Any] = {}
        self._live: Any = None

    def write(self, text: str) -> None:
        """Lines to stderr, above the live block while there is one (never through it)."""
        with self._lock:
            if self._live is not None:
                self._live.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
                return
        sys.stderr.write(text)
        sys.stderr.flush()

    def show(self, owner: object, text: Any) -> None:
        with self._lock:
            self._rows[id(owner)] = text
            self._refresh()

    def remove(self, owner: object) -> None:
        with self._lock:
            if self._rows.pop(id(owner), None) is None:
                return
            if self._rows:
                self._refresh()
            elif self._live is not None:
                self._live.stop()
                self._live = None

    def _refresh(self) -> None:
        from rich.console import Console, Group
        from rich.live import Live

        block = Group(*self._rows.values())
        if self._live is None:
            console = Console(stderr=True, highlight=False, markup=False)
            self._live = Live(
                block, console=console, redirect_stdout=False, redirect_stderr=False, transient=True, refresh_per_second=4
            )
            self._live.start()
        else:
            self._live.update(block)


_BOARD = _Board()
