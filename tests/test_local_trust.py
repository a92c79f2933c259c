"""Trust on one machine: what another local user can and cannot do to pipguard's cache, and what build code
can see of pipguard's own settings.

Every test runs real pipguard and pip processes. "Another user" is a second uid: its files are made by
processes run through ``setpriv --reuid`` (so these tests need root, and say so when skipped), or handed
to it with ``chown``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Dists, World
from support.anyuser import OTHER_UID, as_user, needs_root
from support.index import IndexServer
from support.processes import Crew, Gate, install_args, install_cmd, status, wait_for, waiting_pids
from support.projects import make_project, make_sdist
from support.remote import openssl_keypair
from test_robustness import evil_wheel

HANG_BOUND = 60  # seconds: far beyond what reading a cache takes; a blocked read never returns at all


def as_other_user(*command: str) -> None:
    """Run ``command`` as OTHER_UID, with no groups: what another local user could do."""
    done = subprocess.run([*as_user(OTHER_UID), *command], capture_output=True, text=True, timeout=HANG_BOUND)
    assert done.returncode == 0, done.stderr


def entries(world: World) -> list[Path]:
    return sorted(world.store.wheels.glob("*/*"))


def move_cache(world: World, cache: Path) -> None:
    """From now on the world's pipguard processes (and its helpers) use the cache at ``cache``."""
    world.cache = cache
    world.env["PIPGUARD_CACHE_DIR"] = str(cache)


def sealed_entry(directory: Path, name: str, manifest: dict[str, object]) -> Path:
    """``directory`` holding an evil wheel of ``name`` and a manifest (or outcome) that matches it exactly,
    readable by anyone, for another user to plant."""
    wheel = evil_wheel(directory, name)
    data = wheel.read_bytes()
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data), wheel=wheel.name)
    (directory / str(manifest.pop("file"))).write_text(json.dumps(manifest))
    for path in (directory.parent, directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return directory


@pytest.fixture
def reachable(world: World) -> Iterator[Path]:
    """A directory under /tmp that another user can reach (a test's own tmp dir is private to root)."""
    made = Path(tempfile.mkdtemp(prefix="pipguard-trust-", dir="/tmp"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def assert_plain_pip(world: World, dists: Dists, name: str) -> None:
    """An untrusted cache: one warning, the install done as plain pip, nothing cached."""
    venv = world.venv(name)
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha"))
    assert result.returncode == 0, result.output
    assert len(result.warnings()) == 1, result.stderr
    assert "going on as plain pip" in result.warnings()[0]
    assert world.module_version(venv, "alpha") == "1.0"


# --- 1. every directory pipguard trusts is checked ------------------------------------------------------


def _world_writable_parent(root: Path) -> Path:
    (root / "shared").mkdir()
    (root / "shared").chmod(0o777)
    return root / "shared" / "cache"


def _parent_of_another_user(root: Path) -> Path:
    (root / "theirs").mkdir(mode=0o755)
    os.chown(root / "theirs", OTHER_UID, OTHER_UID)
    return root / "theirs" / "cache"


def _link_through_a_writable_directory(root: Path) -> Path:
    """The cache path is fine; a symlink on the way leads through a directory anyone can write."""
    (root / "shared").mkdir()
    (root / "shared").chmod(0o777)
    (root / "shared" / "real").mkdir(mode=0o700)
    (root / "link").symlink_to(root / "shared" / "real")
    return root / "link" / "cache"


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(_world_writable_parent, id="parent-mode-0777"),
        pytest.param(_parent_of_another_user, id="parent-of-another-user", marks=needs_root),
        pytest.param(_link_through_a_writable_directory, id="symlink-through-mode-0777"),
    ],
)
def test_a_cache_below_a_directory_another_user_controls_is_not_used(
    world: World, dists: Dists, make_path: Callable[[Path], Path]
) -> None:
    """Whoever can write to a directory above the cache can swap the cache for one of their choosing."""
    move_cache(world, make_path(world.root))
    assert_plain_pip(world, dists, "first")
    assert entries(world) == []


def test_a_cache_in_a_sticky_world_writable_directory_is_used(world: World, dists: Dists) -> None:
    """/tmp is fine: the sticky bit keeps others from renaming the cache, which is this user's own."""
    (world.root / "tmp").mkdir()
    (world.root / "tmp").chmod(0o1777)
    move_cache(world, world.root / "tmp" / "cache")
    venv = world.venv("v")
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha"))
    assert result.returncode == 0, result.output
    assert result.warnings() == [], result.stderr
    assert len(entries(world)) == 1


def _writable_by_others(path: Path) -> None:
    path.chmod(0o777)


def _symlink_to_a_private_directory(path: Path) -> None:
    elsewhere = path.parent.parent.parent / f"elsewhere-{path.name}"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)


