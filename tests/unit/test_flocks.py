"""flock as a liveness signal, within one process: every ``os.open`` is an owner of its own."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipguard.flocks import keep_locked, try_lock


@pytest.fixture
def subject(tmp_path: Path) -> Path:
    """An existing file to lock."""
    path = tmp_path / "subject"
    path.write_text("")
    return path


@pytest.fixture
def fds() -> Iterator[list[int]]:
    """Descriptors a test opened, closed at teardown (which also drops their locks)."""
    opened: list[int] = []
    try:
        yield opened
    finally:
        for fd in opened:
            os.close(fd)


def fresh_fd(path: Path, fds: list[int]) -> int:
    """A new open file description: a lock owner distinct from every other."""
    fd = os.open(path, os.O_RDONLY)
    fds.append(fd)
    return fd


def test_try_lock_on_a_free_file(subject: Path, fds: list[int]) -> None:
    assert try_lock(fresh_fd(subject, fds), exclusive=True) is True


def test_shared_locks_share_and_exclude_exclusive(subject: Path, fds: list[int]) -> None:
    assert try_lock(fresh_fd(subject, fds)) is True
    assert try_lock(fresh_fd(subject, fds)) is True  # readers together
    assert try_lock(fresh_fd(subject, fds), exclusive=True) is False  # removal waits for every reader


def test_keep_locked_holds_until_closed(tmp_path: Path, fds: list[int]) -> None:
    created = tmp_path / "new.lock"
    held = keep_locked(created)
    try:
        assert stat.S_IMODE(created.stat().st_mode) == 0o600
        assert try_lock(fresh_fd(created, fds)) is False
        assert try_lock(fresh_fd(created, fds), exclusive=True) is False
    finally:
        os.close(held)
    assert try_lock(fresh_fd(created, fds), exclusive=True) is True


def test_keep_locked_shared_allows_readers_but_not_writers(subject: Path, fds: list[int]) -> None:
    fds.append(keep_locked(subject, exclusive=False))
    assert try_lock(fresh_fd(subject, fds)) is True
    assert try_lock(fresh_fd(subject, fds), exclusive=True) is False


def test_keep_locked_shared_does_not_create(tmp_path: Path) -> None:
    """A pin is taken on an existing entry; a missing one is an error, never an empty new file."""
    with pytest.raises(FileNotFoundError):
        keep_locked(tmp_path / "missing", exclusive=False)
    assert not (tmp_path / "missing").exists()
