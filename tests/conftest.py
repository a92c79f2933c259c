"""Shared fixtures: real pipguard and pip processes, real venvs, sdists built by an in-tree backend, an
HTTP index on 127.0.0.1. Expensive things (sdists, the index) are built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pipguard.store import Store
from support.envs import clean_env, make_venv, venv_site_packages
from support.hooklog import count
from support.index import IndexServer
from support.processes import Crew, Gate, install_args
from support.projects import make_project, make_sdist

NEWEST_PYTHON = Path(sys.executable)
OLDEST_PYTHON = Path(os.environ["PIPGUARD_TEST_OLDEST_PYTHON"]) if os.environ.get("PIPGUARD_TEST_OLDEST_PYTHON") else None
TIMEOUT = 300
PIPGUARD_WARNING = "pipguard: warning:"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        """pip's ``ERROR:`` lines, wherever printed: what must match plain pip's when both fail."""
        return [line for line in self.output.splitlines() if line.startswith("ERROR:")]

    def warnings(self) -> list[str]:
        """pipguard's own warning lines on stderr."""
        return [line for line in self.stderr.splitlines() if line.startswith(PIPGUARD_WARNING)]


@dataclass
class World:
    """One test's private world: cache, hook log, venvs, and how to run pipguard and plain pip in it."""

    root: Path
    python: Path
    cache: Path
    hook_log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        """The cache's layout, as pipguard itself defines it (the one place tests learn where things are)."""
        return Store(self.cache)

    def another_job(self, name: str) -> dict[str, str]:
        """The environment of another job on this machine (a fresh CI runner, a container build): pip's
        own cache is its own, pipguard's is shared, so whatever it reuses comes from pipguard's cache."""
        return {"PIP_CACHE_DIR": str(self.root / f"pip-cache-{name}")}

    def cached_projects(self) -> set[str]:
        """The projects whose wheels pipguard's cache holds: what shows an install went through pipguard
        (a build that nobody waited for prints nothing of pipguard's, as plain pip's would not)."""
        return {entry.wheel.name.split("-", 1)[0] for entry in self.store.entries()}

    def venv(self, name: str) -> Path:
        path = self.root / "venvs" / name
        make_venv(path)
        return path

    def site_packages(self, venv: Path) -> Path:
        return venv_site_packages(venv)

    def pipguard_cmd(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "pipguard", *args]

    def pip_cmd(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "pip", *args]

    def run(self, cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        proc = subprocess.run(
            list(cmd),
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def pipguard(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.run(self.pipguard_cmd(*args), env=env)

    def pip(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.run(self.pip_cmd(*args), env=env)

    def start(
        self, cmd: Sequence[str], name: str, env: dict[str, str] | None = None, own_group: bool = False
    ) -> Process:
        """Start a process with output in files (pipes of many processes could fill and block).

        ``own_group`` puts it in a process group of its own, so a test can kill the whole job
        (pipguard, its pip child, the build backend) at once."""
        out = self.root / "logs" / f"{name}.out"
        out.parent.mkdir(exist_ok=True)
        stdout = open(out, "w")
        stderr = open(out.with_suffix(".err"), "w")
        popen = subprocess.Popen(
            list(cmd),
            env={**self.env, **(env or {})},
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=own_group,
        )
        stdout.close()
        stderr.close()
        return Process(popen, out, out.with_suffix(".err"))

    def run_parallel(self, cmds: Sequence[Sequence[str]], env: dict[str, str] | None = None) -> list[Result]:
        """Start every command at once, then wait for all of them."""
        procs = [self.start(cmd, f"parallel-{i}", env=env) for i, cmd in enumerate(cmds)]
        return [p.wait() for p in procs]

    def hooks(self, hook: str, project: str | None = None) -> int:
        return count(self.hook_log, hook, project)

    def module_version(self, venv: Path, module: str) -> str:
        """``module.VERSION`` as the venv's own interpreter imports it: what really got installed."""
        check = self.run([str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.VERSION)"])
        assert check.returncode == 0, check.output
        return check.stdout.strip()

    def cache_files_containing(self, needle: bytes) -> list[Path]:
        """Every file under the cache whose bytes contain ``needle`` (a secret that must never be kept)."""
        hits = []
        for directory, _dirs, files in os.walk(self.cache):
            for name in files:
                path = Path(directory) / name
                try:
                    if needle in path.read_bytes():
                        hits.append(path)
                except OSError:
                    continue  # a file that vanished mid-walk (a record replaced, a temp dir cleaned)
        return hits


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def wait(self, timeout: float = TIMEOUT) -> Result:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise
        return Result(code, self.stdout_path.read_text(), self.stderr_path.read_text())

    def stderr_so_far(self) -> str:
        return self.stderr_path.read_text()


def _world(tmp_path: Path, python: Path) -> World:
    cache = tmp_path / "cache"
    log = tmp_path / "hooks.jsonl"
    env = clean_env(
        PIPGUARD_CACHE_DIR=str(cache),
        PIP_CACHE_DIR=str(tmp_path / "pip-cache"),
        FIXTURE_HOOK_LOG=str(log),
        PIPGUARD_PROGRESS="plain",
    )
    return World(root=tmp_path, python=python, cache=cache, hook_log=log, env=env)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return _world(tmp_path, NEWEST_PYTHON)


@pytest.fixture
def crew(world: World) -> Iterator[Crew]:
    """Processes and gates of one test: nothing it started outlives it, pass or fail."""
    started = Crew(world)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def gate(crew: Crew) -> Gate:
    """A build gate in the test's world, opened at teardown."""
    return crew.gate()


def _pythons() -> list[object]:
    missing = pytest.mark.skipif(OLDEST_PYTHON is None, reason="set PIPGUARD_TEST_OLDEST_PYTHON (bin/test does)")
    oldest = pytest.param(OLDEST_PYTHON, id="oldest-pip", marks=missing)
    return [pytest.param(NEWEST_PYTHON, id="newest-pip"), oldest]


@pytest.fixture(params=_pythons())
def any_pip_world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """A world run once with the newest and once with the oldest supported pip."""
    return _world(tmp_path, request.param)


@dataclass(frozen=True)
class Dists:
    """Sdists built once per session, served by an HTTP index on 127.0.0.1."""

    directory: Path
    index: IndexServer
    trees: Path

    def sdist(self, name: str) -> Path:
        return next(self.directory.glob(f"{name.replace('-', '_')}-*.tar.gz"))


# name, version, dependencies
SESSION_PROJECTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("slowpkg", "1.0", ()),
    ("leafpkg", "2.0", ()),
    ("midpkg", "1.0", ("leafpkg>=2",)),
    ("extrapkg", "1.0", ('leafpkg; extra == "more"',)),
    ("alpha", "1.0", ()),
    ("beta", "1.0", ()),
    ("gamma", "1.0", ()),
)


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    root = tmp_path_factory.mktemp("dists")
    trees = root / "trees"
    directory = root / "dists"
    for name, version, deps in SESSION_PROJECTS:
        make_sdist(make_project(trees, name, version, dependencies=list(deps)), directory)
    # A wheel-only project that needs an sdist-only one: the transitive case.
    top = make_project(trees, "toppkg", "1.0", dependencies=["leafpkg>=2"])
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "-w", str(directory), str(top)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    with IndexServer(directory) as index:
        yield Dists(directory=directory, index=index, trees=trees)


@pytest.fixture
def with_alpha(world: World, dists: Dists) -> Path:
    """A venv with alpha installed (by pipguard), which also leaves alpha's wheel in the cache."""
    venv = world.venv("target")
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha"))
    assert result.returncode == 0, result.output
    return venv


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh local source tree of its own (a test may edit it)."""
    return make_project(tmp_path / "src", "treepkg", "1.0")


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
