"""A build environment is made once: pip's install of a build's requirements into its isolated prefix is
kept in pipguard's cache and copied into later builds' prefixes, never stale, never shared by reference.

Each test has an index of its own on 127.0.0.1 serving ``helperpkg`` (a wheel, the build requirement) and
sdists whose pyproject requires it. Jobs are separate processes with pip caches of their own
(``World.another_job``), so a download the index counts is one pip's own install would have made.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Process, Result, World
from support.hooklog import read_hooks
from support.index import IndexServer
from support.output import masked
from support.processes import Crew, Gate, install_args, wait_for, waiting_pids
from support.projects import make_project, make_sdist, make_wheel
from support.versions import OLDEST_PIP

REQUIREMENT = "helperpkg>=1"
HELPER = "helperpkg"


@dataclass
class Site:
    """The test's own index: its directory (a test may publish a release there) and the server."""

    directory: Path
    index: IndexServer

    def release(self, version: str) -> None:
        make_wheel(self.directory, HELPER, version)

    def downloads(self, version: str) -> int:
        return self.index.hits.get(f"/files/{HELPER}-{version}-py3-none-any.whl", 0)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    directory = tmp_path / "index"
    trees = tmp_path / "trees"
    for name in ("usera", "userb", "userc"):
        make_sdist(make_project(trees, name, build_requires=[REQUIREMENT]), directory)
    make_wheel(directory, HELPER, "1.0")
    with IndexServer(directory) as index:
        yield Site(directory, index)


def _install(world: World, site: Site, job: str, name: str, *options: str, env: dict[str, str] | None = None) -> Result:
    venv = world.venv(f"{job}-{name}")
    result = world.pipguard(*install_args(venv, site.index.url, name, options=options), env={**world.another_job(job), **(env or {})})
    assert result.returncode == 0, result.output
    return result


def _seen_by(world: World, project: str) -> set[str | None]:
    """The versions of the build requirement the project's hooks imported."""
    return {record["sees"][HELPER] for record in read_hooks(world.hook_log) if record["project"] == project}


def test_two_builds_with_the_same_build_requirements_install_them_once(
    any_pip_world: World, site: Site, crew: Crew, gate: Gate
) -> None:
    world = any_pip_world
    first = _install(world, site, "one", "usera")
    [kept] = world.store.env_entries()  # kept as pip installed it: one build alone never waits for a compile
    assert kept.manifest["compiled"] is False and not list(kept.wheel.rglob("*.pyc"))
    # The first reuse compiles it beside its build: held at the gate until the compiled entry is in place.
    cmd = world.pipguard_cmd(*install_args(world.venv("two-userb"), site.index.url, "userb"))
    second_run = crew.start(cmd, "two", {**world.another_job("two"), **gate.env})
    gate.wait_started(1, "userb's build", explain=second_run.stderr_so_far)
    [compiled] = wait_for(lambda: [e for e in world.store.env_entries() if e.manifest["compiled"]], "the compiled entry")
    gate.open()
    second = second_run.wait()
    assert second.returncode == 0, second.output
    assert site.downloads("1.0") == 1  # the second job's pip would have downloaded it again into its own cache
    assert _seen_by(world, "usera") == _seen_by(world, "userb") == {"1.0"}
    assert world.store.env_entries() == [compiled]
    module = next(compiled.wheel.rglob(f"{HELPER}/__init__.py"))
    pycs = list((module.parent / "__pycache__").glob("__init__.*.pyc"))
    assert len(pycs) == 1 and pycs[0].read_bytes()[8:12] == int(module.stat().st_mtime).to_bytes(4, "little")
    for result in (first, second):
        assert "Installing build dependencies: finished with status 'done'" in result.stdout
        assert result.stderr == ""


