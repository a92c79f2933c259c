"""What pipx installs is what the checkout runs: every package and data file of pipguard is shipped."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]


def test_every_package_under_pipguard_is_shipped() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = set(find_packages(str(REPO), include=config["packages"]["find"]["include"]))
    on_disk = {
        ".".join(path.parent.relative_to(REPO).parts)
        for path in (REPO / "pipguard").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert on_disk <= shipped, f"not shipped: {sorted(on_disk - shipped)}"


def test_the_pip_range_file_is_shipped_with_the_seam() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "requirements.txt" in config["package-data"]["pipguard._pip"]
    assert config["dynamic"]["dependencies"]["file"] == ["pipguard/_pip/requirements.txt"]
