"""The seam in-process: the patch table, each hook, and pip's objects as pip itself makes them.

pip's own command objects parse real command lines and ``-r`` files here (no network: nothing is looked
up), so what these tests hand the seam is what pip hands it in a real run; only the guard is a stand-in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
import zipfile
from collections.abc import Iterator
from optparse import Values
from pathlib import Path
from typing import Any

import pytest
from pip._internal.commands import create_command
from pip._internal.models.link import Link
from pip._vendor.rich.console import Console

from pipguard import display
from pipguard._pip import describe, failure, patches
from pipguard.errors import BuildFailed, BuildReport, SeamUnavailable, SourceMismatch
from pipguard.sources import Source

SHA = hashlib.sha256(b"an sdist").hexdigest()


@pytest.fixture(autouse=True)
def plain_pip_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip's own settings of the machine running the tests (PIP_*, config files) stay out of these."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def pip_install(*args: str) -> tuple[Values, Any, list[Any]]:
    """(options, finder, requirements) exactly as ``pip install ARGS`` has them once it read its input."""
    command = create_command("install")
    options, rest = command.parse_args(list(args))
    with command.main_context():
        session = command.get_default_session(options)
        finder = command._build_package_finder(options=options, session=session)
        requirements = command.get_requirements(rest, options, finder, session)
    return options, finder, requirements


class FakeFactory:
    """What the seam reads of pip's resolver factory: its finder and its preparer's hash mode."""

    def __init__(self, finder: Any, require_hashes: bool) -> None:
        self._finder = finder
        self.preparer = types.SimpleNamespace(require_hashes=require_hashes, _download=None, _downloaded={})


class FakeGuard:
    """Answers what a test tells it to, and remembers what it was asked."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.asked: list[Source] = []
        self.locked: list[str] = []

    def claim(self, source: Source) -> Any:
        self.asked.append(source)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    @contextlib.contextmanager
    def environment_lock(self, scope: str) -> Iterator[object]:
        self.locked.append(scope)
        yield None

    def tree_lock(self, tree: str, name: str) -> contextlib.AbstractContextManager[object]:
        return self.environment_lock(tree)


class FakeClaim:
    """A miss: pip builds the source while the claim holds its lock."""

    def __init__(self, archive: Path | None = None) -> None:
        self.archive = archive
        self.events: list[Any] = []

    def building(self) -> Path | None:
        self.events.append("building")
        return None

    def done(self, wheel: Path | None, report: BuildReport | None, keep: bool = True) -> None:
        self.events.append(("done", wheel, report))

    def release(self) -> None:
        self.events.append("release")


def seam_for(guard: FakeGuard, *args: str) -> tuple[patches.Seam, FakeFactory, list[Any]]:
    options, finder, requirements = pip_install(*args)
    seam = patches.Seam(lambda: guard, options=options, command="install")
    return seam, FakeFactory(finder, bool(options.require_hashes)), requirements


SDIST = Link(f"https://files.example.invalid/alpha-1.0.tar.gz#sha256={SHA}")


# --- the table ---------------------------------------------------------------------------------------


@pytest.fixture
def fake_pip_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("fake_pip_internals")

    class Thing:
        def method(self) -> str:
            return "original"

    module.Thing = Thing  # type: ignore[attr-defined]
    module.function = lambda: "original"  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def _wrapping(label: str) -> Any:
    return lambda original, seam: lambda *a: f"{label}({original(*a)})"


def test_attach_patches_every_row_and_detach_restores_pip(fake_pip_module: types.ModuleType) -> None:
    table = (
        patches.Patch("fake_pip_internals:Thing.method", _wrapping("hooked")),
        patches.Patch("fake_pip_internals:function", _wrapping("hooked")),
    )
    detach = patches.attach(FakeGuard, table)
    assert fake_pip_module.Thing().method() == "hooked(original)"
    assert fake_pip_module.function() == "hooked(original)"
    detach()
    assert fake_pip_module.Thing().method() == "original"
    assert fake_pip_module.function() == "original"


def test_a_missing_patch_point_patches_nothing(fake_pip_module: types.ModuleType) -> None:
    table = (
        patches.Patch("fake_pip_internals:function", _wrapping("hooked")),
        patches.Patch("fake_pip_internals:Thing.gone", _wrapping("hooked")),
    )
    with pytest.raises(SeamUnavailable, match="Thing.gone"):
        patches.attach(FakeGuard, table)
    assert fake_pip_module.function() == "original"


def test_the_real_table_resolves_against_this_pip() -> None:
    for patch in patches.PATCHES:
        owner, attr = patch.resolve()
        assert callable(getattr(owner, attr)), patch.target


# --- hooks ---------------------------------------------------------------------------------------------


def test_the_command_hook_sets_options_command_and_output_for_the_command_only() -> None:
    seam = patches.Seam(FakeGuard)
    seen: dict[str, Any] = {}

    def original(self: Any, options: Values, args: list[str]) -> int:
        seen.update(command=seam.command, verbosity=display._verbosity(), stack=seam.exit_stack is not None)
        return 7

    run = patches._command_run("wheel")(original, seam)
    assert run(None, Values({"verbose": 0, "quiet": 2}), []) == 7
    assert seen == {"command": "wheel", "verbosity": -2, "stack": True}
    assert display._verbosity() == 0 and seam.exit_stack is None


