"""Build children forked from one interpreter that has pip imported already.

Each build ahead runs ``pip wheel`` in a child of its own (builder.py): a new interpreter that imports
pip before it does anything, 0.4 to 0.6 s of CPU per build, on the cores the builds themselves need.
This starts one interpreter per command, the *fork server*, with the very environment and working
directory the children get; it runs pipguard's runner as far as the runner's own imports, imports the
modules of pip and pipguard a build child needs, works out once what each child would first work out the
same way (:func:`prepare_children`), and then forks a child for each build asked of it. A child is what
a new interpreter would be at that point: the same interpreter, modules imported from the same files, the
same environment (a request with any other is refused, and the caller starts a new interpreter).

The fork server is single-threaded, and checks it is before each fork: a fork of a process with other
threads alive is not safe (importlib's locks, seen hanging), which is why pipguard's own process, with
its build threads, never forks. Its children are in pipguard's process group (Ctrl-C to the job reaches
them; the server itself ignores it and ends when pipguard closes its pipe). It reports each child's pid,
then its exit code, over a pipe: the child is its child, not pipguard's, so pipguard cannot wait for it.

Protocol, one JSON line each way: ``{"args": [...], "stdout": PATH, "stderr": PATH, "env": {...}}`` in
(``env``: what the child adds to the server's environment, its gate: gate.py), ``{"pid": N}``
(or ``{"refused": WHY}``) back, and later ``{"exit": N, "code": C}`` for each child that ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import IO, Any

# The modules a build child imports before it builds anything, pip's and pipguard's (what is imported here
# is not imported again by each child). Then the server does what every child would do first the same way,
# once (prepare_children); nothing else of pip runs in it.
PRELOAD = (
    "pip._internal.cli.main",
    "pip._internal.commands.wheel",
    "pip._internal.resolution.resolvelib.resolver",
    "pip._internal.operations.prepare",
    "pip._internal.operations.install.wheel",
    "pip._internal.metadata.importlib",
    "pip._internal.wheel_builder",
    "pip._internal.network.session",
    "pip._internal.index.package_finder",
    "pipguard.guard",
    "pipguard.builder",
    "pipguard._pip.patches",
)

# How a build child runs, in a new interpreter (builder.py) or forked here: Ctrl-C and SIGTERM unwind pip
# as in plain pip (its temp dirs go), then the child exits with ``stopped``: its parent must not take
# pip's "operation cancelled" status for a failed build (which it would report, and hand to other
# processes). Signals blocked until the handlers are in place (the fork server's) are handled then.
RUN_AS_CHILD = """\
def run_as_child(run, stopped):
    seen = []
    def interrupted(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupted)
    code = 2
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stopped if seen else code)
"""

# The server: argv is [runner, stopped exit code, preload...]. The runner runs under another name, so it
# stops after its own imports and hands over ``run_here``.
_SERVER = r"""
import json, os, runpy, select, signal, sys, threading
""" + RUN_AS_CHILD + r"""
runner, stopped = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGINT, signal.SIG_IGN)
STOPPING = {signal.SIGINT, signal.SIGTERM}
namespace = runpy.run_path(runner, run_name="pipguard-fork-server")
for name in sys.argv[3:]:
    try:
        __import__(name)
    except Exception:
        pass
try:
    from pipguard.forkserver import prepare_children
    prepare_children()
except Exception:
    pass
requests, answers = sys.stdin.buffer, sys.stdout

def answer(message):
    answers.write(json.dumps(message) + "\n")
    answers.flush()

def child(args, out, err, own):
    os.environ.update(own)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o666)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin, sys.stdout, sys.stderr = (open(0, "r", closefd=False), open(1, "w", closefd=False),
                                         open(2, "w", closefd=False))
    sys.argv = ["__main__.py", *args]
    run_as_child(lambda: namespace["run_here"](args), stopped)

