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
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipguard import builder, display, jobs, keys, locks, records, sandbox, settings
from pipguard.buildenv import BuildEnvs, not_kept
from pipguard.display import Progress, info, warn
from pipguard.errors import MACHINERY_ERRORS, BuildFailed, BuildReport, BuildStopped, CacheUnusable, SourceMismatch
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


class Pending:
    """A miss this process builds itself, as plain pip does: pip prepares the source and builds its wheel
    with its own output, log and options, while this holds the source's lock (from pip's first need of it
    until the wheel is built, or the command no longer needs it). Processes that wait for the lock then
    install the wheel :meth:`done` shares."""

    def __init__(self, guard: CacheGuard, plan: Plan, holding: locks.Holding, stack: contextlib.ExitStack) -> None:
        self.guard = guard
        self.plan = plan
        self.holding = holding
        self._stack = stack
        self._lent = False

    @property
    def archive(self) -> Path | None:
        """The archive pipguard downloaded to key the source (pip can prepare it instead of downloading)."""
        return self.plan.archive if self.plan.work is not None else None

    def building(self) -> Path | None:
        """pip is about to build it: a wheel to use instead, if the lock was lent meanwhile and the
        process that took it built the wheel; else None (build it, under the lock)."""
        if self._lent:
            self._lent = False
            reused = self.guard._retake(self)
            if reused is not None:
                self.release()
                return reused
        elif self.plan.persistent and (entry := self.guard.store.reuse(self.plan.key)):
            self.release()  # a build-dependency install below this process built it meanwhile, unlocked
            return entry.wheel
        self.holding.phase("building")
        self.guard.store.building(self.plan.key)
        return None

    def build_starts(self) -> bool:
        """pip builds the wheel now, to take the source's metadata from it (metadata.py); False while the
        lock is lent: pip then prepares the metadata alone, and :meth:`building` takes the lock back."""
        if self._lent:
            return False
        self.holding.phase("building")
        self.guard.store.building(self.plan.key)
        return True

    def lend(self) -> None:
        """Let the lock go for now (a cycle of waits would never end); :meth:`building` takes it back."""
        if not self._lent:
            self._lent = True
            self.guard._held.pop(self.plan.lock_key, None)
            self._stack.close()

    def retaken(self, holding: locks.Holding, stack: contextlib.ExitStack) -> None:
        self.holding, self._stack = holding, stack
        self.guard._held[self.plan.lock_key] = self

    def done(self, wheel: Path | None, report: BuildReport | None, keep: bool = True) -> None:
        """pip built ``wheel`` (or failed, saying ``report``): share it under the lock, then release it.

        ``keep`` False (a VCS revision that turned out to name a branch or a tag): handed to the processes
        waiting for this build only, never kept in the cache, as pip keeps it out of its own."""
        self.plan.persistent = self.plan.persistent and keep
        try:
            waiting = len(self.holding.waiters()) if self.holding.locked else 0
            built = self.guard.share(self.plan, self.holding, wheel, report)
        finally:
            self.release()
        if waiting:
            what = self.holding.subject.what
            outcome = f"built {built[0].name}" if built is not None else f"building {what} failed"
            info(f"{outcome}; {waiting} process{'es' if waiting != 1 else ''} waited for it")
        if built is not None:
            self.guard._to_remote(self.plan, built)

    def release(self) -> None:
        """Give the lock up (idempotent): pip built it, or will not."""
        if self.guard._held.get(self.plan.lock_key) is self:
            del self.guard._held[self.plan.lock_key]
        self._stack.close()
        _remove_work(self.plan)


