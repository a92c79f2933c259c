"""The key of a kept build environment, and when one is used: everything the second pip is given or reads
changes the key, nothing else does; what cannot be keyed is left to pip; a finder that would pick another
file today never gets the kept one.

pip's own objects (a finder over a local ``--find-links`` directory, the subprocess installer) are made
in-process; nothing is downloaded or run."""

from __future__ import annotations

import os
from collections.abc import Callable
from optparse import Values
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from support.projects import make_wheel

from pipguard import settings
from pipguard._pip import isolation
from pipguard.buildenv import EnvEntry

if TYPE_CHECKING:  # pip is imported inside the tests: importing it first turns setuptools' distutils off
    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.target_python import TargetPython

REQUIREMENTS = ["helperpkg>=1"]


def _finder(
    index_urls: tuple[str, ...] = ("https://index.invalid/simple/",),
    find_links: tuple[str, ...] = (),
    no_binary: frozenset[str] = frozenset(),
    prefer_binary: bool = False,
    target: TargetPython | None = None,
    ignore_requires_python: bool = False,
) -> PackageFinder:
    from pip._internal.index.collector import LinkCollector
    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.format_control import FormatControl
    from pip._internal.models.search_scope import SearchScope
    from pip._internal.models.selection_prefs import SelectionPreferences
    from pip._internal.network.session import PipSession

    scope = SearchScope.create(find_links=list(find_links), index_urls=list(index_urls), no_index=not index_urls)
    prefs = SelectionPreferences(
        allow_yanked=True,
        format_control=FormatControl(set(no_binary), set()),
        prefer_binary=prefer_binary,
        ignore_requires_python=ignore_requires_python,
    )
    return PackageFinder.create(LinkCollector(session=PipSession(), search_scope=scope), prefs, target_python=target)


def _prefix(root: Path, venv_executable: str | None = None) -> Any:
    path = root / "overlay"
    lib = path / "lib" / "python3" / "site-packages"
    return SimpleNamespace(path=str(path), lib_dirs=(str(lib),), bin_dir=str(path / "bin"), venv_executable=venv_executable)


def _key(tmp_path: Path, finder: PackageFinder | None = None, requirements: list[str] | None = None, **installer: Any) -> str | None:
    from pip._internal.build_env import SubprocessBuildEnvironmentInstaller

    made = SubprocessBuildEnvironmentInstaller(finder or _finder(), **installer)
    planned = isolation.plan(made, list(requirements or REQUIREMENTS), _prefix(tmp_path), Values({"constraints": []}))
    return planned.key if planned is not None else None


@pytest.fixture(autouse=True)
def no_pip_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No pip variable or configuration file of the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("PIP_") or name in isolation.INHERITED_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setattr(isolation, "_config_files", lambda: [])


def test_equal_installs_give_equal_keys_whatever_the_order_of_their_requirements(tmp_path: Path) -> None:
    both = ["helperpkg>=1", "wheel"]
    assert _key(tmp_path, requirements=both) == _key(tmp_path, requirements=list(reversed(both)))


def test_requirements_that_differ_only_in_their_specifiers_share_a_key(tmp_path: Path) -> None:
    """Which of the key's entries fits is decided per entry (``isolation.fits``): ``setuptools>=40.8.0`` and
    ``setuptools>=70.1`` mostly install the same file."""
    assert _key(tmp_path, requirements=["helperpkg>=2"]) == _key(tmp_path, requirements=["HelperPkg<3,>=1"])


@pytest.mark.parametrize(
    "change",
    [
        lambda tmp, mp: {"finder": _finder(index_urls=("https://other.invalid/simple/",))},
        lambda tmp, mp: {"finder": _finder(find_links=(str(tmp),))},
        lambda tmp, mp: {"finder": _finder(no_binary=frozenset({":all:"}))},
        lambda tmp, mp: {"finder": _finder(prefer_binary=True)},
        lambda tmp, mp: {"requirements": ["helperpkg>=1", "wheel"]},
        lambda tmp, mp: mp.setenv("PIP_NO_DEPS", "1"),
        lambda tmp, mp: mp.setenv("CFLAGS", "-O0"),  # a build requirement built from source sees it
        lambda tmp, mp: mp.setattr(isolation, "_config_files", lambda: [str(_written(tmp / "pip.conf", "[global]\npre = 1\n"))]),
    ],
    ids=["index", "find-links", "no-binary", "prefer-binary", "requirements", "pip-variable", "build-variable", "config"],
)
def test_what_the_second_pip_is_given_or_reads_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Path, pytest.MonkeyPatch], dict[str, Any] | None]
) -> None:
    before = _key(tmp_path)
    changed = change(tmp_path, monkeypatch) or {}
    after = _key(tmp_path, **changed)
    assert before is not None and after is not None and before != after


def test_a_build_constraint_is_keyed_by_its_content(tmp_path: Path) -> None:
    constraints = _written(tmp_path / "build-constraints.txt", "helperpkg<3\n")
    first = _key(tmp_path, build_constraints=[str(constraints)])
    assert first == _key(tmp_path, build_constraints=[str(constraints)]) and first != _key(tmp_path)
    _written(constraints, "helperpkg<2\n")
    assert _key(tmp_path, build_constraints=[str(constraints)]) != first


@pytest.mark.parametrize("name", ["PIP_CACHE_DIR", "PIP_BUILD_TRACKER", "PIP_DEFAULT_TIMEOUT", "PIP_CERT"])
def test_where_pip_caches_and_how_it_talks_leave_the_key_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    before = _key(tmp_path)
    monkeypatch.setenv(name, str(tmp_path / "elsewhere"))
    assert _key(tmp_path) == before


