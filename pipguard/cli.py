"""``pipguard ARGS``: pip's command line, with source builds through the locked wheel cache.

Everything but ``pipguard --version`` and ``pipguard guard ...`` goes to pip itself, in this process or
under the target interpreter, so output and exit codes are pip's own.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from pipguard import __version__, _pip, target

GUARDED_COMMANDS = ("install", "wheel", "uninstall")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options, rest = _pip.parse_general(args)
    if options.version:
        sys.stdout.write(f"pipguard {__version__} with {_pip.version_line()}\n")
        return 0
    if rest and rest[0] == "guard":
        from pipguard.commands import guard_main

        return guard_main(rest[1:])
    interpreter = target.choose(options)
    if interpreter is not None:
        target.exec_under(interpreter, args)
    return run_here(args)


def run_here(args: list[str]) -> int:
    """Run pip in this process; install, wheel and uninstall go through the guard."""
    signal.signal(signal.SIGTERM, _interrupt)
    options, rest = _pip.parse_general(args)
    command = rest[0] if rest else ""
    if command not in GUARDED_COMMANDS:
        return _pip.main(args)  # pip alone: nothing more of pipguard's is loaded
    from pipguard import display

    try:
        from pipguard._pip.patches import run_pip
        from pipguard.guard import CacheGuard
    except Exception as exc:  # noqa: BLE001 - e.g. a dependency that does not run under this interpreter
        display.warn(f"cannot load the build cache under {sys.executable} ({exc}); running plain pip")
        return _pip.main(args)
    return run_pip(args, CacheGuard)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C: records and temp files are removed, pip reports the interruption."""
    raise KeyboardInterrupt