class CacheGuard:
    """One command's guard. Its builds may run in several threads at once (ahead.py): the state they share
    is guarded (``_ready`` under ``_lock``) or only ever appended to (``_handed``, the store's pins: single
    operations on builtin containers, atomic in CPython), and each thread holds at most one build lock."""

    def __init__(self) -> None:
        self.store = Store(settings.cache_root())
        self.timeout, complaint = settings.lock_timeout()
        _progress, progress_complaint = settings.progress_override()
        job_count, jobs_complaint = settings.jobs()
        self.store.max_size, size_complaint = settings.cache_max_size()
        for message in (complaint, progress_complaint, jobs_complaint, size_complaint):
            if message:
                warn(message)
        self.budget = jobs.budget_from_environment(job_count, os.environ.get("MAKEFLAGS", ""))
        self.stopping = threading.Event()  # set when the command is interrupted: every build ends at once
        self._lock = threading.RLock()  # _usable gives up while holding it; builds ahead give up from threads
        self._ready: bool | None = None
        self._handed: set[tuple[str, str]] = set()  # (key, lock key) of outcomes made or used here
        self._held: dict[str, Pending] = {}  # lock key -> the build pip runs itself here (main thread only)
        self._transcripts: dict[Path, str] = {}  # wheel -> what its build child printed (builds ahead)
        self._remote: Tier | None = None
        self._remote_opened = False
        self._sandbox: sandbox.Sandbox | None = None  # a writer's builds run in it (sandbox.py)
        self._envs: BuildEnvs | None = None

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
                    if self.store.read_only:
                        warn(f"the build cache {self.store.root} is read-only here: using its wheels, not adding any")
                    self._ready = True
                    atexit.register(self._leave)
                except CacheUnusable as exc:
                    self._give_up(exc)
            return bool(self._ready)

    def _give_up(self, exc: BaseException) -> None:
        """One warning per process (builds ahead may give up in several threads at once); from then on this
        process is plain pip."""
        with self._lock:
            if self._ready is not False:
                warn(f"not using the build cache ({exc}); going on as plain pip")
            self._ready = False

    def build_envs(self) -> BuildEnvs | None:
        """The kept isolated build environments (buildenv.py), or None without a usable cache."""
        if not self._usable():
            return None
        if self._envs is None:
            self._envs = BuildEnvs(self.store, self.timeout, self.stopping.is_set, self._awaited)
        return self._envs

    def _awaited(self) -> bool:
        """Whether another process waits for a build whose lock this one holds."""
        return any(_anyone_waiting(self.store.record_dir(key)) for key in list(self._held))

    # --- builds ----------------------------------------------------------------------------------

    def claim(self, source: Source) -> Result | Pending | None:
        """What to do about ``source``, the moment pip first needs it: a wheel to install (the cache's, or
        one the build this process waited for made), a :class:`Pending` build this process now owns (its
        lock held until pip has built it, or no longer needs it), or None for plain pip. On a writer whose
        builds can be sandboxed, a miss is built at once in the sandboxed build child instead (sandbox.py).

        Raises ``BuildFailed`` (the build waited for failed: report it, never build it again in this run)
        and ``SourceMismatch`` (pip downloads and checks the source itself)."""
        if not self._usable():
            return None
        plan = None
        try:
            plan = self._plan(source)
            if plan.lock_key in self._held:
                return None  # this process builds it already, for another spelling of the same source
            claimed = self._claim(plan)
        except (BuildFailed, SourceMismatch):
            _remove_work(plan)
            raise
        except MACHINERY_ERRORS as exc:
            _remove_work(plan)
            self._give_up(exc)
            return None
        if not isinstance(claimed, Pending):
            _remove_work(plan)
        elif self._remote_tier(source) is not None and self._sandbox is not None:
            return self._build_claimed(claimed)  # a writer's: never pip in this process, which holds its secrets
        return claimed

    def wheel_for(self, source: Source) -> Result | None:
        """Claim ``source`` and, on a miss, build it here in pipguard's build child (builds ahead)."""
        if source.options.verbosity <= 0 and not settings.remote_environment().get("PIPGUARD_REMOTE"):
            # (with a remote store, a writer builds in its sandbox: the server starts with a first child)
            with contextlib.suppress(*MACHINERY_ERRORS, ImportError, ValueError):
                builder.warm_up(source.options.cache_enabled)
        claimed = self.claim(source)
        return self._build_claimed(claimed) if isinstance(claimed, Pending) else claimed

    def _build_claimed(self, claimed: Pending) -> Result | None:
        """Build a claimed miss in pipguard's build child, share it, release it, upload it."""
        try:
            built = self._build_and_share(claimed.plan, claimed.holding)
        except BuildFailed:
            raise
        except MACHINERY_ERRORS as exc:
            self._give_up(exc)
            return None
        finally:
            claimed.release()
        self._to_remote(claimed.plan, built)
        return built

    def _claim(self, plan: Plan) -> Result | Pending | None:
        if plan.persistent and (entry := self.store.reuse(plan.key)):
            return entry.wheel, plan.sha256
        if self.store.read_only:
            return None  # no lock to take, nowhere to publish: pip builds it, as plain pip
        stack = contextlib.ExitStack()
        try:
            holding = self._hold(plan, stack)
            reused = self._reuse(plan, holding) or self._from_remote(plan, holding)
        except BaseException:
            stack.close()
            raise
        if reused is not None:
            stack.close()
            return reused
        holding.end_wait("building it here" if holding.locked else "building it privately")
        self.store.tally.add("misses")
        pending = Pending(self, plan, holding, stack)
        if threading.current_thread() is threading.main_thread():
            self._held[plan.lock_key] = pending
        return pending

    def _hold(self, plan: Plan, stack: contextlib.ExitStack) -> locks.Holding:
        name, version = _name_and_version(plan.source)
        subject = locks.Subject("build", plan.lock_key, name, version, _display_source(plan.source))
        phase = "downloading" if plan.source.kind == "archive" and plan.archive is None else "preparing"
        lock_path, record_dir = self.store.lock_path(plan.lock_key), self.store.record_dir(plan.lock_key)
        holding = stack.enter_context(
            locks.hold(lock_path, record_dir, subject, self.timeout, phase, self.stopping.is_set, self._on_wait)
        )
        if holding.wait_started is not None:
            self.store.tally.add("waits")
            self.store.tally.add("waited_seconds", holding.waited)
        return holding

    def _retake(self, pending: Pending) -> Path | None:
        """Take a lent lock back before pip builds: the wheel the process that took it built, if any."""
        stack = contextlib.ExitStack()
        try:
            holding = self._hold(pending.plan, stack)
            reused = self._reuse(pending.plan, holding)
        except BaseException:
            stack.close()
            raise
        pending.retaken(holding, stack)
        if reused is None:
            holding.end_wait("building it here")
        return reused[0] if reused is not None else None

    def _on_wait(self, holder: records.Participant | None) -> bool:
        """While this process waits: if ``holder`` waits for us too, lend our locks (see _in_cycle); True
        (stop waiting, build without the lock) if ``holder`` is blocked until this process ends."""
        if self._blocks(holder):
            return True
        if self._in_cycle(holder):
            for pending in list(self._held.values()):
                pending.lend()
        return False

    def _blocks(self, holder: records.Participant | None) -> bool:
        """Whether ``holder`` is one of the processes this build-dependency install runs for, or waits,
        directly or through others, for a lock one of them holds: they are blocked until this process ends,
        so waiting would never end. (Such a lock is one pip's resolver claimed for a source it has not built
        yet; it looks in the cache before building it, and finds what this process builds instead.)"""
        parents = set(settings.parents())
        if not parents or holder is None or holder.host != socket.gethostname():
            return False
        holds, waits = self._graph(holder.host)
        holders = {key: pid for pid, held in holds.items() for key in held}
        ahead = _reach(waits.get(holder.pid, set()), lambda key: {holders[key]} if key in holders else set(), waits)
        return bool((ahead | {holder.pid}) & parents)

    def _graph(self, host: str) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
        """The lock keys each process on ``host`` holds, and those it waits for: a build-dependency
        install's waits are its parents' too (each is blocked until it ends)."""
        holds: dict[int, set[str]] = {}
        waits: dict[int, set[str]] = {}
        with contextlib.suppress(OSError):
            for name in os.listdir(self.store.records):
                for p in records.read(self.store.records / name):
                    if p.host == host:
                        for pid in (p.pid, *p.parents) if p.role == "waiter" else (p.pid,):
                            (holds if p.role == "holder" else waits).setdefault(pid, set()).add(p.key)
        return holds, waits

    def _in_cycle(self, holder: records.Participant | None) -> bool:
        """Whether ``holder`` waits, directly or through others, for a lock this process holds (pip's
        resolver holds several at once, each process in its own order), and this process is the one of
        that cycle to lend its locks (the highest pid): it goes on waiting, holding none, and takes them
        back before pip builds; whoever took one meanwhile built it, or builds it, once."""
        host = socket.gethostname()
        if not self._held or holder is None or holder.host != host or holder.pid == os.getpid():
            return False
        holds, waits = self._graph(host)
        holders = {key: pid for pid, held in holds.items() for key in held}
        waiters: dict[str, set[int]] = {}
        for pid, wanted in waits.items():
            for key in wanted:
                waiters.setdefault(key, set()).add(pid)
        behind = _reach(set(self._held), lambda key: waiters.get(key, set()), holds)
        ahead = _reach(waits.get(holder.pid, set()), lambda key: {holders[key]} if key in holders else set(), waits)
        cycle = (behind & (ahead | {holder.pid})) - {os.getpid()}
        return bool(cycle) and os.getpid() > max(cycle)

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
        if plan.persistent and (entry := self.store.reuse(plan.key)):
            holding.end_wait(f"reusing the wheel {built_by} built")
            return entry.wheel, plan.sha256
        return None

    def share(self, plan: Plan, holding: locks.Holding, wheel: Path | None, report: BuildReport | None) -> Result | None:
        """A wheel pip built here (a copy goes into the cache, or to waiters only), or its failure."""
        if wheel is None:
            if report is not None:
                self._handed.add((plan.key, plan.lock_key))
                self.store.handoffs.publish_failure(plan.key, report)
            return None
        holding.phase("publishing")
        staging = self.store.new_build_dir()
        try:
            copy = staging / wheel.name
            try:
                os.link(wheel, copy)
            except OSError:
                shutil.copyfile(wheel, copy)
            return self._keep(plan, copy)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _keep(self, plan: Plan, wheel: Path) -> Result:
        """Move a built wheel into the cache, or (trees, ``--no-cache-dir``) to the waiters only."""
        if not plan.persistent:
            self._handed.add((plan.key, plan.lock_key))
            outcome = self.store.handoffs.publish_wheel(plan.key, wheel, plan.sha256)
            assert outcome.wheel is not None
            return outcome.wheel, plan.sha256
        entry = self.store.publish(plan.key, wheel, _manifest_source(plan.source, plan.sha256))
        return entry.wheel, plan.sha256

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
        holding.phase("publishing")
        built = self._keep(plan, wheel)
        if plan.work is not None and (transcript := _read_text(plan.work / "build.out")):
            self._transcripts[built[0]] = transcript
        return built

    def transcript(self, wheel: Path) -> str | None:
        """What the build child printed while building ``wheel`` here, if it did (to show it as pip's)."""
        return self._transcripts.get(wheel)

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
                from pipguard.remote import stats  # now: pip 26.3 warns of any import after it installed

                self._remote = remote.open_tier(source.network, self.stopping)
                self._sandbox = sandbox.for_tier(self._remote)
                if self._remote is not None:
                    atexit.register(self._remote_summary, self._remote, display.current(), stats.add)
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

    def _remote_summary(self, tier: Tier, output: display.Output, add: Callable[[Path, Counter[str]], None]) -> None:
        add(self.store.base, tier.counts)
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
        """Build in a child: it starts once there is a child's place (``queued`` until then) and prepares
        (``preparing``), then waits for a job before its build code runs (``waiting for a job``, then
        ``building``: jobs.py, gate.py)."""
        size = _archive_size(plan.archive)
        holding.phase("queued")
        with self.budget.child(self.stopping.is_set, size), contextlib.ExitStack() as job:

            def take_job(weight: int | None) -> None:
                holding.phase("waiting for a job")
                job.enter_context(self.budget.slot(self.stopping.is_set, size if weight is None else weight))
                holding.phase("building")
                self.store.building(plan.key)

            holding.phase("preparing")
            wheel = self._run_build(plan, holding, take_job)
        self._compile_handed_back(plan.work)
        return wheel

    def _run_build(self, plan: Plan, holding: locks.Holding, take_job: Callable[[int | None], None]) -> Path:
        """Build in pipguard's child (builds ahead). Silent on stderr unless other processes waited for it,
        as a plain pip build is (a live row on a terminal, which leaves nothing behind)."""
        target = _build_target(plan.source, plan.archive)
        progress = Progress(holding.subject.what, waiting=False)
        started = time.monotonic()
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
        outcome = f"building {holding.subject.what} failed"
        try:
            wheel = builder.build(  # type: ignore[arg-type]
                target, name, options.child_args, plan.work, options.verbosity, tick, take_job, self._sandbox,
                options.cache_enabled,
            )
            tick()
            outcome = f"built {wheel.name} in {time.monotonic() - started:.1f}s"
        finally:
            progress.pause()
            if most_waiting:
                info(f"{outcome}; {most_waiting} process{'es' if most_waiting != 1 else ''} waited for it")
        return wheel

    def _compile_handed_back(self, work: Path) -> None:
        """A kept build environment the child reused uncompiled: compiled here, where the command outlives
        the child (buildenv.py), if a job is free now: a compile that runs on CPU the builds want is given
        up when the command ends, its CPU lost (the entry stays as it is for a later reuse). Nothing of it
        may fail the build."""
        envs = self.build_envs()
        if envs is not None and self.budget.job_free():
            with contextlib.suppress(*MACHINERY_ERRORS):
                envs.compile_handed_back(work, lambda why: warn(not_kept(why)))

    def _leave(self) -> None:
        """At exit: trim the cache and add this command's counts (Store.wind_up); remove the handoffs this
        process made or used, unless someone still waits for them. Build environments still being kept
        are waited for first: the trim counts them."""
        if self._envs is not None:
            self._envs.finish()
        self.store.wind_up()
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
        """Installs into one environment run one at a time. Not a build-dependency install: its
        environment is pip's private temp directory (a lock file for each would stay in the cache)."""
        if settings.parents():
            return contextlib.nullcontext()
        key = keys.environment_lock_key(scope)
        return self._plain_lock(locks.Subject("environment", key, scope, "", ""), "installing", "installing now")

    def tree_lock(self, tree: str, name: str) -> contextlib.AbstractContextManager[object]:
        """Builds in one source tree run one at a time (an editable's metadata and build)."""
        key = keys.tree_lock_key(Path(tree))
        return self._plain_lock(locks.Subject("build", key, name, "", tree), "building", "building it here")

    @contextlib.contextmanager
    def _plain_lock(self, subject: locks.Subject, phase: str, outcome: str) -> Iterator[object]:
        """A lock with records and display but no cache; without a usable cache, no lock at all."""
        if not self._usable() or self.store.read_only:
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