@pytest.mark.parametrize("layout", ["locks", "records", "handoffs", "tmp"])
@pytest.mark.parametrize("damage", [_writable_by_others, _symlink_to_a_private_directory], ids=["mode-0777", "symlink"])
def test_each_directory_of_the_layout_is_checked(
    world: World, dists: Dists, layout: str, damage: Callable[[Path], None]
) -> None:
    """Not only the root, v1 and wheels: locks, records, handoffs and tmp are read and trusted too."""
    assert world.pipguard(*install_args(world.venv("first"), dists.index.url, "beta")).returncode == 0
    damage(world.store.base / layout)
    assert_plain_pip(world, dists, "second")
    assert world.hooks("build_wheel", "alpha") == 1  # plain pip's own build; the cache took no part
    assert len(entries(world)) == 1  # beta's only


@needs_root
def test_an_entry_planted_by_another_user_in_a_shard_they_can_write_is_never_installed(
    world: World, dists: Dists, reachable: Path
) -> None:
    """A shard others can write to (and traverse to): another user swaps in a complete, self-consistent
    entry of their own. It is set aside and rebuilt, never installed."""
    move_cache(world, reachable / "cache")
    assert world.pipguard(*install_args(world.venv("first"), dists.index.url, "alpha")).returncode == 0
    (entry,) = entries(world)
    for directory in (world.cache, world.store.base, world.store.wheels):
        directory.chmod(0o711)  # others may pass through, as with a home directory: not write
    entry.parent.chmod(0o777)

    manifest = json.loads((entry / "manifest.json").read_text())
    planted = sealed_entry(reachable / "planted" / entry.name, "alpha", {**manifest, "file": "manifest.json"})
    as_other_user("sh", "-c", 'mv "$1" "$1.old" && cp -r "$2" "$1"', "sh", str(entry), str(planted))
    assert entry.stat().st_uid == OTHER_UID

    second = world.venv("second")
    result = world.pipguard(*install_args(second, dists.index.url, "alpha"))
    assert result.returncode == 0, result.output
    assert world.module_version(second, "alpha") == "1.0"
    assert "Traceback" not in result.output
    assert any("damaged" in line for line in result.warnings()), result.stderr


# --- 2. a handoff is this user's own and the wheel its build made ----------------------------------------


