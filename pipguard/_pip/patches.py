"""The seam: every patch pipguard applies to pip, in one table, with a way to take them all off.

Each row of ``PATCHES`` names one attribute of pip and the hook that wraps it. :func:`attach` checks every
row first (a pip that lacks one gets no patch at all: plain pip after one warning), then patches, and
returns a function that restores pip as it was. The hooks share one :class:`Seam`: the state of the one
command this process runs.

The patch points, all in pip's install and wheel commands and their resolver:

- ``Factory.get_wheel_cache_entry``: pip asks it, once per candidate link, whether a locally built wheel
  exists. It is the first moment pip needs a source distribution, so pipguard answers there: lock the
  source's key, look, build once, publish, release, and return a cache entry for the wheel. pip then goes
  on exactly as on a hit in its own wheel cache (no sdist preparation, hashes checked against the source
  archive's recorded hash, ``direct_url.json`` from the entry's origin).
- ``LinkCandidate.__init__``: the requirement template of the link being looked up (its hashes and
  ``--config-settings``), and the name of an unnamed requirement (``./tree``), learnt from the wheel built
  for it as if the user had written ``name @ url`` (pip would otherwise prepare it in-tree, unlocked).
- ``RequirementCommand.get_requirements``: pip has read the command's requirements (arguments, ``-r`` and
  ``-c`` files) and its finder is final. The sdists its finder picks for them start building in the
  background (ahead.py); the cache lookup above then waits for the build in flight instead of starting
  another.
- ``PipProvider.get_dependencies``: the resolver learnt a distribution's dependencies; the sdists among
  them start building in the background too, before the resolver reaches them.
- ``InstallCommand.run`` / ``WheelCommand.run``: the parsed options and which command runs; at its end,
  the background builds are waited for (or stopped, if the command failed or was interrupted).
- ``RequirementPreparer.prepare_linked_requirement``: a claimed source pipguard downloaded to key it is
  prepared from that download (pip fetches the same bytes once, as from its own batch downloads).
- ``wheel_builder._build_one``: pip builds a claimed miss; its wheel is shared and the claim released.
- ``RequirementPreparer._log_preparing_link`` and the ``build`` step of install and wheel: a build ahead
  is shown as plain pip shows a build, where pip shows it (replay.py), not as a cache hit.
- ``RequirementPreparer.prepare_editable_requirement`` and ``wheel_builder._build_one``: editable trees
  build in place, so they are locked by their path (never cached, as pip never caches them).
- ``commands.install.install_given_reqs`` and ``UninstallCommand.run``: the environment lock.
- ``call_subprocess`` as pip's build-environment installer calls it (``build_env.installer`` in pip 26,
  ``build_env`` in 25.3): the child pip that installs build requirements runs through pipguard, so a build
  requirement built from source is locked and cached too (build_deps.py).
- ``build_env.SubprocessBuildEnvironmentInstaller.install`` (pip 25.3's module, pip 26.3's package, the
  same class): a build's requirements installed into its isolated prefix are kept once and copied into
  later builds' prefixes (isolation.py, buildenv.py); where the second pip would only fetch the wheels the
  finder picks, they are installed from this process with pip's own ``install_wheel`` (quick_install.py).
- ``InstallRequirement.prepare_metadata``, ``req_install.generate_metadata`` and
  ``wheel_builder.build_wheel_pep517``: where pip builds what it prepares, an sdist's metadata is taken
  from its wheel, built once, as pip's hook library does for a backend without the metadata hook
  (metadata.py).
- ``SourceDistribution._get_build_requires_wheel`` and the ``runner_with_spinner_message`` it calls
  (``distributions.sdist``'s name for it): where pipguard will run the next hook itself (above), that
  hook's interpreter is started, and imports the backend, while pip asks the backend for its
  requirements (warm_hooks.py).
- ``network.session.user_agent``: worked out once per command, and handed to pipguard's children of the
  same interpreter, which send the very same header (agent.py).
- ``cli.index_command._create_truststore_ssl_context``: pip's TLS context, made in a thread while pip
  parses its command (tls.py).
- ``pyproject_hooks.BuildBackendHookCaller._call_hook`` (pip's vendored hook library, every hook goes
  through it): in a build child, the first hook waits for the job its parent takes for it (gate.py); a
  hook after the first waits for its environment to be kept (isolation.py).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from optparse import Values
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipguard import display, gate
from pipguard._pip import agent, build_deps, describe, failure, isolation, metadata, replay, tls, warm_hooks
from pipguard.ahead import Ahead
from pipguard.errors import (
    MACHINERY_ERRORS,
    BuildFailed,
    BuildReport,
    BuildStopped,
    SeamUnavailable,
    SourceMismatch,
)
from pipguard.sources import Source

if TYPE_CHECKING:
    from pip._internal.cache import CacheEntry
    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.link import Link
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_install import InstallRequirement
    from pip._internal.resolution.resolvelib.factory import Factory

    from pipguard.buildenv import BuildEnvs


T = TypeVar("T")


class Claim(Protocol):
    """A source this process builds itself, through pip, while holding its lock."""

    @property
    def archive(self) -> Path | None:
        """The source archive pipguard already downloaded, if it did (pip prepares it from there)."""

    def building(self) -> Path | None:
        """pip starts building the wheel: a wheel to use instead, if another process built it meanwhile."""

    def done(self, wheel: Path | None, report: BuildReport | None, keep: bool = True) -> None:
        """pip built ``wheel`` (None: it failed, as ``report`` says): share it, release the lock.
        ``keep`` False: only the processes waiting now get it, never the cache (pip would not cache it)."""

    def release(self) -> None:
        """pip will not build it (or built it already): release the lock; idempotent."""

    def build_starts(self) -> bool:
        """pip builds it now, while preparing its metadata (metadata.py); False: not now (the lock is
        lent to break a circle of waits, and ``building`` takes it back first)."""


class Guard(Protocol):
    """What the seam asks of pipguard's cache and locks."""

    def claim(self, source: Source) -> tuple[Path, str | None] | Claim | None:
        """(wheel path, source sha256) to install; a :class:`Claim` (a miss: pip builds it, under the
        lock); or None to let pip go on as plain pip.

        Raises ``BuildFailed`` when the build this process waited for failed (pip must not build it
        again) and ``SourceMismatch`` when the source is not what its link or the user's hashes say."""

    def wheel_for(self, source: Source) -> tuple[Path, str | None] | None:
        """Like :meth:`claim`, but a miss is built here and now, in pipguard's build child (builds ahead)."""

    def environment_lock(self, scope: str) -> contextlib.AbstractContextManager[object]:
        """Serialize installs into one environment (``scope`` is its real path)."""

    def tree_lock(self, tree: str, name: str) -> contextlib.AbstractContextManager[object]:
        """Serialize builds in one source tree (editables: locked, never cached)."""

    def transcript(self, wheel: Path) -> str | None:
        """What pipguard's build child printed while it built ``wheel`` for this process, if it did."""

    def builds_at_once(self) -> int:
        """The job budget of this process: building ahead is worth it only above 1."""

    def build_envs(self) -> BuildEnvs | None:
        """The kept isolated build environments, or None (pip installs each one, as plain pip)."""

    def stop(self) -> None:
        """End every build and wait in flight at once (the command failed or is interrupted)."""


