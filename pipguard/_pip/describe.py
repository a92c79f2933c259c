"""pip's objects (link, requirement template, finder, options) turned into pipguard's plain ``Source``.

Two rules from "never weaker than pip" live here:

- **Hashes.** Where pip would check a requirement's hashes, the source carries the check, and where pip
  would refuse the requirement outright (a directory or VCS link in hash-checking mode, an unpinned or
  unhashed requirement), there is no source at all: pip refuses it in its own words, before anything runs.
- **Index scope.** The build child gets the scope of the finder this command really uses, which lines of
  ``-r`` files change after the options were parsed (``--no-index``, ``--find-links``, ``--index-url``,
  ``--trusted-host``, ``--pre``...), forwarded the way pip forwards it to its own build-dependency installs.
"""

from __future__ import annotations

import types
from optparse import Values
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipguard.sources import BuildOptions, Network, Source

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.link import Link
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_install import InstallRequirement
    from pip._internal.resolution.resolvelib.factory import Factory

# Options pip reads from the command line, variables and config only (never from -r lines).
_FROM_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("timeout", "--timeout", "value"),
    ("retries", "--retries", "value"),
    ("keyring_provider", "--keyring-provider", "value"),
    ("check_build_deps", "--check-build-dependencies", "flag"),
    ("build_constraints", "--build-constraint", "list"),
    ("features_enabled", "--use-feature", "list"),  # e.g. inprocess-build-deps
)


def source_for(
    factory: Factory, link: Link, name: str | None, template: InstallRequirement | None, options: Values
) -> Source | None:
    """Describe ``link`` if it is a source pipguard builds, else None (pip handles it as plain pip)."""

    def download(dest: Path) -> Path:
        from pip._internal.utils.logging import indent_log

        _announce(factory, link, template)
        with indent_log():
            path, _content_type = factory.preparer._download(link, str(dest))
        return Path(path)

    require_hashes = bool(factory.preparer.require_hashes)
    return _source(link, name, template, options, factory._finder, require_hashes, download)


def _source(
    link: Link,
    name: str | None,
    template: InstallRequirement | None,
    options: Values,
    finder: PackageFinder,
    require_hashes: bool,
    download: Callable[[Path], Path],
) -> Source | None:
    if link.is_wheel:
        return None
    pip_refuses, sha256_allowed = _hash_check(require_hashes, link, template)
    if pip_refuses:
        return None
    kind, local, commit = _kind(link)
    if kind is None or (kind == "vcs" and commit is None):
        return None
    if template is not None and template.req is not None:
        name = template.req.name  # as the user (or the dependency's metadata) wrote it, as pip names it
    version = None
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
        url=link.url.split("#", 1)[0],  # as the user spelt it (pip's own parse drops the slashes of file:///)
        name=str(name) if name else None,
        version=version,
        subdirectory=link.subdirectory_fragment,
        local_path=local,
        declared_sha256=link.hash if link.hash_name == "sha256" else None,
        commit=commit,
        options=build_options(finder, options, template),
        download=download,
        sha256_allowed=sha256_allowed,
        network=network(finder),
    )


def adopt_download(preparer: Any, req: InstallRequirement, archive: Path) -> None:
    """Let pip prepare ``req`` from the archive pipguard downloaded to key it, as from one of its own
    batch downloads (pip unpacks it and fetches nothing): the same bytes are not downloaded twice."""
    downloaded = getattr(preparer, "_downloaded", None)
    if req.link is None or not isinstance(downloaded, dict) or req.link.url in downloaded:
        return
    downloaded[req.link.url] = str(archive)
    req.needs_unpacked_archive(archive)


