"""A backend hook's interpreter started while the hook before it runs.

pip runs each PEP 517 hook in a fresh interpreter (pip's vendored ``pyproject_hooks``: ``python
_in_process.py HOOK CONTROL_DIR``), and most of a small hook is that interpreter importing its backend:
``setuptools.build_meta``, not yet compiled, is 0.56 s of a 0.6 s hook here. Where pipguard runs the
next hook itself (the wheel built for an sdist's metadata, metadata.py), it starts that interpreter
when pip starts ``get_requires_for_build_wheel``: the same interpreter, working directory and
environment, which imports the backend on the other core and then waits. When the next hook is due,
it is given its name and control directory and runs pip's own ``_in_process.py`` as a script run
would: a fresh process whose only difference is that its backend was imported earlier.

Only where that is the same: a backend from the build environment, not from the source tree
(``backend-path``: the in-process script checks where such a backend comes from, and the tree may change
in between); an import that neither failed nor warned (the in-process script records a backend's
warnings and pip logs them; a warning raised before it runs would be lost); the very command, working
directory and environment the hook is run with; and a backend that asked for no further requirements
(pip would install them into the build environment, which the warm interpreter looked at before). Anything else, and the hook runs in a fresh interpreter as always.

pip versions: the in-process script's arguments and its ``_PYPROJECT_HOOKS_*`` variables, the same in
pip 25.3 and 26.3 but for the name of the backend-path one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BACKEND_VARIABLE = "_PYPROJECT_HOOKS_BUILD_BACKEND"
BACKEND_PATH_PREFIX = "_PYPROJECT_HOOKS_BACKEND_PATH"  # _JSON in pip 26.3's copy, without it in 25.3's
FIRST_HOOK = "get_requires_for_build_wheel"

# The warm interpreter: argv is [in-process script, status fd]. It drops the '' that ``-c`` puts first
# on sys.path (a script run puts its own directory there, which the in-process script drops), imports
# the backend, says on the status pipe whether that went cleanly, and waits for one line on stdin:
# ``HOOK\0CONTROL_DIR``. End of input (the parent discards it) ends it without running anything. The
# script then runs as a script run does: as ``__main__`` with its ``__file__`` and ``argv``, and an
# exception it does not catch is printed from the script's own frame down, as Python prints it there.
_PROGRAM = r"""
import os, sys, warnings
script, status = sys.argv[1], int(sys.argv[2])
if sys.path and sys.path[0] == "":
    del sys.path[0]
with warnings.catch_warnings(record=True) as caught:  # as the in-process script records them
    try:
        __import__(os.environ["_PYPROJECT_HOOKS_BUILD_BACKEND"].partition(":")[0])
        clean = not caught
    except BaseException:
        clean = False
os.write(status, b"ok" if clean else b"no")
os.close(status)
line = sys.stdin.buffer.readline()
if not clean or not line.endswith(b"\n"):
    sys.exit(0)
hook, _, control = line[:-1].decode("utf-8", "surrogateescape").partition("\0")
import builtins, importlib.machinery, types
with open(script, "rb") as source:
    code = compile(source.read(), script, "exec")
sys.argv = [script, hook, control]
warm, main = sys.modules["__main__"], types.ModuleType("__main__")
main.__dict__.update(__file__=script, __builtins__=builtins, __cached__=None,
                     __loader__=importlib.machinery.SourceFileLoader("__main__", script))
sys.modules["__main__"] = main
try:
    exec(code, main.__dict__)
except SystemExit:
    raise
except BaseException as error:
    error.with_traceback(error.__traceback__.tb_next)  # printing reads the exception's own traceback
    sys.excepthook(type(error), error, error.__traceback__)
    sys.exit(1)
"""


@dataclass
class _Warm:
    proc: subprocess.Popen[bytes]
    status: int  # the read end of the status pipe

    def ready(self) -> bool:
        """Wait for the backend's import; whether it went cleanly."""
        try:
            answer = os.read(self.status, 2)
        except OSError:
            return False
        finally:
            os.close(self.status)
        return answer == b"ok"

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.status)
        with contextlib.suppress(OSError):
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.proc.wait()


_Key = tuple[str, str, str | None, frozenset[tuple[str, str]]]
_waiting: dict[_Key, _Warm] = {}
_lock = threading.Lock()


def _key(cmd: Sequence[str], cwd: str | None, extra_environ: Mapping[str, Any] | None) -> _Key | None:
    """What a hook's interpreter is started with; None for a hook whose backend comes from the tree."""
    env = {**os.environ, **(extra_environ or {})}
    if len(cmd) < 2 or BACKEND_VARIABLE not in env or any(name.startswith(BACKEND_PATH_PREFIX) for name in env):
        return None
    return str(cmd[0]), str(cmd[1]), cwd, frozenset(env.items())


def alongside(runner: Callable[..., None]) -> Callable[..., None]:
    """pip's runner for ``get_requires_for_build_wheel``, which first starts the next hook's
    interpreter (see the module's docstring)."""

    def run(cmd: list[str], cwd: str | None = None, extra_environ: Mapping[str, Any] | None = None) -> None:
        if len(cmd) > 2 and cmd[2] == FIRST_HOOK:
            with contextlib.suppress(OSError, ValueError):
                _start(cmd, cwd, extra_environ)
        runner(cmd, cwd=cwd, extra_environ=extra_environ)

    return run


def _start(cmd: list[str], cwd: str | None, extra_environ: Mapping[str, Any] | None) -> None:
    key = _key(cmd, cwd, extra_environ)
    if key is None:
        return
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            [cmd[0], "-c", _PROGRAM, cmd[1], str(write)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env=dict(key[3]), pass_fds=(write,),
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    with _lock:
        previous = _waiting.pop(key, None)
        _waiting[key] = _Warm(proc, read)
    if previous is not None:
        previous.discard()


def take(cmd: Sequence[str], cwd: str | None, extra_environ: Mapping[str, Any] | None) -> subprocess.Popen[bytes] | None:
    """The warm interpreter started for exactly this hook's command, now running it (its stdin closed,
    as a fresh one's is); None: run it in a fresh interpreter."""
    key = _key(cmd, cwd, extra_environ) if len(cmd) == 4 else None
    with _lock:
        warm = _waiting.pop(key, None) if key is not None else None
    if warm is None:
        return None
    if not warm.ready() or warm.proc.stdin is None:
        warm.discard()
        return None
    try:
        warm.proc.stdin.write(f"{cmd[2]}\0{cmd[3]}\n".encode("utf-8", "surrogateescape"))
        warm.proc.stdin.close()
    except OSError:
        warm.discard()
        return None
    return warm.proc


def discard_all() -> None:
    """End every warm interpreter: the hook they were started for will not run as started (the backend
    asked for more requirements, pip runs its own metadata hook), or the command ends."""
    with _lock:
        waiting = list(_waiting.values())
        _waiting.clear()
    for warm in waiting:
        warm.discard()
