"""Every use of pip's internals, in one place.

Supported pip: 25.3 through 26.3 (``SUPPORTED``); bin/test runs the suite against the oldest and the
newest. Outside that range, or if a patch point is missing, :func:`run_pip` prints one warning and runs
plain pip, so a pip upgrade can make pipguard lose its cache but never an install.

The seams, all in pip's resolver and install command:

- ``Factory.get_wheel_cache_entry``: pip asks it, once per candidate link, whether a locally built wheel
  exists. It is the first moment pip needs a source distribution, so pipguard answers there: lock the
  source's key, look, build once, publish, release, and return a cache entry for the published wheel.
  pip then proceeds exactly as on a hit in its own wheel cache (no sdist preparation at all, hashes
  checked against the sdist's recorded hash, ``direct_url.json`` from the entry's origin).
- ``LinkCandidate.__init__``: to learn the requirement template (per-requirement ``--config-settings``)
  of the link being looked up, and to name an unnamed requirement (``./tree``) after the wheel built
  for it, as if the user had written ``name @ url`` (pip would otherwise prepare it in-tree, unlocked).
- ``InstallCommand.run`` / ``WheelCommand.run``: to learn the parsed options and which command runs.
- ``RequirementPreparer.prepare_editable_requirement`` and ``wheel_builder._build_one``: editable
  trees build in place, so they are locked by their path (not cached, as pip never caches them).
- ``commands.install.install_given_reqs`` and ``UninstallCommand.run``: the environment lock.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from optparse import Values
from pathlib import Path
from typing import Any, Protocol

SUPPORTED = ">=25.3,<26.4"
# Set by pip (and pipguard) in a process that already runs under the target interpreter.
RUNNER_ENV = "_PIP_RUNNING_IN_SUBPROCESS"


@dataclass(frozen=True)
class BuildOptions:
    """What pip was told that decides how a source is built: forwarded to the build and keyed."""

    cli_args: tuple[str, ...]
    config_settings: dict[str, Any]
    build_isolation: bool
    build_constraint_files: tuple[str, ...]
    cache_enabled: bool
    verbosity: int


@dataclass
class Source:
    """One source pip needs a wheel for, in pipguard's terms."""

    kind: str  # "archive", "dir" or "vcs"
    url: str  # without fragment; may carry credentials: show or store it only through redact.redact
    name: str | None
    version: str | None
    subdirectory: str | None
    local_path: Path | None  # archive file or tree on this machine, if any
    declared_sha256: str | None  # from the link, trusted as pip trusts it
    commit: str | None  # vcs only
    options: BuildOptions
    download: Callable[[Path], Path] = field(repr=False)


class Guard(Protocol):
    """What the seam asks of pipguard's cache and locks."""

    def wheel_for(self, source: Source) -> tuple[Path, str | None] | None:
        """Return (wheel path, sdist sha256) to install, or None to let pip build itself."""

    def environment_lock(self, scope: str) -> contextlib.AbstractContextManager[object]:
        """Serialize installs into one environment (``scope`` is its real path)."""

    def tree_lock(self, tree: str, name: str) -> contextlib.AbstractContextManager[object]:
        """Serialize builds in one source tree (editables: locked, never cached)."""


class SeamUnavailable(Exception):
    """The running pip is outside the supported range or lacks a patch point."""


def pip_version() -> str:
    import pip

    return pip.__version__


def pip_location() -> str:
    import pip

    return os.path.dirname(os.path.abspath(pip.__file__))


def version_line() -> str:
    """pip's own ``--version`` text (e.g. ``pip 26.3 from /x/pip (python 3.12)``)."""
    from pip._internal.utils.misc import get_pip_version

    return get_pip_version()


def parse_general(args: list[str]) -> tuple[Values, list[str]]:
    """Split pip's general options from the rest, as pip does (including PIP_* and config)."""
    from pip._internal.cli.main_parser import create_main_parser

    return create_main_parser().parse_args(args)


def identify_interpreter(python: str) -> str | None:
    from pip._internal.cli.main_parser import identify_python_interpreter

    return identify_python_interpreter(python)


def is_supported() -> bool:
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(SUPPORTED).contains(pip_version(), prereleases=True)


def run_pip(
    args: list[str],
    guard_factory: Callable[[], Guard] | None = None,
    warn: Callable[[str], None] = print,
    on_verbosity: Callable[[int], None] = lambda level: None,
) -> int:
    """Run pip's main in this process; with ``guard_factory``, install and wheel go through it."""
    from pip._internal.cli.main import main as pip_main

    if guard_factory is not None:
        try:
            if not is_supported():
                raise SeamUnavailable(f"pip {pip_version()} is outside the supported range {SUPPORTED}")
            _attach(guard_factory, warn, on_verbosity)
        except Exception as exc:  # noqa: BLE001 - any failure to attach means plain pip
            warn(f"running plain pip: {exc}")
    return pip_main(args)


