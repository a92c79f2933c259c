"""Everything pipguard does not guard is pip's own: same output, same exit codes, same target environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.processes import install_args
from support.versions import NEWEST_PIP, OLDEST_PIP

REPO = Path(__file__).resolve().parent.parent
# Packages pipguard needs to run: they live in pipguard's environment and must never show in a target's.
PIPGUARD_OWN = {
    "pipguard",
    "pip",
    "filelock",
    "platformdirs",
    "packaging",
    "rich",
    "markdown-it-py",
    "mdurl",
    "pygments",
}


def _same(plain: Result, guarded: Result) -> None:
    assert (guarded.returncode, guarded.stdout, guarded.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def _listed(result: Result) -> set[str]:
    assert result.returncode == 0, result.output
    return {item["name"].lower() for item in json.loads(result.stdout)}


def _has_alpha(world: World, venv: Path) -> bool:
    return (world.site_packages(venv) / "alpha" / "__init__.py").is_file()


def _own_env_has_alpha(world: World) -> bool:
    """Whether alpha leaked into the environment pipguard itself runs from."""
    return world.pip("show", "alpha").returncode == 0


# --- 1. commands pipguard does not touch ---------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("list",), ("freeze",), ("show", "alpha"), ("help", "install"), ("config", "list"), ("cache", "dir")],
    ids=lambda c: " ".join(c),
)
def test_unguarded_commands_are_pips_own(world: World, with_alpha: Path, command: tuple[str, ...]) -> None:
    """Identical stdout, stderr and exit code as plain pip, against the same target environment."""
    env = {"PIP_TIMEOUT": "30"}  # something for `config list` to show
    plain = world.pip("--python", str(with_alpha), *command, env=env)
    guarded = world.pipguard("--python", str(with_alpha), *command, env=env)
    assert plain.returncode == 0, plain.output
    assert plain.stdout.strip()
    _same(plain, guarded)


# --- 2. errors and exit codes --------------------------------------------------------------------


def test_missing_package_fails_like_pip(world: World) -> None:
    venv = world.venv("v")
    args = ("--python", str(venv), "install", "--no-index", "no-such-package-anywhere")
    plain, guarded = world.pip(*args), world.pipguard(*args)
    assert plain.returncode == guarded.returncode == 1
    assert guarded.error_lines() == plain.error_lines() != []


def test_bad_option_is_a_usage_error_like_pip(world: World) -> None:
    plain, guarded = world.pip("install", "--bogus-option", "x"), world.pipguard("install", "--bogus-option", "x")
    assert plain.returncode == guarded.returncode == 2
    assert "no such option: --bogus-option" in guarded.stderr
    _same(plain, guarded)


def test_unknown_command_fails_like_pip(world: World) -> None:
    plain, guarded = world.pip("frobnicate"), world.pipguard("frobnicate")
    assert plain.returncode != 0
    assert 'unknown command "frobnicate"' in guarded.stderr
    _same(plain, guarded)


def test_missing_requirements_file_fails_like_pip(world: World) -> None:
    venv = world.venv("v")
    args = ("--python", str(venv), "install", "-r", "nope.txt")
    plain, guarded = world.pip(*args), world.pipguard(*args)
    assert plain.returncode != 0
    assert guarded.returncode == plain.returncode
    assert guarded.error_lines() == plain.error_lines()
    assert any("nope.txt" in line for line in guarded.error_lines())


# --- 3. pipguard --version ---------------------------------------------------------------------------


def test_version_names_pipguard_and_pip(any_pip_world: World) -> None:
    """`pipguard --version` prints pip's own line on stdout (scripts cut its second word); pipguard's line,
    naming pipguard and the pip it drives, goes to stderr; `guard --version` prints pipguard's alone."""
    w = any_pip_world
    version = w.run([str(w.python), "-c", "import pipguard; print(pipguard.__version__)"]).stdout.strip()
    pip_line = w.pip("--version").stdout.strip()  # e.g. "pip 26.3 from ... (python 3.11)"
    pip_version = pip_line.split()[1]
    assert pip_version in (NEWEST_PIP, OLDEST_PIP)
    result = w.pipguard("--version")
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == pip_line
    assert result.stderr.startswith(f"pipguard {version} ")
    assert pip_line in result.stderr
    alone = w.pipguard("guard", "--version")
    assert alone.returncode == 0 and alone.stderr == "", alone.output
    assert alone.stdout.startswith(f"pipguard {version} ") and pip_line in alone.stdout