@dataclass
class Seam:
    """The state of the one pip command this process runs, shared by every hook."""

    make_guard: Callable[[], Guard]
    options: Values | None = None
    command: str | None = None
    template: InstallRequirement | None = None  # of the candidate being created
    exit_stack: contextlib.ExitStack | None = None
    found: dict[str, tuple[Path, str | None] | None] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)  # by link URL: pip builds these, under their lock
    ahead: Ahead | None = None  # builds started once pip read the requirements, by link URL
    heard: dict[str, list[str]] = field(default_factory=dict)  # what pip logged of a download ahead, by URL
    shown_ahead: list[tuple[str, replay.Transcript]] = field(default_factory=list)  # for pip's build step
    failed_ahead: dict[str, BuildReport] = field(default_factory=dict)  # by URL: reported in pip's build step
    prepared: list[str] = field(default_factory=list)  # names, in the order pip prepared them
    failed_builds: dict[str, metadata.FailedBuild] = field(default_factory=dict)  # by metadata directory
    preparing: InstallRequirement | None = None  # whose metadata pip prepares now
    requiring: InstallRequirement | None = None  # whose backend pip asks for its requirements now
    _guard: Guard | None = None

    @property
    def guard(self) -> Guard:
        if self._guard is None:
            self._guard = self.make_guard()
        return self._guard

    def lock_or_none(self, make: Callable[[Guard], contextlib.AbstractContextManager[object]]) -> Any:
        """A lock from the guard, or (after a warning) none: locking never fails an install."""
        try:
            return make(self.guard)
        except MACHINERY_ERRORS as exc:
            display.warn(f"going on without a lock ({type(exc).__name__}: {exc})")
            return contextlib.nullcontext()

    def wheel_for(self, factory: Factory, link: Link, name: str | None) -> tuple[Path, str | None] | None:
        """The guard's wheel for ``link``, asked once per link and command (a build ahead is waited for).

        None on a miss too: pip then prepares and builds the source itself, with its own output, under the
        lock the guard's claim holds until ``_build_one`` has built it (or the command ends)."""
        if link.url in self.found:
            return self.found[link.url]
        result = None
        if self.ahead is not None and link.url in self.ahead:
            ahead = self.ahead
            result = self._ask_guard(lambda: self._built_ahead(ahead, link.url))
        elif self.options is not None and self.command is not None and not self._dry_run():
            source = describe.source_for(factory, link, name, self.template, self.options)
            if source is not None:
                claimed = self._ask_guard(lambda: self.guard.claim(source))
                if isinstance(claimed, tuple) or claimed is None:
                    result = claimed
                else:
                    self.claims[link.url] = claimed
        self.found[link.url] = result
        return result

    def _built_ahead(self, ahead: Ahead, url: str) -> tuple[Path, str | None] | None:
        """The build ahead of ``url``; one whose wheel failed to build is left to pip to prepare, and its
        failure is reported in pip's build step, after every other build (as plain pip reports it)."""
        try:
            return ahead.result(url)
        except BuildFailed as exc:
            if exc.report.stage != "wheel":
                raise
            self.failed_ahead[url] = exc.report
            return None

    def release(self, url: str) -> None:
        """pip will not build ``url`` after all (its own cache had it, or the command ends)."""
        claim = self.claims.pop(url, None)
        if claim is not None:
            claim.release()

    def release_all(self) -> None:
        for url in list(self.claims):
            self.release(url)

    def build_ahead(self, reqs: list[InstallRequirement], finder: PackageFinder, session: PipSession) -> None:
        """Start building the sdists the command asks for in the background (see ahead.py)."""
        options = self.options
        if options is not None and self._may_build_ahead():
            installing = self._installing()
            self._submit_ahead(lambda: describe.requested_sdists(reqs, finder, session, options, installing, self.heard))

    def dependencies_ahead(self, requirements: list[Any], provider: Any) -> None:
        """The resolver learnt these dependencies of a distribution: start building, in the background,
        the sdists it will try first for them (see ahead.py)."""
        options = self.options
        if options is not None and self._may_build_ahead():
            installing = self._installing()
            self._submit_ahead(lambda: describe.dependency_sdists(requirements, provider, options, installing, self.heard))

    def _may_build_ahead(self) -> bool:
        if self.options is None or self.command is None or self._dry_run():
            return False
        try:
            return self.guard.builds_at_once() > 1  # one build at a time anyway: each as the resolver reaches it
        except MACHINERY_ERRORS:
            return False

    def _installing(self) -> bool:
        """Whether pip keeps what is installed (not under ``--force-reinstall``, ``--ignore-installed``,
        ``--target``, nor for ``wheel``)."""
        options = self.options
        return self.command == "install" and options is not None and not (
            options.force_reinstall or options.ignore_installed or options.target_dir
        )

    def _submit_ahead(self, find: Callable[[], Iterable[tuple[str, Source]]]) -> None:
        """Build ahead what ``find`` names, each as soon as it names it, unless the resolver met it already.
        One source alone gains nothing (pip builds it as the resolver reaches it): the first waits for a
        second, unless other builds ahead are running beside it."""
        alone: list[tuple[str, Source]] = []
        try:
            for url, source in find():
                if url in self.found or (self.ahead is not None and url in self.ahead):
                    continue
                if not alone and (self.ahead is None or not self.ahead.running()):
                    alone.append((url, source))
                    continue
                if self.ahead is None:
                    self.ahead = Ahead(self.guard)
                for waiting in (*alone, (url, source)):
                    self.ahead.submit(*waiting)
                alone.clear()
        except MACHINERY_ERRORS as exc:
            display.warn(f"not building ahead ({type(exc).__name__}: {exc})")
        except Exception:  # noqa: BLE001 - pip's own error: its resolver meets it again and reports it in place
            pass

    def transcript_for(self, req: InstallRequirement) -> replay.Transcript | None:
        """What pipguard's build child printed for ``req``'s source, if it built it for this process (a
        build ahead, a writer's sandboxed build): to show it as pip's own build."""
        source = getattr(req, "cached_wheel_source_link", None)
        if source is None or req.link is None:
            return None
        printed = self.guard.transcript(Path(req.link.file_path))
        return replay.parse(printed, self.heard.get(source.url, [])) if printed else None

    def finish_ahead(self, failed: bool) -> None:
        """At the command's end: wait for the background builds, or stop them if the command failed."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            ahead.finish(failed)

    def entry_is_persistent(self) -> bool:
        """Whether pip should treat the wheel as one from its own cache.

        Always where pip checks hashes: only for such an entry does pip check the source archive's
        recorded sha256 rather than the wheel's own (which could never match)."""
        if self.options is None:
            return False
        hashed = self.options.require_hashes or (self.template is not None and self.template.has_hash_options)
        return bool(self.options.cache_dir or hashed)

    def build_envs(self) -> BuildEnvs | None:
        """The kept build environments for this command: none outside install and wheel, and none under
        ``--no-cache-dir`` (nothing of the command is to be kept)."""
        from pipguard import settings

        keeping = bool(getattr(self.options, "cache_dir", None)) or settings.build_child_keeps_envs()
        if self.options is None or self.command is None or not keeping:
            return None
        try:
            return self.guard.build_envs()
        except MACHINERY_ERRORS:
            return None

    def build_for_metadata(self) -> bool:
        """Whether the source whose metadata pip prepares now is built for it (metadata.py); its claim,
        if any, learns that its build starts."""
        req = self.preparing
        if req is None or not self._builds_what_it_prepares(req):
            return False
        claim = self.claims.get(req.link.url) if req.link is not None else None
        try:
            return claim is None or claim.build_starts()
        except MACHINERY_ERRORS:
            return False

    def builds_for_metadata_later(self, req: InstallRequirement) -> bool:
        """Whether ``req``'s metadata will be taken from its build (metadata.py), as far as can be told
        before its build environment is complete: then its next hook is pipguard's to run."""
        return self._builds_what_it_prepares(req) and metadata.marker() is not None and metadata.hidden()

    def _builds_what_it_prepares(self, req: InstallRequirement) -> bool:
        """Whether pip will build ``req``, whose metadata it prepares: only then is the metadata
        taken from the build (metadata.py). So only for ``install`` that installs and ``wheel``, not under
        ``--only-deps`` (pip prepares the requirements themselves and builds none of them), and only for
        an archive or a checkout in pip's own temp directory: a local tree would gain a ``build/``
        directory pip may never have made (pip prepares one tree spelt two ways twice, and builds it
        once), and an editable one is built by another hook. Nor for a source whose build ahead failed:
        pip's build step reports that failure, it builds nothing."""
        if req.editable or req.link is None or req.link.is_existing_dir():
            return False
        if req.link.url in self.failed_ahead:
            return False
        if getattr(self.options, "only_deps", False):
            return False
        return self.command == "wheel" or (self.command == "install" and not self._dry_run())

    def _dry_run(self) -> bool:
        return self.command == "install" and bool(getattr(self.options, "dry_run", False))

    def _ask_guard(self, ask: Callable[[], T]) -> T | None:
        try:
            return ask()
        except BuildStopped:
            raise KeyboardInterrupt from None  # a build ahead stopped by Ctrl-C to the job: so is pip
        except BuildFailed as exc:
            raise failure.error_for(exc.report, self.command or "install") from None
        except SourceMismatch:
            return None  # pip downloads it and reports the mismatch in its own words
        except MACHINERY_ERRORS as exc:
            display.warn(f"cache unavailable ({type(exc).__name__}: {exc}); building as plain pip")
            return None