# --- the patches ------------------------------------------------------------------------------------

_state = threading.local()


def _attach(guard_factory: Callable[[], Guard], warn: Callable[[str], None], on_verbosity: Callable[[int], None]) -> None:
    from pip._internal import wheel_builder
    from pip._internal.commands import install as install_mod
    from pip._internal.commands.install import InstallCommand
    from pip._internal.commands.uninstall import UninstallCommand
    from pip._internal.commands.wheel import WheelCommand
    from pip._internal.operations.prepare import RequirementPreparer
    from pip._internal.resolution.resolvelib import candidates
    from pip._internal.resolution.resolvelib.factory import Factory

    for owner, attr in (
        (Factory, "get_wheel_cache_entry"),
        (candidates.LinkCandidate, "__init__"),
        (InstallCommand, "run"),
        (WheelCommand, "run"),
        (UninstallCommand, "run"),
        (install_mod, "install_given_reqs"),
        (RequirementPreparer, "prepare_editable_requirement"),
        (wheel_builder, "_build_one"),
    ):
        if not callable(getattr(owner, attr, None)):
            raise SeamUnavailable(f"pip {pip_version()} has no {getattr(owner, '__name__', owner)}.{attr}")

    guard: list[Guard] = []

    def the_guard() -> Guard:
        if not guard:
            guard.append(guard_factory())
        return guard[0]

    def lock_or_none(make: Callable[[Guard], contextlib.AbstractContextManager[object]]) -> Any:
        """A lock from the guard, or (after a warning) none: locking never fails an install."""
        try:
            return make(the_guard())
        except Exception as exc:  # noqa: BLE001 - never fail what plain pip would complete
            warn(f"going on without a lock ({type(exc).__name__}: {exc})")
            return contextlib.nullcontext()

    def wrap_run(command_name: str, original: Callable[..., int]) -> Callable[..., int]:
        def run(self: Any, options: Values, args: list[str]) -> int:
            on_verbosity(_verbosity(options))
            _state.options = options
            _state.command = command_name
            with contextlib.ExitStack() as stack:
                _state.exit_stack = stack
                try:
                    return original(self, options, args)
                finally:
                    _state.exit_stack = None

        return run

    original_install_run = InstallCommand.run
    original_wheel_run = WheelCommand.run
    original_uninstall_run = UninstallCommand.run
    original_given = install_mod.install_given_reqs
    original_lookup = Factory.get_wheel_cache_entry
    original_candidate_init = candidates.LinkCandidate.__init__
    original_prepare_editable = RequirementPreparer.prepare_editable_requirement
    original_build_one = wheel_builder._build_one

    def editable_tree_lock(req: Any) -> contextlib.AbstractContextManager[object]:
        tree = req.source_dir or (req.link.file_path if req.link and req.link.is_existing_dir() else None)
        if not req.editable or not tree or getattr(_state, "options", None) is None:
            return contextlib.nullcontext()
        return lock_or_none(lambda g: g.tree_lock(tree, req.name or ""))

    def prepare_editable_requirement(self: Any, req: Any) -> Any:
        with editable_tree_lock(req):
            return original_prepare_editable(self, req)

    def build_one(req: Any, *args: Any, **kwargs: Any) -> Any:
        with editable_tree_lock(req):
            return original_build_one(req, *args, **kwargs)

    RequirementPreparer.prepare_editable_requirement = prepare_editable_requirement  # type: ignore[method-assign]
    wheel_builder._build_one = build_one

    InstallCommand.run = wrap_run("install", original_install_run)  # type: ignore[method-assign]
    WheelCommand.run = wrap_run("wheel", original_wheel_run)  # type: ignore[method-assign]

    def uninstall_run(self: Any, options: Values, args: list[str]) -> int:
        on_verbosity(_verbosity(options))
        with lock_or_none(lambda g: g.environment_lock(sys.prefix)):
            return original_uninstall_run(self, options, args)

    UninstallCommand.run = uninstall_run  # type: ignore[method-assign]

    def install_given_reqs(*args: Any, **kwargs: Any) -> Any:
        options: Values | None = getattr(_state, "options", None)
        stack: contextlib.ExitStack | None = getattr(_state, "exit_stack", None)
        if options is not None and stack is not None:
            # Held until the install command returns, so a --target move is covered too.
            stack.enter_context(lock_or_none(lambda g: g.environment_lock(_install_scope(options))))
        return original_given(*args, **kwargs)

    install_mod.install_given_reqs = install_given_reqs  # type: ignore[assignment]

    found: dict[str, tuple[Path, str | None] | None] = {}

    def wheel_for(factory: Any, link: Any, name: Any) -> tuple[Path, str | None] | None:
        """The guard's wheel for ``link``, asked once per link and process."""
        if link.url in found:
            return found[link.url]
        source = _source_for(factory, link, name)
        if source is None:
            return None
        try:
            result = the_guard().wheel_for(source)
        except Exception as exc:  # noqa: BLE001 - never fail what plain pip would complete
            warn(f"cache unavailable ({type(exc).__name__}: {exc}); building as plain pip")
            result = None
        found[link.url] = result
        return result

    def candidate_init(
        self: Any, link: Any, template: Any, factory: Any, name: Any = None, version: Any = None
    ) -> None:
        previous = getattr(_state, "template", None)
        _state.template = template
        try:
            if name is None and template.req is None:
                # An unnamed requirement (``./tree``, a bare URL): pip learns the name by preparing it,
                # in-tree. Build it through the guard first and name it after its wheel, exactly as if
                # the user had written ``name @ url``.
                result = wheel_for(factory, link, None)
                if result is not None:
                    name = _name_requirement(template, link, result[0])
            original_candidate_init(self, link, template, factory, name, version)
        finally:
            _state.template = previous

    candidates.LinkCandidate.__init__ = candidate_init  # type: ignore[method-assign]

    def get_wheel_cache_entry(self: Any, link: Any, name: Any) -> Any:
        result = wheel_for(self, link, name)
        if result is None:
            return original_lookup(self, link, name)
        options: Values = _state.options
        return _cache_entry(link, result[0], result[1], persistent=bool(options.cache_dir))

    Factory.get_wheel_cache_entry = get_wheel_cache_entry  # type: ignore[method-assign]


