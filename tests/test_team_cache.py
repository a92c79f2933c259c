"""A team's cache on one host: members of one group share one cache, as two real uids; anyone outside the
group is refused and cannot put anything in it.

The cache is set up as the README says (``chgrp``, ``chmod 2775``, ``PIPGUARD_CACHE_GROUP``), with numeric
ids so that nothing is added to /etc/passwd or /etc/group: members run through ``setpriv --groups``. They
run this checkout's pipguard from an interpreter every uid can reach (support/anyuser.py), and install
into venvs of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Dists, Process, Result, World
from support.anyuser import OTHER_UID, AnyUser, any_user, as_user, owned_by  # noqa: F401 (any_user: a fixture)
from support.envs import clean_env
from support.processes import Crew, Gate, install_args, wait_for

TEAM_GID = 4720
ALICE, BOB = 4721, 4722  # members of TEAM_GID
OUTSIDER = OTHER_UID  # in no group of the team's


@dataclass
class Team:
    """A cache shared by ALICE and BOB through TEAM_GID, in a world every uid can reach."""

    world: World
    any_user: AnyUser
    crew: Crew
    gate: Gate

    def env(self, uid: int, job: str = "") -> dict[str, str]:
        """A job of ``uid``'s: a home and a pip cache of its own (pipguard's cache is the team's: whatever is
        reused comes from it)."""
        home = owned_by(self.world.root / "homes" / f"{uid}{job}", uid)
        return {"HOME": str(home), "PIP_CACHE_DIR": str(owned_by(home / "pip-cache", uid))}

    def command(self, uid: int, *args: str) -> list[str]:
        groups = [TEAM_GID] if uid in (ALICE, BOB) else []
        return [*as_user(uid, groups=groups), *self.world.pipguard_cmd(*args)]

    def run(self, uid: int, *args: str, env: dict[str, str] | None = None, job: str = "") -> Result:
        return self.world.run(self.command(uid, *args), env={**self.env(uid, job), **(env or {})})

    def start(self, uid: int, name: str, *args: str) -> Process:
        return self.crew.start(self.command(uid, *args), name, env={**self.env(uid, name), **self.gate.env})

    def venv(self, uid: int, name: str) -> Path:
        return self.any_user.venv(self.world.root / "venvs" / name, owner=uid)

    def install(self, uid: int, venv: Path, dists: Dists, *names: str, env: dict[str, str] | None = None) -> Result:
        """``names`` installed into ``venv`` by ``uid``, as a job of its own (a pip cache of its own)."""
        return self.run(uid, *install_args(venv, dists.index.url, *names), env=env, job=venv.name)

    def status(self, uid: int) -> dict[str, Any]:
        """``guard status --json`` as ``uid`` sees it."""
        result = self.run(uid, "guard", "status", "--json")
        assert result.returncode == 0, result.output
        loaded: dict[str, Any] = json.loads(result.stdout)
        return loaded


@pytest.fixture
def team(any_user: AnyUser) -> Iterator[Team]:
    root = Path(tempfile.mkdtemp(prefix="pipguard-team-", dir=tempfile.gettempdir()))
    root.chmod(0o755)
    scratch = root / "scratch"  # the fixture backend's hook log and gate marks, written by every uid
    scratch.mkdir()
    scratch.chmod(0o1777)
    hook_log = scratch / "hooks.jsonl"
    hook_log.touch()
    hook_log.chmod(0o666)
    for each in ("homes", "venvs"):  # every uid reaches its own below, whatever the umask
        (root / each).mkdir()
        (root / each).chmod(0o755)
    cache = root / "cache"
    cache.mkdir()
    os.chown(cache, -1, TEAM_GID)  # chgrp team
    cache.chmod(0o2775)
    env = clean_env(
        PIPGUARD_CACHE_DIR=str(cache), PIPGUARD_CACHE_GROUP=str(TEAM_GID), FIXTURE_HOOK_LOG=str(hook_log),
        PIPGUARD_PROGRESS="plain",
    )
    world = World(root=root, python=any_user.python, cache=cache, hook_log=hook_log, env=env)
    crew = Crew(world)
    try:
        yield Team(world, any_user, crew, crew.gate("scratch/gate"))
    finally:
        crew.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("options", [(), ("--no-cache-dir",)], ids=["cached", "handed-over"])
def test_two_members_at_once_one_builds_the_other_waits_sees_who_and_reuses(
    team: Team, dists: Dists, options: tuple[str, ...]
) -> None:
    """ALICE builds slowpkg (held at the gate); BOB, another uid, queues behind her lock, both see each
    other in ``guard status``, and BOB installs ALICE's wheel (from the cache, or under ``--no-cache-dir``
    handed over to him alone): one build for the two."""
    alice_venv, bob_venv = team.venv(ALICE, "alice"), team.venv(BOB, "bob")
    alice = team.start(ALICE, "alice", *install_args(alice_venv, dists.index.url, "slowpkg", options=options))
    team.gate.wait_started(what="ALICE's build", explain=alice.stderr_so_far)
    bob = team.start(BOB, "bob", *install_args(bob_venv, dists.index.url, "slowpkg", options=options))

    def seen_by(uid: int) -> dict[str, Any] | None:
        locks = [lock for lock in team.status(uid)["locks"] if lock["name"] == "slowpkg"]
        return locks[0] if locks and locks[0]["waiters"] else None

    for uid in (BOB, ALICE):
        lock = wait_for(lambda: seen_by(uid), f"uid {uid} to see the holder and the waiter", explain=bob.stderr_so_far)
        assert lock["holder"]["pid"] == alice.popen.pid
        assert [waiter["pid"] for waiter in lock["waiters"]] == [bob.popen.pid]
    team.gate.open()
    results = [alice.wait(), bob.wait()]

    assert [r.returncode for r in results] == [0, 0], [r.output for r in results]
    assert team.world.hooks("build_wheel", "slowpkg") == 1
    assert team.world.module_version(bob_venv, "slowpkg") == "1.0"
    assert f"held by pid {alice.popen.pid}" in results[1].stderr
    assert all(r.warnings() == [] for r in results), [r.stderr for r in results]
    for path in team.world.cache.rglob("*"):
        info = path.lstat()
        assert info.st_gid == TEAM_GID, path
        assert not info.st_mode & stat.S_IWOTH, path
        wanted = 0o2770 if path.is_dir() else 0o660  # whatever the umask: every member reads, locks, removes
        assert stat.S_IMODE(info.st_mode) == wanted, (path, oct(info.st_mode))
    counts = json.loads(team.run(BOB, "guard", "cache", "info", "--json").stdout)["local"]
    assert (counts["misses"], counts["waits"]) == (1, 1)  # ALICE's line and BOB's, summed


def test_a_member_reuses_verifies_and_trims_anothers_entries(team: Team, dists: Dists) -> None:
    """BOB reuses ALICE's wheel (checked against its manifest: a damaged one is set aside and rebuilt,
    by BOB, in ALICE's directory), and BOB's prune removes ALICE's entries."""
    assert team.install(ALICE, team.venv(ALICE, "alice"), dists, "alpha", "beta").returncode == 0
    bob_venv = team.venv(BOB, "bob")
    reused = team.install(BOB, bob_venv, dists, "alpha")
    assert reused.returncode == 0 and reused.warnings() == [], reused.output
    assert team.world.hooks("build_wheel", "alpha") == 1

    (beta,) = [entry for entry in team.world.store.entries() if entry.wheel.name.startswith("beta")]
    with open(beta.wheel, "ab") as wheel:
        wheel.write(b"damage")
    rebuilt = team.install(BOB, bob_venv, dists, "beta")
    assert rebuilt.returncode == 0, rebuilt.output
    assert any("damaged" in line for line in rebuilt.warnings()), rebuilt.stderr
    assert team.world.hooks("build_wheel", "beta") == 2
    assert {entry.wheel.stat().st_uid for entry in team.world.store.entries()} == {ALICE, BOB}

    pruned = team.run(BOB, "guard", "cache", "prune", "--max-size", "0")
    assert pruned.returncode == 0, pruned.output
    assert "Files removed: 2" in pruned.stdout
    assert team.world.store.entries() == []


