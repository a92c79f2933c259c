"""Which environment `pipguard` (as `pip`) installs into, when installed as users install it.

pipguard from pipx with no venv active serves the python3 first on PATH, never its own tool venv; a stale
VIRTUAL_ENV is reported and skipped; CONDA_PREFIX is the target; `.venv/bin/pipguard` serves .venv; pip's
refusals of the target pass through; `--version` names the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.toolenv import pipx_pipguard  # noqa: F401 - a fixture
from support.toolenv import Tool, base_python_dir, install_pipguard, pipguard_wheel


def _as_user(world: World, tool: Tool, first: Path, *args: str, **env: str) -> Result:
    """`pipguard ARGS` typed in a shell whose PATH has ``first`` (a python3) ahead of pipx's bin dir."""
    return world.run(["pipguard", *args], env={"PATH": tool.path_with(first), **env})


def _installed(world: World, venv: Path, project: str) -> bool:
    return (world.site_packages(venv) / project).is_dir()


def test_pipx_pipguard_installs_into_the_python3_on_path(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    """The issue's case: not into pipx's venv, but where `python3 -m pip` would install."""
    user = world.venv("user-python")
    result = _as_user(world, pipx_pipguard, user / "bin", "install", "--index-url", dists.index.url, "alpha")
    assert result.returncode == 0, result.output
    assert _installed(world, user, "alpha")
    assert not pipx_pipguard.has("alpha")
    assert world.hooks("build_wheel", "alpha") == 1

    listed = _as_user(world, pipx_pipguard, user / "bin", "list", "--format=json")
    assert {p["name"] for p in json.loads(listed.stdout)} == {"alpha"}, listed.output  # not pipguard's deps
    shown = _as_user(world, pipx_pipguard, user / "bin", "show", "alpha")
    assert f"Location: {world.site_packages(user)}" in shown.stdout, shown.output
    removed = _as_user(world, pipx_pipguard, user / "bin", "uninstall", "-y", "pipguard")
    assert removed.returncode == 0 and "not installed" in removed.output, removed.output
    assert pipx_pipguard.has("pipguard")


def test_version_names_the_target_environment(world: World, pipx_pipguard: Tool) -> None:
    user = world.venv("user-python")
    result = _as_user(world, pipx_pipguard, user / "bin", "guard", "--version")
    assert result.returncode == 0, result.output
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert result.stdout.startswith(f"pipguard {_version(world)} for {user} with pip "), result.stdout
    assert result.stdout.rstrip().endswith(f"(python {version})"), result.stdout


def _version(world: World) -> str:
    return world.run([str(world.python), "-c", "import pipguard; print(pipguard.__version__)"]).stdout.strip()


def test_a_stale_virtual_env_is_reported_and_skipped(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    user = world.venv("user-python")
    gone = world.root / "deleted-venv"
    args = ("install", "--index-url", dists.index.url, "alpha")
    result = _as_user(world, pipx_pipguard, user / "bin", *args, VIRTUAL_ENV=str(gone))
    assert result.returncode == 0, result.output
    assert len(result.warnings()) == 1 and f"VIRTUAL_ENV={gone}" in result.warnings()[0], result.stderr
    assert _installed(world, user, "alpha") and not pipx_pipguard.has("alpha")


def test_conda_prefix_is_the_target(world: World, dists: Dists, pipx_pipguard: Tool) -> None:
    """An active conda environment (a prefix with bin/python) wins over the python3 on PATH."""
    user, conda = world.venv("user-python"), world.venv("conda-env")
    args = ("install", "--index-url", dists.index.url, "alpha")
    result = _as_user(world, pipx_pipguard, user / "bin", *args, CONDA_PREFIX=str(conda))
    assert result.returncode == 0, result.output
    assert _installed(world, conda, "alpha")
    assert not _installed(world, user, "alpha") and not pipx_pipguard.has("alpha")


def test_pipguards_own_python_first_on_path_is_refused(world: World, pipx_pipguard: Tool) -> None:
    """Never its own tool venv by accident: one error, nothing installed; `--python` says it on purpose."""
    result = _as_user(world, pipx_pipguard, pipx_pipguard.venv / "bin", "install", "--no-index", "alpha")
    assert result.returncode == 1, result.output
    assert result.stderr.startswith("ERROR: ") and "--python" in result.stderr, result.stderr
    chosen = _as_user(world, pipx_pipguard, pipx_pipguard.venv / "bin", "--python", str(pipx_pipguard.venv), "list")
    assert chosen.returncode == 0 and "pipguard" in chosen.stdout, chosen.output


def test_pip_require_virtualenv_passes_through(world: World, pipx_pipguard: Tool) -> None:
    """With a non-venv python3 first on PATH, pip itself refuses, exactly as `python3 -m pip` would."""
    system = base_python_dir(world.root / "system-bin")
    result = _as_user(
        world, pipx_pipguard, system, "install", "--dry-run", "--no-index", "alpha", PIP_REQUIRE_VIRTUALENV="1"
    )
    assert result.returncode == 3, result.output  # pip's VIRTUALENV_NOT_FOUND
    assert "Could not find an activated virtualenv (required)." in result.stderr


def _externally_managed_python() -> Path | None:
    """A python3 on this machine's PATH whose distributor marks it externally managed (PEP 668), if any."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "python3"
        ours = Path(sys._base_executable).resolve()  # type: ignore[attr-defined]
        if candidate.is_file() and candidate.resolve() != ours:
            probe = "import sys, sysconfig; print(sys.prefix == sys.base_prefix, sysconfig.get_path('stdlib'))"
            out = subprocess.run([str(candidate), "-c", probe], capture_output=True, text=True).stdout.split()
            if out and out[0] == "True" and (Path(out[1]) / "EXTERNALLY-MANAGED").is_file():
                return candidate
    return None


def test_externally_managed_python_passes_through(world: World, pipx_pipguard: Tool) -> None:
    """PEP 668: pip's own refusal of a distributor's python3 reaches the user unchanged."""
    found = _externally_managed_python()
    if found is None:
        pytest.skip("no externally managed python3 on PATH")
    directory = world.root / "distro-bin"
    directory.mkdir()
    (directory / "python3").symlink_to(found)
    result = _as_user(world, pipx_pipguard, directory, "install", "--dry-run", "--no-index", "alpha")
    assert result.returncode == 1, result.output
    assert "externally-managed-environment" in result.output


def test_dot_venv_pipguard_serves_dot_venv(
    world: World, dists: Dists, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`.venv/bin/pipguard install x` with no venv active: into .venv, whatever python3 is on PATH."""
    project = world.root / "project"
    pipguard = install_pipguard(project / ".venv", pipguard_wheel(tmp_path_factory.mktemp("wheel")))
    user = world.venv("user-python")
    env = {"PATH": os.pathsep.join([str(user / "bin"), os.environ["PATH"]])}
    result = world.run([str(pipguard), "install", "--index-url", dists.index.url, "alpha"], env=env, cwd=project)
    assert result.returncode == 0, result.output
    assert _installed(world, project / ".venv", "alpha") and not _installed(world, user, "alpha")
    version = world.run([".venv/bin/pipguard", "guard", "--version"], env=env, cwd=project)
    assert f" for {project / '.venv'} with pip " in version.stdout, version.output