def _name_requirement(template: Any, link: Any, wheel: Path) -> Any:
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from pip._internal.utils.packaging import get_requirement

    name = parse_wheel_filename(wheel.name)[0]
    template.req = get_requirement(f"{name} @ {link.url}")
    return canonicalize_name(name)


def _install_scope(options: Values) -> str:
    """The directory an install writes into, as pip decides it."""
    for value in (options.target_dir, options.prefix_path, options.root_path):
        if value:
            return os.path.realpath(value)
    if options.use_user_site:
        import site

        return os.path.realpath(site.getusersitepackages())
    return os.path.realpath(sys.prefix)


def _source_for(factory: Any, link: Any, name: Any) -> Source | None:
    """Describe ``link`` if it is a source pipguard builds, else None (pip handles it)."""
    options: Values | None = getattr(_state, "options", None)
    command: str | None = getattr(_state, "command", None)
    if options is None or command is None or link.is_wheel:
        return None
    if command == "install" and getattr(options, "dry_run", False):
        return None
    template = getattr(_state, "template", None)
    build = _build_options(options, template)
    subdirectory = link.subdirectory_fragment
    hash_name = getattr(link, "hash_name", None)
    declared = link.hash if hash_name == "sha256" else None
    version = None
    if link.is_vcs:
        commit = _pinned_commit(link)
        if commit is None:
            return None
        kind, local = "vcs", None
    elif link.is_existing_dir():
        kind, local, commit = "dir", Path(link.file_path), None
    elif link.is_file:
        kind, local, commit = "archive", Path(link.file_path), None
    else:
        kind, local, commit = "archive", None, None

    def download(dest: Path) -> Path:
        path, _content_type = factory.preparer._download(link, str(dest))
        return Path(path)

    if kind == "archive":
        from pip._internal.utils.filetypes import is_archive_file

        if not is_archive_file(link.filename):
            return None
        parsed = _parse_sdist_filename(link.filename)
        if parsed is not None:
            name = name or parsed[0]
            version = parsed[1]
    return Source(
        kind=kind,
        url=link.url_without_fragment,
        name=str(name) if name else None,
        version=version,
        subdirectory=subdirectory,
        local_path=local,
        declared_sha256=declared,
        commit=commit,
        options=build,
        download=download,
    )


def _parse_sdist_filename(filename: str) -> tuple[str, str] | None:
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename

    try:
        name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None
    return str(name), str(version)


def _pinned_commit(link: Any) -> str | None:
    """The commit a VCS link is pinned to, if it names an immutable one (as pip's own cache)."""
    from pip._internal.vcs import vcs

    backend = vcs.get_backend_for_scheme(link.scheme)
    if backend is None:
        return None
    _url, rev, _auth = backend.get_url_rev_and_auth(link.url_without_fragment)
    if rev and len(rev) in (40, 64) and all(c in "0123456789abcdef" for c in rev.lower()):
        return rev.lower()
    return None


