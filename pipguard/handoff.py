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

from pipguard.discard import discard
from pipguard.errors import BuildReport
from pipguard.flocks import keep_locked, try_lock_path
from pipguard.redact import redact

OUTCOME = "outcome.json"


@dataclass(frozen=True)
class Outcome:
    """A wheel (``wheel`` set) or a failure (``report`` set), and when its build finished."""

    directory: Path
    finished: float
    wheel: Path | None
    sha256: str | None
    report: BuildReport | None


class Handoffs:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self._pins: list[int] = []

    def publish_wheel(self, key: str, wheel: Path, sha256: str | None) -> Outcome:
        """Move ``wheel`` into a new outcome for ``key`` and return it, pinned for this process."""

        def fill(staging: Path) -> dict[str, Any]:
            shutil.move(wheel, staging / wheel.name)
            return {"wheel": wheel.name, "sha256": sha256}

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
            parent = self.root / key
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = parent / f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}"
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return _read(target)  # type: ignore[return-value]

    def since(self, key: str, started: float) -> Outcome | None:
        """The newest outcome for ``key`` whose build finished after ``started`` (a waiter's arrival)."""
        try:
            names = sorted(os.listdir(self.root / key), reverse=True)
        except OSError:
            return None
        for name in names:
            outcome = _read(self.root / key / name)
            if outcome is not None and outcome.finished >= started:
                return outcome
        return None

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
        try:
            names = os.listdir(self.root / key)
        except OSError:
            return
        for name in names:
            directory = self.root / key / name
            if try_lock_path(directory / OUTCOME, exclusive=True):
                _remove(directory, self.tmp)

    def sweep(self, older_than: float) -> None:
        """Remove unpinned outcomes older than ``older_than`` seconds (their processes died or left)."""
        now = time.time()
        with contextlib.suppress(OSError):
            for key in os.listdir(self.root):
                for name in os.listdir(self.root / key):
                    directory = self.root / key / name
                    outcome = _read(directory)
                    finished = outcome.finished if outcome is not None else 0.0
                    if now - finished > older_than and try_lock_path(directory / OUTCOME, exclusive=True):
                        _remove(directory, self.tmp)


def _read(directory: Path) -> Outcome | None:
    try:
        fields = json.loads((directory / OUTCOME).read_text(encoding="utf-8"))
        report = BuildReport(**fields["report"]) if fields.get("report") else None
        wheel = directory / fields["wheel"] if fields.get("wheel") else None
        if wheel is not None and (wheel.parent != directory or not wheel.is_file()):
            return None
        return Outcome(directory, float(fields["finished"]), wheel, fields.get("sha256"), report)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove(directory: Path, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        discard(directory, tmp)
