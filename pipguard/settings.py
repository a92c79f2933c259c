"""pipguard's environment variables, read in one place.

A guarded command (install, wheel, uninstall) runs build code: the PEP 517 backends pip starts and
pipguard's own build child. None of them may see pipguard's settings, least of all the remote store's
token and signing key, so :func:`scrub_environment` takes every ``PIPGUARD_*`` variable out of
``os.environ`` as the command starts, and this module keeps their values for the rest of the process.
Every reader here goes through :func:`variable`, which sees them either way.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_LOCK_TIMEOUT = 600.0
PROGRESS_MODES = ("live", "plain", "off")
CI_VARIABLES = ("CI", "BUILD_ID", "BUILD_BUILDID", "PIP_IS_CI")
OWN_PREFIX = "PIPGUARD_"

# The values scrub_environment took out of os.environ, for this process only.
_taken: dict[str, str] = {}
_command: list[str] = []  # command_id(), once made


def variable(name: str) -> str | None:
    """``name`` as set in the environment, or as it was before :func:`scrub_environment` took it."""
    value = os.environ.get(name)
    return value if value is not None else _taken.get(name)


def scrub_environment() -> None:
    """Remove every ``PIPGUARD_*`` variable from ``os.environ``, keeping its value for this process.

    Called once as a guarded command starts, before any build: every process started afterwards (pip's
    backend and build-dependency subprocesses, the build child) inherits an environment without them."""
    for name in [name for name in os.environ if name.startswith(OWN_PREFIX)]:
        _taken[name] = os.environ.pop(name)


# Set only in a build-dependency install pipguard runs for pip (build_deps.py): the pids of the pipguard
# processes above it, each blocked until it ends. Its presence says this process installs into pip's
# private build environment.
PARENTS_VARIABLE = "PIPGUARD_PARENTS"
# Set in every pipguard child (build children, build-dependency installs): the command they are part of.
COMMAND_VARIABLE = "PIPGUARD_COMMAND"
# What such a child is handed: pipguard's local settings, never the remote tier's (its token, signing key and
# URL, which may carry credentials, stay in the process the user started; the child builds locally).
CHILD_VARIABLES = (
    "PIPGUARD_LOCK_TIMEOUT",
    "PIPGUARD_CACHE_MAX_SIZE",
    "PIPGUARD_JOBS",
    "PIPGUARD_PROGRESS",
    "PIPGUARD_TRUST_SHARED_CACHE",
)


# Set only in pipguard's own build child (builder.py): it builds one source whose lock its parent holds;
# "keep" where the user's command keeps what it builds (isolated build environments too).
BUILD_CHILD_VARIABLE = "PIPGUARD_BUILD_CHILD"


def is_build_child() -> bool:
    """Whether this process is pipguard's build child (only its build environments go through the seam)."""
    return variable(BUILD_CHILD_VARIABLE) in ("1", "keep")


def build_child_keeps_envs() -> bool:
    """Whether this build child's parent keeps isolated build environments (its own pip cache is on)."""
    return variable(BUILD_CHILD_VARIABLE) == "keep"


def parents() -> tuple[int, ...]:
    """The pipguard processes this one installs build dependencies for (outermost first); () at the top."""
    raw = variable(PARENTS_VARIABLE) or ""
    return tuple(int(pid) for pid in raw.split(",") if pid.isdigit())


def child_environment() -> dict[str, str]:
    """The variables a pipguard child needs to share this process's cache, locks and settings."""
    handed = {name: value for name in CHILD_VARIABLES if (value := variable(name)) is not None}
    handed["PIPGUARD_CACHE_DIR"] = str(cache_root())
    handed[PARENTS_VARIABLE] = ",".join(str(pid) for pid in (*parents(), os.getpid()))
    handed[COMMAND_VARIABLE] = command_id()
    return handed


def command_id() -> str:
    """The command this process is part of: the one of the pipguard process above it (a child), else one
    made here. What a process of the command learnt from the index is as fresh, for every other one, as
    pip's own answers are within one run (buildenv.py: a build environment made earlier in the command)."""
    if not _command:
        _command.append(variable(COMMAND_VARIABLE) or os.urandom(8).hex())
    return _command[0]



