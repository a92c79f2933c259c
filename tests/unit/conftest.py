"""The fast layer: pipguard's own modules tested in-process (no subprocess, no network, no pip run).

Everything under this directory carries the ``unit`` marker, so ``bin/test -m unit`` runs only these;
the session fixtures of ``tests/conftest.py`` (sdists, the index) are built only when a test asks for
them, and none here does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipguard import keys
from pipguard.store import Store

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/unit as ``unit``, without a marker line in each module."""
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.unit)


def release_pins(store: Store) -> None:
    """Close the shared locks ``lookup`` keeps on entries it handed out.

    pipguard holds them until its process exits; a test process lives on, and a test of removal must be
    able to drop them the way an exiting pipguard would.
    """
    while store._pins:
        os.close(store._pins.pop())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A prepared, private cache of the test's own."""
    made = Store(tmp_path / "cache")
    made.prepare(trust_shared=False)
    try:
        yield made
    finally:
        release_pins(made)


@pytest.fixture
def key() -> str:
    """A cache key shaped like a real one."""
    return keys.digest({"unit-test": "key"})
