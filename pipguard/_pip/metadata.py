"""A source's metadata from its build: one backend run where pip makes two.

pip prepares an sdist's metadata (``prepare_metadata_for_build_wheel``, one interpreter that imports the
backend and runs ``egg_info`` or its like) and, once the resolver has chosen it, builds the wheel
(``build_wheel``, another interpreter doing the same work again, and more). PEP 517 lets a frontend take
the metadata from the wheel instead, and pip's hook library does exactly that for a backend without the
metadata hook: it builds the wheel, takes its ``.dist-info``, and leaves a marker beside it, so that the
later ``build_wheel`` call copies that wheel instead of building it again. pipguard does the same for
every backend, where pip will build what it prepares (``install`` that installs, ``wheel``): one backend
import and one ``egg_info`` less per sdist, the same wheel. pip's ``build_wheel`` step then copies that
wheel here, as the hook library's script would (an interpreter started only to copy a file).

Only where it cannot be seen: the hook's output is shown nowhere (pip shows it at ``-v`` and writes it to
``--log``; then pip runs its own two hooks). pip's own spinner line is shown for the step, as pip shows it.
If the build fails there, pip's metadata hook runs after all, in the same spinner, so a failure of the
metadata is pip's own; if the metadata then succeeds, the failed build is not run again: pip's build step
shows its recorded output and exit code, as pip shows a failed build (``replay_failure``).

pip versions: ``req_install.generate_metadata`` and ``wheel_builder.build_wheel_pep517`` (the names
those modules import), and the marker's name from pip's vendored ``pyproject_hooks._in_process``, the same
in pip 25.3 and 26.3.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipguard._pip import warm_hooks

MESSAGE = "Preparing metadata (pyproject.toml)"
_built: set[str] = set()  # the metadata directories whose wheel generate() built
# Prints a recorded build's output and exits with its code: pip's runner then reports it as the build's.
_REPLAY = "import sys; sys.stdout.write(open(sys.argv[1], encoding='utf-8').read()); sys.exit(int(sys.argv[2]))"


@dataclass(frozen=True)
class FailedBuild:
    """A build run for metadata that failed, while the metadata itself could be prepared."""

    output: str
    returncode: int


class _Failed(Exception):
    def __init__(self, output: bytes, returncode: int) -> None:
        super().__init__(returncode)
        self.output, self.returncode = output, returncode


def hidden() -> bool:
    """Whether a hook's output goes nowhere: pip shows it at ``-v`` and logs it to ``--log`` files."""
    from pip._internal.utils.logging import VERBOSE
    from pip._internal.utils.subprocess import subprocess_logger

    return subprocess_logger.getEffectiveLevel() > VERBOSE


def marker() -> str | None:
    """The name of the file pip's hook library leaves beside a wheel built for metadata."""
    try:
        from pip._vendor.pyproject_hooks._in_process import _in_process
    except ImportError:
        return None
    name = getattr(_in_process, "WHEEL_BUILT_MARKER", None)
    return name if isinstance(name, str) else None


def generate(
    original: Callable[..., str], build_env: Any, backend: Any, details: str, failed: dict[str, FailedBuild]
) -> str:
    """pip's ``generate_metadata``, from a build of the wheel: the ``.dist-info`` directory's path.

    ``failed`` gains the metadata directory of a build that failed where pip's metadata hook did not."""
    from pip._internal.cli.spinners import open_spinner
    from pip._internal.exceptions import InstallationSubprocessError, MetadataGenerationFailed
    from pip._internal.utils.subprocess import call_subprocess
    from pip._internal.utils.temp_dir import TempDirectory

    name = marker()
    if name is None or not hidden():
        return original(build_env, backend, details)
    metadata_dir = TempDirectory(kind="modern-metadata", globally_managed=True).path
    with build_env, open_spinner(MESSAGE) as spinner:
        failure = None
        try:
            with backend.subprocess_runner(_quiet(spinner)):
                wheel = backend.build_wheel(metadata_dir)
            distinfo = _take_metadata(metadata_dir, wheel, name)
            _built.add(metadata_dir)
            return os.path.join(metadata_dir, distinfo)
        except _Failed as exc:
            failure = exc
        except Exception:  # noqa: BLE001 - pip's own hook, run below, says what went wrong in its words
            pass
        _clear(metadata_dir)

        def runner(cmd: list[str], cwd: str | None = None, extra_environ: Mapping[str, Any] | None = None) -> None:
            call_subprocess(cmd, command_desc=MESSAGE, cwd=cwd, extra_environ=extra_environ, spinner=spinner)

        with backend.subprocess_runner(runner):
            try:
                distinfo = backend.prepare_metadata_for_build_wheel(metadata_dir)
            except InstallationSubprocessError as error:
                raise MetadataGenerationFailed(package_details=details) from error
    path = os.path.join(metadata_dir, distinfo)
    if failure is not None:
        failed[path] = FailedBuild(failure.output.decode(errors="backslashreplace"), failure.returncode)
    return path


