"""pipguard's own errors, one tree.

The rule they serve: a failure of pipguard's machinery (:class:`PipguardError` or ``OSError``) never fails
an install that plain pip would complete; the seam warns once and lets pip go on as plain pip. Anything
else (a bare ``ValueError`` from pip or a backend) is not pipguard's to swallow.

The one exception to "fall back to pip" is :class:`BuildFailed`: the backend itself failed, so pip would
fail the same way, and asking it to build again would only double the cost of every failure.
"""

from __future__ import annotations

from dataclasses import dataclass


class PipguardError(Exception):
    """Base of every error pipguard raises on purpose."""


class CacheUnusable(PipguardError):
    """The cache directory cannot be used (missing, unwritable, full, not a directory)."""


class UntrustedCache(CacheUnusable):
    """Other users can write to the cache: its wheels could be anyone's."""


class SourceMismatch(PipguardError):
    """A source's content does not match the hash its link declares or the user allowed.

    pip then downloads and checks it itself, so the user sees pip's own error and exit code."""


class SeamUnavailable(PipguardError):
    """The running pip is outside the supported range or lacks a patch point."""


class BuildChildError(PipguardError):
    """The build child could not do its job for a reason of pipguard's own (bad options, no wheel)."""


@dataclass(frozen=True)
class BuildReport:
    """What a failed build printed, kept so the builder and its waiters report it as pip would.

    ``stage`` is ``"wheel"`` when the backend's ``build_wheel`` failed (pip's install command then adds
    its own summary) and ``"prepare"`` when an earlier step failed (the child's last lines are pip's
    final error already)."""

    name: str
    stage: str
    stdout: str
    stderr: str


class BuildFailed(PipguardError):
    """The backend failed to build: report it as pip would, and never build it again for this run."""

    def __init__(self, report: BuildReport) -> None:
        super().__init__(f"building {report.name} failed")
        self.report = report


class BuildStopped(Exception):
    """The command is being stopped (Ctrl-C, SIGTERM): a build in the background ends without an outcome.

    Not a machinery failure (nothing to fall back to) and not a build failure (nothing to report or hand
    on): the build's child is stopped, its work directory removed, and nothing is published."""


# What "machinery failure, fall back to plain pip" catches: pipguard's own errors and the OS's.
MACHINERY_ERRORS: tuple[type[BaseException], ...] = (PipguardError, OSError)


class RemoteUnavailable(PipguardError):
    """The remote store did not answer as a store does (refused connection, timeout, 5xx, a bad reply):
    the remote is switched off for the rest of the process, and everything goes on locally."""


class RemoteRefused(PipguardError):
    """The remote store refused an upload (403, 413, any 4xx): uploads stop; reading goes on."""


class RemoteRejected(PipguardError):
    """What the remote store holds for a key failed a check (manifest, signature, size, sha256, zip, tag):
    a miss, never installed."""
