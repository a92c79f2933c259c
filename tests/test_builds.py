"""Source builds through the locked cache: N processes, one build (issue: pipguard core)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Dists, Process, World
from support.processes import Crew, Gate, holder_awaited_by, install_args, install_cmd, status, wait_for


def test_eight_concurrent_installs_of_one_sdist_build_once(any_pip_world: World, dists: Dists) -> None:
    w = any_pip_world
    venvs = [w.venv(f"v{i}") for i in range(8)]
    results = w.run_parallel(
        [install_cmd(w, v, dists.index.url, "slowpkg") for v in venvs],
        env={"FIXTURE_BUILD_SECONDS": "2"},
    )
    assert [r.returncode for r in results] == [0] * 8, [r.output for r in results if r.returncode]
    assert w.hooks("build_wheel", "slowpkg") == 1
    assert w.hooks("prepare_metadata_for_build_wheel", "slowpkg") <= 1
    for venv in venvs:
        assert (w.site_packages(venv) / "slowpkg" / "__init__.py").is_file()
        assert w.module_version(venv, "slowpkg") == "1.0"
    waited = [r for r in results if "reusing the wheel" in r.stderr]
    assert len(waited) + sum("built slowpkg" in r.stderr for r in results) == 8


def test_later_installs_reuse_the_wheel_without_building(world: World, dists: Dists) -> None:
    first, second = world.venv("first"), world.venv("second")
    assert world.pipguard(*install_args(first, dists.index.url, "alpha")).returncode == 0
    again = world.pipguard(*install_args(second, dists.index.url, "alpha"))
    assert again.returncode == 0, again.output
    assert world.hooks("build_wheel", "alpha") == 1
    assert "Using cached alpha-1.0-py3-none-any.whl" in again.stdout


def test_transitive_sdist_of_a_wheel_goes_through_the_cache(world: World, dists: Dists) -> None:
    venvs = [world.venv(f"v{i}") for i in range(3)]
    results = world.run_parallel(
        [install_cmd(world, v, dists.index.url, "toppkg") for v in venvs]
    )
    assert all(r.returncode == 0 for r in results), [r.output for r in results]
    assert world.hooks("build_wheel", "leafpkg") == 1
    assert world.hooks("build_wheel", "toppkg") == 0
    for venv in venvs:
        assert (world.site_packages(venv) / "leafpkg").is_dir()


def test_eight_concurrent_installs_of_one_local_tree(world: World, tree) -> None:  # type: ignore[no-untyped-def]
    venvs = [world.venv(f"v{i}") for i in range(8)]
    results = world.run_parallel(
        [world.pipguard_cmd("--python", str(v), "install", "--no-index", str(tree)) for v in venvs],
        env={"FIXTURE_BUILD_SECONDS": "1"},
    )
    assert [r.returncode for r in results] == [0] * 8, [r.output for r in results if r.returncode]
    assert world.hooks("build_wheel", "treepkg") == 1
    # An edit changes the tree's fingerprint: the next install rebuilds.
    (tree / "treepkg" / "added.py").write_text("X = 1\n")
    again = world.pipguard("--python", str(venvs[0]), "install", "--no-index", "--force-reinstall", str(tree))
    assert again.returncode == 0, again.output
    assert world.hooks("build_wheel", "treepkg") == 2
    assert (world.site_packages(venvs[0]) / "treepkg" / "added.py").is_file()


def _second_starts_while_first_is_held(
    world: World, crew: Crew, gate: Gate, commands: list[list[str]]
) -> tuple[Process, Process]:
    """Start the first command and wait until its build is held at the gate, then start the second.

    From then on the first is inside its build for as long as the test keeps the gate shut: whatever the
    second does meanwhile happens during that build, with no timing involved."""
    first = crew.start(commands[0], "first", env=gate.env)
    gate.wait_started(1, "the first build to be held at the gate", explain=first.stderr_so_far)
    return first, crew.start(commands[1], "second", env=gate.env)


def _second_waits_for_first(world: World, gate: Gate, first: Process, second: Process) -> None:
    """The second is seen waiting for the lock the first holds, and never reaches a build of its own meanwhile
    (if it does, the builds overlap: fail at once rather than at the deadline)."""

    def waiting() -> bool:
        assert len(gate.started()) == 1, f"two builds of one tree at once: {gate.started()}"
        return holder_awaited_by(world, second.popen.pid) == first.popen.pid

    wait_for(
        waiting,
        f"pid {second.popen.pid} to wait for the lock held by pid {first.popen.pid}",
        explain=lambda: f"status: {status(world)}\nsecond stderr: {second.stderr_so_far()}",
    )


def _tree_installs(world: World, venvs: list[Path], tree: Path, tool: str, *options: str) -> list[list[str]]:
    """An install of ``tree`` into each of ``venvs``, by ``pip`` or ``pipguard``."""
    command = world.pip_cmd if tool == "pip" else world.pipguard_cmd
    return [command("--python", str(venv), "install", "--no-index", *options, str(tree)) for venv in venvs]


def test_plain_pip_fails_where_pipguard_succeeds_on_one_tree(
    world: World, tree: Path, crew: Crew, gate: Gate
) -> None:
    """The setuptools#3119 race, with plain pip and with pipguard on the same schedule.

    The fixture backend claims its in-tree scratch directory before it stops at the gate, as setuptools
    claims ``build/`` when a build starts. While one build of the tree is held there, a second plain pip
    fails on the tree at once; a second pipguard waits for the tree's lock, then reuses the wheel."""
    plain = _tree_installs(world, [world.venv("plain-0"), world.venv("plain-1")], tree, "pip")
    first, second = _second_starts_while_first_is_held(world, crew, gate, plain)
    collided = second.wait()
    assert collided.returncode != 0
    assert "File exists" in collided.output
    gate.open()
    held = first.wait()
    assert held.returncode == 0, held.output

    gate.reset()
    builds_before = world.hooks("build_wheel", "treepkg")
    guarded = _tree_installs(world, [world.venv("guarded-0"), world.venv("guarded-1")], tree, "pipguard")
    first, second = _second_starts_while_first_is_held(world, crew, gate, guarded)
    _second_waits_for_first(world, gate, first, second)
    gate.open()
    results = [first.wait(), second.wait()]
    assert [r.returncode for r in results] == [0, 0], [r.output for r in results]
    assert world.hooks("build_wheel", "treepkg") == builds_before + 1