def test_install_given_reqs_takes_the_environment_lock_of_the_install_scope(tmp_path: Path) -> None:
    guard = FakeGuard()
    seam, _factory, _reqs = seam_for(guard, "--target", str(tmp_path), "alpha")
    hooked = patches._install_given_reqs(lambda *a, **k: "installed", seam)
    with contextlib.ExitStack() as stack:
        seam.exit_stack = stack
        assert hooked() == "installed"
    assert guard.locked == [str(tmp_path.resolve())]


def test_the_cache_lookup_asks_the_guard_once_per_link_and_hands_pip_a_cache_entry(tmp_path: Path) -> None:
    wheel = tmp_path / "alpha-1.0-py3-none-any.whl"
    guard = FakeGuard((wheel, SHA))
    seam, factory, reqs = seam_for(guard, "alpha==1.0")
    seam.template = reqs[0]
    lookup = patches._wheel_cache_entry(lambda *a: pytest.fail("pip's own cache was asked"), seam)
    first = lookup(factory, SDIST, "alpha")
    assert lookup(factory, SDIST, "alpha").link == first.link
    assert len(guard.asked) == 1 and guard.asked[0].declared_sha256 == SHA
    assert first.link.file_path == str(wheel)
    assert first.origin.to_dict()["archive_info"]["hashes"] == {"sha256": SHA}  # what --require-hashes checks


def test_a_miss_of_pipguards_is_asked_of_pips_own_cache_and_a_hit_there_releases_the_claim() -> None:
    claim = FakeClaim()
    seam, factory, reqs = seam_for(FakeGuard(claim), "alpha==1.0")
    seam.template = reqs[0]
    assert patches._wheel_cache_entry(lambda *a: "pip's entry", seam)(factory, SDIST, "alpha") == "pip's entry"
    assert claim.events == ["release"] and not seam.claims


def test_a_miss_is_built_by_pip_under_the_claim_then_shared_and_released(tmp_path: Path) -> None:
    archive = tmp_path / "alpha-1.0.tar.gz"
    claim = FakeClaim(archive)
    seam, factory, reqs = seam_for(FakeGuard(claim), "alpha==1.0")
    seam.template = reqs[0]
    assert patches._wheel_cache_entry(lambda *a: None, seam)(factory, SDIST, "alpha") is None
    prepared = []
    req = types.SimpleNamespace(editable=False, link=SDIST, name="alpha", needs_unpacked_archive=prepared.append)
    patches._prepare_linked(lambda self, req: None, seam)(factory.preparer, req)
    assert factory.preparer._downloaded == {SDIST.url: str(archive)} and prepared == [archive]  # pip's own download
    wheel = tmp_path / "alpha-1.0-py3-none-any.whl"
    assert patches._build_one(lambda *a: str(wheel), seam)(req, str(tmp_path), True, False) == str(wheel)
    assert claim.events == ["building", ("done", wheel, None), "release"]
    seam.release_all()
    assert claim.events[-1] == "release" and not seam.claims


def test_a_failed_build_is_shared_with_what_pip_printed(tmp_path: Path) -> None:
    claim = FakeClaim()
    seam, factory, reqs = seam_for(FakeGuard(claim), "alpha==1.0")
    seam.template = reqs[0]
    patches._wheel_cache_entry(lambda *a: None, seam)(factory, SDIST, "alpha")
    req = types.SimpleNamespace(editable=False, link=SDIST, name="alpha")
    assert patches._build_one(lambda *a: None, seam)(req, str(tmp_path), True, False) is None
    (_event, wheel, report) = claim.events[1]
    assert wheel is None and report is not None and (report.name, report.stage) == ("alpha", "wheel")


def test_claims_pip_never_builds_are_released_when_the_command_ends() -> None:
    claim = FakeClaim()
    seam, factory, reqs = seam_for(FakeGuard(claim), "alpha==1.0")
    seam.template = reqs[0]
    patches._wheel_cache_entry(lambda *a: None, seam)(factory, SDIST, "alpha")
    run = patches._command_run("install")(lambda self, options, args: 0, seam)
    assert run(None, seam.options, []) == 0
    assert claim.events == ["release"]


