"""One install, many sdists: the pinned ones build side by side, within PIPGUARD_JOBS and make's jobserver."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.hooklog import build_intervals, most_at_once
from support.processes import Crew, Gate, install_args, parent_pid, pid_alive, record_pids, status, wait_for
from support.projects import make_project, make_sdist
from support.terminal import on_terminal

CPU_PROJECTS = ("cpua", "cpub", "cpuc", "cpud")


@pytest.fixture
def cpu_links(world: World) -> Path:
    """A --find-links directory with four sdists of their own (so every test builds them cold)."""
    links = world.root / "links"
    for name in CPU_PROJECTS:
        make_sdist(make_project(world.root / "trees", name, "1.0"), links)
    return links


def _pinned(*names: str) -> list[str]:
    return [f"{name}==1.0" for name in names]


def _install(world: World, venv: Path, links: Path, *reqs: str) -> list[str]:
    return world.pipguard_cmd("--python", str(venv), "install", "--no-index", "--find-links", str(links), *reqs)


def _assert_each_built_once_and_imports(world: World, venvs: list[Path], names: tuple[str, ...]) -> None:
    for name in names:
        assert world.hooks("build_wheel", name) == 1, name
        for venv in venvs:
            assert world.module_version(venv, name) == "1.0"


def test_four_pinned_sdists_in_one_install_build_at_once(world: World, crew: Crew, gate: Gate, cpu_links: Path) -> None:
    """All four builds reach the backend before any may finish: they run side by side, not in turn."""
    venv = world.venv("v")
    env = {**gate.env, "PIPGUARD_JOBS": "4", "FIXTURE_BUILD_CPU_SECONDS": "0.5"}
    proc = crew.start(_install(world, venv, cpu_links, *_pinned(*CPU_PROJECTS)), "install", env)
    pids = gate.wait_started(4, "four builds held at the gate at once", explain=proc.stderr_so_far)
    assert len({parent_pid(parent_pid(pid)) for pid in pids}) == 1  # backend <- pip wheel child <- pipguard
    gate.open()
    result = proc.wait()
    assert result.returncode == 0, result.output
    assert most_at_once(build_intervals(world.hook_log)) == 4
    _assert_each_built_once_and_imports(world, [venv], CPU_PROJECTS)
    assert result.warnings() == []
    assert world.cached_projects() == set(CPU_PROJECTS)
    assert result.stderr == ""  # nobody waited: pipguard says nothing


def test_builds_side_by_side_show_as_one_live_block_on_a_terminal(
    world: World, crew: Crew, gate: Gate, cpu_links: Path
) -> None:
    """Two builds at once on a terminal: both in the live view while they run, pip's stdout untouched."""
    stdout_path = world.root / "live.out"
    cmd = _install(world, world.venv("v"), cpu_links, *_pinned("cpua", "cpub"))
    popen, reader = on_terminal(world, crew, cmd, {**gate.env, "PIPGUARD_JOBS": "2"}, stdout_path)
    gate.wait_started(2, "both builds held at the gate", explain=reader.text)
    wait_for(lambda: "building cpua" in reader.text() and "building cpub" in reader.text(), "both builds in the live view")
    assert "\x1b[" in reader.text(), "expected a live (escape-sequence) view on the terminal"
    gate.open()
    assert popen.wait(timeout=120) == 0, reader.text()
    reader.join()
    out = stdout_path.read_text()
    assert "Successfully installed" in out and "\x1b" not in out and "pipguard" not in out, out


def test_jobs_one_builds_one_at_a_time(world: World, cpu_links: Path) -> None:
    venv = world.venv("v")
    result = world.run(_install(world, venv, cpu_links, *_pinned(*CPU_PROJECTS)), env={"PIPGUARD_JOBS": "1"})
    assert result.returncode == 0, result.output
    intervals = build_intervals(world.hook_log)
    assert len(intervals) == 4 and most_at_once(intervals) == 1


