"""pip's build-dependency installs, run through pipguard: a build requirement built from source is built
once, under its lock, into the cache, like any sdist of a top-level install.

pip installs a build environment's requirements with a child pip (``SubprocessBuildEnvironmentInstaller``:
``[python, get_runnable_pip(), "install", "--prefix", ...]``). Plain, that child takes no lock and builds
every sdist it needs again, so N builds that need one build requirement from source build it N times, into
pip's cache, racing. The seam rewrites that one command, where pip starts it: the interpreter, arguments
and output stay pip's, only pip's runner becomes pipguard's (``_runner.py``, which serves this very pip and
this very pipguard to any interpreter, a build venv's too), and the child's environment gains what it needs
to share this process's cache: its local settings and the pids it runs for (settings.child_environment;
never the remote tier's secrets). The child takes them out of its environment before it builds anything.
If pipguard cannot run there, the runner hands over to pip's own, silently: plain pip.

The child waits for another process's build as any pipguard does, but its ``pipguard:`` lines go to its
own stderr, which pip captures and shows only when the install fails or at ``-v``, as it would show any of
that child's output. A lock held by a process that is blocked on the child (its parents, and whoever waits
for them) is never waited for: guard.py builds it without the lock instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pipguard.errors import MACHINERY_ERRORS


def rerouted(cmd: list[str]) -> list[str] | None:
    """``cmd`` with pipguard's runner in place of pip's, if it is a run of this pip's runner; else None."""
    from pipguard import target
    from pipguard._pip import pip_location

    pip_runner = os.path.join(pip_location(), "__pip-runner__.py")
    if len(cmd) < 2 or not isinstance(cmd[1], str) or not target.same_path(cmd[1], pip_runner):
        return None
    return [cmd[0], target.RUNNER, *cmd[2:]]


def child_environment() -> dict[str, str]:
    """The variables the child adds to the environment pip gives it."""
    from pipguard import settings, target
    from pipguard._pip import agent

    return {**settings.child_environment(), **agent.handed(), "PIPGUARD_SOURCES": target.runner_sources()}


def install_call(original: Callable[..., str], seam: Any) -> Callable[..., str]:
    """The hook of ``call_subprocess`` as pip's build-environment installer calls it."""

    def call_subprocess(cmd: list[str], *args: Any, **kwargs: Any) -> str:
        command = rerouted(cmd) if len(args) < 5 else None  # pip passes extra_environ by keyword
        if command is None:
            return original(cmd, *args, **kwargs)
        try:
            extra = {**(kwargs.get("extra_environ") or {}), **child_environment()}
        except (*MACHINERY_ERRORS, ImportError, ValueError):  # pipguard's own failure: plain pip's install
            return original(cmd, *args, **kwargs)
        return original(command, *args, **{**kwargs, "extra_environ": extra})

    return call_subprocess