def _reach(keys: set[str], pids_of: Any, keys_of: dict[int, set[str]]) -> set[int]:
    """The pids reached from ``keys`` by alternating key -> pids (``pids_of``) and pid -> keys."""
    keys, seen = set(keys), set()
    while keys:
        for pid in pids_of(keys.pop()) - seen:
            seen.add(pid)
            keys |= keys_of.get(pid, set())
    return seen


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _remove_work(plan: Plan | None) -> None:
    if plan is not None and plan.work is not None:
        shutil.rmtree(plan.work, ignore_errors=True)
        plan.work = None


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


def _archive_size(archive: Path | None) -> int | None:
    """How big a build is, as far as can be told before it runs (jobs.Budget: the biggest goes first)."""
    try:
        return archive.stat().st_size if archive is not None else None
    except OSError:
        return None


def _build_target(source: Source, archive: Path | None) -> str:
    """What the build child is given: a local path where there is one, the URL otherwise; named as the
    user's requirement names it (``name @ url``), so the child's lines name it as plain pip's would."""
    from pipguard._pip import path_to_url

    fragment = f"#subdirectory={source.subdirectory}" if source.subdirectory else ""
    if source.kind == "dir" and source.local_path is not None:
        return str(_tree(source.local_path, source))
    url = (path_to_url(str(archive)) if archive is not None else source.url) + fragment
    if source.kind == "archive" and source.name:
        return f"{source.name} @ {url}"
    return url if fragment or archive is None else str(archive)
