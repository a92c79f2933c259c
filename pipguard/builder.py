"""Building one wheel in a child process: pip's own ``pip wheel``, for builds ahead and a writer's builds.

A miss is normally built by pip itself, in pipguard's process (guard.Pending). Two kinds of build run
here instead: builds ahead (ahead.py), which run side by side in threads while the resolver works, and a
writer's builds, which must not run in a process that holds the fleet's secrets (sandbox.py). The child
is a new interpreter running ``pip wheel --isolated --no-deps`` with the options the user's command
resolved to (the finder's index scope, build isolation, config settings, build constraints...): the same
pip under the same (target) interpreter. It runs through pipguard's runner as a *build child*: only its
build environments go through pipguard (a build requirement built from source is locked and cached), never
the source itself, so it cannot wait for the lock its parent holds; in a writer's sandbox, which hides the
cache, it runs through pip's own ``__pip-runner__.py``. Each child keeps a build tracker of its own. It is
never a fork of pipguard's process: a fork of a process with other threads alive is not safe (importlib's
per-module locks are not re-initialised; seen: a build child of a four-build install hung in
``import_ensure_initialized``). It is forked instead by a single-threaded fork server with pip imported
already (forkserver.py), where its output goes to files; else, and on a writer (inside bubblewrap), it is
a new interpreter. A child started through pipguard's runner stops before its first backend hook until
its parent has a job for it (gate.py): it prepares without one.

Its exit code tells whose failure it is: 1 is pip's "the build failed" (the backend, or pip around it:
plain pip would have failed the same way), reported as pip reports it and never retried in this run;
anything else is pipguard's (bad options, a crash), and the parent falls back to plain pip; but
``CHILD_STOPPED`` means the child was interrupted (Ctrl-C reaches the whole job): no outcome at all.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipguard._pip.failure import stage_of
from pipguard.errors import MACHINERY_ERRORS, BuildChildError, BuildFailed, BuildReport, BuildStopped
from pipguard.flocks import keep_locked
from pipguard.forkserver import RUN_AS_CHILD, ForkServer, Unavailable
from pipguard.gate import VARIABLE as GATE_VARIABLE
from pipguard.gate import Gate

if TYPE_CHECKING:
    from pipguard.sandbox import Confined, Sandbox


PIP_BUILD_FAILED = 1  # pip's ERROR status: a build, resolution or download failure
CHILD_STOPPED = 130  # the child was interrupted (Ctrl-C to the job, SIGTERM from its parent): no outcome


def claim(work: Path) -> int:
    """Lock ``work/.owner`` for this process's lifetime, so cache cleaning leaves the directory alone."""
    return keep_locked(work / ".owner")


def build(
    target: str, name: str, cli_args: tuple[str, ...], work: Path, verbosity: int, tick: Callable[[], None],
    take_job: Callable[[int | None], None], sandbox: Sandbox | None = None, keep_envs: bool = False,
) -> Path:
    """Build ``target`` (a path or URL) into ``work/wheel`` and return the one wheel it made (in a new
    interpreter inside ``sandbox``, if given: a writer's, sandbox.py). ``take_job`` takes the job the
    build code runs in, when the child is about to run it, given the weight the child reported (gate.py).
    ``keep_envs``: the user's command keeps what it builds (pip's cache is on), so the child uses and keeps
    isolated build environments too (the child itself always runs with ``--no-cache-dir``: its wheel goes
    to pipguard's cache only)."""
    out = work / "wheel"
    out.mkdir(exist_ok=True)
    command = [
        "wheel",
        "--isolated",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--wheel-dir",
        str(out),
        *(["-v"] * max(0, verbosity)),
        *(["-q"] * max(0, -verbosity)),
        *cli_args,
        target,
    ]
    stdout_path, stderr_path = work / "build.out", work / "build.err"
    # At -v the user watches the build as with plain pip; otherwise it is replayed only if it fails.
    gate = Gate(work, take_job)
    code = _run(command, None if verbosity > 0 else (stdout_path, stderr_path), tick, gate, sandbox, work, keep_envs)
    if code == CHILD_STOPPED:
        raise BuildStopped(f"the build of {name} was stopped")
    if code == PIP_BUILD_FAILED:
        report_out, report_err = _read(stdout_path), _read(stderr_path)
        raise BuildFailed(BuildReport(name, stage_of(report_out), report_out, report_err))
    if code != 0:
        raise BuildChildError(f"pip wheel exited with {code}{_tail(stderr_path)}")
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildChildError(f"expected one wheel, found {len(wheels)}")
    return wheels[0]


