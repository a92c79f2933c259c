"""Writer builds in bubblewrap: a build cannot reach the fleet's secrets, the cache, or pipguard itself.

A writer signs what it uploads, so what its builds can reach is what an sdist's backend can reach: the
signing key file, the token (``PIPGUARD_REMOTE_TOKEN``, a URL's user-info, a ``.netrc``), and pipguard's
cache, whose wheels the writer uploads (``guard remote push``). So on a writer every build pipguard runs
goes through its build child, started inside ``bwrap`` (the Debian package ``bubblewrap``; unprivileged,
through user namespaces), with:

- the whole filesystem visible, as for a plain build (``--dev-bind / /``; the network too: builds fetch
  their build dependencies), except:
- the signing key file and any netrc (``$NETRC``, ``~/.netrc``), each covered by ``/dev/null``, which
  cannot be read through the bind (``EACCES``);
- the cache root, covered by an empty tmpfs; the build's own work directory is bound back read-only and
  its ``wheel/`` directory writable, the one place the build writes to (its output goes through
  descriptors, so the files its parent reads a failure from cannot be swapped for links to a secret);
- the interpreter's prefixes and the directories pipguard and pip are imported from, read-only: a build
  that planted a ``.pth`` there would run outside the sandbox, in the next pipguard;
- a new pid namespace with its own ``/proc``: no other process is visible (``/proc/<pid>/environ`` of the
  writer), and whatever the build leaves running dies with it;
- the environment without ``PIPGUARD_*`` and ``NETRC``, bwrap's own too (its pid 1 is in the sandbox).

Signing and upload stay in the parent, outside. Where no sandbox can be made (no ``bwrap`` on PATH, or user
namespaces refused), a writer builds as it would otherwise, publishes locally, and uploads nothing, after
one warning that says why: a wheel a build could have tampered with the key for is not signed with it.
Readers and local-only use need no sandbox: they hold nothing a build could steal.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pipguard import settings
from pipguard.display import warn

if TYPE_CHECKING:
    from pipguard.remote.tier import Tier

HIDDEN_PREFIX = "PIPGUARD_"
HIDDEN_VARIABLES = ("NETRC",)
SETUP_FAILED = 125  # bwrap could not make the sandbox: pipguard's failure (a fallback), never the build's
STOPPED_BY = (-signal.SIGINT, -signal.SIGTERM)  # bwrap itself dies of these (Ctrl-C to the job, a stop)
PROBE_SECONDS = 30.0
# In this order (bwrap mounts in order): the host's root first, then a /proc of the new pid namespace over it.
CONFINED_ROOT = ("--unshare-user", "--unshare-pid", "--die-with-parent", "--dev-bind", "/", "/", "--proc", "/proc")


@dataclass(frozen=True)
class Confined:
    """One build's sandbox: the command prefix, the environment bwrap runs in (bwrap's own processes in the
    sandbox, its pid 1 among them, have it too), and bwrap's status file (read once the build is over)."""

    prefix: tuple[str, ...]
    env: dict[str, str]
    status: IO[bytes]

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.status.fileno(),)

    def exit_code(self, code: int) -> int:
        """The build's exit code as the builder reads it: the child's, if bwrap ran it to its end; else the
        builder's ``CHILD_STOPPED`` if bwrap was stopped, and :data:`SETUP_FAILED` if it made no sandbox."""
        self.status.seek(0)
        if b'"exit-code"' in self.status.read():
            return code
        from pipguard.builder import CHILD_STOPPED

        return CHILD_STOPPED if code in STOPPED_BY else SETUP_FAILED


@dataclass(frozen=True)
class Sandbox:
    """What writer builds run inside: ``bwrap``, and the paths hidden from them or kept read-only."""

    bwrap: str
    hidden_files: tuple[str, ...]
    hidden_dirs: tuple[str, ...]
    read_only: tuple[str, ...]

    @contextlib.contextmanager
    def confine(self, work: Path) -> Iterator[Confined]:
        """The sandbox of one build whose work directory is ``work`` (its ``wheel/`` made already)."""
        with tempfile.TemporaryFile() as status:
            yield Confined(self.prefix(work, status.fileno()), environment(), status)

    def prefix(self, work: Path, status_fd: int) -> tuple[str, ...]:
        """The bwrap command line a build's command follows (bwrap applies its options in order)."""
        own = os.path.realpath(work)
        args = [self.bwrap, *CONFINED_ROOT]
        args += [arg for path in self.read_only for arg in ("--ro-bind", path, path)]
        args += [arg for directory in self.hidden_dirs for arg in ("--tmpfs", directory)]
        args += ["--ro-bind", own, own, "--bind", os.path.join(own, "wheel"), os.path.join(own, "wheel")]
        args += [arg for file in self.hidden_files for arg in ("--ro-bind", os.devnull, file)]
        return (*args, "--json-status-fd", str(status_fd), "--")


def for_tier(tier: Tier | None) -> Sandbox | None:
    """The sandbox this process's builds run in: None for a reader or local-only use (none needed), and
    for a writer where none can be made, whose uploads are then switched off (one warning, why)."""
    if tier is None or not tier.config.write:
        return None
    bwrap, reason = availability()
    if bwrap is None:
        tier.uploads_off = True
        warn(f"not uploading builds to the remote cache: no sandbox ({reason}); builds on a writer must not see its key")
        return None
    return Sandbox(bwrap, _hidden_files(), (os.path.realpath(settings.cache_root()),), _read_only())


def describe() -> str:
    """For ``guard remote status``: whether a writer's builds are sandboxed."""
    bwrap, reason = availability()
    if bwrap is None:
        return f"not sandboxed ({reason}): builds are not uploaded"
    return "sandboxed (bubblewrap): the signing key, the token and the cache are hidden from them"


@functools.cache
def availability() -> tuple[str | None, str]:
    """``bwrap``'s path if a sandbox can be made here (probed once per process), else None and why."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bwrap is not on PATH; install bubblewrap"
    try:
        probe = subprocess.run(
            [bwrap, *CONFINED_ROOT, "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROBE_SECONDS,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"bwrap did not run: {exc}"
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        return None, f"bwrap cannot make one here: {lines[-1] if lines else f'exit code {probe.returncode}'}"
    return bwrap, ""


def environment() -> dict[str, str]:
    """This process's environment without pipguard's variables (the token among them) and ``NETRC``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(HIDDEN_PREFIX) and k not in HIDDEN_VARIABLES}


def _hidden_files() -> tuple[str, ...]:
    """The signing key and netrc files that exist, as their real paths (a bind covers what a link names)."""
    named = [settings.variable("PIPGUARD_REMOTE_SIGNING_KEY"), os.environ.get("NETRC"), "~/.netrc"]
    paths = {os.path.realpath(os.path.expanduser(name)) for name in named if name}
    return tuple(sorted(path for path in paths if os.path.isfile(path)))


def _read_only() -> tuple[str, ...]:
    """The interpreter's prefixes and where pipguard and pip are imported from."""
    import pip

    import pipguard

    code = [os.path.dirname(os.path.dirname(module.__file__ or "")) for module in (pipguard, pip)]
    paths = {os.path.realpath(path) for path in (sys.prefix, sys.base_prefix, sys.exec_prefix, *code) if path}
    return tuple(sorted(path for path in paths if os.path.isdir(path)))