def _quiet(spinner: Any) -> Callable[..., None]:
    """A hook runner like pip's, turning pip's spinner on each line of output, keeping the output only
    for a failure; the hook runs in the interpreter started for it while pip asked the backend for its
    requirements, where there is one (warm_hooks.py)."""

    def runner(cmd: list[str], cwd: str | None = None, extra_environ: Mapping[str, Any] | None = None) -> None:
        proc = warm_hooks.take(cmd, cwd, extra_environ)
        if proc is None:
            env = {**os.environ, **(extra_environ or {})}
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    cwd=cwd, env=env)
            assert proc.stdin is not None
            proc.stdin.close()
        assert proc.stdout is not None
        lines = []
        with proc.stdout:
            for line in proc.stdout:
                lines.append(line)
                spinner.spin()
        if proc.wait():
            raise _Failed(b"".join(lines), proc.returncode)

    return runner


def _take_metadata(metadata_dir: str, wheel: str, name: str) -> str:
    """Extract the wheel's ``.dist-info`` beside it and leave the marker, as pip's hook library does for a
    backend without the metadata hook; the ``.dist-info`` directory's name."""
    with zipfile.ZipFile(os.path.join(metadata_dir, wheel)) as archive:
        members = [member for member in archive.namelist() if _in_dist_info(member)]
        if not members:
            raise ValueError(f"{wheel} has no .dist-info directory")
        archive.extractall(metadata_dir, members=members)
    with open(os.path.join(metadata_dir, name), "wb"):
        pass
    return members[0].split("/")[0]


def _in_dist_info(member: str) -> bool:
    top, _, rest = member.partition("/")
    return bool(rest) and top.endswith(".dist-info") and "-" in top and "\\" not in top


def _clear(directory: str) -> None:
    """Empty the metadata directory for pip's own hook (a partial build may have left files in it)."""
    import shutil

    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


class _Replay:
    """A stand-in for the build's hook caller whose ``build_wheel`` shows the recorded failure through pip's
    runner: the same spinner, error block and exit code as the failed build, without building again."""

    def __init__(self, failure: FailedBuild, directory: str) -> None:
        self._failure, self._directory = failure, directory
        self._runner: Callable[..., None] | None = None

    @contextlib.contextmanager
    def subprocess_runner(self, runner: Callable[..., None]) -> Iterator[None]:
        self._runner = runner
        try:
            yield
        finally:
            self._runner = None

    def build_wheel(self, wheel_directory: str, metadata_directory: str | None = None) -> str:
        assert self._runner is not None
        recorded = os.path.join(self._directory, "pipguard-failed-build.txt")
        with open(recorded, "w", encoding="utf-8") as handle:
            handle.write(self._failure.output)
        self._runner([sys.executable, "-c", _REPLAY, recorded, str(self._failure.returncode)])
        raise RuntimeError("the recorded build failed")  # the runner raised already, as pip's does


def build_wheel(original: Callable[..., str | None], failed: dict[str, FailedBuild]) -> Callable[..., str | None]:
    """pip's ``build_wheel_pep517``; a build that failed while preparing metadata is shown, not run again;
    one that succeeded is copied as pip's hook library copies it (:func:`_copy_built`)."""

    def build_wheel_pep517(name: str, backend: Any, metadata_directory: str, wheel_directory: str) -> str | None:
        failure = failed.pop(metadata_directory, None)
        if failure is not None:
            backend = _Replay(failure, os.path.dirname(metadata_directory))
            return original(name, backend, metadata_directory, wheel_directory)
        return _copy_built(name, metadata_directory, wheel_directory) or original(
            name, backend, metadata_directory, wheel_directory
        )

    return build_wheel_pep517


def _copy_built(name: str, metadata_directory: str, wheel_directory: str) -> str | None:
    """The wheel :func:`generate` built, copied into ``wheel_directory`` under pip's own spinner line for the
    step; None where it did not build this one (pip's hook then runs). pip would start an interpreter
    whose hook finds the marker beside the metadata and copies that one wheel, printing nothing: the same
    copy, the same line, without the interpreter."""
    import logging
    import shutil

    from pip._internal.cli.spinners import open_spinner

    parent, built_marker = os.path.dirname(metadata_directory), marker()
    if parent not in _built or built_marker is None or not os.path.isfile(os.path.join(parent, built_marker)):
        return None
    wheels = [entry for entry in os.listdir(parent) if entry.endswith(".whl")]
    if len(wheels) != 1:
        return None  # the hook's own words for this ("Found multiple .whl files")
    logging.getLogger("pip._internal.operations.build.wheel").debug("Destination directory: %s", wheel_directory)
    try:
        with open_spinner(f"Building wheel for {name} (pyproject.toml)"):
            shutil.copy2(os.path.join(parent, wheels[0]), wheel_directory)
    except OSError:
        return None
    return os.path.join(wheel_directory, wheels[0])