def test_editable_installs_of_one_tree_are_locked(world: World, tree: Path, crew: Crew, gate: Gate) -> None:
    """While one editable build of a tree is held at the gate, a second install of that tree waits for its
    lock instead of building in the same tree; both then install (editables are locked, never cached)."""
    venvs = [world.venv("v0"), world.venv("v1")]
    editables = _tree_installs(world, venvs, tree, "pipguard", "-e")
    first, second = _second_starts_while_first_is_held(world, crew, gate, editables)
    _second_waits_for_first(world, gate, first, second)
    gate.open()
    results = [first.wait(), second.wait()]
    assert [r.returncode for r in results] == [0, 0], [r.output for r in results]
    assert world.hooks("build_editable", "treepkg") == 2
    for venv in venvs:
        direct = next(world.site_packages(venv).glob("treepkg-1.0.dist-info")) / "direct_url.json"
        assert json.loads(direct.read_text())["dir_info"] == {"editable": True}


def test_vcs_requirement_pinned_to_a_commit_builds_once(world: World, tree) -> None:  # type: ignore[no-untyped-def]
    git = ["git", "-C", str(tree), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        assert world.run([*git, *args]).returncode == 0
    commit = world.run([*git, "rev-parse", "HEAD"]).stdout.strip()
    requirement = f"treepkg @ git+file://{tree}@{commit}"
    venvs = [world.venv(f"v{i}") for i in range(3)]
    results = world.run_parallel(
        [world.pipguard_cmd("--python", str(v), "install", "--no-index", requirement) for v in venvs]
    )
    assert [r.returncode for r in results] == [0] * 3, [r.output for r in results]
    assert world.hooks("build_wheel", "treepkg") == 1
    assert any(f"git+file://{tree}@{commit}" in r.stderr for r in results)  # spelt as the user spelt it
    plain = world.venv("plain")
    assert world.pip("--python", str(plain), "install", "--no-index", requirement).returncode == 0

    def direct_url(venv):  # type: ignore[no-untyped-def]
        return json.loads((world.site_packages(venv) / "treepkg-1.0.dist-info" / "direct_url.json").read_text())

    assert direct_url(venvs[0]) == direct_url(plain)
    assert direct_url(plain)["vcs_info"]["commit_id"] == commit


def test_a_vcs_revision_that_names_a_branch_is_never_cached(world: World, tree) -> None:  # type: ignore[no-untyped-def]
    """A 40-hex revision may be a branch's name: pip checks the checkout before it caches, and so does
    pipguard (the next job builds again, as with plain pip)."""
    git = ["git", "-C", str(tree), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    branch = "a" * 40
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"], ["branch", branch]):
        assert world.run([*git, *args]).returncode == 0
    requirement = f"treepkg @ git+file://{tree}@{branch}"
    for job in ("first", "second"):
        venv = world.venv(job)
        result = world.pipguard("--python", str(venv), "install", "--no-index", requirement, env=world.another_job(job))
        assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "treepkg") == 2
    assert "treepkg" not in world.cached_projects()


def test_a_failing_build_is_reported_as_pip_reports_it_and_built_once(world: World, dists: Dists) -> None:
    """The cache's build fails: pip's own error block and exit code, no warning, and no second build."""
    venv = world.venv("v")
    env = {"FIXTURE_FAIL_BUILD": "alpha"}
    guarded = world.pipguard("--python", str(venv), "install", "--index-url", dists.index.url, "alpha", env=env)
    assert world.hooks("build_wheel", "alpha") == 1
    plain = world.pip("--python", str(world.venv("p")), "install", "--index-url", dists.index.url, "alpha", env=env)
    assert guarded.returncode == plain.returncode == 1
    assert guarded.warnings() == []
    assert guarded.error_lines() == plain.error_lines()
    assert "error: subprocess-exited-with-error" in guarded.stderr
    assert "FIXTURE_FAIL_BUILD: refusing to build alpha" in guarded.stderr
    assert not any(world.store.wheels.rglob("*.whl"))
