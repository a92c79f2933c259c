"""The wheel cache on disk: entries round-trip, damage is set aside (never used), removal respects pins."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.wheels import make_wheel

from pipguard import keys
from pipguard.flocks import keep_locked
from pipguard.errors import CacheUnusable, UntrustedCache
from pipguard.store import MANIFEST, Entry, Store

from .conftest import release_pins

SOURCE = {"kind": "archive", "sha256": "ab" * 32}


def publish(store: Store, key: str, tmp_path: Path, version: str = "1.0") -> Entry:
    """Publish a fresh in-process wheel as the entry for ``key``."""
    return store.publish(key, make_wheel(tmp_path / f"built-{version}", version=version), SOURCE)


def set_aside_leftovers(store: Store) -> list[Path]:
    """What setting an entry aside left in tmp/ (it must leave nothing)."""
    return list(store.tmp.iterdir())


def test_publish_then_lookup_round_trips(store: Store, key: str, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "built")
    content = wheel.read_bytes()
    published = store.publish(key, wheel, SOURCE)
    assert not wheel.exists()  # moved into the cache, not copied
    found = store.lookup(key)
    assert found is not None
    assert found.wheel == published.wheel == store.entry_dir(key) / "demo-1.0-py3-none-any.whl"
    assert found.wheel.read_bytes() == content
    assert found.manifest["key"] == key
    assert found.manifest["sha256"] == keys.file_sha256(found.wheel)
    assert found.manifest["size"] == len(content)
    assert found.manifest["source"] == SOURCE
    assert set_aside_leftovers(store) == []  # the staging directory is gone


def test_a_second_publish_keeps_the_first_entry(store: Store, key: str, tmp_path: Path) -> None:
    """Two processes that built the same key: the first entry stays, immutable; the second is dropped."""
    first = publish(store, key, tmp_path, version="1.0")
    second = publish(store, key, tmp_path, version="2.0")
    assert second.wheel == first.wheel
    assert {p.name for p in store.entry_dir(key).iterdir()} == {MANIFEST, "demo-1.0-py3-none-any.whl"}


def test_lookup_of_an_unknown_key_is_none_and_quiet(
    store: Store, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert store.lookup(key) is None
    assert capsys.readouterr().err == ""


def _truncate_wheel(entry: Entry, _store: Store, _tmp: Path) -> None:
    size = entry.wheel.stat().st_size
    with open(entry.wheel, "r+b") as handle:
        handle.truncate(size // 2)


def _garble_manifest(entry: Entry, _store: Store, _tmp: Path) -> None:
    (entry.directory / MANIFEST).write_text('{"key": ')


def _drop_manifest(entry: Entry, _store: Store, _tmp: Path) -> None:
    (entry.directory / MANIFEST).unlink()


def _drop_wheel(entry: Entry, _store: Store, _tmp: Path) -> None:
    entry.wheel.unlink()


def _manifest_of_another_key(entry: Entry, _store: Store, _tmp: Path) -> None:
    manifest = json.loads((entry.directory / MANIFEST).read_text())
    manifest["key"] = keys.digest("another key")
    (entry.directory / MANIFEST).write_text(json.dumps(manifest))


def _wheel_is_a_symlink(entry: Entry, _store: Store, tmp: Path) -> None:
    """Same bytes, but reached through a link that could point anywhere."""
    outside = tmp / "outside.whl"
    shutil.copyfile(entry.wheel, outside)
    entry.wheel.unlink()
    entry.wheel.symlink_to(outside)


def _wheel_is_a_directory(entry: Entry, _store: Store, _tmp: Path) -> None:
    entry.wheel.unlink()
    entry.wheel.mkdir()


def _shard_is_a_symlink(entry: Entry, store: Store, tmp: Path) -> None:
    """The shard points out of the cache, at a complete, self-consistent entry."""
    shard = entry.directory.parent
    outside = tmp / "outside-shard"
    shutil.copytree(shard, outside)
    shutil.rmtree(shard)
    shard.symlink_to(outside)


def _manifest_is_a_fifo(entry: Entry, _store: Store, _tmp: Path) -> None:
    """Opened for reading, a FIFO with no writer would block the reader for ever."""
    (entry.directory / MANIFEST).unlink()
    os.mkfifo(entry.directory / MANIFEST, 0o600)


def _shard_others_can_write(entry: Entry, _store: Store, _tmp: Path) -> None:
    """Anyone could have swapped the entry below it for one of their own."""
    entry.directory.parent.chmod(0o777)


def _entry_others_can_write(entry: Entry, _store: Store, _tmp: Path) -> None:
    entry.directory.chmod(0o770)


DAMAGE: dict[str, Callable[[Entry, Store, Path], None]] = {
    "truncated-wheel": _truncate_wheel,
    "garbled-manifest": _garble_manifest,
    "missing-manifest": _drop_manifest,
    "missing-wheel": _drop_wheel,
    "manifest-of-another-key": _manifest_of_another_key,
    "wheel-is-a-symlink": _wheel_is_a_symlink,
    "wheel-is-a-directory": _wheel_is_a_directory,
    "symlinked-shard": _shard_is_a_symlink,
    "manifest-is-a-fifo": _manifest_is_a_fifo,
    "shard-others-can-write": _shard_others_can_write,
    "entry-others-can-write": _entry_others_can_write,
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_entry_is_set_aside_and_rebuilt(
    store: Store,
    key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Entry, Store, Path], None],
) -> None:
    entry = publish(store, key, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    damage(entry, store, outside)
    outside_before = sorted(outside.rglob("*"))

    assert store.lookup(key) is None
    assert "damaged" in capsys.readouterr().err
    assert not os.path.lexists(store.entry_dir(key))
    assert set_aside_leftovers(store) == []
    assert sorted(outside.rglob("*")) == outside_before  # nothing outside the cache was followed or removed
    # Set aside, it is simply missing: the next lookup is quiet, and a new build takes its place.
    assert store.lookup(key) is None
    assert capsys.readouterr().err == ""
    rebuilt = publish(store, key, tmp_path, version="1.1")
    assert store.lookup(key) == rebuilt


def _not_a_zip(directory: Path) -> Path:
    """A backend that wrote something else under a .whl name."""
    directory.mkdir()
    bogus = directory / "demo-1.0-py3-none-any.whl"
    bogus.write_bytes(b"this is not a zip archive\n" * 10)
    return bogus


def _truncated_zip(directory: Path) -> Path:
    wheel = make_wheel(directory)
    data = wheel.read_bytes()
    wheel.write_bytes(data[: len(data) * 2 // 3])
    return wheel


def _corrupt_member(directory: Path) -> Path:
    """Intact zip structure, garbled compressed data: only reading the member finds it."""
    wheel = make_wheel(directory)
    data = bytearray(wheel.read_bytes())
    start = data.index(b"demo/__init__.py") + len(b"demo/__init__.py") + 5
    data[start : start + 20] = bytes(byte ^ 0xFF for byte in data[start : start + 20])
    wheel.write_bytes(bytes(data))
    return wheel


def _no_record(directory: Path) -> Path:
    return make_wheel(directory, record=False)


UNINSTALLABLE: dict[str, Callable[[Path], Path]] = {
    "not-a-zip": _not_a_zip,
    "truncated-zip": _truncated_zip,
    "corrupt-member": _corrupt_member,
    "no-record": _no_record,
}


@pytest.mark.parametrize("make", UNINSTALLABLE.values(), ids=UNINSTALLABLE.keys())
def test_publish_refuses_what_pip_could_not_install(
    store: Store, key: str, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    """Refused as CacheUnusable, which the caller turns into a warning: never a crash, never an entry."""
    with pytest.raises(CacheUnusable, match="demo-1.0-py3-none-any.whl"):
        store.publish(key, make(tmp_path / "built"), SOURCE)
    assert store.lookup(key) is None
    assert not os.path.lexists(store.entry_dir(key))
    assert set_aside_leftovers(store) == []


def test_remove_refuses_an_entry_in_use(store: Store, key: str, tmp_path: Path) -> None:
    """A live process's shared lock on the manifest pins the entry; once it is gone, removal proceeds."""
    entry = publish(store, key, tmp_path)
    release_pins(store)  # as if the publishing process had exited
    pin = keep_locked(entry.directory / MANIFEST, exclusive=False)  # another open file: a conflicting lock
    try:
        assert store.remove(entry) is False
        assert entry.wheel.is_file()
    finally:
        os.close(pin)
    assert store.remove(entry) is True
    assert not entry.directory.exists()
    assert set_aside_leftovers(store) == []
    assert store.lookup(key) is None


