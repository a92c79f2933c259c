"""Benchmark pipguard against plain pip, side by side in one run (see bin/bench).

Scenarios:
- one install, 4 CPU-bound sdists (pinned, cold caches): plain pip builds them in turn, pipguard side by
  side within its job budget; and pipguard with PIPGUARD_JOBS=1, which shows what pipguard adds per build.
- one install of 4 sdists requested without ``==``, and one of a top-level sdist whose 3 dependencies are
  sdists: the builds the resolver reaches one after another unless they are built ahead.
- one install of 3 sdists whose ``build-system.requires`` names a build requirement that the index has only
  as an sdist, so each build environment needs it built from source: how many times it is built (the goal
  is once), and the same 3 as 3 concurrent installs.
- cold: the uv #3525 test plan. N fresh venvs, N concurrent installs of one CPU-bound sdist from an HTTP
  index on 127.0.0.1, cold caches (pip's and pipguard's). Builds, wall and CPU seconds.
- warm reinstall: ``install --force-reinstall`` of the same package with warm caches (median of R).
- forwarded ``list`` (median of R).
- failing build: N/2 concurrent installs of an sdist whose build burns its CPU seconds, then fails (plain pip
  fails N/2 times; pipguard once, and its waiters report that failure).
- local tree with a 30 000-file ``node_modules/``: reinstall from the tree (median of R); nothing of the
  tree is walked, so it costs what pip costs.
- ``--remote``: instead of the above, a second machine's cold install with a hit in the remote tier (a real
  nginx with WebDAV PUT on 127.0.0.1; the first machine built and uploaded, signed), against a cold install
  that builds locally, side by side (median of R, fresh caches and venvs each time).

- ``--real``: instead of the above, the real index (PyPI), cold caches and fresh venvs for each scenario and
  tool: ``install --no-deps --no-binary six six``; 5 C sdists (built from source by every tool:
  ``--no-binary`` names them), unpinned, then pinned ``==`` to what pip's finder picks at the start of the
  run; and N concurrent installs of psutil, each into its own venv. ``--repeat`` rounds (default 3) of
  all of them, interleaved; the table shows each tool's medians. Skipped, with one line, without PyPI.

CPU seconds are those of all child processes (pip, builds, backends), from getrusage. uv's column shows
``uv pip`` in the same run, for the scenarios it can run (the cold ones): bin/bench installs uv into a venv
of its own (``--uv PATH`` names another); without uv the table has no such column and says why.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.envs import clean_env, make_venv  # noqa: E402
from support.hooklog import count  # noqa: E402
from support.index import IndexServer  # noqa: E402
from support.projects import make_project, make_sdist  # noqa: E402
from support.remote import nginx_binary, openssl_keypair, start_nginx  # noqa: E402

PACKAGE = "cpupkg"
REAL_ROUNDS = 3  # rounds of the --real scenarios: their ratios are medians
ONE_INSTALL = ("sidea", "sideb", "sidec", "sided")
UNPINNED = ("opena", "openb", "openc", "opend")
TOP, TRANSITIVE = "stack", ("stacka", "stackb", "stackc")
BUILD_TOOL, NEEDS_TOOL = "buildtool", ("toola", "toolb", "toolc")
REAL_INDEX = "https://pypi.org/simple/"
C_SDISTS = ("psutil", "markupsafe", "simplejson", "wrapt", "msgpack")
CONCURRENT = "psutil"
FAILING = "failpkg"
TREE = "treepkg"
NODE_MODULES_FILES = 30_000


@dataclass
class Measure:
    wall: float
    cpu: float
    builds: int
    failures: int


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Tool:
    """plain pip or pipguard, each with its own fresh caches."""

    def __init__(self, name: str, argv0: Sequence[str], root: Path, index_url: str, cpu_seconds: float) -> None:
        self.name = name
        self.argv0 = list(argv0)
        self.root = root
        self.index_url = index_url
        self.hook_log = root / "hooks.jsonl"
        root.mkdir(parents=True)
        self.env = clean_env(
            PIP_CACHE_DIR=str(root / "pip-cache"),
            PIPGUARD_CACHE_DIR=str(root / "pipguard-cache"),
            FIXTURE_HOOK_LOG=str(self.hook_log),
            FIXTURE_BUILD_CPU_SECONDS=str(cpu_seconds),
            PIPGUARD_PROGRESS="off",
        )

    def command(self, venv: Path, *args: str) -> list[str]:
        return [*self.argv0, "--python", str(venv), *args]

    def builds(self, package: str) -> int:
        return count(self.hook_log, "build_wheel", package)


    def install(self, venv: Path, *extra: str, package: str = PACKAGE) -> list[str]:
        return self.command(venv, "install", "--index-url", self.index_url, *extra, package)

    def venvs(self, name: str, n: int) -> list[Path]:
        made = [self.root / f"{name}{i}" for i in range(n)]
        for venv in made:
            make_venv(venv)
        return made

    def run_all(self, commands: list[list[str]], package: str = PACKAGE, expect_failure: bool = False) -> Measure:
        builds_before = count(self.hook_log, "build_wheel", package)
        cpu_before = _children_cpu()
        started = time.perf_counter()
        procs = [
            subprocess.Popen(c, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for c in commands
        ]
        failures = 0
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                failures += 1
                if not expect_failure:
                    sys.stderr.write(f"{self.name} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}\n")
        wall = time.perf_counter() - started
        builds = count(self.hook_log, "build_wheel", package) - builds_before
        return Measure(wall, _children_cpu() - cpu_before, builds, failures)

    def median(self, command: list[str], repeat: int) -> float:
        return statistics.median(self.run_all([command]).wall for _ in range(repeat))


class UvTool(Tool):
    """``uv pip``, with a cache of its own: ``uv pip install --python VENV ...``."""

    def __init__(self, uv: str, root: Path, index_url: str, cpu_seconds: float) -> None:
        super().__init__("uv", [uv, "pip"], root, index_url, cpu_seconds)
        self.env = {k: v for k, v in self.env.items() if not k.startswith("UV_")}  # as PIP_* are cleared
        self.env["UV_CACHE_DIR"] = str(root / "uv-cache")

    def command(self, venv: Path, *args: str) -> list[str]:
        return [*self.argv0, args[0], "--python", str(venv), *args[1:]]


Row = tuple[str, ...]  # scenario, plain pip, pipguard, ratio[, uv[, pipguard/uv]]


def _ratio(plain: float, guard: float, digits: int = 1) -> tuple[str, str, str]:
    return f"{plain:.{digits}f}", f"{guard:.{digits}f}", f"{guard / plain:.2f}"


def _seconds_row(label: str, plain: float, guard: float, by_uv: float | None) -> Row:
    """Seconds of plain pip and pipguard, their ratio, and uv's with pipguard/uv where uv ran."""
    row = (label, *_ratio(plain, guard))
    return row if by_uv is None else (*row, f"{by_uv:.1f}", f"{guard / by_uv:.2f}")


