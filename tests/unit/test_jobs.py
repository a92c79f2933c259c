"""The job budget: PIPGUARD_JOBS, MAKEFLAGS' jobserver, tokens taken and always given back; and the
filelock behaviour that lets threads of one process exclude each other on one key."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from pipguard import jobs, settings
from pipguard.errors import BuildStopped


@pytest.mark.parametrize(
    ("makeflags", "expected"),
    [
        (" -j4 --jobserver-auth=fifo:/tmp/GMfifo1", jobs.JobserverAuth(fifo="/tmp/GMfifo1")),
        ("-j8 --jobserver-auth=3,4", jobs.JobserverAuth(read_fd=3, write_fd=4)),
        ("-j --jobserver-fds=5,6", jobs.JobserverAuth(read_fd=5, write_fd=6)),
        ("--jobserver-fds=5,6 --jobserver-auth=7,8", jobs.JobserverAuth(read_fd=7, write_fd=8)),  # the last wins
        ("-j", None),  # no limit, no jobserver
        ("k", None),
        ("", None),
        ("--jobserver-auth=fifo:", None),
        ("--jobserver-auth=3", None),
        ("--jobserver-auth=a,b", None),
        ("--jobserver-auth=-2,-2", None),  # make's way of saying "no jobserver for you"
    ],
)
def test_makeflags_jobserver(makeflags: str, expected: jobs.JobserverAuth | None) -> None:
    assert jobs.parse_makeflags(makeflags) == expected


@pytest.mark.parametrize(("raw", "count"), [("1", 1), ("3", 3), (" 16 ", 16)])
def test_jobs_valid(monkeypatch: pytest.MonkeyPatch, raw: str, count: int) -> None:
    monkeypatch.setenv("PIPGUARD_JOBS", raw)
    assert settings.jobs() == (count, None)


@pytest.mark.parametrize("raw", [None, ""])
def test_jobs_default_is_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch, raw: str | None) -> None:
    monkeypatch.delenv("PIPGUARD_JOBS", raising=False)
    if raw is not None:
        monkeypatch.setenv("PIPGUARD_JOBS", raw)
    assert settings.jobs() == (len(os.sched_getaffinity(0)), None)


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5", "4x"])
def test_jobs_invalid_is_the_default_with_a_complaint(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PIPGUARD_JOBS", raw)
    count, complaint = settings.jobs()
    assert count == settings.default_jobs()
    assert complaint is not None and repr(raw) in complaint and "PIPGUARD_JOBS" in complaint


def _fifo_with_tokens(tmp_path: Path, tokens: bytes) -> tuple[Path, int]:
    """A make-4.4-style jobserver fifo holding ``tokens``; returns it and a descriptor that keeps it open."""
    fifo = tmp_path / "jobserver"
    os.mkfifo(fifo)
    keeper = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(keeper, tokens)
    return fifo, keeper


def _run_builds(budget: jobs.Budget, count: int, seconds: float) -> int:
    """Run ``count`` fake builds in threads through ``budget``; the most that ran at once."""
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def build() -> None:
        with budget.slot(lambda: False):
            with lock:
                running[0] += 1
                running[1] = max(running[1], running[0])
            time.sleep(seconds)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=build) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return running[1]


@pytest.mark.parametrize(("tokens", "most"), [(b"", 1), (b"+", 2), (b"++", 3)])
def test_builds_beyond_the_first_take_jobserver_tokens_and_give_them_back(
    tmp_path: Path, tokens: bytes, most: int
) -> None:
    fifo, keeper = _fifo_with_tokens(tmp_path, tokens)
    try:
        budget = jobs.budget_from_environment(8, f"-j --jobserver-auth=fifo:{fifo}")
        assert budget.jobserver is not None
        assert _run_builds(budget, 5, 0.1) == most
        left = os.read(keeper, 16) if tokens else b""
        assert left == tokens  # every token went back, byte for byte
    finally:
        os.close(keeper)


def test_pipguard_jobs_caps_builds_even_with_tokens_to_spare(tmp_path: Path) -> None:
    fifo, keeper = _fifo_with_tokens(tmp_path, b"+++++")
    try:
        assert _run_builds(jobs.budget_from_environment(2, f"--jobserver-auth=fifo:{fifo}"), 5, 0.1) == 2
    finally:
        os.close(keeper)


def test_a_jobserver_this_process_cannot_reach_means_one_build_at_a_time() -> None:
    unused = 1000
    while True:
        try:
            os.fstat(unused)
        except OSError:
            break
        unused += 1
    budget = jobs.budget_from_environment(8, f"-j8 --jobserver-auth={unused},{unused + 1}")
    assert budget.jobs == 1 and budget.jobserver is None


def test_the_descriptor_form_uses_the_pipe_make_passed(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"+")
    try:
        budget = jobs.budget_from_environment(8, f"-j2 --jobserver-auth={read_fd},{write_fd}")
        assert budget.jobserver is not None
        assert _run_builds(budget, 3, 0.1) == 2
        assert os.get_blocking(read_fd)  # make's own description keeps its flags
        os.set_blocking(read_fd, False)
        assert os.read(read_fd, 16) == b"+"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_when_jobs_are_scarce_the_biggest_build_waiting_goes_next() -> None:
    """Archives by size, biggest first; one of unknown size (a tree) before them; equal sizes in the
    order they asked."""
    budget = jobs.Budget(1, None)
    order: list[str] = []
    threads = []
    with budget.slot(lambda: False):  # the one job is taken: everyone below waits
        for label, size in (("small", 10), ("big", 30), ("tree", None), ("big again", 30), ("middle", 20)):
            def build(label: str = label, size: int | None = size) -> None:
                with budget.slot(lambda: False, size):
                    order.append(label)

            threads.append(threading.Thread(target=build))
            threads[-1].start()
            deadline = time.monotonic() + 10
            while len(budget._jobs._waiting) < len(threads) and time.monotonic() < deadline:
                time.sleep(0.005)  # until this build is in the queue: arrival order is part of the test
        assert len(budget._jobs._waiting) == 5
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["tree", "big", "big again", "middle", "small"]


def test_a_wait_for_a_token_ends_when_the_command_stops(tmp_path: Path) -> None:
    fifo, keeper = _fifo_with_tokens(tmp_path, b"")
    try:
        budget = jobs.budget_from_environment(8, f"--jobserver-auth=fifo:{fifo}")
        stop = threading.Event()
        with budget.slot(stop.is_set):  # the first build: make's own token for this job
            outcome: list[BaseException] = []

            def second() -> None:
                try:
                    with budget.slot(stop.is_set):
                        pass
                except BuildStopped as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=second)
            thread.start()
            stop.set()
            thread.join(timeout=10)
        assert len(outcome) == 1
    finally:
        os.close(keeper)


def test_two_threads_locking_one_path_exclude_each_other(tmp_path: Path) -> None:
    """flock locks belong to open file descriptions: a FileLock per thread on one path excludes the other
    thread as it excludes another process (filelock keeps its reentrancy registry per thread)."""
    path = tmp_path / "key.lock"
    first = FileLock(path)
    first.acquire()
    seen: list[str] = []

    def other() -> None:
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0.2)
            seen.append("acquired while held")
            lock.release()
        except Timeout:
            seen.append("excluded")
        first_released.wait(10)
        with lock.acquire(timeout=10):
            seen.append("acquired after release")

    first_released = threading.Event()
    thread = threading.Thread(target=other)
    thread.start()
    wait_until = time.monotonic() + 10
    while not seen and time.monotonic() < wait_until:
        time.sleep(0.01)
    first.release()
    first_released.set()
    thread.join(timeout=10)
    assert seen == ["excluded", "acquired after release"]


def test_children_prepare_beside_the_jobs_and_twice_as_many_are_alive() -> None:
    """A child's place is not a job: with both jobs taken, children still start (to prepare), up to
    PREPARING_PER_JOB per job; the next waits for a place, biggest first as jobs are."""
    budget = jobs.Budget(2, None)
    stop = threading.Event()
    with budget.slot(stop.is_set), budget.slot(stop.is_set), contextlib.ExitStack() as places:
        for _ in range(2 * jobs.PREPARING_PER_JOB):
            places.enter_context(budget.child(stop.is_set))
        started = threading.Event()

        def one_more() -> None:
            try:
                with budget.child(stop.is_set):
                    started.set()
            except BuildStopped:
                pass

        thread = threading.Thread(target=one_more)
        thread.start()
        assert not started.wait(0.3)  # every place is taken
        places.close()
        thread.join(timeout=10)
        assert started.is_set()


def test_a_job_is_free_only_while_none_is_taken_or_waited_for() -> None:
    budget = jobs.Budget(1, None)
    assert budget.job_free()
    with budget.slot(lambda: False):
        assert not budget.job_free()
    assert budget.job_free()
