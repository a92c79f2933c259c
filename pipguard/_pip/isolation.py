"""pip's isolated build environments made once (buildenv.py keeps them): the pip side.

pip installs a build's requirements by running a second pip (``SubprocessBuildEnvironmentInstaller``)
with ``install --prefix <temp> --ignore-installed`` and the finder's options. That install is wrapped:

- :func:`plan` keys it on what the second pip is given and would read: the requirements' names (not
  their specifiers: ``setuptools>=40.8.0`` and ``setuptools>=70.1`` mostly install the very same file, and
  whether an entry fits is decided per entry, below), the finder's index scope and selection options,
  build constraints (and, on pip 25.3 without them, the constraints it inherits), the ``PIP_*``
  variables and configuration files it reads, pip's version, the prefix's layout. Whatever cannot be keyed safely is left to pip: venv isolation (``--use-feature=venv-isolation``,
  another installer class altogether for ``inprocess-build-deps``), a requirement given by URL, a finder
  for another interpreter or platform, one that ignores ``Requires-Python``, a lock file's pinned links.
- On a miss pip installs, with its own output; then :func:`pins` reads what it installed and asks the
  finder for each distribution, with the specifiers that required it (the requirements, and the
  ``Requires-Dist`` of what was installed, markers evaluated): kept only if the finder picks exactly what
  the second pip installed, which is how pip's resolver picks without backtracking.
- On a hit the finder is asked again (:func:`fits`), as the second pip would ask it for these very
  requirements: only if it picks exactly the files an entry holds (the requirements, and what their
  ``Requires-Dist`` reach in that entry) is the environment copied. The parent's finder keeps its index
  pages for the whole command, so this costs what the second pip's own requests would.

What a reuse prints: pip's own spinner for the step (``Installing build dependencies ... done``, or
``started`` / ``finished with status 'done'`` off a terminal), and at ``-v``, instead of the second pip's
output, one line naming the distributions reused. The finder's own lines while it is asked are kept out
of the console and ``--log``: plain pip's parent never asks it about build requirements.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from optparse import Values
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipguard import display, keys
from pipguard._pip import quick_install
from pipguard.errors import MACHINERY_ERRORS, BuildStopped

if TYPE_CHECKING:
    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.link import Link

    from pipguard import locks
    from pipguard.buildenv import BuildEnvs, EnvEntry, Recorded

logger = logging.getLogger("pip._internal.build_env")

# pip's variables that change nothing the second pip installs (where it caches, how it talks, what it
# prints); every other PIP_* variable is part of the key.
NEUTRAL_VARIABLES = frozenset(
    f"PIP_{name}"
    for name in (
        "CACHE_DIR", "NO_CACHE_DIR", "DISABLE_PIP_VERSION_CHECK", "NO_INPUT", "DEFAULT_TIMEOUT", "TIMEOUT",
        "RETRIES", "PROGRESS_BAR", "NO_COLOR", "VERBOSE", "QUIET", "LOG", "LOG_FILE", "CERT", "CLIENT_CERT",
        "PROXY", "TRUSTED_HOST", "KEYRING_PROVIDER", "ROOT_USER_ACTION", "NO_WARN_SCRIPT_LOCATION",
        "NO_WARN_CONFLICTS", "REQUIRE_VIRTUALENV", "CONFIG_FILE", "BUILD_TRACKER",
    )
)
INHERITED_VARIABLES = ("_PIP_IN_BUILD_IGNORE_CONSTRAINTS",)

_warned: list[str] = []
_warning = threading.Lock()
_silenced: set[int] = set()  # threads whose log records pip's handlers drop (see _unlogged)
_keeping: list[threading.Thread] = []  # environments being kept while their builds run (_keep_meanwhile)
_unkept: list[str] = []  # why one of those could not be kept, said at the command's end


@dataclass(frozen=True)
class Plan:
    """One install pip is about to run into a build's prefix, and its key."""

    key: str
    requirements: list[str]
    finder: PackageFinder


