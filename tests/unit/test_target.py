"""The interpreter ``--python`` names up front, read without pip's parser: only where pip's parser would
read the very same, and found as pip finds it; anything else is left to pip's parser (None)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipguard import target


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    return tmp_path / "venv"


@pytest.fixture(autouse=True)
def not_under_a_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_PIP_RUNNING_IN_SUBPROCESS", raising=False)


def test_a_venv_or_an_interpreter_named_before_the_subcommand_is_found_as_pip_finds_it(venv: Path) -> None:
    python = str(venv / "bin" / "python")
    assert target.named_up_front(["--python", str(venv), "install", "x"]) == python
    assert target.named_up_front([f"--python={venv}", "wheel", "x"]) == python
    assert target.named_up_front(["--python", python, "list"]) == python


@pytest.mark.parametrize(
    "args",
    [
        ["install", "--python", "{venv}", "x"],  # after the subcommand: pip refuses it, in its words
        ["--python", "{venv}", "guard", "status"],  # pipguard's own command, run here
        ["--python", "{venv}", "help"],
        ["--python", "{venv}"],
        ["--python", "{venv}", "-v", "install", "x"],  # more general options: pip's parser reads them
        ["--python=", "list"],  # names nothing: pip runs where it is
        ["--python", "-v", "install"],  # an option as its value
        ["--pyth", "{venv}", "install"],  # an abbreviation optparse would accept
        ["-q", "--python", "{venv}", "install"],
        ["--python", "{venv}/nowhere", "install"],  # pip says it cannot find it
    ],
)
def test_every_other_command_line_is_left_to_pips_parser(venv: Path, args: list[str]) -> None:
    assert target.named_up_front([arg.replace("{venv}", str(venv)) for arg in args]) is None


def test_a_directory_without_bin_python_is_left_to_pip(tmp_path: Path) -> None:
    (tmp_path / "Scripts").mkdir()  # pip looks for Scripts/python.exe too
    (tmp_path / "Scripts" / "python.exe").write_text("")
    assert target.named_up_front(["--python", str(tmp_path), "install"]) is None


def test_under_the_runner_nothing_is_named_again(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_PIP_RUNNING_IN_SUBPROCESS", "1")
    assert target.named_up_front(["--python", str(venv), "install"]) is None
