"""The plain types that cross the seam: what pip needs built, in pipguard's terms (no pip objects)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BuildOptions:
    """What decides how a source is built: forwarded to the build child and part of the key.

    ``child_args`` are the options of the pip that builds (index scope as pip's finder has it, format
    control, config settings...). They may carry credentials in index URLs: they reach the child's
    command line, as pip passes them to its own build-dependency installs, and nothing else."""

    child_args: tuple[str, ...]
    config_settings: dict[str, Any]
    build_isolation: bool
    build_constraint_files: tuple[str, ...]
    cache_enabled: bool
    verbosity: int


@dataclass(frozen=True)
class Network:
    """pip's network settings as the command resolved them (``--proxy``, ``--cert``, ``--client-cert``,
    ``--trusted-host``, ``--no-proxy-env``; ``PIP_*`` variables and config included): the remote tier
    talks to its store with them, as pip talks to an index."""

    proxy: str | None = None
    cert: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    no_proxy_env: bool = False


@dataclass
class Source:
    """One source pip needs a wheel for."""

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
    # Set when pip checks this requirement's hashes (hash-checking mode, or ``--hash`` on its line): is
    # an archive with this sha256 one the user allowed? Nothing is built before it says yes.
    sha256_allowed: Callable[[str], bool] | None = field(default=None, repr=False)
    network: Network = field(default_factory=Network, repr=False)
