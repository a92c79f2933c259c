"""Who holds a lock and who waits, as users see it: ``guard status``, plain lines, the live view, records
of dead processes, the environment lock and ``guard cache`` (issue: pipguard visibility).

Every test holds a build open with the fixture backend's gate (FIXTURE_BUILD_GATE) rather than sleeping,
and waits on observable conditions (the gate's ``.started.*`` file, ``guard status --json``).
"""

from __future__ import annotations

import csv
import datetime
import fcntl
import json
import os
import re
import signal
import socket
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import Dists, Process, World
from support.index import IndexServer
from support.terminal import on_terminal
from support.processes import (
    Crew,
    Gate,
    install_args,
    install_cmd,
    record_pids,
    status,
    wait_for,
)

TOKEN = "s3cret-token"


# --- helpers ------------------------------------------------------------------------------------------


def build_lock(state: dict[str, Any], name: str = "slowpkg") -> dict[str, Any] | None:
    found = [lock for lock in state["locks"] if lock["kind"] == "build" and lock["name"] == name]
    assert len(found) <= 1, state
    return found[0] if found else None


def wait_for_lock(world: World, holder: int | None, waiters: int, name: str = "slowpkg") -> dict[str, Any]:
    """Poll ``guard status --json`` until ``name``'s lock has a holder (``holder`` pid if given) and N waiters."""

    def seen() -> dict[str, Any] | None:
        lock = build_lock(status(world), name)
        if lock is None or lock["holder"] is None or len(lock["waiters"]) != waiters:
            return None
        if holder is not None and lock["holder"]["pid"] != holder:
            return None
        return lock

    return wait_for(seen, f"{name}'s lock held{f' by pid {holder}' if holder else ''} with {waiters} waiter(s)")


def assert_iso(value: object) -> None:
    assert isinstance(value, str), value
    parsed = datetime.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no UTC offset"


def start_slowpkg(
    crew: Crew, index_url: str, name: str, env: dict[str, str], options: Sequence[str] = ()
) -> Process:
    """Start ``pipguard install slowpkg`` into a new venv ``name``, as process ``name`` (its logs' name)."""
    cmd = install_cmd(crew.world, crew.world.venv(name), index_url, "slowpkg", options=options)
    return crew.start(cmd, name, env=env)


@pytest.fixture
def holder(crew: Crew, dists: Dists, gate: Gate) -> Process:
    """An install of slowpkg whose build is held open at the gate: it holds the lock others must wait for."""
    started = start_slowpkg(crew, dists.index.url, "holder", gate.env)
    gate.wait_started()
    return started


def pipguard_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("pipguard:")]


# --- 1. status JSON ---------------------------------------------------------------------------------


def test_status_json_shows_one_holder_and_three_waiters_of_a_slow_build(
    world: World, dists: Dists, gate: Gate, crew: Crew
) -> None:
    """The documented JSON shape, with real pids and redacted commands, while a build is held open."""
    venvs = [world.venv(f"v{i}") for i in range(4)]
    procs = [crew.start(install_cmd(world, v, dists.index.url, "slowpkg"), f"p{i}", env=gate.env) for i, v in enumerate(venvs)]
    pids = {p.popen.pid for p in procs}
    gate.wait_started()
    wait_for_lock(world, None, 3)

    state = status(world)
    assert set(state) == {"cache_dir", "locks"}
    assert state["cache_dir"] == str(world.cache)
    assert len(state["locks"]) == 1, state
    lock = state["locks"][0]
    assert set(lock) == {"key", "kind", "name", "version", "holder", "waiters"}
    assert isinstance(lock["key"], str) and lock["key"]
    assert (lock["kind"], lock["name"], lock["version"]) == ("build", "slowpkg", "1.0")
    holder = lock["holder"]
    assert set(holder) == {"pid", "host", "command", "since", "phase", "target"}
    assert holder["phase"] == "building"
    assert len(lock["waiters"]) == 3
    for person in [holder, *lock["waiters"]]:
        assert isinstance(person["pid"], int) and person["pid"] in pids, (person, pids)
        assert person["host"] == socket.gethostname()
        assert isinstance(person["command"], str)
        assert "install" in person["command"] and "slowpkg" in person["command"]
        assert_iso(person["since"])
        assert person["target"] in {str(v) for v in venvs}, person  # the environment each installs into
    for waiter in lock["waiters"]:
        assert set(waiter) == {"pid", "host", "command", "since", "target"}
    assert len({holder["pid"], *(w["pid"] for w in lock["waiters"])}) == 4

    gate.open()
    results = [p.wait() for p in procs]
    assert [r.returncode for r in results] == [0] * 4, [r.output for r in results if r.returncode]
    assert world.hooks("build_wheel", "slowpkg") == 1
    assert status(world) == {"cache_dir": str(world.cache), "locks": []}


