"""pipguard's environment variables: valid values are taken, bad ones are ignored with a complaint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipguard import settings


@pytest.fixture(autouse=True)
def no_pipguard_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from an environment with none of the variables under test."""
    for name in ("PIPGUARD_LOCK_TIMEOUT", "PIPGUARD_PROGRESS", "PIPGUARD_TRUST_SHARED_CACHE",
                 "PIPGUARD_CACHE_DIR", "MAKEFLAGS", *settings.CI_VARIABLES):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("raw", "seconds"), [("30", 30.0), ("0", 0.0), ("2.5", 2.5), (" 7 ", 7.0)])
def test_lock_timeout_valid(monkeypatch: pytest.MonkeyPatch, raw: str, seconds: float) -> None:
    monkeypatch.setenv("PIPGUARD_LOCK_TIMEOUT", raw)
    assert settings.lock_timeout() == (seconds, None)


@pytest.mark.parametrize("raw", [None, ""])
def test_lock_timeout_unset_or_empty_is_the_default(monkeypatch: pytest.MonkeyPatch, raw: str | None) -> None:
    if raw is not None:
        monkeypatch.setenv("PIPGUARD_LOCK_TIMEOUT", raw)
    assert settings.lock_timeout() == (settings.DEFAULT_LOCK_TIMEOUT, None)


@pytest.mark.parametrize("raw", ["soon", "-5", "-0.1", "nan", "10s"])
def test_lock_timeout_invalid_or_negative_is_ignored_with_a_complaint(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("PIPGUARD_LOCK_TIMEOUT", raw)
    seconds, complaint = settings.lock_timeout()
    assert seconds == settings.DEFAULT_LOCK_TIMEOUT
    assert complaint is not None and repr(raw) in complaint and "PIPGUARD_LOCK_TIMEOUT" in complaint


@pytest.mark.parametrize(("raw", "mode"), [("live", "live"), ("plain", "plain"), ("off", "off"), (" Plain ", "plain")])
def test_progress_modes(monkeypatch: pytest.MonkeyPatch, raw: str, mode: str) -> None:
    monkeypatch.setenv("PIPGUARD_PROGRESS", raw)
    assert settings.progress_override() == (mode, None)


def test_progress_unset_and_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.progress_override() == (None, None)
    monkeypatch.setenv("PIPGUARD_PROGRESS", "fancy")
    mode, complaint = settings.progress_override()
    assert mode is None
    assert complaint is not None and "'fancy'" in complaint and "live, plain or off" in complaint


def test_not_in_ci_or_make_by_default() -> None:
    assert settings.in_ci_or_make() is False


@pytest.mark.parametrize("name", settings.CI_VARIABLES)
def test_each_ci_variable_means_ci(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "1")
    assert settings.in_ci_or_make() is True


def test_an_empty_ci_variable_is_not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "")
    assert settings.in_ci_or_make() is False


@pytest.mark.parametrize(
    ("makeflags", "parallel"),
    [(" -j4 --jobserver-auth=fifo:/tmp/GMfifo1", True), ("-j --jobserver-fds=3,4", True),
     ("--jobserver-auth=3,4", True), ("k", False), ("", False)],
)
def test_make_is_detected_by_its_jobserver(monkeypatch: pytest.MonkeyPatch, makeflags: str, parallel: bool) -> None:
    monkeypatch.setenv("MAKEFLAGS", makeflags)
    assert settings.in_ci_or_make() is parallel


@pytest.mark.parametrize(("raw", "trusted"), [("1", True), ("true", True), ("yes", True),
                                               ("0", False), ("", False), ("no", False)])
def test_trusts_shared_cache(monkeypatch: pytest.MonkeyPatch, raw: str, trusted: bool) -> None:
    monkeypatch.setenv("PIPGUARD_TRUST_SHARED_CACHE", raw)
    assert settings.trusts_shared_cache() is trusted


def test_shared_cache_is_untrusted_when_unset() -> None:
    assert settings.trusts_shared_cache() is False


def test_cache_root_from_pipguard_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIPGUARD_CACHE_DIR", str(tmp_path / "c"))
    assert settings.cache_root() == tmp_path / "c"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PIPGUARD_CACHE_DIR", "~/tilde")
    assert settings.cache_root() == tmp_path / "tilde"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPGUARD_CACHE_DIR", "relative")
    assert settings.cache_root() == tmp_path / "relative"  # absolute: the same for a child in another cwd


@pytest.mark.parametrize("configured", [None, ""])
def test_cache_root_defaults_to_the_user_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, configured: str | None
) -> None:
    if configured is not None:
        monkeypatch.setenv("PIPGUARD_CACHE_DIR", configured)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings.cache_root() == tmp_path / "xdg" / "pipguard"


@pytest.fixture
def nothing_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test scrubs into a store of its own: values taken here must not outlive it."""
    monkeypatch.setattr(settings, "_taken", {})


@pytest.mark.usefixtures("nothing_taken")
def test_scrub_environment_hides_every_pipguard_variable_and_keeps_its_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What build code inherits has none of them; what pipguard reads still has all of them."""
    monkeypatch.setenv("PIPGUARD_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("PIPGUARD_REMOTE", "https://wheels.example/pipguard")
    monkeypatch.setenv("PIPGUARD_REMOTE_TOKEN", "s3cret")
    monkeypatch.setenv("PIPGUARD_REMOTE_VERIFY_KEY", "")
    monkeypatch.setenv("PIPGUARD_SOMETHING_NEW", "x")
    monkeypatch.setenv("CFLAGS", "-O2")
    settings.scrub_environment()
    assert [name for name in os.environ if name.startswith("PIPGUARD_")] == []
    assert os.environ["CFLAGS"] == "-O2"  # not pipguard's: left for the build
    assert settings.cache_root() == tmp_path / "c"
    remote = settings.remote_environment()
    assert remote["PIPGUARD_REMOTE_TOKEN"] == "s3cret"
    assert remote["PIPGUARD_REMOTE_VERIFY_KEY"] == ""  # set to nothing is still set
    assert settings.variable("PIPGUARD_SOMETHING_NEW") == "x"


@pytest.mark.usefixtures("nothing_taken")
def test_a_variable_set_after_scrubbing_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPGUARD_LOCK_TIMEOUT", "30")
    settings.scrub_environment()
    assert settings.lock_timeout() == (30.0, None)
    monkeypatch.setenv("PIPGUARD_LOCK_TIMEOUT", "5")
    assert settings.lock_timeout() == (5.0, None)


def test_a_build_dependency_install_gets_the_local_settings_and_its_parents_never_the_remotes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {"PIPGUARD_CACHE_DIR": str(tmp_path), "PIPGUARD_LOCK_TIMEOUT": "9", "PIPGUARD_PARENTS": "11",
                        "PIPGUARD_REMOTE": "https://user:secret@store.example", "PIPGUARD_REMOTE_TOKEN": "secret"}.items():
        monkeypatch.setenv(name, value)
    handed = settings.child_environment()
    assert handed == {
        "PIPGUARD_CACHE_DIR": str(tmp_path),
        "PIPGUARD_LOCK_TIMEOUT": "9",
        "PIPGUARD_PARENTS": f"11,{os.getpid()}",
        "PIPGUARD_COMMAND": settings.command_id(),
    }
    assert settings.parents() == (11,)
