"""Builds ahead, shown where and as plain pip shows them.

A build ahead runs in pipguard's child (``pip wheel`` of the same pip) while the resolver works, so pip
itself would show its wheel as a cache hit (``Using cached x.whl``). The process that built it shows
instead what plain pip prints for that source: when the resolver reaches it, pip's own header, the
download and the preparation lines (``Installing build dependencies ... done``...); after resolving, in
pip's one ``Building wheels for collected packages`` block, its build lines (``Building wheel for x
(pyproject.toml) ... done``, ``Created wheel``, ``Stored in directory``), and its name in ``Successfully
built``. The lines are the child's own, which is the same pip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipguard.errors import BuildReport

_BUILDING = "Building wheels for collected packages:"
_ENDS = ("Successfully built ", "Failed to build ")
_HEADERS = ("Processing ", "Collecting ")


@dataclass(frozen=True)
class Transcript:
    """What the child printed for one build ahead, split where plain pip prints it."""

    preparing: tuple[str, ...]  # under the requirement's header, while the resolver prepares it
    building: tuple[str, ...]  # under "Building wheels for collected packages"


def parse(stdout: str, downloaded: list[str]) -> Transcript | None:
    """Split the child's standard output; None if it is not pip's usual block (nothing is replayed)."""
    lines = stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith(_HEADERS)), None)
    start = next((i for i, line in enumerate(lines) if line.startswith(_BUILDING)), None)
    if header is None or start is None or start < header:
        return None
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(_ENDS)), len(lines))
    return Transcript(
        tuple(downloaded) + tuple(_dedent(lines[header + 1 : start])), tuple(_dedent(lines[start + 1 : end]))
    )


def stored_in(transcript: Transcript, directory: str | None) -> Transcript:
    """The transcript with pip's ``Stored in directory:`` line naming ``directory`` (where the wheel was
    put in this process's pip cache), not the child's own temporary one."""
    if directory is None:
        return transcript
    line = f"Stored in directory: {directory}"
    building = tuple(line if text.startswith("Stored in directory: ") else text for text in transcript.building)
    return dataclasses.replace(transcript, building=building)


def _dedent(lines: list[str]) -> list[str]:
    """The child's lines one level less indented: pip indents them again where they are shown."""
    return [line[2:] if line.startswith("  ") else line for line in lines]


def show(lines: tuple[str, ...]) -> None:
    """Log ``lines`` through pip's own logging, one level in (pip's indentation, log file included)."""
    from pip._internal.utils.logging import indent_log

    logger = logging.getLogger("pip._internal.operations.prepare")
    with indent_log():
        for line in lines:
            logger.info("%s", line)


def show_failure(report: BuildReport) -> None:
    """A build ahead that failed, in pip's build step: its build lines, then its error block on stderr."""
    from pipguard._pip.failure import child_block

    transcript = parse(report.stdout, [])
    logger = logging.getLogger("pip._internal.wheel_builder")
    for line in transcript.building if transcript is not None else ():
        logger.info("%s", line)
    block = child_block(report)
    if block:
        sys.stderr.write(block + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def heard_here() -> Iterator[list[str]]:
    """What pip logs in this thread (a download ahead), kept from the console to be shown in place."""
    me = threading.get_ident()
    heard: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.thread != me:
            return True
        heard.append(record.getMessage())
        return False

    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield heard
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


def merged_build(
    original: Callable[..., tuple[list[Any], list[Any]]],
    requirements: list[Any],
    ahead: list[tuple[str, Transcript]],
    order: list[str],
    *args: Any,
    **kwargs: Any,
) -> tuple[list[Any], list[Any]]:
    """pip's build step with the builds ahead in it, in the order pip prepared them all: one header, each
    build's block (theirs replayed, pip's own built here), one summary (``Successfully built`` / ``Failed
    to build``), as plain pip prints them."""
    from pip._internal.utils.logging import indent_log

    rank = {name: i for i, name in enumerate(order)}
    steps: list[tuple[str, Any]] = [(name, transcript) for name, transcript in ahead]
    steps += [(str(req.name), req) for req in requirements]
    steps.sort(key=lambda step: rank.get(step[0], len(rank)))
    logger = logging.getLogger("pip._internal.wheel_builder")
    logger.info("%s %s", _BUILDING, ", ".join(name for name, _ in steps))
    built: list[str] = []
    successes: list[Any] = []
    failures: list[Any] = []
    with _without(logger, (_BUILDING, *_ENDS)):
        for name, step in steps:
            if isinstance(step, Transcript):
                with indent_log():  # pip's own build step indents its builds as much
                    for line in step.building:
                        logger.info("%s", line)
                built.append(name)
                continue
            done, failed = original([step], *args, **kwargs)
            successes += done
            failures += failed
            built += [str(req.name) for req in done]
    if built:
        logger.info("Successfully built %s", " ".join(built))
    if failures:
        logger.info("Failed to build %s", " ".join(str(r.name) for r in failures))
    return successes, failures


@contextlib.contextmanager
def _without(logger: logging.Logger, prefixes: tuple[str, ...]) -> Iterator[None]:
    """Drop ``logger``'s own records that start with ``prefixes`` (their merged versions are logged)."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefixes)

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