def install(
    original: Callable[..., None],
    installer: Any,
    requirements: Iterable[str],
    prefix: Any,
    kind: str,
    for_req: Any,
    envs: BuildEnvs | None,
    options: Values | None,
) -> None:
    """pip's install of a build's requirements into ``prefix``, made once: a kept copy where the finder
    still picks what it holds, else pip's own install (under the key's lock), kept afterwards."""
    requirements = list(requirements)

    def pip_install() -> None:
        original(installer, requirements, prefix, kind=kind, for_req=for_req)

    planned = None
    if envs is not None:
        try:
            planned = plan(installer, requirements, prefix, options)
        except Exception:  # noqa: BLE001 - anything pip's objects cannot tell: plain pip
            planned = None
    if envs is None or planned is None:
        return pip_install()
    target = Path(prefix.path)
    lib_paths = [os.path.relpath(path, prefix.path) for path in prefix.lib_dirs]
    if _reuse(envs, planned, target, lib_paths, kind):
        return None
    if envs.read_only:
        return pip_install()
    with contextlib.ExitStack() as stack:
        try:
            holding = stack.enter_context(envs.hold(planned.key, requirements))
        except BuildStopped:
            raise KeyboardInterrupt from None  # the command was interrupted while this waited
        except MACHINERY_ERRORS as exc:
            _warn_once(f"installing build dependencies as plain pip ({type(exc).__name__}: {exc})")
            return pip_install()
        if holding is not None:
            if _reuse(envs, planned, target, lib_paths, kind):
                maker = holding.previous_holder
                holding.end_wait(f"reusing the one {f'pid {maker.pid}' if maker else 'another process'} made")
                return None
            holding.end_wait("installing it here")
        _filter_handlers()  # before the thread that asks the finder starts
        constrained = getattr(options, "constraints", None) and not quick_install.constraints_ignored(installer)
        quick = not constrained and _quick_install(planned, installer, prefix, kind)
        asked = _Ask(planned)  # after the quick install: the finder is asked from one thread at a time
        if not quick:
            pip_install()
        _keep(envs, planned, asked, list(prefix.lib_dirs), lib_paths, target, holding, stack.pop_all())
    return None


def _quick_install(planned: Plan, installer: Any, prefix: Any, kind: str) -> bool:
    """The requirements installed from this process where that is exactly what the second pip would do
    (quick_install.py), shown as pip shows its install; False: the second pip installs them."""
    from pip._internal.cli.spinners import open_spinner

    session = getattr(getattr(planned.finder, "_link_collector", None), "session", None)
    if session is None:
        return False
    with _unlogged():
        installed = quick_install.install(planned.finder, session, planned.requirements, prefix, installer)
    if installed:
        with open_spinner(f"Installing {kind}"):
            pass
    return installed


def _keep(
    envs: BuildEnvs, planned: Plan, asked: _Ask, lib_dirs: list[str], lib_paths: list[str], target: Path,
    holding: locks.Holding | None, held: contextlib.ExitStack,
) -> None:
    """Keep what pip just installed, if the finder picks exactly that, before any build code runs in it;
    then release ``held`` (the key's lock). Where other builds wait for it, it is compiled first (while
    the finder is asked, buildenv.py says why). Nothing of it may fail the build."""
    from pipguard.buildenv import Unkeepable, recorded_tree

    with held:
        try:
            compiled = holding is not None and bool(holding.waiters()) and envs.compile_new(target, lib_paths)
            found = asked.pins(lib_dirs)
            if found is None:
                return
            recorded = None if compiled else recorded_tree(target, lib_paths)
            if recorded is not None:
                _keep_meanwhile(envs, planned.key, target, found, recorded, held.pop_all())
                return
            envs.publish(planned.key, target, found, compiled=compiled)
        except (*MACHINERY_ERRORS, Unkeepable) as exc:
            _not_kept(f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - the finder's own failure: nothing is kept, pip's install stands
            pass


def _keep_meanwhile(
    envs: BuildEnvs, key: str, target: Path, found: list[dict[str, str]], recorded: Recorded, held: contextlib.ExitStack
) -> None:
    """Keep the environment in a thread while the build's first hook runs in it, from what ``recorded``
    says pip installed (buildenv.recorded_tree); ``held`` (the key's lock) is released once it is kept. A
    hook that changed those files meanwhile leaves it unkept, unsaid: the next build that needs it installs
    and keeps it. What fails in the cache itself is said at the command's end (:func:`settle`)."""
    from pipguard.buildenv import Unkeepable

    def keep() -> None:
        with held:
            try:
                envs.publish(key, target, found, recorded=recorded)
            except (*MACHINERY_ERRORS, Unkeepable, ValueError) as exc:
                if not _changed_by_build(exc, target):
                    _unkept.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=contextvars.copy_context().run, args=(keep,), name="pipguard-keep-build-env", daemon=True)
    thread.start()
    _keeping.append(thread)