# --- hooks: each takes the original and the seam, and returns what replaces the original -------------


def _command_run(name: str) -> Callable[[Callable[..., int], Seam], Callable[..., int]]:
    def hook(original: Callable[..., int], seam: Seam) -> Callable[..., int]:
        def run(self: Any, options: Values, args: list[str]) -> int:
            seam.options, seam.command = options, name
            with display.output_for(describe.verbosity(options)), contextlib.ExitStack() as stack:
                seam.exit_stack = stack
                failed = True
                try:
                    status = original(self, options, args)
                    failed = False
                    return status
                finally:
                    warm_hooks.discard_all()
                    isolation.settle()  # before pip removes the build environments being kept
                    seam.release_all()
                    seam.finish_ahead(failed)
                    seam.exit_stack = None

        return run

    return hook


def _uninstall_run(original: Callable[..., int], seam: Seam) -> Callable[..., int]:
    def run(self: Any, options: Values, args: list[str]) -> int:
        with display.output_for(describe.verbosity(options)), seam.lock_or_none(
            lambda g: g.environment_lock(sys.prefix)
        ):
            return original(self, options, args)

    return run


def _install_given_reqs(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def install_given_reqs(*args: Any, **kwargs: Any) -> Any:
        if seam.options is not None and seam.exit_stack is not None:
            # Held until the install command returns, so a --target move is covered too.
            scope = install_scope(seam.options)
            seam.exit_stack.enter_context(seam.lock_or_none(lambda g: g.environment_lock(scope)))
        return original(*args, **kwargs)

    return install_given_reqs


@contextlib.contextmanager
def _editable_tree_lock(seam: Seam, req: InstallRequirement) -> Iterator[object]:
    tree = req.source_dir or (req.link.file_path if req.link and req.link.is_existing_dir() else None)
    if not req.editable or not tree or seam.options is None:
        yield None
        return
    with seam.lock_or_none(lambda g: g.tree_lock(tree, req.name or "")) as held:
        yield held


def _prepare_editable(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def prepare_editable_requirement(self: Any, req: InstallRequirement) -> Any:
        with _editable_tree_lock(seam, req):
            return original(self, req)

    return prepare_editable_requirement


def _build_one(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def build_one(req: InstallRequirement, *args: Any, **kwargs: Any) -> Any:
        if req.editable:
            with _editable_tree_lock(seam, req):
                return original(req, *args, **kwargs)
        failed = seam.failed_ahead.pop(req.link.url, None) if req.link is not None else None
        if failed is not None:  # built ahead, and failed: shown as pip shows its own failure, not built again
            replay.show_failure(failed)
            return None
        claim = seam.claims.pop(req.link.url, None) if req.link is not None else None
        if claim is None:
            return original(req, *args, **kwargs)
        try:
            built = claim.building()
            if built is not None:  # another process built it while this one lent it the lock
                return _deliver(built, args[0] if args else kwargs["output_dir"])
        except MACHINERY_ERRORS as exc:
            display.warn(f"building {req.name} as plain pip ({type(exc).__name__}: {exc})")
            claim.release()
            return original(req, *args, **kwargs)
        wheel = None
        try:
            with failure.captured() as output:
                wheel = original(req, *args, **kwargs)
            report = None if wheel else output.report(req.name or "")
            claim.done(Path(wheel) if wheel else None, report, keep=describe.names_its_commit(req))
        except MACHINERY_ERRORS as exc:
            display.warn(f"could not share the wheel of {req.name} ({type(exc).__name__}: {exc})")
        finally:
            claim.release()
        return wheel

    return build_one


def _log_preparing_link(original: Callable[..., None], seam: Seam) -> Callable[..., None]:
    def log_preparing_link(self: Any, req: InstallRequirement) -> None:
        name = getattr(req, "name", None)  # pipguard's own header (describe._announce) has none
        if name and name not in seam.prepared:
            seam.prepared.append(str(name))
        transcript = seam.transcript_for(req)
        if transcript is None:
            return original(self, req)
        # pip's own header for the source (not "Using cached"), then what the build ahead printed for it.
        source = req.cached_wheel_source_link
        original(self, describe.header(source, req))
        replay.show(transcript.preparing)
        stored = _store_like_pip(source, Path(req.link.file_path), seam.options)
        seam.shown_ahead.append((str(req.name), replay.stored_in(transcript, stored)))
        return None

    return log_preparing_link


def _build_step(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def build(requirements: Any, *args: Any, **kwargs: Any) -> Any:
        ahead, seam.shown_ahead = seam.shown_ahead, []
        if not ahead:
            return original(requirements, *args, **kwargs)
        return replay.merged_build(original, list(requirements), ahead, seam.prepared, *args, **kwargs)

    return build


def _prepare_linked(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def prepare_linked_requirement(self: Any, req: InstallRequirement, *args: Any, **kwargs: Any) -> Any:
        claim = seam.claims.get(req.link.url) if req.link is not None else None
        if claim is not None and claim.archive is not None:
            describe.adopt_download(self, req, claim.archive)
        return original(self, req, *args, **kwargs)

    return prepare_linked_requirement


def _candidate_init(original: Callable[..., None], seam: Seam) -> Callable[..., None]:
    def candidate_init(
        self: Any, link: Link, template: InstallRequirement, factory: Factory, name: Any = None, version: Any = None
    ) -> None:
        previous, seam.template = seam.template, template
        try:
            if name is None and template.req is None:
                # An unnamed requirement (``./tree``, a bare URL): pip learns the name by preparing it.
                # Ask the guard first: a wheel it has (the cache's, or the build this process waited
                # for) names it, exactly as if the user had written ``name @ url``; on a miss pip
                # prepares it itself, under the lock the guard now holds.
                result = seam.wheel_for(factory, link, None)
                if result is not None:
                    name = _name_requirement(template, link, result[0])
            original(self, link, template, factory, name, version)
        finally:
            seam.template = previous

    return candidate_init


def _get_requirements(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def get_requirements(
        self: Any, args: list[str], options: Values, finder: PackageFinder, session: PipSession
    ) -> list[InstallRequirement]:
        reqs: list[InstallRequirement] = original(self, args, options, finder, session)
        seam.build_ahead(reqs, finder, session)
        return reqs

    return get_requirements


def _get_dependencies(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def get_dependencies(self: Any, candidate: Any) -> list[Any]:
        # All of them first (pip makes them lazily, but making one asks nothing of the index): as the
        # resolver adds each to its criteria it already asks for its first candidate's wheel, so the
        # builds ahead must be under way before it sees the first.
        learnt = list(original(self, candidate))
        seam.dependencies_ahead(learnt, self)
        return learnt

    return get_dependencies


def _build_env_install(original: Callable[..., None], seam: Seam) -> Callable[..., None]:
    def install(self: Any, requirements: Any, prefix: Any, *, kind: str, for_req: Any) -> None:
        return isolation.install(original, self, requirements, prefix, kind, for_req, seam.build_envs(), seam.options)

    return install


def _generate_metadata(original: Callable[..., str], seam: Seam) -> Callable[..., str]:
    def generate_metadata(build_env: Any, backend: Any, details: str) -> str:
        if not seam.build_for_metadata():
            warm_hooks.discard_all()  # started for a hook that pip's own metadata hook replaces
            return original(build_env, backend, details)
        return metadata.generate(original, build_env, backend, details, seam.failed_builds)

    return generate_metadata


def _prepare_metadata(original: Callable[..., None], seam: Seam) -> Callable[..., None]:
    def prepare_metadata(self: InstallRequirement, *args: Any, **kwargs: Any) -> None:
        previous, seam.preparing = seam.preparing, self
        try:
            original(self, *args, **kwargs)
        finally:
            seam.preparing = previous

    return prepare_metadata


def _get_build_requires(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def get_build_requires_wheel(self: Any) -> Any:
        previous, seam.requiring = seam.requiring, self.req if seam.builds_for_metadata_later(self.req) else None
        try:
            required = original(self)
        finally:
            seam.requiring = previous
        if required:  # pip may install these into the build environment: the warm interpreter predates them
            warm_hooks.discard_all()
        return required

    return get_build_requires_wheel


def _hook_runner(original: Callable[[str], Callable[..., None]], seam: Seam) -> Callable[[str], Callable[..., None]]:
    def runner_with_spinner_message(message: str) -> Callable[..., None]:
        runner = original(message)
        return warm_hooks.alongside(runner) if seam.requiring is not None else runner

    return runner_with_spinner_message


def _user_agent(original: Callable[[], str], seam: Seam) -> Callable[[], str]:
    return agent.user_agent(original)


def _tls_context(original: Callable[[], Any], seam: Seam) -> Callable[[], Any]:
    return tls.context(original)


def _call_hook(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def call_hook(self: Any, hook_name: str, kwargs: Any) -> Any:
        gate.wait_for_turn(getattr(self, "source_dir", None))  # a build child's first hook waits for a job (gate.py)
        if hook_name != warm_hooks.FIRST_HOOK:
            isolation.settle(report=False)  # its environment is kept before this hook can write into it
        return original(self, hook_name, kwargs)

    return call_hook


def _build_wheel_pep517(original: Callable[..., str | None], seam: Seam) -> Callable[..., str | None]:
    return metadata.build_wheel(original, seam.failed_builds)


def _wheel_cache_entry(original: Callable[..., Any], seam: Seam) -> Callable[..., Any]:
    def get_wheel_cache_entry(self: Factory, link: Link, name: Any) -> CacheEntry | None:
        result = seam.wheel_for(self, link, name)
        if result is not None:
            return _cache_entry(link, result[0], result[1], persistent=seam.entry_is_persistent())
        # A miss of pipguard's (or a source it leaves alone): pip's own cache, as plain pip would ask
        # it. A wheel there means pip builds nothing, so the claim is let go at once.
        own = original(self, link, name)
        if own is not None:
            seam.release(link.url)
        return own

    return get_wheel_cache_entry


@dataclass(frozen=True)
class Patch:
    """One attribute of pip (``module:Class.attr`` or ``module:function``) and the hook that wraps it;
    ``elsewhere``: where other pips of the supported range keep that same attribute (the first that
    resolves is patched)."""

    target: str
    hook: Callable[[Any, Seam], Any]
    elsewhere: tuple[str, ...] = ()

    def resolve(self) -> tuple[Any, str]:
        *earlier, last = (self.target, *self.elsewhere)
        for target in earlier:
            with contextlib.suppress(ImportError, AttributeError):
                return _resolve(target)
        return _resolve(last)


def _resolve(target: str) -> tuple[Any, str]:
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    if not hasattr(owner, attr):
        raise AttributeError(f"{target} does not exist")
    return owner, attr


_INTERNAL = "pip._internal."
# What a build child of pipguard's (a build ahead: ``pip wheel`` of one source whose lock its parent holds)
# attaches: only its build environments go through pipguard (made once, and their requirements built from
# source locked and cached); the source itself is its parent's business.
BUILD_ENVIRONMENT_PATCHES: tuple[Patch, ...] = (
    Patch(_INTERNAL + "commands.wheel:WheelCommand.run", _command_run("wheel")),
    Patch(
        _INTERNAL + "build_env.installer:call_subprocess", build_deps.install_call, (_INTERNAL + "build_env:call_subprocess",)
    ),
    Patch(_INTERNAL + "build_env:SubprocessBuildEnvironmentInstaller.install", _build_env_install),
    Patch(_INTERNAL + "req.req_install:InstallRequirement.prepare_metadata", _prepare_metadata),
    Patch(_INTERNAL + "req.req_install:generate_metadata", _generate_metadata),
    Patch(_INTERNAL + "distributions.sdist:SourceDistribution._get_build_requires_wheel", _get_build_requires),
    Patch(_INTERNAL + "distributions.sdist:runner_with_spinner_message", _hook_runner),
    Patch(_INTERNAL + "wheel_builder:build_wheel_pep517", _build_wheel_pep517),
    Patch(_INTERNAL + "network.session:user_agent", _user_agent),
    Patch("pip._vendor.pyproject_hooks._impl:BuildBackendHookCaller._call_hook", _call_hook),
)
PATCHES: tuple[Patch, ...] = (
    Patch(_INTERNAL + "commands.install:InstallCommand.run", _command_run("install")),
    Patch(_INTERNAL + "commands.uninstall:UninstallCommand.run", _uninstall_run),
    Patch(_INTERNAL + "cli.req_command:RequirementCommand.get_requirements", _get_requirements),
    Patch(_INTERNAL + "commands.install:install_given_reqs", _install_given_reqs),
    Patch(_INTERNAL + "operations.prepare:RequirementPreparer.prepare_editable_requirement", _prepare_editable),
    Patch(_INTERNAL + "operations.prepare:RequirementPreparer.prepare_linked_requirement", _prepare_linked),
    Patch(_INTERNAL + "operations.prepare:RequirementPreparer._log_preparing_link", _log_preparing_link),
    Patch(_INTERNAL + "commands.install:build", _build_step),
    Patch(_INTERNAL + "commands.wheel:build", _build_step),
    Patch(_INTERNAL + "cli.index_command:_create_truststore_ssl_context", _tls_context),
    Patch(_INTERNAL + "wheel_builder:_build_one", _build_one),
    Patch(_INTERNAL + "resolution.resolvelib.candidates:LinkCandidate.__init__", _candidate_init),
    Patch(_INTERNAL + "resolution.resolvelib.provider:PipProvider.get_dependencies", _get_dependencies),
    Patch(_INTERNAL + "resolution.resolvelib.factory:Factory.get_wheel_cache_entry", _wheel_cache_entry),
    *BUILD_ENVIRONMENT_PATCHES,
)


def attach(make_guard: Callable[[], Guard], patches: tuple[Patch, ...] = PATCHES) -> Callable[[], None]:
    """Check every patch point, then patch them all; return the function that restores pip."""
    from pipguard._pip import SUPPORTED, is_supported, pip_version

    if not is_supported():
        raise SeamUnavailable(f"pip {pip_version()} is outside the supported range {SUPPORTED}")
    resolved = []
    for patch in patches:
        try:
            owner, attr = patch.resolve()
        except (ImportError, AttributeError):
            owner, attr = None, ""
        if owner is None or not callable(getattr(owner, attr, None)):
            raise SeamUnavailable(f"pip {pip_version()} has no {patch.target}")
        resolved.append((patch, owner, attr, getattr(owner, attr)))
    seam = Seam(make_guard)
    for patch, owner, attr, original in resolved:
        setattr(owner, attr, patch.hook(original, seam))

    def detach() -> None:
        for _patch, owner, attr, original in reversed(resolved):
            setattr(owner, attr, original)

    return detach


def run_pip(
    args: list[str], make_guard: Callable[[], Guard] | None = None, patches: tuple[Patch, ...] = PATCHES,
    opens_session: bool = False,
) -> int:
    """pip's main in this process; with ``make_guard``, install and wheel go through the seam (its
    ``patches``). ``opens_session``: the command talks to the index (install, wheel), so pip's header and
    TLS context are worked out meanwhile (agent.py, tls.py)."""
    from pipguard._pip import main

    if make_guard is not None:
        try:
            attach(make_guard, patches)
        except (SeamUnavailable, ImportError) as exc:
            display.warn(f"running plain pip: {exc}")
        else:
            if opens_session:
                agent.work_out_early()
                tls.make_early()
    return main(args)


# --- what the hooks hand to pip ------------------------------------------------------------------------


def _name_requirement(template: InstallRequirement, link: Link, wheel: Path) -> Any:
    """Name an unnamed requirement after its wheel, spelt as the project spells it (its ``Name:``), as
    pip names it after preparing it."""
    from packaging.utils import canonicalize_name
    from pip._internal.utils.packaging import get_requirement

    name = describe.wheel_project_name(wheel)
    template.req = get_requirement(f"{name} @ {link.url}")
    return canonicalize_name(name)


def _store_like_pip(source: Link, wheel: Path, options: Values | None) -> str | None:
    """Where plain pip would have stored its own build of ``source`` in its wheel cache, with the wheel
    put there as plain pip leaves it (``pip cache list`` shows it, as after plain pip); None where pip
    keeps no such wheel (no cache, or a file name without a version: an ephemeral directory)."""
    from pip._internal.cache import WheelCache
    from pip._internal.wheel_builder import _contains_egg_info

    cache_dir = getattr(options, "cache_dir", None)
    if not cache_dir or not _contains_egg_info(source.splitext()[0]):
        return None
    directory = WheelCache(cache_dir).get_path_for_link(source)
    try:
        _deliver(wheel, directory)
    except OSError as exc:
        display.warn(f"could not keep {wheel.name} in pip's cache too ({type(exc).__name__}: {exc})")
        return None
    return directory


def _deliver(wheel: Path, output_dir: str) -> str:
    """A wheel another process built, put where pip's build would have put its own (whole or not at all;
    pip's cache may hold that very file already)."""
    import shutil
    import tempfile

    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, wheel.name)
    if os.path.exists(target) and os.path.samefile(wheel, target):
        return target
    fd, staging = tempfile.mkstemp(dir=output_dir, suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(wheel, staging)
        os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
    return target


def install_scope(options: Values) -> str:
    """The directory an install writes into, as pip decides it."""
    for value in (options.target_dir, options.prefix_path, options.root_path):
        if value:
            return os.path.realpath(value)
    if options.use_user_site:
        import site

        return os.path.realpath(site.getusersitepackages())
    return os.path.realpath(sys.prefix)


def _cache_entry(link: Link, wheel: Path, sha256: str | None, persistent: bool) -> CacheEntry:
    """A pip cache entry for ``wheel`` whose origin is this process's own link (not a shared file).

    The origin records the source archive's sha256 as plain pip does after downloading it, which is also
    what pip checks ``--require-hashes`` against when it uses a cached wheel.
    """
    from pip._internal.cache import CacheEntry
    from pip._internal.models.link import Link as PipLink
    from pip._internal.utils.direct_url_helpers import direct_url_from_link
    from pip._internal.utils.urls import path_to_url

    origin_link = link
    if sha256 and not link.is_vcs and not link.is_existing_dir() and link.hash_name != "sha256":
        fragment = f"#sha256={sha256}"
        if link.subdirectory_fragment:
            fragment += f"&subdirectory={link.subdirectory_fragment}"
        origin_link = PipLink(link.url_without_fragment + fragment)
    entry = CacheEntry(PipLink(path_to_url(str(wheel))), persistent=persistent)
    entry.origin = direct_url_from_link(origin_link, link_is_in_wheel_cache=True)
    return entry
