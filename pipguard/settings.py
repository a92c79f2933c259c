"""pipguard's environment variables, read in one place."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_LOCK_TIMEOUT = 600.0
PROGRESS_MODES = ("live", "plain", "off")
CI_VARIABLES = ("CI", "BUILD_ID", "BUILD_BUILDID", "PIP_IS_CI")


def cache_root() -> Path:
    """``PIPGUARD_CACHE_DIR``, else the per-user cache directory of the platform."""
    configured = os.environ.get("PIPGUARD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser().absolute()
    import platformdirs

    return platformdirs.user_cache_path("pipguard", appauthor=False)


def lock_timeout() -> tuple[float, str | None]:
    """Seconds to wait for another process's build before building privately, and a complaint if any."""
    raw = os.environ.get("PIPGUARD_LOCK_TIMEOUT")
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT, None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        return DEFAULT_LOCK_TIMEOUT, f"ignoring PIPGUARD_LOCK_TIMEOUT={raw!r}: not a number of seconds"
    return value, None


def progress_override() -> tuple[str | None, str | None]:
    """``PIPGUARD_PROGRESS`` (live, plain or off), and a complaint if it is something else."""
    raw = os.environ.get("PIPGUARD_PROGRESS", "").strip().lower()
    if not raw:
        return None, None
    if raw not in PROGRESS_MODES:
        return None, f"ignoring PIPGUARD_PROGRESS={raw!r}: use live, plain or off"
    return raw, None


def trusts_shared_cache() -> bool:
    """``PIPGUARD_TRUST_SHARED_CACHE=1``: use a cache directory other users can write to."""
    return os.environ.get("PIPGUARD_TRUST_SHARED_CACHE", "") in ("1", "true", "yes")


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
    key set to nothing switches the remote off), and ``NETRC``."""
    return {name: os.environ[name] for name in REMOTE_VARIABLES if name in os.environ}


def default_jobs() -> int:
    """The CPUs this process may use (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def jobs() -> tuple[int, str | None]:
    """``PIPGUARD_JOBS``: builds one process runs at once; the default and a complaint if it is not a count."""
    raw = os.environ.get("PIPGUARD_JOBS", "").strip()
    if not raw:
        return default_jobs(), None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        return default_jobs(), f"ignoring PIPGUARD_JOBS={raw!r}: not a whole number of builds, 1 or more"
    return value, None