def test_builds_that_wait_for_an_environment_get_it_compiled_by_the_one_that_makes_it(world: World, site: Site, crew: Crew) -> None:
    """Two jobs need one environment at once: the one that installs it compiles it before it is kept (its
    own hooks and the waiter's then import bytecode, where each interpreter would compile setuptools)."""
    # The build requirement's index page is answered, the first time, once the other job waits for the
    # environment's lock (later asks of the page are answered at once).
    page = f"/simple/{HELPER}/"
    site.index.hold(page, lambda: site.index.hits[page] > 1 or bool(waiting_pids(world)))
    runs = [
        crew.start(world.pipguard_cmd(*install_args(world.venv(f"{job}-{name}"), site.index.url, name)), job,
                   world.another_job(job))
        for job, name in (("one", "usera"), ("two", "userb"))
    ]
    results = [run.wait() for run in runs]
    for result in results:
        assert result.returncode == 0, results[0].output + "\n=====\n" + results[1].output
        assert "Installing build dependencies: finished with status 'done'" in result.stdout
    assert site.index.held_until_met[page] is True
    assert site.downloads("1.0") == 1
    assert _seen_by(world, "usera") == _seen_by(world, "userb") == {"1.0"}
    hooks = [r for r in read_hooks(world.hook_log) if r["project"] in ("usera", "userb")]
    assert {r["project"] for r in hooks} == {"usera", "userb"}
    assert all(r["bytecode"][HELPER] for r in hooks), hooks  # the maker's own hooks, and the waiter's
    [kept] = world.store.env_entries()
    assert kept.manifest["compiled"] is True
    module = next(kept.wheel.rglob(f"{HELPER}/__init__.py"))
    pycs = list((module.parent / "__pycache__").glob("__init__.*.pyc"))
    assert len(pycs) == 1 and pycs[0].read_bytes()[8:12] == int(module.stat().st_mtime).to_bytes(4, "little")


def test_a_reuse_shows_pips_own_step_and_at_v_says_what_it_reused(world: World, site: Site) -> None:
    _install(world, site, "one", "usera")
    verbose = _install(world, site, "two", "userb", "-v")
    assert "pipguard: reused the build environment" in verbose.stdout and f"({HELPER}-1.0)" in verbose.stdout
    assert "Running command installing build dependencies" not in verbose.stdout  # no second pip ran
    assert site.downloads("1.0") == 1


def test_a_build_that_writes_into_its_environment_leaves_the_kept_one_as_it_was(world: World, site: Site) -> None:
    _install(world, site, "one", "usera", env={"FIXTURE_SCRIBBLE_BUILD_ENV": "1"})
    scribbler = [r for r in read_hooks(world.hook_log) if r["project"] == "usera"]
    assert scribbler[-1]["hook"] == "build_wheel_end" and scribbler[-1]["sees"][HELPER] == "scribbled"
    _install(world, site, "two", "userb", env={"FIXTURE_SCRIBBLE_BUILD_ENV": "1"})
    _install(world, site, "three", "userc")
    for project in ("userb", "userc"):
        hooks = [r for r in read_hooks(world.hook_log) if r["project"] == project and r["hook"] != "build_wheel_end"]
        assert {r["sees"][HELPER] for r in hooks} == {"1.0"}, hooks  # as kept, not as the build before left it
        assert {r["sees"]["scribbled_marker"] for r in hooks} == {None}
    assert site.downloads("1.0") == 1 and len(world.store.env_entries()) == 1


def test_builds_asking_for_one_file_with_other_specifiers_share_its_environment(world: World, site: Site) -> None:
    """``helperpkg>=1`` and ``helperpkg<5`` install the same file: one environment serves both; a build the
    finder would give another file (``helperpkg<1``, none at all here) is not given it."""
    make_sdist(make_project(site.directory.parent / "trees", "capped", build_requires=["helperpkg<5"]), site.directory)
    _install(world, site, "one", "usera")
    _install(world, site, "two", "capped")
    assert site.downloads("1.0") == 1 and len(world.store.env_entries()) == 1
    assert _seen_by(world, "capped") == {"1.0"}
    site.release("5.0")  # now usera's would be 5.0, capped's still 1.0: the kept one fits capped alone
    _install(world, site, "three", "capped")
    _install(world, site, "four", "userb")
    assert _seen_by(world, "userb") == {"5.0"} and site.downloads("1.0") == 1
    assert sorted(e.manifest["pins"][0]["version"] for e in world.store.env_entries()) == ["1.0", "5.0"]


def test_a_new_release_of_the_build_requirement_makes_a_new_environment(world: World, site: Site) -> None:
    _install(world, site, "one", "usera")
    site.release("2.0")
    _install(world, site, "two", "userb")
    assert _seen_by(world, "usera") == {"1.0"} and _seen_by(world, "userb") == {"2.0"}
    _install(world, site, "three", "userc")
    assert _seen_by(world, "userc") == {"2.0"} and site.downloads("2.0") == 1
    assert sorted(e.manifest["pins"][0]["version"] for e in world.store.env_entries()) == ["1.0", "2.0"]