# --- 4. the target environment ----------------------------------------------------------------------


def test_python_option_and_pip_python_choose_the_target(world: World, dists: Dists) -> None:
    """`--python DIR`, `--python DIR/bin/python` and `PIP_PYTHON=DIR` all install into DIR, not pipguard's env."""
    by_dir, by_exe, by_env = world.venv("by-dir"), world.venv("by-exe"), world.venv("by-env")
    index = ("--index-url", dists.index.url, "alpha")
    runs = [
        world.pipguard("--python", str(by_dir), "install", *index),
        world.pipguard("--python", str(by_exe / "bin" / "python"), "install", *index),
        world.pipguard("install", *index, env={"PIP_PYTHON": str(by_env)}),
    ]
    for result in runs:
        assert result.returncode == 0, result.output
    for venv in (by_dir, by_exe, by_env):
        assert _has_alpha(world, venv), venv
    assert not _own_env_has_alpha(world)
    assert world.hooks("build_wheel", "alpha") == 1


def test_list_under_python_shows_only_the_targets_packages(world: World, with_alpha: Path) -> None:
    """pipguard runs under the target with its own packages importable, yet they are not the target's."""
    listed = _listed(world.pipguard("--python", str(with_alpha), "list", "--format=json"))
    assert listed == {"alpha"}
    assert not listed & PIPGUARD_OWN


def test_virtual_env_is_the_target_without_python_option(world: World, dists: Dists) -> None:
    """With $VIRTUAL_ENV set, pipguard (from another interpreter) installs into and lists that venv."""
    venv = world.venv("active")
    env = {"VIRTUAL_ENV": str(venv)}
    result = world.pipguard("install", "--index-url", dists.index.url, "alpha", env=env)
    assert result.returncode == 0, result.output
    assert _has_alpha(world, venv)
    assert not _own_env_has_alpha(world)
    listed = _listed(world.pipguard("list", "--format=json", env=env))
    assert listed == {"alpha"}


def test_python_option_up_front_is_read_as_pips_parser_reads_it(world: World, tmp_path: Path) -> None:
    """`--python X SUBCOMMAND` is read without pip's parser; what that reading does not find, and `guard`
    after it, go the way pip's parser sends them: a path pip cannot find fails in pip's own words, and
    `--python VENV guard --version` is pipguard's line for that environment."""
    args = ("--python", str(tmp_path / "nowhere"), "list")
    plain, guarded = world.pip(*args), world.pipguard(*args)
    assert plain.returncode != 0 and "Could not locate Python interpreter" in plain.stderr
    _same(plain, guarded)
    venv = world.venv("v")
    version = world.pipguard("--python", str(venv), "guard", "--version")
    assert version.returncode == 0 and version.stdout.startswith("pipguard ") and str(venv) in version.stdout, version.output


def test_python_option_after_the_subcommand_fails_like_pip(world: World) -> None:
    venv = world.venv("v")
    args = ("install", "--python", str(venv), "alpha")
    plain, guarded = world.pip(*args), world.pipguard(*args)
    assert plain.returncode != 0
    assert "--python option must be placed before the pip subcommand" in plain.output
    _same(plain, guarded)
    assert not (world.site_packages(venv) / "alpha").exists()


# --- 5. the bin/pip shim ------------------------------------------------------------------------------


def _shim_env(world: World) -> dict[str, str]:
    pipguard = world.python.parent / "pipguard"
    assert pipguard.is_file(), f"no pipguard console script next to {world.python}"
    env = {"PATH": f"{REPO / 'bin'}:{world.env['PATH']}", "PIPGUARD": str(pipguard)}
    assert shutil.which("pip", path=env["PATH"]) == str(REPO / "bin" / "pip")
    return env


def test_pip_shim_goes_through_pipguard(world: World) -> None:
    """`pip --version` on a PATH with bin/ first answers as pipguard."""
    result = world.run(["pip", "--version"], env=_shim_env(world))
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("pip ")
    assert result.stderr.startswith("pipguard ")


def test_pip_shim_installs_without_recursion(world: World, dists: Dists) -> None:
    """An install through the shim builds once via pipguard's cache and lands in the target."""
    venv = world.venv("v")
    result = world.run(["pip", *install_args(venv, dists.index.url, "alpha")], env=_shim_env(world))
    assert result.returncode == 0, result.output
    assert _has_alpha(world, venv)
    assert "alpha" in world.cached_projects()
    assert world.hooks("build_wheel", "alpha") == 1