children = set()
while True:
    readable = select.select([requests], [], [], 0.05)[0] if children else [requests]
    if readable:
        line = requests.readline()
        if not line:
            break
        request = json.loads(line)
        if threading.active_count() != 1:
            answer({"refused": "the fork server has threads"})
            continue
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)  # until the child's handlers are in place
        pid = os.fork()
        if pid == 0:
            child(request["args"], request["stdout"], request["stderr"], request["env"])
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)
        children.add(pid)
        answer({"pid": pid})
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if not pid:
            break
        children.discard(pid)
        answer({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
"""


def prepare_children() -> None:
    """In the fork server, before its first fork: what each build child would work out first, and the same
    way as every other (each keeps it for its process, so its forks find it done): pip's TLS context, and
    the compilers' ``--version`` lines its build environment's key names (keys.toolchain: two processes
    per child otherwise, on the way to its first download). A child whose ``CC`` or ``PATH`` differed
    would ask again: the answers are kept per command and path."""
    from pipguard import keys
    from pipguard._pip import warm_for_children

    warm_for_children()
    keys.toolchain()


class Unavailable(Exception):
    """The fork server cannot start this child: start a new interpreter instead."""


class ForkServer:
    """One fork server, for the children of one environment (see the module's docstring)."""

    def __init__(self, python: str, runner: str, env: Mapping[str, str], stopped: int) -> None:
        self.env = dict(env)
        self._proc = subprocess.Popen(
            [python, "-c", _SERVER, runner, str(stopped), *PRELOAD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env,
        )
        self._asking = threading.Lock()  # one request and its answer at a time
        self._changed = threading.Condition()
        self._answers: list[dict[str, Any]] = []
        self._exits: dict[int, int] = {}
        self._broken: str | None = None
        self._reader = threading.Thread(target=self._read, name="pipguard-fork-server", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream: IO[bytes] | None = self._proc.stdout
        assert stream is not None
        try:
            for line in stream:
                message = json.loads(line)
                with self._changed:
                    if "exit" in message:
                        self._exits[int(message["exit"])] = int(message["code"])
                    else:
                        self._answers.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass
        with self._changed:
            self._broken = self._broken or "the fork server ended"
            self._changed.notify_all()

    def spawn(self, args: list[str], stdout: str, stderr: str, env: Mapping[str, str], own: Mapping[str, str]) -> int:
        """Fork a child running pipguard with ``args``, its output in the two files, ``own`` added to its
        environment; its pid."""
        if dict(env) != self.env:
            raise Unavailable("another environment")
        stdin = self._proc.stdin
        assert stdin is not None
        with self._asking:
            with self._changed:
                if self._broken:
                    raise Unavailable(self._broken)
            try:
                request = {"args": args, "stdout": stdout, "stderr": stderr, "env": dict(own)}
                stdin.write((json.dumps(request) + "\n").encode())
                stdin.flush()
            except OSError as exc:
                raise Unavailable(f"the fork server's pipe: {exc}") from None
            with self._changed:
                while not self._answers and not self._broken:
                    self._changed.wait()
                if not self._answers:
                    raise Unavailable(str(self._broken))
                answer = self._answers.pop(0)
        if "pid" not in answer:
            raise Unavailable(str(answer.get("refused")))
        return int(answer["pid"])

    def poll(self, pid: int) -> int | None:
        """The exit code of child ``pid`` once it ended (negative: killed by that signal), else None."""
        with self._changed:
            if pid in self._exits:
                return self._exits.pop(pid)
            if not self._broken:
                return None
        # The server is gone, and with it what its child's end would tell: a child of pipguard's own
        # machinery that failed (not the build's failure), and the caller falls back to plain pip.
        return -signal.SIGKILL

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """Like :meth:`poll`, waiting for the child to end (at most ``timeout`` seconds)."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or self._broken is not None, timeout)
        return self.poll(pid)

    def close(self) -> None:
        """End the server (its running children are not touched: they end with their builds)."""
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        if self._proc.returncode is None:
            self._proc.kill()
            self._proc.wait()
