"""A build that failed in pipguard's child, reported by the parent exactly as pip reports its own.

The child is ``pip wheel`` of the same pip, so its output is pip's own block for the failure: the
backend's output, ``error: subprocess-exited-with-error``, ``ERROR: Failed building wheel for x``. Only its
last words differ by command (``pip wheel`` ends "Failed to build one or more wheels", ``pip install``
with ``failed-wheel-build-for-install``). So the parent prints the child's standard output from the
requirement on, and raises :class:`ReplayedBuildFailure`, which pip's own error handler renders: the
child's standard error, with the command's own summary in place of the child's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from pip._internal.exceptions import CommandError, DiagnosticPipError, InstallWheelBuildError

from pipguard.errors import BuildReport

if TYPE_CHECKING:
    from pip._vendor.rich.console import Console, ConsoleOptions, RenderResult

_BUILD_FAILED = "ERROR: Failed building wheel for "


@dataclass(frozen=True)
class _Named:
    """What pip's summary needs of a failed requirement: its name."""

    name: str


class ReplayedBuildFailure(DiagnosticPipError):
    """pip's error for a build that failed once, in pipguard's child, for this process or another."""

    reference = "pipguard-replayed-build-failure"

    def __init__(self, report: BuildReport, command: str) -> None:
        super().__init__(message=f"building {report.name} failed", context=None, hint_stmt=None)
        self.report = report
        self.command = command

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from pip._vendor.rich.text import Text

        body = child_block(self.report)
        if body:
            yield Text(body)
        if self.report.stage != "wheel":
            return  # the child's last lines are pip's own final error for this failure
        if self.command == "install":
            yield from InstallWheelBuildError([_Named(self.report.name)]).__rich_console__(console, options)  # type: ignore[list-item]
        else:
            yield Text(f"ERROR: {CommandError('Failed to build one or more wheels')}")


def child_block(report: BuildReport) -> str:
    """The child's standard error, without its command-specific summary after a wheel build failed."""
    lines = report.stderr.rstrip("\n").splitlines()
    if report.stage == "wheel":
        last = max((i for i, line in enumerate(lines) if line.lstrip().startswith(_BUILD_FAILED)), default=None)
        if last is not None:
            lines = lines[: last + 1]
    return "\n".join(lines)


def stage_of(stdout: str) -> str:
    """"wheel" if the child got as far as building the wheel, else "prepare"."""
    return "wheel" if "Building wheel for " in stdout else "prepare"


def replay_stdout(report: BuildReport) -> None:
    """The child's standard output for the requirement (not its "Looking in indexes" preamble)."""
    lines = report.stdout.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if not line.startswith("Looking in ")), len(lines))
    sys.stdout.write("".join(lines[start:]))
    sys.stdout.flush()


def error_for(report: BuildReport, command: str) -> ReplayedBuildFailure:
    """Print what pip prints on standard output for this failure, and give the error to raise."""
    replay_stdout(report)
    return ReplayedBuildFailure(report, command)


class _Tee:
    """A stream that also keeps what is written to it."""

    def __init__(self, stream: IO[str], kept: io.StringIO) -> None:
        self._stream = stream
        self._kept = kept

    def write(self, text: str) -> int:
        self._kept.write(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@dataclass
class Captured:
    """What pip printed, through its own console handlers, while one build ran in this process."""

    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)

    def report(self, name: str) -> BuildReport:
        """The failed build, as processes that waited for it replay it (its wheel stage failed)."""
        return BuildReport(name, "wheel", self.stdout.getvalue(), self.stderr.getvalue())


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    """Keep a copy of what pip's console handlers print (pip's output itself is untouched)."""
    from pip._internal.utils.logging import RichPipStreamHandler

    kept = Captured()
    swapped: dict[int, tuple[Any, Any]] = {}  # by console: several handlers share one
    for handler in logging.getLogger().handlers:
        console = getattr(handler, "console", None)
        if isinstance(handler, RichPipStreamHandler) and console is not None and id(console) not in swapped:
            original = console.file
            swapped[id(console)] = (console, original)
            console.file = _Tee(original, kept.stderr if original is sys.stderr else kept.stdout)
    try:
        yield kept
    finally:
        for console, original in swapped.values():
            console.file = original