# --- 2. credentials ---------------------------------------------------------------------------------


def test_index_credentials_never_show_in_status_output_or_the_cache(
    world: World, dists: Dists, gate: Gate, crew: Crew
) -> None:
    """A token in --index-url stays out of guard status, every process's stderr and every cache file."""
    needle = TOKEN.encode()
    with IndexServer(dists.directory, auth=("user", TOKEN)) as index:
        assert TOKEN in index.auth_url
        venvs = [world.venv(f"v{i}") for i in range(4)]
        procs = [crew.start(install_cmd(world, v, index.auth_url, "slowpkg"), f"p{i}", env=gate.env) for i, v in enumerate(venvs)]
        gate.wait_started()
        lock = wait_for_lock(world, None, 3)

        # While the build is held open.
        text = world.pipguard("guard", "status")
        raw_json = world.pipguard("guard", "status", "--json")
        assert text.returncode == 0 and raw_json.returncode == 0
        assert "slowpkg" in text.stdout and "slowpkg" in raw_json.stdout
        assert TOKEN not in text.output
        assert TOKEN not in raw_json.output
        assert "****@127.0.0.1" in lock["holder"]["command"], lock  # redacted, not dropped
        for proc in procs:
            assert TOKEN not in proc.stderr_so_far()
        assert world.cache_files_containing(needle) == []

        gate.open()
        results = [p.wait() for p in procs]
    assert [r.returncode for r in results] == [0] * 4, [r.output for r in results if r.returncode]
    assert world.hooks("build_wheel", "slowpkg") == 1
    # And after.
    for result in results:
        assert TOKEN not in result.stderr
        assert TOKEN not in result.stdout
    for args in (("guard", "status"), ("guard", "status", "--json"), ("guard", "cache", "list", "--json")):
        shown = world.pipguard(*args)
        assert shown.returncode == 0 and TOKEN not in shown.output
    assert world.cache_files_containing(needle) == []


# --- 3 and 4. plain lines ---------------------------------------------------------------------------


def test_non_tty_waiter_prints_plain_lines_naming_the_holder(
    world: World, dists: Dists, gate: Gate, crew: Crew, holder: Process
) -> None:
    """A waiter whose stderr is a file says whom it waits for, then whose wheel it reused."""
    waiter = start_slowpkg(crew, dists.index.url, "waiter", gate.env)
    pid = holder.popen.pid

    line = wait_for(
        lambda: next(
            (ln for ln in waiter.stderr_so_far().splitlines() if ln.startswith("pipguard: waiting for")), None
        ),
        "the waiter's 'pipguard: waiting for' line",
    )
    assert f"held by pid {pid} " in line, line
    assert "slowpkg 1.0" in line

    gate.open()
    held, waited = holder.wait(), waiter.wait()
    assert held.returncode == 0, held.output
    assert waited.returncode == 0, waited.output
    ended = rf"^pipguard: waited [0-9.]+s for slowpkg 1\.0 .*; reusing the wheel pid {pid} built$"
    assert re.search(ended, waited.stderr, re.MULTILINE), waited.stderr
    assert "pipguard: built slowpkg-1.0-py3-none-any.whl" in held.stderr
    assert world.hooks("build_wheel", "slowpkg") == 1


def test_progress_off_and_quiet_waiters_print_no_pipguard_lines(
    world: World, dists: Dists, gate: Gate, crew: Crew, holder: Process
) -> None:
    """PIPGUARD_PROGRESS=off and pip's -q both silence the waiting lines (they did wait: status shows it)."""
    off = start_slowpkg(crew, dists.index.url, "off", {**gate.env, "PIPGUARD_PROGRESS": "off"})
    quiet = start_slowpkg(crew, dists.index.url, "quiet", gate.env, options=("-q",))
    lock = wait_for_lock(world, holder.popen.pid, 2)
    assert {w["pid"] for w in lock["waiters"]} == {off.popen.pid, quiet.popen.pid}

    gate.open()
    held, silent, quieted = holder.wait(), off.wait(), quiet.wait()
    assert [held.returncode, silent.returncode, quieted.returncode] == [0, 0, 0], [held.output, silent.output, quieted.output]
    assert pipguard_lines(silent.stderr) == [], silent.stderr
    assert pipguard_lines(quieted.stderr) == [], quieted.stderr
    assert "Successfully installed slowpkg-1.0" in silent.stdout
    assert (world.site_packages(world.root / "venvs" / "quiet") / "slowpkg" / "__init__.py").is_file()
    assert world.hooks("build_wheel", "slowpkg") == 1


