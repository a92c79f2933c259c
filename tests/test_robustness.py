"""Robustness: what a user relies on when things go wrong around the locked cache.

Killed and interrupted processes, damaged or unusable caches, lock timeouts, hostile cache contents,
credentials, many processes at once, and bad input. Every test runs real pipguard and pip processes.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PIPGUARD_WARNING as WARNING
from conftest import Dists, World
from support.hooklog import read_hooks
from support.index import IndexServer
from support.processes import (
    parent_pid,
    pid_alive,
    Crew,
    Gate,
    holder_pids,
    install_args,
    install_cmd,
    record_pids,
    status,
    wait_for,
    waiting_pids,
)
from support.projects import backend

from pipguard.store import Store, in_use

# --- helpers -----------------------------------------------------------------------------------------


def build_pids(world: World, project: str) -> list[int]:
    return [r["pid"] for r in read_hooks(world.hook_log) if r["hook"] == "build_wheel" and r["project"] == project]


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in Store(cache).wheels.glob("*/*"))


def entry_problems(cache: Path) -> list[str]:
    """Every entry directory must hold a manifest.json and the wheel it names (no partial entries)."""
    problems = []
    wheels = Store(cache).wheels
    try:
        shards = os.listdir(wheels)
    except OSError:
        return []
    for shard in shards:
        try:
            keys = os.listdir(wheels / shard)
        except OSError:
            continue
        for key in keys:
            directory = wheels / shard / key
            try:
                manifest = json.loads((directory / "manifest.json").read_text())
            except FileNotFoundError:
                problems.append(f"{directory}: no manifest.json")
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"{directory}: unreadable manifest ({exc})")
                continue
            if not (directory / str(manifest.get("wheel"))).is_file():
                problems.append(f"{directory}: manifest names {manifest.get('wheel')!r}, which is missing")
    return problems


class EntryWatcher(threading.Thread):
    """Scans the cache continuously while processes run: a partial entry must never be visible."""

    def __init__(self, cache: Path) -> None:
        super().__init__(daemon=True)
        self.cache = cache
        self.problems: set[str] = set()
        self.saw_entry = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.problems.update(entry_problems(self.cache))
            self.saw_entry = self.saw_entry or bool(entries(self.cache))
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def verified(entry: Path) -> bool:
    """The entry's wheel matches its manifest (what pipguard itself checks before using it)."""
    import hashlib

    manifest = json.loads((entry / "manifest.json").read_text())
    wheel = entry / manifest["wheel"]
    return wheel.is_file() and hashlib.sha256(wheel.read_bytes()).hexdigest() == manifest["sha256"]


def tree_snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every path under ``root`` with its mode and content (or link target)."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = (info.st_mode, os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(root))] = (info.st_mode, path.read_bytes())
        else:
            found[str(path.relative_to(root))] = (info.st_mode, "dir")
    return found


