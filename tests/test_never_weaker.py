"""Never weaker than pip: pipguard runs no code, reaches no index and installs no wheel where plain pip,
given the same command, would not (hash mode, index scope, local trees, failed builds, no cache dir)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.envs import clean_env
from support.hooklog import read_hooks
from support.index import IndexServer
from support.processes import Crew, Gate, install_cmd, status, wait_for
from support.projects import make_project, make_sdist


def _hooks_of(world: World, project: str) -> list[str]:
    """Every backend hook that ran for ``project``: any at all means its build code ran."""
    return [r["hook"] for r in read_hooks(world.hook_log) if r["project"] == project]


def _cache_files(world: World, *parts: str) -> list[Path]:
    root = world.store.base.joinpath(*parts)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _installed_version(world: World, venv: Path, project: str) -> str | None:
    found = sorted(world.site_packages(venv).glob(f"{project}-*.dist-info"))
    return found[0].name[len(project) + 1 : -len(".dist-info")] if found else None


def _pip_stderr(result: Result) -> str:
    """stderr without pipguard's own lines, and with pip's temp directory names made equal."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("pipguard:")]
    return re.sub(r"/tmp/pip-[a-z]+-[^/]+(/[a-z]+_[0-9a-f]{32})?", "/tmp/PIP-TEMP", "\n".join(lines))


# --- 1. hash-checking mode ---------------------------------------------------------------------------


def test_a_wrong_hash_runs_no_build_code_and_fails_as_pip_does(world: World, dists: Dists) -> None:
    """Cold cache, wrong hash: pip's own mismatch error and exit code; the backend never runs; nothing kept."""
    reqs = world.root / "reqs.txt"
    reqs.write_text(f"alpha==1.0 --hash=sha256:{'0' * 64}\n")
    args = ("install", "--index-url", dists.index.url, "-r", str(reqs))
    guarded = world.pipguard("--python", str(world.venv("g")), *args)
    assert _hooks_of(world, "alpha") == []
    assert _cache_files(world, "wheels") == [] and _cache_files(world, "handoffs") == []
    plain = world.pip("--python", str(world.venv("p")), *args)
    assert guarded.returncode == plain.returncode == 1
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in guarded.stderr
    assert guarded.error_lines() == plain.error_lines()
    assert guarded.warnings() == []


def test_the_right_hash_installs_cold_then_warm_without_a_second_build(world: World, dists: Dists) -> None:
    reqs = world.root / "reqs.txt"
    reqs.write_text(f"alpha==1.0 --hash=sha256:{hashlib.sha256(dists.sdist('alpha').read_bytes()).hexdigest()}\n")
    for name in ("cold", "warm"):
        venv = world.venv(name)
        result = world.pipguard("--python", str(venv), "install", "--index-url", dists.index.url, "-r", str(reqs))
        assert result.returncode == 0, result.output
        assert _installed_version(world, venv, "alpha") == "1.0"
    assert world.hooks("build_wheel", "alpha") == 1


@pytest.mark.parametrize("form", ["directory", "mixed-requirements-file"])
def test_require_hashes_refuses_a_directory_as_pip_does_before_any_build(
    world: World, dists: Dists, tree: Path, form: str
) -> None:
    """pip refuses a directory in hash mode ("Can't verify hashes"): so does pipguard, with no build at all."""
    if form == "directory":
        args = ["install", "--no-index", "--require-hashes", str(tree)]
    else:
        reqs = world.root / "reqs.txt"
        sha = hashlib.sha256(dists.sdist("alpha").read_bytes()).hexdigest()
        reqs.write_text(f"treepkg @ {tree.as_uri()}\nalpha==1.0 --hash=sha256:{sha}\n")
        args = ["install", "--index-url", dists.index.url, "-r", str(reqs)]
    guarded = world.pipguard("--python", str(world.venv("g")), *args)
    assert _hooks_of(world, "treepkg") == []
    plain = world.pip("--python", str(world.venv("p")), *args)
    assert guarded.returncode == plain.returncode == 1, guarded.output
    assert guarded.error_lines() == plain.error_lines() != []
    assert "Can't verify hashes" in guarded.stderr or "point to directories" in guarded.stderr
    assert _installed_version(world, world.root / "venvs" / "g", "treepkg") is None


# --- 2. index scope ----------------------------------------------------------------------------------


