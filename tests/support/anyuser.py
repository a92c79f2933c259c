"""pipguard as another local user runs it: an interpreter every uid can run, with this checkout's pipguard
installed in it (a real wheel, not the editable install of the test venvs), made once per test run.

Tests act as other users through ``setpriv --reuid`` (so they need root). The test venvs link to the
interpreter they were made from, which may lie where only root can go (a pyenv under a 0700 home): a
second uid could not even start it. So this looks for an interpreter of the same Python that uid can run
(that one, or the system's ``pythonX.Y``), makes a venv of it in a directory everyone can read, installs
pipguard's wheel there (toolenv.py writes it from the checkout, offline) and lends it the test venv's
dependencies by a ``.pth`` line, as toolenv.py does for pipx. Where no such interpreter exists, the tests
that need one skip, saying why.

xdist workers share it: the first to need it makes it under a file lock, the others reuse it; a run's
directory is removed by a later run once pytest has removed that run's own temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from support.envs import clean_env, make_venv
from support.toolenv import install_pipguard, pipguard_wheel

OTHER_UID = 4711  # a uid nobody on the machine uses: "another local user"
PREFIX = "pipguard-any-user-"
RUN_FILE = ".run"  # in each made directory: the pytest run that made it (gone: so is the directory)
PROBE_SECONDS = 60


def as_user(uid: int, gid: int | None = None, groups: Sequence[int] = ()) -> list[str]:
    """The ``setpriv`` prefix that runs a command as ``uid`` (its group ``gid``, else ``uid``), a member of
    ``groups`` only: numeric ids, so nothing needs adding to /etc/passwd or /etc/group."""
    member = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={uid}", f"--regid={gid if gid is not None else uid}", *member]


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="acting as another local user needs root (chown, setpriv --reuid)",
)


@dataclass(frozen=True)
class AnyUser:
    """pipguard's interpreter for any uid (``python -m pipguard``), and the base interpreter to make venvs
    other uids can use."""

    python: Path
    base: Path

    def venv(self, path: Path, owner: int) -> Path:
        """A fresh venv at ``path`` that ``owner`` installs into (as its own: pip writes there as that uid)."""
        make_venv(path, self.base)
        return owned_by(path, owner)


def owned_by(path: Path, uid: int) -> Path:
    """``path`` (made if missing) and everything in it handed to ``uid``: a home, a pip cache, a venv."""
    path.mkdir(parents=True, exist_ok=True)
    for directory, _dirs, files in os.walk(path):
        for name in (directory, *(os.path.join(directory, file) for file in files)):
            os.chown(name, uid, uid, follow_symlinks=False)  # a venv's python links outside: left as is
    return path


def _runs(command: Sequence[str]) -> str | None:
    """None if ``command`` succeeds as OTHER_UID, else what it said."""
    done = subprocess.run(
        [*as_user(OTHER_UID), *command], env=clean_env(), capture_output=True, text=True, timeout=PROBE_SECONDS,
        cwd="/",
    )
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip() or f"exit {done.returncode}"


def _interpreter() -> tuple[Path | None, str]:
    """An interpreter of the tests' Python version that another uid can run with its venv module; or
    None and why not."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [Path(os.path.realpath(sys._base_executable))]  # type: ignore[attr-defined]
    system = shutil.which(f"python{version}", path=os.pathsep.join(("/usr/local/bin", "/usr/bin", "/bin")))
    if system is not None:
        candidates.append(Path(system))
    tried = []
    for candidate in candidates:
        # Reachable by its path, as a venv's link to it will be (an exec can succeed where a lookup fails).
        reachable = "import ensurepip, os, sys, venv; sys.exit(not os.access(sys.argv[1], os.X_OK))"
        problem = _runs([str(candidate), "-c", reachable, str(candidate)])
        if problem is None:
            return candidate, ""
        tried.append(f"{candidate}: {problem.splitlines()[-1]}")
    return None, f"no Python {version} that uid {OTHER_UID} can run ({'; '.join(tried) or 'none found'})"


def _make(directory: Path) -> AnyUser:
    base, why = _interpreter()
    if base is None:
        pytest.skip(why)
    venv = directory / "venv"
    install_pipguard(venv, pipguard_wheel(directory / "wheels"), base)  # with the test venv's dependencies
    made = AnyUser(python=venv / "bin" / "python", base=base)
    problem = _runs([str(made.python), "-c", "import filelock, pip, pipguard.cli, platformdirs, rich"])
    if problem is not None:
        pytest.skip(f"uid {OTHER_UID} cannot run pipguard from {venv} ({problem.splitlines()[-1]})")
    return made


def _sweep(tmp: Path) -> None:
    """Remove the directories of earlier runs whose own temporary directory pytest has removed."""
    for directory in tmp.glob(f"{PREFIX}*"):
        try:
            run = Path((directory / RUN_FILE).read_text())
        except OSError:
            continue
        if directory.stat().st_uid == os.getuid() and not run.exists():
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def any_user(tmp_path_factory: pytest.TempPathFactory) -> AnyUser:
    """pipguard for any uid, made once per run (shared by xdist workers)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("acting as another local user needs root (setpriv --reuid)")
    run = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run = run.parent  # the run's directory, above each worker's own
    with FileLock(run / "any-user.lock"):
        made = run / "any-user"
        if made.is_file():
            python, base = made.read_text().splitlines()
            return AnyUser(Path(python), Path(base))
        tmp = Path(tempfile.gettempdir())
        _sweep(tmp)
        directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=tmp))
        directory.chmod(0o755)
        (directory / RUN_FILE).write_text(str(run))
        tool = _make(directory)
        made.write_text(f"{tool.python}\n{tool.base}\n")
        return tool