def evil_wheel(directory: Path, name: str) -> Path:
    """A well-formed wheel of ``name`` 1.0 whose VERSION is 'evil': installing it would be visible."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "version": "1.0", "dependencies": [], "modules": 1}
    files = {f"{name}/__init__.py": f"NAME = {name!r}\nVERSION = 'evil'\n".encode()}
    return directory / backend()._write_wheel(str(directory), meta, files)


# --- 1. a holder killed mid-build --------------------------------------------------------------------


def test_holder_killed_mid_build_a_waiter_takes_over(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """kill -9 of a building job: a waiter builds instead, everyone installs, no half entry, no live leftovers."""
    venvs = [world.venv(f"v{i}") for i in range(3)]
    watcher = EntryWatcher(world.cache)
    watcher.start()
    try:
        holder = crew.start(
            install_cmd(world, venvs[0], dists.index.url, "slowpkg"),
            "holder",
            gate.env,
            own_group=True,
        )
        (killed_build,) = gate.wait_started(what="the holder's build to reach build_wheel")
        waiters = [
            crew.start(install_cmd(world, v, dists.index.url, "slowpkg"), f"waiter{i}", gate.env)
            for i, v in enumerate(venvs[1:])
        ]
        wait_for(
            lambda: waiting_pids(world) >= {w.popen.pid for w in waiters},
            "both waiters to queue behind the holder",
            explain=lambda: json.dumps(status(world)),
        )
        assert holder_pids(world) == {holder.popen.pid}
        os.killpg(holder.popen.pid, signal.SIGKILL)  # the job: pipguard, its pip wheel child, the backend
        assert holder.wait().returncode == -signal.SIGKILL
        taker = wait_for(
            lambda: gate.started() - {killed_build},
            "a waiter to take the build over",
            explain=lambda: "\n".join(w.stderr_so_far() for w in waiters),
        )
        assert len(taker) == 1
        wait_for(lambda: not pid_alive(killed_build), "the killed build backend to be gone")
        gate.open()
        results = [w.wait() for w in waiters]
    finally:
        watcher.stop()

    assert [r.returncode for r in results] == [0, 0], [r.output for r in results]
    for venv in venvs[1:]:
        assert world.module_version(venv, "slowpkg") == "1.0"
    # Two builds started (the killed one, the taker's); only the taker's could complete.
    assert sorted(build_pids(world, "slowpkg")) == sorted([killed_build, *taker])
    assert sum("built slowpkg" in r.stderr for r in results) == 1, [r.stderr for r in results]
    assert sum("reusing the wheel" in r.stderr for r in results) == 1, [r.stderr for r in results]
    assert watcher.saw_entry
    assert not watcher.problems, sorted(watcher.problems)
    (entry,) = entries(world.cache)
    assert verified(entry)
    # The dead build's directory may remain, but no live process owns it, so cleaning removes it.
    leftovers = list(world.store.tmp.glob("build-*"))
    assert not [d for d in leftovers if in_use(d)], leftovers
    Store(world.cache).clean_tmp(older_than=0)
    assert not list(world.store.tmp.glob("build-*"))
    assert status(world)["locks"] == []


# --- 2. interrupted processes ------------------------------------------------------------------------


def test_sigterm_to_a_waiter_leaves_the_others_going(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """A waiter stopped by SIGTERM exits 1 like an interrupted pip and takes its record with it."""
    venvs = [world.venv(f"v{i}") for i in range(3)]
    holder = crew.start(install_cmd(world, venvs[0], dists.index.url, "slowpkg"), "holder", gate.env)
    gate.wait_started(what="the holder's build to reach build_wheel")
    stopped, other = (
        crew.start(install_cmd(world, v, dists.index.url, "slowpkg"), f"w{i}", gate.env) for i, v in enumerate(venvs[1:])
    )
    wait_for(
        lambda: waiting_pids(world) >= {stopped.popen.pid, other.popen.pid},
        "both waiters to queue",
    )
    assert stopped.popen.pid in record_pids(world.cache)

    stopped.popen.send_signal(signal.SIGTERM)
    result = stopped.wait(timeout=60)
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    assert stopped.popen.pid not in record_pids(world.cache)  # removed by the process itself, not by a reader
    assert holder.popen.poll() is None and other.popen.poll() is None
    assert other.popen.pid in waiting_pids(world)
    assert stopped.popen.pid not in waiting_pids(world)

    gate.open()
    for proc in (holder, other):
        done = proc.wait()
        assert done.returncode == 0, done.output
    assert build_pids(world, "slowpkg") and len(build_pids(world, "slowpkg")) == 1
    assert world.module_version(venvs[0], "slowpkg") == world.module_version(venvs[2], "slowpkg") == "1.0"
    assert not list(world.site_packages(venvs[1]).glob("slowpkg*"))
    assert record_pids(world.cache) == set()


def test_sigint_to_the_holder_hands_the_build_on(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """Ctrl-C to a building process: exit 1 as pip's, its record and lock gone at once, a waiter builds."""
    venvs = [world.venv(f"v{i}") for i in range(2)]
    holder = crew.start(install_cmd(world, venvs[0], dists.index.url, "slowpkg"), "holder", gate.env)
    (holder_build,) = gate.wait_started(what="the holder's build to reach build_wheel")
    assert parent_pid(holder_build) == holder.popen.pid  # pip runs the backend itself, as plain pip does
    waiter = crew.start(install_cmd(world, venvs[1], dists.index.url, "slowpkg"), "waiter", gate.env)
    wait_for(lambda: waiter.popen.pid in waiting_pids(world), "the waiter to queue")

    holder.popen.send_signal(signal.SIGINT)  # to pipguard alone, as a supervisor would send it
    interrupted = holder.wait(timeout=60)
    assert interrupted.returncode == 1, interrupted.output
    assert "Traceback" not in interrupted.output
    assert holder.popen.pid not in record_pids(world.cache)

    taker = wait_for(
        lambda: gate.started() - {holder_build},
        "the waiter to take the build over",
        explain=waiter.stderr_so_far,
    )
    assert len(taker) == 1
    gate.open()
    done = waiter.wait()
    assert done.returncode == 0, done.output
    assert world.module_version(venvs[1], "slowpkg") == "1.0"
    assert not list(world.site_packages(venvs[0]).glob("slowpkg*"))
    (entry,) = entries(world.cache)
    assert verified(entry)


