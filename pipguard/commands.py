"""``pipguard guard ...``: pipguard's own commands (pip has no ``guard`` command, so nothing collides).

- ``guard status [--json] [--watch]``: every lock held or waited for now, with holders and waiters: how
  long each has been there, its environment and command line.
- ``guard shims``: a directory of ``pip`` and ``pip3`` that run this pipguard, to put first on PATH.
- ``guard cache dir | info [--json] | stats [--reset] | list [--json] | remove NAME | purge |
  prune [--older-than DAYS] [--max-size SIZE]``, like ``pip cache``. Entries in use by a live process and
  lock files are never removed; ``prune`` also removes the layouts of older pipguards.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from typing import Any, NoReturn

from pipguard import records, settings, usage
from pipguard.display import elapsed
from pipguard.store import Entry, Store, entry_size, last_used

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, pip's style and exit code for bad options, naming the (sub)command that got them."""
        sys.stderr.write(f"ERROR: {self.prog}: {message}\n")
        raise SystemExit(USAGE_ERROR)


# Each `guard cache` action, with the one line its help shows.
_CACHE_ACTIONS = {
    "dir": "print the cache directory",
    "info": "where the cache is, its wheels, size and cap, what it did since a reset; --json for scripts",
    "stats": "what the cache did since a reset (hits, misses, builds, waits, time saved); --reset to restart",
    "list": "list cached wheels (those matching PATTERN); --json for scripts",
    "remove": "remove cached wheels matching PATTERN, like pip cache remove",
    "purge": "remove every cached wheel and build environment not in use",
    "prune": "remove wheels last used more than DAYS ago, the least recently used beyond SIZE, old layouts",
}
# Each `guard remote` action, likewise.
_REMOTE_ACTIONS = {
    "status": "the remote store: URL (redacted), read/write mode, keys, reachability, a write probe",
    "push": "upload local wheels (those matching PATTERN) to the remote store, signed with your key",
}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``guard`` parser, and each (sub)command's own parser by name, to blame the right one."""
    parser = _Parser(prog="pipguard guard", description="pipguard's own commands (pip has no 'guard')")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    status = sub.add_parser("status", help="each lock in use: holder, waiters, for how long, for which environment")
    status.add_argument("--json", action="store_true", help="machine-readable, one JSON document")
    status.add_argument("--watch", action="store_true", help="refresh until interrupted")
    shims = sub.add_parser("shims", help="print a directory of pip, pip3 that run this pipguard, for PATH")
    cache = sub.add_parser("cache", help="inspect and manage the wheel cache, like pip cache")
    actions = cache.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    by_name = {"status": status, "shims": shims, "cache": cache}
    for action, line in _CACHE_ACTIONS.items():
        by_name[f"cache {action}"] = actions.add_parser(action, help=line, description=line)
    by_name["cache list"].add_argument("pattern", nargs="?", default="*")
    by_name["cache list"].add_argument("--json", action="store_true", help="machine-readable")
    by_name["cache remove"].add_argument("pattern")
    by_name["cache info"].add_argument("--json", action="store_true", help="machine-readable")
    by_name["cache stats"].add_argument("--reset", action="store_true", help="start counting afresh")
    by_name["cache prune"].add_argument("--older-than", type=float, metavar="DAYS")
    by_name["cache prune"].add_argument("--max-size", type=_size, metavar="SIZE", help="such as 10G, 500M, 20k")
    remote = sub.add_parser("remote", help="the remote cache shared across machines (PIPGUARD_REMOTE)")
    by_name["remote"] = remote
    remote_actions = remote.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    for action, line in _REMOTE_ACTIONS.items():
        by_name[f"remote {action}"] = remote_actions.add_parser(action, help=line, description=line)
    by_name["remote push"].add_argument("pattern", nargs="?", default="*")
    return parser, by_name