def _timed_rows(label: str, measured: dict[str, Measure]) -> list[Row]:
    """A scenario's wall and CPU seconds, each tool's."""
    plain, guard, by_uv = measured["plain pip"], measured["pipguard"], measured.get("uv")
    return [
        _seconds_row(f"{label}: wall s", plain.wall, guard.wall, by_uv.wall if by_uv else None),
        _seconds_row(f"{label}: CPU s", plain.cpu, guard.cpu, by_uv.cpu if by_uv else None),
    ]


def _install_once(tools: Sequence[Tool], venv_name: str, requirements: Sequence[str],
                  *options: str) -> dict[str, Measure]:
    """Each tool's one install of requirements into a fresh venv of its own."""
    measured = {}
    for tool in tools:
        (venv,) = tool.venvs(venv_name, 1)
        command = tool.command(venv, "install", "--index-url", tool.index_url, *options, *requirements)
        measured[tool.name] = tool.run_all([command])
    return measured


def _install_each(tools: Sequence[Tool], venv_name: str, requirements: Sequence[str],
                  *options: str) -> dict[str, Measure]:
    """Each tool's concurrent installs, one per requirement, each into a fresh venv of its own."""
    return {
        tool.name: tool.run_all([tool.install(venv, *options, package=requirement)
                                 for venv, requirement in zip(tool.venvs(venv_name, len(requirements)), requirements)])
        for tool in tools
    }