POLL_SECONDS = 0.02
TICK_SECONDS = 0.25
STOP_SECONDS = 5.0


def _run(
    args: list[str], sinks: tuple[Path, Path] | None, tick: Callable[[], None], gate: Gate, sandbox: Sandbox | None,
    work: Path, keep_envs: bool,
) -> int:
    """Start the child, wait for it (calling ``tick`` meanwhile), return its exit code.

    A new interpreter (see the module's docstring), in bubblewrap on a writer. Same process group as
    pipguard: a shell, make or CI runner that stops the job stops the build."""
    sys.stdout.flush()
    sys.stderr.flush()
    if sandbox is not None:  # never a fork: the child must hold nothing of this process's
        with sandbox.confine(work) as confined:
            return confined.exit_code(_wait(_spawn(args, sinks, gate, confined), tick, gate))
    return _wait(_spawn(args, sinks, gate, keep_envs=keep_envs), tick, gate)


# Runs pip's runner, or pipguard's (as ``pip --python`` does). Ctrl-C and SIGTERM unwind pip as in plain pip (its temp
# dirs go), then the child exits with CHILD_STOPPED: its parent must not take pip's "operation cancelled"
# status for a failed build (which it would report, and hand to other processes).
_SPAWNED_CHILD = (
    "import os, runpy, signal, sys\n"
    + RUN_AS_CHILD
    + "sys.argv = sys.argv[1:]\n"
    "def run():\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "    return 0\n"
    f"run_as_child(run, {CHILD_STOPPED})\n"
)


def _spawn(
    args: list[str], sinks: tuple[Path, Path] | None, gate: Gate, confined: Confined | None = None,
    keep_envs: bool = False,
) -> int:
    """A new interpreter running pip with ``args``; its pid.

    Through pipguard's runner, as a build child (only its build environments go through pipguard, so a
    build requirement built from source is locked and cached as in any other build), which stops at
    ``gate`` before its build code; inside ``confined`` (a writer's sandbox, which hides the cache), or
    where pipguard cannot hand its settings on, through pip's own runner, which has its job from the start."""
    runner, env, through_pipguard = _child_setup(confined, keep_envs)
    gated = {GATE_VARIABLE: str(gate.path)} if through_pipguard else {}
    if not through_pipguard:
        gate.take_job_now()
    if through_pipguard and sinks is not None:
        pid = _forked(runner, args, sinks, env, gated)
        if pid is not None:
            return pid
    prefix = confined.prefix if confined else ()
    outputs = [open(path, "wb") for path in sinks] if sinks is not None else [None, None]  # noqa: SIM115
    try:
        child = subprocess.Popen(
            [*prefix, sys.executable, "-c", _SPAWNED_CHILD, runner, *args],
            stdin=subprocess.DEVNULL,
            stdout=outputs[0],
            stderr=outputs[1],
            env={**env, **gated},
            pass_fds=confined.pass_fds if confined else (),
        )
    finally:
        for handle in outputs:
            if handle is not None:
                handle.close()
    _SPAWNED[child.pid] = child
    return child.pid


def _child_setup(confined: Confined | None, keep_envs: bool) -> tuple[str, dict[str, str], bool]:
    """The runner a child runs, its environment, and whether that runner is pipguard's."""
    from pipguard._pip import pip_location

    runner = os.path.join(pip_location(), "__pip-runner__.py")
    env = confined.env if confined else dict(os.environ)
    through_pipguard = False
    if confined is None:
        with contextlib.suppress(*MACHINERY_ERRORS, ImportError, ValueError):
            from pipguard._pip import build_deps
            from pipguard.settings import BUILD_CHILD_VARIABLE
            from pipguard.target import RUNNER

            env = {**env, **build_deps.child_environment(), BUILD_CHILD_VARIABLE: "keep" if keep_envs else "1"}
            runner, through_pipguard = RUNNER, True
    return runner, _own_build_tracker(env), through_pipguard


