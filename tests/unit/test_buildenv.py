"""Kept build environments on disk: a copy in, a copy out, each whole; a damaged or planted entry is never
copied into a build; what a build does to its copy stays in its copy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipguard.buildenv import BuildEnvs, Unkeepable
from pipguard.store import Store

PINS = [{"name": "helperpkg", "version": "1.0", "specifier": ">=1", "file": "helperpkg-1.0-py3-none-any.whl", "link": "ab" * 32}]


@pytest.fixture
def envs(store: Store) -> BuildEnvs:
    return BuildEnvs(store, timeout=1.0, stopping=lambda: False, awaited=lambda: False)


def _installed(prefix: Path, executable: str = sys.executable) -> Path:
    """A prefix as pip's install leaves it: a package, a dist-info, a script naming its interpreter."""
    site = prefix / "lib" / "python3" / "site-packages"
    (site / "helperpkg").mkdir(parents=True)
    (site / "helperpkg" / "__init__.py").write_text("VERSION = '1.0'\n")
    os.utime(site / "helperpkg" / "__init__.py", ns=(10**18, 10**18))
    (prefix / "bin").mkdir()
    script = prefix / "bin" / "helper"
    script.write_text(f"#!{executable}\nimport helperpkg\n")
    script.chmod(0o755)
    return prefix


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_environment_kept_once_is_copied_whole_into_each_build(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    made = _installed(tmp_path / "made")
    envs.publish(key, made, PINS)
    [entry] = envs.candidates(key)
    assert entry.pins == PINS and entry.label == "helperpkg-1.0"
    build = tmp_path / "build" / "overlay"
    build.parent.mkdir()
    assert envs.use(entry, build)
    assert _tree(build) == _tree(made)
    assert os.access(build / "bin" / "helper", os.X_OK)
    module = build / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    assert module.stat().st_mtime_ns == 10**18  # compiled modules stay valid for their sources


def test_what_a_build_does_to_its_copy_stays_in_it(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    made = _installed(tmp_path / "made")
    envs.publish(key, made, PINS)
    [entry] = envs.candidates(key)
    first, second = tmp_path / "first", tmp_path / "second"
    assert envs.use(entry, first)
    module = first / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    with open(module, "r+") as handle:  # in place, as a link would share it
        handle.write("VERSION = 'scribbled'\n")
    (module.parent.parent / "dropped.py").write_text("")
    assert envs.use(entry, second)
    assert _tree(second) == _tree(made)


def test_a_damaged_entry_is_set_aside_and_leaves_no_prefix(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    kept = entry.directory / "tree" / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    kept.write_text("VERSION = 'tampered'\n")
    build = tmp_path / "build"
    assert not envs.use(entry, build)
    assert not build.exists() and not entry.directory.exists()
    assert envs.candidates(key) == []


def test_an_entry_others_can_write_to_is_never_copied(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    (entry.directory / "tree" / "bin").chmod(0o777)
    assert not envs.use(entry, tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_scripts_name_the_interpreter_of_the_environment_they_are_copied_for(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "made", executable="/elsewhere/venv/bin/python"), PINS)
    [entry] = envs.candidates(key)
    entry.manifest["executable"] = "/elsewhere/venv/bin/python"  # made by another environment's pipguard
    assert envs.use(entry, tmp_path / "build")
    assert (tmp_path / "build" / "bin" / "helper").read_text().splitlines()[0] == f"#!{sys.executable}"


def test_a_tree_with_a_symlink_is_not_kept(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    made = _installed(tmp_path / "made")
    (made / "bin" / "link").symlink_to("/etc/passwd")
    with pytest.raises(Unkeepable):
        envs.publish(key, made, PINS)
    assert envs.candidates(key) == [] and list(envs.store.tmp.iterdir()) == []


def test_the_same_distributions_are_kept_once_and_other_ones_beside_them(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "one"), PINS)
    envs.publish(key, _installed(tmp_path / "two"), PINS)
    newer = [{**PINS[0], "version": "2.0", "link": "cd" * 32}]
    envs.publish(key, _installed(tmp_path / "three"), newer)
    assert sorted(entry.label for entry in envs.candidates(key)) == ["helperpkg-1.0", "helperpkg-2.0"]
    assert len(envs.store.env_entries()) == 2