def test_while_the_jobs_build_the_next_build_prepares_and_waits_for_a_job_before_its_backend(
    world: World, crew: Crew, gate: Gate, cpu_links: Path
) -> None:
    """PIPGUARD_JOBS=2, three builds ahead: while two hold the jobs (their backends held at the gate), the
    third's child starts and prepares (unpacks, makes its build environment) without a job, then waits
    for one at its gate with its backend not started; no more than two backends ever run at once."""
    venv = world.venv("v")
    names = ("cpua", "cpub", "cpuc")
    proc = crew.start(_install(world, venv, cpu_links, *_pinned(*names)), "install", {**gate.env, "PIPGUARD_JOBS": "2"})
    gate.wait_started(2, "two builds held at the gate", explain=proc.stderr_so_far)

    def phases() -> list[str]:
        return sorted(lock["holder"]["phase"] for lock in status(world)["locks"] if lock["holder"])

    wait_for(lambda: phases() == ["building", "building", "waiting for a job"], "the third build prepared, waiting for a job",
             explain=lambda: f"{phases()}\n{proc.stderr_so_far()}")
    assert len(gate.started()) == 2  # the waiting build's backend has not run
    gate.open()
    result = proc.wait()
    assert result.returncode == 0, result.output
    assert most_at_once(build_intervals(world.hook_log)) == 2
    _assert_each_built_once_and_imports(world, [venv], names)
    assert result.stderr == ""


def test_an_invalid_jobs_value_warns_once_and_builds_anyway(world: World, cpu_links: Path) -> None:
    result = world.run(_install(world, world.venv("v"), cpu_links, *_pinned("cpua", "cpub")), env={"PIPGUARD_JOBS": "many"})
    assert result.returncode == 0, result.output
    assert result.warnings() == ["pipguard: warning: ignoring PIPGUARD_JOBS='many': not a whole number of builds, 1 or more"]


def test_a_pinned_sdist_excluded_by_a_marker_is_never_built_or_installed(world: World, dists: Dists) -> None:
    venv = world.venv("v")
    reqs = world.root / "reqs.txt"
    reqs.write_text('alpha==1.0; python_version < "3"\nbeta==1.0\n')
    result = world.pipguard(*install_args(venv, dists.index.url, "-r", str(reqs)))
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "alpha") == 0
    assert not list(world.site_packages(venv).glob("alpha*"))
    assert world.module_version(venv, "beta") == "1.0"


def test_a_pinned_sdist_already_installed_at_that_version_is_not_built_ahead(world: World, dists: Dists) -> None:
    """pip keeps an installed distribution that satisfies the pin: building it ahead would be wasted."""
    venv = world.venv("v")
    assert world.pipguard(*install_args(venv, dists.index.url, "alpha==1.0")).returncode == 0
    fresh_cache = {"PIPGUARD_CACHE_DIR": str(world.root / "fresh-cache")}
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha==1.0", "beta==1.0"), env=fresh_cache)
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "alpha") == 1 and world.hooks("build_wheel", "beta") == 1


def test_a_failing_background_build_fails_as_plain_pip(world: World, dists: Dists) -> None:
    env = {"FIXTURE_FAIL_BUILD": "gamma"}
    args = ("install", "--index-url", dists.index.url, "alpha==1.0", "gamma==1.0")
    guarded = world.pipguard("--python", str(world.venv("g")), *args, env=env)
    plain = world.pip("--python", str(world.venv("p")), *args, env=env)
    assert guarded.returncode == plain.returncode == 1, guarded.output
    assert guarded.warnings() == []
    assert guarded.error_lines() == plain.error_lines()
    assert _summary(guarded) == _summary(plain) != []
    assert "FIXTURE_FAIL_BUILD: refusing to build gamma" in guarded.stderr
    assert world.hooks("build_wheel", "gamma") == 2  # pipguard's one build, plain pip's one
    assert not list(world.site_packages(world.root / "venvs" / "g").glob("gamma*"))