def _changed_by_build(exc: BaseException, target: Path) -> bool:
    """Whether a failure to keep an environment came from its tree, which its build may change, rather than
    from the cache."""
    from pipguard.buildenv import Unkeepable

    if isinstance(exc, (Unkeepable, ValueError)):
        return True
    filename = getattr(exc, "filename", None)
    return isinstance(filename, str) and os.path.commonpath([filename, str(target)]) == str(target)


def settle(report: bool = True) -> None:
    """Wait for the environments still being kept (their copies take tens of milliseconds); ``report``: say
    what failed in the cache. Before a build's hooks after its first (which overlaps the copy), so that
    what ``build_wheel`` writes into its environment is never there when it is kept; and at the command's
    end, before pip removes its build environments."""
    while _keeping:
        _keeping.pop().join()
    while report and _unkept:
        _not_kept(_unkept.pop(0))


def _not_kept(why: str) -> None:
    from pipguard.buildenv import not_kept

    _warn_once(not_kept(why))




def plan(installer: Any, requirements: list[str], prefix: Any, options: Values | None) -> Plan | None:
    """The key of pip's install of ``requirements`` into ``prefix``, or None where it cannot be keyed."""
    from pip._internal.utils.packaging import get_requirement
    from pip._vendor.packaging.utils import canonicalize_name

    from pipguard._pip import pip_version

    finder: PackageFinder | None = getattr(installer, "finder", None)
    if finder is None or not requirements or getattr(prefix, "venv_executable", None):
        return None
    if any(get_requirement(line).url for line in requirements):
        return None
    if finder.target_python.format_given() or getattr(finder, "_ignore_requires_python", False):
        return None
    if getattr(finder, "_locked_links", None):
        return None
    build_constraints = list(getattr(installer, "_build_constraints", None) or [])
    constraints: list[str] = []
    if not build_constraints and getattr(installer, "_build_constraint_feature_enabled", True) is False:
        constraints = list(getattr(options, "constraints", None) or [])  # pip 25.3: inherited by the second pip
    release_control = getattr(finder, "release_control", None)
    material = {
        "pip": pip_version(),
        "requirement_names": sorted({canonicalize_name(get_requirement(line).name) for line in requirements}),
        "layout": sorted(os.path.relpath(path, prefix.path) for path in (*prefix.lib_dirs, prefix.bin_dir)),
        "indexes": finder.index_urls,  # only ever hashed into the key: they may carry tokens
        "find_links": finder.find_links,
        "no_binary": sorted(finder.format_control.no_binary),
        "only_binary": sorted(finder.format_control.only_binary),
        "prefer_binary": finder.prefer_binary,
        "pre": getattr(finder, "allow_all_prereleases", None),
        "release_control": release_control.get_ordered_args() if release_control is not None else None,
        "uploaded_prior_to": str(getattr(finder, "uploaded_prior_to", None)),
        "build_constraints": [_file_content(name) for name in build_constraints],
        "constraints": [_file_content(name) for name in constraints],
        "variables": _pip_variables(),
        "config": [_file_content(name) for name in _config_files()],
    }
    return Plan(keys.build_env_key(material), requirements, finder)


def pins(finder: PackageFinder, requirements: list[str], lib_dirs: list[str]) -> list[dict[str, Any]] | None:
    """What pip installed in ``lib_dirs``, each distribution with the specifier that asked for it and the
    file the finder picks for that specifier; None unless that file is of the version installed, for every
    one, and the installed distributions are exactly those the requirements reach. ``newest``: the file is
    also the finder's pick with no specifier at all (:func:`_newest`)."""
    reached = _reached(requirements, lib_dirs)
    if reached is None:
        return None
    found = []
    for name, (specifier, version) in sorted(reached.items()):
        best = finder.find_best_candidate(name, specifier).best_candidate
        if best is None or best.version != version:
            return None
        found.append(
            {
                "name": name,
                "version": str(best.version),
                "specifier": str(specifier),
                "file": best.link.filename,
                "link": link_identity(best.link),
                "newest": _newest(finder, specifier, best),
            }
        )
    return found