def _failures(measured: dict[str, Measure]) -> int:
    return sum(m.failures for m in measured.values())


def cold_concurrent(tools: list[Tool], n: int, uv: Tool | None) -> tuple[list[Row], int]:
    """The uv #3525 plan: n fresh venvs, n concurrent installs of one CPU-bound sdist, cold caches."""
    cold = _install_each([*tools, *_some(uv)], "v", [PACKAGE] * n)
    plain, guard, by_uv = cold["plain pip"], cold["pipguard"], cold.get("uv")
    label = f"cold, {n} concurrent installs"
    return [
        (f"{label}: builds", str(plain.builds), str(guard.builds), f"{guard.builds}/{plain.builds}",
         *_uv(by_uv, lambda m: str(m.builds))),
        *_timed_rows(label, cold),
        ("cold: failed installs", str(plain.failures), str(guard.failures), "", *_uv(by_uv, lambda m: str(m.failures))),
    ], plain.failures + guard.failures


def one_install(tools: list[Tool], one_at_a_time: Tool, uv: Tool | None) -> tuple[list[Row], int]:
    """One install of four pinned CPU-bound sdists into a fresh venv, cold caches."""
    pins = [f"{name}==1.0" for name in ONE_INSTALL]
    measured = _install_once([*tools, one_at_a_time, *_some(uv)], "one", pins)
    plain, single = measured["plain pip"], measured[one_at_a_time.name]
    label = f"one install, {len(ONE_INSTALL)} sdists"
    rows: list[Row] = [
        *_timed_rows(label, measured),
        (f"{label}, PIPGUARD_JOBS=1: wall s", *_ratio(plain.wall, single.wall)),
    ]
    builds = [sum(tool.builds(name) for name in ONE_INSTALL) for tool in (tools[1], one_at_a_time)]
    return rows, _failures(measured) + sum(b != len(ONE_INSTALL) for b in builds)


def one_install_unpinned(tools: list[Tool], uv: Tool | None) -> tuple[list[Row], int]:
    """One install of 4 sdists named without ``==``, and one of a top-level sdist whose 3 dependencies are
    sdists: builds that a build ahead of exact pins alone leaves to the resolver, one after another."""
    rows: list[Row] = []
    failures = 0
    for label, venv_name, requirements, projects in (
        (f"one install, {len(UNPINNED)} unpinned sdists", "open", UNPINNED, UNPINNED),
        (f"one install, 1 sdist + {len(TRANSITIVE)} dependency sdists", "stack", [TOP], [TOP, *TRANSITIVE]),
    ):
        measured = _install_once([*tools, *_some(uv)], venv_name, requirements)
        rows += _timed_rows(label, measured)
        built = [sum(tool.builds(name) for name in projects) for tool in tools]
        failures += _failures(measured) + sum(b != len(projects) for b in built)
    return rows, failures


def build_requirement(lineup: Callable[[str], list[Tool]]) -> tuple[list[Row], int]:
    """Sdists whose build environments need one build requirement that the index has only as an sdist: in
    one install, and in concurrent installs of one each, cold caches each. Its builds are the figure; the
    goal is one."""
    rows: list[Row] = []
    failures = 0
    pins = [f"{name}==1.0" for name in NEEDS_TOOL]
    for label, concurrent in ((f"one install, {len(pins)} sdists", False), (f"{len(pins)} concurrent installs", True)):
        tools = lineup("tool-each" if concurrent else "tool-once")
        measured = _install_each(tools, "v", pins) if concurrent else _install_once(tools, "v", pins)
        builds = {tool.name: tool.builds(BUILD_TOOL) for tool in tools}
        plain, guard = builds["plain pip"], builds["pipguard"]
        label = f"{label}, 1 build requirement from source"
        rows += [
            (f"{label}: its builds", str(plain), str(guard), f"{guard}/{plain}", *_uv(builds.get("uv"), str)),
            _timed_rows(label, measured)[0],
        ]
        failures += _failures(measured)
    return rows, failures


