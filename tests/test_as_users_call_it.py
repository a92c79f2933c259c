"""pipguard the way users call it: the README's Quickstart and recipes, run as written (with a local index in
place of PyPI and pipguard installed offline, as pipx lays it out), `guard shims`, and a pip outside the
tested range."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pipguard.display import CONTINUATION
from conftest import Dists, Result, World
from support.envs import clean_env
from support.versions import BELOW_RANGE_PIP
from support.processes import Crew, Gate, install_args, status, wait_for
from support.toolenv import pipx_pipguard  # noqa: F401 - a fixture
from support.toolenv import Tool, base_python_dir, install_pipguard, no_machine_pip, pipguard_wheel

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def readme_block(label: str) -> str:
    """The first fenced code block after ``label`` in the README, as a user would copy it."""
    found = re.search(re.escape(label) + r".*?```[a-z]*\n(.*?)```", README, re.S)
    assert found, f"no code block after {label!r} in README.md"
    return found.group(1)


def _requirements(directory: Path, name: str, index_url: str, *projects: str) -> None:
    """A requirements file whose first line points pip at the test index (the README's files name PyPI's)."""
    (directory / name).write_text("\n".join([f"--index-url {index_url}", *projects]) + "\n")


def _system_python(world: World) -> Path:
    """A directory holding only a python3 that is no virtualenv and has no pipguard: a system python3."""
    directory = world.root / "system-bin"
    return directory if directory.exists() else base_python_dir(directory)


def _user_path(world: World, tool: Tool, *first: Path) -> str:
    """PATH of a user with pipguard from pipx and a system python3 (after ``first``), and nothing else of ours."""
    guard = no_machine_pip(world.root / "no-machine-pip")
    parts = [*map(str, first), str(_system_python(world)), str(tool.bin_dir), str(guard), os.environ["PATH"]]
    return os.pathsep.join(parts)


def _lines(result: Result, start: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(start)]


def test_quickstart_shows_one_build_and_the_others_waiting(
    world: World, dists: Dists, crew: Crew, gate: Gate, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The Quickstart's first command (after installing pipguard into .venv): three installs, one build."""
    first = readme_block("## Quickstart").splitlines()[0]
    assert ".venv/bin/pip install -q . && " in first
    command = first.split(".venv/bin/pip install -q . && ", 1)[1]
    command = command.replace("six", f"--index-url {dists.index.url} slowpkg")
    project = world.root / "checkout"
    install_pipguard(project / ".venv", pipguard_wheel(tmp_path_factory.mktemp("wheel")))
    env = {**gate.env, "PATH": os.pathsep.join([str(_system_python(world)), os.environ["PATH"]])}
    run = crew.start(["sh", "-c", f"cd {project} && {command}"], "quickstart", env=env, own_group=True)

    def one_holder_two_waiters() -> bool:
        locks = status(world)["locks"]
        return len(locks) == 1 and locks[0]["holder"] is not None and len(locks[0]["waiters"]) == 2

    wait_for(one_holder_two_waiters, "one build and two waiters", explain=run.stderr_so_far)
    gate.open()
    result = run.wait()
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "slowpkg") == 1
    assert len(_lines(result, "pipguard: built slowpkg")) == 1, result.stderr
    assert len(_lines(result, "pipguard: waited")) == 2, result.stderr
    assert all("reusing the wheel" in line for line in _lines(result, "pipguard: waited")), result.stderr
    for i in "123":
        assert (world.site_packages(project / "demo-env" / i) / "slowpkg").is_dir()
    # Headlines fit 120 columns; detail lines (a holder's command, its environment) are allowed to run on.
    assert not [line for line in _lines(result, "pipguard:") if not line.startswith(CONTINUATION) and len(line) > 120]


