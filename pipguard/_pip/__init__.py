"""Everything pipguard knows about pip's internals, and the pip versions it knows them for.

The supported range is written once, as the pip line of ``requirements.txt`` beside this file: pyproject.toml
takes pipguard's dependencies from there, bin/test tests the two ends it names, and :func:`is_supported`
gates the seam at run time. Outside the range, or when a patch point is missing, pipguard warns once and
runs plain pip.

Modules: ``patches`` (the table of patch points, attach and detach), ``describe`` (pip's objects turned
into pipguard's plain ``Source``), ``failure`` (a failed build reported in pip's own words),
``isolation`` and ``quick_install`` (build environments kept, and installed without a second pip where
that is plainly the same), ``agent`` and ``tls`` (pip's header and TLS context, worked out while pip
parses), ``metadata`` and ``warm_hooks`` (an sdist's metadata from its build, in an interpreter started
while the hook before it ran). This module
holds the small read-only helpers the rest of pipguard uses (version, parser, interpreter, tags, main).
"""

from __future__ import annotations

import os
from optparse import Values

REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")


def _supported() -> str:
    with open(REQUIREMENTS, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("pip") and line[3:4] in "<>=!~":
                return line[3:].strip()
    raise LookupError(f"no pip line in {REQUIREMENTS}")


SUPPORTED = _supported()
# Set by pip (and pipguard) in a process that already runs under the target interpreter.
RUNNER_ENV = "_PIP_RUNNING_IN_SUBPROCESS"


def pip_version() -> str:
    import pip

    return pip.__version__


def is_supported() -> bool:
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(SUPPORTED).contains(pip_version(), prereleases=True)


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


def path_to_url(path: str) -> str:
    from pip._internal.utils.urls import path_to_url as to_url

    return to_url(path)


def most_specific_tag() -> str:
    """The interpreter's best wheel tag (platform, glibc or musl, ABI), from the tags pip itself uses."""
    from pip._vendor.packaging import tags

    return str(next(iter(tags.sys_tags()), ""))


def warm_for_children() -> None:
    """In the fork server (forkserver.py), once: what each of its ``pip wheel`` children would do first, in
    the same way, before it forks them. pip makes its TLS context once per process and keeps it
    (``index_command._create_truststore_ssl_context`` is cached): loading the CA certificates is 40 to 60 ms
    of CPU that every child would spend again before its first request."""
    from pip._internal.cli.index_command import _create_truststore_ssl_context

    _create_truststore_ssl_context()


def main(args: list[str]) -> int:
    """pip's own main, in this process."""
    from pip._internal.cli.main import main as pip_main

    return pip_main(args)
