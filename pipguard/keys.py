"""Cache and lock keys: what identifies a source, and everything that changes the wheel built from it.

pip's own key (URL, link hash, subdirectory, interpreter name and version) misses config settings,
build isolation, build constraints, compiler variables, ABI flags and libc. This key has them all, and
identifies an sdist by the sha256 of its content rather than its URL. A build without isolation also keys
on the distributions installed in the target, since the build imports them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

LAYOUT = 1

# Variables that reach compilers and build backends and change what they produce.
BUILD_ENV_ALLOWLIST = (
    "AR",
    "ARCHFLAGS",
    "ARFLAGS",
    "CC",
    "CFLAGS",
    "CMAKE_ARGS",
    "CMAKE_GENERATOR",
    "CPP",
    "CPPFLAGS",
    "CXX",
    "CXXFLAGS",
    "FC",
    "FFLAGS",
    "LDFLAGS",
    "LDSHARED",
    "MACOSX_DEPLOYMENT_TARGET",
    "NPY_BLAS_ORDER",
    "NPY_LAPACK_ORDER",
    "PKG_CONFIG_PATH",
    "RUSTFLAGS",
    "_PYTHON_HOST_PLATFORM",
)

# Families of variables that build backends read (setuptools-scm's per-project pretend versions,
# hatch, pdm, scikit-build-core, maturin and cargo, numpy's build, pkg-config): any variable whose name
# starts with one of these is part of the key.
BUILD_ENV_PREFIXES = (
    "SETUPTOOLS_SCM_",
    "SETUPTOOLS_",
    "HATCH_BUILD_",
    "PDM_BUILD_",
    "SKBUILD_",
    "CMAKE_",
    "MATURIN_",
    "CARGO_BUILD_",
    "NPY_",
    "PKG_CONFIG",
)


def digest(material: Any) -> str:
    """sha256 of a canonical JSON rendering."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def interpreter() -> dict[str, str]:
    """The running interpreter as far as a built wheel cares (pipguard runs under the target)."""
    from pipguard._pip import most_specific_tag

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        libc = ""
    return {
        "implementation": sys.implementation.name,
        "version": ".".join(map(str, sys.version_info[:2])),
        "abiflags": getattr(sys, "abiflags", ""),
        "gil": str(getattr(sys, "_is_gil_enabled", lambda: True)()),
        "tag": most_specific_tag(),
        "libc": libc,
        "machine": platform.machine(),
    }


def build_environment() -> dict[str, str]:
    """The variables that change what a backend builds (only their hash ever leaves the process)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in BUILD_ENV_ALLOWLIST or name.startswith(BUILD_ENV_PREFIXES)
    }


def installed_distributions() -> list[str]:
    """``name==version`` of every distribution this interpreter sees, sorted.

    A build without isolation imports its backend and build dependencies from the target environment,
    so its wheel is reused only where the same distributions are installed."""
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name

    found = set()
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.add(f"{canonicalize_name(name)}=={dist.version}")
    return sorted(found)


def cache_key(identity: dict[str, Any], options: dict[str, Any]) -> str:
    """The key of a wheel: source identity, build options, interpreter and build environment."""
    return digest(
        {
            "layout": LAYOUT,
            "source": identity,
            "options": options,
            "interpreter": interpreter(),
            "env": build_environment(),
        }
    )


def tree_key(path: Path, subdirectory: str | None) -> dict[str, Any]:
    """A local tree's identity: where it is, never what it holds (its build is never reused later)."""
    return {"kind": "dir", "path": os.path.realpath(path), "sub": subdirectory}


def tree_lock_key(path: Path) -> str:
    """A local tree is locked by its real path: two builds of one tree collide whatever they build."""
    return digest({"layout": LAYOUT, "tree": os.path.realpath(path)})


def environment_lock_key(scope: str) -> str:
    return digest({"layout": LAYOUT, "environment": os.path.realpath(scope)})
