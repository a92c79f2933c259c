"""Building one wheel: pip's own ``pip wheel`` in a child process, the one place pipguard runs one.

The child is exactly the pip that runs now (through its ``__pip-runner__.py``), under the target
interpreter, with ``--isolated`` and the options the user's command resolved to (index, build isolation,
config settings, build constraints...). It never goes through pipguard again, so it cannot wait for the
lock its parent holds.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pipguard import pipseam
from pipguard.flocks import keep_locked


class BuildFailed(Exception):
    """The backend (or pip around it) failed: pip gets to try, and to report, itself."""


def claim(work: Path) -> int:
    """Lock ``work/.owner`` for this process's lifetime, so cache cleaning leaves the directory alone."""
    return keep_locked(work / ".owner")


def build(target: str, cli_args: tuple[str, ...], work: Path, verbosity: int, tick: Callable[[], None]) -> Path:
    """Build ``target`` (a path or URL) into ``work/wheel`` and return the one wheel it made."""
    out = work / "wheel"
    out.mkdir(exist_ok=True)
    command = [
        sys.executable,
        pipseam.runner_script(),
        "wheel",
        "--isolated",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--wheel-dir",
        str(out),
        *(["-v"] * max(0, verbosity - 1)),
        *cli_args,
        target,
    ]
    log_path = work / "build.log"
    with open(log_path, "wb") as log:
        sink = None if verbosity > 0 else log
        # Same process group as pipguard: a shell, make or CI runner that stops the job stops the build.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
        try:
            while True:
                try:
                    code = process.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    tick()
        except BaseException:
            _stop(process)
            raise
    if code != 0:
        raise BuildFailed(f"pip wheel exited with {code}{_tail(log_path)}")
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildFailed(f"expected one wheel, found {len(wheels)}")
    return wheels[0]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """An interrupted parent takes its build child down with it (its work dir is removed right after)."""
    with contextlib.suppress(OSError):
        process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()


def _tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1]}" if lines else ""
