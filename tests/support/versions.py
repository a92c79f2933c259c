"""The pip versions the tests name, read from pipguard/_pip/requirements.txt, where the supported range and
its tested ends are written once (bin/test makes its virtualenvs from the same lines)."""

from __future__ import annotations

import re
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[2] / "pipguard" / "_pip" / "requirements.txt"


def _named(label: str) -> list[str]:
    """The versions on the ``# label: ...`` line."""
    found = re.search(rf"^# {label}: (.+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    if found is None:
        raise LookupError(f"no '# {label}:' line in {REQUIREMENTS}")
    return found.group(1).split()


OLDEST_PIP, NEWEST_PIP = _named("tested-pip")
(BELOW_RANGE_PIP,) = _named("below-range-pip")
