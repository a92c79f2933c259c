"""The guard pip's seam talks to: lock a source's key, look again, build once, share, release.

What is shared, and with whom:

- an sdist or a VCS commit: the wheel goes into the cache, for every later install too (unless the
  command says ``--no-cache-dir``);
- a local tree, and anything under ``--no-cache-dir``: the wheel goes only to the processes that were
  waiting for that very build (handoff.py); a later install builds again, as plain pip does;
- a failed build: its output goes only to the processes that were waiting for it, which fail at once with
  the same error; a later install tries again.

A failure of pipguard's own machinery (cache, lock, build child) ends in one warning and ``None``, which
tells the seam to let pip build as plain pip would: the cache can cost a duplicate build, never an install.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipguard import builder, display, jobs, keys, locks, records, settings
from pipguard.display import Progress, info, warn
from pipguard.errors import MACHINERY_ERRORS, BuildFailed, BuildStopped, CacheUnusable, SourceMismatch
from pipguard.flocks import try_lock
from pipguard.redact import redact
from pipguard.sources import Source
from pipguard.store import Store

if TYPE_CHECKING:
    from pipguard.remote.tier import Tier

Result = tuple[Path, str | None]


@dataclass
class Plan:
    """One source's build, decided before any lock: its key, its lock, whether the cache keeps it."""

    source: Source
    key: str
    lock_key: str
    persistent: bool  # into the cache for later installs, or handed to waiters only
    sha256: str | None
    archive: Path | None
    work: Path | None