def test_a_reused_environment_prints_exactly_what_plain_pip_prints(any_pip_world: World, site: Site) -> None:
    world = any_pip_world
    _install(world, site, "one", "usera")
    args = install_args(world.venv("guarded"), site.index.url, "userb")
    guarded = world.pipguard(*args, env=world.another_job("two"))
    plain = world.pip(*install_args(world.venv("plain"), site.index.url, "userb"), env=world.another_job("plain"))
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert masked(guarded.stdout).splitlines() == masked(plain.stdout).splitlines()
    assert guarded.stderr == plain.stderr == ""
    assert site.downloads("1.0") == 2  # the first job's, and plain pip's own


def test_no_cache_dir_and_venv_isolation_are_left_to_pip(world: World, site: Site) -> None:
    _install(world, site, "one", "usera", "--no-cache-dir")
    assert world.store.env_entries() == []
    _install(world, site, "two", "userb", "--use-feature", "venv-isolation")  # the newest pip has it
    assert world.store.env_entries() == []
    assert site.downloads("1.0") == 2


def test_kept_environments_are_counted_capped_and_purged_with_the_wheels(world: World, site: Site) -> None:
    _install(world, site, "one", "usera")
    info = json.loads(world.pipguard("guard", "cache", "info", "--json").stdout)
    assert info["build_envs"] == 1 and info["build_envs_size"] > 0
    assert world.pipguard("guard", "cache", "prune", "--max-size", "0").returncode == 0
    assert world.store.env_entries() == []  # the process that kept it is gone: nothing holds it
    _install(world, site, "two", "userb")
    purged = world.pipguard("cache", "purge")
    assert purged.returncode == 0, purged.output
    assert world.store.env_entries() == [] and site.downloads("1.0") == 2


def test_builds_that_need_one_environment_at_once_make_it_once(world: World, site: Site) -> None:
    """Whatever the timing: the first to miss installs under the environment's lock, the others wait for it
    (or come later) and copy it."""
    jobs = ["usera", "userb", "userc"]
    cmds = [world.pipguard_cmd(*install_args(world.venv(f"at-once-{name}"), site.index.url, name)) for name in jobs]
    procs = [world.start(cmd, f"at-once-{i}", env=world.another_job(f"at-once-{i}")) for i, cmd in enumerate(cmds)]
    results = [proc.wait() for proc in procs]
    assert all(result.returncode == 0 for result in results), [result.output for result in results]
    assert site.downloads("1.0") == 1 and len(world.store.env_entries()) == 1
    assert all(_seen_by(world, name) == {"1.0"} for name in jobs)


def test_an_index_token_reaches_no_file_of_a_kept_environment(world: World, tmp_path: Path) -> None:
    directory = tmp_path / "private"
    for name in ("usera", "userb"):
        make_sdist(make_project(tmp_path / "private-trees", name, build_requires=[REQUIREMENT]), directory)
    make_wheel(directory, HELPER, "1.0")
    with IndexServer(directory, auth=("ci", "s3cret-build-token")) as index:
        for job, name in (("one", "usera"), ("two", "userb")):
            venv = world.venv(f"private-{job}")
            result = world.pipguard(*install_args(venv, index.auth_url, name), env=world.another_job(job))
            assert result.returncode == 0, result.output
        assert index.hits.get(f"/files/{HELPER}-1.0-py3-none-any.whl") == 1
    assert len(world.store.env_entries()) == 1
    assert world.cache_files_containing(b"s3cret-build-token") == []


def test_a_process_others_wait_for_does_not_wait_for_an_environment(world: World, crew: Crew, site: Site) -> None:
    """The environment's lock is held (here by the test itself: whoever holds it could be waiting, through
    its second pip, for a lock this process holds); usera's install waits for it, holding userb's build lock;
    then another install waits for userb. The first must stop waiting: it installs the environment itself,
    builds userb, and the other gets it."""
    _install(world, site, "first", "usera")
    [kept] = world.store.env_entries()
    assert world.store.remove(kept)  # the key is known now; a miss again
    held = os.open(world.store.lock_path(kept.manifest["key"]), os.O_RDWR)
    crew.on_teardown(lambda: os.close(held))
    fcntl.flock(held, fcntl.LOCK_EX)

    def start(job: str) -> Process:
        cmd = world.pipguard_cmd(*install_args(world.venv(job), site.index.url, "userb"))
        return crew.start(cmd, job, env=world.another_job(job))

    needy = start("needy")
    wait_for(lambda: needy.popen.pid in waiting_pids(world), "userb's install to wait for the environment")
    waiter = start("waiter")
    needy_result, waiter_result = needy.wait(), waiter.wait()
    assert needy_result.returncode == waiter_result.returncode == 0, needy_result.output + waiter_result.output
    assert "not waiting for the build environment" in needy_result.stderr
    assert world.hooks("build_wheel", "userb") == 1


