"""Build locks in-process: a holder is visible while it holds, and a wait that times out goes on unlocked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipguard import locks, records
from pipguard.flocks import keep_locked

SUBJECT = locks.Subject("build", "k" * 64, "demo", "1.0", "demo-1.0.tar.gz")


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No live view from a test process."""
    monkeypatch.setenv("PIPGUARD_PROGRESS", "off")


def test_a_free_lock_is_taken_at_once_and_its_holder_shown(tmp_path: Path) -> None:
    lock_path, record_dir = tmp_path / "k.lock", tmp_path / "records"
    with locks.hold(lock_path, record_dir, SUBJECT, timeout=5, phase="building") as holding:
        assert holding.locked and holding.previous_holder is None
        (holder,) = records.read(record_dir)
        assert (holder.role, holder.pid, holder.phase) == ("holder", os.getpid(), "building")
        holding.phase("publishing")
        assert [p.phase for p in records.read(record_dir)] == ["publishing"]
    assert records.read(record_dir) == []
    assert lock_path.exists()  # lock files are never deleted: a waiter may hold it open


def test_a_wait_past_the_timeout_goes_on_without_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another owner (here: another open file) keeps the lock; the wait ends with a warning, not a failure."""
    lock_path, record_dir = tmp_path / "k.lock", tmp_path / "records"
    other = keep_locked(lock_path)
    try:
        with locks.hold(lock_path, record_dir, SUBJECT, timeout=0.2, phase="building") as holding:
            assert holding.locked is False
            assert holding.record is None
            assert records.read(record_dir) == []  # the waiter's record is gone, and no holder was made up
    finally:
        os.close(other)
    warning = capsys.readouterr().err
    assert "timed out" in warning and "demo 1.0" in warning and "PIPGUARD_LOCK_TIMEOUT" in warning
