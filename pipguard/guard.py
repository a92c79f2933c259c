"""The guard pip's seam talks to: lock a source's key, look again, build once, publish, release.

Any failure of pipguard's own machinery (cache, lock, build child) ends in one warning and ``None``, which
tells the seam to let pip build as plain pip would: the cache can cost a duplicate build, never an install.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import Timeout as LockTimeout

from pipguard import builder, keys, locks, settings
from pipguard.display import Progress, info, warn
from pipguard.pipseam import Source
from pipguard.redact import redact
from pipguard.store import CacheError, Store

_MACHINERY_ERRORS = (OSError, CacheError, LockTimeout, ValueError, RuntimeError)


class CacheGuard:
    def __init__(self) -> None:
        self.store = Store(settings.cache_root())
        self.timeout, complaint = settings.lock_timeout()
        _progress, progress_complaint = settings.progress_override()
        for message in (complaint, progress_complaint):
            if message:
                warn(message)
        self._ready: bool | None = None

    # --- availability ----------------------------------------------------------------------------

    def _usable(self) -> bool:
        if self._ready is None:
            try:
                self.store.prepare(settings.trusts_shared_cache())
                self.store.clean_tmp()
                self._ready = True
            except CacheError as exc:
                self._give_up(exc)
        return bool(self._ready)

    def _give_up(self, exc: BaseException) -> None:
        """One warning per process; from then on this process is plain pip."""
        if self._ready is not False:
            warn(f"not using the build cache ({exc}); going on as plain pip")
        self._ready = False

    # --- builds ----------------------------------------------------------------------------------

    def wheel_for(self, source: Source) -> tuple[Path, str | None] | None:
        if not self._usable():
            return None
        try:
            return self._wheel_for(source)
        except builder.BuildFailed as exc:
            label = " ".join(filter(None, _name_and_version(source))) or _display_source(source)
            warn(f"building {label} for the cache failed ({exc}); pip builds it itself")
            return None
        except _MACHINERY_ERRORS as exc:
            self._give_up(exc)
            return None

    def _wheel_for(self, source: Source) -> tuple[Path, str | None] | None:
        work: Path | None = None
        try:
            identity, sha256, archive, work = self._identify(source)
            key = keys.cache_key(identity, _option_material(source))
            cached = source.options.cache_enabled
            if cached and (entry := self.store.lookup(key)):
                return entry.wheel, sha256
            lock_key = keys.tree_lock_key(source.local_path) if source.kind == "dir" and source.local_path else key
            name, version = _name_and_version(source)
            subject = locks.Subject("build", lock_key, name, version, _display_source(source))
            first_phase = "downloading" if source.kind == "archive" and archive is None else "building"
            with locks.hold(
                self.store.lock_path(lock_key), self.store.record_dir(lock_key), subject, self.timeout, first_phase
            ) as holding:
                if cached and (entry := self.store.lookup(key)):
                    built_by = f"pid {holding.previous_holder.pid}" if holding.previous_holder else "another process"
                    holding.end_wait(f"reusing the wheel {built_by} built")
                    return entry.wheel, sha256
                holding.end_wait("building it here" if holding.locked else "building it privately")
                if work is None:
                    work = self._new_work_dir()
                if source.kind == "archive" and archive is None:
                    archive = _download(source, work)
                holding.phase("building")
                wheel = self._build(source, archive, work, holding)
                if not cached:
                    keep = work
                    work = None
                    atexit.register(shutil.rmtree, keep, True)
                    return wheel, sha256
                holding.phase("publishing")
                entry = self.store.publish(key, wheel, _manifest_source(source, sha256))
                return entry.wheel, sha256
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)

    def _new_work_dir(self) -> Path:
        work = self.store.new_build_dir()
        fd = builder.claim(work)
        atexit.register(_close_quietly, fd)
        return work

    def _identify(self, source: Source) -> tuple[dict[str, Any], str | None, Path | None, Path | None]:
        """What the source is (content, not URL), its sha256 if an archive, and a local copy if one exists."""
        sub = source.subdirectory
        if source.kind == "dir" and source.local_path is not None:
            return {"kind": "dir", "fingerprint": keys.tree_fingerprint(source.local_path), "sub": sub}, None, None, None
        if source.kind == "vcs":
            return {"kind": "vcs", "url": redact(source.url), "commit": source.commit, "sub": sub}, None, None, None
        work = None
        archive = source.local_path
        if archive is None and source.declared_sha256 is None:
            work = self._new_work_dir()
            archive = _download(source, work)
        sha256: str | None
        if archive is not None:
            sha256 = keys.file_sha256(archive)
            if source.declared_sha256 and sha256 != source.declared_sha256:
                raise ValueError(f"{archive.name} does not match the sha256 its link declares")
        else:
            sha256 = source.declared_sha256
        return {"kind": "archive", "sha256": sha256, "sub": sub}, sha256, archive, work

    def _build(self, source: Source, archive: Path | None, work: Path, holding: locks.Holding) -> Path:
        target = _build_target(source, archive)
        progress = Progress(holding.subject.what, waiting=False)
        started = time.monotonic()
        if progress.mode == "plain":
            info(f"building {holding.subject.what}")
        last = 0.0
        most_waiting = 0

        def tick() -> None:
            nonlocal last, most_waiting
            now = time.monotonic()
            if now - last < locks.REFRESH_SECONDS:
                return
            last = now
            waiting = holding.waiters()
            most_waiting = max(most_waiting, len(waiting))
            progress.tick(None, waiting)

        try:
            wheel = builder.build(target, source.options.cli_args, work, source.options.verbosity, tick)
        finally:
            progress.pause()
        tick()
        waited = f"; {most_waiting} process{'es' if most_waiting != 1 else ''} waited for it" if most_waiting else ""
        info(f"built {wheel.name} in {time.monotonic() - started:.1f}s{waited}")
        return wheel

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
            except _MACHINERY_ERRORS as exc:
                self._give_up(exc)
            yield holding


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
    return {
        "config_settings": source.options.config_settings,
        "build_isolation": source.options.build_isolation,
        "build_constraints": constraints,
    }


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
        raise ValueError(f"{path.name} does not match the sha256 its link declares")
    return path


def _build_target(source: Source, archive: Path | None) -> str:
    """What the build child is given: a local path where there is one, the URL otherwise."""
    from pipguard.pipseam import path_to_url

    fragment = f"#subdirectory={source.subdirectory}" if source.subdirectory else ""
    if source.kind == "dir" and source.local_path is not None:
        return str(_tree(source.local_path, source))
    if archive is not None:
        return path_to_url(str(archive)) + fragment if fragment else str(archive)
    return source.url + fragment

