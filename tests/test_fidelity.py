"""After pipguard installs, the environment is indistinguishable from plain pip's, and pip's options
(hashes, caching, format control, constraints, extras, markers, config settings) keep their meaning."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Dists, Result, World
from support.hooklog import read_hooks
from support.processes import install_args
from support.projects import make_project, make_sdist

# --- helpers -------------------------------------------------------------------------------------


def _dist_info(world: World, venv: Path, project: str) -> Path:
    found = sorted(world.site_packages(venv).glob(f"{project}-*.dist-info"))
    assert len(found) == 1, f"expected one {project} dist-info in {venv}, found {found}"
    return found[0]


def _installed_state(world: World, venv: Path, project: str) -> dict[str, object]:
    """What pip leaves behind for a project: freeze line set, direct_url.json, REQUESTED, INSTALLER."""
    freeze = world.pip("--python", str(venv), "freeze")
    assert freeze.returncode == 0, freeze.output
    info = _dist_info(world, venv, project)
    direct_url = info / "direct_url.json"
    return {
        "freeze": freeze.stdout,
        "direct_url": json.loads(direct_url.read_text()) if direct_url.exists() else None,
        "requested": (info / "REQUESTED").exists(),
        "installer": (info / "INSTALLER").read_text() if (info / "INSTALLER").exists() else None,
    }


def _install_both(world: World, *install_args: str) -> tuple[Path, Path]:
    """Install with plain pip into venv A and with pipguard into venv B, each with a fresh pip cache."""
    plain, guarded = world.venv("plain"), world.venv("guarded")
    a = world.pip(
        "--python", str(plain), "install", *install_args, env={"PIP_CACHE_DIR": str(world.root / "pip-cache-a")}
    )
    assert a.returncode == 0, a.output
    b = world.pipguard(
        "--python", str(guarded), "install", *install_args, env={"PIP_CACHE_DIR": str(world.root / "pip-cache-b")}
    )
    assert b.returncode == 0, b.output
    return plain, guarded


def _published_wheels(world: World) -> list[Path]:
    return sorted(world.store.wheels.rglob("*.whl"))


def _installed_version(world: World, venv: Path, project: str) -> str | None:
    found = sorted(world.site_packages(venv).glob(f"{project}-*.dist-info"))
    return found[0].name[len(project) + 1 : -len(".dist-info")] if found else None


# --- 1. the installed environment ---------------------------------------------------------------

SourceArgs = Callable[[Dists, Path], list[str]]
SOURCES: dict[str, tuple[str, SourceArgs]] = {
    "index-sdist": ("alpha", lambda d, tree: ["--index-url", d.index.url, "alpha"]),
    "sdist-path": ("beta", lambda d, tree: ["--no-index", str(d.sdist("beta"))]),
    "sdist-url": ("gamma", lambda d, tree: ["--no-index", f"gamma @ {d.sdist('gamma').as_uri()}"]),
    "local-tree": ("treepkg", lambda d, tree: ["--no-index", str(tree)]),
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_installed_environment_matches_plain_pip(any_pip_world: World, dists: Dists, tree: Path, kind: str) -> None:
    """freeze, direct_url.json, REQUESTED and INSTALLER are exactly what plain pip writes, for every source kind."""
    w = any_pip_world
    project, args = SOURCES[kind]
    plain, guarded = _install_both(w, *args(dists, tree))
    assert w.hooks("build_wheel", project) == 2  # one plain pip build, one pipguard build (fresh caches)
    # pipguard's build went through its cache; a local tree's wheel is never kept for a later install.
    assert len(_published_wheels(w)) == (0 if kind == "local-tree" else 1)
    expected = _installed_state(w, plain, project)
    actual = _installed_state(w, guarded, project)
    assert actual == expected
    assert project in expected["freeze"]  # type: ignore[operator]
    assert expected["requested"] is True and expected["installer"] == "pip\n"


def test_collecting_comes_before_its_download_as_in_plain_pip(world: World, dists: Dists) -> None:
    """pipguard downloads the sdist to build it; pip's own header still comes first, the download under it."""
    result = world.pipguard("--python", str(world.venv("v")), "install", "--index-url", dists.index.url, "alpha")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    collecting = lines.index("Collecting alpha")
    downloading = next(i for i, line in enumerate(lines) if line.startswith("  Downloading ") and "alpha-1.0.tar.gz" in line)
    assert collecting < downloading
    assert lines.count("Collecting alpha") == 1