# --- 5. live view -----------------------------------------------------------------------------------

def test_live_view_on_a_terminal_keeps_stdout_clean(
    world: World, dists: Dists, gate: Gate, crew: Crew, holder: Process
) -> None:
    """On a TTY stderr the waiter shows a live view naming the holder; pip's stdout (a file) stays plain."""
    pid = holder.popen.pid

    stdout_path = world.root / "live.out"
    popen, reader = on_terminal(world, crew, install_cmd(world, world.venv("live"), dists.index.url, "slowpkg"), gate.env, stdout_path)

    wait_for(lambda: "waiting" in reader.text() and f"pid {pid}" in reader.text(), f"the live view naming holder pid {pid}")
    assert "slowpkg 1.0" in reader.text()
    assert "\x1b[" in reader.text(), "expected a live (escape-sequence) view on the terminal"

    gate.open()
    assert holder.wait().returncode == 0
    assert popen.wait(timeout=120) == 0, reader.text()
    reader.join()
    out = stdout_path.read_text()
    assert "Successfully installed slowpkg-1.0" in out
    assert "\x1b" not in out, out
    assert "pipguard" not in out, out
    assert f"reusing the wheel pid {pid} built" in reader.text()


# --- 6. dead records --------------------------------------------------------------------------------


def test_records_of_killed_processes_are_cleaned_up_and_a_waiter_takes_over(
    world: World, dists: Dists, gate: Gate, crew: Crew, holder: Process
) -> None:
    """kill -9 leaves a record no one holds: readers drop it; a dead holder's lock passes to a waiter."""
    doomed = start_slowpkg(crew, dists.index.url, "doomed", gate.env)
    heir = start_slowpkg(crew, dists.index.url, "heir", gate.env)
    lock = wait_for_lock(world, holder.popen.pid, 2)
    key = lock["key"]
    records_dir = world.store.records / key
    assert doomed.popen.pid in record_pids(world.cache, key, unfinished=True)

    # A killed waiter: gone from status, and its record file removed.
    doomed.popen.send_signal(signal.SIGKILL)
    doomed.popen.wait()
    after = wait_for_lock(world, holder.popen.pid, 1)
    assert [w["pid"] for w in after["waiters"]] == [heir.popen.pid]
    assert doomed.popen.pid not in record_pids(world.cache, key, unfinished=True)
    assert not [p for p in records_dir.iterdir() if f"-{doomed.popen.pid}-" in p.name]

    # A killed holder: the remaining waiter takes the lock; the dead pid is never shown as holder again.
    dead = holder.popen.pid
    holder.popen.send_signal(signal.SIGKILL)
    holder.popen.wait()

    def heir_holds() -> bool:
        lock_now = build_lock(status(world))
        if lock_now is not None and lock_now["holder"] is not None:
            assert lock_now["holder"]["pid"] != dead, lock_now
            return bool(lock_now["holder"]["pid"] == heir.popen.pid)
        return False

    wait_for(heir_holds, f"pid {heir.popen.pid} to take over from the killed holder")
    assert dead not in record_pids(world.cache, key, unfinished=True)
    gate.open()
    inherited = heir.wait()
    assert inherited.returncode == 0, inherited.output
    assert (world.site_packages(world.root / "venvs" / "heir") / "slowpkg" / "__init__.py").is_file()
    assert status(world)["locks"] == []
    assert record_pids(world.cache, key, unfinished=True) == set()


# --- 7. environment lock ----------------------------------------------------------------------------