def _some(tool: Tool | None) -> list[Tool]:
    return [tool] if tool is not None else []


def _uv(measure: Any, show: Any) -> tuple[str, ...]:
    """The uv column of a row: empty where uv did not run this scenario."""
    return (show(measure),) if measure is not None else ("",)


def warm(tools: list[Tool], repeat: int) -> list[Row]:
    """A warm --force-reinstall and a forwarded list, interleaved so both tools see the same load."""
    reinstall: dict[str, list[float]] = {}
    listing: dict[str, list[float]] = {}
    for _ in range(repeat):
        for tool in tools:
            venv = tool.root / "v0"
            command = tool.install(venv, "--force-reinstall", "--no-deps")
            reinstall.setdefault(tool.name, []).append(tool.run_all([command]).wall)
            listing.setdefault(tool.name, []).append(tool.run_all([tool.command(venv, "list")]).wall)
    rows = []
    for title, data in (("warm reinstall: wall s (median)", reinstall), ("forwarded list: wall s (median)", listing)):
        rows.append((title, *_ratio(statistics.median(data["plain pip"]), statistics.median(data["pipguard"]), 2)))
    return rows


def warm_capped(tools: list[Tool], repeat: int) -> list[Row]:
    """The warm reinstall with pipguard's cache capped (PIPGUARD_CACHE_MAX_SIZE) to the one wheel it reuses:
    a trim to that cap first evicts every other wheel, least recently used first, never that one; then the
    capped reinstalls, interleaved with plain pip's. A command that only reuses wheels never walks the cache."""
    from pipguard.store import Store, entry_size

    guard = tools[1]
    store = Store(Path(guard.env["PIPGUARD_CACHE_DIR"]))
    cap = str(sum(entry_size(e) for e in store.entries() if e.wheel.name.startswith(f"{PACKAGE}-")))
    capped = {**guard.env, "PIPGUARD_CACHE_MAX_SIZE": cap}
    subprocess.run([*guard.argv0, "guard", "cache", "prune", "--max-size", cap], env=capped, check=True, capture_output=True)
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for tool in tools:
            saved = tool.env
            tool.env = capped if tool is guard else saved
            try:
                command = tool.install(tool.root / "v0", "--force-reinstall", "--no-deps")
                times.setdefault(tool.name, []).append(tool.run_all([command]).wall)
            finally:
                tool.env = saved
    if [e.wheel.name.split("-")[0] for e in store.entries()] != [PACKAGE]:
        sys.stderr.write(f"the cap kept {[e.wheel.name for e in store.entries()]}, not {PACKAGE} alone\n")
    title = f"warm reinstall, cache capped at {int(cap) // 1000} kB: wall s (median)"
    return [(title, *_ratio(statistics.median(times["plain pip"]), statistics.median(times["pipguard"]), 2))]


def failing(tools: list[Tool], n: int) -> list[Row]:
    """n concurrent installs of an sdist whose build fails after burning its CPU seconds."""
    measured = {}
    for tool in tools:
        commands = [tool.install(v, package=FAILING) for v in tool.venvs("f", n)]
        env = tool.env
        tool.env = {**env, "FIXTURE_FAIL_BUILD": FAILING}
        try:
            measured[tool.name] = tool.run_all(commands, package=FAILING, expect_failure=True)
        finally:
            tool.env = env
    plain, guard = measured["plain pip"], measured["pipguard"]
    label = f"failing build, {n} concurrent"
    return [
        (f"{label}: builds", str(plain.builds), str(guard.builds), f"{guard.builds}/{plain.builds}"),
        (f"{label}: wall s", *_ratio(plain.wall, guard.wall)),
        (f"{label}: failed installs", str(plain.failures), str(guard.failures), ""),
    ]


