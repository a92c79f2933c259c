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
