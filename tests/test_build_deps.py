"""Build requirements built from source go through the cache and its locks: N builds that need one build
requirement that is only an sdist build it once (pip builds it in each build environment, racing)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Result, World
from support.index import IndexServer
from support.processes import Crew, Gate, install_args, install_cmd, wait_for, waiting_pids
from support.projects import make_project, make_sdist

USERS = ("usera", "userb", "userc")
HELPER = "buildhelper"  # the build requirement: an sdist only


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    """Three sdists whose ``build-system.requires`` names HELPER, and HELPER itself, only as an sdist (the
    test's own, so every test builds it cold); one that needs itself to build."""
    dists = tmp_path / "dists"
    make_sdist(make_project(tmp_path / "trees", HELPER, "1.0"), dists)
    for name in USERS:
        make_sdist(make_project(tmp_path / "trees", name, "1.0", build_requires=[HELPER]), dists)
    make_sdist(make_project(tmp_path / "trees", "ouroboros", "1.0", build_requires=["ouroboros"]), dists)
    with IndexServer(dists) as server:
        yield server


def _without_pip_cache_paths(result: Result) -> str:
    """stdout with the pip cache's directory (which differs between the two runs) left out."""
    return re.sub(r"Stored in directory: \S+", "Stored in directory: <pip cache>", result.stdout)


def test_three_processes_whose_builds_need_one_build_requirement_from_source_build_it_once(
    any_pip_world: World, crew: Crew, gate: Gate, index: IndexServer
) -> None:
    world = any_pip_world
    venvs = [world.venv(name) for name in USERS]
    procs = [
        crew.start(install_cmd(world, venv, index.url, name), name, {**gate.env, **world.another_job(name)})
        for venv, name in zip(venvs, USERS)
    ]
    # One build environment builds the helper (held at the gate); the other two wait: for that build
    # environment's lock (pipguard makes an environment once), or for the helper's in pip's child.
    gate.wait_started(1, f"the first build of {HELPER}")
    wait_for(lambda: len(waiting_pids(world)) == 2, f"two build environments waiting for {HELPER}")
    gate.open()
    results = [proc.wait() for proc in procs]
    for result in results:
        assert result.returncode == 0, result.output
        # Waits in pip's child are hidden with its output; a wait for the build environment that child
        # makes (pipguard keeps it: buildenv.py) is this process's own, and says so.
        assert all(line.startswith("pipguard: ") for line in result.stderr.splitlines()), result.stderr
    assert world.hooks("build_wheel", HELPER) == 1
    for name in USERS:
        assert world.hooks("build_wheel", name) == 1
    assert world.cached_projects() == {HELPER, *USERS}


def test_one_install_of_all_three_builds_it_once_and_prints_what_plain_pip_prints(world: World, index: IndexServer) -> None:
    guarded = world.pipguard(*install_args(world.venv("g"), index.url, *USERS))
    assert guarded.returncode == 0, guarded.output
    assert world.hooks("build_wheel", HELPER) == 1
    assert HELPER in world.cached_projects()
    plain = world.pip(*install_args(world.venv("p"), index.url, *USERS), env=world.another_job("plain"))
    assert plain.returncode == 0, plain.output
    assert _without_pip_cache_paths(guarded) == _without_pip_cache_paths(plain)
    assert guarded.stderr == plain.stderr == ""


def test_a_later_build_environment_reuses_the_build_requirement_from_pipguards_cache(world: World, index: IndexServer) -> None:
    """Another job (its own pip cache) installs a project whose build needs the helper: the helper's wheel
    comes from pipguard's cache, as a top-level sdist's would; plain pip would build it again."""
    first = world.pipguard(*install_args(world.venv("one"), index.url, "usera"))
    assert first.returncode == 0, first.output
    later = world.pipguard(*install_args(world.venv("two"), index.url, "userb"), env=world.another_job("later"))
    assert later.returncode == 0, later.output
    assert world.hooks("build_wheel", HELPER) == 1
    assert world.hooks("build_wheel", "userb") == 1


def test_a_build_requirement_this_very_install_holds_the_lock_of_is_built_once_without_a_wait(
    world: World, index: IndexServer
) -> None:
    """``install HELPER usera``: the resolver claims HELPER's lock first (built at the install's end), then
    usera's build environment needs HELPER. The build-dependency install does not wait for the process
    blocked on it: it builds HELPER, and the install then finds its wheel instead of building it again
    (plain pip builds it twice)."""
    venv = world.venv("v")
    # -v shows the build-dependency install's own output, where a wait for the lock would show.
    result = world.pipguard(*install_args(venv, index.url, HELPER, "usera", options=["-v"]), env={"PIPGUARD_LOCK_TIMEOUT": "20"})
    assert result.returncode == 0, result.output
    assert "pipguard:" not in result.output  # neither waited for the lock nor timed out on it
    assert world.hooks("build_wheel", HELPER) == 1
    assert world.module_version(venv, HELPER) == "1.0"


def test_a_project_that_needs_itself_to_build_fails_as_plain_pip(world: World, index: IndexServer) -> None:
    """pip's own build tracker stops the recursion ("already being built"): pipguard neither hangs on the
    lock its parent holds nor changes the outcome."""
    guarded = world.pipguard(*install_args(world.venv("g"), index.url, "ouroboros"))
    plain = world.pip(*install_args(world.venv("p"), index.url, "ouroboros"), env=world.another_job("plain"))
    assert guarded.returncode == plain.returncode != 0, guarded.output
    assert guarded.warnings() == []
    assert guarded.error_lines() == plain.error_lines()


def test_every_process_of_an_install_sends_the_user_agent_plain_pip_sends(world: World, index: IndexServer) -> None:
    """pipguard's build children and the pips that install their build requirements send the header their
    parent worked out (agent.py): one User-Agent in all, plain pip's own."""
    guarded = world.pipguard(*install_args(world.venv("g"), index.url, *USERS))
    assert guarded.returncode == 0, guarded.output
    asked = {path for path, count in index.hits.items() if count}
    assert f"/simple/{HELPER}/" in asked and any(path.startswith("/files/") for path in asked)
    by_pipguard = set().union(*index.user_agents.values())
    index.user_agents.clear()
    plain = world.pip(*install_args(world.venv("p"), index.url, *USERS), env=world.another_job("plain"))
    assert plain.returncode == 0, plain.output
    by_pip = set().union(*index.user_agents.values())
    assert len(by_pip) == 1 and by_pipguard == by_pip, (by_pipguard, by_pip)