def warm_up(keep_envs: bool) -> None:
    """Start the fork server now (a build ahead is coming), so that it imports pip while the source is
    downloaded and keyed, not while the first child waits for it."""
    runner, env, through_pipguard = _child_setup(None, keep_envs)
    if through_pipguard:
        _server_for(runner, env)


_server: ForkServer | None = None
_server_lock = threading.Lock()
# Children the fork server started, by pid: their exit codes come from it (they are its children).
_FORKED: dict[int, ForkServer] = {}


def _forked(
    runner: str, args: list[str], sinks: tuple[Path, Path], env: dict[str, str], own: dict[str, str]
) -> int | None:
    """A child running pipguard's ``runner``, forked by this process's fork server (forkserver.py, started
    with the first child, in its environment, to which the child adds ``own``); None where it cannot
    (another environment, a server that failed): the caller starts a new interpreter, as always. Only where
    the output goes to files: at ``-v`` the child prints on pipguard's own terminal, which the server does
    not hold."""
    server = _server_for(runner, env)
    if server is None:
        return None
    try:
        pid = server.spawn(args, str(sinks[0]), str(sinks[1]), env, own)
    except Unavailable:
        return None
    _FORKED[pid] = server
    return pid


def _server_for(runner: str, env: dict[str, str]) -> ForkServer | None:
    """This process's fork server, started in ``env`` if there is none yet; None if it cannot start."""
    global _server
    with _server_lock:
        if _server is None:
            try:
                _server = ForkServer(sys.executable, runner, env, CHILD_STOPPED)
            except OSError:
                return None
            atexit.register(_server.close)
        return _server


def _own_build_tracker(env: dict[str, str]) -> dict[str, str]:
    """``env`` without ``PIP_BUILD_TRACKER``: pip shares its build tracker with the pips it starts, and
    refuses to build a source the tracker says is being built. Builds ahead run side by side, each with its
    own build environments, so two of them may need one build requirement built at once: each child keeps
    a tracker of its own, as each plain pip process does."""
    return {name: value for name, value in env.items() if name != "PIP_BUILD_TRACKER"}


# Spawned children by pid: Popen objects must live until their child is reaped (waitpid below reaps it).
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


def _exit_code(pid: int) -> int | None:
    """The child's exit code once it ended, else None."""
    server = _FORKED.get(pid)
    if server is not None:
        code = server.poll(pid)
        if code is not None:
            del _FORKED[pid]
        return code
    done, status = os.waitpid(pid, os.WNOHANG)
    if not done:
        return None
    _SPAWNED.pop(pid, None)
    return os.waitstatus_to_exitcode(status)


def _wait(pid: int, tick: Callable[[], None], gate: Gate) -> int:
    try:
        last_tick = time.monotonic()
        while True:
            code = _exit_code(pid)
            if code is not None:
                return code
            gate.poll()
            if time.monotonic() - last_tick >= TICK_SECONDS:
                last_tick = time.monotonic()
                tick()
            time.sleep(POLL_SECONDS)
    except BaseException:
        _stop(pid)
        _SPAWNED.pop(pid, None)
        _FORKED.pop(pid, None)
        raise


def _stop(pid: int) -> None:
    """An interrupted parent takes its build child down with it (its work dir is removed right after)."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            if _exit_code(pid) is not None:
                return
            time.sleep(POLL_SECONDS)
        os.kill(pid, signal.SIGKILL)
        while _exit_code(pid) is None:
            time.sleep(POLL_SECONDS)
    except ChildProcessError:
        return
    except ProcessLookupError:
        return


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tail(path: Path) -> str:
    lines = _read(path).strip().splitlines()
    return f": {lines[-1]}" if lines else ""
