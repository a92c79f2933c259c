"""Whom the cache trusts: this user and root, and in a team's cache (PIPGUARD_CACHE_GROUP) the members of
that one group, never anyone else; what pipguard makes in a team's cache is the group's, whatever the umask.

Ownership is read from real files; the team is this process's own group, the one group a test may give
its files without root. tests/test_team_cache.py runs a team's cache as two real uids.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.wheels import make_wheel

from pipguard import records, trust, usage
from pipguard.errors import UntrustedCache
from pipguard.records import Record
from pipguard.store import Store

from .conftest import release_pins
from .test_records import participant

TEAM = os.getegid()
OUTSIDER_UID = 4711


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """umask 077: what a team's cache makes must be the group's anyway."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def team(monkeypatch: pytest.MonkeyPatch) -> trust.Policy:
    monkeypatch.setenv("PIPGUARD_CACHE_GROUP", str(TEAM))
    monkeypatch.delenv("PIPGUARD_TRUST_SHARED_CACHE", raising=False)
    policy = trust.configured()
    assert policy == trust.Policy(group=TEAM)
    return policy


def described(tmp_path: Path, mode: int, uid: int | None = None, gid: int | None = None) -> os.stat_result:
    """What a file of ``mode`` (owned by ``uid``/``gid`` where root can say so) looks like to a check."""
    path = tmp_path / f"file-{mode:o}-{uid}-{gid}"
    path.touch()
    path.chmod(mode)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    return path.lstat()


@pytest.mark.parametrize(
    ("mode", "problem"),
    [(0o640, None), (0o660, None), (0o664, None), (0o2770, None), (0o662, "can be written by other users")],
)
def test_the_teams_own_may_be_group_writable_never_world_writable(
    tmp_path: Path, team: trust.Policy, mode: int, problem: str | None
) -> None:
    assert team.problem(described(tmp_path, mode, gid=TEAM)) == problem
    assert trust.Policy().problem(described(tmp_path, mode, gid=TEAM)) == (
        None if mode & 0o022 == 0 else "can be written by other users"  # no team: group-writable is refused
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another user's needs root to make")
def test_another_users_file_is_trusted_only_if_it_is_the_teams(tmp_path: Path, team: trust.Policy) -> None:
    """A member's file (the team's group: only a member can have made it) is trusted by the team; an
    outsider's, or a member's of another group, never; without the team, neither is."""
    members = described(tmp_path, 0o660, uid=OUTSIDER_UID, gid=TEAM)
    assert team.problem(members) is None
    assert trust.Policy().problem(members) == "belongs to another user"
    assert team.problem(described(tmp_path, 0o644, uid=OUTSIDER_UID, gid=OUTSIDER_UID)) == "belongs to another user"


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user's needs root to make")
def test_in_a_sticky_directory_anyone_can_write_the_teams_group_proves_nothing(
    tmp_path: Path, team: trust.Policy
) -> None:
    """Anyone can make a directory in a sticky world-writable one, and get the team's group there through a
    setgid parent: the cache's root in it must be this user's or root's, as without a team."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chown(sticky, -1, TEAM)
    sticky.chmod(0o3777)
    planted = sticky / "cache"
    planted.mkdir()
    os.chown(planted, OUTSIDER_UID, TEAM)
    planted.chmod(0o2770)
    with pytest.raises(UntrustedCache, match="above the cache"):
        Store(planted).prepare(trust_shared=False)
    Store(sticky / "mine").prepare(trust_shared=False)  # this user's own, in the same directory: fine


def test_a_group_named_but_unknown_refuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPGUARD_CACHE_GROUP", "no-such-group-here")
    with pytest.raises(UntrustedCache, match="names no group"):
        Store(tmp_path / "cache").prepare(trust_shared=False)
    assert not (tmp_path / "cache").exists()


def test_a_teams_cache_is_made_the_groups_whatever_the_umask(
    tmp_path: Path, team: trust.Policy, strict_umask: None
) -> None:
    """Directories 2770, files 0660, all of the team's group: every member can read, lock and remove them."""
    store = Store(tmp_path / "cache")
    store.prepare(trust_shared=False)
    store.publish("ab" * 32, make_wheel(tmp_path / "built"), {"kind": "archive"})
    store.tally.add("hits")
    store.tally.flush(store.base, store.policy)
    assert store.trim(1 << 30) == 0
    record = Record(store.record_dir("ab" * 32), participant())
    try:
        assert [p.pid for p in records.read(store.record_dir("ab" * 32))] == [os.getpid()]
        made = list(store.root.rglob("*"))
        assert {path.name for path in made} >= {"manifest.json", usage.FILE, "trim.lock", "demo-1.0-py3-none-any.whl"}
        for path in (store.root, *made):
            info = path.lstat()
            assert info.st_gid == TEAM, path
            assert stat.S_IMODE(info.st_mode) == (0o2770 if path.is_dir() else 0o660), (path, oct(info.st_mode))
    finally:
        record.remove()
        release_pins(store)
