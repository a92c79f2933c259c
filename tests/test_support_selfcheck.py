"""Prove the test fixtures work with real, plain pip before pipguard relies on them."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.envs import clean_env, make_venv, venv_site_packages
from support.hooklog import count, read_hooks
from support.index import IndexServer
from support.processes import Gate
from support.projects import make_project, make_sdist


def pip_install(venv: Path, *args: str, env: dict[str, str],
                wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Plain pip (the test runner's), installing into venv via --python."""
    cmd = [sys.executable, "-m", "pip", "--python", str(venv), "install", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=300)


def test_sdist_from_index_installs_and_logs_hooks(tmp_path: Path) -> None:
    src = make_project(tmp_path / "src", "Demo-Pkg", "1.2", dependencies=["dep-one>=1"], modules=3)
    dep = make_project(tmp_path / "src", "dep-one", "1.0")
    dists = tmp_path / "dists"
    make_sdist(src, dists)
    make_sdist(dep, dists)
    venv = tmp_path / "venv"
    py = make_venv(venv)
    log = tmp_path / "hooks.jsonl"
    env = clean_env(FIXTURE_HOOK_LOG=str(log), PIP_CACHE_DIR=str(tmp_path / "cache"))
    with IndexServer(dists) as server:
        res = pip_install(venv, "--index-url", server.url, "demo-pkg", env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert server.hits["/simple/demo-pkg/"] >= 1
        assert server.hits["/files/demo_pkg-1.2.tar.gz"] == 1
    out = subprocess.run([str(py), "-c", "import Demo_Pkg.mod2, dep_one; print(Demo_Pkg.VERSION)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1.2"
    for project in ("demo-pkg", "dep-one"):
        assert count(log, "prepare_metadata_for_build_wheel", project) == 1
        assert count(log, "build_wheel", project) == 1
    assert {r["pid"] for r in read_hooks(log)}  # pid recorded
    record = next(venv_site_packages(venv).glob("demo_pkg-1.2.dist-info")) / "METADATA"
    assert "Requires-Dist: dep-one>=1" in record.read_text()


def test_local_tree_and_editable_install_with_find_links(tmp_path: Path) -> None:
    src = make_project(tmp_path / "src", "tree-pkg", "0.1")
    venv = tmp_path / "venv"
    py = make_venv(venv)
    log = tmp_path / "hooks.jsonl"
    env = clean_env(FIXTURE_HOOK_LOG=str(log), PIP_NO_CACHE_DIR="1")
    res = pip_install(venv, "--no-index", "-e", str(src), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    (src / "tree_pkg" / "__init__.py").write_text("NAME = 'tree-pkg'\nVERSION = 'edited'\n")
    out = subprocess.run([str(py), "-c", "import tree_pkg; print(tree_pkg.VERSION)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "edited"
    assert count(log, "build_editable") == 1
    assert not (src / "build" / "fixture-scratch").exists()


def test_index_basic_auth(tmp_path: Path) -> None:
    dists = tmp_path / "dists"
    make_sdist(make_project(tmp_path / "src", "secret", "2.0"), dists)
    with IndexServer(dists, auth=("user", "token"), hashes=False) as server:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "secret/", timeout=10)
        assert info.value.code == 401
        assert server.auth_url == f"http://user:token@127.0.0.1:{server.port}/simple/"
        venv = tmp_path / "venv"
        make_venv(venv)
        env = clean_env(PIP_NO_CACHE_DIR="1")
        res = pip_install(venv, "--index-url", server.auth_url, "secret", env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert server.hits["/files/secret-2.0.tar.gz"] == 1
        with _authed(server, "secret/") as page:
            assert "#sha256=" not in page.read().decode()
        with pytest.raises(urllib.error.HTTPError) as info:
            _authed(server, "nope/")
        assert info.value.code == 404


def _authed(server: IndexServer, rel: str):  # type: ignore[no-untyped-def]
    req = urllib.request.Request(server.url + rel)
    req.add_header("Authorization", "Basic dXNlcjp0b2tlbg==")  # user:token
    return urllib.request.urlopen(req, timeout=10)


def test_make_sdist_is_deterministic(tmp_path: Path) -> None:
    a = make_sdist(make_project(tmp_path / "a", "same", "1.0", ["x"], 2), tmp_path / "da")
    time.sleep(1.1)  # different file mtimes must not matter
    b = make_sdist(make_project(tmp_path / "b", "same", "1.0", ["x"], 2), tmp_path / "db")
    assert a.name == b.name == "same-1.0.tar.gz"
    assert a.read_bytes() == b.read_bytes()


def test_concurrent_builds_collide_in_tree_but_not_from_sdists(tmp_path: Path) -> None:
    """Reproduces setuptools#3119 with plain pip, and shows unpacked sdists are immune."""
    src = make_project(tmp_path / "src", "racy", "1.0")
    gate = Gate(tmp_path / "gate")
    env = clean_env(**gate.env, PIP_NO_CACHE_DIR="1")
    venvs = [tmp_path / f"v{i}" for i in range(2)]
    for v in venvs:
        make_venv(v)

    first = pip_install(venvs[0], "--no-index", str(src), env=env, wait=False)
    gate.wait_started(1, timeout=60)
    second = pip_install(venvs[1], "--no-index", str(src), env=env)
    assert second.returncode != 0
    assert "File exists" in second.stdout + second.stderr
    gate.open()
    assert first.wait(timeout=120) == 0, first.stdout.read()  # type: ignore[union-attr]

    gate.reset()
    sdist = make_sdist(src, tmp_path / "dists")
    venvs = [tmp_path / f"w{i}" for i in range(2)]
    procs = []
    for v in venvs:
        make_venv(v)
        procs.append(pip_install(v, "--no-index", str(sdist), env=env, wait=False))
    gate.wait_started(2, timeout=60)  # both builds held open at once
    gate.open()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stdout.read()  # type: ignore[union-attr]


def test_build_requirement_only_as_sdist_is_built_inside_the_build_environment(tmp_path: Path) -> None:
    """build_requires= names a build requirement: plain pip builds it from its sdist for the build
    environment, and installs only the project itself into the venv."""
    dists = tmp_path / "dists"
    make_sdist(make_project(tmp_path / "src", "needs-tool", "1.0", build_requires=["build-tool>=1"]), dists)
    make_sdist(make_project(tmp_path / "src", "build-tool", "1.0"), dists)
    venv = tmp_path / "venv"
    make_venv(venv)
    log = tmp_path / "hooks.jsonl"
    env = clean_env(FIXTURE_HOOK_LOG=str(log), PIP_NO_CACHE_DIR="1")
    with IndexServer(dists) as server:
        res = pip_install(venv, "--index-url", server.url, "needs-tool", env=env)
        assert res.returncode == 0, res.stdout + res.stderr
    assert count(log, "build_wheel", "build-tool") == 1
    assert count(log, "build_wheel", "needs-tool") == 1
    installed = {p.name for p in venv_site_packages(venv).glob("*.dist-info")}
    assert installed == {"needs_tool-1.0.dist-info"}