class CacheGuard:
    """One command's guard. Its builds may run in several threads at once (ahead.py): the state they share
    is guarded (``_ready`` under ``_lock``) or only ever appended to (``_handed``, the store's pins: single
    operations on builtin containers, atomic in CPython), and each thread holds at most one build lock."""

    def __init__(self) -> None:
        self.store = Store(settings.cache_root())
        self.timeout, complaint = settings.lock_timeout()
        _progress, progress_complaint = settings.progress_override()
        job_count, jobs_complaint = settings.jobs()
        for message in (complaint, progress_complaint, jobs_complaint):
            if message:
                warn(message)
        self.budget = jobs.budget_from_environment(job_count, os.environ.get("MAKEFLAGS", ""))
        self.stopping = threading.Event()  # set when the command is interrupted: every build ends at once
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self._handed: set[tuple[str, str]] = set()  # (key, lock key) of outcomes made or used here
        self._remote: Tier | None = None
        self._remote_opened = False

    def builds_at_once(self) -> int:
        """How many builds this process may run at once (PIPGUARD_JOBS, or 1 under make without a share)."""
        return self.budget.jobs

    def stop(self) -> None:
        """The command is interrupted: every build and wait of this guard ends at once (BuildStopped)."""
        self.stopping.set()

    # --- availability ----------------------------------------------------------------------------

    def _usable(self) -> bool:
        with self._lock:
            if self._ready is None:
                try:
                    self.store.prepare(settings.trusts_shared_cache())
                    self.store.clean_tmp()
                    self._ready = True
                    atexit.register(self._leave)
                except CacheUnusable as exc:
                    self._give_up(exc)
            return bool(self._ready)

    def _give_up(self, exc: BaseException) -> None:
        """One warning per process; from then on this process is plain pip."""
        if self._ready is not False:
            warn(f"not using the build cache ({exc}); going on as plain pip")
        self._ready = False

    # --- builds ----------------------------------------------------------------------------------

    def wheel_for(self, source: Source) -> Result | None:
        """The wheel to install for ``source``, or None for plain pip.

        Raises ``BuildFailed`` (pip reports it, nobody builds it again in this run) and ``SourceMismatch``
        (pip downloads and checks the source itself)."""
        if not self._usable():
            return None
        plan = None
        try:
            plan = self._plan(source)
            return self._wheel_for(plan)
        except (BuildFailed, SourceMismatch):
            raise
        except MACHINERY_ERRORS as exc:
            self._give_up(exc)
            return None
        finally:
            if plan is not None and plan.work is not None:
                shutil.rmtree(plan.work, ignore_errors=True)

    def _wheel_for(self, plan: Plan) -> Result:
        if plan.persistent and (entry := self.store.lookup(plan.key)):
            return entry.wheel, plan.sha256
        name, version = _name_and_version(plan.source)
        subject = locks.Subject("build", plan.lock_key, name, version, _display_source(plan.source))
        phase = "downloading" if plan.source.kind == "archive" and plan.archive is None else "building"
        lock_path, record_dir = self.store.lock_path(plan.lock_key), self.store.record_dir(plan.lock_key)
        with locks.hold(lock_path, record_dir, subject, self.timeout, phase, self.stopping.is_set) as holding:
            reused = self._reuse(plan, holding)
            if reused is not None:
                return reused
            fetched = self._from_remote(plan, holding)
            if fetched is not None:
                return fetched
            holding.end_wait("building it here" if holding.locked else "building it privately")
            built = self._build_and_share(plan, holding)
        self._to_remote(plan, built)
        return built

    def _reuse(self, plan: Plan, holding: locks.Holding) -> Result | None:
        """What the build this process waited for left: its wheel, its failure, or the cache's entry."""
        built_by = f"pid {holding.previous_holder.pid}" if holding.previous_holder else "another process"
        if holding.wait_started is not None:
            outcome = self.store.handoffs.since(plan.key, holding.wait_started)
            if outcome is not None:
                self._handed.add((plan.key, plan.lock_key))
                if outcome.report is not None:
                    holding.end_wait(f"the build {built_by} ran failed; reporting its error")
                    raise BuildFailed(outcome.report)
                if outcome.wheel is not None:
                    self.store.handoffs.pin(outcome)
                    holding.end_wait(f"reusing the wheel {built_by} built")
                    return outcome.wheel, plan.sha256
        if plan.persistent and (entry := self.store.lookup(plan.key)):
            holding.end_wait(f"reusing the wheel {built_by} built")
            return entry.wheel, plan.sha256
        return None

    def _build_and_share(self, plan: Plan, holding: locks.Holding) -> Result:
        if plan.work is None:
            plan.work = self._new_work_dir()
        if plan.source.kind == "archive" and plan.archive is None:
            plan.archive = _download(plan.source, plan.work)
        try:
            wheel = self._build(plan, holding)
        except BuildFailed as exc:
            self._handed.add((plan.key, plan.lock_key))
            self.store.handoffs.publish_failure(plan.key, exc.report)
            raise
        if not plan.persistent:
            self._handed.add((plan.key, plan.lock_key))
            outcome = self.store.handoffs.publish_wheel(plan.key, wheel, plan.sha256)
            assert outcome.wheel is not None
            return outcome.wheel, plan.sha256
        holding.phase("publishing")
        entry = self.store.publish(plan.key, wheel, _manifest_source(plan.source, plan.sha256))
        return entry.wheel, plan.sha256

    # --- the remote tier (pipguard/remote): a second look before a build, an upload after one --------

    def _remote_tier(self, source: Source) -> Tier | None:
        """The remote tier, opened at its first use with this command's network settings.

        Its modules (urllib, ssl, http.client: ~25 ms) load only when ``PIPGUARD_REMOTE`` asks for it."""
        with self._lock:  # builds ahead open it from several threads: once
            if not self._remote_opened:
                self._remote_opened = True
                if not settings.remote_environment().get("PIPGUARD_REMOTE"):
                    return None
                from pipguard import remote

                self._remote = remote.open_tier(source.network, self.stopping)
                if self._remote is not None:
                    atexit.register(self._remote_summary, self._remote, display.current())
            return self._remote

    def _from_remote(self, plan: Plan, holding: locks.Holding) -> Result | None:
        """On a local miss, under the lock: a verified wheel from the remote store, published locally."""
        tier = self._remote_tier(plan.source) if plan.persistent else None
        if tier is None or tier.off:
            return None
        holding.phase("downloading")
        directory = self.store.new_build_dir()
        try:
            wheel = tier.fetch(plan.key, plan.source, directory, holding.subject.what)
            if wheel is None:
                return None
            entry = self.store.publish(plan.key, wheel, {**_manifest_source(plan.source, plan.sha256), "remote": True})
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        holding.end_wait(f"installing the wheel from the remote cache {tier.config.display}")
        return entry.wheel, plan.sha256

    def _to_remote(self, plan: Plan, built: Result) -> None:
        """After a local build and publish (lock released): upload it, when writing is on."""
        tier = self._remote_tier(plan.source) if plan.persistent else None
        if tier is not None:
            tier.upload(plan.key, built[0])

    def _remote_summary(self, tier: Tier, output: display.Output) -> None:
        from pipguard.remote import stats as remote_stats

        remote_stats.add(self.store.base, tier.counts)
        if any(tier.counts.values()):
            display.detail(tier.summary(), output)

    def _new_work_dir(self) -> Path:
        work = self.store.new_build_dir()
        fd = builder.claim(work)
        atexit.register(_close_quietly, fd)
        return work

    def _plan(self, source: Source) -> Plan:
        """Identify the source (content, not URL), check it against the user's hashes, choose its key."""
        options = _option_material(source)
        if source.kind == "dir" and source.local_path is not None:
            key = keys.cache_key(keys.tree_key(source.local_path, source.subdirectory), options)
            return Plan(source, key, keys.tree_lock_key(source.local_path), False, None, None, None)
        persistent = source.options.cache_enabled
        if source.kind == "vcs":
            identity = {"kind": "vcs", "url": redact(source.url), "commit": source.commit, "sub": source.subdirectory}
            key = keys.cache_key(identity, options)
            return Plan(source, key, key, persistent, None, None, None)
        plan = Plan(source, "", "", persistent, source.declared_sha256, source.local_path, None)
        checked = source.sha256_allowed
        if checked is not None and plan.archive is None and plan.sha256 is not None and not checked(plan.sha256):
            # The index's own hash is not one the user allowed: pip downloads it and says so (no download here
            # too: the download would be the same bytes, checked the same way).
            raise SourceMismatch(f"{source.url.rsplit('/', 1)[-1]} does not match the hashes given")
        if plan.archive is None and plan.sha256 is None:
            plan.work = self._new_work_dir()
            plan.archive = _download(source, plan.work)
        if plan.archive is not None:
            plan.sha256 = keys.file_sha256(plan.archive)
            if source.declared_sha256 and plan.sha256 != source.declared_sha256:
                raise SourceMismatch(f"{plan.archive.name} does not match the sha256 its link declares")
        if checked is not None and not checked(str(plan.sha256)):
            raise SourceMismatch(f"{source.url.rsplit('/', 1)[-1]} does not match the hashes given")
        plan.key = plan.lock_key = keys.cache_key({"kind": "archive", "sha256": plan.sha256, "sub": source.subdirectory}, options)
        return plan

    def _build(self, plan: Plan, holding: locks.Holding) -> Path:
        """Build in the child once the job budget has room (``queued`` in the record until then)."""
        holding.phase("queued")
        with self.budget.slot(self.stopping.is_set):
            holding.phase("building")
            return self._run_build(plan, holding)

    def _run_build(self, plan: Plan, holding: locks.Holding) -> Path:
        target = _build_target(plan.source, plan.archive)
        progress = Progress(holding.subject.what, waiting=False)
        started = time.monotonic()
        if progress.mode == "plain":
            info(f"building {holding.subject.what}")
        last = 0.0
        most_waiting = 0

        def tick() -> None:
            nonlocal last, most_waiting
            if self.stopping.is_set():
                raise BuildStopped(f"stopped building {holding.subject.what}")
            now = time.monotonic()
            if now - last < locks.REFRESH_SECONDS:
                return
            last = now
            waiting = holding.waiters()
            most_waiting = max(most_waiting, len(waiting))
            progress.tick(None, waiting)

        name = plan.source.name or _name_and_version(plan.source)[0] or _display_source(plan.source)
        options = plan.source.options
        try:
            wheel = builder.build(target, name, options.child_args, plan.work, options.verbosity, tick)  # type: ignore[arg-type]
        except BuildFailed:
            info(f"building {holding.subject.what} failed after {time.monotonic() - started:.1f}s")
            raise
        finally:
            progress.pause()
        tick()
        waited = f"; {most_waiting} process{'es' if most_waiting != 1 else ''} waited for it" if most_waiting else ""
        info(f"built {wheel.name} in {time.monotonic() - started:.1f}s{waited}")
        return wheel

    def _leave(self) -> None:
        """At exit: remove the handoffs this process made or used, unless someone still waits for them."""
        self.store.handoffs.unpin_all()
        for key, lock_key in self._handed:
            with contextlib.suppress(OSError):
                fd = os.open(self.store.lock_path(lock_key), os.O_RDWR)
                try:
                    # Under the lock: a waiter removes its record only once it holds the lock itself.
                    if try_lock(fd, exclusive=True) and not _anyone_waiting(self.store.record_dir(lock_key)):
                        self.store.handoffs.remove_unused(key)
                finally:
                    os.close(fd)

    # --- plain locks: environments, editable trees -------------------------------------------------

    def environment_lock(self, scope: str) -> contextlib.AbstractContextManager[object]:
        """Installs into one environment run one at a time."""
        key = keys.environment_lock_key(scope)
        return self._plain_lock(locks.Subject("environment", key, scope, "", ""), "installing", "installing now")

    def tree_lock(self, tree: str, name: str) -> contextlib.AbstractContextManager[object]:
        """Builds in one source tree run one at a time (an editable's metadata and build)."""
        key = keys.tree_lock_key(Path(tree))
        return self._plain_lock(locks.Subject("build", key, name, "", tree), "building", "building it here")

    @contextlib.contextmanager
    def _plain_lock(self, subject: locks.Subject, phase: str, outcome: str) -> Iterator[object]:
        """A lock with records and display but no cache; without a usable cache, no lock at all."""
        if not self._usable():
            yield None
            return
        with contextlib.ExitStack() as stack:
            holding = None
            try:
                holding = stack.enter_context(
                    locks.hold(
                        self.store.lock_path(subject.key), self.store.record_dir(subject.key), subject, self.timeout, phase
                    )
                )
                holding.end_wait(outcome)
            except MACHINERY_ERRORS as exc:
                self._give_up(exc)
            yield holding


