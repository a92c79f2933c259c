"""Wheels made in-process with ``zipfile``, for tests of the store that must not run a build."""

from __future__ import annotations

import zipfile
from pathlib import Path


def make_wheel(directory: Path, name: str = "demo", version: str = "1.0", record: bool = True) -> Path:
    """A minimal pure wheel in ``directory``: a package and a ``name-version.dist-info`` with a RECORD.

    ``record=False`` leaves the RECORD out, which the store must refuse: pip could not install it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n" * 200)  # big enough to truncate
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        if record:
            archive.writestr(f"{info}/RECORD", f"{name}/__init__.py,,\n{info}/METADATA,,\n{info}/RECORD,,\n")
    return path
