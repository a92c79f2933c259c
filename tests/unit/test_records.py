"""Holder and waiter records: visible while their owner lives, recognised as dead once its lock is gone.

flock locks belong to an open file description, so a second ``os.open`` of a record in this same process
conflicts with the lock its ``Record`` holds: one process can play both owner and reader.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from pipguard import records
from pipguard.errors import UntrustedCache
from pipguard.flocks import keep_locked
from pipguard.records import Participant, Record


def participant(role: str = "holder", phase: str = "building", pid: int | None = None) -> Participant:
    return Participant(
        role=role, kind="build", key="k" * 64, name="demo", version="1.0", source="demo-1.0.tar.gz",
        pid=os.getpid() if pid is None else pid, host="unit-host", command="pipguard install demo",
        since="2026-01-01T00:00:00+00:00", phase=phase,
    )


def record_files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_a_published_record_reads_back(tmp_path: Path) -> None:
    published = participant()
    record = Record(tmp_path, published)
    try:
        assert records.read(tmp_path) == [published]
    finally:
        record.remove()
    assert records.read(tmp_path) == []
    assert record_files(tmp_path) == []


def test_update_replaces_the_phase_and_leaves_one_file(tmp_path: Path) -> None:
    record = Record(tmp_path, participant(phase="downloading"))
    try:
        first_name = record_files(tmp_path)
        record.update(phase="publishing")
        (seen,) = records.read(tmp_path)
        assert seen.phase == "publishing"
        assert len(record_files(tmp_path)) == 1
        assert record_files(tmp_path) != first_name  # a new name: a reader never deletes a live version
    finally:
        record.remove()


def test_a_record_whose_lock_is_released_is_dead_and_removed(tmp_path: Path) -> None:
    """The kernel drops a dead owner's lock; the next reader sees that and cleans up after it."""
    path = tmp_path / "holder-unit-host-4242-0-cafe.json"
    path.write_text(json.dumps(asdict(participant(pid=4242))))
    owner = keep_locked(path)  # the owner, alive
    try:
        assert [p.pid for p in records.read(tmp_path)] == [4242]
        assert path.exists()
    finally:
        os.close(owner)  # the owner dies
    assert records.read(tmp_path) == []
    assert not path.exists()


def test_holders_come_before_waiters(tmp_path: Path) -> None:
    waiter = Record(tmp_path, participant(role="waiter", phase="waiting", pid=1))
    holder = Record(tmp_path, participant(role="holder", pid=2))
    try:
        assert [(p.role, p.pid) for p in records.read(tmp_path)] == [("holder", 2), ("waiter", 1)]
    finally:
        waiter.remove()
        holder.remove()


def test_a_stale_unlocked_temp_record_is_removed_and_a_fresh_one_kept(tmp_path: Path) -> None:
    """A temp record is one being published; only an old, unlocked one belongs to a process that died."""
    stale = tmp_path / ".tmp-holder-x-1-0-aa.json"
    fresh = tmp_path / ".tmp-holder-x-2-0-bb.json"
    for path in (stale, fresh):
        path.write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert records.read(tmp_path) == []
    assert record_files(tmp_path) == [fresh.name]


def test_a_record_never_keeps_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["pipguard", "install", "--index-url", "https://user:s3cret@pypi.example/simple", "demo"]
    monkeypatch.setenv("PIPGUARD_ARGV", json.dumps(argv))
    me = records.this_process("holder", "build", "k" * 64, "demo", "1.0", "demo-1.0.tar.gz", "building")
    assert me.pid == os.getpid()
    assert me.command == "pipguard install --index-url https://****@pypi.example/simple demo"
    record = Record(tmp_path, me)
    try:
        (name,) = record_files(tmp_path)
        assert b"s3cret" not in (tmp_path / name).read_bytes()
    finally:
        record.remove()


def test_public_fields_show_a_phase_for_holders_only() -> None:
    holder = participant().public()
    waiter = participant(role="waiter", phase="waiting").public()
    assert holder["phase"] == "building"
    assert "phase" not in waiter
    assert set(waiter) == {"pid", "host", "command", "since", "target"}


def test_a_fifo_among_the_records_is_passed_over_never_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; a record is opened non-blocking and read
    only if it is a regular file, so the reader sees the live records and leaves the FIFO alone."""
    os.mkfifo(tmp_path / "holder-x-1-0-aa.json", 0o600)
    os.mkfifo(tmp_path / ".tmp-holder-x-2-0-bb.json", 0o600)
    live = participant(role="waiter", phase="waiting")
    record = Record(tmp_path, live)
    try:
        assert records.read(tmp_path) == [live]
    finally:
        record.remove()
    assert record_files(tmp_path) == [".tmp-holder-x-2-0-bb.json", "holder-x-1-0-aa.json"]


def test_a_symlinked_record_directory_is_not_read_or_written(tmp_path: Path) -> None:
    """Records elsewhere, reached through a link: nothing of them is read, no record is published there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    owner = Record(elsewhere, participant())
    try:
        (tmp_path / "link").symlink_to(elsewhere)
        assert records.read(tmp_path / "link") == []
        with pytest.raises(UntrustedCache, match="symlinks are not followed"):
            Record(tmp_path / "link", participant(role="waiter", phase="waiting"))
    finally:
        owner.remove()


def test_a_record_directory_others_can_write_is_read_only_in_a_shared_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user could have written any record there (a holder that is not): not read, unless the cache
    is shared on purpose."""
    directory = tmp_path / "records"
    directory.mkdir(mode=0o700)
    record = Record(directory, participant())
    try:
        directory.chmod(0o777)
        monkeypatch.delenv("PIPGUARD_TRUST_SHARED_CACHE", raising=False)
        assert records.read(directory) == []
        monkeypatch.setenv("PIPGUARD_TRUST_SHARED_CACHE", "1")
        assert records.read(directory) == [record.participant]
    finally:
        record.remove()
