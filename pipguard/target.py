"""Which interpreter pip works for, and running pipguard under it when it is not this one.

In this order, as a user who types ``pip`` expects:

1. ``--python PATH`` before the subcommand, or ``PIP_PYTHON`` (pip's own options);
2. an active virtualenv, ``$VIRTUAL_ENV`` (a stale one, whose directory is gone, gets one warning);
3. an active conda environment, ``$CONDA_PREFIX``;
4. when pipguard lives in a tool environment of its own, the ``python3`` first on ``PATH``: exactly the
   interpreter ``python3 -m pip`` would use, so pip's own refusals there (PEP 668 "externally managed",
   ``PIP_REQUIRE_VIRTUALENV``) pass through unchanged;
5. otherwise the environment pipguard is installed in: ``.venv/bin/pipguard install x`` and
   ``python -m pipguard`` serve that environment, as ``.venv/bin/pip`` and ``python -m pip`` do.

pipguard's environment is a *tool environment* when pipx or ``uv tool`` made it (their receipt files or
directory layout say so), or when it is a virtualenv whose ``pipguard`` was not invoked from inside it (a
symlink on PATH into a private venv, as pipx and Docker recipes make). pipguard never installs into its own
tool environment by accident: if the ``python3`` on PATH is that environment's, it refuses, and
``--python`` says so on purpose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from optparse import Values

from pipguard import _pip

# Top-level packages (and modules) pipguard needs under the target interpreter, served from pipguard's own
# environment. cryptography's Rust extension imports _cffi_backend, a module built for one Python version:
# under a target of another, it is not found there, and the remote tier is off with one warning.
_PACKAGES = (
    "pipguard", "pip", "filelock", "platformdirs", "packaging", "rich", "markdown_it", "mdurl", "pygments",
    "cryptography", "_cffi_backend",
)
# Files pipx and uv leave in the root of a tool environment they made.
_TOOL_RECEIPTS = ("pipx_metadata.json", "uv-receipt.toml")


class NoTarget(Exception):
    """No environment a user who typed ``pip`` could mean; the message says what to do instead."""


def named_up_front(args: list[str]) -> str | None:
    """The interpreter ``--python PATH`` names when it is the first argument and the subcommand follows it
    directly (``pipguard --python .venv install x``, how scripts and CI name an environment); None for any
    other command line, which pip's parser reads (:func:`choose`).

    pip's own parser costs 60 ms of imports before the exec, and it would find the same: the command line
    beats ``PIP_PYTHON`` and the configuration, nothing between the option and the subcommand can change
    it, and a subcommand word other than ``guard`` and ``help`` is pipguard's under that interpreter. The
    path is looked up as pip's ``identify_python_interpreter`` does (a file, or a directory's
    ``bin/python``); a path it would not find is left to pip, to say so in its own words."""
    if _pip.RUNNER_ENV in os.environ or not args:
        return None
    if args[0].startswith("--python="):
        python, rest = args[0].partition("=")[2], args[1:]
    elif args[0] == "--python" and len(args) > 1:
        python, rest = args[1], args[2:]
    else:
        return None
    if not python or python.startswith("-") or not rest or rest[0].startswith("-") or rest[0] in ("guard", "help"):
        return None
    if os.path.isdir(python):
        found = os.path.join(python, "bin", "python")
        return found if os.path.exists(found) else None
    return python if os.path.exists(python) else None


def choose(options: Values) -> str | None:
    """The interpreter to re-run under, or None to run in this process.

    Raises :class:`NoTarget` rather than fall back to pipguard's own tool environment.
    """
    if _pip.RUNNER_ENV in os.environ:
        return None
    if options.python:
        # pip reports an interpreter it cannot find; running here lets it say so in its own words.
        return _pip.identify_interpreter(options.python)
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        prefix = _active_environment(variable, options)
        if prefix is not None:
            return None if same_path(prefix, sys.prefix) else _pip.identify_interpreter(prefix)
    if not in_tool_environment():
        return None
    return _python3_on_path()


def _active_environment(variable: str, options: Values) -> str | None:
    """The directory ``variable`` names, if it exists; a stale one is reported once and skipped."""
    prefix = os.environ.get(variable)
    if not prefix:
        return None
    if os.path.isdir(prefix):
        return prefix
    if options.quiet < 2:  # pip's -qq hides warnings
        sys.stderr.write(f"pipguard: warning: ignoring {variable}={prefix}: no such directory (a deleted venv?)\n")
    return None


def in_tool_environment() -> bool:
    """True when pipguard runs from an environment of its own rather than the one the user works in."""
    if sys.prefix == sys.base_prefix:
        return False  # installed into a Python itself (system, --user): that Python, as its pip would
    if any(os.path.exists(os.path.join(sys.prefix, receipt)) for receipt in _TOOL_RECEIPTS):
        return True
    if _made_by_a_tool(sys.prefix):
        return True
    return not _invoked_from_inside()


def _made_by_a_tool(prefix: str) -> bool:
    """``…/pipx/venvs/<name>``, ``…/uv/tools/<name>``, or a venv in ``$PIPX_HOME/venvs`` or ``$UV_TOOL_DIR``."""
    parent = os.path.dirname(os.path.normpath(prefix))
    homes = [os.path.join(os.environ["PIPX_HOME"], "venvs")] if os.environ.get("PIPX_HOME") else []
    homes += [os.environ["UV_TOOL_DIR"]] if os.environ.get("UV_TOOL_DIR") else []
    if any(same_path(parent, home) for home in homes):
        return True
    grandparent, folder = os.path.split(parent)
    return (os.path.basename(grandparent), folder) in {("pipx", "venvs"), ("uv", "tools")}


def _invoked_from_inside() -> bool:
    """``python -m pipguard``, or a ``pipguard`` run by a path in this environment's own bin directory."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "__main__.py":
        return True
    return same_path(os.path.dirname(os.path.abspath(argv0)), _own_bin())