def wheel_project_name(wheel: Path) -> str:
    """The project's name as its wheel's ``METADATA`` spells it (``FSPkg``), else as the file name does."""
    import email.parser
    import zipfile

    from packaging.utils import parse_wheel_filename

    fallback = str(parse_wheel_filename(wheel.name)[0])
    try:
        with zipfile.ZipFile(wheel) as archive:
            metadata = next((n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if metadata is None:
                return fallback
            headers = email.parser.BytesHeaderParser().parsebytes(archive.read(metadata))
    except (OSError, zipfile.BadZipFile):
        return fallback
    return str(headers.get("Name") or fallback).strip()


def header(link: Link, req: InstallRequirement) -> Any:
    """What pip's header logger (``_log_preparing_link``) needs to name ``req`` by its source ``link``, as
    plain pip names a source it is about to download or build (not a cached wheel)."""
    return types.SimpleNamespace(link=link, is_wheel_from_cache=False, req=req.req, comes_from=req.comes_from)


def _announce(factory: Factory, link: Link, template: InstallRequirement | None) -> None:
    """pip's own "Collecting x" header, logged before the download it heads, as plain pip orders them.

    pip logs a header once: when it prepares the cached wheel right after, it does not repeat it."""
    if template is None or template.req is None:
        return
    factory.preparer._log_preparing_link(header(link, template))


def requested_sdists(
    reqs: list[InstallRequirement],
    finder: PackageFinder,
    session: PipSession,
    options: Values,
    installing: bool,
    heard: dict[str, list[str]],
) -> Iterator[tuple[str, Source]]:
    """(link URL, source) of each sdist the resolver will ask a wheel for first, known before it starts;
    each as soon as the finder has answered for it (its build can start while the finder reads the next
    requirement's page).

    That is each requirement the user gave (not a constraint, not editable) whose markers match: a direct
    archive URL or path, or a name (pinned or not) whose best candidate, as pip's finder picks it for the
    requirement's specifier and hashes joined with its constraints', is an sdist. That is exactly the
    question pip's resolver asks first (same finder: format control, release control, index scope); the
    resolver may still settle on another version (a conflict further down), and then the speculative build
    stays in the cache, never installed. Under ``install``, what pip would keep installed is skipped
    (:func:`_sdist_link`). Anything else is left to the resolver.

    What pip logs of a download ahead (``Downloading x.tar.gz (4 kB)``) goes into ``heard`` by link URL,
    not to the console: the resolver shows it under the requirement's header (replay.py)."""
    from packaging.utils import canonicalize_name

    download = _background_download(session, options, heard)
    installed = _installed_distributions() if installing else {}
    for req in reqs:
        if not req.user_supplied or req.constraint or req.editable or not req.match_markers():
            continue
        link = req.link
        if link is None and req.req is not None:
            name = canonicalize_name(req.req.name)
            specifier, hashes = req.req.specifier, req.hashes(trust_internet=False)
            for other in reqs:
                if other.constraint and other.req is not None and canonicalize_name(other.req.name) == name and other.match_markers():
                    specifier &= other.req.specifier
                    hashes &= other.hashes(trust_internet=False)
            link = _sdist_link(finder, name, specifier, hashes, installed, upgrading=bool(options.upgrade))
        source = _archive_source(link, req, options, finder, download)
        if source is not None:
            yield source


def dependency_sdists(
    requirements: list[Any], provider: Any, options: Values, installing: bool, heard: dict[str, list[str]]
) -> Iterator[tuple[str, Source]]:
    """(link URL, source) of each sdist the resolver will try first for the dependencies it just learnt
    from a distribution (``requirements``: what ``PipProvider.get_dependencies`` returned for it), each
    as soon as the finder has answered for it.

    Each named dependency (markers already evaluated by pip) is looked up as the resolver looks it up: its
    specifier and hashes joined with its constraint's, through the same finder (whose answers are cached,
    so the resolver's own lookup costs nothing more). A dependency pip keeps installed is skipped, and so
    is a dependency by direct URL (the resolver builds it where it meets it)."""
    from packaging.utils import canonicalize_name

    finder = provider._factory._finder
    upgrading = bool(options.upgrade) and getattr(provider, "_upgrade_strategy", "") == "eager"
    constraints = getattr(provider, "_constraints", {})
    # What pip's resolver itself keeps installed: the factory lists it once, for the whole resolution.
    installed = getattr(provider._factory, "_installed_dists", None) if installing else {}
    if installed is None:
        installed = _installed_distributions()
    download = _background_download(finder._link_collector.session, options, heard)
    for requirement in requirements:
        _candidate, ireq = requirement.get_candidate_lookup()
        if ireq is None or ireq.req is None or ireq.link is not None or ireq.editable:
            continue
        name = canonicalize_name(ireq.req.name)
        specifier, hashes = ireq.req.specifier, ireq.hashes(trust_internet=False)
        constraint = constraints.get(name)
        if constraint is not None:
            if constraint.links:
                continue
            specifier &= constraint.specifier
            hashes &= constraint.hashes
        link = _sdist_link(finder, name, specifier, hashes, installed, upgrading)
        source = _archive_source(link, ireq, options, finder, download)
        if source is not None:
            yield source


def _sdist_link(
    finder: PackageFinder, name: str, specifier: Any, hashes: Any, installed: Mapping[str, Any], upgrading: bool
) -> Link | None:
    """The finder's best candidate for ``name`` if it is an sdist pip would build, else None.

    pip keeps a distribution ``installed`` (by canonical name; empty for ``--force-reinstall``,
    ``--ignore-installed``, ``--target`` and ``wheel``) at the best version, and, unless it upgrades this
    requirement, one that satisfies the specifier: building those would be waste."""
    best = finder.find_best_candidate(name, specifier, hashes).best_candidate
    if best is None or best.link.is_wheel:
        return None
    dist = installed.get(name)
    if dist is not None and (
        str(dist.version) == str(best.version) or (not upgrading and specifier.contains(dist.version, prereleases=True))
    ):
        return None
    return best.link


def _installed_distributions() -> dict[str, Any]:
    """This environment's distributions by canonical name, listed once (as pip's resolver lists them)."""
    from pip._internal.metadata import get_default_environment

    return {dist.canonical_name: dist for dist in get_default_environment().iter_installed_distributions(local_only=False)}


def _archive_source(
    link: Link | None,
    req: InstallRequirement,
    options: Values,
    finder: PackageFinder,
    download: Callable[[Link, Path], Path],
) -> tuple[str, Source] | None:
    """(link URL, source) for ``link`` if it is an sdist archive pipguard builds ahead, else None."""
    if link is None or link.is_wheel or link.is_vcs or link.is_existing_dir():
        return None
    require_hashes = bool(options.require_hashes)
    source = _source(link, None, req, options, finder, require_hashes, lambda dest: download(link, dest))
    if source is None or source.kind != "archive":
        return None
    return link.url, source


def _background_download(session: PipSession, options: Values, heard: dict[str, list[str]]) -> Callable[[Link, Path], Path]:
    """A download for a build thread: pip's downloader, quiet on the console; what it logs goes to
    ``heard`` (by link URL), for the resolver to show under the requirement's header."""
    downloader = _quiet_downloader(session, options)

    def download(link: Link, dest: Path) -> Path:
        from pipguard._pip.replay import heard_here

        with heard_here() as lines:
            path = Path(downloader(link, str(dest))[0])
        heard[link.url] = lines
        return path

    return download


def _quiet_downloader(session: PipSession, options: Values) -> Callable[[Link, str], tuple[str, str]]:
    """pip's downloader for this session without a progress bar (downloads run in background threads,
    where a progress bar would fight pip's own output)."""
    import inspect

    from pip._internal.network.download import Downloader

    if "resume_retries" in inspect.signature(Downloader).parameters:  # pip 25.x
        return Downloader(session, "off", int(getattr(options, "resume_retries", 0) or 0))  # type: ignore[call-arg]
    return Downloader(session, "off")


def _kind(link: Link) -> tuple[str | None, Path | None, str | None]:
    if link.is_vcs:
        return "vcs", None, pinned_commit(link)
    if link.is_existing_dir():
        return "dir", Path(link.file_path), None
    if link.is_file:
        return "archive", Path(link.file_path), None
    if link.scheme in ("http", "https"):
        return "archive", None, None
    return None, None, None


def _hash_check(
    require_hashes: bool, link: Link, template: InstallRequirement | None
) -> tuple[bool, Callable[[str], bool] | None]:
    """(whether pipguard must stay out, the user's sha256 check for this link or None if pip checks none).

    Mirrors ``RequirementPreparer._get_linked_req_hashes``. A cached wheel satisfies pip's hash mode only
    through a sha256 of its source archive, so a requirement hashed with other algorithms alone is left
    to plain pip."""
    require = require_hashes
    has_options = template is not None and template.has_hash_options
    if not require and not has_options:
        return False, None
    if require and (link.is_vcs or link.is_existing_dir()):
        return True, None  # pip: "Can't verify hashes for these ... requirements"
    if template is None or (require and template.req is not None and not template.is_direct and not template.is_pinned):
        return True, None  # pip: "Hashes are required in --require-hashes mode ... pinned with =="
    hashes = template.hashes(trust_internet=False)
    if not hashes or not hashes._allowed.get("sha256"):
        return True, None
    return False, lambda sha256: hashes.is_hash_allowed("sha256", sha256)


def _parse_sdist_filename(filename: str) -> tuple[str, str] | None:
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename

    try:
        name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None
    return str(name), str(version)


def pinned_commit(link: Link) -> str | None:
    """The commit a VCS link is pinned to, if it names an immutable one (as pip's own cache decides)."""
    from pip._internal.vcs import vcs

    backend = vcs.get_backend_for_scheme(link.scheme)
    if backend is None:
        return None
    _url, rev, _auth = backend.get_url_rev_and_auth(link.url_without_fragment)
    if rev and len(rev) in (40, 64) and all(c in "0123456789abcdef" for c in rev.lower()):
        return rev.lower()
    return None


def names_its_commit(req: InstallRequirement) -> bool:
    """Whether what pip checked out for a VCS requirement is the commit it names, as pip decides before it
    caches the wheel (a 40-hex revision may as well be the name of a branch or a tag, which moves)."""
    from pip._internal.vcs import vcs

    link = req.link
    if link is None or not link.is_vcs:
        return True
    backend = vcs.get_backend_for_scheme(link.scheme)
    return bool(backend and req.source_dir and backend.is_immutable_rev_checkout(link.url, req.source_dir))


def build_options(finder: PackageFinder, options: Values, template: InstallRequirement | None) -> BuildOptions:
    """The child's options: the finder's scope, then what only the command line sets, then the build's own."""
    args = finder_args(finder) + _option_args(options)
    if not options.build_isolation:
        args.append("--no-build-isolation")
    # pip builds a requirement with its own ``config_settings`` only: the command line's reach the
    # requirements given on the command line (pip put them there), never ``-r`` lines or dependencies.
    settings: dict[str, Any] = dict(getattr(template, "config_settings", None) or {})
    for key, value in sorted(settings.items()):
        for item in value if isinstance(value, list) else [value]:
            args += ["--config-settings", f"{key}={item}"]
    return BuildOptions(
        child_args=tuple(args),
        config_settings=settings,
        build_isolation=bool(options.build_isolation),
        build_constraint_files=tuple(getattr(options, "build_constraints", None) or ()),
        cache_enabled=bool(options.cache_dir),
        verbosity=verbosity(options),
    )


def finder_args(finder: PackageFinder) -> list[str]:
    """The finder's effective scope as options, as pip passes it to its own build-dependency installs."""
    args: list[str] = []
    for attr in ("no_binary", "only_binary"):
        formats = getattr(finder.format_control, attr)
        args += ["--" + attr.replace("_", "-"), ",".join(sorted(formats or {":none:"}))]
    release_control = getattr(finder, "release_control", None)  # pip 26.0+
    if release_control is not None:
        for attr, value in release_control.get_ordered_args():
            args += ["--" + attr.replace("_", "-"), value]
    elif getattr(finder, "allow_all_prereleases", False):  # pip 25.x
        args.append("--pre")
    index_urls = finder.index_urls
    if index_urls:
        args += ["--index-url", index_urls[0]]
        for extra in index_urls[1:]:
            args += ["--extra-index-url", extra]
    else:
        args.append("--no-index")
    for link in finder.find_links:
        args += ["--find-links", link]
    net = network(finder)
    if net.proxy:
        args += ["--proxy", net.proxy]
    if net.no_proxy_env:
        args.append("--no-proxy-env")
    for host in net.trusted_hosts:
        args += ["--trusted-host", host]
    if net.cert:
        args += ["--cert", net.cert]
    if net.client_cert:
        args += ["--client-cert", net.client_cert]
    if finder.prefer_binary:
        args.append("--prefer-binary")
    refresh = getattr(finder, "refresh_package", None)  # pip 26.1+
    if refresh:
        args += ["--refresh-package", ",".join(sorted(refresh))]
    uploaded_prior_to = getattr(finder, "uploaded_prior_to", None)
    if uploaded_prior_to:
        args += ["--uploaded-prior-to", uploaded_prior_to.isoformat()]
    return args


def network(finder: PackageFinder) -> Network:
    """pip's network settings as this command's finder has them (for the remote tier's store)."""
    return Network(
        proxy=finder.proxy or None,
        cert=finder.custom_cert or None,
        client_cert=finder.client_cert or None,
        trusted_hosts=tuple(finder.trusted_hosts),
        no_proxy_env=bool(getattr(finder, "no_proxy_env", False)),
    )


def network_from_config() -> Network:
    """pip's network settings from its variables and configuration alone (``pipguard guard remote``)."""
    from pipguard._pip import parse_general

    options, _rest = parse_general([])
    return Network(
        proxy=options.proxy or None,
        cert=options.cert or None,
        client_cert=options.client_cert or None,
        trusted_hosts=tuple(options.trusted_hosts or ()),
        no_proxy_env=bool(getattr(options, "no_proxy_env", False)),
    )


def _option_args(options: Values) -> list[str]:
    args: list[str] = []
    for dest, flag, kind in _FROM_OPTIONS:
        value = getattr(options, dest, None)
        if value in (None, False, [], ""):
            continue
        if kind == "flag":
            args.append(flag)
        elif kind == "list":
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def verbosity(options: Values) -> int:
    return int(getattr(options, "verbose", 0) or 0) - int(getattr(options, "quiet", 0) or 0)
