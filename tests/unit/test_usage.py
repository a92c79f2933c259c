"""Sizes read and shown as pip shows them; counts appended by many processes, summed, reset; the cap's
variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipguard import settings, usage
from pipguard.trust import Policy


@pytest.mark.parametrize(
    ("text", "size"),
    [("10G", 10 * 1000**3), ("500M", 500 * 1000**2), ("20k", 20_000), ("1234", 1234), ("1.5GiB", 3 * 1024**3 // 2),
     ("2 TB", 2 * 1000**4), ("0", 0)],
)
def test_parse_size(text: str, size: int) -> None:
    assert usage.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "10X", "-5", "1.2.3G", "ten"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        usage.parse_size(text)


@pytest.mark.parametrize(
    ("size", "shown"),
    [(512, "512 bytes"), (11_000, "11 kB"), (1_500, "1.5 kB"), (4_200_000_000, "4.2 GB"), (25_000_000, "25 MB")],
)
def test_format_size_as_pip_does(size: int, shown: str) -> None:
    assert usage.format_size(size) == shown


def test_counts_from_several_processes_are_summed_and_a_reset_empties_them(tmp_path: Path) -> None:
    for hits in (1, 2):
        tally = usage.Tally()
        tally.add("hits", hits)
        tally.add("saved_seconds", 1.5)
        tally.flush(tmp_path, Policy())
    usage.Tally().flush(tmp_path, Policy())  # a process that counted nothing writes nothing
    with open(tmp_path / usage.FILE, "a") as handle:
        handle.write("not json\n" + json.dumps({"hits": "many"}) + "\n")  # ignored, not fatal
    counted = usage.read(tmp_path)
    assert counted["hits"] == 3 and counted["saved_seconds"] == 3.0 and counted["misses"] == 0
    assert len((tmp_path / usage.FILE).read_text().splitlines()) == 4
    usage.reset(tmp_path)
    assert set(usage.read(tmp_path).values()) == {0}


@pytest.mark.parametrize(
    ("raw", "cap", "complains"),
    [(None, usage.DEFAULT_MAX_SIZE, False), ("500M", 500 * 1000**2, False), ("0", None, False),
     ("none", None, False), ("lots", None, True)],
)
def test_cache_max_size_variable(monkeypatch: pytest.MonkeyPatch, raw: str | None, cap: int | None, complains: bool) -> None:
    monkeypatch.delenv("PIPGUARD_CACHE_MAX_SIZE", raising=False)
    if raw is not None:
        monkeypatch.setenv("PIPGUARD_CACHE_MAX_SIZE", raw)
    value, complaint = settings.cache_max_size()
    assert value == cap and (complaint is not None) == complains