def test_unnamed_requirements_are_named_as_their_wheel_spells_the_project(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text("[build-system]\nrequires = []\n")
    wheel = tmp_path / "treepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("treepkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: TreePkg\nVersion: 1.0\n")
    guard = FakeGuard((wheel, None))
    seam, factory, reqs = seam_for(guard, str(tree))
    template = reqs[0]
    assert template.req is None
    seen = {}

    def original(self: Any, link: Link, template: Any, factory: Any, name: Any, version: Any) -> None:
        seen["name"] = name

    patches._candidate_init(original, seam)(None, template.link, template, factory)
    assert seen["name"] == "treepkg"
    assert (template.req.name, template.req.url) == ("TreePkg", template.link.url)


def test_an_unnamed_requirement_missing_from_the_cache_is_left_for_pip_to_prepare(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text("[build-system]\nrequires = []\n")
    seam, factory, reqs = seam_for(FakeGuard(FakeClaim()), str(tree))
    template = reqs[0]
    seen = {}

    def original(self: Any, link: Link, template: Any, factory: Any, name: Any, version: Any) -> None:
        seen["name"] = name

    patches._candidate_init(original, seam)(None, template.link, template, factory)
    assert seen["name"] is None and template.req is None
    assert template.link.url in seam.claims


def test_a_build_failure_becomes_pips_own_error_and_a_mismatch_goes_back_to_pip(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = BuildReport("alpha", "wheel", "Building wheel for alpha\n", "  ERROR: Failed building wheel for alpha\n")
    seam, factory, reqs = seam_for(FakeGuard(BuildFailed(report)), "alpha==1.0")
    seam.template = reqs[0]
    with pytest.raises(failure.ReplayedBuildFailure):
        seam.wheel_for(factory, SDIST, "alpha")
    assert "Building wheel for alpha" in capsys.readouterr().out
    seam, factory, _ = seam_for(FakeGuard(SourceMismatch("no")), "alpha==1.0")
    assert seam.wheel_for(factory, SDIST, "alpha") is None
    assert "pipguard" not in capsys.readouterr().err  # pip reports the mismatch, not pipguard


def test_machinery_failure_warns_once_and_lets_pip_build(capsys: pytest.CaptureFixture[str]) -> None:
    seam, factory, _ = seam_for(FakeGuard(OSError("disk full")), "alpha==1.0")
    assert seam.wheel_for(factory, SDIST, "alpha") is None
    assert "pipguard: warning: cache unavailable (OSError: disk full); building as plain pip" in capsys.readouterr().err


# --- what pip's objects become -------------------------------------------------------------------------


def test_index_options_from_a_requirements_file_reach_the_build_child(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    reqs = tmp_path / "reqs.txt"
    reqs.write_text(f"--no-index\n--find-links {links}\n--trusted-host mirror.example.invalid\nalpha==1.0\n")
    options, finder, _ = pip_install("--index-url", "https://user:token@index.example.invalid/simple", "-r", str(reqs))
    args = describe.finder_args(finder)
    assert "--no-index" in args and "--index-url" not in args
    assert args[args.index("--find-links") + 1] == str(links)
    assert args[args.index("--trusted-host") + 1] == "mirror.example.invalid"


def test_use_feature_and_refresh_package_reach_the_build_child() -> None:
    """Builds ahead run in pipguard's child: the options only the command line sets must reach it."""
    options, finder, reqs = pip_install("--use-feature=inprocess-build-deps", "--refresh-package=alpha", "alpha==1.0")
    args = describe.build_options(finder, options, reqs[0]).child_args
    assert args[args.index("--use-feature") + 1] == "inprocess-build-deps"
    assert args[args.index("--refresh-package") + 1] == "alpha"


def test_hash_mode_refuses_directories_and_checks_archives(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.txt"
    reqs.write_text(f"alpha==1.0 --hash=sha256:{SHA}\n")
    seam, factory, parsed = seam_for(FakeGuard(), "-r", str(reqs))
    source = describe.source_for(factory, SDIST, "alpha", parsed[0], seam.options)  # type: ignore[arg-type]
    assert source is not None and source.sha256_allowed is not None
    assert source.sha256_allowed(SHA) and not source.sha256_allowed("0" * 64)
    directory = Link(tmp_path.as_uri())
    assert describe.source_for(factory, directory, None, parsed[0], seam.options) is None  # type: ignore[arg-type]


def test_a_vcs_link_is_a_source_only_when_pinned_to_a_commit() -> None:
    commit = "a" * 40
    assert describe.pinned_commit(Link(f"git+https://example.invalid/r.git@{commit}#egg=r")) == commit
    assert describe.pinned_commit(Link("git+https://example.invalid/r.git@main#egg=r")) is None


def test_install_scope_follows_pips_own_precedence(tmp_path: Path) -> None:
    options = Values({"target_dir": None, "prefix_path": str(tmp_path), "root_path": None, "use_user_site": False})
    assert patches.install_scope(options) == str(tmp_path.resolve())
    options.prefix_path = None
    assert patches.install_scope(options) == str(Path(sys.prefix).resolve())


@pytest.mark.parametrize(("command", "last"), [("install", "╰─> alpha"), ("wheel", "ERROR: Failed to build one or more wheels")])
def test_a_replayed_failure_ends_with_the_commands_own_summary(command: str, last: str) -> None:
    child_stderr = "  error: subprocess-exited-with-error\n  ERROR: Failed building wheel for alpha\nERROR: Failed to build one or more wheels\n"
    error = failure.ReplayedBuildFailure(BuildReport("alpha", "wheel", "", child_stderr), command)
    console = Console(record=True, width=200, color_system=None)
    console.print(error)
    text = console.export_text().rstrip().splitlines()
    assert text[0] == "  error: subprocess-exited-with-error"
    assert text[-1] == last
    assert text.count("ERROR: Failed to build one or more wheels") == (1 if command == "wheel" else 0)
