"""``pipguard guard ...``: pipguard's own commands (pip has no ``guard`` command, so nothing collides).

- ``guard status [--json] [--watch]``: every lock held or waited for now, with holders and waiters.
- ``guard cache dir | info | list [--json] | remove NAME | purge | prune --older-than DAYS``, like
  ``pip cache``. Entries in use by a live process and lock files are never removed.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import sys
import time
from typing import Any, NoReturn

from pipguard import records, settings
from pipguard.store import Entry, Store

ERROR = 1
USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, pip's style and exit code for bad options."""
        sys.stderr.write(f"ERROR: pipguard {self.prog.split(' ', 1)[-1]}: {message}\n")
        raise SystemExit(USAGE_ERROR)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pipguard guard", description="pipguard's own commands")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    status = sub.add_parser("status", help="locks held or waited for now")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", action="store_true", help="refresh until interrupted")
    cache = sub.add_parser("cache", help="inspect and manage the wheel cache")
    actions = cache.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("dir")
    actions.add_parser("info")
    listing = actions.add_parser("list")
    listing.add_argument("pattern", nargs="?", default="*")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove")
    remove.add_argument("pattern")
    actions.add_parser("purge")
    prune = actions.add_parser("prune")
    prune.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    remote = sub.add_parser("remote", help="the remote cache shared across machines")
    remote_actions = remote.add_subparsers(dest="action", required=True, parser_class=_Parser)
    remote_actions.add_parser("status")
    push = remote_actions.add_parser("push")
    push.add_argument("pattern", nargs="?", default="*")
    return parser


def guard_main(args: list[str]) -> int:
    options = _parser().parse_args(args)
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
    if not state["locks"]:
        return f"no locks held or waited for in {state['cache_dir']}"
    lines = []
    for lock in state["locks"]:
        what = f"{lock['name']} {lock['version']}".strip()
        holder = lock["holder"]
        held = (
            f"held by pid {holder['pid']} on {holder['host']} ({holder['phase']}) since {holder['since']}: {holder['command']}"
            if holder
            else "free, a waiter is taking it"
        )
        lines.append(f"{lock['kind']} {what} [{lock['key'][:12]}]: {held}")
        for waiter in lock["waiters"]:
            lines.append(f"  waiting: pid {waiter['pid']} on {waiter['host']} since {waiter['since']}: {waiter['command']}")
    return "\n".join(lines)


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
    entries = store.entries()
    if action == "info":
        size = sum(int(e.manifest.get("size", 0)) for e in entries)
        print(f"Cache location: {store.root}")
        print(f"Wheels: {len(entries)}")
        print(f"Size: {size / 1e6:.1f} MB")
        print(f"Locks held or waited for: {len(snapshot(store)['locks'])}")
        _remote_info(store)
        return 0
    if action == "list":
        described = [_describe(e) for e in entries if _matches(e, options.pattern)]
        if options.json:
            print(json.dumps(described))
        elif not described:
            print("No locally built wheels cached.")
        else:
            for item in described:
                print(f" - {item['wheel']} ({item['size'] / 1e3:.0f} kB, {item['created']}) {item['key'][:12]}")
        return 0
    if action == "remove":
        chosen = [e for e in entries if _matches(e, options.pattern)]
        if not chosen:
            sys.stderr.write(f"ERROR: No matching packages for pattern \"{options.pattern}\"\n")
            return ERROR
    elif action == "purge":
        chosen = entries
    else:
        cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=options.older_than)
        chosen = [e for e in entries if _created(e) < cutoff]
    removed = sum(1 for e in chosen if store.remove(e))
    skipped = len(chosen) - removed
    print(f"Files removed: {removed}" + (f" ({skipped} in use, kept)" if skipped else ""))
    return 0


def _created(entry: Entry) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(str(entry.manifest["created"]))
    except (KeyError, ValueError):
        return datetime.datetime.fromtimestamp(entry.wheel.stat().st_mtime, datetime.timezone.utc)


def _remote_info(store: Store) -> None:
    """The remote store as configured here, and the counts of every install that used it."""
    from pipguard.remote import configured, stats
    from pipguard.remote.commands import describe_mode
    from pipguard.remote.tier import COUNTS

    config, _complaints = configured()
    print(f"Remote cache: {f'{config.display} ({describe_mode(config)})' if config else 'none'}")
    counts = stats.read(store.base)
    print("Remote: " + ", ".join(f"{counts.get(name, 0)} {name}" for name in COUNTS))