def test_an_outsider_is_refused_and_cannot_plant_anything(team: Team, dists: Dists) -> None:
    """A uid outside the group, whether or not it names the group, is refused (one warning, plain pip,
    nothing cached); it can create nothing anywhere in the cache."""
    assert team.install(ALICE, team.venv(ALICE, "alice"), dists, "alpha").returncode == 0
    before = sorted(team.world.cache.rglob("*"))
    for env, why in (({}, "not a member"), ({"PIPGUARD_CACHE_GROUP": ""}, "can be written by other users")):
        result = team.install(OUTSIDER, team.venv(OUTSIDER, f"outsider-{len(env)}"), dists, "alpha", env=env)
        assert result.returncode == 0, result.output
        assert len(result.warnings()) == 1 and why in result.warnings()[0], result.stderr
        assert "going on as plain pip" in result.warnings()[0]
    assert team.world.hooks("build_wheel", "alpha") == 3  # ALICE's, then plain pip's twice
    assert sorted(team.world.cache.rglob("*")) == before

    store = team.world.store
    for directory in (store.root, store.base, *store.layout(), *store.wheels.iterdir(), *store.wheels.glob("*/*")):
        planted = team.world.run([*as_user(OUTSIDER), "sh", "-c", 'echo x > "$1/planted"', "sh", str(directory)])
        assert planted.returncode != 0 and "Permission denied" in planted.stderr, (directory, planted.output)