def node_modules_tree(tools: list[Tool], src: Path, repeat: int) -> list[Row]:
    """Reinstall a local tree that carries a big node_modules/ (front-end assets beside the package)."""
    tree = make_project(src, TREE, "1.0")
    for i in range(NODE_MODULES_FILES):
        path = tree / "node_modules" / f"pkg{i // 100}" / f"file{i}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("module.exports = 1;\n")
    times: dict[str, list[float]] = {}
    venvs = {tool.name: tool.venvs("tree", 1)[0] for tool in tools}
    for _ in range(repeat):
        for tool in tools:
            command = tool.command(venvs[tool.name], "install", "--no-index", "--force-reinstall", str(tree))
            env = tool.env
            tool.env = {**env, "FIXTURE_BUILD_CPU_SECONDS": "0"}
            try:
                times.setdefault(tool.name, []).append(tool.run_all([command], package=TREE).wall)
            finally:
                tool.env = env
    plain, guard = statistics.median(times["plain pip"]), statistics.median(times["pipguard"])
    return [(f"tree with {NODE_MODULES_FILES} node_modules files: reinstall s (median)", *_ratio(plain, guard, 2))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=8, help="concurrent installs (default 8)")
    parser.add_argument("--cpu-seconds", type=float, default=8.0, help="CPU seconds one build burns (default 8)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of each warm scenario (default 5); rounds of the --real scenarios (default 3)")
    parser.add_argument("--remote", action="store_true", help="a remote hit against a local build")
    parser.add_argument("--real", action="store_true", help="the real index's scenarios (PyPI), with uv's column")
    parser.add_argument("--uv", default=shutil.which("uv"), help="the uv to compare against (default: uv on PATH)")
    parser.add_argument("--only-one-install", action="store_true",
                        help="run only the one-install scenarios (pinned, unpinned, transitive, build requirement)")
    options = parser.parse_args()
    if options.repeat is None:
        options.repeat = REAL_ROUNDS if options.real else 5
    if options.remote:
        return remote_main(options)
    if options.real:
        return real_main(options)

    with tempfile.TemporaryDirectory(prefix="pipguard-bench-") as tmp:
        root = Path(tmp)
        make_sdist(make_project(root / "src", PACKAGE, "1.0", modules=20), root / "dists")
        make_sdist(make_project(root / "src", FAILING, "1.0"), root / "dists")
        for name in (*ONE_INSTALL, *UNPINNED, *TRANSITIVE):
            make_sdist(make_project(root / "src", name, "1.0", modules=20), root / "dists")
        make_sdist(make_project(root / "src", TOP, "1.0", modules=20,
                                dependencies=[f"{name}>=1" for name in TRANSITIVE]), root / "dists")
        make_sdist(make_project(root / "src", BUILD_TOOL, "1.0", modules=20), root / "dists")
        for name in NEEDS_TOOL:
            make_sdist(make_project(root / "src", name, "1.0", modules=20, build_requires=[BUILD_TOOL]), root / "dists")
        with IndexServer(root / "dists") as index:
            tools = _lineup(root, index.url, options.cpu_seconds, None)
            single = Tool("pipguard, 1 job", tools[1].argv0, root / "pipguard-1", index.url, options.cpu_seconds)
            single.env["PIPGUARD_JOBS"] = "1"
            uv = UvTool(options.uv, root / "uv", index.url, options.cpu_seconds) if options.uv else None
            rows, failures = one_install(tools, single, uv)
            def lineup(name: str) -> list[Tool]:
                return _lineup(root / name, index.url, options.cpu_seconds, options.uv)

            for more, more_failures in (one_install_unpinned(tools, uv), build_requirement(lineup)):
                rows += more
                failures += more_failures
            if options.only_one_install:
                return _print(rows, _title("pipguard bench", options), options.uv, failures)
            more, more_failures = cold_concurrent(tools, options.n, uv)
            rows += more
            failures += more_failures
            rows += warm(tools, options.repeat)
            rows += warm_capped(tools, options.repeat)
            rows += failing(tools, max(2, options.n // 2))
            rows += node_modules_tree(tools, root / "trees", options.repeat)

    return _print(rows, _title("pipguard bench", options), options.uv, failures)


def _lineup(root: Path, index_url: str, cpu_seconds: float, uv: str | None) -> list[Tool]:
    """plain pip, pipguard and (given its binary) uv, each with fresh caches under root."""
    tools = [
        Tool("plain pip", [sys.executable, "-m", "pip"], root / "pip", index_url, cpu_seconds),
        Tool("pipguard", [sys.executable, "-m", "pipguard"], root / "pipguard", index_url, cpu_seconds),
    ]
    return [*tools, UvTool(uv, root / "uv", index_url, cpu_seconds)] if uv else tools


def _title(name: str, options: argparse.Namespace) -> str:
    import pip

    fixture = (f", median of {options.repeat} rounds" if options.real
               else f", N={options.n}, build = {options.cpu_seconds:g} CPU s, repeat={options.repeat}")
    return f"{name}: pip {pip.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs{fixture}"


def _uv_version(uv: str) -> str:
    return subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.split("(")[0].strip()


def _print(rows: list[Row], title: str, uv: str | None, failures: int) -> int:
    """The table: ratios are pipguard's time over the other tool's; uv's columns only where uv was given."""
    first, *more = title.splitlines()
    print("\n".join([f"{first}, {_uv_version(uv)}" if uv else first, *more]))
    if not uv:
        print("no uv column: no uv was given (bin/bench installs it into .venvs/bench-tools from PyPI, "
              "which it could not reach; --uv PATH names one)")
    width = max(len(r[0]) for r in rows)
    header = f"{'scenario':<{width}}  {'plain pip':>10}  {'pipguard':>10}"
    print(header + (f"  {'uv':>8}  {'pipguard/pip':>12}  {'pipguard/uv':>11}" if uv else f"  {'ratio':>6}"))
    for name, p, g, ratio, *rest in rows:
        line = f"{name:<{width}}  {p:>10}  {g:>10}"
        by_uv, versus_uv = (*rest, "", "")[:2]
        print((line + (f"  {by_uv:>8}  {ratio:>12}  {versus_uv:>11}" if uv else f"  {ratio:>6}")).rstrip())
    return 1 if failures else 0


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(REAL_INDEX, timeout=10):
            return True
    except OSError:
        return False


def finder_pins(root: Path, names: Sequence[str], *options: str) -> list[str]:
    """``name==version`` of what pip's finder picks today for names under options: a dry run's report, with
    caches of its own, so that no scenario starts warm."""
    tool = Tool("pins", [sys.executable, "-m", "pip"], root, REAL_INDEX, 0)
    (venv,) = tool.venvs("v", 1)
    command = tool.command(venv, "install", "--index-url", REAL_INDEX, "--dry-run", "--quiet", "--report", "-",
                           *options, *names)
    report = json.loads(subprocess.run(command, env=tool.env, capture_output=True, text=True, check=True).stdout)
    return [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in report["install"]]


def real_main(options: argparse.Namespace) -> int:
    """The real index's scenarios, each cold for every tool: fresh venvs and caches (pip's, pipguard's, uv's)."""
    title = _title("pipguard bench --real", options)
    if not pypi_reachable():
        print(f"{title}: skipped, {REAL_INDEX} is not reachable")
        return 0
    no_binary = ("--no-binary", ",".join(C_SDISTS))
    with tempfile.TemporaryDirectory(prefix="pipguard-bench-") as tmp:
        root = Path(tmp)
        pins = finder_pins(root / "pins", C_SDISTS, *no_binary)
        title += f", index {REAL_INDEX}\npinned to what pip's finder picks today: {' '.join(pins)}"
        scenarios: list[tuple[str, Callable[[Path], dict[str, Measure]]]] = [
            ("install --no-deps --no-binary six six",
             lambda at: _install_once(_lineup(at, REAL_INDEX, 0, options.uv), "v", ["six"], "--no-deps", "--no-binary", "six")),
            (f"{len(C_SDISTS)} C sdists, unpinned",
             lambda at: _install_once(_lineup(at, REAL_INDEX, 0, options.uv), "v", C_SDISTS, *no_binary)),
            (f"the same {len(C_SDISTS)}, pinned ==",
             lambda at: _install_once(_lineup(at, REAL_INDEX, 0, options.uv), "v", pins, *no_binary)),
            (f"{options.n} processes x {CONCURRENT}, concurrent",
             lambda at: _install_each(_lineup(at, REAL_INDEX, 0, options.uv), "v", [CONCURRENT] * options.n,
                                      "--no-binary", CONCURRENT)),
        ]
        # Rounds interleaved (every scenario, then the next round), each cold: fresh caches and venvs per run,
        # so that a slow minute of a shared machine or of the index falls on every tool alike.
        runs: dict[str, list[dict[str, Measure]]] = {label: [] for label, _ in scenarios}
        for round_ in range(options.repeat):
            for i, (label, run) in enumerate(scenarios):
                runs[label].append(run(root / f"round{round_}" / f"scenario{i}"))
        rows: list[Row] = []
        failures = 0
        for label, measured in runs.items():
            rows += _timed_rows(label, _medians(measured))
            failures += sum(_failures(m) for m in measured)
    return _print(rows, title, options.uv, failures)


def _medians(runs: list[dict[str, Measure]]) -> dict[str, Measure]:
    """Each tool's median wall and CPU seconds over the rounds (builds and failures: the most seen)."""
    return {
        tool: Measure(
            statistics.median(run[tool].wall for run in runs),
            statistics.median(run[tool].cpu for run in runs),
            max(run[tool].builds for run in runs),
            max(run[tool].failures for run in runs),
        )
        for tool in runs[0]
    }


def _cold_install(root: Path, index_url: str, cpu_seconds: float, remote: dict[str, str]) -> Measure:
    """One fresh machine (caches, venv) installing the package once, with the remote settings given."""
    tool = Tool(root.name, [sys.executable, "-m", "pipguard"], root, index_url, cpu_seconds)
    tool.env.update(remote)
    make_venv(root / "venv")
    return tool.run_all([tool.install(root / "venv")])


def remote_main(options: argparse.Namespace) -> int:
    binary = nginx_binary()
    if binary is None:
        sys.stderr.write("bin/bench --remote needs nginx (apt-get install nginx-light)\n")
        return 1
    with tempfile.TemporaryDirectory(prefix="pipguard-bench-") as tmp:
        root = Path(tmp)
        make_sdist(make_project(root / "src", PACKAGE, "1.0", modules=20), root / "dists")
        keys = openssl_keypair(root / "keys", "ci")
        server = start_nginx(binary, root / "nginx")
        try:
            with IndexServer(root / "dists") as index:
                local, hit, builds, local_builds = [], [], 0, 0
                for run in range(options.repeat):
                    url = {"PIPGUARD_REMOTE": server.url(prefix=f"run{run}")}
                    writer = {**url, "PIPGUARD_REMOTE_WRITE": "1", "PIPGUARD_REMOTE_SIGNING_KEY": str(keys.private)}
                    _cold_install(root / f"writer{run}", index.url, options.cpu_seconds, writer)
                    reader = {**url, "PIPGUARD_REMOTE_VERIFY_KEY": str(keys.public)}
                    measured = _cold_install(root / f"reader{run}", index.url, options.cpu_seconds, reader)
                    hit.append(measured.wall)
                    builds += measured.builds
                    built_here = _cold_install(root / f"local{run}", index.url, options.cpu_seconds, {})
                    local.append(built_here.wall)
                    local_builds += built_here.builds
        finally:
            server.stop()
    import pip

    print(f"pipguard bench --remote: pip {pip.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"build = {options.cpu_seconds:g} CPU s, repeat={options.repeat}")
    local_s, hit_s = statistics.median(local), statistics.median(hit)
    print(f"{'second machine, cold install':<34}  {'local build':>11}  {'remote hit':>10}  {'ratio':>6}")
    print(f"{'wall s (median)':<34}  {local_s:>11.2f}  {hit_s:>10.2f}  {hit_s / local_s:>6.2f}")
    print(f"{'builds on the second machine':<34}  {local_builds:>11}  {builds:>10}")
    return 0 if builds == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
