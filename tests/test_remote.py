"""The fleet tier against a real store: nginx with WebDAV PUT (and a shared directory), several "machines"
(each its own cache, its own processes), real keys from openssl.

What must hold: a writer's wheel reaches another machine with no build there; a reader trusting one key
never installs what another writer published, even first; a tampered blob is never installed; a store
that is down, hangs, refuses or fails costs an install a warning, never the install; and nothing is left
half-written, on the store or in a cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.processes import install_args, install_cmd
from support.remote import (
    Hanging,
    HostileStore,
    KeyPair,
    Nginx,
    RecordingProxy,
    free_port,
    nginx_binary,
    openssl_keypair,
    other_python,
    start_nginx,
)
from pipguard import sandbox
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
    """The environment of one machine: its own caches, and the remote settings given. A writer uploads only
    what it built in a sandbox (pipguard/sandbox.py): where none can be made, its tests are skipped."""
    bwrap, reason = sandbox.availability()
    if remote.get("PIPGUARD_REMOTE_WRITE") and bwrap is None:
        pytest.skip(f"a writer uploads only builds made in a sandbox, and none can be made here: {reason}")
    return {
        "PIPGUARD_CACHE_DIR": str(world.root / name / "cache"),
        "PIP_CACHE_DIR": str(world.root / name / "pip-cache"),
        **remote,
    }


def install(
    world: World, dists: Dists, env: dict[str, str], venv: str, *projects: str, verbose: bool = False,
    options: Sequence[str] = (),
) -> Result:
    options = (*options, "-v") if verbose else tuple(options)
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
    assert "Unsafe import" not in result.output  # pip 26.3 warns of modules first imported after installing
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
        # One build at a time (the two sdists would otherwise be built ahead, each asking the store at once).
        env = machine(
            world, "m", PIPGUARD_REMOTE=hanging.url, PIPGUARD_REMOTE_TIMEOUT="1", PIPGUARD_REMOTE_WRITE="1", PIPGUARD_JOBS="1"
        )
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


# --- trust under attack: what a store, or whoever can write to it, cannot make a reader do ----------------


def published(world: World, dists: Dists, project: str, *, signed_by: KeyPair | None = None, poison: bool = False) -> Path:
    """A writer machine builds ``project`` into a new shared directory; returns the store's root."""
    shared = world.root / f"store-{project}"
    shared.mkdir(exist_ok=True)
    env = machine(world, f"writer-{project}", PIPGUARD_REMOTE=shared.as_uri(), PIPGUARD_REMOTE_WRITE="1",
                  **({"PIPGUARD_REMOTE_SIGNING_KEY": str(signed_by.private)} if signed_by else {}),
                  **({"FIXTURE_POISON": "1"} if poison else {}))
    install(world, dists, env, f"writer-{project}", project)
    return shared


def key_dir(store: Path) -> Path:
    (directory,) = (store / "v2" / "keys").iterdir()
    return directory


def local_build(world: World, result: Result, venv: str, project: str, builds: int) -> None:
    """The reader built ``project`` itself (the store's wheel was not installed), with one warning."""
    assert world.hooks("build_wheel", project) == builds
    assert not poisoned(world, venv, project)
    assert len(result.warnings()) == 1, result.stderr


@pytest.mark.parametrize("blank", ["", " ", ":"])
def test_a_verify_key_set_to_nothing_switches_the_remote_off(world: World, dists: Dists, blank: str) -> None:
    store = published(world, dists, "alpha", poison=True)
    reader = machine(world, "reader", PIPGUARD_REMOTE=store.as_uri(), PIPGUARD_REMOTE_VERIFY_KEY=blank)
    result = install(world, dists, reader, "r", "alpha")
    local_build(world, result, "r", "alpha", 2)
    assert "PIPGUARD_REMOTE_VERIFY_KEY: set, but names no key file" in result.warnings()[0]