@needs_make
def test_readme_makefile_make_j3_in_a_fresh_directory(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    """The README's Makefile, verbatim, in a directory of its own: `guard shims` puts pipguard behind `pip`."""
    project = world.root / "project"
    project.mkdir()
    (project / "Makefile").write_text(readme_block("**Makefile.**"))
    for name in "abc":
        _requirements(project, f"requirements-{name}.txt", dists.index.url, "slowpkg", "midpkg")
    env = {"PATH": _user_path(world, pipx_pipguard), "FIXTURE_BUILD_SECONDS": "1"}
    result = world.run(["make", "-j3", "envs"], env=env, cwd=project)
    assert result.returncode == 0, result.output
    for name in "abc":
        site = world.site_packages(project / ".venvs" / name)
        assert {"slowpkg", "midpkg", "leafpkg"} <= {p.name for p in site.iterdir()}
    for built in ("slowpkg", "midpkg", "leafpkg"):
        assert world.hooks("build_wheel", built) == 1
    assert not pipx_pipguard.has("slowpkg")
    assert {"slowpkg", "midpkg", "leafpkg"} <= world.cached_projects()  # `pip` was pipguard
    # Under make -j the display is plain lines, never a live view, whatever the terminal.
    assert "\x1b[" not in result.stderr


def test_readme_bootstrap_script(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    project = world.root / "project"
    project.mkdir()
    (project / "bootstrap.sh").write_text(readme_block("**Bootstrap script.**"))
    _requirements(project, "requirements.txt", dists.index.url, "midpkg")
    result = world.run(["sh", "-e", "bootstrap.sh"], env={"PATH": _user_path(world, pipx_pipguard)}, cwd=project)
    assert result.returncode == 0, result.output
    assert {"midpkg", "leafpkg"} <= {p.name for p in world.site_packages(project / ".venv").iterdir()}
    assert not pipx_pipguard.has("midpkg")


def test_readme_ci_job(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    """The CI job's steps: pipx installs pipguard (done here offline), then the script step runs as written."""
    job = readme_block("**CI job**")
    assert "- run: pipx install pipguard" in job
    script = job.split("- run: |\n", 1)[1]
    project = world.root / "project"
    project.mkdir()
    _requirements(project, "requirements.txt", dists.index.url, "alpha")
    user = world.venv("runner-python")  # a python3 on PATH that must stay untouched: the job's venv is active
    env = {"PATH": _user_path(world, pipx_pipguard, user / "bin")}
    result = world.run(["sh", "-e", "-c", script], env=env, cwd=project)
    assert result.returncode == 0, result.output
    assert (world.site_packages(project / ".venv") / "alpha").is_dir()
    assert not (world.site_packages(user) / "alpha").exists()
    assert "alpha" in world.cached_projects()  # the `pip` of the script was pipguard


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    """The README Dockerfile's ENV settings and RUN commands (continuations joined)."""
    text = readme_block("**Dockerfile**").replace("\\\n", " ")
    env = dict(re.findall(r"^ENV (\w+)=(\S+)$", text, re.M))
    return env, re.findall(r"^RUN (.*)$", text, re.M)


def test_readme_dockerfile(world: World, dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Its RUN lines in a stand-in image: /opt, /usr/local/bin and the cache mount under the test's root."""
    env, (setup, install) = _dockerfile()
    image = world.root / "image"
    python = world.venv("image-python")  # the image's python3 (a venv here: the test must not touch the real one)
    places = {"/opt/pipguard": str(image / "opt" / "pipguard"), "/usr/local/bin": str(image / "usr-local-bin")}
    (image / "usr-local-bin").mkdir(parents=True)
    install_pipguard(Path(places["/opt/pipguard"]), pipguard_wheel(tmp_path_factory.mktemp("wheel")))
    for step in setup.split(" && "):
        if "pip install pipguard" in step or "-m venv /opt/pipguard" in step:
            continue  # done above, offline
        done = world.run(["sh", "-e", "-c", _moved(step, places)])
        assert done.returncode == 0, (step, done.output)
    mount = re.match(r"--mount=type=cache,target=(\S+) (.*)", install)
    assert mount and mount.group(1) == env["PIPGUARD_CACHE_DIR"], install
    _requirements(image, "requirements.txt", dists.index.url, "midpkg")
    path = os.pathsep.join([str(python / "bin"), places["/usr/local/bin"], os.environ["PATH"]])
    result = world.run(["sh", "-e", "-c", mount.group(2)], env={"PATH": path}, cwd=image)
    assert result.returncode == 0, result.output
    assert {"midpkg", "leafpkg"} <= {p.name for p in world.site_packages(python).iterdir()}
    assert "midpkg" in world.cached_projects()


def _moved(command: str, places: dict[str, str]) -> str:
    for old, new in places.items():
        command = command.replace(old, new)
    return command


def test_guard_shims_run_the_pipguard_that_printed_them(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    """Parallel calls agree on one directory of whole shims; they run pipguard with no PATH lookup of it."""
    env = {"PATH": _user_path(world, pipx_pipguard)}
    printed = world.run_parallel([["pipguard", "guard", "shims"]] * 6, env=env)
    assert all(r.returncode == 0 for r in printed), [r.output for r in printed]
    assert len({r.stdout for r in printed}) == 1
    shims = Path(printed[0].stdout.strip())
    assert sorted(p.name for p in shims.iterdir()) == ["pip", "pip3"]
    assert str(pipx_pipguard.pipguard) in (shims / "pip").read_text()
    user = world.venv("user-python")
    # Neither pipguard nor any other pip on this PATH: only the shims and the user's python3.
    bare = {"PATH": os.pathsep.join([str(shims), str(user / "bin"), "/usr/bin", "/bin"])}
    result = world.run(["pip3", *install_args(user, dists.index.url, "alpha")], env=bare)
    assert result.returncode == 0, result.output
    assert (world.site_packages(user) / "alpha").is_dir()
    version = world.run(["pip", "guard", "--version"], env=bare)
    assert version.stdout.startswith("pipguard ") and f" for {user} " in version.stdout, version.output


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.network
def test_pip_outside_the_supported_range_runs_plain_pip_after_one_warning(world: World, dists: Dists) -> None:
    if not _pypi_reachable():
        pytest.skip("needs PyPI")
    env_dir = world.root / "old-pip"
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, env=clean_env())
    installs = [
        [f"pip=={BELOW_RANGE_PIP}", "filelock", "platformdirs", "packaging", "rich"],
        ["--no-deps", "-e", str(REPO)],
    ]
    for args in installs:
        subprocess.run(
            # The machine's own pip configuration (mirrors, certificates) applies to these downloads.
            [str(python), "-m", "pip", "install", "-q", *args], check=True, env={**clean_env(), "PIP_CONFIG_FILE": ""}
        )
    old = World(root=world.root, python=python, cache=world.cache, hook_log=world.hook_log, env=world.env)
    venv = old.venv("target")
    result = old.pipguard(*install_args(venv, dists.index.url, "alpha"))
    assert result.returncode == 0, result.output
    warnings = result.warnings()
    assert len(warnings) == 1 and BELOW_RANGE_PIP in warnings[0] and "plain pip" in warnings[0], warnings
    assert (old.site_packages(venv) / "alpha").is_dir()
    assert not world.store.wheels.exists() or not any(world.store.wheels.rglob("*.whl"))