def test_builds_ahead_in_one_install_make_the_environment_once(world: World, site: Site) -> None:
    """usera, userb and userc, built ahead side by side in pipguard's build children: the first child makes
    the environment, the other two copy it (at -v each child says so where pip would show its install)."""
    venv = world.venv("ahead")
    result = world.pipguard(
        *install_args(venv, site.index.url, "usera", "userb", "userc", options=("-v",)), env={"PIPGUARD_JOBS": "3"}
    )
    assert result.returncode == 0, result.output
    assert len(world.store.env_entries()) == 1
    assert result.stdout.count("pipguard: reused the build environment") == 2
    assert all(_seen_by(world, name) == {"1.0"} for name in ("usera", "userb", "userc"))


def test_a_plain_build_environment_is_installed_here_exactly_as_the_second_pip_installs_it(
    any_pip_world: World, site: Site
) -> None:
    """Where the second pip would only fetch wheels the finder picks (no settings it alone reads, output
    nowhere), pipguard installs them itself: the index is asked for the build requirement's page once (by
    this process), and the environment holds exactly what the second pip leaves (at -v, where it runs)."""
    world = any_pip_world
    page = f"/simple/{HELPER}/"
    _install(world, site, "here", "usera")
    asked_here = site.index.hits.get(page, 0)
    other_cache = {"PIPGUARD_CACHE_DIR": str(world.root / "second-pip-cache")}
    _install(world, site, "there", "userb", "-v", env=other_cache)
    assert asked_here == 1 and site.index.hits[page] - asked_here == 2  # -v: this process, then the second pip

    def tree(cache: Path) -> dict[str, bytes]:
        [env_tree] = list(cache.glob("v1/buildenvs/*/*/*/tree"))
        return {str(p.relative_to(env_tree)): p.read_bytes() for p in sorted(env_tree.rglob("*"))
                if p.is_file() and p.suffix != ".pyc"}

    here, there = tree(world.store.root), tree(Path(other_cache["PIPGUARD_CACHE_DIR"]))
    assert any(name.endswith("REQUESTED") for name in here)
    assert here == there


def test_constraints_the_second_pip_ignores_leave_the_environment_to_this_process(any_pip_world: World, site: Site) -> None:
    """pip 26 starts the second pip with ``_PIP_IN_BUILD_IGNORE_CONSTRAINTS=1``: a ``PIP_CONSTRAINT``
    changes nothing it installs, so the environment is installed here (its page asked once, by this
    process). pip 25.3 (without ``--use-feature=build-constraint``) lets the second pip read it: it runs."""
    world = any_pip_world
    constraints = world.root / "constraints.txt"
    constraints.write_text("unrelatedpkg==1.0\n")
    page = f"/simple/{HELPER}/"
    _install(world, site, "constrained", "usera", env={"PIP_CONSTRAINT": str(constraints)})
    pip = subprocess.run([str(world.python), "-m", "pip", "--version"], capture_output=True, text=True, check=True)
    ignores = pip.stdout.split()[1] != OLDEST_PIP
    assert site.index.hits[page] == (1 if ignores else 2), pip.stdout


def test_a_blank_list_setting_leaves_the_environment_to_this_process(any_pip_world: World, site: Site) -> None:
    """``PIP_USE_FEATURE=`` and ``PIP_USE_DEPRECATED=`` (pip's own test suite sets both for every test) are
    the empty list to pip, the options' default: the environment is installed here, its page asked once.
    A value in a list setting this process does not read (``PIP_EXISTS_ACTION=i``) leaves it to the second
    pip, whose page this process asks too."""
    world = any_pip_world
    page = f"/simple/{HELPER}/"
    _install(world, site, "blank", "usera", env={"PIP_USE_FEATURE": "", "PIP_USE_DEPRECATED": " "})
    assert site.index.hits[page] == 1
    _install(world, site, "set", "userb", env={"PIP_EXISTS_ACTION": "i", "PIPGUARD_CACHE_DIR": str(world.root / "other")})
    assert site.index.hits[page] == 3
