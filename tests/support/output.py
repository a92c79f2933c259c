"""pip's output with what differs from run to run masked (sizes, hashes, temp paths), to compare pipguard's
output with plain pip's line for line."""

from __future__ import annotations

import re


def masked(text: str) -> str:
    text = re.sub(r"sha256=[0-9a-f]{64}", "sha256=…", text)
    text = re.sub(r"size=\d+", "size=…", text)
    # Each run's own pip cache; a temporary directory instead (not where pip keeps it) still shows.
    text = re.sub(r"Stored in directory: (?!/tmp/pip-)\S*?/wheels/", "Stored in directory: <pip cache>/wheels/", text)
    text = re.sub(r"_[0-9a-f]{32}", "_…", text)
    return re.sub(r"/tmp/pip-[\w-]+", "/tmp/pip-…", text)
