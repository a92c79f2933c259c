"""Kept build environments on disk: a copy in, a copy out, each whole; a damaged or planted entry is never
copied into a build; what a build does to its copy stays in its copy."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from pipguard import buildenv
from pipguard.buildenv import BuildEnvs, EnvEntry, Unkeepable
from pipguard.store import Store

LIB_PATHS = ["lib/python3/site-packages"]
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


def _compile(tree: Path, lib_paths: list[str], ending: threading.Event) -> bool:
    """What the seam's compile does to a kept tree, in small: bytecode beside the module."""
    cache = next(tree.rglob("helperpkg")) / "__pycache__"
    cache.mkdir()
    (cache / "__init__.pyc").write_bytes(b"bytecode")
    return True


def _use(envs: BuildEnvs, entry: EnvEntry, prefix: Path, complaints: list[str] | None = None) -> bool:
    envs.compile_tree = _compile
    return envs.use(entry, prefix, LIB_PATHS, (complaints if complaints is not None else []).append)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_environment_kept_once_is_copied_whole_into_each_build(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    made = _installed(tmp_path / "made")
    envs.publish(key, made, PINS)
    [entry] = envs.candidates(key)
    assert entry.pins == PINS and entry.label == "helperpkg-1.0"
    build = tmp_path / "build" / "overlay"
    build.parent.mkdir()
    assert _use(envs, entry, build)
    assert _tree(build) == _tree(made)
    assert os.access(build / "bin" / "helper", os.X_OK)
    module = build / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    assert module.stat().st_mtime_ns == 10**18  # compiled modules stay valid for their sources


def test_what_a_build_does_to_its_copy_stays_in_it(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    made = _installed(tmp_path / "made")
    envs.publish(key, made, PINS, compiled=True)  # no compile of its first reuse takes its place meanwhile
    [entry] = envs.candidates(key)
    first, second = tmp_path / "first", tmp_path / "second"
    assert _use(envs, entry, first)
    module = first / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    with open(module, "r+") as handle:  # in place, as a link would share it
        handle.write("VERSION = 'scribbled'\n")
    (module.parent.parent / "dropped.py").write_text("")
    assert _use(envs, entry, second)
    assert _tree(second) == _tree(made)


def test_a_damaged_entry_is_set_aside_and_leaves_no_prefix(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    kept = entry.directory / "tree" / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    kept.write_text("VERSION = 'tampered'\n")
    build = tmp_path / "build"
    assert not _use(envs, entry, build)
    assert not build.exists() and not entry.directory.exists()
    assert envs.candidates(key) == []


def test_an_entry_others_can_write_to_is_never_copied(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    (entry.directory / "tree" / "bin").chmod(0o777)
    assert not _use(envs, entry, tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_scripts_name_the_interpreter_of_the_environment_they_are_copied_for(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    envs.publish(key, _installed(tmp_path / "made", executable="/elsewhere/venv/bin/python"), PINS)
    [entry] = envs.candidates(key)
    entry.manifest["executable"] = "/elsewhere/venv/bin/python"  # made by another environment's pipguard
    assert _use(envs, entry, tmp_path / "build")
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


def test_the_first_reuse_compiles_the_entry_and_puts_it_in_its_place(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    """The build that made it never waits for a compile; the first build that reuses it gets it as it was
    kept, and every build after that a compiled one."""
    made = _installed(tmp_path / "made")
    envs.publish(key, made, PINS)
    [entry] = envs.candidates(key)
    assert not entry.compiled
    complaints: list[str] = []
    assert _use(envs, entry, tmp_path / "first", complaints)
    envs.finish()
    assert _tree(tmp_path / "first") == _tree(made) and complaints == []
    [compiled] = envs.candidates(key)
    assert compiled.compiled and compiled.directory == entry.directory and compiled.pins == PINS
    assert _use(envs, compiled, tmp_path / "second")
    envs.finish()
    assert _tree(tmp_path / "second") == {**_tree(made), "lib/python3/site-packages/helperpkg/__pycache__/__init__.pyc": b"bytecode"}
    [still] = envs.candidates(key)
    assert still.manifest["created"] == compiled.manifest["created"] and len(envs.store.env_entries()) == 1


def test_a_copy_made_while_the_compiled_entry_takes_the_place_of_the_old_one_gets_the_compiled_one(
    envs: BuildEnvs, key: str, tmp_path: Path
) -> None:
    """Between the removal of the uncompiled entry and the rename of the compiled one, the entry is gone;
    a build copying it then waits for the swap (its compiler holds the key's compile lock) instead of
    falling back to pip's install."""
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    swapping = os.open(envs.store.lock_path(f"{key}.compile"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(swapping, fcntl.LOCK_EX)  # as _compile holds it until its rename is done
    shutil.rmtree(entry.directory)  # the uncompiled entry is removed: the compiled one is not there yet
    used: list[bool] = []
    build = threading.Thread(target=lambda: used.append(_use(envs, entry, tmp_path / "build")))
    build.start()
    compiled_tree = _installed(tmp_path / "compiled")
    _compile(compiled_tree, LIB_PATHS, threading.Event())
    envs.publish(key, compiled_tree, PINS, compiled=True)
    os.close(swapping)
    build.join(30)
    assert used == [True]
    assert "lib/python3/site-packages/helperpkg/__pycache__/__init__.pyc" in _tree(tmp_path / "build")


def test_a_copy_of_an_entry_its_compiled_copy_replaced_since_it_was_read_takes_the_compiled_one(
    envs: BuildEnvs, key: str, tmp_path: Path
) -> None:
    """The caller read the uncompiled entry; its compiled copy took the place before the copy began: what
    is copied is checked against the manifest now there, and the compiled entry is not set aside."""
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    compiled_tree = _installed(tmp_path / "compiled")
    _compile(compiled_tree, LIB_PATHS, threading.Event())
    envs.publish(key, compiled_tree, PINS, compiled=True, replacing=entry)
    assert _use(envs, entry, tmp_path / "build")
    assert "lib/python3/site-packages/helperpkg/__pycache__/__init__.pyc" in _tree(tmp_path / "build")
    [kept] = envs.candidates(key)
    assert kept.compiled and kept.directory == entry.directory


def test_an_entry_another_process_is_copying_is_not_replaced(
    envs: BuildEnvs, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buildenv, "SWAP_SECONDS", 0.2)  # how long it waits for that copy to end
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    reader = os.open(entry.directory / "manifest.json", os.O_RDONLY)
    try:
        fcntl.flock(reader, fcntl.LOCK_SH)  # as another process's copy holds it
        complaints: list[str] = []
        assert _use(envs, entry, tmp_path / "build", complaints)
        envs.finish()
    finally:
        os.close(reader)
    [unchanged] = envs.candidates(key)
    assert not unchanged.compiled and complaints == []
    assert list(envs.store.tmp.iterdir()) == []  # its compiled copy is not left behind either


def test_a_compile_still_running_at_the_commands_end_is_given_up(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    """It runs on CPU the builds leave idle; a command does not wait for it: the entry stays as it was, for
    a later reuse to compile, and nothing of the compile is left behind."""
    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    started = threading.Event()

    def slow(tree: Path, lib_paths: list[str], ending: threading.Event) -> bool:
        started.set()
        ending.wait(30)  # as the compile process is stopped once the command ends
        return not ending.is_set()

    envs.compile_tree = slow
    assert envs.use(entry, tmp_path / "build", LIB_PATHS, [].append)
    assert started.wait(10)
    envs.finish()
    [unchanged] = envs.candidates(key)
    assert not unchanged.compiled and list(envs.store.tmp.iterdir()) == []


def test_a_build_child_hands_the_compile_to_its_parent_which_compiles_it(
    envs: BuildEnvs, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gated build child (gate.py) does not compile what it reused: its life ends with its build, which
    would give the compile up. It leaves the request beside its gate; the parent compiles the entry."""
    from pipguard import gate

    envs.publish(key, _installed(tmp_path / "made"), PINS)
    [entry] = envs.candidates(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv(gate.VARIABLE, str(work / gate.FIFO_NAME))
    assert _use(envs, entry, tmp_path / "first")
    envs.finish()
    [still] = envs.candidates(key)
    assert not still.compiled  # the child compiled nothing
    monkeypatch.delenv(gate.VARIABLE)
    parent = BuildEnvs(envs.store, timeout=1.0, stopping=lambda: False, awaited=lambda: False)
    parent.compile_tree = _compile
    parent.compile_handed_back(work, [].append)
    parent.finish()
    [compiled] = parent.candidates(key)
    assert compiled.compiled and compiled.pins == PINS


def test_a_handed_back_compile_for_somewhere_else_is_ignored(envs: BuildEnvs, key: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "compile.json").write_text(json.dumps({"directory": str(tmp_path), "key": key, "lib_paths": LIB_PATHS}))
    envs.compile_tree = _compile
    envs.compile_handed_back(work, [].append)
    envs.finish()
    assert list(tmp_path.glob("**/__pycache__")) == []


# --- kept while the first hook runs: what pip's RECORD files say it installed, and only that ---------------


def _with_record(prefix: Path, algorithm: str = "sha256") -> Path:
    """:func:`_installed`, with the dist-info and RECORD pip's install writes (the script listed from the
    library directory, as pip lists it)."""
    import base64
    import hashlib

    _installed(prefix)
    site = prefix / "lib" / "python3" / "site-packages"
    info = site / "helperpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: helperpkg\nVersion: 1.0\n")
    rows = []
    for path in [site / "helperpkg" / "__init__.py", info / "METADATA", prefix / "bin" / "helper"]:
        digest = base64.urlsafe_b64encode(hashlib.new(algorithm, path.read_bytes()).digest()).rstrip(b"=").decode()
        rows.append(f"{os.path.relpath(path, site)},{algorithm}={digest},{path.stat().st_size}")
    rows.append("helperpkg-1.0.dist-info/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return prefix


def test_an_environment_kept_while_its_first_hook_runs_is_what_pip_installed_without_what_the_hook_added(
    envs: BuildEnvs, key: str, tmp_path: Path
) -> None:
    made = _with_record(tmp_path / "made")
    as_installed = _tree(made)
    recorded = buildenv.recorded_tree(made, LIB_PATHS)
    assert recorded is not None
    package = made / "lib" / "python3" / "site-packages" / "helperpkg"
    (package / "__pycache__").mkdir()  # what the hook's interpreter writes beside what pip installed
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"bytecode")
    (made / "bin" / "dropped").write_text("")
    envs.publish(key, made, PINS, recorded=recorded)
    [entry] = envs.candidates(key)
    assert _tree(entry.directory / "tree") == as_installed
    assert not (entry.directory / "tree" / "lib" / "python3" / "site-packages" / "helperpkg" / "__pycache__").exists()
    assert _use(envs, entry, tmp_path / "build")  # its digest is that of what was kept
    assert _tree(tmp_path / "build") == as_installed


@pytest.mark.parametrize("change", ["rewritten", "removed", "made executable", "made a directory"])
def test_an_environment_its_first_hook_changed_before_it_was_copied_is_not_kept(
    envs: BuildEnvs, key: str, tmp_path: Path, change: str
) -> None:
    made = _with_record(tmp_path / "made")
    recorded = buildenv.recorded_tree(made, LIB_PATHS)
    assert recorded is not None
    module = made / "lib" / "python3" / "site-packages" / "helperpkg" / "__init__.py"
    if change == "rewritten":
        with open(module, "r+") as handle:  # in place, same size
            handle.write("VERSION = '6.6'\n")
    elif change == "removed":
        module.unlink()
    elif change == "made executable":
        module.chmod(0o755)
    else:
        module.unlink()
        module.mkdir()
    with pytest.raises(Unkeepable):
        envs.publish(key, made, PINS, recorded=recorded)
    assert envs.candidates(key) == [] and list(envs.store.tmp.iterdir()) == []


def test_a_tree_that_is_not_all_recorded_with_sha256_is_copied_before_the_build_as_it_stands(tmp_path: Path) -> None:
    assert buildenv.recorded_tree(_with_record(tmp_path / "md5", algorithm="md5"), LIB_PATHS) is None
    unrecorded = _with_record(tmp_path / "unrecorded")
    (unrecorded / "lib" / "python3" / "site-packages" / "stray.py").write_text("")
    assert buildenv.recorded_tree(unrecorded, LIB_PATHS) is None
    missing = _with_record(tmp_path / "missing")
    (missing / "bin" / "helper").unlink()
    assert buildenv.recorded_tree(missing, LIB_PATHS) is None
    assert buildenv.recorded_tree(_installed(tmp_path / "no-record"), LIB_PATHS) is None
    garbled = _with_record(tmp_path / "garbled")
    (garbled / "lib" / "python3" / "site-packages" / "helperpkg-1.0.dist-info" / "RECORD").write_bytes(b"\xff\xfe,sha256=!!,1\n")
    assert buildenv.recorded_tree(garbled, LIB_PATHS) is None