# --- 3. a damaged cache ------------------------------------------------------------------------------


def _truncate(entry: Path) -> None:
    wheel = next(entry.glob("*.whl"))
    data = wheel.read_bytes()
    wheel.write_bytes(data[: len(data) // 2])


def _garble_manifest(entry: Path) -> None:
    (entry / "manifest.json").write_text('{"wheel": "alpha-1.0-py3-none-any.whl", "sha2')


def _delete_wheel(entry: Path) -> None:
    next(entry.glob("*.whl")).unlink()


def _delete_manifest(entry: Path) -> None:
    (entry / "manifest.json").unlink()


def _swap_wheel(entry: Path) -> None:
    """Replace the wheel with another well-formed one (same name): only the sha256 tells them apart."""
    wheel = next(entry.glob("*.whl"))
    evil = evil_wheel(entry.parent.parent.parent / "evil", "alpha")
    shutil.copyfile(evil, wheel)


@pytest.mark.parametrize(
    "damage",
    [_truncate, _garble_manifest, _delete_manifest, _delete_wheel, _swap_wheel],
    ids=[
        "truncated",
        "garbled-manifest",
        "deleted-manifest",
        "deleted-wheel",
        "swapped-wheel",
    ],
)
def test_a_damaged_entry_is_rebuilt_never_installed(world: World, dists: Dists, damage: Callable[[Path], None]) -> None:
    """Damage to a cached entry costs a rebuild and a warning, never a failed or wrong install."""
    first = world.venv("first")
    done = world.pipguard(*install_args(first, dists.index.url, "alpha"))
    assert done.returncode == 0, done.output
    (entry,) = entries(world.cache)
    damage(entry)

    second = world.venv("second")
    again = world.pipguard(*install_args(second, dists.index.url, "alpha"), env=world.another_job("second"))
    assert again.returncode == 0, again.output
    assert "Traceback" not in again.output
    damaged = [line for line in again.warnings() if re.match(rf"{WARNING} cache entry \S+ is damaged", line)]
    assert len(damaged) == 1, again.stderr
    assert again.warnings() == damaged, again.stderr
    assert world.hooks("build_wheel", "alpha") == 2
    assert world.module_version(second, "alpha") == "1.0"
    (rebuilt,) = entries(world.cache)
    assert verified(rebuilt)
    assert not entry_problems(world.cache)
    # Repaired for good: the next install uses the rebuilt entry.
    third = world.venv("third")
    reused = world.pipguard(*install_args(third, dists.index.url, "alpha"), env=world.another_job("third"))
    assert reused.returncode == 0 and reused.warnings() == [], reused.output
    assert world.hooks("build_wheel", "alpha") == 2


# --- 4. an unusable cache ----------------------------------------------------------------------------


def test_cache_dir_below_a_regular_file_means_plain_pip(world: World, dists: Dists) -> None:
    """ENOTDIR for the cache: one warning, then exactly what plain pip does; nothing is left behind."""
    blocker = world.root / "blocker"
    blocker.write_text("not a directory\n")
    private_tmp = world.root / "tmpdir"
    private_tmp.mkdir()
    env = {"PIPGUARD_CACHE_DIR": str(blocker / "cache"), "TMPDIR": str(private_tmp)}
    venv = world.venv("v")
    before = sorted(p.name for p in world.root.iterdir())

    result = world.pipguard(*install_args(venv, dists.index.url, "alpha", "beta"), env=env)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert len(result.warnings()) == 1, result.stderr
    assert "Successfully installed alpha-1.0 beta-1.0" in result.stdout
    assert world.module_version(venv, "alpha") == world.module_version(venv, "beta") == "1.0"
    assert world.hooks("build_wheel", "alpha") == world.hooks("build_wheel", "beta") == 1
    assert blocker.read_text() == "not a directory\n"
    assert list(private_tmp.iterdir()) == []
    after = sorted(p.name for p in world.root.iterdir())
    assert set(after) - set(before) <= {"hooks.jsonl", "pip-cache"}, after

    for command in (
        ["status"],
        ["status", "--json"],
        ["cache", "info"],
        ["cache", "list"],
        ["cache", "purge"],
    ):
        shown = world.pipguard("guard", *command, env=env)
        assert "Traceback" not in shown.output, (command, shown.output)
        assert shown.returncode == 0, (command, shown.output)


@pytest.fixture
def mounts() -> Iterator[Callable[..., Path]]:
    """Mount a tmpfs (root only); skip with the reason when this machine does not allow it."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command on this machine")
    probe = tempfile.mkdtemp(prefix="pipguard-mount-probe-")
    tried = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
        check=False,
        capture_output=True,
        text=True,
    )
    if tried.returncode != 0:
        os.rmdir(probe)
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {tried.stderr.strip()}")
    subprocess.run(["umount", probe], check=True)
    os.rmdir(probe)
    mounted: list[Path] = []

    def mount(where: Path, options: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_read_only_cache_means_plain_pip(world: World, dists: Dists, mounts: Callable[..., Path]) -> None:
    """A cache on a read-only filesystem: one warning, the install works, the cache is untouched."""
    mounts(world.cache, "size=4m,mode=0700")
    first = world.venv("first")
    assert world.pipguard(*install_args(first, dists.index.url, "alpha")).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(world.cache)], check=True)
    before = tree_snapshot(world.cache)

    second = world.venv("second")
    result = world.pipguard(*install_args(second, dists.index.url, "alpha", "beta"))
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert len(result.warnings()) == 1, result.stderr
    assert world.module_version(second, "alpha") == world.module_version(second, "beta") == "1.0"
    assert tree_snapshot(world.cache) == before


def test_full_cache_disk_means_plain_pip(world: World, dists: Dists, mounts: Callable[..., Path]) -> None:
    """No space left on the cache's filesystem: one warning, the install works, nothing half-written stays."""
    mounts(world.cache, "size=256k,mode=0700")
    fd = os.open(world.cache / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    venv = world.venv("v")
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha", "beta"))
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert len(result.warnings()) == 1, result.stderr
    assert "No space left" in result.warnings()[0]
    assert world.module_version(venv, "alpha") == world.module_version(venv, "beta") == "1.0"
    assert entries(world.cache) == []
    assert list(world.store.tmp.iterdir()) == []
    assert record_pids(world.cache) == set()


# --- 5. lock timeout ---------------------------------------------------------------------------------


def test_lock_timeout_builds_privately_and_names_the_holder(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """Past PIPGUARD_LOCK_TIMEOUT a waiter says who holds the lock and builds on its own, while the holder still builds."""
    venvs = [world.venv(f"v{i}") for i in range(2)]
    holder = crew.start(
        install_cmd(world, venvs[0], dists.index.url, "slowpkg"),
        "holder",
        gate.env,
    )
    (holder_build,) = gate.wait_started(what="the holder's build to reach build_wheel")

    impatient = crew.start(
        install_cmd(world, venvs[1], dists.index.url, "slowpkg"),
        "impatient",
        {"PIPGUARD_LOCK_TIMEOUT": "1"},
    )
    result = impatient.wait(timeout=120)
    assert result.returncode == 0, result.output
    assert not gate.is_open() and holder.popen.poll() is None, "the holder's build must still be held open"
    timed_out = [line for line in result.warnings() if "PIPGUARD_LOCK_TIMEOUT" in line]
    assert len(timed_out) == 1, result.stderr
    assert f"pid {holder.popen.pid}" in timed_out[0]
    assert "Successfully built slowpkg" in result.stdout  # its own, private build, shown as pip shows it
    assert world.module_version(venvs[1], "slowpkg") == "1.0"
    assert len(build_pids(world, "slowpkg")) == 2 and holder_build in build_pids(world, "slowpkg")

    gate.open()
    done = holder.wait()
    assert done.returncode == 0, done.output
    assert world.module_version(venvs[0], "slowpkg") == "1.0"
    (entry,) = entries(world.cache)
    assert verified(entry)


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_invalid_lock_timeout_is_ignored_with_a_warning(world: World, dists: Dists, value: str) -> None:
    venv = world.venv("v")
    result = world.pipguard(
        *install_args(venv, dists.index.url, "alpha"),
        env={"PIPGUARD_LOCK_TIMEOUT": value},
    )
    assert result.returncode == 0, result.output
    assert len(result.warnings()) == 1, result.stderr
    assert "PIPGUARD_LOCK_TIMEOUT" in result.warnings()[0] and value in result.warnings()[0]
    assert world.module_version(venv, "alpha") == "1.0"
    assert len(entries(world.cache)) == 1  # the cache itself is still used


# --- 6. security -------------------------------------------------------------------------------------


def test_cache_directories_are_private_even_with_a_group_umask(world: World, dists: Dists) -> None:
    """Under umask 002 (common with per-user groups), every directory pipguard makes is still 0700."""
    venv = world.venv("v")
    result = world.run(
        [
            "sh",
            "-c",
            'umask 002 && exec "$@"',
            "sh",
            *install_cmd(world, venv, dists.index.url, "alpha"),
        ]
    )
    assert result.returncode == 0, result.output
    directories = [
        world.cache,
        *(p for p in world.cache.rglob("*") if p.is_dir() and not p.is_symlink()),
    ]
    v1 = world.store.base
    assert {v1 / d for d in ("wheels", "locks", "records", "tmp")} <= set(directories)
    modes = {str(d): oct(d.stat().st_mode & 0o777) for d in directories}
    assert set(modes.values()) == {"0o700"}, modes
    assert len(entries(world.cache)) == 1


def _world_writable(cache: Path) -> None:
    cache.mkdir()
    cache.chmod(0o777)


def _foreign_owner(cache: Path) -> None:
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)


@pytest.mark.parametrize("make_shared", [_world_writable, _foreign_owner], ids=["mode-0777", "other-owner"])
def test_a_cache_others_can_write_is_not_used_unless_trusted(
    world: World, dists: Dists, make_shared: Callable[[Path], None]
) -> None:
    """Wheels from a directory others control could be anyone's: refused, unless the user says otherwise."""
    make_shared(world.cache)
    first = world.venv("first")
    refused = world.pipguard(*install_args(first, dists.index.url, "alpha"))
    assert refused.returncode == 0, refused.output
    assert len(refused.warnings()) == 1, refused.stderr
    assert "PIPGUARD_TRUST_SHARED_CACHE" in refused.warnings()[0]
    assert world.module_version(first, "alpha") == "1.0"
    assert entries(world.cache) == []

    trusted = {"PIPGUARD_TRUST_SHARED_CACHE": "1"}
    for name in ("second", "third"):
        venv = world.venv(name)
        used = world.pipguard(*install_args(venv, dists.index.url, "alpha"), env={**trusted, **world.another_job(name)})
        assert used.returncode == 0, used.output
        assert used.warnings() == [], used.stderr
        assert world.module_version(venv, "alpha") == "1.0"
    assert len(entries(world.cache)) == 1
    assert world.hooks("build_wheel", "alpha") == 2  # plain pip's, then the cache's once; the third reused it


@pytest.mark.parametrize("level", ["entry", "shard"])
def test_a_planted_symlink_is_not_followed(world: World, dists: Dists, level: str) -> None:
    """A symlink in the cache pointing at a valid-looking entry elsewhere is set aside, never read or changed."""
    first = world.venv("first")
    assert world.pipguard(*install_args(first, dists.index.url, "alpha")).returncode == 0
    (entry,) = entries(world.cache)
    manifest = json.loads((entry / "manifest.json").read_text())

    # A complete, self-consistent entry outside the cache, holding a wheel that would be visible if installed.
    outside = world.root / "outside"
    target = outside / entry.name if level == "shard" else outside
    evil = evil_wheel(target, "alpha")
    import hashlib

    data = evil.read_bytes()
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data), wheel=evil.name)
    (target / "manifest.json").write_text(json.dumps(manifest))
    planted = entry if level == "entry" else entry.parent
    shutil.rmtree(planted)
    planted.symlink_to(outside)
    before = tree_snapshot(outside)

    second = world.venv("second")
    result = world.pipguard(*install_args(second, dists.index.url, "alpha"), env=world.another_job("second"))
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert world.module_version(second, "alpha") == "1.0"
    assert tree_snapshot(outside) == before
    assert not planted.is_symlink()
    (rebuilt,) = entries(world.cache)
    assert not rebuilt.is_symlink() and not rebuilt.parent.is_symlink() and verified(rebuilt)


def test_index_credentials_never_reach_the_cache_or_the_output(world: World, dists: Dists, crew: Crew, gate: Gate) -> None:
    """A token in the index URL is in no cache file (records, logs, manifests) and in no output, even under -v."""
    secret = "tok-SECRET"

    with IndexServer(dists.directory, auth=("user", secret)) as index:
        venvs = [world.venv(f"v{i}") for i in range(2)]
        holder = crew.start(install_cmd(world, venvs[0], index.auth_url, "slowpkg", options=("-v",)), "holder", gate.env)
        gate.wait_started(what="the holder's build to reach build_wheel", explain=holder.stderr_so_far)
        waiter = crew.start(install_cmd(world, venvs[1], index.auth_url, "slowpkg"), "waiter", gate.env)
        wait_for(lambda: waiter.popen.pid in waiting_pids(world), "the waiter to queue")
        # Mid-build: records of both, the build log and the build dir are all on disk now.
        assert record_pids(world.cache) >= {holder.popen.pid, waiter.popen.pid}
        assert world.cache_files_containing(secret.encode()) == []
        shown = [
            world.pipguard("guard", "status"),
            world.pipguard("guard", "status", "--json"),
        ]
        gate.open()
        results = [holder.wait(), waiter.wait()]
        shown += [
            world.pipguard("guard", "cache", "list", "--json"),
            world.pipguard("guard", "cache", "info"),
        ]

    assert [r.returncode for r in results] == [0, 0], [r.output for r in results]
    assert index.hits.get("/files/slowpkg-1.0.tar.gz") == 1
    assert world.cache_files_containing(secret.encode()) == []
    for r in results + shown:
        assert secret not in r.output
    assert "****" in shown[0].stdout  # the command line is shown, redacted
    assert len(entries(world.cache)) == 1


# --- 7. stress ---------------------------------------------------------------------------------------


def test_eight_processes_three_sdists_in_shuffled_orders(world: World, dists: Dists, crew: Crew) -> None:
    """Many processes needing the same sources in different orders: no deadlock, each built once."""
    names = ["alpha", "beta", "gamma"]
    rng = random.Random(20240607)
    orders = [
        list(p)
        for p in (
            ("alpha", "beta", "gamma"),
            ("gamma", "beta", "alpha"),
            ("beta", "gamma", "alpha"),
        )
    ]
    while len(orders) < 8:
        order = names[:]
        rng.shuffle(order)
        orders.append(order)
    venvs = [world.venv(f"v{i}") for i in range(8)]
    procs = [
        crew.start(
            install_cmd(world, venv, dists.index.url, *order),
            f"p{i}",
            {"FIXTURE_BUILD_SECONDS": "0.5"},
        )
        for i, (venv, order) in enumerate(zip(venvs, orders))
    ]
    deadline = time.monotonic() + 240

    def all_done() -> bool:
        return all(p.popen.poll() is not None for p in procs)

    wait_for(
        all_done,
        "all eight installs to finish (a deadlock?)",
        timeout=max(1.0, deadline - time.monotonic()),
        explain=lambda: json.dumps(status(world), indent=1),
    )
    results = [p.wait() for p in procs]
    assert [r.returncode for r in results] == [0] * 8, [r.output for r in results if r.returncode]
    for name in names:
        assert world.hooks("build_wheel", name) == 1, name
    for venv in venvs:
        for name in names:
            assert world.module_version(venv, name) == "1.0"
    assert len(entries(world.cache)) == 3
    assert not entry_problems(world.cache)
    assert status(world)["locks"] == []


# --- 8. bad input ------------------------------------------------------------------------------------


PIP_LIKE_CASES: dict[str, list[str]] = {
    "unknown-install-option": ["install", "--frobnicate", "alpha"],
    "unknown-general-option": ["--frobnicate", "install", "alpha"],
    "option-missing-its-value": ["install", "--no-index", "--index-url"],
    "missing-requirements-file": ["install", "--no-index", "-r", "missing.txt"],
    "empty-version-requirement": ["install", "--no-index", "foo==="],
    "malformed-requirement": ["install", "--no-index", "foo[bar"],
    "malformed-requirements-file": ["install", "--no-index", "-r", "bad.txt"],
    "missing-local-path": ["install", "--no-index", "./does-not-exist"],
    "corrupt-sdist": ["install", "--no-index", "./broken-1.0.tar.gz"],
    "unknown-pip-command": ["frobnicate"],
    "no-such-interpreter": ["--python", "./no-such-python", "install", "alpha"],
    "bad-option-under-a-target": [
        "--python",
        "venvs/target",
        "install",
        "--frobnicate",
    ],
    "wheel-missing-requirement": ["wheel", "--no-index"],
}


@pytest.mark.parametrize("case", sorted(PIP_LIKE_CASES))
def test_bad_pip_input_fails_exactly_as_pip_does(world: World, case: str) -> None:
    """Anything pip rejects, pipguard rejects the same way: same error line, same exit code, no extra traceback."""
    (world.root / "bad.txt").write_text("foo[bar\n")
    (world.root / "broken-1.0.tar.gz").write_bytes(b"this is not a gzip file\n")
    world.venv("target")
    args = PIP_LIKE_CASES[case]
    pip = world.pip(*args)
    guarded = world.pipguard(*args)
    assert pip.returncode != 0, pip.output
    assert guarded.returncode == pip.returncode, (pip.output, guarded.output)
    # pip itself crashes with a traceback on a corrupt archive; pipguard must add none of its own.
    assert guarded.output.count("Traceback") == pip.output.count("Traceback"), guarded.output
    pip_error = [line for line in pip.stderr.splitlines() if line.strip()][-1]
    assert pip_error in guarded.stderr.splitlines(), (pip.stderr, guarded.stderr)
    assert pip.stdout == guarded.stdout


GUARD_USAGE_CASES: dict[str, list[str]] = {
    "no-subcommand": ["guard"],
    "unknown-subcommand": ["guard", "frob"],
    "unknown-cache-action": ["guard", "cache", "frob"],
    "unknown-status-option": ["guard", "status", "--bogus"],
    "prune-without-age": ["guard", "cache", "prune"],
    "prune-with-a-word-for-age": ["guard", "cache", "prune", "--older-than", "soon"],
    "remove-without-pattern": ["guard", "cache", "remove"],
}


@pytest.mark.parametrize("case", sorted(GUARD_USAGE_CASES))
def test_bad_guard_commands_give_one_error_line(world: World, case: str) -> None:
    """pipguard's own commands reject bad input like pip rejects bad options: one ERROR line, exit 2."""
    result = world.pipguard(*GUARD_USAGE_CASES[case])
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: pipguard guard"), result.stderr
    assert not world.cache.exists()  # rejecting input touches nothing


def test_guard_cache_remove_with_no_match_warns_like_pip_cache_remove(world: World) -> None:
    result = world.pipguard("guard", "cache", "remove", "nothing-like-this")
    assert result.returncode == 0, result.output
    assert result.stderr.startswith("WARNING: No matching packages"), result.stderr
    assert "Traceback" not in result.output
