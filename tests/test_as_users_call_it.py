"""pipguard the way users call it: `make -j` through the PATH shims, and a pip outside the tested range."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Dists, World
from support.envs import clean_env
from support.processes import install_args
from support.versions import BELOW_RANGE_PIP

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_j_through_the_pip_shim_builds_each_sdist_once(world: World, dists: Dists) -> None:
    """Four Makefile targets bootstrap four venvs in parallel with a plain `pip` on PATH."""
    (world.root / "Makefile").write_text(
        f"export PATH := {REPO / 'bin'}:$(PATH)\n"
        "envs: env-a env-b env-c env-d\n"
        "env-%:\n"
        f"\t{sys.executable} -m venv --without-pip venvs/$*\n"
        f"\tpip --python venvs/$* install --index-url {dists.index.url} slowpkg midpkg\n"
    )
    pipguard = world.python.parent / "pipguard"
    result = world.run(["make", "-j4", "envs"], env={"PIPGUARD": str(pipguard), "FIXTURE_BUILD_SECONDS": "1"})
    assert result.returncode == 0, result.output
    for name in "abcd":
        site = world.site_packages(world.root / "venvs" / name)
        assert {"slowpkg", "midpkg", "leafpkg"} <= {p.name for p in site.iterdir()}
    for project in ("slowpkg", "midpkg", "leafpkg"):
        assert world.hooks("build_wheel", project) == 1
    # Under make -j the display is plain lines, never a live view, whatever the terminal.
    assert "pipguard: built slowpkg" in result.stderr
    assert "\x1b[" not in result.stderr


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
    assert not (world.cache / "v1" / "wheels").exists() or not any((world.cache / "v1" / "wheels").rglob("*.whl"))