@needs_root
def test_a_handoff_planted_by_another_user_is_never_installed(
    world: World, dists: Dists, crew: Crew, gate: Gate, reachable: Path
) -> None:
    """In a cache shared on purpose, another user plants a newer outcome for a build two processes share
    (``--no-cache-dir``: handed to the waiter only). The waiter never installs it: it warns, then builds."""
    move_cache(world, reachable / "cache")
    world.env["PIPGUARD_TRUST_SHARED_CACHE"] = "1"
    world.store.prepare(trust_shared=True)
    for directory in (world.cache, world.store.base):
        directory.chmod(0o711)
    world.store.handoffs.root.chmod(0o777)  # a cache shared with others: they may add handoffs

    options = ("--no-cache-dir",)
    venvs = [world.venv("holder"), world.venv("waiter")]
    holder = crew.start(install_cmd(world, venvs[0], dists.index.url, "slowpkg", options=options), "holder", gate.env)
    gate.wait_started(what="the holder's build", explain=holder.stderr_so_far)
    waiter = crew.start(install_cmd(world, venvs[1], dists.index.url, "slowpkg", options=options), "waiter", gate.env)
    wait_for(lambda: waiter.popen.pid in waiting_pids(world), "the waiter to queue")
    (key,) = {lock["key"] for lock in status(world)["locks"]}

    outcome = {"finished": 4e9, "file": "outcome.json"}  # "finished" after anyone began to wait
    forged = sealed_entry(reachable / "forged" / "outcome", "slowpkg", outcome)
    key_dir = world.store.handoffs.root / key
    plant = 'mkdir -m 777 "$1" && cp -r "$2" "$1/99999999999999999999-1-forged"'
    as_other_user("sh", "-c", plant, "sh", str(key_dir), str(forged))

    gate.open()
    results = [holder.wait(), waiter.wait()]
    assert [r.returncode for r in results] == [0, 0], [r.output for r in results]
    for venv in venvs:
        assert world.module_version(venv, "slowpkg") == "1.0"
    assert any(key[:12] in line for line in results[1].warnings()), results[1].stderr
    assert all("Traceback" not in r.output for r in results)


# --- 3. files are read only if regular, never waited on ---------------------------------------------------


