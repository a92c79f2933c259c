"""pipguard installed the way users install it: into a tool environment of its own, as pipx does, or into
the project's own ``.venv``, offline.

The checkout's pipguard goes in as a real wheel (written here from the package's files and pyproject's
console scripts, so no build backend or index is needed), installed by pip, which writes the ``pipguard``
script with the environment's own python in its shebang. Its dependencies (pip, filelock, rich, …) are the
test venv's, made importable by a ``.pth`` line, as pipx would have installed them from an index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.envs import clean_env, make_venv, venv_site_packages

REPO = Path(__file__).resolve().parent.parent.parent


def pipguard_wheel(directory: Path) -> Path:
    """A py3-none-any wheel of this checkout's pipguard package."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    version = _version()
    dist_info = f"pipguard-{version}.dist-info"
    scripts = "".join(f"{name} = {target}\n" for name, target in project["scripts"].items())
    files = {
        path.relative_to(REPO).as_posix(): path.read_bytes()
        for path in sorted((REPO / "pipguard").rglob("*"))
        if path.suffix in (".py", ".txt") and "__pycache__" not in path.parts  # what pyproject packages
    }
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: pipguard\nVersion: {version}\n".encode()
    wheel_tags = "Wheel-Version: 1.0\nGenerator: pipguard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist_info}/WHEEL"] = wheel_tags.encode()
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"pipguard-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def _version() -> str:
    namespace: dict[str, str] = {}
    exec((REPO / "pipguard" / "__init__.py").read_text(), namespace)  # noqa: S102 - our own one-liner
    return namespace["__version__"]


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_pipguard(venv: Path, wheel: Path, base: Path | None = None) -> Path:
    """A fresh venv at ``venv`` (of ``base``, else the tests' interpreter) with pipguard installed in it;
    returns its ``pipguard`` script."""
    make_venv(venv, base)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        env=clean_env(),
        capture_output=True,
    )
    deps = sysconfig.get_paths()["purelib"]  # the test venv's: pip, filelock, platformdirs, rich, …
    (venv_site_packages(venv) / "_pipguard_dependencies.pth").write_text(deps + "\n")
    script = venv / "bin" / "pipguard"
    assert os.access(script, os.X_OK), f"pip wrote no pipguard script into {venv}"
    return script


def pipx_install(home: Path, wheel: Path) -> tuple[Path, Path]:
    """pipguard as ``pipx install`` lays it out under ``home``: a venv in ``~/.local/share/pipx/venvs``
    and a symlink to its script in ``~/.local/bin``. Returns (the symlink, the venv)."""
    venv = home / ".local" / "share" / "pipx" / "venvs" / "pipguard"
    script = install_pipguard(venv, wheel)
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "pipguard").symlink_to(script)
    return bin_dir / "pipguard", venv


@dataclass(frozen=True)
class Tool:
    """pipguard from pipx: the command on PATH, its directory, and the tool venv behind it."""

    pipguard: Path
    bin_dir: Path
    venv: Path

    def path_with(self, first: Path) -> str:
        """A PATH with ``first`` (where the user's python3 is) ahead of pipx's bin directory; the machine's
        own pip is never reached through it."""
        guard = no_machine_pip(self.bin_dir.parent / "no-machine-pip")
        return os.pathsep.join([str(first), str(self.bin_dir), str(guard), os.environ.get("PATH", "")])

    def has(self, project: str) -> bool:
        """Whether ``project`` is installed in pipguard's own tool venv (it must never be by accident)."""
        return any(venv_site_packages(self.venv).glob(f"{project}-*.dist-info"))


@pytest.fixture(scope="session")
def pipx_pipguard(tmp_path_factory: pytest.TempPathFactory) -> Tool:
    """One pipx-style pipguard per test session (each test checks nothing was installed into it)."""
    root = tmp_path_factory.mktemp("pipx")
    link, venv = pipx_install(root / "home", pipguard_wheel(root / "wheels"))
    return Tool(pipguard=link, bin_dir=link.parent, venv=venv)


def base_python_dir(directory: Path) -> Path:
    """``directory`` holding only a ``python3``: the base interpreter of the tests (no virtualenv, no
    pipguard), as a system python3 on PATH would be."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "python3").symlink_to(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    return directory


def no_machine_pip(directory: Path) -> Path:
    """A directory of ``pip``, ``pip3`` and ``pip3.X`` that fail loudly, to sit ahead of the machine's PATH.

    A recipe that means pipguard's shims but, through a fault, reaches the machine's own pip would install
    into the machine's Python: here it fails the test instead, touching nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("pip", "pip3", f"pip3.{sys.version_info[1]}"):
        stub = directory / name
        stub.write_text('#!/bin/sh\necho "test: the machine\'s own pip was reached: $0 $*" >&2\nexit 97\n')
        stub.chmod(0o755)
    return directory