def _summary(result: Result) -> list[str]:
    """pip's closing error block: the lines from its last error headline on (pipguard's own lines left out)."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("pipguard:")]
    starts = [i for i, line in enumerate(lines) if line.startswith(("ERROR:", "error:"))]
    return lines[starts[-1] :] if starts else []


def test_processes_with_overlapping_sets_build_each_sdist_once(world: World, crew: Crew, cpu_links: Path) -> None:
    sets = [("cpua", "cpub", "cpuc"), ("cpub", "cpuc", "cpud"), ("cpuc", "cpud", "cpua"), CPU_PROJECTS]
    venvs = [world.venv(f"v{i}") for i in range(len(sets))]
    env = {"FIXTURE_BUILD_SECONDS": "0.5"}
    procs = [crew.start(_install(world, v, cpu_links, *_pinned(*s)), f"p{i}", env) for i, (v, s) in enumerate(zip(venvs, sets))]
    results = [p.wait() for p in procs]
    assert [r.returncode for r in results] == [0] * len(sets), [r.output for r in results if r.returncode]
    for name in CPU_PROJECTS:
        assert world.hooks("build_wheel", name) == 1, name
    for venv, names in zip(venvs, sets):
        for name in names:
            assert world.module_version(venv, name) == "1.0"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_stops_every_build_and_leaves_nothing(
    world: World, crew: Crew, gate: Gate, cpu_links: Path, signum: int
) -> None:
    venv = world.venv("v")
    proc = crew.start(_install(world, venv, cpu_links, *_pinned(*CPU_PROJECTS)), "install", {**gate.env, "PIPGUARD_JOBS": "4"})
    backends = gate.wait_started(4, "four builds held at the gate", explain=proc.stderr_so_far)
    children = {parent_pid(pid) for pid in backends}
    proc.popen.send_signal(signum)  # to pipguard alone, as a supervisor would send it
    result = proc.wait(timeout=60)
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    assert not [pid for pid in children if pid_alive(pid)], "a build child outlived the interrupted install"
    assert record_pids(world.cache, unfinished=True) == set()
    assert list((world.cache / "v1" / "tmp").glob("build-*")) == []
    assert not list((world.cache / "v1" / "wheels").rglob("*.whl"))
    assert not list((world.cache / "v1" / "handoffs").rglob("outcome.json"))
    assert not list(world.site_packages(venv).glob("cpu*"))


# --- make's jobserver ------------------------------------------------------------------------------


MAKEFILE = """\
all: install {blocker}

install:
\t+{command}
\ttouch installed

blocker:
\twhile [ ! -f installed ]; do sleep 0.05; done
"""


def _make(world: World, links: Path, jobs: int, with_blocker: bool) -> list[tuple[str, float, float]]:
    """Run the install as a recipe of a real ``make -jN`` (``+``: make shares its jobserver with it).

    ``blocker`` is a second job that holds its token until the install is done, so the install has only
    the token make gave its own job."""
    venv = world.venv("v")
    command = " ".join(_install(world, venv, links, *_pinned(*CPU_PROJECTS)))
    (world.root / "Makefile").write_text(MAKEFILE.format(command=command, blocker="blocker" if with_blocker else ""))
    env = {"PIPGUARD_JOBS": "4", "FIXTURE_BUILD_SECONDS": "1"}
    result = world.run(["make", f"-j{jobs}", "--no-print-directory"], env=env, cwd=world.root)
    assert result.returncode == 0, result.output
    assert result.warnings() == []
    _assert_each_built_once_and_imports(world, [venv], CPU_PROJECTS)
    return build_intervals(world.hook_log)


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


@needs_make
def test_make_with_one_token_for_the_install_builds_one_at_a_time(world: World, cpu_links: Path) -> None:
    intervals = _make(world, cpu_links, jobs=2, with_blocker=True)
    assert len(intervals) == 4 and most_at_once(intervals) == 1


@needs_make
def test_make_with_two_tokens_for_the_install_builds_two_at_a_time(world: World, cpu_links: Path) -> None:
    intervals = _make(world, cpu_links, jobs=2, with_blocker=False)
    assert len(intervals) == 4 and most_at_once(intervals) == 2
