"""Drop-in, as pip's own functional tests judge it: the process that builds shows, logs and installs what
plain pip would, pipguard says nothing where nobody waited, and pip's remedies reach pipguard's cache.

Each test runs the same command through pipguard and through plain pip (each with a pip cache of its own)
and compares what they print, after masking what differs from run to run (sizes, hashes, temp paths).
"""

from __future__ import annotations

from pathlib import Path

from conftest import Dists, Result, World
from support.hooklog import read_hooks
from support.output import masked as _masked
from support.processes import install_args
from support.projects import make_project, make_sdist


def _side_by_side(world: World, *args: str, env: dict[str, str] | None = None) -> tuple[Result, Result]:
    """(pipguard's, plain pip's) results of ``install ARGS`` into fresh venvs of their own."""
    guarded = world.pipguard("--python", str(world.venv("guarded")), "install", *args, env=env)
    own_cache = {"PIP_CACHE_DIR": str(world.root / "plain-pip-cache")}
    plain = world.pip("--python", str(world.venv("plain")), "install", *args, env={**(env or {}), **own_cache})
    return guarded, plain


def test_a_fresh_build_shows_pips_own_build_block_and_leaves_stderr_empty(world: World, dists: Dists) -> None:
    guarded, plain = _side_by_side(world, "--index-url", dists.index.url, "midpkg")
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert _masked(guarded.stdout) == _masked(plain.stdout)
    assert "Building wheels for collected packages: " in guarded.stdout
    assert "Successfully built " in guarded.stdout and "Using cached" not in guarded.stdout
    assert guarded.stderr == plain.stderr == ""
    assert {"midpkg", "leafpkg"} <= world.cached_projects()


def test_a_local_tree_is_built_as_pip_builds_it_named_as_the_project_spells_it(world: World) -> None:
    tree = make_project(world.root / "src", "TreePkg")
    guarded, plain = _side_by_side(world, "--no-index", str(tree))
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert _masked(guarded.stdout) == _masked(plain.stdout)
    assert "Successfully installed TreePkg-1.0" in guarded.stdout
    assert "cached" not in guarded.stdout.lower()  # a tree's wheel is never called cached
    assert guarded.stderr == ""


def test_the_log_file_holds_the_build_as_plain_pips_does(world: World, dists: Dists) -> None:
    guarded_log, plain_log = world.root / "guarded.log", world.root / "plain.log"
    guarded = world.pipguard(*install_args(world.venv("g"), dists.index.url, "alpha", options=("--log", str(guarded_log))))
    assert guarded.returncode == 0, guarded.output
    plain = world.pip(
        *install_args(world.venv("p"), dists.index.url, "alpha", options=("--log", str(plain_log))),
        env={"PIP_CACHE_DIR": str(world.root / "plain-pip-cache")},
    )
    assert plain.returncode == 0, plain.output

    def build_lines(log: Path) -> list[str]:
        wanted = ("Building wheel for", "Created wheel for", "Successfully built", "Running command")
        return [_masked(line.split(" ", 1)[1]) for line in log.read_text().splitlines() if any(w in line for w in wanted)]

    assert build_lines(guarded_log) and build_lines(guarded_log) == build_lines(plain_log)


def test_one_tree_spelt_two_ways_is_one_link_as_for_plain_pip(world: World) -> None:
    lib_a = make_project(world.root / "src", "lib_a")
    lib_b = make_project(world.root / "src", "lib_b", dependencies=[f"lib_a @ file://localhost{lib_a}"])
    guarded, plain = _side_by_side(world, "--no-index", str(lib_a), str(lib_b))
    assert plain.returncode == 0, plain.output
    assert guarded.returncode == 0, guarded.output
    assert "Successfully installed lib_a-1.0 lib_b-1.0" in guarded.stdout
    assert world.hooks("build_wheel", "lib_a") == 2  # once for pipguard's command, once for plain pip's


def test_command_line_config_settings_reach_only_the_command_lines_requirements(world: World, dists: Dists) -> None:
    first = world.pipguard(
        *install_args(world.venv("a"), dists.index.url, "midpkg", options=("--config-settings", "flavor=x"))
    )
    assert first.returncode == 0, first.output
    assert world.hooks("build_wheel", "leafpkg") == 1
    # leafpkg, a dependency, was built without the setting: the same wheel serves a plain install of it.
    again = world.pipguard(*install_args(world.venv("b"), dists.index.url, "leafpkg"))
    assert again.returncode == 0, again.output
    assert world.hooks("build_wheel", "leafpkg") == 1
    assert "Using cached leafpkg-2.0-py3-none-any.whl" in again.stdout


def test_a_failed_build_ends_with_pips_own_summary_after_every_build(world: World, dists: Dists) -> None:
    env = {"FIXTURE_FAIL_BUILD": "alpha"}
    guarded, plain = _side_by_side(world, "--index-url", dists.index.url, "alpha", "beta", env=env)
    assert guarded.returncode == plain.returncode == 1
    assert _masked(guarded.stdout) == _masked(plain.stdout)
    assert "Successfully built beta" in guarded.stdout and "Failed to build alpha" in guarded.stdout
    assert _masked(guarded.stderr) == _masked(plain.stderr)
    assert "beta" in world.cached_projects() and "alpha" not in world.cached_projects()