def _own_bin() -> str:
    return os.path.join(sys.prefix, "Scripts" if os.name == "nt" else "bin")


def _python3_on_path() -> str:
    """The ``python3`` a shell finds first on PATH, unless it is pipguard's own tool environment's."""
    found = shutil.which("python3")
    if found is None:
        raise NoTarget("no python3 on PATH to install for; name one with --python (or activate a virtualenv)")
    if same_path(os.path.dirname(found), _own_bin()):
        raise NoTarget(
            f"the python3 on PATH ({found}) is pipguard's own tool environment; "
            "pass --python to mean it, or put the Python you work with first on PATH"
        )
    return found


def same_path(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same file (False if either is missing)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")


def runner_sources() -> str:
    """Where ``_runner.py`` finds pipguard and the packages it drives (``PIPGUARD_SOURCES``): the folders
    this process imports them from, so another interpreter runs this very pipguard and this very pip."""
    sources = {}
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            sources[name] = os.path.dirname(list(spec.submodule_search_locations)[0])
        elif spec is not None and spec.origin:
            sources[name] = os.path.dirname(spec.origin)
    return json.dumps(sources)


def exec_under(interpreter: str, args: list[str]) -> None:
    """Replace this process with pipguard running under ``interpreter``: same pid, same exit code."""
    env = dict(os.environ)
    env[_pip.RUNNER_ENV] = "1"
    env["PIPGUARD_SOURCES"] = runner_sources()
    env.setdefault("PIPGUARD_ARGV", json.dumps(["pipguard", *args]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(interpreter, [interpreter, RUNNER, *args], env)


def own_pip_version() -> str | None:
    """The version of the pip installed in the environment this process serves, if it has one (the pip
    pipguard drives may be another: its own, served to the target by the runner)."""
    import sysconfig
    from importlib.metadata import distributions

    for dist in distributions(path=[sysconfig.get_paths()["purelib"]]):
        if (dist.metadata["Name"] or "").lower() == "pip":
            return dist.version
    return None