@pytest.fixture
def needs_builddep(world: World) -> Iterator[tuple[Path, IndexServer]]:
    """A directory holding the sdist of ``needsdep`` (whose build requires ``builddep``) and builddep's
    wheel; and an index that serves a poisoned ``builddep`` (a build of it would log its hooks)."""
    links = world.root / "links"
    trees = world.root / "trees"
    project = make_project(trees, "needsdep", "1.0")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("requires = []", 'requires = ["builddep"]'))
    make_sdist(project, links)
    builddep = make_project(trees, "builddep", "1.0")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "-w", str(links), str(builddep)],
        check=True, capture_output=True, env=clean_env(),
    )
    poisoned = world.root / "poisoned"
    make_sdist(make_project(world.root / "poisoned-trees", "builddep", "9.0"), poisoned)
    with IndexServer(poisoned) as index:
        yield links, index


def test_index_options_in_a_requirements_file_reach_the_build(
    world: World, needs_builddep: tuple[Path, IndexServer]
) -> None:
    """--no-index and --find-links on lines of a -r file: the build's own dependencies come from there
    too, never from the index of the command line (no request reaches it), with one build and no warning."""
    links, index = needs_builddep
    reqs = world.root / "reqs.txt"
    reqs.write_text(f"--no-index\n--find-links {links}\nneedsdep==1.0\n")
    venv = world.venv("v")
    result = world.pipguard("--python", str(venv), "install", "--index-url", index.url, "-r", str(reqs))
    assert result.returncode == 0, result.output
    assert result.warnings() == []
    assert _installed_version(world, venv, "needsdep") == "1.0"
    assert world.hooks("build_wheel", "needsdep") == 1
    assert index.hits == {}, index.hits  # dependency confusion: the command line's index is never asked
    assert _hooks_of(world, "builddep") == []


# --- 3. local trees ----------------------------------------------------------------------------------


def _git(tree: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=tree, check=True, capture_output=True,
    )


def test_a_new_git_tag_gives_a_new_version_as_with_plain_pip(world: World, tree: Path) -> None:
    """The version comes from the newest tag (setuptools-scm, hatch-vcs): no file changes, the version does."""
    meta = json.loads((tree / "fixture.json").read_text())
    (tree / "fixture.json").write_text(json.dumps({**meta, "version_from": "git-tag"}))
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "commit", "-qm", "first")
    _git(tree, "tag", "1.0")
    first = world.venv("first")
    assert world.pipguard("--python", str(first), "install", "--no-index", str(tree)).returncode == 0
    assert _installed_version(world, first, "treepkg") == "1.0"
    _git(tree, "commit", "-q", "--allow-empty", "-m", "release")
    _git(tree, "tag", "2.0")
    second, plain = world.venv("second"), world.venv("plain")
    result = world.pipguard("--python", str(second), "install", "--no-index", str(tree))
    assert result.returncode == 0, result.output
    assert world.pip("--python", str(plain), "install", "--no-index", str(tree)).returncode == 0
    assert _installed_version(world, second, "treepkg") == _installed_version(world, plain, "treepkg") == "2.0"


def test_a_file_reached_through_a_symlink_outside_the_tree_is_read_fresh(world: World, tree: Path) -> None:
    outside = world.root / "outside.txt"
    outside.write_text("one\n")
    (tree / "treepkg" / "data.txt").symlink_to(outside)
    for name, content in (("one", "one\n"), ("two", "two\n")):
        outside.write_text(content)
        venv = world.venv(name)
        result = world.pipguard("--python", str(venv), "install", "--no-index", str(tree))
        assert result.returncode == 0, result.output
        assert (world.site_packages(venv) / "treepkg" / "data.txt").read_text() == content


