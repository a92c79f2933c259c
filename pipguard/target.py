"""Which interpreter pip works for, and running pipguard under it when it is not this one.

As pip: ``--python PATH`` before the subcommand, or ``PIP_PYTHON``. Beyond pip: with pipguard installed
outside the active virtualenv (``alias pip=pipguard`` with pipguard from pipx), ``$VIRTUAL_ENV`` is the
target, because that is the environment a user who types ``pip`` means.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from optparse import Values

from pipguard import _pip

# Top-level packages pipguard needs under the target interpreter, served from pipguard's own environment.
_PACKAGES = ("pipguard", "pip", "filelock", "platformdirs", "packaging", "rich", "markdown_it", "mdurl", "pygments")


def choose(options: Values) -> str | None:
    """The interpreter to re-run under, or None to run in this process."""
    if _pip.RUNNER_ENV in os.environ:
        return None
    if options.python:
        # pip reports an interpreter it cannot find; running here lets it say so in its own words.
        return _pip.identify_interpreter(options.python)
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and os.path.isdir(venv) and not _same_path(venv, sys.prefix):
        return _pip.identify_interpreter(venv)
    return None


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def exec_under(interpreter: str, args: list[str]) -> None:
    """Replace this process with pipguard running under ``interpreter``: same pid, same exit code."""
    sources = {}
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            sources[name] = os.path.dirname(list(spec.submodule_search_locations)[0])
    env = dict(os.environ)
    env[_pip.RUNNER_ENV] = "1"
    env["PIPGUARD_SOURCES"] = json.dumps(sources)
    env.setdefault("PIPGUARD_ARGV", json.dumps(["pipguard", *args]))
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(interpreter, [interpreter, runner, *args], env)
