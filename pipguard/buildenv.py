"""Isolated build environments made once: pip's install of a build's requirements, kept in the cache and
given to each later build as a private copy.

For every sdist it builds in isolation, pip installs the build's requirements (``setuptools>=40.8.0``)
into a new temp prefix by running a second pip, which starts an interpreter, asks the index, downloads
and unpacks: most of a small build. The same requirements mostly resolve to the same files, so pipguard
keeps the result. The first build that needs them lets pip install them, under a lock on their key, and
the prefix is copied into the cache as pip's install left it; the lock is released then. Where every file
there is one its distribution's RECORD names with a hash, the copy is made while the build's first hook
(``get_requires_for_build_wheel``) runs, each file checked against that hash and what the hook adds passed
over (:func:`recorded_tree`); the next hook waits for it. Anything else is copied before the build starts.
Later builds get a copy of that entry in their own prefix, which pip deletes afterwards as it deletes
its own. A copy, never a link: a backend that writes into its environment (patches setuptools, drops a
file into site-packages) changes its own copy only.

pip installs build requirements without compiling them, and each hook interpreter, under
``PYTHONDONTWRITEBYTECODE``, compiles what it imports again: setuptools 84 is 0.25 s of CPU to compile
once, and each of a build's two hooks spends 0.14 s of its 0.27 s compiling it (measured here). Where
other builds wait for the lock while an environment is installed, the installer compiles it in place
before it is kept (:meth:`BuildEnvs.compile_new`, while the finder is asked about it): its own hooks
and every copy import bytecode. A build that waits for nobody keeps it as pip installed it, since its
build alone would wait for a compile that saves it little; the first build that *reuses* such an entry
compiles it, in a thread while that build goes on (:meth:`BuildEnvs.use`), and replaces it with the
compiled one; no build ever waits for that. A build child hands that compile to its parent (gate.py),
whose command outlives it; the parent starts it only while a job is free (guard.py).

Which entry fits is decided in two steps (the pip side is ``_pip/isolation.py``). The key
(``keys.build_env_key``) is what pip's install is given: the requirements' names, the finder's options,
the interpreter. Under one key, each entry records the distributions it holds and the file each came
from; an entry is used only if pip's finder, asked for this build's requirements (their specifiers
included), picks exactly those very files today, so a new release on the index (or a new file in
``--find-links``) makes a new entry, never a stale environment, and builds that ask for
``setuptools>=40.8.0`` and ``setuptools>=70.1`` share the one environment both would install. Old entries of a key are left to the size cap and ``prune``, as wheels are.

Layout (under the store's ``v1/``)::

    buildenvs/<k[:2]>/<key>/<id>/manifest.json   what the entry holds, its files' digest, no URLs
    buildenvs/<k[:2]>/<key>/<id>/tree/           the prefix as pip's install left it

An entry is written in ``tmp/`` and renamed into place whole; the compiled one takes the place of the
uncompiled one only while no other process is copying that (an exclusive lock on its manifest). Each
use checks, while copying, that every directory and file is one no other user can change (trust.py) and
that the tree's sha256 is the one its manifest recorded: a damaged entry is set aside and pip installs
as plain pip would.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import contextvars
import csv
import datetime
import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipguard import gate, keys, locks, settings, trust
from pipguard.discard import discard
from pipguard.flocks import try_lock
from pipguard.errors import MACHINERY_ERRORS, BuildStopped, UntrustedCache
from pipguard.redact import redact
from pipguard.store import ENV_TREE as TREE
from pipguard.store import MANIFEST, MANIFEST_LIMIT, Store

CHUNK = 1 << 20
SWAP_SECONDS = 2.0  # how long a compiled copy waits for the copies of the entry it replaces to end
SWAP_POLL_SECONDS = 0.02
COMPILE_REQUEST = "compile.json"  # a build child's compile, handed to its parent (gate.py)
RECORD_LIMIT = 16 << 20  # a distribution's RECORD file larger than this is not read (the tree is kept as it stands)
SHEBANG_HEAD = 1024  # a script's interpreter is named in its first line (or the second, pip's /bin/sh form)


# Compiles a kept tree's library directories; False if it gave up because the event was set (nothing
# half-compiled is kept).
Compiler = Callable[[Path, list[str], threading.Event], bool]


class Unkeepable(Exception):
    """What pip installed is not a plain tree of files and directories: it is not kept."""


def not_kept(why: str) -> str:
    """The warning when a build environment cannot be kept (or its compiled copy made): the build goes on
    with what pip installed."""
    return f"not keeping the build environment ({why})"


@dataclass(frozen=True)
class EnvEntry:
    """One kept environment: its directory and its manifest (already checked to be this key's)."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def pins(self) -> list[dict[str, str]]:
        """Each distribution it holds: name, version, specifier, file name and the file's identity."""
        return list(self.manifest["pins"])

    def lib_dirs(self, relative: list[str]) -> list[str]:
        """The kept tree's library directories (``relative`` to a prefix, as pip lays one out)."""
        return [str(self.directory / TREE / path) for path in relative]

    @property
    def made_in_this_command(self) -> bool:
        """Whether a process of this command (settings.command_id) made it: its pins are then the finder's
        answers of this very command."""
        return self.manifest.get("command") == settings.command_id()

    @property
    def compiled(self) -> bool:
        """Whether its modules' bytecode is in the tree (entries made before this field always had it)."""
        return bool(self.manifest.get("compiled", True))

    @property
    def label(self) -> str:
        """The distributions, as a line of pip's log names them (``setuptools-84.2.1``)."""
        return ", ".join(f"{pin['name']}-{pin['version']}" for pin in self.pins)


class BuildEnvs:
    """The kept environments of one cache, for one command (guard.CacheGuard makes it)."""

    def __init__(self, store: Store, timeout: float, stopping: Callable[[], bool], awaited: Callable[[], bool]) -> None:
        self.store = store
        self.root = store.build_envs
        self.timeout = timeout
        self._stopping = stopping
        self._awaited = awaited  # another process waits for a build this one holds: never wait then
        self._compiling: list[threading.Thread] = []  # entries being compiled in the background (use)
        self._ending = threading.Event()  # the command ends: a compile still running is given up
        self.compile_tree: Compiler = compile_tree

    @property
    def read_only(self) -> bool:
        return self.store.read_only

    def key_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    # --- reading ---------------------------------------------------------------------------------

    def candidates(self, key: str) -> list[EnvEntry]:
        """The readable entries of ``key``, most recently used first (nothing is pinned or copied yet)."""
        key_dir = self.key_dir(key)
        for part in (self.root, key_dir.parent, key_dir):
            try:
                trust.check_directory(part, self.store.policy)
            except FileNotFoundError:
                return []
            except UntrustedCache as exc:
                self._set_aside(part, str(exc))
                return []
        found = []
        for directory in sorted(key_dir.iterdir()):
            read = self._read(directory, key)
            if read is not None:
                found.append(read)
        return [entry for _used, entry in sorted(found, key=lambda pair: -pair[0])]

    def _read(self, directory: Path, key: str) -> tuple[float, EnvEntry] | None:
        """The entry in ``directory`` and when it was last used; None if it is gone or damaged (set aside)."""
        try:
            trust.check_directory(directory, self.store.policy)
            manifest = json.loads(trust.read_regular(directory / MANIFEST, MANIFEST_LIMIT))
            _check_manifest(manifest, key)
            return os.lstat(directory / MANIFEST).st_mtime, EnvEntry(directory, manifest)
        except FileNotFoundError:
            return None  # removed or being removed meanwhile
        except (OSError, ValueError, KeyError, TypeError, UntrustedCache) as exc:
            self._set_aside(directory, f"{type(exc).__name__}: {exc}")
            return None

    def use(self, entry: EnvEntry, prefix: Path, lib_paths: list[str], complain: Callable[[str], None]) -> bool:
        """Copy ``entry`` into ``prefix`` (which must not exist yet); False, with nothing left at ``prefix``,
        if the entry was removed meanwhile or is damaged (then it is set aside). An entry not compiled yet
        has its ``lib_paths`` compiled (with CPU no build wants) and is replaced, in a thread, off the
        build's way (:meth:`compile`); a build child hands that to its parent instead, whose command
        outlives it (gate.py); what fails there goes to ``complain``."""
        with self.store.pinned(entry.directory) as there:
            if not there:
                self._await_swap(entry.manifest["key"])
                replaced = self._compiled_in_place_of(entry)
                return replaced is not None and self.use(replaced, prefix, lib_paths, complain)
            try:
                digest = _copy_tree(entry.directory / TREE, prefix, self.store.policy, _shebang_fix(entry.manifest))
                if digest != entry.manifest["tree_sha256"]:
                    # Its compiled copy may have taken its place after the caller read it: then what was
                    # copied is that entry's, and must match that entry's manifest.
                    replaced = self._compiled_in_place_of(entry)
                    if replaced is None or digest != replaced.manifest["tree_sha256"]:
                        raise ValueError("its files do not match its manifest")
                    entry = replaced
            except (OSError, ValueError, UntrustedCache, Unkeepable) as exc:
                shutil.rmtree(prefix, ignore_errors=True)
                if isinstance(exc, FileNotFoundError) and not entry.directory.exists():
                    return False  # removed (prune, the cap) while this copied it
                self._set_aside(entry.directory, f"{type(exc).__name__}: {exc}")
                return False
            with contextlib.suppress(OSError):
                os.utime(entry.directory / MANIFEST, follow_symlinks=False)  # last use, for the size cap
        if not entry.compiled and not self.read_only and not self._stopping():
            request = {"directory": str(entry.directory), "key": entry.manifest["key"], "lib_paths": lib_paths}
            if not gate.hand_back(COMPILE_REQUEST, request):
                self.compile(entry, lib_paths, complain)
        return True

    def _compiled_in_place_of(self, entry: EnvEntry) -> EnvEntry | None:
        """The compiled copy of ``entry`` that took its place meanwhile (:meth:`_compile`), if that is what
        its directory holds now."""
        read = self._read(entry.directory, entry.manifest["key"])
        if read is None or read[1].pins != entry.pins or not read[1].compiled:
            return None
        return read[1]

    def _await_swap(self, key: str) -> None:
        """An entry found gone may be between the removal of its uncompiled copy and the rename of its
        compiled one into the same place (:meth:`publish`); the process doing that holds the key's compile
        lock until the rename is done (:meth:`_compile`). Wait for that lock, at most ``SWAP_SECONDS``, so
        that a copy made meanwhile takes the compiled entry instead of falling back to pip's install."""
        try:
            fd = os.open(self.store.lock_path(f"{key}.compile"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return  # never compiled: nothing is being swapped
        try:
            deadline = time.monotonic() + SWAP_SECONDS
            while not try_lock(fd) and time.monotonic() < deadline and not self._stopping():
                time.sleep(SWAP_POLL_SECONDS)
        finally:
            os.close(fd)

    def compile_new(self, prefix: Path, lib_paths: list[str]) -> bool:
        """Compile the environment pip just installed into ``prefix``, in place, before it is kept: other
        builds wait for it (the module says why that pays); False if it was given up (the command ends),
        which may leave some modules compiled, as an interpreter would have left them."""
        return self.compile_tree(prefix, lib_paths, self._ending)

    def compile(self, entry: EnvEntry, lib_paths: list[str], complain: Callable[[str], None]) -> None:
        """Compile ``entry`` in a thread and put the compiled copy in its place (see :meth:`use`)."""
        thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._compile, entry, lib_paths, complain),
            name="pipguard-compile-build-env",
            daemon=True,  # an interrupted command must not wait for it at exit (its compile is stopped then)
        )
        thread.start()
        self._compiling.append(thread)

    def compile_handed_back(self, work: Path, complain: Callable[[str], None]) -> None:
        """The compile a build child handed back in ``work`` (:meth:`use`), if the entry still needs it."""
        request = gate.handed_back(work, COMPILE_REQUEST)
        if not isinstance(request, dict) or self.read_only or self._stopping():
            return
        try:
            directory, key, lib_paths = Path(request["directory"]), str(request["key"]), list(request["lib_paths"])
            if directory.parent != self.key_dir(key) or not all(isinstance(path, str) for path in lib_paths):
                return  # not an entry of this cache
        except (KeyError, TypeError, ValueError):
            return
        read = self._read(directory, key)
        if read is not None and not read[1].compiled:
            self.compile(read[1], lib_paths, complain)

    # --- the lock --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self, key: str, requirements: list[str]) -> Iterator[locks.Holding | None]:
        """The lock of ``key`` while pip installs into a new environment; None if this process goes on
        without it: the wait timed out (locks.py warns), or another process waits for a build this one
        holds (waiting here could close a circle of waits, and that process must not wait longer for an
        environment than its install takes). Either way pip installs, as plain pip would."""
        gave_way = False

        def stop() -> bool:
            nonlocal gave_way
            gave_way = gave_way or self._awaited()
            return gave_way or self._stopping()

        subject = locks.Subject("build", key, "build environment", "", redact(", ".join(requirements)))
        lock_path, record_dir = self.store.lock_path(key), self.store.record_dir(key)
        with contextlib.ExitStack() as stack:
            try:
                holding = stack.enter_context(locks.hold(lock_path, record_dir, subject, self.timeout, "installing", stop))
            except BuildStopped:
                if not gave_way:
                    raise
                from pipguard.display import info

                info(f"not waiting for the {subject.what}: another process waits for this one; installing it here")
                yield None
                return
            if holding.wait_started is not None:
                self.store.tally.add("waits")
                self.store.tally.add("waited_seconds", holding.waited)
            yield holding if holding.locked else None

    # --- writing ---------------------------------------------------------------------------------

    def _compile(self, entry: EnvEntry, lib_paths: list[str], complain: Callable[[str], None]) -> None:
        """Compile a copy of ``entry`` and put it in the entry's place; one process at a time does this for
        an entry (the others go on with it as it is), and it gives up rather than wait for anyone, the
        command's end included: the entry stays as it is, and a later reuse compiles it."""
        key = entry.manifest["key"]
        raw: Path | None = None
        lock = -1
        try:
            lock = os.open(self.store.lock_path(f"{key}.compile"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, self.store.policy.file_mode)
            self.store.policy.share(lock)  # a team's: any member may compile it next
            if not try_lock(lock, exclusive=True):
                return  # another process compiles it
            raw = Path(tempfile.mkdtemp(prefix="env-compile-", dir=self.store.tmp))
            with self.store.pinned(entry.directory) as there:
                if not there or _copy_tree(entry.directory / TREE, raw / TREE, self.store.policy, None) != entry.manifest["tree_sha256"]:
                    return  # gone, or replaced meanwhile (use() sets a damaged one aside)
            if self.compile_tree(raw / TREE, lib_paths, self._ending) and not self._stopping():
                self.publish(key, raw / TREE, entry.pins, compiled=True, executable=entry.manifest["executable"], replacing=entry)
        except (*MACHINERY_ERRORS, Unkeepable) as exc:
            complain(f"{type(exc).__name__}: {exc}")
        finally:
            if raw is not None:
                shutil.rmtree(raw, ignore_errors=True)
            if lock >= 0:
                os.close(lock)

    def finish(self) -> None:
        """The command's end (before the cache is trimmed): give up the compiles still running, and wait
        for their threads to clean up."""
        self._ending.set()
        while self._compiling:
            self._compiling.pop().join()

    def publish(
        self, key: str, prefix: Path, pins: list[dict[str, str]], compiled: bool = False,
        executable: str = sys.executable, replacing: EnvEntry | None = None, recorded: Recorded | None = None,
    ) -> None:
        """Keep a copy of the prefix pip's install just made as an entry of ``key``: before any build code
        ran in it, or, with ``recorded``, what that names, as it was then (:func:`recorded_tree`). An entry
        with the same distributions already there is kept instead, unless this is the compiled copy
        ``replacing`` it, which takes its place while no other process is copying it."""
        policy = self.store.policy
        staging = Path(tempfile.mkdtemp(prefix="env-", dir=self.store.tmp))
        try:
            policy.share(staging)
            files, size, digest = _snapshot(prefix, staging / TREE, policy, recorded)
            manifest = {
                "layout": keys.LAYOUT,
                "key": key,
                "pins": pins,
                "executable": executable,
                "compiled": compiled,
                "command": settings.command_id(),  # the finder picked these pins in this command
                "files": files,
                "size": size,
                "tree_sha256": digest,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            written = os.open(staging / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, policy.file_mode)
            with os.fdopen(written, "w", encoding="utf-8") as handle:
                policy.share(handle.fileno())
                handle.write(json.dumps(manifest, indent=1, sort_keys=True))
            target = self.key_dir(key) / keys.digest(pins)[:16]
            policy.make_dir(target.parent)
            if replacing is not None and not self._set_free(replacing.directory):
                return  # in use: it stays as it is, and a later reuse compiles it
            try:
                os.rename(staging, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                return  # another process kept the same distributions first
            self.store.grew()
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _set_free(self, directory: Path) -> bool:
        """Remove an entry once no other process is copying it (a copy holds its manifest's lock for a
        tenth of a second); False if one still is after ``SWAP_SECONDS``."""
        try:
            fd = os.open(directory / MANIFEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return True  # removed meanwhile: the place is free
        try:
            deadline = time.monotonic() + SWAP_SECONDS
            while not try_lock(fd, exclusive=True):
                if time.monotonic() > deadline or self._stopping():
                    return False
                time.sleep(SWAP_POLL_SECONDS)
            discard(directory, self.store.tmp)
        finally:
            os.close(fd)
        return True

    def _set_aside(self, directory: Path, why: str) -> None:
        from pipguard.display import warn

        warn(f"build environment {directory.name[:12]} in the cache is damaged ({why}); not using it")
        with contextlib.suppress(OSError):
            discard(directory, self.store.tmp)


def _check_manifest(manifest: Any, key: str) -> None:
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        raise ValueError("manifest belongs to another key")
    pins = manifest["pins"]
    if not isinstance(pins, list) or not pins or not all(isinstance(pin, dict) for pin in pins):
        raise ValueError("manifest names no distributions")
    for pin in pins:
        for field in ("name", "version", "specifier", "link"):
            if not isinstance(pin.get(field), str):
                raise ValueError(f"a distribution without {field}")
    if not isinstance(manifest["tree_sha256"], str) or not isinstance(manifest["executable"], str):
        raise ValueError("manifest without a digest")
    if not isinstance(manifest.get("compiled", True), bool):
        raise ValueError("manifest with a bad compiled flag")


# --- trees: walked, copied and hashed in one pass ----------------------------------------------------


def _shebang_fix(manifest: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """Scripts name the interpreter of the environment that installed them; another environment of the same
    interpreter build reuses the entry, and its copy names its own."""
    made_by = manifest["executable"]
    return None if made_by == sys.executable else (os.fsencode(made_by), os.fsencode(sys.executable))


@dataclass(frozen=True)
class Recorded:
    """A prefix as pip's install left it, read before any build code ran there: its directories, and its
    files with whether each is executable and its sha256 (as its distribution's RECORD gives it)."""

    dirs: frozenset[str]
    files: dict[str, tuple[bool, str]]

    def names(self, relative: str) -> bool:
        return relative in self.files or relative in self.dirs


def recorded_tree(prefix: Path, lib_paths: list[str]) -> Recorded | None:
    """The tree at ``prefix``, if every file in it is one a RECORD file of its distributions names with a
    hash (or such a RECORD file): then it may be kept while a build already runs there, since each file it
    copies is checked against that hash (:func:`_snapshot`), and what the build adds is passed over. None
    for anything else, which is copied before the build starts, whole (``publish`` without ``recorded``).

    Walking the tree and reading its RECORD files is a few milliseconds; copying it is 35 to 120 ms here
    (file creation), which no longer delays the build's first hook."""
    dirs: set[str] = set()
    executable: dict[str, bool] = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(prefix, relative) if relative else prefix) as scan:
            for child in scan:
                path = f"{relative}/{child.name}" if relative else child.name
                if child.is_dir(follow_symlinks=False):
                    dirs.add(path)
                    pending.append(path)
                elif child.is_file(follow_symlinks=False):
                    executable[path] = bool(child.stat(follow_symlinks=False).st_mode & 0o111)
                else:
                    return None
    hashes: dict[str, str] = {}
    for lib in sorted(set(lib_paths)):
        for path in [name for name in executable if _is_record(name, lib)]:
            listed = _read_record(prefix, lib, path)
            if listed is None:
                return None
            hashes.update(listed)
    if set(hashes) != set(executable):
        return None
    return Recorded(frozenset(dirs), {path: (executable[path], hashes[path]) for path in executable})


def _is_record(path: str, lib: str) -> bool:
    head, _, name = path.rpartition("/")
    return name == "RECORD" and head.endswith(".dist-info") and os.path.dirname(head) == lib


def _read_record(prefix: Path, lib: str, record: str) -> dict[str, str] | None:
    """The files a RECORD file names (relative to the prefix) and their sha256, itself included (its own
    line has no hash); None for a RECORD that names a file without a sha256 or outside the prefix."""
    content = trust.read_regular(prefix / record, RECORD_LIMIT)
    if len(content) >= RECORD_LIMIT:
        return None
    try:
        return _recorded_hashes(record, lib, content)
    except (ValueError, csv.Error):  # not UTF-8, not CSV, not base64: not a RECORD this can check against
        return None


def _recorded_hashes(record: str, lib: str, content: bytes) -> dict[str, str] | None:
    listed = {record: hashlib.sha256(content).hexdigest()}
    for row in csv.reader(io.StringIO(content.decode("utf-8"))):
        if not row:
            continue
        path = os.path.normpath(os.path.join(lib, row[0]))
        if path.startswith("..") or os.path.isabs(path):
            return None
        if path == record:
            continue
        algorithm, _, value = (row[1] if len(row) > 1 else "").partition("=")
        if algorithm != "sha256" or not value:
            return None
        listed[path] = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    return listed


def _snapshot(source: Path, target: Path, policy: trust.Policy, recorded: Recorded | None = None) -> tuple[int, int, str]:
    """Copy the tree pip installed into the cache, this user's (or a team's: PIPGUARD_CACHE_GROUP) and
    nobody else's to change: (files, bytes, digest). With ``recorded``, only what it names is copied, and
    only as it was then: build code may be running in ``source`` meanwhile (:func:`recorded_tree`)."""
    files = size = 0
    digest = hashlib.sha256()
    executable, plain = (0o700, 0o600) if policy.group is None else (0o770, 0o660)

    def copy(relative: str, src: int, info: os.stat_result) -> None:
        nonlocal files, size
        files += 1
        size += info.st_size
        mode = executable if info.st_mode & 0o111 else plain
        if recorded is None:
            _copy_file(src, info, os.path.join(target, relative), mode, digest, relative, None, policy.group)
            return
        content = hashlib.sha256()
        _copy_file(src, info, os.path.join(target, relative), mode, digest, relative, None, policy.group, content)
        if (bool(info.st_mode & 0o111), content.hexdigest()) != recorded.files.get(relative):
            raise Unkeepable(f"{relative} changed since pip installed it")

    wanted = None if recorded is None else recorded.names
    _walk(str(source), str(target), copy, 0o700, None, policy, wanted)
    if recorded is not None and files != len(recorded.files):
        raise Unkeepable("files pip installed are gone")
    return files, size, digest.hexdigest()


def _copy_tree(source: Path, target: Path, policy: trust.Policy, fix: tuple[bytes, bytes] | None) -> str:
    """Copy a kept tree into a build's prefix; the digest of what was read (to compare with the manifest)."""
    digest = hashlib.sha256()

    def copy(relative: str, src: int, info: os.stat_result) -> None:
        _copy_file(src, info, os.path.join(target, relative), 0o755 if info.st_mode & 0o111 else 0o644, digest, relative, fix, None)

    def check(path: str, info: os.stat_result) -> None:
        trust.check_private(Path(path), info, policy)

    _walk(str(source), str(target), copy, 0o777, check, None)
    return digest.hexdigest()


def _walk(
    source: str,
    target: str,
    copy: Callable[[str, int, os.stat_result], None],
    dir_mode: int,
    check: Callable[[str, os.stat_result], None] | None,
    policy: trust.Policy | None,
    wanted: Callable[[str], bool] | None = None,
) -> None:
    """Every directory and regular file below ``source``, in a fixed order (the digest depends on it);
    anything else (a symlink, a FIFO) is :class:`Unkeepable`. Directories made are ``policy``'s if given;
    with ``wanted``, what it does not want (by relative path) is passed over. Paths are plain strings: a
    tree is hundreds of files, and this is on the way of every build."""
    os.mkdir(target, dir_mode)
    if policy is not None:
        policy.share(Path(target))
    pending = [""]
    while pending:
        relative = pending.pop()
        directory = os.path.join(source, relative) if relative else source
        if check is not None:
            check(directory, os.lstat(directory))
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda child: child.name)
        for child in children:
            path = f"{relative}/{child.name}" if relative else child.name
            if wanted is not None and not wanted(path):
                continue
            if child.is_dir(follow_symlinks=False):
                os.mkdir(os.path.join(target, path), dir_mode)
                if policy is not None:
                    policy.share(Path(target, path))
                pending.append(path)
            elif child.is_file(follow_symlinks=False):
                fd = trust.open_regular(child.path)
                try:
                    info = os.fstat(fd)
                    if check is not None:
                        check(child.path, info)
                    copy(path, fd, info)
                finally:
                    os.close(fd)
            else:
                raise Unkeepable(f"{path} is neither a file nor a directory")


def _copy_file(
    src: int,
    info: os.stat_result,
    target: str,
    mode: int,
    digest: Any,
    relative: str,
    fix: tuple[bytes, bytes] | None,
    group: int | None,
    content: Any = None,
) -> None:
    """Copy one file, adding its name, kind and content to ``digest`` (and its content alone to ``content``,
    if given); keep its mtime (compiled modules are valid only for the source's), fix a script's
    interpreter line if asked, give it ``group`` (a team's)."""
    digest.update(f"\0{relative}\0{'x' if info.st_mode & 0o111 else '-'}\0".encode())
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        if group is not None:  # the team's group, and its mode whatever the umask
            os.fchown(out, -1, group)
            os.fchmod(out, mode)
        first = True
        while block := os.read(src, min(CHUNK, info.st_size + 1)):  # no 1 MB buffer for a 2 kB file
            digest.update(block)
            if content is not None:
                content.update(block)
            if first and fix is not None and block.startswith(b"#!"):
                head, rest = block[:SHEBANG_HEAD], block[SHEBANG_HEAD:]
                lines = head.split(b"\n", 2)
                lines[:2] = [line.replace(fix[0], fix[1]) for line in lines[:2]]
                block = b"\n".join(lines) + rest
            first = False
            view = memoryview(block)
            while view:
                view = view[os.write(out, view):]
        os.utime(out, ns=(info.st_atime_ns, info.st_mtime_ns))
    finally:
        os.close(out)


# --- compiling a kept tree ------------------------------------------------------------------------


def compile_tree(tree: Path, lib_paths: list[str], ending: threading.Event) -> bool:
    """Compile an environment's ``lib_paths`` (pip installs build requirements with ``--no-compile``):
    a new one that other builds wait for, or a kept one at its first reuse (the module says when and why):
    every build that copies it, and each of its hook interpreters, would otherwise compile setuptools again
    (each time, under ``PYTHONDONTWRITEBYTECODE``). The bytecode checks its source's size and mtime, which
    the copies keep; the interpreter that compiles is the one every build of this key runs, isolated
    (``-I``: ``PYTHONPYCACHEPREFIX`` would put the bytecode elsewhere). It runs at the lowest priority, so
    that the builds' own work goes first, and is given up (False) when ``ending`` is set."""
    directories = [str(tree / relative) for relative in lib_paths if (tree / relative).is_dir()]
    if not directories:
        return True
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", _COMPILE_PROGRAM, *directories],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with _compiles_lock:
        if not _compiles:
            atexit.register(_stop_compiles)
        _compiles.add(proc)
    try:
        while proc.poll() is None:
            if ending.wait(COMPILE_POLL_SECONDS):
                proc.kill()
                return False
    finally:
        proc.wait()
        with _compiles_lock:
            _compiles.discard(proc)
    return proc.returncode == 0


_compiles: set[subprocess.Popen[bytes]] = set()
_compiles_lock = threading.Lock()


def _stop_compiles() -> None:
    """At exit (an interrupt, a stop: the command's end was never reached), no compile outlives pipguard."""
    with _compiles_lock:
        running = list(_compiles)
    for proc in running:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


# A module that does not compile (a vendored file for another Python) is skipped, as compileall skips it.
_COMPILE_PROGRAM = (
    "import os, sys\nos.nice(19)\nimport compileall\n"
    "for directory in sys.argv[1:]:\n    compileall.compile_dir(directory, quiet=2, workers=1)\n"
)
COMPILE_POLL_SECONDS = 0.05