def cache_root() -> Path:
    """``PIPGUARD_CACHE_DIR``, else the per-user cache directory of the platform."""
    configured = variable("PIPGUARD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser().absolute()
    import platformdirs

    return platformdirs.user_cache_path("pipguard", appauthor=False)


def lock_timeout() -> tuple[float, str | None]:
    """Seconds to wait for another process's build before building privately, and a complaint if any."""
    raw = variable("PIPGUARD_LOCK_TIMEOUT")
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT, None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        return DEFAULT_LOCK_TIMEOUT, f"ignoring PIPGUARD_LOCK_TIMEOUT={raw!r}: not a number of seconds"
    return value, None


def cache_max_size() -> tuple[int | None, str | None]:
    """``PIPGUARD_CACHE_MAX_SIZE`` in bytes (``0`` or ``none``: no cap), and a complaint if it is not a size
    (then there is no cap: evicting on a value the user did not mean could throw away costly builds)."""
    from pipguard.usage import DEFAULT_MAX_SIZE, parse_size

    raw = (variable("PIPGUARD_CACHE_MAX_SIZE") or "").strip()
    if not raw:
        return DEFAULT_MAX_SIZE, None
    if raw.lower() == "none":
        return None, None
    try:
        return parse_size(raw) or None, None
    except ValueError:
        return None, f"ignoring PIPGUARD_CACHE_MAX_SIZE={raw!r}: not a size such as 10G, 500M or 20k; no cap"


def progress_override() -> tuple[str | None, str | None]:
    """``PIPGUARD_PROGRESS`` (live, plain or off), and a complaint if it is something else."""
    raw = (variable("PIPGUARD_PROGRESS") or "").strip().lower()
    if not raw:
        return None, None
    if raw not in PROGRESS_MODES:
        return None, f"ignoring PIPGUARD_PROGRESS={raw!r}: use live, plain or off"
    return raw, None


def trusts_shared_cache() -> bool:
    """``PIPGUARD_TRUST_SHARED_CACHE=1``: use a cache directory other users can write to."""
    return variable("PIPGUARD_TRUST_SHARED_CACHE") in ("1", "true", "yes")


def cache_group() -> str:
    """``PIPGUARD_CACHE_GROUP``: the group (a name or a gid) whose members share the cache (trust.py)."""
    return (variable("PIPGUARD_CACHE_GROUP") or "").strip()


def in_ci_or_make() -> bool:
    """CI logs and ``make -j`` interleave output: no live display there."""
    if any(os.environ.get(name) for name in CI_VARIABLES):
        return True
    makeflags = os.environ.get("MAKEFLAGS", "")
    return "-j" in makeflags or "jobserver" in makeflags


REMOTE_VARIABLES = (
    "PIPGUARD_REMOTE",
    "PIPGUARD_REMOTE_WRITE",
    "PIPGUARD_REMOTE_TOKEN",
    "PIPGUARD_REMOTE_SIGNING_KEY",
    "PIPGUARD_REMOTE_VERIFY_KEY",
    "PIPGUARD_REMOTE_TIMEOUT",
    "PIPGUARD_REMOTE_DEADLINE",
    "PIPGUARD_REMOTE_ALLOW_HTTP",
    "NETRC",
)


def remote_environment() -> dict[str, str]:
    """The remote tier's variables as set, empty ones too (pipguard/remote/config.py parses them: a verify
    key set to nothing switches the remote off), and ``NETRC``: the values :func:`scrub_environment` took
    out of the environment included."""
    return {name: value for name in REMOTE_VARIABLES if (value := variable(name)) is not None}


def default_jobs() -> int:
    """The CPUs this process may use (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def jobs() -> tuple[int, str | None]:
    """``PIPGUARD_JOBS``: builds one process runs at once; the default and a complaint if it is not a count."""
    raw = (variable("PIPGUARD_JOBS") or "").strip()
    if not raw:
        return default_jobs(), None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        return default_jobs(), f"ignoring PIPGUARD_JOBS={raw!r}: not a whole number of builds, 1 or more"
    return value, None