def _size(text: str) -> int:
    """``--max-size``: a size, or argparse's one-line error naming the option."""
    try:
        return usage.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def guard_main(args: list[str]) -> int:
    parser, by_name = _parser()
    options, extra = parser.parse_known_args(args)
    if extra:  # the parser that got them says so, not the top one
        chosen = " ".join(part for part in (options.command, getattr(options, "action", None)) if part)
        by_name.get(chosen, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if options.command == "cache" and options.action == "prune" and options.older_than is None and options.max_size is None:
        by_name["cache prune"].error("one of the arguments --older-than --max-size is required")
    if options.command == "shims":
        from pipguard.shims import write_shims

        print(write_shims(settings.cache_root()))
        return 0
    store = Store(settings.cache_root())
    if options.command == "status":
        return _status(store, options.json, options.watch)
    if options.command == "remote":
        from pipguard.remote import commands as remote_commands

        if options.action == "status":
            return remote_commands.status()
        return remote_commands.push(store, lambda entry: _matches(entry, options.pattern))
    return _cache(store, options)


# --- status ---------------------------------------------------------------------------------------


def snapshot(store: Store) -> dict[str, Any]:
    """Every lock that has a live holder or waiter, in the documented JSON shape."""
    locks = []
    if store.records.is_dir():
        for directory in sorted(store.records.iterdir()):
            people = records.read(directory)
            if not people:
                continue
            holder = next((p for p in people if p.role == "holder"), None)
            waiters = [p for p in people if p.role == "waiter"]
            first = holder or waiters[0]
            locks.append(
                {
                    "key": directory.name,
                    "kind": first.kind,
                    "name": first.name,
                    "version": first.version,
                    "holder": holder.public() if holder else None,
                    "waiters": [w.public() for w in waiters],
                }
            )
    return {"cache_dir": str(store.root), "locks": locks}


def _render(state: dict[str, Any]) -> str:
    """Each lock on a line; under it its holder and waiters, how long, which environment and command."""
    if not state["locks"]:
        return f"no locks held or waited for in {state['cache_dir']}"
    lines = []
    for lock in state["locks"]:
        what = f"{lock['name']} {lock['version']}".strip()
        lines.append(f"{lock['kind']} {what} [{lock['key'][:12]}]")
        holder = lock["holder"]
        if holder:
            lines += _person(f"held {elapsed(holder['since'])} by", holder, f" ({holder['phase']})")
        else:
            lines.append("  free, a waiter is taking it")
        for waiter in lock["waiters"]:
            lines += _person(f"waiting {elapsed(waiter['since'])}:", waiter, "")
    return "\n".join(lines)


def _person(how: str, person: dict[str, Any], phase: str) -> list[str]:
    where = f" for {person['target']}" if person.get("target") else ""
    return [f"  {how} pid {person['pid']} on {person['host']}{phase}{where}", f"    {person['command']}"]


def _status(store: Store, as_json: bool, watch: bool) -> int:
    def show() -> str:
        state = snapshot(store)
        return json.dumps(state) if as_json else _render(state)

    if not watch:
        print(show())
        return 0
    try:
        if sys.stdout.isatty() and not as_json:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            with Live(Text(show()), console=Console(), auto_refresh=False, redirect_stderr=False) as live:
                while True:
                    time.sleep(0.5)
                    live.update(Text(show()), refresh=True)
        previous = None
        while True:
            current = show()
            if current != previous:
                print(current, flush=True)
                previous = current
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


# --- cache ----------------------------------------------------------------------------------------


def _describe(entry: Entry) -> dict[str, Any]:
    source = entry.manifest.get("source", {})
    return {
        "key": entry.key,
        "name": source.get("name"),
        "version": source.get("version"),
        "wheel": entry.manifest.get("wheel"),
        "size": entry.manifest.get("size"),
        "created": entry.manifest.get("created"),
        "source": source.get("url"),
    }


def _matches(entry: Entry, pattern: str) -> bool:
    from packaging.utils import canonicalize_name

    wheel = str(entry.manifest.get("wheel", ""))
    project = wheel.split("-", 1)[0]
    return fnmatch.fnmatch(canonicalize_name(project), canonicalize_name(pattern) if pattern != "*" else "*")


def _cache(store: Store, options: argparse.Namespace) -> int:
    action = options.action
    if action == "dir":
        print(store.root)
        return 0
    if action == "stats":
        if options.reset:
            usage.reset(store.base)
            print("Statistics reset.")
            return 0
        print("\n".join(_counts_lines(usage.read(store.base))))
        return 0
    entries = store.entries()
    if action == "info":
        return _info(store, entries, options.json)
    if action == "list":
        described = [_describe(e) for e in entries if _matches(e, options.pattern)]
        if options.json:
            print(json.dumps(described))
        elif not described:
            print("No locally built wheels cached.")
        else:
            for item in described:
                print(f" - {item['wheel']} ({usage.format_size(item['size'])}, {item['created']}) {item['key'][:12]}")
        return 0
    if action == "remove":
        chosen = [e for e in entries if _matches(e, options.pattern)]
        if not chosen:  # as pip cache remove: a warning, and success
            sys.stderr.write(f"WARNING: No matching packages for pattern \"{options.pattern}\"\n")
    elif action == "purge":
        chosen = entries + store.env_entries()
    else:
        return _prune(store, entries, options.older_than, options.max_size)
    removed = sum(1 for e in chosen if store.remove(e))
    _say_removed(removed, len(chosen) - removed)
    return 0


def _say_removed(removed: int, kept: int) -> None:
    print(f"Files removed: {removed}" + (f" ({kept} in use, kept)" if kept else ""))


def _prune(store: Store, entries: list[Entry], older_than: float | None, max_size: int | None) -> int:
    """Entries unused for ``older_than`` days, then the least recently used beyond ``max_size``, then the
    layouts of older pipguards."""
    removed = kept = 0
    if older_than is not None:
        cutoff = time.time() - older_than * 86400
        chosen = [e for e in entries + store.env_entries() if last_used(e) < cutoff]
        removed = sum(1 for e in chosen if store.remove(e))
        kept = len(chosen) - removed
    if max_size is not None:
        evicted = store.trim(max_size)
        if evicted is None:
            sys.stderr.write("WARNING: another process is trimming the cache now; --max-size skipped\n")
        removed += evicted or 0
        store.tally.flush(store.base, store.policy)
    _say_removed(removed, kept)
    for directory, size in store.remove_old_layouts():
        print(f"Removed the old layout {directory.name}/ ({usage.format_size(size)})")
    return 0


def _info(store: Store, entries: list[Entry], as_json: bool) -> int:
    """Where the cache is, what it holds and may hold, what it did since a reset, the old layouts."""
    from pipguard.remote import stats

    cap, _complaint = settings.cache_max_size()
    old = store.old_layouts()
    envs = store.env_entries()
    state = {
        "cache_dir": str(store.root),
        "wheels": len(entries),
        "size": sum(entry_size(e) for e in entries),
        "build_envs": len(envs),
        "build_envs_size": sum(entry_size(e) for e in envs),
        "max_size": cap,
        "locks": len(snapshot(store)["locks"]),
        "local": usage.read(store.base),
        "remote": stats.read(store.base),
        "old_layouts": [{"directory": str(path), "size": size} for path, size in old],
    }
    if as_json:
        print(json.dumps(state))
        return 0
    print(f"Cache location: {store.root}")
    print(f"Wheels: {state['wheels']}")
    print(f"Size: {usage.format_size(state['size'])}")
    print(f"Build environments: {state['build_envs']} ({usage.format_size(state['build_envs_size'])})")
    print(f"Max size: {usage.format_size(cap) if cap is not None else 'none'} (PIPGUARD_CACHE_MAX_SIZE)")
    print(f"Locks held or waited for: {state['locks']}")
    print("\n".join(_counts_lines(state["local"])))
    _remote_info(store)
    for path, size in old:
        print(f"Old layout: {path} ({usage.format_size(size)}), unused by this pipguard: pipguard guard cache prune")
    return 0


def _counts_lines(counts: dict[str, float]) -> list[str]:
    """The local counts as ``info`` and ``stats`` print them."""
    return [
        "Local: " + ", ".join(f"{int(counts[name])} {name}" for name in usage.COUNTS),
        f"Time waited: {usage.format_seconds(counts['waited_seconds'])}",
        f"Time saved: {usage.format_seconds(counts['saved_seconds'])} (build time of the wheels reused)",
    ]


def after_pip_cache(args: list[str]) -> None:
    """``pip cache ACTION`` went well: do the same to pipguard's cache, saying so on stderr.

    pip's remedies for a bad cached wheel (``cache purge``, ``cache remove PATTERN``) must reach the wheel
    pipguard would reuse, or the next install would reuse it; ``info`` and ``list`` say where it is."""
    words = [word for word in args if not word.startswith("-")]
    action, pattern = (words + ["", ""])[:2]
    store = Store(settings.cache_root())
    if action not in ("purge", "remove", "info", "list") or not store.wheels.is_dir():
        return
    entries = [e for e in store.entries() if action in ("purge", "info") or _matches(e, pattern or "*")]
    if action == "purge":  # as pip's purge empties every cache it has
        for env in store.env_entries():
            store.remove(env)
    if action in ("purge", "remove"):
        removed = sum(1 for e in entries if store.remove(e))
        kept = f" ({len(entries) - removed} in use, kept)" if removed < len(entries) else ""
        sys.stderr.write(f"pipguard: removed {removed} wheel{'s' if removed != 1 else ''} from its own cache{kept}\n")
        return
    size = sum(entry_size(e) for e in entries)
    sys.stderr.write(
        f"pipguard: its own cache, {store.root}, holds {len(entries)} wheel{'s' if len(entries) != 1 else ''}"
        f" ({usage.format_size(size)}): pipguard guard cache list\n"
    )


def _remote_info(store: Store) -> None:
    """The remote store as configured here, and the counts of every install that used it."""
    from pipguard.remote import configured, stats
    from pipguard.remote.commands import describe_mode
    from pipguard.remote.tier import COUNTS

    config, _complaints = configured()
    print(f"Remote cache: {f'{config.display} ({describe_mode(config)})' if config else 'none'}")
    counts = stats.read(store.base)
    print("Remote: " + ", ".join(f"{counts.get(name, 0)} {name}" for name in COUNTS))
