"""Handoffs: a waiter takes the wheel its builder made, and nothing else in its place."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.wheels import make_wheel

from pipguard.handoff import OUTCOME, Handoffs
from pipguard.store import Store


@pytest.fixture
def handoffs(store: Store) -> Iterator[Handoffs]:
    yield store.handoffs
    store.handoffs.unpin_all()


def test_a_published_wheel_is_handed_to_a_waiter_with_its_sha256(handoffs: Handoffs, key: str, tmp_path: Path) -> None:
    started = time.time()
    wheel = make_wheel(tmp_path / "built")
    content = wheel.read_bytes()
    published = handoffs.publish_wheel(key, wheel, None)
    taken = handoffs.since(key, started)
    assert taken == published
    assert taken.wheel is not None and taken.wheel.read_bytes() == content
    assert taken.size == len(content)
    assert handoffs.since(key, time.time() + 60) is None  # finished before this waiter came: not its build


def test_a_wheel_swapped_after_publishing_is_never_handed_on(
    handoffs: Handoffs, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same name, same size, other bytes: only the sha256 the builder recorded tells."""
    started = time.time()
    published = handoffs.publish_wheel(key, make_wheel(tmp_path / "built"), None)
    assert published.wheel is not None
    data = bytearray(published.wheel.read_bytes())
    data[-30] ^= 0xFF
    published.wheel.write_bytes(bytes(data))
    assert handoffs.since(key, started) is None
    err = capsys.readouterr().err
    assert "does not match the sha256 its build recorded" in err and key[:12] in err


def test_a_wheel_replaced_by_a_fifo_is_refused_at_once(handoffs: Handoffs, key: str, tmp_path: Path) -> None:
    started = time.time()
    published = handoffs.publish_wheel(key, make_wheel(tmp_path / "built"), None)
    assert published.wheel is not None
    published.wheel.unlink()
    os.mkfifo(published.wheel, 0o600)
    assert handoffs.since(key, started) is None


def test_an_outcome_others_can_write_to_is_passed_over_for_an_older_sound_one(
    handoffs: Handoffs, key: str, tmp_path: Path
) -> None:
    """Even in a cache shared on purpose: an outcome directory is its maker's alone."""
    started = time.time()
    sound = handoffs.publish_wheel(key, make_wheel(tmp_path / "first"), None)
    newer = handoffs.publish_wheel(key, make_wheel(tmp_path / "second", version="2.0"), None)
    newer.directory.chmod(0o777)
    assert handoffs.since(key, started) == sound


def test_a_symlinked_key_directory_is_not_read_and_is_swept_without_following(
    handoffs: Handoffs, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    outcome = elsewhere / "99999999999999999999-1-aa"
    outcome.mkdir(parents=True, mode=0o700)
    wheel = make_wheel(outcome)
    (outcome / OUTCOME).write_text(json.dumps({"wheel": wheel.name, "size": 1, "sha256": "0", "finished": 4e9}))
    (handoffs.root / key).symlink_to(elsewhere)
    assert handoffs.since(key, 0.0) is None
    assert "is not this user's own" in capsys.readouterr().err
    handoffs.sweep(older_than=0.0)
    assert not os.path.lexists(handoffs.root / key)
    assert wheel.is_file()  # what the link pointed at is untouched
