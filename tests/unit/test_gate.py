"""The gate of a build child (pipguard/gate.py): a real child process, a real FIFO, no mock."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipguard import gate

# The child's side as a build child runs it: its parent is this test process (PIPGUARD_PARENTS).
CHILD = """\
import sys
from pipguard import gate
gate.wait_for_turn(sys.argv[1])
print("through", flush=True)
"""
WAIT_SECONDS = 60.0


def _tree(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "big.c").write_bytes(b"x" * 3000)
    (root / "src" / "ext.pyx").write_bytes(b"y" * 200)
    (root / "src" / "pure.py").write_bytes(b"z" * 9999)  # not compiled: no weight
    (root / "src" / "big.h").write_bytes(b"h" * 500)  # a header is compiled with its source, not alone
    return root


def _start(work: Path, tree: Path) -> subprocess.Popen[str]:
    env = {**os.environ, gate.VARIABLE: str(work / gate.FIFO_NAME), "PIPGUARD_PARENTS": str(os.getpid())}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tree)], stdout=subprocess.PIPE, text=True, env=env)


def _poll_until_open(check: gate.Gate, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check.open:
        assert proc.poll() is None, "the child ended before the gate opened"
        assert time.monotonic() < deadline, "the child never reached the gate"
        check.poll()
        time.sleep(0.01)


def test_the_child_waits_at_the_gate_until_its_job_is_taken_with_its_weight(tmp_path: Path) -> None:
    taken: list[int | None] = []
    check = gate.Gate(tmp_path, taken.append)
    proc = _start(tmp_path, _tree(tmp_path / "tree"))
    _poll_until_open(check, proc)
    assert taken == [3200]  # big.c and ext.pyx
    out, _ = proc.communicate(timeout=WAIT_SECONDS)
    assert out == "through\n" and proc.returncode == 0


def test_a_job_that_cannot_be_taken_keeps_the_child_at_the_gate(tmp_path: Path) -> None:
    """A take_job that fails (the command stops) lets nothing through; the child waits until its parent
    gives up on it (here: kills it, as builder.py does)."""

    def refuse(weight: int | None) -> None:
        raise RuntimeError("stopped")

    check = gate.Gate(tmp_path, refuse)
    proc = _start(tmp_path, _tree(tmp_path / "tree"))
    deadline = time.monotonic() + WAIT_SECONDS
    with pytest.raises(RuntimeError):
        while True:
            assert time.monotonic() < deadline, "the child never reached the gate"
            check.poll()
            time.sleep(0.01)
    assert not check.open and proc.poll() is None
    # The parent's end is closed now: a child that took end of file for an open gate would print within
    # this window; one that waits prints nothing.
    assert proc.stdout is not None
    assert not select.select([proc.stdout], [], [], 2 * gate.CHECK_PARENT_SECONDS)[0]
    assert proc.poll() is None
    proc.kill()
    proc.wait(timeout=WAIT_SECONDS)
    assert proc.stdout is not None and proc.stdout.read() == ""


def test_without_a_gate_the_child_goes_on_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gate.VARIABLE, raising=False)
    gate.wait_for_turn(str(tmp_path))  # returns: a process that is no gated build child


def test_the_weight_counts_compiled_sources_only(tmp_path: Path) -> None:
    assert gate.weight(str(_tree(tmp_path))) == 3200
    assert gate.weight(str(tmp_path / "missing")) == 0
