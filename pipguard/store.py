"""The wheel cache on disk: a versioned, append-only layout of immutable, verified entries.

Layout under the cache root::

    v1/wheels/<k[:2]>/<key>/<wheel>.whl      the wheel, never rewritten
    v1/wheels/<k[:2]>/<key>/manifest.json    its sha256 and where it came from (no credentials)
    v1/locks/<key>.lock                      build and environment locks, never deleted
    v1/records/<key>/*.json                  who holds and who waits (records.py)
    v1/handoffs/<key>/<stamp>/               outcomes handed to waiters only (handoff.py)
    v1/tmp/                                  builds in progress, on the same filesystem
    v1/buildenvs/<k[:2]>/<key>/<id>/         kept isolated build environments (buildenv.py)
    v1/usage.jsonl                           counts of hits, misses, builds, ... (usage.py)
    v1/trim.lock                             held by the one process trimming the cache to its cap

An entry is built in ``tmp/``, verified, and renamed into place whole, so readers see either nothing or
a complete entry. Every read checks the wheel's sha256 against the manifest; a damaged entry is moved
aside and rebuilt. What is read is trusted only as far as trust.py allows: the way to the root and every
directory of the layout no other user can change, shards and entries real directories of this user's,
files regular ones. In a team's cache (PIPGUARD_CACHE_GROUP) the members' directories are trusted too,
and whatever is made there is the group's, to read, lock and remove. A process keeps a shared lock on
each entry it hands to pip until it exits, and removal takes an exclusive one, so nothing in use is
removed. Every use of an entry sets its manifest's mtime (atime is unreliable: ``noatime``,
``relatime``): the size cap evicts the least recently used first. A cache this user cannot write is read
only: its verified entries serve hits, and nothing is added.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipguard import trust, usage
from pipguard.discard import discard
from pipguard.errors import CacheUnusable, UntrustedCache
from pipguard.flocks import try_lock, try_lock_path
from pipguard.handoff import Handoffs
from pipguard.keys import file_sha256

LAYOUT_VERSION = 1
LAYOUT_DIR = f"v{LAYOUT_VERSION}"
TRIM_LOCK = "trim.lock"
MANIFEST = "manifest.json"
MANIFEST_LIMIT = 1 << 20  # a manifest is a few hundred bytes; anything this big is not one
ENV_TREE = "tree"  # a kept build environment's files, beside its manifest


@dataclass(frozen=True)
class Entry:
    key: str
    directory: Path
    wheel: Path
    manifest: dict[str, Any]


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / LAYOUT_DIR
        self.wheels = self.base / "wheels"
        self.locks = self.base / "locks"
        self.records = self.base / "records"
        self.tmp = self.base / "tmp"
        # Made at the first environment kept (not part of the layout prepare() checks: an older cache, read
        # only here, lacks it); its entries are removed, counted and trimmed with the wheels.
        self.build_envs = self.base / "buildenvs"
        # Whose directories are trusted and how new ones are made (PIPGUARD_CACHE_GROUP; prepare() adds
        # PIPGUARD_TRUST_SHARED_CACHE as it is told).
        self.policy = trust.configured()
        self.handoffs = Handoffs(self.base / "handoffs", self.tmp, self.policy.unwaived())
        self.read_only = False  # a cache this user may read but not write: hits only (prepare() says)
        self._pins: list[int] = []
        self.tally = usage.Tally()  # this process's counts, added to usage.jsonl at exit
        self.max_size: int | None = None  # the cap wind_up trims to (PIPGUARD_CACHE_MAX_SIZE), None: none
        self._grew = False
        self._building: dict[str, float] = {}  # key -> when its build began (monotonic), for the manifest

    def prepare(self, trust_shared: bool) -> None:
        """Create the layout (private to this user, or the team's) and refuse a cache that anyone not
        trusted could change. The root is checked before anything is made in it."""
        policy = trust.configured()
        if policy.refusal is not None:
            raise UntrustedCache(policy.refusal)
        self.policy = trust.Policy(policy.group, waived=trust_shared)
        self.handoffs.policy = self.policy.unwaived()
        self._make(self.root)
        with _checking():
            trust.check_ancestors(self.root, self.policy)
            trust.check_private(self.root, self.root.stat(), self.policy)
        for directory in self.layout():
            self._make(directory)
        with _checking():
            for directory in self.layout():
                trust.check_directory(directory, self.policy)
        # A cache another user (root, an image's build) filled and this one may only read still serves
        # its verified entries; misses are plain pip's.
        self.read_only = not all(os.access(directory, os.W_OK) for directory in self.layout())

    def _make(self, directory: Path) -> None:
        try:
            self.policy.make_dir(directory)
        except OSError as exc:
            raise CacheUnusable(f"cannot create {directory}: {exc.strerror or exc}") from exc

    def layout(self) -> tuple[Path, ...]:
        """Every directory of the layout, outermost first: each is created, checked and read as such."""
        return (self.base, self.wheels, self.locks, self.records, self.tmp, self.handoffs.root)

    def entry_dir(self, key: str) -> Path:
        return self.wheels / key[:2] / key

    def lock_path(self, key: str) -> Path:
        return self.locks / f"{key}.lock"

    def record_dir(self, key: str) -> Path:
        return self.records / key

    # --- reading ---------------------------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The verified entry for ``key``, or None; a damaged entry is set aside on the way.

        A shard or entry that is not a real directory of this user's (a symlink, another user's, one others
        can write to) is set aside whole: nothing is followed out of the cache or taken from another user."""
        directory = self.entry_dir(key)
        for part in (directory.parent, directory):
            try:
                trust.check_directory(part, self.policy)
            except FileNotFoundError:
                return None  # no entry yet
            except UntrustedCache as exc:
                self._set_aside(part, str(exc))
                return None
        pin = self._pin(directory)
        try:
            entry = self._read(key, directory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if pin is not None:
                os.close(pin)
            if os.path.lexists(directory):  # else removed (prune, the cap) while this looked: a miss
                self._set_aside(directory, f"{type(exc).__name__}: {exc}")
            return None
        if pin is None:
            return None  # removed and published again while this looked: the caller looks again
        self._pins.append(pin)
        _touch(directory / MANIFEST)
        return entry

    def reuse(self, key: str) -> Entry | None:
        """:meth:`lookup` for an install that will use the entry: counted as a hit, with the build time
        it saves."""
        entry = self.lookup(key)
        if entry is not None:
            self.tally.add("hits")
            seconds = entry.manifest.get("build_seconds")
            if isinstance(seconds, (int, float)):
                self.tally.add("saved_seconds", seconds)
        return entry

    def _read(self, key: str, directory: Path) -> Entry:
        manifest = json.loads(trust.read_regular(directory / MANIFEST, MANIFEST_LIMIT))
        wheel_name = manifest["wheel"]
        if not isinstance(wheel_name, str) or "/" in wheel_name or not wheel_name.endswith(".whl"):
            raise ValueError(f"bad wheel name {wheel_name!r}")
        wheel = directory / wheel_name
        if not trust.matches(wheel, manifest["size"], manifest["sha256"]):
            raise ValueError("wheel does not match its manifest")
        if manifest.get("key") != key:
            raise ValueError("manifest belongs to another key")
        return Entry(key=key, directory=directory, wheel=wheel, manifest=manifest)

    @contextlib.contextmanager
    def pinned(self, directory: Path) -> Iterator[bool]:
        """Keep ``directory`` (an entry with a manifest) from removal while the caller reads it; False if
        it is gone. A kept build environment is needed only while it is copied."""
        fd = self._pin(directory)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def grew(self) -> None:
        """Something was added: trim to the cap at the end of the command."""
        self._grew = True

    def _pin(self, directory: Path) -> int | None:
        """A shared lock on the entry's manifest, held until exit, taken before the entry is read: a removal
        (which needs an exclusive one) has either finished, and the entry is gone, or waits for this
        process. None if there is no manifest, or it was moved aside while the lock was being taken."""
        manifest = directory / MANIFEST
        try:  # never a FIFO's open or a symlink's target: the manifest is read as trust.py allows only later
            fd = os.open(manifest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with contextlib.suppress(OSError):
            opened = os.fstat(fd)
            if stat.S_ISREG(opened.st_mode):
                fcntl.flock(fd, fcntl.LOCK_SH)
                if os.path.samestat(opened, os.lstat(manifest)):
                    return fd
        os.close(fd)
        return None

    def _set_aside(self, directory: Path, why: str) -> None:
        """Move a damaged entry out of the way atomically, then delete it."""
        from pipguard.display import warn

        warn(f"cache entry {directory.name[:12]} is damaged ({why}); rebuilding it")
        with contextlib.suppress(OSError):
            discard(directory, self.tmp)

    # --- writing ---------------------------------------------------------------------------------

    def new_build_dir(self) -> Path:
        """A private directory for a download or build: in ``tmp/``, on the cache's filesystem (publishing
        renames from there), or the system's where the cache is read-only (nothing is published then)."""
        return Path(tempfile.mkdtemp(prefix="build-", dir=None if self.read_only else self.tmp))

    def building(self, key: str) -> None:
        """The build of ``key`` starts now (unless it started already, while pip prepared its metadata):
        its duration goes into the manifest (the time a hit saves)."""
        self._building.setdefault(key, time.monotonic())

    def publish(self, key: str, wheel: Path, source: dict[str, Any]) -> Entry:
        """Move a verified wheel into place as the entry for ``key`` (or return the one already there)."""
        check_wheel(wheel)
        started = self._building.pop(key, None)
        staging = Path(tempfile.mkdtemp(prefix="publish-", dir=self.tmp))
        try:
            staged = staging / wheel.name
            shutil.move(wheel, staged)
            self.policy.share(staging)
            self.policy.share(staged)
            manifest = {
                "layout": LAYOUT_VERSION,
                "key": key,
                "wheel": wheel.name,
                "sha256": file_sha256(staged),
                "size": staged.stat().st_size,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "source": source,
            }
            if started is not None:
                manifest["build_seconds"] = round(time.monotonic() - started, 3)
                self.tally.add("builds")
            _write_synced(staging / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True), self.policy)
            _fsync_path(staged)
            target = self.entry_dir(key)
            self.policy.make_dir(target.parent)
            for _attempt in range(2):
                try:
                    os.rename(staging, target)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                # Occupied: by a good entry (another process published first; keep it), or by a
                # damaged one, which lookup sets aside so the second attempt can take its place.
                if self.lookup(key) is not None:
                    break
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        entry = self.lookup(key)
        if entry is None:
            raise CacheUnusable(f"entry {key[:12]} vanished right after publishing")
        self._grew = True
        return entry

    # --- maintenance (guard cache) ---------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every readable entry, unverified (listing must not hash every wheel)."""
        found: list[Entry] = []
        if not self.wheels.is_dir():
            return found
        for shard in sorted(self.wheels.iterdir()):
            if not shard.is_dir() or shard.is_symlink():
                continue
            for directory in sorted(shard.iterdir()):
                try:
                    manifest = json.loads(trust.read_regular(directory / MANIFEST, MANIFEST_LIMIT))
                    found.append(Entry(directory.name, directory, directory / manifest["wheel"], manifest))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return found

    def env_entries(self) -> list[Entry]:
        """Every kept build environment, unverified, as an entry (its ``wheel`` is its tree)."""
        found: list[Entry] = []
        for manifest in sorted(self.build_envs.glob(f"*/*/*/{MANIFEST}")):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(trust.read_regular(manifest, MANIFEST_LIMIT))
                if isinstance(data, dict):
                    found.append(Entry(str(data.get("key", "")), manifest.parent, manifest.parent / ENV_TREE, data))
        return found

    def remove(self, entry: Entry) -> bool:
        """Remove an entry unless a live process uses it; True if removed."""
        try:
            fd = os.open(entry.directory / MANIFEST, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if not try_lock(fd, exclusive=True):
                return False
            discard(entry.directory, self.tmp)
        finally:
            os.close(fd)
        return True

    def trim(self, max_size: int) -> int | None:
        """Remove the least recently used entries (wheels and build environments) until they take
        ``max_size`` bytes at most; how many went (entries in use stay), or None if another process is
        trimming (it does the same job)."""
        if not self.wheels.is_dir():
            return 0
        try:
            fd = os.open(self.base / TRIM_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, self.policy.file_mode)
        except OSError:
            return None
        try:
            self.policy.share(fd)
            if not try_lock(fd, exclusive=True):
                return None
            entries = sorted(self.entries() + self.env_entries(), key=last_used)
            total = sum(entry_size(entry) for entry in entries)
            evicted = 0
            for entry in entries:
                if total <= max_size:
                    break
                if self.remove(entry):
                    total -= entry_size(entry)
                    evicted += 1
            self.tally.add("evictions", evicted)
            return evicted
        finally:
            os.close(fd)

    def wind_up(self) -> None:
        """At the end of a command: trim to the cap if this command added to the cache (a command that only
        reused entries never walks it), then add this process's counts. Never raises: a cache that cannot
        be trimmed or counted costs nothing but the trim and the counts."""
        with contextlib.suppress(OSError):
            if self._grew and self.max_size is not None:
                self.trim(self.max_size)
            self.tally.flush(self.base, self.policy)

    def old_layouts(self) -> list[tuple[Path, int]]:
        """Layout directories of older pipguards (``v0/`` beside ``v1/``) this one no longer reads, with the
        bytes each takes. Newer ones are left alone: a newer pipguard on this machine still uses them."""
        found = []
        with contextlib.suppress(OSError):
            for child in sorted(self.root.iterdir()):
                version = child.name[1:]
                if child.name.startswith("v") and version.isdigit() and int(version) < LAYOUT_VERSION:
                    if child.is_dir() and not child.is_symlink():
                        found.append((child, _tree_size(child)))
        return found

    def remove_old_layouts(self) -> list[tuple[Path, int]]:
        """Remove what :meth:`old_layouts` finds (moved aside whole first); what was removed."""
        removed = []
        for directory, size in self.old_layouts():
            with contextlib.suppress(OSError):
                discard(directory, self.root)  # the root: it exists even where this layout does not yet
                removed.append((directory, size))
        return removed

    def clean_tmp(self, older_than: float = 3600.0) -> None:
        """Remove leftovers of builds whose process died (kept locked by live builders)."""
        if self.read_only or not self.tmp.is_dir():
            return
        now = time.time()
        for child in self.tmp.iterdir():
            try:
                if now - child.lstat().st_mtime < older_than:
                    continue
                with contextlib.suppress(OSError):
                    if in_use(child):
                        continue
                shutil.rmtree(child, ignore_errors=True)
            except OSError:
                continue
        self.handoffs.sweep(older_than)


@contextlib.contextmanager
def _checking() -> Iterator[None]:
    """A check that cannot even look (no permission to search the cache) makes the cache unusable."""
    try:
        yield
    except OSError as exc:
        raise CacheUnusable(f"cannot check {exc.filename}: {exc.strerror or exc}") from exc


def last_used(entry: Entry) -> float:
    """When a process last looked the entry up to use it (its manifest's mtime; 0 if it cannot say)."""
    try:
        return (entry.directory / MANIFEST).lstat().st_mtime
    except OSError:
        return 0.0


def entry_size(entry: Entry) -> int:
    """The bytes the entry's wheel takes, as its manifest says (what the size cap counts)."""
    size = entry.manifest.get("size", 0)
    return size if isinstance(size, int) else 0


def _touch(path: Path) -> None:
    """Mark a use; a cache this process may not write to just keeps the older time."""
    with contextlib.suppress(OSError):
        os.utime(path, follow_symlinks=False)


def _tree_size(directory: Path) -> int:
    total = 0
    for parent, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def in_use(build_dir: Path) -> bool:
    """A builder keeps ``<dir>/.owner`` locked while it lives."""
    return not try_lock_path(build_dir / ".owner")


def check_wheel(wheel: Path) -> None:
    """A published wheel is a complete zip with a dist-info: refuse anything else (as a CacheUnusable, which
    callers handle, rather than zipfile's own errors, which they would not)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CacheUnusable(f"{wheel.name}: not a complete zip archive ({exc})") from exc
    if bad is not None:
        raise CacheUnusable(f"{wheel.name}: corrupt member {bad}")
    if not any(name.endswith(".dist-info/RECORD") for name in names):
        raise CacheUnusable(f"{wheel.name}: no dist-info RECORD")


def _write_synced(path: Path, text: str, policy: trust.Policy) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        policy.share(handle.fileno())
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