def test_a_fifo_and_a_socket_in_the_tree_neither_hang_nor_disable_anything(world: World, tree: Path) -> None:
    os.mkfifo(tree / "a-fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "a-socket"))
    try:
        venv = world.venv("v")
        result = world.pipguard("--python", str(venv), "install", "--no-index", str(tree))
    finally:
        sock.close()
    assert result.returncode == 0, result.output
    assert result.warnings() == []
    assert (world.site_packages(venv) / "treepkg" / "__init__.py").is_file()


def _held_builder_and_waiters(
    world: World, crew: Crew, gate: Gate, commands: list[list[str]], env: dict[str, str] | None = None
) -> list[Result]:
    """Start every command; hold the first build at the gate until all the others are seen waiting for
    its lock; open the gate; return every result."""
    env = {**gate.env, **(env or {})}
    first = crew.start(commands[0], "builder", env=env)
    gate.wait_started(1, explain=first.stderr_so_far)
    rest = [crew.start(cmd, f"waiter-{i}", env=env) for i, cmd in enumerate(commands[1:])]

    def all_waiting() -> bool:
        waiting = {w["pid"] for lock in status(world)["locks"] for w in lock["waiters"]}
        return {p.popen.pid for p in rest} <= waiting

    wait_for(all_waiting, f"{len(rest)} processes to wait for the build", explain=lambda: str(status(world)))
    assert len(gate.started()) == 1
    gate.open()
    return [p.wait() for p in [first, *rest]]


def test_concurrent_installs_of_a_tree_share_one_build_and_a_later_install_builds_again(
    world: World, tree: Path, crew: Crew, gate: Gate
) -> None:
    venvs = [world.venv(f"v{i}") for i in range(4)]
    commands = [world.pipguard_cmd("--python", str(v), "install", "--no-index", str(tree)) for v in venvs]
    results = _held_builder_and_waiters(world, crew, gate, commands)
    assert [r.returncode for r in results] == [0] * 4, [r.output for r in results]
    assert world.hooks("build_wheel", "treepkg") == 1
    assert all((world.site_packages(v) / "treepkg" / "__init__.py").is_file() for v in venvs)
    assert _cache_files(world, "wheels") == [] and _cache_files(world, "handoffs") == []
    later = world.pipguard("--python", str(world.venv("later")), "install", "--no-index", str(tree))
    assert later.returncode == 0, later.output
    assert world.hooks("build_wheel", "treepkg") == 2


def test_no_cache_dir_shares_one_build_between_concurrent_installs_and_keeps_nothing(
    world: World, dists: Dists, crew: Crew, gate: Gate
) -> None:
    venvs = [world.venv(f"v{i}") for i in range(3)]
    commands = [install_cmd(world, v, dists.index.url, "beta", options=("--no-cache-dir",)) for v in venvs]
    results = _held_builder_and_waiters(world, crew, gate, commands)
    assert [r.returncode for r in results] == [0] * 3, [r.output for r in results]
    assert world.hooks("build_wheel", "beta") == 1
    assert _cache_files(world, "wheels") == [] and _cache_files(world, "handoffs") == []


# --- 4. failed builds --------------------------------------------------------------------------------


def test_a_failing_build_is_built_once_and_every_waiter_fails_as_plain_pip(
    world: World, dists: Dists, crew: Crew, gate: Gate
) -> None:
    env = {"FIXTURE_FAIL_BUILD": "gamma"}
    venvs = [world.venv(f"v{i}") for i in range(4)]
    commands = [install_cmd(world, v, dists.index.url, "gamma") for v in venvs]
    results = _held_builder_and_waiters(world, crew, gate, commands, env=env)
    assert world.hooks("build_wheel", "gamma") == 1
    plain = world.pip("--python", str(world.venv("plain")), "install", "--index-url", dists.index.url, "gamma", env=env)
    assert plain.returncode == 1
    for result in results:
        assert result.returncode == 1, result.output
        assert result.warnings() == []
        assert _pip_stderr(result) == _pip_stderr(plain)
    assert _cache_files(world, "wheels") == [] and _cache_files(world, "handoffs") == []
    again = world.pipguard("--python", str(world.venv("again")), "install", "--index-url", dists.index.url, "gamma")
    assert again.returncode == 0, again.output  # a later install tries again (and this time it builds)
    assert world.hooks("build_wheel", "gamma") == 3  # pipguard's failure, plain pip's failure, this one


# --- 5. builds without isolation -------------------------------------------------------------------------


def test_a_build_without_isolation_is_reused_only_where_the_same_distributions_are_installed(
    world: World, dists: Dists
) -> None:
    args = ("install", "--no-build-isolation", "--index-url", dists.index.url, "beta")
    for name in ("a", "b"):
        assert world.pipguard("--python", str(world.venv(name)), *args, env=world.another_job(name)).returncode == 0
    assert world.hooks("build_wheel", "beta") == 1
    other = world.venv("other")
    assert world.pipguard("--python", str(other), "install", "--index-url", dists.index.url, "alpha").returncode == 0
    result = world.pipguard("--python", str(other), *args, env=world.another_job("other"))
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "beta") == 2
