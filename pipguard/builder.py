"""Building one wheel: pip's own ``pip wheel`` in a child process, the one place pipguard runs one.

The child is exactly the pip that runs now (through its ``__pip-runner__.py``), under the target
interpreter, with ``--isolated`` and the options the user's command resolved to (the finder's index scope,
build isolation, config settings, build constraints...). It never goes through pipguard again, so it
cannot wait for the lock its parent holds.

Its exit code tells whose failure it is: 1 is pip's "the build failed" (the backend, or pip around it:
plain pip would have failed the same way), reported as pip reports it and never retried in this run;
anything else is pipguard's (bad options, a crash), and the parent falls back to plain pip.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pipguard import _pip
from pipguard._pip.failure import stage_of
from pipguard.errors import BuildChildError, BuildFailed, BuildReport
from pipguard.flocks import keep_locked

PIP_BUILD_FAILED = 1  # pip's ERROR status: a build, resolution or download failure


def claim(work: Path) -> int:
    """Lock ``work/.owner`` for this process's lifetime, so cache cleaning leaves the directory alone."""
    return keep_locked(work / ".owner")


def build(
    target: str, name: str, cli_args: tuple[str, ...], work: Path, verbosity: int, tick: Callable[[], None]
) -> Path:
    """Build ``target`` (a path or URL) into ``work/wheel`` and return the one wheel it made."""
    out = work / "wheel"
    out.mkdir(exist_ok=True)
    command = [
        sys.executable,
        _pip.runner_script(),
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
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        # At -v the user watches the build as with plain pip; otherwise it is replayed only if it fails.
        sinks = (None, None) if verbosity > 0 else (stdout, stderr)
        code = _run(command, sinks, tick)
    if code == PIP_BUILD_FAILED:
        report_out, report_err = _read(stdout_path), _read(stderr_path)
        raise BuildFailed(BuildReport(name, stage_of(report_out), report_out, report_err))
    if code != 0:
        raise BuildChildError(f"pip wheel exited with {code}{_tail(stderr_path)}")
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildChildError(f"expected one wheel, found {len(wheels)}")
    return wheels[0]


def _run(command: list[str], sinks: tuple[object, object], tick: Callable[[], None]) -> int:
    # Same process group as pipguard: a shell, make or CI runner that stops the job stops the build.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sinks[0], stderr=sinks[1])  # type: ignore[arg-type]
    try:
        while True:
            try:
                return process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                tick()
    except BaseException:
        _stop(process)
        raise


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


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tail(path: Path) -> str:
    lines = _read(path).strip().splitlines()
    return f": {lines[-1]}" if lines else ""