def run_bounded(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """pipguard ``args``, failing the test (not hanging it) if it blocks."""
    try:
        return subprocess.run(
            world.pipguard_cmd(*args), env=world.env, cwd=world.root, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=HANG_BOUND,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"pipguard {' '.join(args)} hung on a FIFO in the cache")


def forget_builds(world: World, entry: Path | None = None) -> None:
    """Drop pip's own wheel cache (and ``entry``), so that the next install builds again."""
    shutil.rmtree(world.env["PIP_CACHE_DIR"], ignore_errors=True)
    if entry is not None:
        shutil.rmtree(entry)


def test_a_fifo_in_a_record_directory_hangs_nothing(world: World, dists: Dists) -> None:
    """A FIFO where a record should be: ``guard status`` answers, and a build of that very key works."""
    assert world.pipguard(*install_args(world.venv("first"), dists.index.url, "alpha")).returncode == 0
    (entry,) = entries(world)
    key = entry.name
    forget_builds(world, entry)  # the next install builds that key again, with records beside its lock
    record_dir = world.store.record_dir(key)
    record_dir.mkdir(mode=0o700, exist_ok=True)
    os.mkfifo(record_dir / "holder-elsewhere-1-0-0000.json", 0o600)

    shown = run_bounded(world, "guard", "status")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    second = world.venv("second")
    installed = run_bounded(world, *install_args(second, dists.index.url, "alpha"))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert world.module_version(second, "alpha") == "1.0"
    assert world.hooks("build_wheel", "alpha") == 2
    assert stat.S_ISFIFO((record_dir / "holder-elsewhere-1-0-0000.json").lstat().st_mode)  # passed over


def test_a_fifo_for_a_manifest_is_set_aside(world: World, dists: Dists) -> None:
    """An entry whose manifest is a FIFO is damaged: set aside and rebuilt, not waited on."""
    assert world.pipguard(*install_args(world.venv("first"), dists.index.url, "alpha")).returncode == 0
    (entry,) = entries(world)
    (entry / "manifest.json").unlink()
    os.mkfifo(entry / "manifest.json", 0o600)
    forget_builds(world)
    assert run_bounded(world, "guard", "cache", "list").returncode == 0
    second = world.venv("second")
    installed = run_bounded(world, *install_args(second, dists.index.url, "alpha"))
    assert installed.returncode == 0, installed.stderr
    assert world.module_version(second, "alpha") == "1.0"
    (rebuilt,) = entries(world)
    assert (rebuilt / "manifest.json").is_file()


# --- 5. build code never sees pipguard's settings --------------------------------------------------------

ENV_DUMP_BACKEND = '''\
"""The fixture backend, writing the environment each hook runs in to $FIXTURE_ENV_DUMP/<random>-<hook>.json."""
import json
import os

import fixture_backend
from fixture_backend import *  # noqa: F403


def _dumped(hook):
    def call(*args, **kwargs):
        directory = os.environ["FIXTURE_ENV_DUMP"]
        # pids repeat across builds in pid namespaces of their own (a writer's sandbox): a random name
        with open(os.path.join(directory, f"{os.urandom(8).hex()}-{hook}.json"), "w") as handle:
            json.dump(dict(os.environ), handle)
        return getattr(fixture_backend, hook)(*args, **kwargs)
    return call


for _hook in ("get_requires_for_build_wheel", "prepare_metadata_for_build_wheel", "build_wheel"):
    globals()[_hook] = _dumped(_hook)
'''


def env_dumping_sdist(root: Path, name: str, dist_dir: Path) -> Path:
    """An sdist whose backend records the environment of every hook it runs."""
    project = make_project(root, name)
    (project / "_backend" / "env_dump_backend.py").write_text(ENV_DUMP_BACKEND)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"fixture_backend"', '"env_dump_backend"'))
    return make_sdist(project, dist_dir)


SECRET = "s3cret-t0ken"


@pytest.mark.parametrize("names", [("envone",), ("envone", "envtwo")], ids=["one-build", "builds-side-by-side"])
def test_builds_never_see_pipguards_variables(world: World, names: tuple[str, ...]) -> None:
    """The remote store's token and signing key, and every other PIPGUARD_* variable, reach neither the
    backend pip runs for one build nor pipguard's build children for builds side by side;
    the remote tier still has them (it uploads, signed)."""
    dists = world.root / "dists"
    for name in names:
        env_dumping_sdist(world.root / "src", name, dists)
    dumps = world.root / "dumps"
    dumps.mkdir()
    keypair = openssl_keypair(world.root / "keys", "writer")
    store = world.root / "store"
    store.mkdir()
    secrets = {
        "PIPGUARD_REMOTE": store.as_uri(),
        "PIPGUARD_REMOTE_WRITE": "1",
        "PIPGUARD_REMOTE_TOKEN": SECRET,
        "PIPGUARD_REMOTE_SIGNING_KEY": str(keypair.private),
        "PIPGUARD_JOBS": "2",
        "PIPGUARD_SOMETHING_NEW": "x",
    }
    venv = world.venv("v")
    pins = [f"{name}==1.0" for name in names]
    with IndexServer(dists) as index:
        result = world.pipguard(*install_args(venv, index.url, *pins), env={**secrets, "FIXTURE_ENV_DUMP": str(dumps)})
    assert result.returncode == 0, result.output
    assert result.warnings() == [], result.stderr
    seen = [json.loads(path.read_text()) for path in sorted(dumps.iterdir())]
    assert len([path for path in dumps.iterdir() if path.name.endswith("-build_wheel.json")]) == len(names)
    for environment in seen:
        assert [name for name in environment if name.startswith("PIPGUARD_")] == []
        assert not any(SECRET in value or str(keypair.private) in value for value in environment.values())
    assert len(list(store.glob("v*/blobs/*/*.whl"))) == len(names)  # the remote tier kept its settings


def test_an_index_authenticated_through_netrc_still_works(world: World, dists: Dists) -> None:
    """``NETRC`` is pip's too: pip reads it for every index request (and its build-dependency installs
    do), so pipguard leaves it in place, as plain pip would."""
    netrc = world.root / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password n3trc-secret\n")
    netrc.chmod(0o600)
    with IndexServer(dists.directory, auth=("user", "n3trc-secret")) as index:
        venv = world.venv("v")
        result = world.pipguard(*install_args(venv, index.url, "alpha"), env={"NETRC": str(netrc)})
    assert result.returncode == 0, result.output
    assert world.module_version(venv, "alpha") == "1.0"
