"""Subprocess environments and target venvs that the host's pip setup can't leak into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_DROP_EXACT = {"VIRTUAL_ENV", "PYTHONPATH"}
_DROP_PREFIXES = ("PIP_", "PIPGUARD_")


def clean_env(**extra: str | None) -> dict[str, str]:
    """os.environ without pip/pipguard settings, with config files off; extra wins (None deletes)."""
    env = {k: v for k, v in os.environ.items()
           if k not in _DROP_EXACT and not k.startswith(_DROP_PREFIXES)}
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # pip then skips global, user and site config files
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def venv_python(venv: Path) -> Path:
    """The interpreter inside venv."""
    if os.name == "nt":
        return Path(venv) / "Scripts" / "python.exe"
    return Path(venv) / "bin" / "python"


def make_venv(path: Path, base: Path | None = None) -> Path:
    """Create a pip-less venv (fast; installs go through --python) of ``base`` (else the tests' own
    interpreter) and return its python."""
    subprocess.run([str(base or sys.executable), "-m", "venv", "--without-pip", str(path)],
                   check=True, env=clean_env(), capture_output=True)
    return venv_python(path)


def venv_site_packages(venv: Path) -> Path:
    """Purelib dir of venv, found on disk so it also holds for a venv of another Python."""
    if os.name == "nt":
        return Path(venv) / "Lib" / "site-packages"
    found = sorted(Path(venv).glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise FileNotFoundError(f"no unique site-packages in {venv}: {found}")
    return found[0]
