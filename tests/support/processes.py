"""Helpers for tests that run many pipguard processes at once and wait on what they do.

Such tests must never sleep in place of synchronising, must never hang, and must leave nothing running:
``wait_for`` polls an observable condition with a deadline, ``Gate`` holds builds of the fixture backend
open (FIXTURE_BUILD_GATE) until the test says so, and ``Crew`` kills what a test started and opens its
gates at teardown, pass or fail. ``status`` and ``record_pids`` read who holds and who waits; the install
builders keep every test's pipguard command line in one shape.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pipguard.store import Store

if TYPE_CHECKING:  # conftest imports this module: a runtime import would be circular
    from conftest import Process, World

T = TypeVar("T")
WAIT_SECONDS = 90.0
POLL_SECONDS = 0.05


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float = WAIT_SECONDS,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Bounded so that a lost wake-up fails the test, naming ``what``, the last value seen and whatever
    ``explain`` adds (a status dump, a process's stderr), instead of hanging the run.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {value!r}){detail}")
        time.sleep(POLL_SECONDS)


class Gate:
    """The fixture backend's build gate: each build writes ``<gate>.started.<pid>``, then blocks until the
    gate file exists. It lets a test hold a build open exactly as long as it needs, with no timing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def env(self) -> dict[str, str]:
        """What a process's environment needs for its builds to stop at this gate."""
        return {"FIXTURE_BUILD_GATE": str(self.path)}

    def _marks(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.name}.started.*"))

    def started(self) -> set[int]:
        """pids of the build backends that reached build_wheel and announced themselves."""
        return {int(mark.name.rsplit(".", 1)[1]) for mark in self._marks()}

    def wait_started(
        self,
        count: int = 1,
        what: str | None = None,
        timeout: float = WAIT_SECONDS,
        explain: Callable[[], str] | None = None,
    ) -> set[int]:
        """Wait until at least ``count`` builds are held at the gate; return their pids."""

        def enough() -> set[int]:
            started = self.started()
            return started if len(started) >= count else set()

        return wait_for(enough, what or f"{count} gated build(s) to start at {self.path}", timeout, explain)

    def open(self) -> None:
        """Let every build held here (and any that comes later) go on."""
        self.path.touch()

    def is_open(self) -> bool:
        return self.path.exists()

    def reset(self) -> None:
        """Close the gate and forget who started, so the same path can hold a new round of builds."""
        for mark in self._marks():
            mark.unlink()
        self.path.unlink(missing_ok=True)


class Crew:
    """What a test started, and the gates it made.

    ``close`` (the ``crew`` fixture's teardown) runs the test's own teardown callbacks, opens every gate,
    so held builds (orphans too) finish instead of waiting out the backend's 120 s gate timeout, then kills
    whatever still runs: a process started in its own group as a whole group, since its children (pip,
    the build backend) would outlive it otherwise.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._popens: list[tuple[subprocess.Popen[bytes], bool]] = []
        self._gates: list[Gate] = []
        self._callbacks: list[Callable[[], None]] = []

    def start(
        self, cmd: Sequence[str], name: str, env: dict[str, str] | None = None, own_group: bool = False
    ) -> Process:
        """``world.start``, killed at teardown; ``own_group`` lets the test kill the whole job with killpg."""
        process = self.world.start(cmd, name, env=env, own_group=own_group)
        self.adopt(process.popen, own_group=own_group)
        return process

    def adopt(self, popen: subprocess.Popen[bytes], own_group: bool = False) -> None:
        """Kill at teardown a process the test had to start itself (with a pty, say)."""
        self._popens.append((popen, own_group))

    def gate(self, name: str = "gate") -> Gate:
        """A gate in the world's root, opened at teardown."""
        made = Gate(self.world.root / name)
        self._gates.append(made)
        return made

    def on_teardown(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` first at teardown (close an fd that holds a lock or a pty open)."""
        self._callbacks.append(callback)

    def close(self) -> None:
        for callback in self._callbacks:
            callback()
        for gate in self._gates:
            gate.open()
        for popen, own_group in self._popens:
            if popen.poll() is None:
                try:
                    if own_group:
                        os.killpg(popen.pid, signal.SIGKILL)
                    else:
                        popen.kill()
                except ProcessLookupError:
                    pass
            popen.wait()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def status(world: World) -> dict[str, Any]:
    """``guard status --json``: every lock with its holder and waiters, as users see them."""
    result = world.pipguard("guard", "status", "--json")
    assert result.returncode == 0, result.output
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def waiting_pids(world: World) -> set[int]:
    """pids ``guard status`` shows waiting for any lock."""
    return {w["pid"] for lock in status(world)["locks"] for w in lock["waiters"]}


def holder_pids(world: World) -> set[int]:
    """pids ``guard status`` shows holding any lock."""
    return {lock["holder"]["pid"] for lock in status(world)["locks"] if lock["holder"]}


def holder_awaited_by(world: World, pid: int) -> int | None:
    """pid of the holder of the lock ``guard status`` shows ``pid`` waiting for; None while it waits for none."""
    for lock in status(world)["locks"]:
        if lock["holder"] and any(w["pid"] == pid for w in lock["waiters"]):
            held_by: int = lock["holder"]["pid"]
            return held_by
    return None


def record_pids(cache: Path, key: str = "*", unfinished: bool = False) -> set[int]:
    """pids named by record files on disk right now, for one lock ``key`` or all of them.

    Read directly, since ``guard status`` would clean up dead processes' records. A record is written
    under a ``.tmp-`` name and then renamed; ``unfinished`` counts those too, for a test that checks
    nothing at all of a process is left behind.
    """
    pids = set()
    for path in Store(cache).records.glob(f"{key}/*.json"):
        if path.name.startswith(".") and not unfinished:
            continue
        try:
            pids.add(int(json.loads(path.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            continue
    return pids


def install_args(venv: Path, index_url: str, *names: str, options: Sequence[str] = ()) -> list[str]:
    """``--python VENV install [OPTIONS] --index-url URL NAMES``: pipguard's (or pip's) arguments."""
    return ["--python", str(venv), "install", *options, "--index-url", index_url, *names]


def install_cmd(world: World, venv: Path, index_url: str, *names: str, options: Sequence[str] = ()) -> list[str]:
    """The full pipguard command line of ``install_args``, to start as a process."""
    return world.pipguard_cmd(*install_args(venv, index_url, *names, options=options))