def _newest(finder: PackageFinder, specifier: Any, best: Any) -> bool:
    """Whether ``best``, the finder's pick for ``specifier``, is also its pick with no specifier, as far as
    that can be told without ranking every candidate again: ``specifier`` only sets lower bounds
    (``>=``, ``>``) of final releases, and ``best`` is a final release, not yanked, and a wheel where the
    finder prefers wheels. pip ranks candidates by allowed hash (none asked here), not yanked, wheel first
    (only under ``--prefer-binary``), then version; every candidate the bounds leave out is of a lower
    version, so it ranks below ``best``."""
    bounded = all(spec.operator in (">=", ">") and not spec.prereleases for spec in specifier)
    wheel_first = bool(finder.prefer_binary) and not best.link.is_wheel
    return bounded and not best.version.is_prerelease and not best.link.is_yanked and not wheel_first


def _reached(requirements: list[str], lib_dirs: list[str]) -> dict[str, tuple[Any, Any]] | None:
    """Each distribution in ``lib_dirs`` the requirements reach (through their ``Requires-Dist``), with
    the specifier they ask of it and its version; None unless they reach every one there and only those."""
    from pip._internal.metadata import get_environment
    from pip._internal.utils.packaging import get_requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name

    dists = {dist.canonical_name: dist for dist in get_environment(lib_dirs).iter_all_distributions()}
    wanted: dict[str, tuple[SpecifierSet, frozenset[str]]] = {}
    walked: dict[str, frozenset[str]] = {}
    todo = [get_requirement(line) for line in requirements]
    todo = [req for req in todo if req.marker is None or req.marker.evaluate({"extra": ""})]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if req.url or name not in dists:
            return None
        specifier, extras = wanted.get(name, (SpecifierSet(), frozenset()))
        wanted[name] = (specifier & req.specifier, extras | frozenset(req.extras))
        if walked.get(name) != wanted[name][1]:
            walked[name] = wanted[name][1]
            todo.extend(dists[name].iter_dependencies(sorted(walked[name])))
    if set(wanted) != set(dists):
        return None
    return {name: (specifier, dists[name].version) for name, (specifier, _extras) in wanted.items()}


def fits(finder: PackageFinder, requirements: list[str], lib_dirs: list[str], entry: EnvEntry) -> bool:
    """Whether the environment in ``lib_dirs`` (the tree of ``entry``) is exactly what the second pip would
    install for ``requirements`` today: the finder picks, for each distribution the requirements reach
    there, the very file the entry holds, and nothing else is in it. An entry this command made answers
    for itself where its answers settle the question (:func:`_answered`): the finder gave them in this
    command (pip, too, asks the index once per run)."""
    held = entry.pins
    if entry.made_in_this_command:
        reached = _reached(requirements, lib_dirs)
        by_name = {pin["name"]: pin for pin in held}
        if (
            reached is not None
            and set(reached) == set(by_name)
            and all(_answered(by_name[name], spec, version) for name, (spec, version) in reached.items())
        ):
            return True
    found = pins(finder, requirements, lib_dirs)
    return found is not None and {(p["name"], p["link"]) for p in found} == {(p["name"], p["link"]) for p in held}


def _answered(pin: dict[str, Any], specifier: Any, version: Any) -> bool:
    """Whether the finder's answer recorded in ``pin`` is its answer for ``specifier`` too (in the command
    that recorded it): the same question; or the pin is the newest file of all (``newest``), a final release
    the specifier allows, and the specifier lets in no pre-release the question without one did not. The
    finder ranks the same candidates either way, and a specifier only takes some away."""
    if str(version) != pin["version"]:
        return False
    if str(specifier) == pin["specifier"]:
        return True
    return pin.get("newest") is True and not version.is_prerelease and not specifier.prereleases and specifier.contains(version)