def test_a_small_order_verify_key_switches_the_remote_off(world: World, dists: Dists) -> None:
    """The identity point as a verify key: OpenSSL would take R = identity, S = 0 as its signature of any
    manifest, so a forged manifest in its name would pass. The key itself is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    store = published(world, dists, "alpha", poison=True)
    identity = Ed25519PublicKey.from_public_bytes(bytes([1]) + bytes(31))
    pem = world.root / "identity.pub.pem"
    pem.write_bytes(identity.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    writer_id = "ed25519-" + hashlib.sha256(bytes([1]) + bytes(31)).hexdigest()[:32]
    document = json.loads((key_dir(store) / "anyone.json").read_text())
    forged = {**document, "writer": writer_id, "signature": base64.b64encode(bytes([1]) + bytes(63)).decode()}
    (key_dir(store) / f"{writer_id}.json").write_text(json.dumps(forged))

    reader = machine(world, "reader", PIPGUARD_REMOTE=store.as_uri(), PIPGUARD_REMOTE_VERIFY_KEY=str(pem))
    result = install(world, dists, reader, "r", "alpha")
    local_build(world, result, "r", "alpha", 2)
    assert "small order" in result.warnings()[0]


def test_plain_http_to_another_host_needs_a_verify_key_or_an_opt_in(
    world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair]
) -> None:
    """``127.1`` reaches this machine, but is not a spelling pipguard takes for loopback (127.x.y.z, ::1,
    localhost): it stands for a host across a network without a packet leaving this one."""
    url = nginx.url(prefix=world.root.name)
    install(world, dists, machine(world, "attacker", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1", FIXTURE_POISON="1"), "a", "alpha")
    far = url.replace("127.0.0.1", "127.1")
    result = install(world, dists, machine(world, "reader", PIPGUARD_REMOTE=far), "r", "alpha")
    local_build(world, result, "r", "alpha", 2)
    assert "plain http://" in result.warnings()[0] and "PIPGUARD_REMOTE_ALLOW_HTTP=1" in result.warnings()[0]
    verifying = machine(world, "verifying", PIPGUARD_REMOTE=far, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    assert install(world, dists, verifying, "v", "alpha").warnings() == []  # used: a miss, nothing signed
    opted_in = install(world, dists, machine(world, "opted-in", PIPGUARD_REMOTE=far, PIPGUARD_REMOTE_ALLOW_HTTP="1"), "o", "alpha")
    assert opted_in.warnings() == [] and poisoned(world, "o", "alpha")  # the opt-in trusts the network too
    assert world.hooks("build_wheel", "alpha") == 3


def test_a_signed_manifest_with_another_size_is_rejected_before_its_blob_is_read(
    world: World, dists: Dists, keys: dict[str, KeyPair]
) -> None:
    store = published(world, dists, "alpha", signed_by=keys["trusted"])
    signed = key_dir(store) / f"{load_writer_id(keys['trusted'])}.json"
    document = json.loads(signed.read_text())
    signed.write_text(json.dumps({**document, "size": 1 << 40}))
    with HostileStore(store) as hostile:
        hostile.lies[f"v2/blobs/{document['sha256']}/{document['wheel']}"] = "drip"
        reader = machine(world, "reader", PIPGUARD_REMOTE=hostile.url, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
        result = install(world, dists, reader, "r", "alpha")
    assert world.hooks("build_wheel", "alpha") == 2
    assert len(result.warnings()) == 1 and "signature does not verify" in result.warnings()[0]
    assert not hostile.asked.is_set() and [p for p in hostile.requests if "/blobs/" in p] == []


def test_a_store_that_serves_more_than_the_size_is_cut_off_at_one_byte_more(world: World, dists: Dists) -> None:
    store = published(world, dists, "alpha")
    document = json.loads((key_dir(store) / "anyone.json").read_text())
    with HostileStore(store) as hostile:
        hostile.lies[f"v2/blobs/{document['sha256']}/{document['wheel']}"] = "overflow"
        result = install(world, dists, machine(world, "reader", PIPGUARD_REMOTE=hostile.url), "r", "alpha")
        assert hostile.asked.is_set()
    assert world.hooks("build_wheel", "alpha") == 2
    assert len(result.warnings()) == 1 and f"more than the {document['size']} bytes expected" in result.warnings()[0]
    assert hostile.hung_up  # it hung up after size + 1 bytes, not waiting for more
    assert_no_leftovers(world, "reader")


def test_a_store_that_trickles_is_cut_off_at_the_deadline(world: World, dists: Dists) -> None:
    store = published(world, dists, "alpha")
    with HostileStore(store) as hostile:
        hostile.lies[f"v2/keys/{key_dir(store).name}/anyone.json"] = "drip"
        # One build at a time: alpha's lookup meets the drip first (built ahead, beta's upload could come first).
        env = machine(
            world, "reader", PIPGUARD_REMOTE=hostile.url, PIPGUARD_REMOTE_DEADLINE="3", PIPGUARD_REMOTE_WRITE="1", PIPGUARD_JOBS="1"
        )
        started = time.monotonic()
        result = install(world, dists, env, "r", "alpha", "beta")
        took = time.monotonic() - started
    assert took < 60, took  # the drip alone would take two minutes
    assert world.hooks("build_wheel", "alpha") == 2 and world.hooks("build_wheel", "beta") == 1
    assert len(result.warnings()) == 1 and "took longer than 3s in all" in result.warnings()[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_install_stops_its_fetches_at_once(world: World, dists: Dists, signum: int) -> None:
    """Pinned sdists are fetched in build-ahead threads; a signal to pipguard ends them, trickling or not."""
    store = published(world, dists, "alpha")
    with HostileStore(store) as hostile:
        hostile.lies[f"v2/keys/{key_dir(store).name}/anyone.json"] = "drip"
        env = machine(world, "reader", PIPGUARD_REMOTE=hostile.url, PIPGUARD_REMOTE_DEADLINE="600", PIPGUARD_JOBS="2")
        process = world.start(install_cmd(world, world.venv("r"), dists.index.url, "alpha==1.0", "beta==1.0"), "reader", env=env)
        assert hostile.asked.wait(120), process.stderr_so_far()
        started = time.monotonic()
        process.popen.send_signal(signum)
        result = process.wait(timeout=120)
        took = time.monotonic() - started
    assert result.returncode != 0
    assert took < 60, took  # the drip alone would take two minutes, the deadline ten
    assert "Traceback" not in result.stderr
    assert_no_leftovers(world, "reader")


def test_a_fifo_on_a_file_store_is_refused_at_once(world: World, dists: Dists) -> None:
    store = published(world, dists, "alpha")
    manifest = key_dir(store) / "anyone.json"
    manifest.unlink()
    os.mkfifo(manifest)
    result = install(world, dists, machine(world, "reader", PIPGUARD_REMOTE=store.as_uri()), "r", "alpha")
    assert world.hooks("build_wheel", "alpha") == 2
    assert len(result.warnings()) == 1 and "not a regular file" in result.warnings()[0]


def test_a_token_for_a_loopback_store_never_goes_through_a_proxy(
    world: World, dists: Dists, nginx: Nginx
) -> None:
    """A loopback store is this machine: reached directly, whatever proxy the command has (pip's index
    traffic goes through the proxy, so it is in use), and its bearer token is never seen by the proxy."""
    url = nginx.url(prefix=world.root.name)
    install(world, dists, machine(world, "writer", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_WRITE="1"), "w", "alpha")
    with RecordingProxy() as proxy:
        proxied = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
        reader = machine(world, "reader", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_TOKEN=SECRET, **proxied)
        install(world, dists, reader, "r", "alpha", verbose=True)
        with_option = machine(world, "option", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_TOKEN=SECRET)
        install(world, dists, with_option, "o", "alpha", options=("--proxy", proxy.url))
        seen = "\n".join(proxy.seen)
    assert "/simple/" in seen  # the proxy was used, by pip
    assert SECRET not in seen and "/v2/" not in seen
    assert world.hooks("build_wheel", "alpha") == 1  # both readers had the writer's wheel from the store


def test_hash_checking_without_a_verify_key_keeps_the_store_out(
    world: World, dists: Dists, keys: dict[str, KeyPair]
) -> None:
    store = published(world, dists, "alpha", poison=True)
    sha256 = hashlib.sha256(dists.sdist("alpha").read_bytes()).hexdigest()
    requirements = world.root / "requirements.txt"
    requirements.write_text(f"alpha==1.0 --hash=sha256:{sha256}\n")
    naive = machine(world, "naive", PIPGUARD_REMOTE=store.as_uri())
    result = install(world, dists, naive, "n", "-r", str(requirements))
    assert world.hooks("build_wheel", "alpha") == 2 and not poisoned(world, "n", "alpha")
    assert result.warnings() == [] and remote_counts(world, naive).startswith("Remote: 0 hit, 0 miss, 0 rejected")
    signed = published(world, dists, "beta", signed_by=keys["trusted"])
    beta = hashlib.sha256(dists.sdist("beta").read_bytes()).hexdigest()
    requirements.write_text(f"beta==1.0 --hash=sha256:{beta}\n")
    verifying = machine(world, "verifying", PIPGUARD_REMOTE=signed.as_uri(), PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    install(world, dists, verifying, "v", "--require-hashes", "-r", str(requirements))
    assert world.hooks("build_wheel", "beta") == 1  # vouched for by a verify key: used
    assert remote_counts(world, verifying).startswith("Remote: 1 hit")


@pytest.mark.parametrize("no_binary", ["alpha", ":all:"])
def test_no_binary_means_built_here(world: World, dists: Dists, no_binary: str) -> None:
    store = published(world, dists, "alpha", poison=True)
    reader = machine(world, "reader", PIPGUARD_REMOTE=store.as_uri())
    result = install(world, dists, reader, "r", "alpha", options=("--no-binary", no_binary))
    assert world.hooks("build_wheel", "alpha") == 2 and not poisoned(world, "r", "alpha")
    assert result.warnings() == []


def test_no_index_alone_still_uses_the_store(world: World, dists: Dists) -> None:
    store = published(world, dists, "alpha")
    reader = machine(world, "reader", PIPGUARD_REMOTE=store.as_uri())
    args = ["--python", str(world.venv("r")), "install", "--no-index", "--find-links", str(dists.directory), "alpha"]
    result = world.pipguard(*args, env=reader)
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "alpha") == 1 and remote_counts(world, reader).startswith("Remote: 1 hit")


def _rewrite(wheel: Path, target: Path, rename: dict[str, str], extra: dict[str, str]) -> Path:
    """A copy of ``wheel`` at ``target`` with members renamed (by prefix) and members added."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            name = item.filename
            for old, new in rename.items():
                name = name.replace(old, new, 1) if name.startswith(old) else name
            out.writestr(name, source.read(item))
        for name, text in extra.items():
            out.writestr(name, text)
    return target


