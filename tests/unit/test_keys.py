"""Key material: every input that changes a built wheel changes its key, and nothing else does."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipguard import keys

IDENTITY: dict[str, Any] = {"kind": "archive", "sha256": "ab" * 32, "sub": None}
OPTIONS: dict[str, Any] = {"config_settings": {}, "isolation": True, "constraints": []}
INTERPRETER = {"implementation": "cpython", "version": "3.12", "abiflags": "", "gil": "True",
               "tag": "cp312-cp312-manylinux_2_39_x86_64", "libc": "glibc 2.39", "machine": "x86_64"}


@pytest.fixture(autouse=True)
def fixed_build_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No build variable from the machine running the tests, and a fixed interpreter description.

    The real description asks pip for the most specific tag; these tests are about how the key is made
    from it, so a constant keeps them independent of pip.
    """
    for name in keys.BUILD_ENV_ALLOWLIST:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(keys, "interpreter", lambda: dict(INTERPRETER))


def test_equal_inputs_give_equal_keys() -> None:
    shuffled_identity = dict(reversed(list(IDENTITY.items())))
    assert keys.cache_key(IDENTITY, OPTIONS) == keys.cache_key(shuffled_identity, dict(OPTIONS))


@pytest.mark.parametrize(
    ("identity", "options"),
    [
        pytest.param({**IDENTITY, "sha256": "cd" * 32}, OPTIONS, id="other-sdist-content"),
        pytest.param({**IDENTITY, "sub": "python"}, OPTIONS, id="subdirectory"),
        pytest.param({"kind": "dir", "fingerprint": "ab" * 32, "sub": None}, OPTIONS, id="tree-not-archive"),
        pytest.param(IDENTITY, {**OPTIONS, "config_settings": {"--build-option": "x"}}, id="config-settings"),
        pytest.param(IDENTITY, {**OPTIONS, "isolation": False}, id="no-build-isolation"),
        pytest.param(IDENTITY, {**OPTIONS, "constraints": ["setuptools<70"]}, id="build-constraints"),
    ],
)
def test_source_identity_and_options_change_the_key(identity: dict[str, Any], options: dict[str, Any]) -> None:
    assert keys.cache_key(identity, options) != keys.cache_key(IDENTITY, OPTIONS)


def test_each_allow_listed_build_variable_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler flag changes the wheel, so a wheel built without it must not be reused."""
    plain = keys.cache_key(IDENTITY, OPTIONS)
    seen = {plain}
    for name in keys.BUILD_ENV_ALLOWLIST:
        with monkeypatch.context() as env:
            env.setenv(name, "-O3")
            changed = keys.cache_key(IDENTITY, OPTIONS)
        assert changed not in seen, name  # differs from the plain key and from every other variable's
        seen.add(changed)
    assert keys.cache_key(IDENTITY, OPTIONS) == plain  # and back once it is gone


def test_other_variables_do_not_change_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables that differ between shells (PATH, HOME, a CI job id) must not split the cache."""
    plain = keys.cache_key(IDENTITY, OPTIONS)
    monkeypatch.setenv("PATH", f"/elsewhere/bin{os.pathsep}{os.environ['PATH']}")  # the same compilers
    monkeypatch.setenv("HOME", "/elsewhere")
    monkeypatch.setenv("BUILD_ID", "1234")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    assert keys.cache_key(IDENTITY, OPTIONS) == plain