def link_identity(link: Link) -> str:
    """A file as the finder offers it: its URL and hash (only their digest is kept: URLs carry tokens); a
    local file (``--find-links``) also by size, mtime and inode, since a file there may be replaced."""
    material: list[Any] = [link.url_without_fragment, link.hash_name, link.hash]
    if link.is_file:
        info = os.stat(link.file_path)
        material += [info.st_size, info.st_mtime_ns, info.st_ino]
    return keys.digest(material)


# --- the two paths -----------------------------------------------------------------------------------


def _reuse(envs: BuildEnvs, planned: Plan, target: Path, lib_paths: list[str], kind: str) -> bool:
    """Copy a kept environment that fits the requirements into ``target``, showing pip's own spinner;
    ``lib_paths``: the prefix's library directories, relative to it (so also within a kept tree)."""
    from pip._internal.cli.spinners import open_spinner
    from pip._internal.utils.logging import VERBOSE

    try:
        entries = envs.candidates(planned.key)
    except MACHINERY_ERRORS as exc:
        _warn_once(f"not using kept build environments ({type(exc).__name__}: {exc})")
        return False
    for entry in entries:
        try:
            with _unlogged():
                agreed = fits(planned.finder, planned.requirements, entry.lib_dirs(lib_paths), entry)
        except MACHINERY_ERRORS + (ValueError, KeyError):
            continue
        except Exception:  # noqa: BLE001 - the index cannot tell now: pip's own install says why
            return False
        if not agreed:
            continue
        try:
            copied = envs.use(entry, target, lib_paths, _not_kept)
        except MACHINERY_ERRORS as exc:
            _warn_once(f"not using kept build environments ({type(exc).__name__}: {exc})")
            return False
        if copied:
            with open_spinner(f"Installing {kind}"):
                logger.log(VERBOSE, "pipguard: reused the build environment %s (%s)", entry.directory.name, entry.label)
            return True
    return False


class _Ask:
    """The finder's picks for the requirements themselves, asked in a thread while the second pip runs
    (it reads the same index pages: the parent's copy costs no time then); the rest after it ran."""

    def __init__(self, planned: Plan) -> None:
        self.planned = planned
        self._thread = threading.Thread(target=self._ask, name="pipguard-build-env-picks", daemon=True)
        self._thread.start()

    def _ask(self) -> None:
        from pip._internal.utils.packaging import get_requirement

        with contextlib.suppress(Exception), _unlogged():
            for line in self.planned.requirements:
                req = get_requirement(line)
                self.planned.finder.find_best_candidate(req.name, req.specifier)

    def pins(self, lib_dirs: list[str]) -> list[dict[str, str]] | None:
        self._thread.join()
        with _unlogged():
            return pins(self.planned.finder, self.planned.requirements, lib_dirs)


@contextlib.contextmanager
def _unlogged() -> Iterator[None]:
    """Keep what this thread logs (the finder's page fetches, its skipped links) out of pip's console
    and ``--log``: plain pip's parent never asks the finder about build requirements."""
    _filter_handlers()
    me = threading.get_ident()
    _silenced.add(me)
    try:
        yield
    finally:
        _silenced.discard(me)


def _filter_handlers() -> None:
    """Give each of pip's handlers the filter, once, from the main thread (a handler's filters must not
    change while another thread logs through it: pip's own filters split stdout from stderr)."""
    for handler in logging.getLogger().handlers:
        if _quiet_threads not in handler.filters:
            handler.addFilter(_quiet_threads)


def _quiet_threads(record: logging.LogRecord) -> bool:
    return record.thread not in _silenced


def _warn_once(message: str) -> None:
    """One warning of this machinery per process (a build environment is kept in a thread of its own)."""
    with _warning:
        if _warned:
            return
        _warned.append(message)
    display.warn(message)


def _file_content(name: str) -> str:
    """A file named in pip's settings, by content (a missing one by its name)."""
    path = Path(name)
    try:
        return keys.file_sha256(path)
    except OSError:
        return f"unreadable: {name}"


def _pip_variables() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if (name.startswith("PIP_") and name not in NEUTRAL_VARIABLES) or name in INHERITED_VARIABLES
    }


def _config_files() -> list[str]:
    """Every configuration file the second pip reads (it is never ``--isolated``)."""
    from pip._internal.configuration import Configuration

    files = Configuration(isolated=False).iter_config_files()
    return [name for _kind, names in files for name in names if os.path.isfile(name)]