def test_concurrent_reinstalls_into_one_environment_are_serialized(world: World, dists: Dists, crew: Crew) -> None:
    """8 --force-reinstall runs into one venv all succeed and leave it whole; they waited for each other."""
    from pipguard.keys import environment_lock_key

    venv = world.venv("shared")
    packages = ("alpha", "beta", "gamma")
    args = ("install", "--force-reinstall", "--no-index", "--find-links", str(dists.directory), *packages)
    first = world.pipguard("--python", str(venv), *args)
    assert first.returncode == 0, first.output
    assert [world.hooks("build_wheel", p) for p in packages] == [1, 1, 1]

    # Hold the environment's lock the way another installing process would, so all 8 meet at it.
    lock_path = world.store.locks / f"{environment_lock_key(str(venv))}.lock"
    assert lock_path.is_file(), "the first install should have created the environment's lock file"
    fd = os.open(lock_path, os.O_RDWR)
    crew.on_teardown(lambda: os.close(fd))
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        procs = [crew.start(world.pipguard_cmd("--python", str(venv), *args), f"p{i}") for i in range(8)]

        def environment_waiters() -> int:
            locks = [lock for lock in status(world)["locks"] if lock["kind"] == "environment"]
            return len(locks[0]["waiters"]) if len(locks) == 1 and len(locks[0]["waiters"]) == 8 else 0

        wait_for(environment_waiters, "8 processes waiting for the environment lock")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)

    results = [p.wait() for p in procs]
    assert [r.returncode for r in results] == [0] * 8, [r.output for r in results if r.returncode]
    assert [world.hooks("build_wheel", p) for p in packages] == [1, 1, 1]
    assert sum("pipguard: waiting for the environment" in r.stderr for r in results) >= 1

    site = world.site_packages(venv)
    for package in packages:
        infos = list(site.glob(f"{package}-*.dist-info"))
        assert [i.name for i in infos] == [f"{package}-1.0.dist-info"], infos
        record = infos[0] / "RECORD"
        assert record.is_file()
        rows = list(csv.reader(record.read_text().splitlines()))
        assert rows
        missing = [row[0] for row in rows if row and not (site / row[0]).exists()]
        assert missing == [], f"{package}: files in RECORD but not on disk: {missing}"
    check = world.pip("--python", str(venv), "check")
    assert check.returncode == 0, check.output
    assert status(world)["locks"] == []


# --- 8. guard cache ---------------------------------------------------------------------------------


def cache_list(world: World) -> list[dict[str, Any]]:
    result = world.pipguard("guard", "cache", "list", "--json")
    assert result.returncode == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def test_guard_cache_commands(world: World, dists: Dists) -> None:
    """list, remove (forces a rebuild), purge (keeps lock files), dir, prune, and a clean usage error."""
    venv = world.venv("v")

    def install(*packages: str) -> None:
        # Each in a job of its own (pip's own cache empty): what is reused comes from pipguard's cache.
        job = world.another_job(f"job{world.hooks('build_wheel')}-{'-'.join(packages)}")
        result = world.pipguard(*install_args(venv, dists.index.url, *packages, options=("--force-reinstall",)), env=job)
        assert result.returncode == 0, result.output

    install("slowpkg")
    listed = cache_list(world)
    assert [(e["name"], e["version"], e["wheel"]) for e in listed] == [("slowpkg", "1.0", "slowpkg-1.0-py3-none-any.whl")]
    assert isinstance(listed[0]["key"], str) and listed[0]["size"] > 0
    assert_iso(listed[0]["created"])

    removed = world.pipguard("guard", "cache", "remove", "slowpkg")
    assert removed.returncode == 0, removed.output
    assert "Files removed: 1" in removed.stdout
    assert cache_list(world) == []
    install("slowpkg")
    assert world.hooks("build_wheel", "slowpkg") == 2
    assert len(cache_list(world)) == 1

    locks_dir = world.store.locks
    lock_files = sorted(locks_dir.glob("*.lock"))
    assert lock_files
    purged = world.pipguard("guard", "cache", "purge")
    assert purged.returncode == 0, purged.output
    assert cache_list(world) == []
    assert sorted(locks_dir.glob("*.lock")) == lock_files

    where = world.pipguard("guard", "cache", "dir")
    assert where.returncode == 0 and where.stdout.strip() == str(world.cache)

    install("alpha")
    assert [e["name"] for e in cache_list(world)] == ["alpha"]
    pruned = world.pipguard("guard", "cache", "prune", "--older-than", "0")
    assert pruned.returncode == 0, pruned.output
    assert cache_list(world) == []

    for bad in (("guard", "frobnicate"), ("guard", "cache", "frobnicate")):
        result = world.pipguard(*bad)
        assert result.returncode == 2, result.output
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ERROR:"), result.stderr
        assert "Traceback" not in result.stderr
