"""The build after ``get_requires_for_build_wheel`` runs in an interpreter started beside that hook, which
imported its backend meanwhile (pipguard/_pip/warm_hooks.py): still one fresh process per hook, with pip's
output, and a fresh interpreter as always wherever that would not be the same.

The fixture backend here comes from the build environment (the ``fixture-backend`` wheel on the index), as
setuptools does; each hook's record says how its interpreter was started (``-c`` for the one started
ahead, the in-process script's path for one pip starts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Result, World
from support.hooklog import read_hooks
from support.index import IndexServer
from support.output import masked
from support.processes import install_args
from support.projects import make_backend_wheel, make_project, make_sdist

ENV_BACKEND, TREE_BACKEND = "warmpkg", "treebackendpkg"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    root = tmp_path_factory.mktemp("warm")
    make_backend_wheel(root / "dists")
    make_sdist(make_project(root / "trees", ENV_BACKEND, backend_in_tree=False), root / "dists")
    make_sdist(make_project(root / "trees", TREE_BACKEND), root / "dists")
    with IndexServer(root / "dists") as server:
        yield server


def _hooks(world: World, project: str, since: int) -> list[dict[str, object]]:
    return [rec for rec in read_hooks(world.hook_log)[since:] if rec["project"] == project]


def _install(world: World, index: IndexServer, project: str, env: dict[str, str] | None = None) -> tuple[Result, list[dict[str, object]], Result]:
    """pipguard's install of ``project`` and its hook records, then plain pip's (a cache of its own)."""
    since = len(read_hooks(world.hook_log))
    guarded = world.pipguard(*install_args(world.venv("g"), index.url, project), env=env)
    records = _hooks(world, project, since)
    plain = world.pip(*install_args(world.venv("p"), index.url, project),
                      env={**(env or {}), "PIP_CACHE_DIR": str(world.root / "plain-pip-cache")})
    return guarded, records, plain


def _started(records: list[dict[str, object]], hook: str) -> list[object]:
    return [rec["started_with"] for rec in records if rec["hook"] == hook]


def _script(started: object) -> bool:
    return isinstance(started, str) and Path(started).name == "_in_process.py"


def test_the_build_runs_in_the_interpreter_started_beside_get_requires(any_pip_world: World, index: IndexServer) -> None:
    world = any_pip_world
    guarded, records, plain = _install(world, index, ENV_BACKEND)
    assert guarded.returncode == plain.returncode == 0, guarded.output
    (requires,) = _started(records, "get_requires_for_build_wheel")
    (build,) = _started(records, "build_wheel")
    assert _script(requires), records  # pip's own start of its hook
    assert build == "-c", records  # started ahead, given its hook afterwards
    pids = [rec["pid"] for rec in records if rec["hook"] in ("get_requires_for_build_wheel", "build_wheel")]
    assert len(set(pids)) == 2  # still a fresh process per hook
    assert masked(guarded.stdout) == masked(plain.stdout)
    assert guarded.stderr == plain.stderr == ""
    assert (world.site_packages(world.venv("g")) / ENV_BACKEND).is_dir()


def test_a_backend_that_warns_as_it_is_imported_gets_fresh_interpreters_and_pips_own_warning(
    world: World, index: IndexServer
) -> None:
    """The in-process script records a backend's warnings and pip logs them; one raised while a warm
    interpreter imported the backend would be lost, so that interpreter is not used."""
    env = {"FIXTURE_IMPORT_WARNING": "fixture backend imported"}
    guarded, records, plain = _install(world, index, ENV_BACKEND, env=env)
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert all(_script(started) for started in _started(records, "build_wheel")), records
    assert masked(guarded.stdout) == masked(plain.stdout)
    assert masked(guarded.stderr) == masked(plain.stderr)


def test_a_backend_from_the_tree_gets_a_fresh_interpreter(any_pip_world: World, index: IndexServer) -> None:
    """backend-path: the in-process script checks where such a backend comes from, and the tree may
    change while the first hook runs (its variable is spelt differently in pip 25.3 and 26.3)."""
    world = any_pip_world
    guarded, records, plain = _install(world, index, TREE_BACKEND)
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert [_script(started) for started in _started(records, "build_wheel")] == [True], records
    assert masked(guarded.stdout) == masked(plain.stdout)


def test_a_build_that_fails_in_the_warm_interpreter_fails_as_pips_does(world: World, index: IndexServer) -> None:
    guarded, records, plain = _install(world, index, ENV_BACKEND, env={"FIXTURE_FAIL_BUILD": ENV_BACKEND})
    assert guarded.returncode == plain.returncode == 1
    assert _started(records, "build_wheel") == ["-c"], records
    assert masked(guarded.stdout) == masked(plain.stdout)
    assert masked(guarded.stderr) == masked(plain.stderr)
    assert f"FIXTURE_FAIL_BUILD: refusing to build {ENV_BACKEND}" in guarded.stderr
