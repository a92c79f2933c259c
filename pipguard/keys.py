"""Cache and lock keys: what identifies a source, and everything that changes the wheel built from it.

pip's own key (URL, link hash, subdirectory, interpreter name and version) misses config settings,
build isolation, build constraints, compiler variables, ABI flags and libc. This key has them all, and
identifies an sdist by the sha256 of its content rather than its URL. A build without isolation also keys
on the distributions installed in the target, since the build imports them. And the toolchain a build
would really use: the C and C++ compilers (``$CC``/``$CXX``, else ``cc``/``c++`` on PATH) by resolved path
and ``--version`` line, so a wheel built by one compiler is not reused on a machine (or a PATH) that would
have built it with another. They are asked once per process, and only when a key is computed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

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
    "LDCXXSHARED",
    "MACOSX_DEPLOYMENT_TARGET",
    "SDKROOT",
    "NPY_BLAS_ORDER",
    "NPY_LAPACK_ORDER",
    "PKG_CONFIG_PATH",
    "RUSTFLAGS",
    "RUSTC",
    "_PYTHON_HOST_PLATFORM",
    # Where compilers and linkers find headers and libraries: another directory, another library built in.
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "LIBRARY_PATH",
    "LD_LIBRARY_PATH",
    "LD_RUN_PATH",
    # GPU toolchains: which CUDA or ROCm, for which architectures.
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDACXX",
    "NVCC_PREPEND_FLAGS",
    "NVCC_APPEND_FLAGS",
    "TORCH_CUDA_ARCH_LIST",
    "ROCM_PATH",
    "PYTORCH_ROCM_ARCH",
)

# The compilers a build would use: the variable that names one, and what build tools run without it.
COMPILERS = (("CC", "cc"), ("CXX", "c++"))
PROBE_SECONDS = 10.0

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
    with open(path, "rb") as handle:
        return stream_sha256(handle)


def stream_sha256(handle: BinaryIO) -> str:
    """sha256 of what is left to read in ``handle``, read in blocks (wheels can be large)."""
    h = hashlib.sha256()
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


def toolchain() -> dict[str, str]:
    """Each compiler a build would run, by resolved path and the first line of its ``--version``. Builds
    ahead key their sources side by side: one probes, the others wait for its answer."""
    path = os.environ.get("PATH", os.defpath)
    commands = {variable: os.environ.get(variable) or default for variable, default in COMPILERS}
    with _probing:
        return {variable: _compiler(command, path) for variable, command in commands.items()}


_probing = threading.Lock()


@functools.cache
def _compiler(command: str, path: str) -> str:
    """``<real path>: <first --version line>`` of the compiler ``command`` (as ``$CC`` holds it: perhaps a
    wrapper and flags, ``ccache gcc -m32``) finds on ``path``; once per process for each."""
    try:
        words = shlex.split(command)
    except ValueError:
        return f"unparsable: {command}"
    found = shutil.which(words[0], path=path) if words else None
    if found is None:
        return "not found"
    resolved = os.path.realpath(found)
    try:
        probe = subprocess.run(
            [resolved, *words[1:], "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_SECONDS,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{resolved}: {type(exc).__name__}"
    lines = (probe.stdout or probe.stderr).decode(errors="replace").splitlines()
    return f"{resolved}: {lines[0].strip() if lines else f'exit {probe.returncode}'}"


def cache_key(identity: dict[str, Any], options: dict[str, Any]) -> str:
    """The key of a wheel: source identity, build options, interpreter, build environment and toolchain."""
    return _built_here({"source": identity, "options": options})


def _built_here(material: dict[str, Any]) -> str:
    """The key of something built on this interpreter: ``material`` with the layout, the interpreter, the
    variables backends read and the compilers they would run."""
    return digest(
        {
            "layout": LAYOUT,
            **material,
            "interpreter": interpreter(),
            "env": build_environment(),
            "toolchain": toolchain(),
        }
    )


def build_env_key(material: dict[str, Any]) -> str:
    """The key of an isolated build environment: what pip's install into it is given (``material``, from
    ``_pip/isolation.py``: requirements, the finder's options, pip's settings), the interpreter, and what a
    build requirement built from source inside that install would be built with."""
    return _built_here({"build_env": material})


def tree_key(path: Path, subdirectory: str | None) -> dict[str, Any]:
    """A local tree's identity: where it is, never what it holds (its build is never reused later)."""
    return {"kind": "dir", "path": os.path.realpath(path), "sub": subdirectory}


def tree_lock_key(path: Path) -> str:
    """A local tree is locked by its real path: two builds of one tree collide whatever they build."""
    return digest({"layout": LAYOUT, "tree": os.path.realpath(path)})


def environment_lock_key(scope: str) -> str:
    return digest({"layout": LAYOUT, "environment": os.path.realpath(scope)})
