"""The outcome of one build, handed to the processes that waited for it, and to no later one.

Some builds must not outlive the moment: a local tree (pip never reuses a wheel built from one, since a
new git tag, a file outside the tree or a variable can change it), a build under ``--no-cache-dir``, and a
failure (a later install tries again, as with plain pip). Yet processes that queued behind the build
asked for exactly it, at the same time, and building it again for each of them is what pipguard is for
(or, for a failure, N more failures). So the builder publishes its outcome here, stamped with the time it
finished, and a waiter takes the newest outcome that finished after it began to wait. A process that
did not wait never looks here: it builds, as plain pip would.

Layout: ``<handoffs>/<key>/<finished-ns>-<pid>-<random>/outcome.json`` (+ the wheel), published whole by
renaming a finished temp directory. A process using a wheel from here keeps ``outcome.json`` share-locked
until it exits; a process leaving removes the outcomes of its keys that nobody uses or waits for, and
leftovers of dead processes are swept by age.

A waiter installs a wheel from here only after checking it: the key's and the outcome's directories are
real directories of this user's (or root's) that nobody else can write to, even in a cache shared on
purpose (an outcome directory is private to the process that made it, so no other user's could be read
anyway), or in a team's cache the team's (made for its members to read), and the wheel is a regular file
with the size and sha256 its builder recorded. Anything else is passed over with a warning, and the
waiter builds it itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipguard import trust
from pipguard.discard import discard
from pipguard.errors import BuildReport, UntrustedCache
from pipguard.flocks import keep_locked, try_lock_path
from pipguard.keys import file_sha256
from pipguard.redact import redact
from pipguard.trust import Policy

OUTCOME = "outcome.json"
OUTCOME_LIMIT = 1 << 22  # a failure's report holds a build's output; a wheel's outcome is a few bytes


@dataclass(frozen=True)
class Outcome:
    """A wheel (``wheel`` set, with the ``size`` and ``sha256`` its builder saw) or a failure (``report``
    set), and when its build finished."""

    directory: Path
    finished: float
    wheel: Path | None
    size: int | None
    sha256: str | None
    report: BuildReport | None


class Handoffs:
    def __init__(self, root: Path, tmp: Path, policy: Policy) -> None:
        self.root = root
        self.tmp = tmp
        self.policy = policy  # this user's (or the team's) only: never PIPGUARD_TRUST_SHARED_CACHE's waiver
        self._pins: list[int] = []

    def publish_wheel(self, key: str, wheel: Path, source_sha256: str | None) -> Outcome:
        """Move ``wheel`` into a new outcome for ``key`` and return it, pinned for this process."""

        def fill(staging: Path) -> dict[str, Any]:
            staged = staging / wheel.name
            shutil.move(wheel, staged)
            self.policy.share(staged)
            return {
                "wheel": wheel.name,
                "size": staged.stat().st_size,
                "sha256": file_sha256(staged),
                "source_sha256": source_sha256,
            }

        outcome = self._publish(key, fill)
        self.pin(outcome)
        return outcome

    def publish_failure(self, key: str, report: BuildReport) -> Outcome:
        """Keep what the failed build printed for its waiters, with any credentials in URLs masked."""
        kept = {name: redact(value) for name, value in report.__dict__.items()}
        return self._publish(key, lambda staging: {"report": kept})

    def _publish(self, key: str, fill: Any) -> Outcome:
        staging = Path(tempfile.mkdtemp(prefix="handoff-", dir=self.tmp))
        try:
            fields = fill(staging)
            finished = time.time()
            fields["finished"] = finished
            (staging / OUTCOME).write_text(json.dumps(fields), encoding="utf-8")
            self.policy.share(staging / OUTCOME)
            self.policy.share(staging)
            parent = self.root / key
            self.policy.make_dir(parent)
            trust.check_directory(parent, self.policy)  # where waiters will look: never an outsider's
            target = parent / f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}"
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return _read(target, self.policy)  # type: ignore[return-value]

    def since(self, key: str, started: float) -> Outcome | None:
        """The newest outcome for ``key`` whose build finished after ``started`` (a waiter's arrival) and
        whose wheel, if any, is the one its builder made; what fails a check is passed over with a warning."""
        names = self._names(key)
        for name in sorted(names or (), reverse=True):
            outcome = _read(self.root / key / name, self.policy)
            if outcome is None or outcome.finished < started:
                continue
            problem = _problem(outcome)
            if problem is None:
                return outcome
            from pipguard.display import warn

            warn(f"not using the wheel handed over for {key[:12]} ({problem}); it is never installed")
        return None

    def _names(self, key: str) -> list[str] | None:
        """The outcomes' names in ``key``'s directory; None if there is none, or (with a warning) if it is
        not a private directory of this user's (or the team's)."""
        try:
            fd = trust.open_directory(self.root / key, self.policy)
        except FileNotFoundError:
            return None
        except (OSError, UntrustedCache):
            from pipguard.display import warn

            warn(f"not using builds handed over for {key[:12]}: {self.root / key} is not this user's own")
            return None
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def pin(self, outcome: Outcome) -> None:
        """Keep the outcome from being removed while this process may still install its wheel."""
        self._pins.append(keep_locked(outcome.directory / OUTCOME, exclusive=False))

    def unpin_all(self) -> None:
        """This process is done installing: its outcomes may go."""
        while self._pins:
            with contextlib.suppress(OSError):
                os.close(self._pins.pop())

    def remove_unused(self, key: str) -> None:
        """Remove the outcomes of ``key`` that no live process has pinned (call with its lock held)."""
        for name in self._own_names(key):
            directory = self.root / key / name
            if try_lock_path(directory / OUTCOME, exclusive=True):
                _remove(directory, self.tmp)

    def sweep(self, older_than: float) -> None:
        """Remove unpinned outcomes older than ``older_than`` seconds (their processes died or left)."""
        now = time.time()
        with contextlib.suppress(OSError):
            for key in os.listdir(self.root):
                for name in self._own_names(key):
                    directory = self.root / key / name
                    outcome = _read(directory, self.policy)
                    finished = outcome.finished if outcome is not None else 0.0
                    if now - finished > older_than and try_lock_path(directory / OUTCOME, exclusive=True):
                        _remove(directory, self.tmp)

    def _own_names(self, key: str) -> list[str]:
        """The outcomes in ``key``'s directory, to clean up; a key directory that is not this user's own
        (a symlink, another user's) is removed whole instead, never followed."""
        try:
            fd = trust.open_directory(self.root / key, self.policy)
        except FileNotFoundError:
            return []
        except (OSError, UntrustedCache):
            _remove(self.root / key, self.tmp)
            return []
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)


