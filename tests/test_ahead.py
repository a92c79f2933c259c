"""Building ahead what the resolver will want: requirements pinned or not, and dependencies as the
resolver learns them, side by side; what is installed is exactly what plain pip installs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import World
from support.envs import clean_env
from support.hooklog import build_intervals, most_at_once, read_hooks
from support.index import IndexServer
from support.processes import Crew, Gate, install_args
from support.projects import make_project, make_sdist

LEAVES = ("leafa", "leafb", "leafc")


@pytest.fixture
def links(world: World) -> Path:
    """A --find-links directory of the test's own (cold for every test): three leaf sdists, a wheel that
    needs them, a project with two releases and one that caps it below the newer."""
    links = world.root / "links"
    trees = world.root / "trees"
    for name in LEAVES:
        make_sdist(make_project(trees, name, "1.0"), links)
    top = make_project(trees, "topx", "1.0", dependencies=list(LEAVES))
    subprocess.run(  # a wheel: the resolver learns its dependencies without building anything
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "-w", str(links), str(top)],
        check=True, capture_output=True, env=clean_env(),
    )
    make_sdist(make_project(trees, "twice", "1.0"), links)
    make_sdist(make_project(trees, "twice", "2.0"), links)
    make_sdist(make_project(trees, "capper", "1.0", dependencies=["twice<2"]), links)
    return links


def _install(world: World, venv: Path, links: Path, *reqs: str) -> list[str]:
    return world.pipguard_cmd("--python", str(venv), "install", "--no-index", "--find-links", str(links), *reqs)


def _held_at_once(world: World, crew: Crew, gate: Gate, cmd: list[str], count: int, what: str) -> None:
    """Run ``cmd`` with every build held at the gate until ``count`` are held at once, then let them go."""
    proc = crew.start(cmd, "install", {**gate.env, "PIPGUARD_JOBS": str(count)})
    gate.wait_started(count, what, explain=proc.stderr_so_far)
    gate.open()
    result = proc.wait()
    assert result.returncode == 0, result.output
    assert result.stderr == ""  # nobody waited: pipguard says nothing
    assert most_at_once(build_intervals(world.hook_log)) == count


def test_unpinned_requirements_build_at_once(world: World, crew: Crew, gate: Gate, links: Path) -> None:
    venv = world.venv("v")
    _held_at_once(world, crew, gate, _install(world, venv, links, *LEAVES), 3, "three unpinned builds held at once")
    for name in LEAVES:
        assert world.hooks("build_wheel", name) == 1 and world.module_version(venv, name) == "1.0"


def test_builds_ahead_start_while_the_finder_still_reads_the_next_requirements_page(world: World) -> None:
    """Two requirements known to be sdists are enough to start building them: the index holds leafc's page
    until a build of leafa or leafb has begun (it would never begin, were builds started only once the
    finder had answered for every requirement)."""
    directory, trees = world.root / "index", world.root / "trees"
    for name in LEAVES:
        make_sdist(make_project(trees, name, "1.0"), directory)
    venv = world.venv("v")
    with IndexServer(directory) as index:
        index.hold("/simple/leafc/", lambda: any(r["project"] in LEAVES[:2] for r in read_hooks(world.hook_log)))
        result = world.pipguard(*install_args(venv, index.url, *LEAVES), env={"PIPGUARD_JOBS": "3"})
    assert result.returncode == 0, result.output
    assert index.held_until_met == {"/simple/leafc/": True}
    for name in LEAVES:
        assert world.hooks("build_wheel", name) == 1 and world.module_version(venv, name) == "1.0"


def test_dependencies_build_at_once_as_soon_as_the_resolver_learns_them(
    world: World, crew: Crew, gate: Gate, links: Path
) -> None:
    """topx's wheel names three sdist dependencies: all three build at once, before the resolver has
    reached the first of them."""
    venv = world.venv("v")
    _held_at_once(world, crew, gate, _install(world, venv, links, "topx"), 3, "its three dependencies held at once")
    for name in LEAVES:
        assert world.hooks("build_wheel", name) == 1 and world.module_version(venv, name) == "1.0"


def test_a_speculative_build_the_resolver_does_not_use_is_cached_and_never_installed(world: World, links: Path) -> None:
    """The finder's best for ``twice`` is 2.0, which pipguard starts building at once; capper then caps it
    below 2, and pip installs twice 1.0, as plain pip does. The 2.0 wheel stays in the cache only."""
    args = ("install", "--no-index", "--find-links", str(links), "twice", "capper")
    guarded = world.pipguard("--python", str(world.venv("g")), *args, env={"PIPGUARD_JOBS": "2"})
    plain = world.pip("--python", str(world.venv("p")), *args)
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert world.module_version(world.root / "venvs" / "g", "twice") == "1.0"
    assert world.module_version(world.root / "venvs" / "p", "twice") == "1.0"
    assert _installed_line(guarded.stdout) == _installed_line(plain.stdout)
    versions = {entry.wheel.name.split("-")[1] for entry in world.store.entries() if entry.wheel.name.startswith("twice-")}
    assert versions == {"1.0", "2.0"}


def test_what_pip_keeps_installed_is_not_built_ahead(world: World, links: Path) -> None:
    """leafa is installed already and satisfies ``leafa``: pip keeps it, so nothing builds it again."""
    venv = world.venv("v")
    assert world.pipguard("--python", str(venv), "install", "--no-index", "--find-links", str(links), "leafa").returncode == 0
    fresh = {"PIPGUARD_CACHE_DIR": str(world.root / "fresh-cache"), "PIPGUARD_JOBS": "3"}
    result = world.run(_install(world, venv, links, *LEAVES), env=fresh)
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "leafa") == 1
    assert world.hooks("build_wheel", "leafb") == world.hooks("build_wheel", "leafc") == 1


def _installed_line(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("Successfully installed")]