def test_pip_cache_purge_and_remove_reach_pipguards_cache(world: World, dists: Dists) -> None:
    assert world.pipguard(*install_args(world.venv("a"), dists.index.url, "alpha", "beta")).returncode == 0
    removed = world.pipguard("cache", "remove", "alpha")
    assert removed.returncode == 0, removed.output
    assert "pipguard: removed 1 wheel from its own cache" in removed.stderr
    assert world.cached_projects() == {"beta"}
    purged = world.pipguard("cache", "purge")
    assert purged.returncode == 0 and "pipguard: removed 1 wheel" in purged.stderr, purged.output
    assert world.cached_projects() == set()
    again = world.pipguard(*install_args(world.venv("b"), dists.index.url, "alpha"))
    assert again.returncode == 0, again.output
    assert world.hooks("build_wheel", "alpha") == 2  # the remedy worked: built again


def test_install_only_deps_of_a_tree_prepares_it_and_builds_nothing_of_it(world: World, dists: Dists) -> None:
    tree = make_project(world.root / "src", "apppkg", dependencies=["leafpkg>=2"])
    guarded = world.pipguard(*install_args(world.venv("a"), dists.index.url, "--only-deps", str(tree)))
    assert guarded.returncode == 0, guarded.output
    hooks = read_hooks(world.hook_log)
    assert {record["project"] for record in hooks if record["hook"] == "build_wheel"} == {"leafpkg"}
    assert world.hooks("prepare_metadata_for_build_wheel", "apppkg") == 1  # only what plain pip runs of it


def test_a_build_waited_for_by_nobody_prints_nothing_of_pipguards_even_as_an_sdist(world: World) -> None:
    links = world.root / "links"
    make_sdist(make_project(world.root / "trees", "onlysdist"), links)
    guarded, plain = _side_by_side(world, "--no-index", "--find-links", str(links), "onlysdist")
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert guarded.stderr == "" and _masked(guarded.stdout) == _masked(plain.stdout)


def test_without_posix_locks_every_command_is_plain_pip_after_one_warning(world: World, dists: Dists) -> None:
    """Where ``fcntl`` cannot be imported (as on Windows), nothing crashes: one warning, then plain pip."""
    breaker = world.root / "no-fcntl"
    breaker.mkdir()
    (breaker / "fcntl.py").write_text('raise ImportError("No module named \'fcntl\'")\n')
    env = {"PYTHONPATH": str(breaker)}
    venv = world.venv("v")
    result = world.pipguard(*install_args(venv, dists.index.url, "alpha"), env=env)
    assert result.returncode == 0, result.output
    assert (world.site_packages(venv) / "alpha").is_dir()
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("pipguard: warning: cannot load the build cache") and "running plain pip" in warning
    listed = world.pipguard("--python", str(venv), "list", env=env)
    assert listed.returncode == 0 and "alpha" in listed.stdout and listed.stderr == "", listed.output
    purged = world.pipguard("--python", str(venv), "cache", "purge", env=env)
    assert purged.returncode == 0 and "Traceback" not in purged.output, purged.output


def test_pinned_sdists_built_ahead_show_as_plain_pips_builds_not_as_cache_hits(world: World, dists: Dists) -> None:
    """Built side by side in pipguard's build child, shown as plain pip shows them, where it shows them:
    the download and preparation under each requirement, one build block, one summary."""
    env = {"PIPGUARD_JOBS": "2"}
    guarded, plain = _side_by_side(world, "--index-url", dists.index.url, "alpha==1.0", "beta==1.0", env=env)
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert {"alpha", "beta"} <= world.cached_projects()
    assert "Using cached" not in guarded.stdout
    assert _masked(guarded.stdout) == _masked(plain.stdout)
    assert guarded.stderr == ""


def test_unpinned_sdists_built_ahead_show_as_plain_pips_builds_and_land_in_pips_cache_too(world: World, dists: Dists) -> None:
    """midpkg and alpha, unpinned, built ahead side by side (and midpkg's dependency leafpkg as soon as
    the resolver learns it): shown as plain pip shows its builds, and their wheels kept in pip's own cache
    where plain pip keeps them (``pip cache list``)."""
    env = {"PIPGUARD_JOBS": "2"}
    guarded, plain = _side_by_side(world, "--index-url", dists.index.url, "midpkg", "alpha", env=env)
    assert guarded.returncode == plain.returncode == 0, guarded.output
    assert {"midpkg", "leafpkg"} <= world.cached_projects()
    assert _masked(guarded.stdout) == _masked(plain.stdout)
    assert guarded.stderr == ""
    listed = [world.pip("cache", "list", env=cache).stdout for cache in ({}, {"PIP_CACHE_DIR": str(world.root / "plain-pip-cache")})]
    assert "leafpkg-2.0" in listed[0] and listed[0] == listed[1]


def test_a_failed_build_ahead_is_reported_in_pips_build_step_after_the_others(world: World, dists: Dists) -> None:
    """One of two pinned sdists built ahead fails: the other is built and named, the failure is shown
    where pip shows its own, and the failed one is not built a second time."""
    env = {"PIPGUARD_JOBS": "2", "FIXTURE_FAIL_BUILD": "alpha"}
    guarded, plain = _side_by_side(world, "--index-url", dists.index.url, "alpha==1.0", "beta==1.0", env=env)
    assert guarded.returncode == plain.returncode == 1
    assert _masked(guarded.stdout) == _masked(plain.stdout)
    assert "Successfully built beta" in guarded.stdout and "Failed to build alpha" in guarded.stdout
    assert world.hooks("build_wheel", "alpha") == 2  # once through pipguard, once through plain pip
    assert "failed-wheel-build-for-install" in guarded.stderr and "Failed building wheel for alpha" in guarded.stderr
