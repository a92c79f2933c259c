"""Read the JSON-lines log the fixture backend writes to $FIXTURE_HOOK_LOG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .projects import normalized


def read_hooks(log: Path) -> list[dict[str, Any]]:
    """All hook records, oldest first; a missing log means no hook ran."""
    try:
        text = Path(log).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def count(log: Path, hook: str, project: str | None = None) -> int:
    """How many times hook ran (for project, compared by normalized name)."""
    want = normalized(project) if project is not None else None
    return sum(
        1 for rec in read_hooks(log)
        if rec["hook"] == hook and (want is None or normalized(rec["project"] or "") == want)
    )


def build_intervals(log: Path) -> list[tuple[str, float, float]]:
    """(project, start, end) of every wheel build that finished: its backend's build_wheel and
    build_wheel_end records, paired by pid."""
    started: dict[int, tuple[str, float]] = {}
    intervals = []
    for rec in read_hooks(log):
        if rec["hook"] == "build_wheel":
            started[rec["pid"]] = (rec["project"], rec["t"])
        elif rec["hook"] == "build_wheel_end" and rec["pid"] in started:
            project, start = started.pop(rec["pid"])
            intervals.append((project, start, rec["t"]))
    return intervals


def most_at_once(intervals: list[tuple[str, float, float]]) -> int:
    """The largest number of builds running at the same moment."""
    events = sorted([(start, 1) for _, start, _ in intervals] + [(end, -1) for _, _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most
