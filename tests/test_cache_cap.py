"""A cache you can live with: a size cap that evicts the least recently used wheels, never one in use;
counts of what the cache did; the layouts of older pipguards reported and pruned.

Installs that must reuse pipguard's cache run as jobs of their own (``world.another_job``): pip's own
wheel cache is consulted on a miss of pipguard's, so it must not hold the wheel. Builds are held open with
the fixture backend's gate, never with sleeps.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Dists, World
from pipguard.store import TRIM_LOCK, entry_size
from support.anyuser import OTHER_UID, AnyUser, any_user, as_user, owned_by  # noqa: F401 (any_user: a fixture)
from support.processes import Crew, Gate, install_args, install_cmd, status, wait_for
from test_local_trust import reachable  # noqa: F401 (a fixture: a directory another user can reach)

PRUNE_MAX_SIZE_ZERO = ("guard", "cache", "prune", "--max-size", "0")
READER_UID = OTHER_UID


def install(world: World, dists: Dists, job: str, *names: str, env: dict[str, str] | None = None) -> None:
    """Install ``names`` into a fresh venv, as a job of its own (so only pipguard's cache is reused)."""
    result = world.pipguard(
        *install_args(world.venv(job), dists.index.url, *names), env={**world.another_job(job), **(env or {})}
    )
    assert result.returncode == 0, result.output
    assert result.warnings() == [], result.stderr


def sizes(world: World) -> dict[str, int]:
    """Each cached project's wheel size, by project name."""
    return {entry.wheel.name.split("-", 1)[0]: entry_size(entry) for entry in world.store.entries()}


def info(world: World) -> dict[str, Any]:
    result = world.pipguard("guard", "cache", "info", "--json")
    assert result.returncode == 0, result.output
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def test_the_cap_evicts_the_least_recently_used_and_a_hit_refreshes_an_old_entry(world: World, dists: Dists) -> None:
    """alpha (oldest, then hit again), beta, then gamma under a cap that fits two: beta goes."""
    install(world, dists, "a", "alpha")
    install(world, dists, "b", "beta")
    install(world, dists, "a-again", "alpha")  # a hit of pipguard's: alpha is now used later than beta
    assert world.hooks("build_wheel", "alpha") == 1
    built = sizes(world)
    cap = built["alpha"] + built["beta"] + built["beta"] // 2  # two wheels of this size fit, three do not
    install(world, dists, "c", "gamma", env={"PIPGUARD_CACHE_MAX_SIZE": str(cap)})
    assert world.cached_projects() == {"alpha", "gamma"}
    assert info(world)["local"]["evictions"] == 1


def test_a_trim_never_removes_an_entry_in_use(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """An install holds alpha's entry (a hit) while its slowpkg build is held open: a prune to nothing
    removes beta and keeps alpha; once the install is over, alpha goes too."""
    install(world, dists, "a", "alpha")
    install(world, dists, "b", "beta")
    job = {**world.another_job("holding"), **gate.env}
    holding = crew.start(install_cmd(world, world.venv("holding"), dists.index.url, "alpha", "slowpkg"), "holding", env=job)
    gate.wait_started()  # pip resolved (and so looked alpha up) before it builds slowpkg

    pruned = world.pipguard(*PRUNE_MAX_SIZE_ZERO)
    assert pruned.returncode == 0, pruned.output
    assert world.cached_projects() == {"alpha"}

    gate.open()
    assert holding.wait().returncode == 0
    assert world.cached_projects() >= {"alpha", "slowpkg"}
    assert world.pipguard(*PRUNE_MAX_SIZE_ZERO).returncode == 0
    assert world.cached_projects() == set()


def test_a_second_trimmer_skips_while_one_trims_and_parallel_prunes_agree(world: World, dists: Dists) -> None:
    install(world, dists, "a", "alpha", "beta", "gamma")
    lock = os.open(world.store.base / TRIM_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a trimmer in another process holds it
        skipped = world.pipguard(*PRUNE_MAX_SIZE_ZERO)
    finally:
        os.close(lock)
    assert skipped.returncode == 0, skipped.output
    assert skipped.stderr.splitlines() == ["WARNING: another process is trimming the cache now; --max-size skipped"]
    assert world.cached_projects() == {"alpha", "beta", "gamma"}

    results = world.run_parallel([world.pipguard_cmd(*PRUNE_MAX_SIZE_ZERO) for _ in range(3)])
    assert all(r.returncode == 0 and "Traceback" not in r.output for r in results), [r.output for r in results]
    removed = [int(r.stdout.split("Files removed: ")[1].split()[0]) for r in results]
    assert sum(removed) == 3, [r.output for r in results]  # each entry removed by exactly one of them
    assert world.cached_projects() == set()


def test_stats_count_a_miss_a_wait_and_hits_then_reset(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """slowpkg: one job builds it (held at the gate) while another waits for it, a third hits it."""
    builder = crew.start(install_cmd(world, world.venv("x"), dists.index.url, "slowpkg"), "x", env={**world.another_job("x"), **gate.env})
    gate.wait_started()
    waiter = crew.start(install_cmd(world, world.venv("y"), dists.index.url, "slowpkg"), "y", env=world.another_job("y"))
    wait_for(lambda: any(lock["waiters"] for lock in status(world)["locks"]), "the second job to wait for the build")
    gate.open()
    assert builder.wait().returncode == 0 and waiter.wait().returncode == 0
    install(world, dists, "z", "slowpkg")
    assert world.hooks("build_wheel", "slowpkg") == 1

    local = info(world)["local"]
    assert {name: local[name] for name in ("hits", "misses", "builds", "waits", "evictions")} == {
        "hits": 2, "misses": 1, "builds": 1, "waits": 1, "evictions": 0,
    }
    assert local["saved_seconds"] > 0 and local["waited_seconds"] > 0  # the build's time, recorded at publish
    shown = world.pipguard("guard", "cache", "info").stdout
    assert "Local: 2 hits, 1 misses, 1 builds, 1 waits, 0 evictions" in shown, shown
    assert re.search(r"^Size: [0-9.]+ kB$", shown, re.MULTILINE), shown  # a wheel of a few kB, as pip shows it

    assert world.pipguard("guard", "cache", "stats", "--reset").returncode == 0
    assert all(value == 0 for value in info(world)["local"].values())


@pytest.mark.parametrize("size", ["10X", "lots", "-5", "1.2.3G", ""])
def test_a_bad_max_size_is_one_error_line(world: World, size: str) -> None:
    result = world.pipguard("guard", "cache", "prune", f"--max-size={size}")
    assert result.returncode == 2 and result.stdout == "", result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: pipguard guard cache prune: argument --max-size"), lines


def test_a_bad_max_size_variable_is_one_warning_and_no_cap(world: World, dists: Dists) -> None:
    job = {**world.another_job("a"), "PIPGUARD_CACHE_MAX_SIZE": "a lot"}
    result = world.pipguard(*install_args(world.venv("a"), dists.index.url, "alpha"), env=job)
    assert result.returncode == 0, result.output
    assert len(result.warnings()) == 1 and "PIPGUARD_CACHE_MAX_SIZE" in result.warnings()[0], result.stderr
    assert world.cached_projects() == {"alpha"}


def test_prune_older_than_goes_by_last_use(world: World, dists: Dists) -> None:
    """Both entries last used two days ago (planted on the marker a use sets); alpha is then hit."""
    install(world, dists, "a", "alpha", "beta")
    for entry in world.store.entries():
        old = entry.directory.stat().st_mtime - 2 * 86400
        os.utime(entry.directory / "manifest.json", (old, old))
    install(world, dists, "a-again", "alpha")
    pruned = world.pipguard("guard", "cache", "prune", "--older-than", "1")
    assert pruned.returncode == 0 and "Files removed: 1" in pruned.stdout, pruned.output
    assert world.cached_projects() == {"alpha"}


def test_an_old_layout_is_reported_and_pruned(world: World, dists: Dists) -> None:
    install(world, dists, "a", "alpha")
    planted = world.cache / "v0" / "wheels" / "ab"
    planted.mkdir(parents=True)
    (planted / "old.whl").write_bytes(b"x" * 12345)

    reported = info(world)["old_layouts"]
    assert reported == [{"directory": str(world.cache / "v0"), "size": 12345}]
    assert "Old layout: " in world.pipguard("guard", "cache", "info").stdout
    pruned = world.pipguard("guard", "cache", "prune", "--older-than", "30")
    assert pruned.returncode == 0, pruned.output
    assert "Removed the old layout v0/ (12 kB)" in pruned.stdout
    assert not (world.cache / "v0").exists()
    assert world.cached_projects() == {"alpha"}
    assert info(world)["old_layouts"] == []


def readable_by_all(root: Path) -> None:
    """What an administrator does to share a cache read-only: everyone may read, only its owner write."""
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def test_a_cache_this_user_cannot_write_serves_its_wheels(
    world: World, dists: Dists, reachable: Path, any_user: AnyUser
) -> None:
    """root fills the cache with alpha and shares it read-only; another user installs alpha from it and
    builds beta as plain pip would, with one warning and nothing added to the cache."""
    world.cache = reachable / "cache"
    world.env["PIPGUARD_CACHE_DIR"] = str(world.cache)
    install(world, dists, "root", "alpha")
    readable_by_all(world.cache)
    before = sorted(world.cache.rglob("*"))

    venv = any_user.venv(reachable / "venv", owner=READER_UID)
    hook_log = reachable / "hooks.jsonl"
    hook_log.write_text(world.hook_log.read_text())
    env = {"PIP_CACHE_DIR": str(owned_by(reachable / "pip-cache", READER_UID)),
           "HOME": str(owned_by(reachable / "home", READER_UID)), "FIXTURE_HOOK_LOG": str(hook_log)}
    os.chown(hook_log, READER_UID, READER_UID)
    world.hook_log = hook_log
    reader = [*as_user(READER_UID), str(any_user.python), "-m", "pipguard"]
    result = world.run([*reader, *install_args(venv, dists.index.url, "alpha", "beta")], env=env, cwd=reachable)

    assert result.returncode == 0, result.output
    assert len(result.warnings()) == 1 and "read-only" in result.warnings()[0], result.stderr
    assert world.hooks("build_wheel", "alpha") == 1 and world.hooks("build_wheel", "beta") == 1
    assert world.module_version(venv, "alpha") == world.module_version(venv, "beta") == "1.0"
    assert sorted(world.cache.rglob("*")) == before and world.cached_projects() == {"alpha"}


@pytest.fixture
def seal_cache(world: World) -> Iterator[Callable[[], None]]:
    """Bind-mount the world's cache read-only onto itself, once the test has filled it (root cannot be kept
    from writing by modes alone); unmounted at teardown."""
    mounted: list[Path] = []

    def seal() -> None:
        tried = subprocess.run(["mount", "--bind", str(world.cache), str(world.cache)], capture_output=True, text=True)
        if tried.returncode != 0:
            pytest.skip(f"cannot bind-mount here (needs CAP_SYS_ADMIN): {tried.stderr.strip()}")
        mounted.append(world.cache)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(world.cache)], check=True)

    yield seal
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_a_read_only_cache_serves_its_wheels_and_builds_misses_without_caching(
    world: World, dists: Dists, seal_cache: Callable[[], None]
) -> None:
    install(world, dists, "a", "alpha")
    seal_cache()
    before = sorted(world.cache.rglob("*"))
    job = world.another_job("b")
    result = world.pipguard(*install_args(world.venv("b"), dists.index.url, "alpha", "beta"), env=job)
    assert result.returncode == 0, result.output
    assert len(result.warnings()) == 1 and "read-only" in result.warnings()[0], result.stderr
    assert world.hooks("build_wheel", "alpha") == 1 and world.hooks("build_wheel", "beta") == 1
    assert sorted(world.cache.rglob("*")) == before
