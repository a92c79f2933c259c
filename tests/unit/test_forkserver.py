"""The fork server (pipguard/forkserver.py) with a runner of the test's own: real processes, real forks."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipguard.forkserver import ForkServer, Unavailable

STOPPED = 130
RUNNER = '''\
import os, sys

def run_here(args):
    if args[0] == "prepared":  # what the child finds done before it was forked
        from pip._internal.cli.index_command import _create_truststore_ssl_context
        from pipguard import keys
        print(sorted(name for name in ("pipguard.guard", "pipguard._pip.patches", "pip._internal.commands.wheel")
                     if name in sys.modules), _create_truststore_ssl_context.cache_info().currsize,
              keys._compiler.cache_info().currsize == len(keys.COMPILERS))
        return 0
    if args[0] == "wait":  # blocks until the test writes to the fifo (or a signal ends it)
        with open(args[1]) as fifo:
            fifo.read()
        return 0
    print("args:", " ".join(args), "stdin:", repr(sys.stdin.read()), "env:", os.environ.get("FORK_TEST"))
    print("to stderr", file=sys.stderr)
    return int(args[0])
'''


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ForkServer]:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    started = ForkServer(sys.executable, str(runner), {**os.environ, "FORK_TEST": "yes"}, STOPPED)
    yield started
    started.close()


def _exit_code(server: ForkServer, pid: int) -> int | None:
    return server.wait(pid, timeout=60)


def test_a_child_runs_run_here_with_its_args_its_files_and_the_servers_environment(server: ForkServer, tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    pid = server.spawn(["3", "x"], str(out), str(err), server.env, {})
    assert _exit_code(server, pid) == 3
    assert out.read_text() == "args: 3 x stdin: '' env: yes\n"
    assert err.read_text() == "to stderr\n"


def test_a_child_finds_pip_and_pipguard_imported_and_pips_tls_context_made(server: ForkServer, tmp_path: Path) -> None:
    """What every build child would do first, the server did once before it forked: imports, pip's TLS
    context, the compilers' ``--version`` lines (0.1 s of CPU and two processes each)."""
    out = tmp_path / "out"
    pid = server.spawn(["prepared"], str(out), str(tmp_path / "err"), server.env, {})
    assert _exit_code(server, pid) == 0, (tmp_path / "err").read_text()
    assert out.read_text() == "['pip._internal.commands.wheel', 'pipguard._pip.patches', 'pipguard.guard'] 1 True\n"


def test_a_child_gets_its_own_variables_on_top_of_the_servers_and_the_next_does_not(server: ForkServer, tmp_path: Path) -> None:
    own = server.spawn(["0"], str(tmp_path / "own.out"), str(tmp_path / "own.err"), server.env, {"FORK_TEST": "mine"})
    plain = server.spawn(["0"], str(tmp_path / "plain.out"), str(tmp_path / "plain.err"), server.env, {})
    assert _exit_code(server, own) == 0 and _exit_code(server, plain) == 0
    assert (tmp_path / "own.out").read_text().endswith("env: mine\n")
    assert (tmp_path / "plain.out").read_text().endswith("env: yes\n")


def test_children_run_side_by_side_and_each_reports_its_own_exit(server: ForkServer, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    waiting = server.spawn(["wait", str(fifo)], str(tmp_path / "w.out"), str(tmp_path / "w.err"), server.env, {})
    quick = server.spawn(["0"], str(tmp_path / "q.out"), str(tmp_path / "q.err"), server.env, {})
    assert _exit_code(server, quick) == 0
    assert server.poll(waiting) is None  # still blocked on the fifo
    with open(fifo, "w") as writer:
        writer.write("go")
    assert _exit_code(server, waiting) == 0


def test_sigterm_to_a_child_ends_it_with_the_stopped_code(server: ForkServer, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = server.spawn(["wait", str(fifo)], str(tmp_path / "out"), str(tmp_path / "err"), server.env, {})
    os.kill(pid, signal.SIGTERM)
    assert _exit_code(server, pid) == STOPPED


def test_another_environment_is_refused(server: ForkServer, tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        server.spawn(["0"], str(tmp_path / "out"), str(tmp_path / "err"), {**server.env, "FORK_TEST": "no"}, {})


def test_a_server_that_cannot_start_refuses_every_child(tmp_path: Path) -> None:
    runner = tmp_path / "runner.py"
    runner.write_text("raise ImportError('pipguard cannot run here')\n")
    broken = ForkServer(sys.executable, str(runner), dict(os.environ), STOPPED)
    try:
        with pytest.raises(Unavailable):
            broken.spawn(["0"], str(tmp_path / "out"), str(tmp_path / "err"), broken.env, {})
    finally:
        broken.close()
