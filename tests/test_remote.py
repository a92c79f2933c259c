"""The fleet tier against a real store: nginx with WebDAV PUT (and a shared directory), several "machines"
(each its own cache, its own processes), real keys from openssl.

What must hold: a writer's wheel reaches another machine with no build there; a reader trusting one key
never installs what another writer published, even first; a tampered blob is never installed; a store
that is down, hangs, refuses or fails costs an install a warning, never the install; and nothing is left
half-written, on the store or in a cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.processes import install_args
from support.remote import Hanging, KeyPair, Nginx, free_port, nginx_binary, openssl_keypair, start_nginx
from pipguard.store import Store

SECRET = "tok-3f9a1c-never-shown"


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does it)")
    server = start_nginx(binary, tmp_path_factory.mktemp("nginx"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("keys")
    return {name: openssl_keypair(directory, name) for name in ("trusted", "untrusted")}


def machine(world: World, name: str, **remote: str) -> dict[str, str]:
    """The environment of one machine: its own caches, and the remote settings given."""
    return {
        "PIPGUARD_CACHE_DIR": str(world.root / name / "cache"),
        "PIP_CACHE_DIR": str(world.root / name / "pip-cache"),
        **remote,
    }


def install(world: World, dists: Dists, env: dict[str, str], venv: str, *projects: str, verbose: bool = False) -> Result:
    options = ("-v",) if verbose else ()
    result = world.pipguard(*install_args(world.venv(venv), dists.index.url, *projects, options=options), env=env)
    assert result.returncode == 0, result.output
    assert SECRET not in result.output
    return result


def poisoned(world: World, venv: str, module: str) -> bool:
    check = world.run([str(world.root / "venvs" / venv / "bin" / "python"), "-c", f"import {module}; print(getattr({module}, 'POISONED', False))"])
    assert check.returncode == 0, check.output
    return check.stdout.strip() == "True"


def store_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def assert_whole(store: Path) -> None:
    """Every manifest on the store names a blob that is there and matches; no temporary is left."""
    for path in store_files(store):
        assert not path.name.startswith(".tmp-"), path
        assert SECRET.encode() not in path.read_bytes()
    for manifest in store.glob("v2/keys/*/*.json"):
        document = json.loads(manifest.read_text())
        assert set(document) == {"format", "key", "wheel", "size", "sha256", "created", "writer", "signature"}
        blob = store / "v2" / "blobs" / document["sha256"] / document["wheel"]
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == document["sha256"]


def assert_no_leftovers(world: World, *machines: str) -> None:
    for name in machines:
        tmp = Store(world.root / name / "cache").tmp
        assert list(tmp.iterdir()) == [] if tmp.is_dir() else True, name


def remote_counts(world: World, env: dict[str, str]) -> str:
    info = world.pipguard("guard", "cache", "info", env=env)
    assert info.returncode == 0, info.output
    return next(line for line in info.stdout.splitlines() if line.startswith("Remote: "))


# --- sharing ---------------------------------------------------------------------------------------


def test_a_writer_publishes_and_another_machine_installs_without_building(
    world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair]
) -> None:
    url = nginx.url(prefix=world.root.name)
    writer = machine(world, "writer", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1",
                     PIPGUARD_REMOTE_SIGNING_KEY=str(keys["trusted"].private), PIPGUARD_REMOTE_TOKEN=SECRET)
    install(world, dists, writer, "w", "alpha")
    assert world.hooks("build_wheel", "alpha") == 1
    store = nginx.store / world.root.name
    assert [p.parent.name for p in store.glob("v2/blobs/*/*.whl")] and len(list(store.glob("v2/keys/*/*.json"))) == 2
    assert_whole(store)

    reader = machine(world, "reader", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    result = install(world, dists, reader, "r", "alpha", verbose=True)
    assert world.hooks("build_wheel", "alpha") == 1  # no build on the reader
    assert world.module_version(world.root / "venvs" / "r", "alpha") == "1.0"
    assert "pipguard: remote cache " in result.stderr and "1 hit" in result.stderr
    assert remote_counts(world, reader).startswith("Remote: 1 hit, 0 miss, 0 rejected, 0 error")
    assert_no_leftovers(world, "writer", "reader")


def test_an_untrusted_writer_first_never_shadows_the_trusted_one(
    world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair]
) -> None:
    url = nginx.url(prefix=world.root.name)
    attacker = machine(world, "attacker", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1",
                       PIPGUARD_REMOTE_SIGNING_KEY=str(keys["untrusted"].private), FIXTURE_POISON="1")
    install(world, dists, attacker, "a", "beta")
    assert poisoned(world, "a", "beta")
    trusting = {"PIPGUARD_REMOTE": url, "PIPGUARD_REMOTE_VERIFY_KEY": str(keys["trusted"].public)}

    early = install(world, dists, machine(world, "early-reader", **trusting), "early", "beta")
    assert not poisoned(world, "early", "beta")  # a miss: built here
    assert world.hooks("build_wheel", "beta") == 2 and early.warnings() == []

    trusted = machine(world, "trusted", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1",
                      PIPGUARD_REMOTE_SIGNING_KEY=str(keys["trusted"].private))
    install(world, dists, trusted, "t", "beta")
    assert world.hooks("build_wheel", "beta") == 3
    install(world, dists, machine(world, "late-reader", **trusting), "late", "beta")
    assert world.hooks("build_wheel", "beta") == 3  # the trusted writer's wheel, no build
    assert not poisoned(world, "late", "beta")
    # A reader with no verify key trusts whoever can write: it gets the first writer's wheel.
    install(world, dists, machine(world, "naive", PIPGUARD_REMOTE=url), "naive", "beta")
    assert poisoned(world, "naive", "beta")
    assert_whole(nginx.store / world.root.name)


def test_a_tampered_blob_is_rejected_and_never_installed(
    world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair]
) -> None:
    url = nginx.url(prefix=world.root.name)
    install(world, dists, machine(world, "writer", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1",
                                  PIPGUARD_REMOTE_SIGNING_KEY=str(keys["trusted"].private)), "w", "gamma")
    install(world, dists, machine(world, "evil", FIXTURE_POISON="1"), "evil", "gamma")
    (blob,) = (nginx.store / world.root.name).glob("v2/blobs/*/*.whl")
    (evil_wheel,) = (world.root / "evil" / "cache").glob("v1/wheels/*/*/*.whl")
    blob.write_bytes(evil_wheel.read_bytes())  # the server's copy swapped for a poisoned build

    reader = machine(world, "reader", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    result = install(world, dists, reader, "r", "gamma")
    assert not poisoned(world, "r", "gamma")
    assert world.hooks("build_wheel", "gamma") == 3  # writer, evil, and the reader's own
    assert len(result.warnings()) == 1 and "not using the remote cache's wheel for gamma" in result.warnings()[0]
    assert remote_counts(world, reader).startswith("Remote: 0 hit, 0 miss, 1 rejected")
    assert_no_leftovers(world, "reader")


# --- a store that fails ----------------------------------------------------------------------------


def test_a_store_that_is_down_costs_one_warning(world: World, dists: Dists) -> None:
    env = machine(world, "m", PIPGUARD_REMOTE=f"http://127.0.0.1:{free_port()}", PIPGUARD_REMOTE_WRITE="1")
    result = install(world, dists, env, "v", "alpha", "beta")
    assert world.hooks("build_wheel") == 2
    assert len(result.warnings()) == 1 and "unavailable" in result.warnings()[0]
    assert_no_leftovers(world, "m")


def test_a_store_that_never_answers_is_asked_once_and_given_up(world: World, dists: Dists) -> None:
    with Hanging() as hanging:
        env = machine(world, "m", PIPGUARD_REMOTE=hanging.url, PIPGUARD_REMOTE_TIMEOUT="1", PIPGUARD_REMOTE_WRITE="1")
        result = install(world, dists, env, "v", "alpha", "beta")
        accepted = hanging.accepted
    assert accepted == 1  # switched off after the first timeout, for both packages and the upload
    assert world.hooks("build_wheel") == 2
    assert len(result.warnings()) == 1 and "timed out" in result.warnings()[0]


@pytest.mark.parametrize("kind, status", [("ro", "403"), ("small", "413"), ("broken", "500")])
def test_a_store_that_refuses_or_fails_costs_a_warning_and_leaves_nothing(
    world: World, dists: Dists, nginx: Nginx, kind: str, status: str
) -> None:
    env = machine(world, "m", PIPGUARD_REMOTE=nginx.url(kind, world.root.name), PIPGUARD_REMOTE_WRITE="1")
    result = install(world, dists, env, "v", "alpha", "beta")
    assert world.hooks("build_wheel") == 2
    assert len(result.warnings()) == 1 and status in result.warnings()[0]
    assert store_files(nginx.store / world.root.name) == []
    assert list((nginx.base / "temp" / "client_body").iterdir()) == []
    assert_no_leftovers(world, "m")


# --- a shared directory, and the commands ---------------------------------------------------------


def test_a_file_store_shares_signed_wheels(world: World, dists: Dists, keys: dict[str, KeyPair]) -> None:
    shared = world.root / "shared"
    missing = install(world, dists, machine(world, "unmounted", PIPGUARD_REMOTE=shared.as_uri(), PIPGUARD_REMOTE_WRITE="1"), "u", "leafpkg")
    assert "does not exist" in missing.warnings()[0] and not shared.exists()  # never written as a local dir
    shared.mkdir()
    url = shared.as_uri()
    install(world, dists, machine(world, "writer", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1",
                                  PIPGUARD_REMOTE_SIGNING_KEY=str(keys["trusted"].private)), "w", "midpkg")
    assert world.hooks("build_wheel") == 3  # leafpkg on the unmounted machine; midpkg and leafpkg here
    assert_whole(shared)
    reader = machine(world, "reader", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    install(world, dists, reader, "r", "midpkg")
    assert world.hooks("build_wheel") == 3
    assert remote_counts(world, reader).startswith("Remote: 2 hit")


def test_remote_status_and_push(world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair]) -> None:
    url = nginx.url(prefix=world.root.name)
    local = machine(world, "builder")
    install(world, dists, local, "b", "leafpkg")  # built with no remote at all
    writing = {**local, "PIPGUARD_REMOTE": url.replace("http://", f"http://ci:{SECRET}@"), "PIPGUARD_REMOTE_WRITE": "1",
               "PIPGUARD_REMOTE_SIGNING_KEY": str(keys["trusted"].private)}
    status = world.pipguard("guard", "remote", "status", env=writing)
    assert status.returncode == 0, status.output
    assert SECRET not in status.output and f"Remote cache: {url}" in status.stdout
    assert "Reachable: yes" in status.stdout and "Write probe: ok" in status.stdout
    pushed = world.pipguard("guard", "remote", "push", env=writing)
    assert pushed.returncode == 0 and "Uploaded 1 of 1" in pushed.stdout, pushed.output
    assert_whole(nginx.store / world.root.name)

    reader = machine(world, "reader", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    install(world, dists, reader, "r", "leafpkg")
    assert world.hooks("build_wheel", "leafpkg") == 1
    read_only = world.pipguard("guard", "remote", "status", env={**reader, "PIPGUARD_REMOTE": nginx.url("ro")})
    assert read_only.returncode == 0 and "Mode: read-only" in read_only.stdout
    refused = world.pipguard("guard", "remote", "status", env={**writing, "PIPGUARD_REMOTE": nginx.url("ro")})
    assert refused.returncode == 1 and "Write probe: failed" in refused.stdout and "403" in refused.stdout
    for directory in (world.root / "builder", world.root / "reader"):
        assert not [p for p in directory.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