def _anyone_waiting(record_dir: Path) -> bool:
    return any(p.role == "waiter" for p in records.read(record_dir))


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _name_and_version(source: Source) -> tuple[str, str]:
    """What records and displays call the source; a local tree's static ``[project]`` table if pip cannot say."""
    name, version = source.name or "", source.version or ""
    if source.kind == "dir" and source.local_path is not None and not name:
        try:
            import tomllib

            text = (_tree(source.local_path, source) / "pyproject.toml").read_text(encoding="utf-8")
            table = tomllib.loads(text).get("project", {})
        except (ImportError, OSError, ValueError):
            return name, version
        name = str(table.get("name", "")) if isinstance(table, dict) else ""
        version = str(table.get("version", "")) if isinstance(table, dict) else ""
    return name, version


def _tree(root: Path, source: Source) -> Path:
    """The project directory of a local tree: its ``#subdirectory=`` if the link names one."""
    return root / source.subdirectory if source.subdirectory else root


def _display_source(source: Source) -> str:
    if source.kind == "dir" and source.local_path is not None:
        return str(source.local_path)
    if source.kind == "vcs":
        return redact(f"{source.url}")
    return redact(source.url.rsplit("/", 1)[-1] if source.local_path is None else str(source.local_path))


def _option_material(source: Source) -> dict[str, Any]:
    constraints = []
    for name in source.options.build_constraint_files:
        path = Path(name)
        constraints.append(keys.file_sha256(path) if path.is_file() else redact(name))
    material: dict[str, Any] = {
        "config_settings": source.options.config_settings,
        "build_isolation": source.options.build_isolation,
        "build_constraints": constraints,
    }
    if not source.options.build_isolation:
        material["installed"] = keys.installed_distributions()
    return material


def _manifest_source(source: Source, sha256: str | None) -> dict[str, Any]:
    return {
        "kind": source.kind,
        "name": source.name,
        "version": source.version,
        "url": redact(source.url),
        "sha256": sha256,
        "commit": source.commit,
        "subdirectory": source.subdirectory,
    }


def _download(source: Source, work: Path) -> Path:
    target = work / "download"
    target.mkdir(exist_ok=True)
    path = source.download(target)
    if source.declared_sha256 and keys.file_sha256(path) != source.declared_sha256:
        raise SourceMismatch(f"{path.name} does not match the sha256 its link declares")
    return path


def _build_target(source: Source, archive: Path | None) -> str:
    """What the build child is given: a local path where there is one, the URL otherwise."""
    from pipguard._pip import path_to_url

    fragment = f"#subdirectory={source.subdirectory}" if source.subdirectory else ""
    if source.kind == "dir" and source.local_path is not None:
        return str(_tree(source.local_path, source))
    if archive is not None:
        return path_to_url(str(archive)) + fragment if fragment else str(archive)
    return source.url + fragment

