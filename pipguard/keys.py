"""Cache and lock keys: what identifies a source, and everything that changes the wheel built from it.

pip's own key (URL, link hash, subdirectory, interpreter name and version) misses config settings,
build isolation, build constraints, compiler variables, ABI flags and libc. This key has them all, and
identifies an sdist by the sha256 of its content rather than its URL.
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
    "SETUPTOOLS_SCM_PRETEND_VERSION",
    "_PYTHON_HOST_PLATFORM",
)

# Directories a build writes into a source tree, or that never hold sources: not part of its identity.
_SKIPPED_DIRS = frozenset({"__pycache__", "build", "dist"})


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
    from pipguard.pipseam import most_specific_tag

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
    return {name: os.environ[name] for name in BUILD_ENV_ALLOWLIST if name in os.environ}


def tree_fingerprint(root: Path) -> str:
    """Content fingerprint of a local source tree, ignoring what builds and tools write into it."""
    h = hashlib.sha256()
    for directory, subdirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".")
            and not d.endswith(".egg-info")
            and not (d in _SKIPPED_DIRS and (rel_dir == "." or d == "__pycache__"))
            and not os.path.islink(os.path.join(directory, d))
        )
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(directory, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(path):
                h.update(b"link:" + os.readlink(path).encode("utf-8", "surrogateescape"))
            else:
                h.update(file_sha256(Path(path)).encode())
            h.update(b"\n")
    return h.hexdigest()


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


def tree_lock_key(path: Path) -> str:
    """A local tree is locked by its real path: two builds of one tree collide whatever they build."""
    return digest({"layout": LAYOUT, "tree": os.path.realpath(path)})


def environment_lock_key(scope: str) -> str:
    return digest({"layout": LAYOUT, "environment": os.path.realpath(scope)})