# The options that reach a build: index options for build dependencies and everything that changes
# what the backend does. Each is (dest, flag, kind).
_FORWARDED: tuple[tuple[str, str, str], ...] = (
    ("index_url", "--index-url", "value"),
    ("extra_index_urls", "--extra-index-url", "list"),
    ("no_index", "--no-index", "flag"),
    ("find_links", "--find-links", "list"),
    ("trusted_hosts", "--trusted-host", "list"),
    ("cert", "--cert", "value"),
    ("client_cert", "--client-cert", "value"),
    ("proxy", "--proxy", "value"),
    ("no_proxy_env", "--no-proxy-env", "flag"),
    ("timeout", "--timeout", "value"),
    ("retries", "--retries", "value"),
    ("keyring_provider", "--keyring-provider", "value"),
    ("pre", "--pre", "flag"),
    ("prefer_binary", "--prefer-binary", "flag"),
    ("check_build_deps", "--check-build-dependencies", "flag"),
    ("build_constraints", "--build-constraint", "list"),
    ("uploaded_prior_to", "--uploaded-prior-to", "value"),
)


def _build_options(options: Values, template: Any) -> BuildOptions:
    args: list[str] = []
    for dest, flag, kind in _FORWARDED:
        value = getattr(options, dest, None)
        if value in (None, False, [], ""):
            continue
        if kind == "flag":
            args.append(flag)
        elif kind == "list":
            for item in value:
                args += [flag, str(item)]
        elif dest == "uploaded_prior_to" and hasattr(value, "isoformat"):
            args += [flag, value.isoformat()]
        elif dest != "index_url" or value != "https://pypi.org/simple":
            args += [flag, str(value)]
    format_control = getattr(options, "format_control", None)
    if format_control is not None:
        for attr in ("no_binary", "only_binary"):
            values = getattr(format_control, attr)
            if values:
                args += ["--" + attr.replace("_", "-"), ",".join(sorted(values))]
    if not options.build_isolation:
        args.append("--no-build-isolation")
    settings: dict[str, Any] = dict(options.config_settings or {})
    settings.update(getattr(template, "config_settings", None) or {})
    for key, value in sorted(settings.items()):
        for item in value if isinstance(value, list) else [value]:
            args += ["--config-settings", f"{key}={item}"]
    verbosity = _verbosity(options)
    return BuildOptions(
        cli_args=tuple(args),
        config_settings=settings,
        build_isolation=bool(options.build_isolation),
        build_constraint_files=tuple(getattr(options, "build_constraints", None) or ()),
        cache_enabled=bool(options.cache_dir),
        verbosity=verbosity,
    )


def _verbosity(options: Values) -> int:
    return int(getattr(options, "verbose", 0) or 0) - int(getattr(options, "quiet", 0) or 0)


def _cache_entry(link: Any, wheel: Path, sha256: str | None, persistent: bool) -> Any:
    """A pip cache entry for ``wheel`` whose origin is this process's own link (not a shared file).

    The origin records the sdist's sha256 as plain pip does after downloading it, which is also what
    pip checks ``--require-hashes`` against when it uses a cached wheel.
    """
    from pip._internal.cache import CacheEntry
    from pip._internal.models.link import Link
    from pip._internal.utils.direct_url_helpers import direct_url_from_link
    from pip._internal.utils.urls import path_to_url

    origin_link = link
    if sha256 and not link.is_vcs and not link.is_existing_dir() and link.hash_name is None:
        fragment = f"#sha256={sha256}"
        if link.subdirectory_fragment:
            fragment += f"&subdirectory={link.subdirectory_fragment}"
        origin_link = Link(link.url_without_fragment + fragment)
    entry = CacheEntry(Link(path_to_url(str(wheel))), persistent=persistent)
    entry.origin = direct_url_from_link(origin_link, link_is_in_wheel_cache=True)
    return entry


def runner_script() -> str:
    """pip's own runner: runs exactly this pip under any interpreter, without pipguard in the way."""
    return os.path.join(pip_location(), "__pip-runner__.py")


def path_to_url(path: str) -> str:
    from pip._internal.utils.urls import path_to_url as to_url

    return to_url(path)


def most_specific_tag() -> str:
    """The interpreter's best wheel tag (platform, glibc or musl, ABI), from the tags pip itself uses."""
    from pip._vendor.packaging import tags

    return str(next(iter(tags.sys_tags()), ""))
