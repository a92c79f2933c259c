"""Benchmark pipguard against plain pip, side by side in one run (see bin/bench).

Scenarios:
- one install, 4 CPU-bound sdists (pinned, cold caches): plain pip builds them in turn, pipguard side by
  side within its job budget; and pipguard with PIPGUARD_JOBS=1, which shows what pipguard adds per build.
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

CPU seconds are those of all child processes (pip, builds, backends), from getrusage. When ``uv`` is on
PATH, its column shows ``uv pip`` in the same run, for the scenarios it can run (the cold ones).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
ONE_INSTALL = ("sidea", "sideb", "sidec", "sided")
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

    def __init__(self, root: Path, index_url: str, cpu_seconds: float) -> None:
        super().__init__("uv", ["uv", "pip"], root, index_url, cpu_seconds)
        self.env["UV_CACHE_DIR"] = str(root / "uv-cache")

    def command(self, venv: Path, *args: str) -> list[str]:
        return [*self.argv0, args[0], "--python", str(venv), *args[1:]]


Row = tuple[str, ...]  # scenario, plain pip, pipguard, ratio[, uv]


def _ratio(plain: float, guard: float, digits: int = 1) -> tuple[str, str, str]:
    return f"{plain:.{digits}f}", f"{guard:.{digits}f}", f"{guard / plain:.2f}"


def cold_concurrent(tools: list[Tool], n: int, uv: Tool | None) -> tuple[list[Row], int]:
    """The uv #3525 plan: n fresh venvs, n concurrent installs of one CPU-bound sdist, cold caches."""
    cold = {tool.name: tool.run_all([tool.install(v) for v in tool.venvs("v", n)]) for tool in [*tools, *_some(uv)]}
    plain, guard, by_uv = cold["plain pip"], cold["pipguard"], cold.get("uv")
    label = f"cold, {n} concurrent installs"
    return [
        (f"{label}: builds", str(plain.builds), str(guard.builds), f"{guard.builds}/{plain.builds}",
         *_uv(by_uv, lambda m: str(m.builds))),
        (f"{label}: wall s", *_ratio(plain.wall, guard.wall), *_uv(by_uv, lambda m: f"{m.wall:.1f}")),
        (f"{label}: CPU s", *_ratio(plain.cpu, guard.cpu), *_uv(by_uv, lambda m: f"{m.cpu:.1f}")),
        ("cold: failed installs", str(plain.failures), str(guard.failures), "", *_uv(by_uv, lambda m: str(m.failures))),
    ], plain.failures + guard.failures


def one_install(tools: list[Tool], one_at_a_time: Tool, uv: Tool | None) -> tuple[list[Row], int]:
    """One install of four pinned CPU-bound sdists into a fresh venv, cold caches."""
    measured = {}
    for tool in [*tools, one_at_a_time, *_some(uv)]:
        (venv,) = tool.venvs("one", 1)
        pins = [f"{name}==1.0" for name in ONE_INSTALL]
        measured[tool.name] = tool.run_all([tool.command(venv, "install", "--index-url", tool.index_url, *pins)])
    plain, guard, single = measured["plain pip"], measured["pipguard"], measured[one_at_a_time.name]
    by_uv = measured.get("uv")
    label = f"one install, {len(ONE_INSTALL)} sdists"
    rows: list[Row] = [
        (f"{label}: wall s", *_ratio(plain.wall, guard.wall), *_uv(by_uv, lambda m: f"{m.wall:.1f}")),
        (f"{label}: CPU s", *_ratio(plain.cpu, guard.cpu), *_uv(by_uv, lambda m: f"{m.cpu:.1f}")),
        (f"{label}, PIPGUARD_JOBS=1: wall s", *_ratio(plain.wall, single.wall), *_uv(None, str)),
    ]
    builds = [sum(tool.builds(name) for name in ONE_INSTALL) for tool in (tools[1], one_at_a_time)]
    failures = plain.failures + guard.failures + single.failures
    return rows, failures + sum(b != len(ONE_INSTALL) for b in builds)


def _some(tool: Tool | None) -> list[Tool]:
    return [tool] if tool is not None else []


def _uv(measure: Measure | None, show: Any) -> tuple[str, ...]:
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
    parser.add_argument("--repeat", type=int, default=5, help="runs of each warm scenario (default 5)")
    parser.add_argument("--remote", action="store_true", help="a remote hit against a local build")
    parser.add_argument("--only-one-install", action="store_true", help="run only the one-install scenario")
    options = parser.parse_args()
    if options.remote:
        return remote_main(options)

    with tempfile.TemporaryDirectory(prefix="pipguard-bench-") as tmp:
        root = Path(tmp)
        make_sdist(make_project(root / "src", PACKAGE, "1.0", modules=20), root / "dists")
        make_sdist(make_project(root / "src", FAILING, "1.0"), root / "dists")
        for name in ONE_INSTALL:
            make_sdist(make_project(root / "src", name, "1.0", modules=20), root / "dists")
        with IndexServer(root / "dists") as index:
            tools = [
                Tool("plain pip", [sys.executable, "-m", "pip"], root / "pip", index.url, options.cpu_seconds),
                Tool("pipguard", [sys.executable, "-m", "pipguard"], root / "pipguard", index.url, options.cpu_seconds),
            ]
            single = Tool("pipguard, 1 job", tools[1].argv0, root / "pipguard-1", index.url, options.cpu_seconds)
            single.env["PIPGUARD_JOBS"] = "1"
            uv = UvTool(root / "uv", index.url, options.cpu_seconds) if shutil.which("uv") else None
            rows, failures = one_install(tools, single, uv)
            if options.only_one_install:
                return _print(rows, options, uv is not None, failures)
            more, more_failures = cold_concurrent(tools, options.n, uv)
            rows += more
            failures += more_failures
            rows += warm(tools, options.repeat)
            rows += warm_capped(tools, options.repeat)
            rows += failing(tools, max(2, options.n // 2))
            rows += node_modules_tree(tools, root / "trees", options.repeat)

    return _print(rows, options, uv is not None, failures)


def _print(rows: list[Row], options: argparse.Namespace, with_uv: bool, failures: int) -> int:
    import pip

    print(f"pipguard bench: pip {pip.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"N={options.n}, build = {options.cpu_seconds:g} CPU s, repeat={options.repeat}")
    width = max(len(r[0]) for r in rows)
    header = f"{'scenario':<{width}}  {'plain pip':>10}  {'pipguard':>10}  {'ratio':>6}"
    print(header + (f"  {'uv':>8}" if with_uv else ""))
    for name, p, g, ratio, *rest in rows:
        line = f"{name:<{width}}  {p:>10}  {g:>10}  {ratio:>6}"
        print(line + (f"  {(rest[0] if rest else ''):>8}" if with_uv else ""))
    return 1 if failures else 0


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
