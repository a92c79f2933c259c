"""``pipguard ARGS``: pip's command line, with source builds through the locked wheel cache.

Everything but ``pipguard --version``, ``pipguard -h`` and ``pipguard guard ...`` goes to pip itself, in
this process or under the target interpreter (see target.py), so output and exit codes are pip's own.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from collections.abc import Callable
from optparse import Values
from types import FrameType
from typing import NoReturn, TypeVar

from pipguard import __version__, _pip, target

GUARDED_COMMANDS = ("install", "wheel", "uninstall")
ERROR = 1  # pip's exit code for an interpreter it cannot use (``--python nowhere``)
T = TypeVar("T")
GUARD_HELP_LINE = "  guard                       pipguard's own: lock status, its wheel cache, PATH shims for pip."


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    named = target.named_up_front(args)
    if named is not None:
        target.exec_under(named, args)
    options, rest = _with_guard_in_help(lambda: _pip.parse_general(args))  # ``-h`` exits here
    if rest == ["guard", "--version"]:  # pipguard's own line alone, for the environment it would serve
        options.version = True
    elif rest[:1] == ["guard"] or rest[:2] == ["help", "guard"]:
        try:
            from pipguard.commands import guard_main
        except ImportError as exc:  # e.g. no fcntl: no locks, so nothing of pipguard's own to show
            sys.stderr.write(f"ERROR: pipguard guard cannot run here ({exc})\n")
            return 2
        return guard_main(rest[1:] if rest[0] == "guard" else ["--help", *rest[2:]])
    if rest in ([], ["help"]) and not options.version:  # pip prints its help for these too
        return _with_guard_in_help(lambda: _pip.main(args))
    try:
        interpreter = target.choose(options)
    except target.NoTarget as exc:
        if options.version:
            sys.stdout.write(f"pipguard {__version__} with {_pip.version_line()}; no target: {exc}\n")
            return 0
        sys.stderr.write(f"ERROR: {exc}\n")
        return ERROR
    if interpreter is not None:
        target.exec_under(interpreter, args)
    return run_here(args)


def console() -> NoReturn:
    """The ``pipguard`` command and ``python -m pipguard``: :func:`main`, then :func:`exit_now`."""
    exit_now(main())


def exit_now(status: int) -> NoReturn:
    """Exit with ``status`` as ``sys.exit`` would, less the interpreter's teardown: the exit functions run
    (pipguard's own clean-up, pip's log files), the standard streams are flushed, and the process ends
    without freeing the million objects pip's resolver and index pages left (0.2 s of CPU after an
    install here, the same in plain pip). Where that could differ from a normal exit (a thread other than
    a daemon still runs; a stream cannot be flushed, which Python reports in its own words), it is one."""
    import atexit
    import os
    import threading

    if any(not thread.daemon for thread in threading.enumerate() if thread is not threading.main_thread()):
        sys.exit(status)
    atexit._run_exitfuncs()
    atexit._clear()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(status)
    os._exit(status)


def run_here(args: list[str]) -> int:
    """Run pip in this process; install, wheel and uninstall go through the guard."""
    from pipguard import settings

    if not settings.is_build_child():  # pipguard's build child tells its parent of a signal itself
        signal.signal(signal.SIGTERM, _interrupt)
    options, rest = _pip.parse_general(args)
    if rest == ["guard", "--version"]:
        sys.stdout.write(version_text() + "\n")
        return 0
    if options.version:
        # pip's own line on stdout, as scripts read it (``pip --version | cut -d' ' -f2``); pipguard's on stderr.
        sys.stdout.write(_pip.version_line() + "\n")
        sys.stderr.write(version_text() + "\n")
        own = target.own_pip_version()
        if own is not None and own != _pip.pip_version():
            sys.stderr.write(f"pipguard: this environment has its own pip {own}; pipguard drives pip {_pip.pip_version()}\n")
        return 0
    command = rest[0] if rest else ""
    if command == "cache":
        status = _pip.main(args)
        if status == 0:
            try:
                from pipguard.commands import after_pip_cache

                after_pip_cache(rest[1:])
            except Exception as exc:  # noqa: BLE001 - pip's part is done; pipguard's never fails it
                _warn(options, f"pipguard's own cache was left as it is ({type(exc).__name__}: {exc})")
        return status
    if command not in GUARDED_COMMANDS:
        return _pip.main(args)  # pip alone: nothing more of pipguard's is loaded
    settings.scrub_environment()  # before any build: backends and the build child never see PIPGUARD_*
    try:
        from pipguard._pip.patches import BUILD_ENVIRONMENT_PATCHES, PATCHES, run_pip
        from pipguard.guard import CacheGuard
    except Exception as exc:  # noqa: BLE001 - no POSIX locks (fcntl), a dependency that does not run here...
        _warn(options, f"cannot load the build cache under {sys.executable} ({type(exc).__name__}: {exc}); running plain pip")
        return _pip.main(args)
    patches = BUILD_ENVIRONMENT_PATCHES if settings.is_build_child() else PATCHES
    asks_help = any(arg in ("-h", "--help") for arg in rest)
    return run_pip(args, CacheGuard, patches, opens_session=command != "uninstall" and not asks_help)


def _warn(options: Values, message: str) -> None:
    """A warning from before pipguard's output channel could load (it needs what failed): pip's ``-qq``
    hides it, as it hides every pipguard warning."""
    if int(getattr(options, "quiet", 0) or 0) < 2:
        sys.stderr.write(f"pipguard: warning: {message}\n")


def version_text() -> str:
    """pipguard, the environment it serves (this process runs as the target), and pip's own version line.

    e.g. ``pipguard 0.2.0 for /home/u/proj/.venv with pip 26.3 from …/pip (python 3.12)``: pip names the
    target's Python version, since it runs under the target too.
    """
    return f"pipguard {__version__} for {sys.prefix} with {_pip.version_line()}"


def _with_guard_in_help(call: Callable[[], T]) -> T:
    """Run ``call``; if it prints pip's main help and exits, add a line for ``guard`` to pip's commands."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            result = call()
    except SystemExit:
        sys.stdout.write(_add_guard_line(captured.getvalue()))
        raise
    sys.stdout.write(captured.getvalue())
    return result


def _add_guard_line(text: str) -> str:
    commands = text.find("Commands:\n")
    end = text.find("\n\n", commands) if commands >= 0 else -1
    if end < 0:
        return text  # not pip's main help (an error message, say): unchanged
    return f"{text[:end]}\n{GUARD_HELP_LINE}{text[end:]}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C: records and temp files are removed, pip reports the interruption."""
    raise KeyboardInterrupt