def _read(directory: Path, policy: Policy) -> Outcome | None:
    """The outcome in ``directory``, if it is one of this user's own (or the team's), complete and well formed."""
    try:
        trust.check_directory(directory, policy)
        fields = json.loads(trust.read_regular(directory / OUTCOME, OUTCOME_LIMIT))
        report = BuildReport(**fields["report"]) if fields.get("report") else None
        name = fields.get("wheel")
        if name is not None and (not isinstance(name, str) or "/" in name or not name.endswith(".whl")):
            return None
        wheel = directory / name if name else None
        size = int(fields["size"]) if wheel is not None else None
        sha256 = str(fields["sha256"]) if wheel is not None else None
        return Outcome(directory, float(fields["finished"]), wheel, size, sha256, report)
    except (OSError, ValueError, KeyError, TypeError, UntrustedCache):
        return None


def _problem(outcome: Outcome) -> str | None:
    """Why the outcome's wheel must not be installed, or None: it is the file its builder made."""
    if outcome.wheel is None or outcome.size is None or outcome.sha256 is None:
        return None
    try:
        if trust.matches(outcome.wheel, outcome.size, outcome.sha256):
            return None
    except (OSError, ValueError) as exc:
        return f"{outcome.wheel.name}: {exc}"
    return f"{outcome.wheel.name} does not match the sha256 its build recorded"


def _remove(directory: Path, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        discard(directory, tmp)