@pytest.mark.parametrize("field", sorted(INTERPRETER))
def test_each_interpreter_field_changes_the_key(monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    plain = keys.cache_key(IDENTITY, OPTIONS)
    monkeypatch.setattr(keys, "interpreter", lambda: {**INTERPRETER, field: INTERPRETER[field] + "-other"})
    assert keys.cache_key(IDENTITY, OPTIONS) != plain


def test_digest_is_sha256_of_canonical_json() -> None:
    """Key order, whitespace and insertion history must not matter: processes compute keys independently."""
    material = {"b": [1, {"y": 2, "x": 1}], "a": "é"}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    assert keys.digest(material) == hashlib.sha256(canonical.encode()).hexdigest()
    assert keys.digest(material) == keys.digest({"a": "é", "b": [1, {"x": 1, "y": 2}]})
    assert keys.digest({"a": [1, 2]}) != keys.digest({"a": [2, 1]})  # lists keep their order


def test_tree_lock_key_follows_the_real_path(tmp_path: Path) -> None:
    """Two builds of one tree collide whatever path names it, so they must share one lock."""
    tree = tmp_path / "tree"
    tree.mkdir()
    link = tmp_path / "link"
    link.symlink_to(tree)
    other = tmp_path / "other"
    other.mkdir()
    same = keys.tree_lock_key(tree)
    assert keys.tree_lock_key(link) == same
    assert keys.tree_lock_key(tmp_path / "other" / ".." / "tree") == same
    assert keys.tree_lock_key(other) != same
    assert keys.environment_lock_key(str(tree)) != same  # a tree and an environment never share a lock


def test_a_tree_is_keyed_by_where_it_is_never_by_what_it_holds(tmp_path: Path) -> None:
    """A tree's build is shared only with its waiters, so its key needs no walk of the tree (a FIFO,
    a socket or a huge node_modules/ in it costs nothing)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("X = 1\n")
    os.mkfifo(tmp_path / "pkg" / "fifo")
    before = keys.tree_key(tmp_path, None)
    (tmp_path / "pkg" / "__init__.py").write_text("X = 2\n")
    assert keys.tree_key(tmp_path, None) == before
    assert keys.tree_key(tmp_path, "sub") != before


@pytest.mark.parametrize(
    "name", ["SETUPTOOLS_SCM_PRETEND_VERSION_FOR_TREEPKG", "HATCH_BUILD_HOOKS_ENABLE", "SKBUILD_CMAKE_ARGS"]
)
def test_variable_families_that_backends_read_change_the_key(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    before = keys.cache_key({"s": 1}, {})
    monkeypatch.setenv(name, "2.0")
    assert keys.cache_key({"s": 1}, {}) != before


def test_installed_distributions_name_what_this_interpreter_sees() -> None:
    """What a build without isolation imports: pytest runs here, so it is among them, with its version."""
    assert f"pytest=={pytest.__version__}" in keys.installed_distributions()


def fake_compiler(directory: Path, name: str, version_line: str) -> Path:
    """An executable ``name`` in ``directory`` that answers ``--version`` as a compiler does."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\necho '{version_line}'\necho 'Copyright (C) nobody'\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("name", ["cc", "c++"])
def test_another_compiler_on_path_changes_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """The ``cc`` (or ``c++``) a build would run is part of the key: a wheel built by gcc 12 is not
    reused where the same command would build it with another compiler."""
    plain = keys.cache_key(IDENTITY, OPTIONS)
    fake_compiler(tmp_path / "one", name, "fakecc (Fake) 1.0")
    fake_compiler(tmp_path / "two", name, "fakecc (Fake) 2.0")
    seen = {plain}
    for directory in ("one", "two"):
        monkeypatch.setenv("PATH", f"{tmp_path / directory}{os.pathsep}{os.environ['PATH']}")
        changed = keys.cache_key(IDENTITY, OPTIONS)
        assert changed not in seen, directory  # another path, then another version at a path alike
        seen.add(changed)


def test_a_compiler_named_by_cc_is_keyed_by_where_it_resolves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``CC=gcc`` is the same text on two machines; the compiler it finds there need not be."""
    monkeypatch.setenv("CC", "fakecc -m64")
    fake_compiler(tmp_path / "one", "fakecc", "fakecc (Fake) 1.0")
    monkeypatch.setenv("PATH", str(tmp_path / "one"))
    first = keys.toolchain()["CC"]
    assert first == f"{tmp_path / 'one' / 'fakecc'}: fakecc (Fake) 1.0"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert keys.toolchain()["CC"] == "not found"


@pytest.mark.parametrize("name", ["CPATH", "LIBRARY_PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "TORCH_CUDA_ARCH_LIST"])
def test_where_compilers_look_changes_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    """Headers and libraries from another directory (another CUDA) make another wheel."""
    monkeypatch.setenv(name, str(tmp_path / "one"))
    first = keys.cache_key(IDENTITY, OPTIONS)
    monkeypatch.setenv(name, str(tmp_path / "two"))
    assert keys.cache_key(IDENTITY, OPTIONS) != first
