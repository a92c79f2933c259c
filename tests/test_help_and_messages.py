"""What pipguard says: `-h` lists pip's commands and then `guard`; every guard command and action has a
line on what it does; usage errors name the subcommand; `guard cache remove` with no match behaves like
`pip cache remove`; `guard status` says how long and for which environment; plain lines fit 120 columns."""

from __future__ import annotations

import re

from conftest import Dists, World
from pipguard.display import CONTINUATION
from support.processes import Crew, Gate, status, wait_for

WIDTH = 120


def _is_headline(line: str) -> bool:
    """A pipguard progress line that must fit WIDTH; its detail lines (a command, a path) may not."""
    return line.startswith("pipguard:") and not line.startswith(CONTINUATION)


def test_main_help_lists_pips_commands_then_guard(world: World) -> None:
    for args in (["-h"], ["--help"], ["help"]):
        result = world.pipguard(*args)
        assert result.returncode == 0, result.output
        lines = result.stdout.splitlines()
        names = [line.split()[0] for line in lines[lines.index("Commands:") + 1 :] if line.startswith("  ")]
        commands = names[: names.index("guard") + 1]
        assert commands[0] == "install" and commands[-2] == "help" and commands[-1] == "guard", commands
        guard_line = next(line for line in lines if line.startswith("  guard "))
        assert len(guard_line.split()) > 3 and "pipguard" in guard_line  # with a line on what it is


def _described(help_text: str, names: list[str]) -> dict[str, str]:
    """Each subcommand in argparse help text, with the description on its line (or the next)."""
    found = {}
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        words = line.split(None, 1)
        if words and words[0] in names and line.startswith("    "):
            found[words[0]] = words[1] if len(words) > 1 else lines[i + 1].strip()
    return found


def test_every_guard_command_and_action_says_what_it_does(world: World) -> None:
    for args, names in ((["guard", "-h"], ["status", "shims", "cache"]),
                        (["guard", "cache", "-h"], ["dir", "info", "list", "remove", "purge", "prune"])):
        result = world.pipguard(*args)
        assert result.returncode == 0, result.output
        described = _described(result.stdout, names)
        assert set(described) == set(names) and all(len(text) > 10 for text in described.values()), result.stdout
    assert world.pipguard("help", "guard").stdout == world.pipguard("guard", "-h").stdout


def test_usage_errors_name_the_subcommand_that_got_them(world: World) -> None:
    cases = {
        ("guard", "status", "--nope"): "ERROR: pipguard guard status: unrecognized arguments: --nope",
        ("guard", "cache", "list", "--nope"): "ERROR: pipguard guard cache list: unrecognized arguments: --nope",
        ("guard", "cache", "prune"): "ERROR: pipguard guard cache prune: ",
        ("guard", "shims", "extra"): "ERROR: pipguard guard shims: unrecognized arguments: extra",
    }
    for args, start in cases.items():
        result = world.pipguard(*args)
        assert result.returncode == 2 and result.stderr.startswith(start), (args, result.output)


def test_cache_remove_without_a_match_is_pip_cache_removes_warning(world: World) -> None:
    plain = world.pip("cache", "remove", "nosuch")
    guarded = world.pipguard("guard", "cache", "remove", "nosuch")
    assert plain.returncode == guarded.returncode == 0, (plain.output, guarded.output)
    warning = 'WARNING: No matching packages for pattern "nosuch"'
    assert warning in plain.stderr.splitlines() and warning in guarded.stderr.splitlines()


def test_status_says_how_long_and_for_which_environment(
    world: World, dists: Dists, crew: Crew, gate: Gate
) -> None:
    """Two processes typed the same `pipguard install slowpkg`, each with its own VIRTUAL_ENV."""
    venvs = [world.venv("holder-env"), world.venv("waiter-env")]
    cmd = world.pipguard_cmd("install", "--index-url", dists.index.url, "slowpkg")
    holder = crew.start(cmd, "holder", env={**gate.env, "VIRTUAL_ENV": str(venvs[0])})
    gate.wait_started()
    waiter = crew.start(cmd, "waiter", env={**gate.env, "VIRTUAL_ENV": str(venvs[1])})
    wait_for(lambda: any(lock["waiters"] for lock in status(world)["locks"]), "a waiter")

    text = world.pipguard("guard", "status").stdout
    assert re.search(rf"^  held \d+s by pid {holder.popen.pid} on \S+ \(building\) for {venvs[0]}$", text, re.M), text
    assert re.search(rf"^  waiting \d+s: pid {waiter.popen.pid} on \S+ for {venvs[1]}$", text, re.M), text
    waiting = wait_for(lambda: "  holder: " in waiter.stderr_so_far() and waiter.stderr_so_far(), "the waiting lines")
    assert f", for {venvs[0]}" in waiting  # the holder's environment, on the indented detail line
    gate.open()
    for process in (holder, waiter):
        result = process.wait()
        assert result.returncode == 0, result.output
        assert not [line for line in result.stderr.splitlines() if _is_headline(line) and len(line) > WIDTH]