# --- 2. hash-checking mode -----------------------------------------------------------------------


def _install_hashed(world: World, dists: Dists, sha256: str) -> tuple[Path, Result]:
    """pipguard install --require-hashes of alpha==1.0 pinned to ``sha256``, into a fresh venv."""
    reqs = world.root / "hashed.txt"
    reqs.write_text(f"alpha==1.0 --hash=sha256:{sha256}\n")
    venv = world.venv("hashed")
    return venv, world.pipguard(*install_args(venv, dists.index.url, "-r", str(reqs), options=("--require-hashes",)))


@pytest.mark.usefixtures("with_alpha")  # alpha's wheel is in the cache already
def test_require_hashes_accepts_the_cached_wheel_of_the_right_sdist(world: World, dists: Dists) -> None:
    """A cached wheel is trusted only through its sdist's hash, as in pip's own cache: right hash, no rebuild."""
    assert world.hooks("build_wheel", "alpha") == 1
    venv, result = _install_hashed(world, dists, hashlib.sha256(dists.sdist("alpha").read_bytes()).hexdigest())
    assert result.returncode == 0, result.output
    assert (world.site_packages(venv) / "alpha" / "__init__.py").is_file()
    assert world.hooks("build_wheel", "alpha") == 1


@pytest.mark.usefixtures("with_alpha")  # alpha's wheel is in the cache already
def test_require_hashes_rejects_a_wrong_hash_even_with_a_cached_wheel(world: World, dists: Dists) -> None:
    """The cache must not launder a hash mismatch: pip's own error, nonzero exit, nothing installed."""
    venv, result = _install_hashed(world, dists, "0" * 64)
    assert result.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in result.output
    assert _installed_version(world, venv, "alpha") is None
    assert not (world.site_packages(venv) / "alpha").exists()
    assert world.hooks("build_wheel", "alpha") == 1


# --- 3. options ------------------------------------------------------------------------------------


def test_no_cache_dir_installs_without_publishing(world: World, dists: Dists) -> None:
    """--no-cache-dir means no cache: the build happens, the install works, nothing is kept."""
    venv = world.venv("v")
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha", options=("--no-cache-dir",)))
    assert result.returncode == 0, result.output
    assert (world.site_packages(venv) / "alpha" / "__init__.py").is_file()
    assert world.hooks("build_wheel", "alpha") == 1
    assert _published_wheels(world) == []


def test_no_binary_all_still_builds_once_through_the_cache(world: World, dists: Dists) -> None:
    """--no-binary only forbids downloaded wheels; the sdist's locally built wheel is cached as in pip."""
    venvs = [world.venv("one"), world.venv("two")]
    for venv in venvs:
        result = world.pipguard(*install_args(venv, dists.index.url, "alpha", options=("--no-binary", ":all:")))
        assert result.returncode == 0, result.output
        assert (world.site_packages(venv) / "alpha" / "__init__.py").is_file()
    assert world.hooks("build_wheel", "alpha") == 1
    assert len(_published_wheels(world)) == 1


def test_only_binary_all_fails_on_an_sdist_like_plain_pip(world: World, dists: Dists) -> None:
    """--only-binary :all: leaves nothing to build: same exit code and ERROR lines as plain pip."""
    args = ("install", "--only-binary", ":all:", "--index-url", dists.index.url, "alpha")
    plain = world.pip("--python", str(world.venv("plain")), *args)
    guarded = world.pipguard("--python", str(world.venv("guarded")), *args)
    assert plain.returncode != 0
    assert guarded.returncode == plain.returncode
    assert guarded.error_lines() == plain.error_lines() != []
    assert world.hooks("build_wheel") == 0


