"""A build's requirements installed in pipguard's own process, where that is exactly what pip's second pip
would install.

pip installs an isolated build's requirements by running a second pip (``install --prefix <temp>
--ignore-installed --no-compile``): an interpreter start, pip's imports and its own look at the index,
0.6 to 0.8 s of a small cold build. Where the answer is plain, this installs the very same files into the
very same prefix from this process, with the command's finder and session:

- the second pip would read nothing this process's finder does not hold: no build constraints, no
  constraints it would apply (pip 26 tells it to ignore the command's, ``_PIP_IN_BUILD_IGNORE_CONSTRAINTS``,
  as pip 25.3 does under ``--use-feature=build-constraint``; pip 25.3 otherwise lets it read
  ``PIP_CONSTRAINT`` and a ``constraint`` setting), and no ``PIP_*`` variable or configuration setting
  but index and format options (from which the finder was made, as the second pip would make its own)
  and settings of output, cache and network;
- each requirement, and each ``Requires-Dist`` of what they reach (markers evaluated), is a name with a
  specifier, no URL and no extras; for each name the finder's best candidate, under every specifier that
  asks for it, is one wheel: pip's resolver picks the best candidate that satisfies them all, and without
  a conflict it has nothing to backtrack from;
- its output would go nowhere (no ``-v``, no ``--log``): pip shows the second pip's lines there.

The wheels are downloaded with the command's session (pip's HTTP cache, as the second pip's), checked
against the hash the index names, and installed by pip's own ``install_wheel`` into the prefix's scheme
without bytecode, with ``REQUESTED`` on the requirements themselves: what the second pip leaves. Anything
else, or any failure on the way, and the prefix is removed and the second pip runs as always.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pip._internal.index.package_finder import PackageFinder
    from pip._internal.models.link import Link

# Configuration the second pip reads that the finder already holds, or that changes nothing it installs.
NEUTRAL_SETTINGS = frozenset(
    {
        "index-url", "extra-index-url", "no-index", "find-links", "trusted-host", "only-binary", "no-binary",
        "prefer-binary", "pre", "cert", "client-cert", "proxy", "timeout", "default-timeout", "retries",
        "cache-dir", "no-cache-dir", "disable-pip-version-check", "no-input", "progress-bar", "no-color",
        "root-user-action", "no-warn-script-location", "keyring-provider", "resume-retries", "config-file",
        "build-tracker", "quiet", "no-python-version-warning",
    }
)


class NotPlain(Exception):
    """The install is not one this module may do: the second pip does it."""


def install(finder: PackageFinder, session: Any, requirements: list[str], prefix: Any, installer: Any) -> bool:
    """Install ``requirements`` into ``prefix`` as the second pip would; False (nothing left at the prefix)
    where that is not plainly so, or anything fails: the caller runs the second pip."""
    target = Path(prefix.path)
    try:
        _check_settings(installer)
        with tempfile.TemporaryDirectory(prefix="pipguard-build-deps-") as downloads:
            picked = _resolve(finder, requirements, Path(downloads), session)
            _install_all(picked, str(target))
        return True
    except Exception:  # noqa: BLE001 - anything at all: the second pip installs, and reports, as always
        shutil.rmtree(target, ignore_errors=True)
        return False


def _check_settings(installer: Any) -> None:
    from pip._internal.configuration import Configuration

    from pipguard._pip import metadata

    if not metadata.hidden():
        raise NotPlain("the second pip's output is shown or logged")
    if getattr(installer, "_build_constraints", None):
        raise NotPlain("build constraints")
    neutral = NEUTRAL_SETTINGS | ({"constraint"} if constraints_ignored(installer) else set())
    configuration = Configuration(isolated=False)
    configuration.load()
    for _origin, settings in configuration.items():  # each file, and the PIP_* variables: their settings
        for key, value in settings.items():
            name = key.partition(".")[2]
            if name not in neutral and not _empty_list(name, value):
                raise NotPlain(f"setting {key}")


def _empty_list(name: str, value: object) -> bool:
    """Whether a setting is a blank one of a list option (``PIP_USE_FEATURE=``, as pip's own test harness
    sets it): pip splits such a setting on whitespace, so it is the empty list, the option's default."""
    from pip._internal.commands import create_command

    if str(value).split():
        return False
    option = create_command("install").parser.get_option(f"--{name}")
    return option is not None and option.action == "append"