def test_what_cannot_be_keyed_is_left_to_pip(tmp_path: Path) -> None:
    from pip._internal.build_env import SubprocessBuildEnvironmentInstaller
    from pip._internal.models.target_python import TargetPython

    assert _key(tmp_path, requirements=["helperpkg @ https://index.invalid/helperpkg-1.0.tar.gz"]) is None
    assert _key(tmp_path, finder=_finder(target=TargetPython(platforms=["win_amd64"]))) is None
    assert _key(tmp_path, finder=_finder(ignore_requires_python=True)) is None
    installer = SubprocessBuildEnvironmentInstaller(_finder())
    venv_prefix = _prefix(tmp_path, venv_executable="/venv/bin/python")
    assert isolation.plan(installer, REQUIREMENTS, venv_prefix, None) is None


def _entry(pins: list[dict[str, str]], command: str = "an earlier command") -> EnvEntry:
    return EnvEntry(Path("unused"), {"pins": pins, "command": command})


def test_a_kept_environment_is_used_only_while_the_finder_picks_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links = tmp_path / "links"
    make_wheel(links, "helperpkg", "1.0")
    prefix = [str(_installed(tmp_path / "prefix", "helperpkg", "1.0"))]
    pins = isolation.pins(_links_finder(links, monkeypatch), REQUIREMENTS, prefix)
    assert pins is not None and [(p["name"], p["version"], p["specifier"]) for p in pins] == [("helperpkg", "1.0", ">=1")]
    assert str(links) not in repr(pins)  # files are named by a digest of their URL: URLs carry tokens
    entry = _entry(pins)
    assert isolation.fits(_links_finder(links, monkeypatch), REQUIREMENTS, prefix, entry)
    # Another build asking for it otherwise gets it where the finder picks that same file for it.
    assert isolation.fits(_links_finder(links, monkeypatch), ["helperpkg<2"], prefix, entry)
    assert not isolation.fits(_links_finder(links, monkeypatch), ["helperpkg>=1", "otherpkg"], prefix, entry)
    make_wheel(links, "helperpkg", "2.0")
    assert not isolation.fits(_links_finder(links, monkeypatch), REQUIREMENTS, prefix, entry)
    assert isolation.fits(_links_finder(links, monkeypatch), ["helperpkg<2"], prefix, entry)


def test_an_environment_made_in_this_command_answers_for_the_questions_it_was_made_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within one command the finder's answers stand, as they do in one pip process (it reads each page
    once): a release uploaded meanwhile is seen by the next command. Another specifier is answered by the
    entry where the newest file of all is what it picks (a specifier only takes candidates away); one
    that excludes it, or lets in pre-releases, is the finder's."""
    links = tmp_path / "links"
    make_wheel(links, "helperpkg", "1.0")
    prefix = [str(_installed(tmp_path / "prefix", "helperpkg", "1.0"))]
    pins = isolation.pins(_links_finder(links, monkeypatch), REQUIREMENTS, prefix)
    assert pins is not None
    make_wheel(links, "helperpkg", "2.0")
    this_command = _entry(pins, settings.command_id())
    assert isolation.fits(_links_finder(links, monkeypatch), REQUIREMENTS, prefix, this_command)
    assert not isolation.fits(_links_finder(links, monkeypatch), REQUIREMENTS, prefix, _entry(pins))
    assert pins[0]["newest"] is True
    assert isolation.fits(_links_finder(links, monkeypatch), ["helperpkg>=0.5"], prefix, this_command)
    assert not isolation.fits(_links_finder(links, monkeypatch), ["helperpkg>=0.5", "otherpkg"], prefix, this_command)
    make_wheel(links, "helperpkg", "0.9")
    assert not isolation.fits(_links_finder(links, monkeypatch), ["helperpkg<1"], prefix, this_command)
    assert not isolation.fits(_links_finder(links, monkeypatch), ["helperpkg>=1.0rc1"], prefix, this_command)  # 2.0 then
    older = isolation.pins(_links_finder(links, monkeypatch), ["helperpkg<2"], prefix)
    assert older is not None and older[0]["newest"] is False  # 1.0 is the pick for <2 only, not of all
    assert not isolation.fits(_links_finder(links, monkeypatch), ["helperpkg>=1"], prefix, _entry(older, settings.command_id()))


def _links_finder(links: Path, monkeypatch: pytest.MonkeyPatch) -> PackageFinder:
    """A finder over the ``--find-links`` directory ``links`` as a new pip process sees it (pip keeps each
    directory's listing for the life of its process)."""
    from pip._internal.index.sources import _FlatDirectorySource

    monkeypatch.setattr(_FlatDirectorySource, "_paths_to_urls", {})
    return _finder(index_urls=(), find_links=(str(links),))


def test_an_install_the_finder_would_not_pick_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second pip whose choice the finder cannot reproduce (constraints it read, a backtrack): were it
    kept, it could be handed out where that pip would choose otherwise; and nothing but what the
    requirements reach may be in it."""
    links = tmp_path / "links"
    make_wheel(links, "helperpkg", "1.0")
    make_wheel(links, "helperpkg", "2.0")
    finder = _links_finder(links, monkeypatch)
    assert isolation.pins(finder, REQUIREMENTS, [str(_installed(tmp_path / "prefix", "helperpkg", "1.0"))]) is None
    assert isolation.pins(finder, REQUIREMENTS, [str(_installed(tmp_path / "empty", "other", "1.0"))]) is None


def _installed(site: Path, name: str, version: str) -> Path:
    """A site-packages directory holding one installed distribution (its dist-info, as an install leaves it)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return site


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

