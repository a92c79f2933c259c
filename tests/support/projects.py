"""Generate fixture projects built by tests/fixtures/backend/fixture_backend.py.

The generator reuses the backend's own code (package sources, sdist writer),
so the trees it writes and what the backend builds can never drift apart.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType

BACKEND_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "backend" / "fixture_backend.py"

PYPROJECT = """\
[build-system]
requires = {requires}
build-backend = "fixture_backend"
"""
IN_TREE = 'backend-path = ["_backend"]\n'
# The fixture backend as a distribution of its own, for projects whose backend comes from their build
# environment (as setuptools does) rather than from their tree.
BACKEND_DIST = "fixture-backend"


@lru_cache(maxsize=None)
def backend() -> ModuleType:
    """The fixture backend, imported from its file (it is not on sys.path)."""
    spec = importlib.util.spec_from_file_location("_pipguard_fixture_backend", BACKEND_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalized(name: str) -> str:
    """PEP 503 normalized project name."""
    return backend().normalized(name)


def make_project(root: Path, name: str, version: str = "1.0",
                 dependencies: Sequence[str] = (), modules: int = 1,
                 build_requires: Sequence[str] = (), backend_in_tree: bool = True) -> Path:
    """Write a buildable source tree at root/<name>-<version>/ and return it.

    build_requires go to pyproject's ``build-system.requires``: pip installs them into the isolated build
    environment (the backend itself stays in-tree and needs none of them), so a fixture project that exists
    only as an sdist there is built from source inside another project's build; the hook log says which
    of them each hook sees. ``backend_in_tree=False``: the backend is the build requirement
    ``fixture-backend`` (:func:`make_backend_wheel`), installed into the build environment."""
    project = Path(root) / f"{name}-{version}"
    project.mkdir(parents=True, exist_ok=False)
    meta = {"name": name, "version": version,
            "dependencies": list(dependencies), "modules": modules}
    if build_requires:
        meta["build_requires"] = list(build_requires)
    (project / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    requires = list(build_requires) if backend_in_tree else [BACKEND_DIST, *build_requires]
    (project / "pyproject.toml").write_text(PYPROJECT.format(requires=json.dumps(requires)) + (IN_TREE if backend_in_tree else ""))
    if backend_in_tree:
        (project / "_backend").mkdir()
        shutil.copyfile(BACKEND_FILE, project / "_backend" / "fixture_backend.py")
    for rel, data in backend().package_files(meta).items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return project


def make_sdist(project_dir: Path, dist_dir: Path) -> Path:
    """Build a reproducible sdist of project_dir into dist_dir; equal trees give equal bytes."""
    dist_dir = Path(dist_dir)
    dist_dir.mkdir(parents=True, exist_ok=True)
    return dist_dir / backend().write_sdist(project_dir, dist_dir)


def make_wheel(dist_dir: Path, name: str, version: str = "1.0") -> Path:
    """The wheel the backend would build for a fresh project ``name`` ``version``, without a build."""
    dist_dir = Path(dist_dir)
    dist_dir.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "version": version, "dependencies": [], "modules": 1}
    return dist_dir / backend()._write_wheel(str(dist_dir), meta, backend().package_files(meta))


def make_backend_wheel(dist_dir: Path) -> Path:
    """The wheel of ``fixture-backend``: the fixture backend as a module a build environment imports."""
    dist_dir = Path(dist_dir)
    dist_dir.mkdir(parents=True, exist_ok=True)
    meta = {"name": BACKEND_DIST, "version": "1.0", "dependencies": [], "modules": 1}
    return dist_dir / backend()._write_wheel(str(dist_dir), meta, {"fixture_backend.py": BACKEND_FILE.read_bytes()})
