"""A writer's builds cannot reach its secrets or the cache (pipguard/sandbox.py), against a real store.

A hostile sdist (the fixture backend's ``FIXTURE_PROBE``) tries to read the signing key, the netrc and the
token (its own environment, its parent's, every process's it can see) and to list pipguard's cache, and
ships what it saw in its wheel. In bubblewrap it sees none of it, and its wheel is still uploaded, signed;
where no sandbox can be made, the same probe sees the writer's secrets, and the writer uploads nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Dists, World
from support.projects import make_project, make_sdist
from support.remote import KeyPair, Nginx
from test_remote import SECRET, assert_whole, install, keys, machine, nginx  # noqa: F401 - fixtures

from pipguard import sandbox
from pipguard.store import Store

PROBED = "probepkg"


def _needs_a_sandbox() -> None:
    bwrap, reason = sandbox.availability()
    if bwrap is None:
        pytest.skip(f"no sandbox can be made here: {reason} (.ci/run installs bubblewrap)")


def writer(world: World, url: str, key: KeyPair, **extra: str) -> dict[str, str]:
    """A writer with a token, a netrc and a signing key, building an sdist that snoops on all three."""
    netrc = world.root / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login ci password {SECRET}\n")
    env = machine(world, "writer", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_TOKEN=SECRET,
                  PIPGUARD_REMOTE_SIGNING_KEY=str(key.private), NETRC=str(netrc), **extra)
    env["PIPGUARD_REMOTE_WRITE"] = "1"  # after machine(), which skips a writer where no sandbox can be made
    env["FIXTURE_PROBE"] = os.pathsep.join([str(key.private), str(netrc), env["PIPGUARD_CACHE_DIR"]])
    return env


def probed_sdists(world: World) -> Path:
    """A find-links directory with the snooping sdist."""
    directory = world.root / "probed"
    make_sdist(make_project(world.root / "src", PROBED, "1.0"), directory)
    return directory


def what_it_saw(world: World, venv: str) -> dict[str, Any]:
    saw: dict[str, Any] = json.loads((world.site_packages(world.root / "venvs" / venv) / PROBED / "probe.json").read_text())
    return saw


def uploaded(store: Path) -> list[str]:
    return sorted(path.name for path in store.glob("v2/blobs/*/*.whl"))


@pytest.mark.parametrize("ahead", [False, True], ids=["pip-would-build-it", "built-ahead"])
def test_a_writers_build_sees_no_secret_and_no_cache_and_its_wheel_is_still_signed_and_shared(
    world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair], ahead: bool  # noqa: F811
) -> None:
    _needs_a_sandbox()
    url = nginx.url(prefix=world.root.name)
    env = writer(world, url, keys["trusted"], PIPGUARD_JOBS="2")
    install(world, dists, env, "w", "gamma")  # the cache holds a wheel the next build must not see
    projects = (f"{PROBED}==1.0", "beta==1.0") if ahead else (PROBED,)
    find_links = ("--find-links", str(probed_sdists(world)))
    result = install(world, dists, env, "w", *projects, options=find_links)
    assert result.warnings() == []

    saw = what_it_saw(world, "w")
    text = json.dumps(saw)
    assert SECRET not in text and "PRIVATE KEY" not in text and "PIPGUARD_" not in text, text
    assert saw[str(keys["trusted"].private)].startswith("unreadable") and saw[str(world.root / "netrc")].startswith("unreadable")
    cache = saw[env["PIPGUARD_CACHE_DIR"]]
    assert cache and all("/v1/tmp/build-" in path for path in cache), cache  # its own work directory only

    store = nginx.store / world.root.name
    assert any(name.startswith(PROBED) for name in uploaded(store))
    assert_whole(store)
    reader = machine(world, "reader", PIPGUARD_REMOTE=url, PIPGUARD_REMOTE_VERIFY_KEY=str(keys["trusted"].public))
    install(world, dists, reader, "r", PROBED, options=find_links)
    assert world.hooks("build_wheel", PROBED) == 1  # the writer's signed wheel, verified, no build here

    status = world.pipguard("guard", "remote", "status", env=env)
    assert status.returncode == 0 and "Writer builds: sandboxed (bubblewrap)" in status.stdout, status.output


# Where no sandbox can be made: no bwrap at all, or one refused user namespaces (as bwrap says it then).
REFUSED = "bwrap: setting up uid map: Permission denied"
NO_SANDBOX = {"missing": ("", "bwrap is not on PATH"), "refused": (f"echo '{REFUSED}' >&2; exit 1", REFUSED)}


@pytest.mark.parametrize("why", sorted(NO_SANDBOX))
def test_a_writer_that_cannot_make_a_sandbox_builds_installs_warns_once_and_uploads_nothing(
    world: World, dists: Dists, nginx: Nginx, keys: dict[str, KeyPair], why: str  # noqa: F811
) -> None:
    script, reason = NO_SANDBOX[why]
    path = world.root / "bin"
    path.mkdir()
    if script:
        (path / "bwrap").write_text(f"#!/bin/sh\n{script}\n")
        (path / "bwrap").chmod(0o755)
    url = nginx.url(prefix=world.root.name)
    env = writer(world, url, keys["trusted"], PATH=str(path))
    result = install(world, dists, env, "w", PROBED, "gamma", options=("--find-links", str(probed_sdists(world))))
    warnings = result.warnings()
    assert len(warnings) == 1 and "not uploading builds" in warnings[0] and reason in warnings[0], warnings
    assert world.module_version(world.root / "venvs" / "w", PROBED) == "1.0"
    assert {entry.wheel.name.split("-")[0] for entry in Store(Path(env["PIPGUARD_CACHE_DIR"])).entries()} == {PROBED, "gamma"}
    assert uploaded(nginx.store / world.root.name) == []
    # The probe is no dud: unconfined, the build reads what the sandbox hides (why nothing is uploaded).
    text = json.dumps(what_it_saw(world, "w"))
    assert "PRIVATE KEY" in text and SECRET in text

    status = world.pipguard("guard", "remote", "status", env=env)
    assert "Writer builds: not sandboxed (" in status.stdout and reason in status.stdout, status.output



def run_confined(box: sandbox.Sandbox, work: Path, command: str) -> int:
    """``command`` in ``box`` as the build child runs in it: its exit code as the builder reads it."""
    with box.confine(work) as confined:
        code = subprocess.run([*confined.prefix, "sh", "-c", command], env=confined.env, pass_fds=confined.pass_fds).returncode
        return confined.exit_code(code)


def test_a_build_fails_as_itself_and_a_sandbox_that_cannot_be_made_is_pipguards_failure(tmp_path: Path) -> None:
    """The build's exit code is the child's (1: the build failed, reported as pip's); bwrap failing to make
    the sandbox (a work directory gone) is pipguard's own failure, which falls back, never a failed build."""
    _needs_a_sandbox()
    bwrap, _reason = sandbox.availability()
    assert bwrap is not None
    cache = tmp_path / "cache"
    work = cache / "v1" / "tmp" / "build-1"
    (work / "wheel").mkdir(parents=True)
    (cache / "v1" / "wheels").mkdir()
    box = sandbox.Sandbox(bwrap, (), (str(cache),), ())
    assert run_confined(box, work, f"test ! -e {cache}/v1/wheels && exit 7") == 7  # the cache is hidden
    assert run_confined(box, work, f"touch {work}/wheel/w.whl && ! touch {work}/x && exit 1") == 1
    assert (work / "wheel" / "w.whl").exists() and not (work / "x").exists()
    assert run_confined(box, tmp_path / "gone", "exit 0") == sandbox.SETUP_FAILED