def test_constraints_file_pins_the_version_built(world: World) -> None:
    """-c picks the version, so only the pinned version's sdist is built and installed."""
    links = world.root / "links"
    for version in ("1.0", "2.0"):
        make_sdist(make_project(world.root / "trees", "pinpkg", version), links)
    constraints = world.root / "constraints.txt"
    constraints.write_text("pinpkg==1.0\n")
    args = ("--no-index", "--find-links", str(links), "-c", str(constraints), "pinpkg")
    plain, guarded = _install_both(world, *args)
    assert _installed_version(world, guarded, "pinpkg") == _installed_version(world, plain, "pinpkg") == "1.0"
    built = {r["version"] for r in read_hooks(world.hook_log) if r["hook"] == "build_wheel"}
    assert built == {"1.0"}


def test_extras_pull_their_dependencies(world: World, dists: Dists) -> None:
    """extrapkg[more] brings leafpkg, as with plain pip; both sdists go through the cache."""
    args = ("--no-index", "--find-links", str(dists.directory), "extrapkg[more]")
    plain, guarded = _install_both(world, *args)
    for venv in (plain, guarded):
        assert _installed_version(world, venv, "extrapkg") == "1.0"
        assert _installed_version(world, venv, "leafpkg") == "2.0"
    assert world.pip("--python", str(guarded), "freeze").stdout == world.pip("--python", str(plain), "freeze").stdout
    assert len(_published_wheels(world)) == 2


def test_environment_markers_skip_a_requirement(world: World, dists: Dists) -> None:
    """A requirement whose marker is false is neither built nor installed."""
    reqs = world.root / "reqs.txt"
    reqs.write_text('alpha; python_version < "3"\nbeta\n')
    venv = world.venv("v")
    result = world.pipguard(*install_args(venv, dists.index.url, "-r", str(reqs)))
    assert result.returncode == 0, result.output
    assert "Ignoring alpha" in result.output
    assert _installed_version(world, venv, "alpha") is None
    assert _installed_version(world, venv, "beta") == "1.0"
    assert world.hooks("build_wheel", "alpha") == 0
    assert world.hooks("build_wheel", "beta") == 1


def test_per_requirement_config_settings_are_part_of_the_cache_key(world: World, dists: Dists) -> None:
    """Different --config-settings in a requirements file give different wheels; the same one is reused."""

    def install(value: str, name: str) -> None:
        reqs = world.root / f"reqs-{name}.txt"
        reqs.write_text(f"alpha --config-settings=flavor={value}\n")
        venv = world.venv(name)
        result = world.pipguard(*install_args(venv, dists.index.url, "-r", str(reqs)), env=world.another_job(name))
        assert result.returncode == 0, result.output
        assert (world.site_packages(venv) / "alpha" / "__init__.py").is_file()

    install("one", "first")
    assert world.hooks("build_wheel", "alpha") == 1
    install("two", "second")
    assert world.hooks("build_wheel", "alpha") == 2
    install("one", "third")
    assert world.hooks("build_wheel", "alpha") == 2
    assert len(_published_wheels(world)) == 2


# --- 4. pipguard wheel -----------------------------------------------------------------------------


def test_wheel_command_builds_once_into_each_wheel_dir(world: World, dists: Dists) -> None:
    """`pipguard wheel -w DIR` delivers the wheel to DIR; a second directory gets it from the cache."""
    for n, expected_builds in ((1, 1), (2, 1)):
        out = world.root / f"wheels-{n}"
        result = world.pipguard("wheel", "-w", str(out), "--index-url", dists.index.url, "alpha")
        assert result.returncode == 0, result.output
        assert [p.name for p in out.iterdir()] == ["alpha-1.0-py3-none-any.whl"]
        assert world.hooks("build_wheel", "alpha") == expected_builds