def constraints_ignored(installer: Any) -> bool:
    """Whether the second pip ignores the constraints it inherits (``PIP_CONSTRAINT``, a ``constraint``
    setting; ``-c`` it is never given): always in pip 26, in pip 25.3 only under
    ``--use-feature=build-constraint``. Build constraints are another matter (checked apart)."""
    return getattr(installer, "_build_constraint_feature_enabled", True) is not False


@dataclass(frozen=True)
class _Pick:
    """One distribution to install: its wheel, and whether a requirement itself asked for it."""

    name: str
    link: Link
    wheel: Path
    requested: bool


def _resolve(finder: PackageFinder, requirements: list[str], downloads: Path, session: Any) -> list[_Pick]:
    from pip._internal.metadata import get_wheel_distribution
    from pip._internal.metadata.base import FilesystemWheel
    from pip._internal.utils.packaging import get_requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name

    specifiers: dict[str, SpecifierSet] = {}
    picks: dict[str, _Pick] = {}
    requested = {canonicalize_name(get_requirement(line).name) for line in requirements}
    todo = [(get_requirement(line), True) for line in requirements]
    while todo:
        req, top = todo.pop(0)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.url or req.extras:
            raise NotPlain(str(req))
        name = canonicalize_name(req.name)
        specifiers[name] = specifiers.get(name, SpecifierSet()) & req.specifier
        link = _best_wheel(finder, name, specifiers[name])
        if name in picks:
            if picks[name].link != link:
                raise NotPlain(f"{name}: another candidate once every specifier is known")
            continue
        wheel = _download(link, downloads, session)
        picks[name] = _Pick(req.name, link, wheel, top and name in requested)
        dist = get_wheel_distribution(FilesystemWheel(str(wheel)), name)
        todo.extend((dependency, False) for dependency in dist.iter_dependencies())
    for name, pick in picks.items():  # each pick is still the best under every specifier that asked for it
        if _best_wheel(finder, name, specifiers[name]) != pick.link:
            raise NotPlain(name)
    return list(picks.values())


def _best_wheel(finder: PackageFinder, name: str, specifier: Any) -> Link:
    best = finder.find_best_candidate(name, specifier).best_candidate
    if best is None or not best.link.is_wheel:
        raise NotPlain(f"{name}: no wheel to install")
    return best.link


def _download(link: Link, downloads: Path, session: Any) -> Path:
    """The wheel file of ``link``: a local one in place, else downloaded; checked against the index's hash."""
    from pip._internal.utils.hashes import Hashes

    if link.is_file:
        path = Path(link.file_path)
    else:
        location = tempfile.mkdtemp(dir=downloads)  # one each: two wheels may share a file name
        path = Path(_downloader(session)(link, location)[0])
    if link.hash_name and link.hash:
        Hashes({link.hash_name: [link.hash]}).check_against_path(str(path))
    return path


def _downloader(session: Any) -> Any:
    """pip's downloader, without a progress bar (pip 25.3's is given the resume retries, pip 26's reads
    them from the session)."""
    import inspect

    from pip._internal.network.download import Downloader

    if "resume_retries" in inspect.signature(Downloader.__init__).parameters:
        return Downloader(session, "off", 0)
    return Downloader(session, "off")


def _install_all(picks: list[_Pick], prefix: str) -> None:
    import inspect

    from pip._internal.locations import get_scheme
    from pip._internal.operations.install.wheel import install_wheel

    takes_executable = "script_executable" in inspect.signature(install_wheel).parameters
    for pick in picks:
        scheme = get_scheme(pick.name, user=False, home=None, root=None, isolated=False, prefix=prefix)
        extra: dict[str, Any] = {"script_executable": None} if takes_executable else {}
        install_wheel(
            pick.name, str(pick.wheel), scheme=scheme, req_description=pick.name, pycompile=False,
            warn_script_location=False, direct_url=None, requested=pick.requested, **extra,
        )
