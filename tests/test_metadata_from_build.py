"""An sdist's metadata taken from its build (pipguard/_pip/metadata.py): one backend run where plain pip runs
``prepare_metadata_for_build_wheel`` and then ``build_wheel``, with plain pip's output, and plain pip's two
hooks wherever the hook's output is shown or pip will not build what it prepares.

Each test runs pipguard's command, counts the fixture backend's hook calls, then runs plain pip's (with a
pip cache of its own) and compares what they print.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Dists, Result, World
from support.output import masked
from support.processes import install_args

HOOKS = ("prepare_metadata_for_build_wheel", "build_wheel")


def _counted(world: World, run: Callable[[], Result]) -> tuple[Result, dict[str, int]]:
    """``run``'s result, and how many times it ran each of alpha's hooks."""
    before = {hook: world.hooks(hook, "alpha") for hook in HOOKS}
    result = run()
    return result, {hook: world.hooks(hook, "alpha") - before[hook] for hook in HOOKS}


def _both(world: World, *args: str, env: dict[str, str] | None = None) -> tuple[Result, dict[str, int], Result, dict[str, int]]:
    guarded, guarded_hooks = _counted(world, lambda: world.pipguard("--python", str(world.venv("g")), *args, env=env))
    own_cache = {"PIP_CACHE_DIR": str(world.root / "plain-pip-cache")}
    plain, plain_hooks = _counted(
        world, lambda: world.pip("--python", str(world.venv("p")), *args, env={**(env or {}), **own_cache})
    )
    return guarded, guarded_hooks, plain, plain_hooks


def test_one_sdist_is_built_once_for_its_metadata_and_its_wheel_with_pips_own_lines(world: World, dists: Dists) -> None:
    guarded, guarded_hooks, plain, plain_hooks = _both(world, "install", "--index-url", dists.index.url, "alpha")
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert plain_hooks == {"prepare_metadata_for_build_wheel": 1, "build_wheel": 1}
    assert guarded_hooks == {"prepare_metadata_for_build_wheel": 0, "build_wheel": 1}
    assert masked(guarded.stdout) == masked(plain.stdout)
    assert "Preparing metadata (pyproject.toml): finished with status 'done'" in guarded.stdout
    assert guarded.stderr == plain.stderr == ""
    assert (world.site_packages(world.venv("g")) / "alpha").is_dir()


def test_where_the_hooks_output_is_shown_or_logged_pip_runs_both_hooks(world: World, dists: Dists) -> None:
    for i, options in enumerate((("-v",), ("--log", str(world.root / "install.log")))):
        args = install_args(world.venv(f"v{i}"), dists.index.url, "alpha", options=("--no-cache-dir", *options))
        guarded, hooks = _counted(world, lambda: world.pipguard(*args))
        assert guarded.returncode == 0, guarded.output
        assert hooks == {"prepare_metadata_for_build_wheel": 1, "build_wheel": 1}, options


def test_a_dry_run_prepares_the_metadata_and_builds_nothing(world: World, dists: Dists) -> None:
    guarded, guarded_hooks, plain, plain_hooks = _both(world, "install", "--dry-run", "--index-url", dists.index.url, "alpha")
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert guarded_hooks == plain_hooks == {"prepare_metadata_for_build_wheel": 1, "build_wheel": 0}
    assert masked(guarded.stdout) == masked(plain.stdout)


def test_a_build_that_fails_is_run_once_and_fails_as_pips_does(world: World, dists: Dists) -> None:
    """The build for metadata fails: pip's metadata hook runs (and succeeds), and pip's build step shows
    that very failure (its output, exit code, summary) without building again."""
    env = {"FIXTURE_FAIL_BUILD": "alpha"}
    guarded, guarded_hooks, plain, plain_hooks = _both(world, "install", "--index-url", dists.index.url, "alpha", env=env)
    assert guarded.returncode == plain.returncode == 1
    assert guarded_hooks == plain_hooks == {"prepare_metadata_for_build_wheel": 1, "build_wheel": 1}
    assert masked(guarded.stdout) == masked(plain.stdout)
    assert masked(guarded.stderr) == masked(plain.stderr)
    assert "FIXTURE_FAIL_BUILD: refusing to build alpha" in guarded.stderr
    assert "Failed to build alpha" in guarded.stdout or "Failed to build alpha" in guarded.stderr
