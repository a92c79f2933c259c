"""The pip versions the tests name, read from bin/_venvs.sh: bin/test makes its virtualenvs from the same
lines, so moving an end of the supported range is one edit there."""

from __future__ import annotations

import re
from pathlib import Path

VENVS_SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "_venvs.sh"


def _assigned(name: str) -> str:
    """The value of ``name="..."`` in bin/_venvs.sh."""
    found = re.search(rf'^{name}="([^"]+)"$', VENVS_SCRIPT.read_text(), re.MULTILINE)
    if found is None:
        raise LookupError(f"no {name}=\"...\" line in {VENVS_SCRIPT}")
    return found.group(1)


NEWEST_PIP = _assigned("newest_pip")
OLDEST_PIP = _assigned("oldest_pip")
BELOW_RANGE_PIP = _assigned("below_range_pip")