@pytest.mark.parametrize("lie", ["another project", "a member outside", "another dist-info"])
def test_a_hostile_unsigned_store_cannot_publish_a_bad_wheel_locally(world: World, dists: Dists, lie: str) -> None:
    store = published(world, dists, "alpha")
    document = json.loads((key_dir(store) / "anyone.json").read_text())
    honest = store / "v2" / "blobs" / document["sha256"] / document["wheel"]
    made = world.root / "made"
    made.mkdir()
    if lie == "another project":
        bad = _rewrite(honest, made / "evilpkg-1.0-py3-none-any.whl", {"alpha": "evilpkg"}, {})
    elif lie == "a member outside":
        bad = _rewrite(honest, made / honest.name, {}, {"../../escape.pth": "import os\n"})
    else:
        bad = _rewrite(honest, made / honest.name, {"alpha-1.0.dist-info": "evilpkg-1.0.dist-info"}, {})
    sha256 = hashlib.sha256(bad.read_bytes()).hexdigest()
    (store / "v2" / "blobs" / sha256).mkdir()
    shutil.copy(bad, store / "v2" / "blobs" / sha256 / bad.name)
    lying = {**document, "wheel": bad.name, "sha256": sha256, "size": bad.stat().st_size}
    (key_dir(store) / "anyone.json").write_text(json.dumps(lying))

    reader = machine(world, "reader", PIPGUARD_REMOTE=store.as_uri())
    result = install(world, dists, reader, "r", "alpha")
    assert world.hooks("build_wheel", "alpha") == 2
    assert len(result.warnings()) == 1 and "not using the remote cache's wheel for alpha" in result.warnings()[0]
    cached = [p.name for p in (world.root / "reader" / "cache").rglob("*.whl")]
    assert cached == ["alpha-1.0-py3-none-any.whl"]
    assert world.module_version(world.root / "venvs" / "r", "alpha") == "1.0"
    assert not list(world.root.rglob("escape.pth"))
    assert_no_leftovers(world, "reader")


def test_a_target_where_cryptography_does_not_load_installs_without_the_remote(world: World, dists: Dists) -> None:
    """Under a target of another Python version, pipguard's cryptography (its extension needs
    _cffi_backend, built for pipguard's Python) does not import: the remote is off, the install goes on."""
    python = other_python()
    if python is None:
        pytest.skip("no CPython 3.11+ of another minor version on this machine")
    venv = world.root / "venvs" / "other"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    store = published(world, dists, "alpha")
    reader = machine(world, "reader", PIPGUARD_REMOTE=store.as_uri())
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha"), env=reader)
    assert result.returncode == 0, result.output
    assert world.hooks("build_wheel", "alpha") == 2
    assert len(result.warnings()) == 1 and "cryptography" in result.warnings()[0], result.stderr
    assert "Traceback" not in result.stderr


def load_writer_id(pair: KeyPair) -> str:
    from pipguard.remote.keyfiles import load_public

    return load_public(pair.public)[0].writer_id