def test_an_entry_looked_up_is_pinned_by_this_process(store: Store, key: str, tmp_path: Path) -> None:
    """The lookup's own pin keeps the wheel pip is about to install from being removed under it."""
    publish(store, key, tmp_path)
    release_pins(store)
    entry = store.lookup(key)
    assert entry is not None
    assert store.remove(entry) is False
    release_pins(store)
    assert store.remove(entry) is True


@pytest.mark.parametrize(
    "shared", ["root", "v1", "v1/wheels", "v1/locks", "v1/records", "v1/tmp", "v1/handoffs"]
)
def test_prepare_refuses_a_directory_others_can_write_unless_trusted(tmp_path: Path, shared: str) -> None:
    root = tmp_path / "cache"
    Store(root).prepare(trust_shared=False)
    (root / shared if shared != "root" else root).chmod(0o770)
    with pytest.raises(UntrustedCache, match="PIPGUARD_TRUST_SHARED_CACHE"):
        Store(root).prepare(trust_shared=False)
    Store(root).prepare(trust_shared=True)  # trusted: used as it is


def test_prepare_creates_a_private_layout(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    store.prepare(trust_shared=False)
    for directory in (store.root, store.base, store.wheels, store.locks, store.records, store.tmp):
        assert directory.is_dir()
        assert directory.stat().st_mode & 0o077 == 0, directory


def test_prepare_refuses_a_symlinked_layout(tmp_path: Path) -> None:
    """A v1 directory that links elsewhere could be anyone's: it is refused like a shared one."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    (root / "v1").symlink_to(elsewhere)
    with pytest.raises(UntrustedCache, match="symlink"):
        Store(root).prepare(trust_shared=False)


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_prepare_refuses_a_cache_below_a_directory_others_can_write(tmp_path: Path, mode: int) -> None:
    """Whoever can write to a directory above the root can rename the cache away and put another there."""
    above = tmp_path / "above"
    above.mkdir()
    above.chmod(mode)
    with pytest.raises(UntrustedCache, match=f"{above} .above the cache. can be written by other users"):
        Store(above / "cache").prepare(trust_shared=False)
    Store(above / "cache").prepare(trust_shared=True)


def test_prepare_accepts_a_sticky_directory_above_when_the_next_one_is_this_users(tmp_path: Path) -> None:
    """/tmp is world-writable but sticky: nobody else may rename what is this user's in it."""
    above = tmp_path / "tmp"
    above.mkdir()
    above.chmod(0o1777)
    Store(above / "cache").prepare(trust_shared=False)


def test_prepare_follows_symlinks_on_the_way_to_the_root(tmp_path: Path) -> None:
    """A symlink above the root is resolved as the kernel does: the directories it leads through count."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(shared / "real")
    with pytest.raises(UntrustedCache, match="above the cache"):
        Store(tmp_path / "link" / "cache").prepare(trust_shared=False)
    (tmp_path / "private").mkdir(mode=0o700)
    (tmp_path / "good-link").symlink_to("private")  # relative, through directories of this user's only
    Store(tmp_path / "good-link" / "cache").prepare(trust_shared=False)
