"""The second tier: fetch a verified wheel for a key from the remote store, upload one built here.

The guard calls :meth:`Tier.fetch` on a local miss, under the local lock, before building, and
:meth:`Tier.upload` after a local build is published. Neither ever raises: the worst a remote can cost is
a local build. The first transport error, timeout or 5xx switches the remote off for the rest of the
process (one warning); a refused upload stops uploads (one warning); an entry that fails a check is a
miss (one warning), and is never installed.

What a fetched wheel must be before the guard publishes it into the local cache, signed or not (a store
anyone can write to must not be able to put a wheel of another project, or one that writes outside its
install directory, under this key): the size and sha256 its manifest names (at most size + 1 bytes are
read), a complete zip with a RECORD, members with no absolute or ``..`` path, one ``.dist-info`` whose
name, version and METADATA agree with the file name, that name and version those of the source the key
was computed for (where pip knows them), and a tag this interpreter accepts.

When the store is not asked at all, for one source: pip checks its hashes (``--require-hashes``, or a
``--hash`` on its line) and no verify key is set, since a user who pinned the source's hashes has not
vouched for whoever can write to the store; or the command's format control says this source is built
here (``--no-binary :all:`` or its name, and no ``--only-binary`` that overrides it, as pip decides).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipguard.display import warn
from pipguard.errors import CacheUnusable, RemoteRefused, RemoteRejected, RemoteUnavailable
from pipguard.keys import file_sha256
from pipguard.remote.config import RemoteConfig
from pipguard.remote.manifest import ANYONE, MAX_MANIFEST_BYTES, Manifest, accept, blob_path, manifest_path, render
from pipguard.remote.transport import Transport
from pipguard.sources import Source
from pipguard.store import check_wheel

if TYPE_CHECKING:
    from packaging.version import Version

    from pipguard.remote.keyfiles import PublicKey

COUNTS = ("hit", "miss", "rejected", "error", "uploaded", "upload failed")


class Tier:
    def __init__(self, config: RemoteConfig, transport: Transport, stopping: threading.Event) -> None:
        self.config = config
        self.transport = transport
        self.stopping = stopping  # the guard's: set when the command is interrupted
        self.counts: Counter[str] = Counter()
        self.off = False
        self._switching = threading.Lock()
        self.uploads_off = not config.write

    # --- reading ---------------------------------------------------------------------------------

    def fetch(self, key: str, source: Source, directory: Path, what: str) -> Path | None:
        """A verified wheel for ``source``'s ``key``, downloaded into ``directory``; None: build it here."""
        if self.off or not self._may_fetch(source):
            return None
        rejected = self.counts["rejected"]
        try:
            for trusted in self._trusted():
                wheel = self._fetch_from(key, source, trusted, directory, what)
                if wheel is not None:
                    self.counts["hit"] += 1
                    return wheel
            if self.counts["rejected"] == rejected:  # each lookup counts once: a hit, a miss or a rejection
                self.counts["miss"] += 1
        except RemoteUnavailable as exc:
            self.switch_off(exc)
        return None

    def _trusted(self) -> list[PublicKey | None]:
        """The writers whose manifests this reader reads: its verify keys, or anyone who can write."""
        return list(self.config.verify_keys) or [None]

    def _may_fetch(self, source: Source) -> bool:
        """Whether the store may supply this source's wheel at all (see the module's docstring)."""
        if source.sha256_allowed is not None and not self.config.verify_keys:
            return False
        return not built_here_only(source)

    def _fetch_from(self, key: str, source: Source, trusted: PublicKey | None, directory: Path, what: str) -> Path | None:
        writer = trusted.writer_id if trusted else ANYONE
        try:
            data = self.read_manifest(manifest_path(key, writer))
            return None if data is None else self._download(accept(data, key, trusted), source, directory)
        except RemoteRejected as exc:
            self.counts["rejected"] += 1
            warn(f"not using the remote cache's wheel for {what} ({writer}): {exc}")
            return None

    def read_manifest(self, path: str) -> bytes | None:
        """The manifest at ``path`` (None: there is none); ``RemoteRejected`` if it cannot be one."""
        data = bytearray()
        found = self.transport.get(path, data.extend, MAX_MANIFEST_BYTES)
        return bytes(data) if found else None

    def _download(self, manifest: Manifest, source: Source, directory: Path) -> Path:
        wheel = directory / manifest.wheel
        digest = hashlib.sha256()
        with open(wheel, "wb") as out:

            def sink(chunk: bytes) -> None:
                digest.update(chunk)
                out.write(chunk)

            found = self.transport.get(manifest.blob_path, sink, manifest.size)
        if not found:
            raise RemoteRejected("its wheel is missing from the store")
        if wheel.stat().st_size != manifest.size or digest.hexdigest() != manifest.sha256:
            raise RemoteRejected("the wheel does not match its manifest's size and sha256")
        try:
            check_wheel(wheel)
        except CacheUnusable as exc:
            raise RemoteRejected(str(exc)) from None
        check_identity(wheel, source)
        if not _installable(manifest.wheel):
            raise RemoteRejected(f"{manifest.wheel} has no tag this interpreter accepts")
        return wheel

    # --- writing ---------------------------------------------------------------------------------

    def upload(self, key: str, wheel: Path) -> None:
        """Upload a wheel built and published here: the blob first, the manifests last (the commit point)."""
        if self.off or self.uploads_off:
            return
        try:
            sha256, size = file_sha256(wheel), wheel.stat().st_size
            self._put_blob(blob_path(sha256, wheel.name), wheel, sha256, size)
            _writer, body = render(key, wheel.name, size, sha256, self.config.signing_key)
            signer = self.config.signing_key.public if self.config.signing_key else None
            if signer is not None:
                self._put_manifest(key, signer, body)
            self._put_manifest(key, None, body)
            self.counts["uploaded"] += 1
        except RemoteRefused as exc:
            self.counts["upload failed"] += 1
            self.stop_uploads(exc)
        except RemoteUnavailable as exc:
            self.counts["upload failed"] += 1
            self.switch_off(exc)
        except OSError as exc:
            self.counts["upload failed"] += 1
            warn(f"could not upload {wheel.name} to the remote cache: {exc.strerror or exc}")

    def _put_blob(self, path: str, wheel: Path, sha256: str, size: int) -> None:
        """Never overwrite a good blob; replace one whose content does not match its address."""
        digest = hashlib.sha256()
        try:
            there = self.transport.get(path, digest.update, size)
        except RemoteRejected:
            there = True  # larger than it should be: not ours
        if there and digest.hexdigest() == sha256:
            return
        self.transport.put(path, wheel, replace=there)

    def _put_manifest(self, key: str, signer: PublicKey | None, body: bytes) -> None:
        """Never overwrite a manifest, except one in this signer's name that this signer did not sign."""
        path = manifest_path(key, signer.writer_id if signer else ANYONE)
        try:
            existing = self.read_manifest(path)
        except RemoteRejected:
            existing = b""  # too large to be a manifest, or not a file: not one this writer signed
        if existing is not None:
            if signer is None:
                return
            try:
                accept(existing, key, signer)
                return
            except RemoteRejected as exc:
                warn(f"replacing a forged remote manifest in this writer's name for {key[:12]} ({exc})")
        self.transport.put(path, body, replace=existing is not None)

    # --- state -----------------------------------------------------------------------------------

    def switch_off(self, exc: BaseException) -> None:
        """The first transport error, timeout or 5xx: one warning, then no remote for this process (no
        warning when the command is being stopped: that is why its request ended)."""
        with self._switching:  # builds ahead ask from several threads: the first to fail warns
            was_off, self.off = self.off, True
            if self.stopping.is_set():
                return
            self.counts["error"] += 1
        if not was_off:
            warn(f"the remote cache {self.config.display} is unavailable ({exc}); going on without it")

    def stop_uploads(self, exc: BaseException) -> None:
        """A refused upload: one warning, then no uploads for this process (builds ahead upload from
        several threads, and each of them may be refused before any has stopped the others)."""
        with self._switching:
            was_off, self.uploads_off = self.uploads_off, True
        if not was_off:
            warn(f"the remote cache {self.config.display} refused an upload ({exc}); not uploading again")

    def summary(self) -> str:
        counted = ", ".join(f"{self.counts[name]} {name}" for name in COUNTS)
        return f"remote cache {self.config.display}: {counted}"


def built_here_only(source: Source) -> bool:
    """Whether the command's format control says this source's wheel is built here, never taken ready-made.

    Read from the ``--no-binary`` / ``--only-binary`` options the build child gets (describe.finder_args),
    decided as pip's ``FormatControl.get_allowed_formats`` does. A source of unknown name under a
    ``--no-binary`` that names projects counts as built here: the store is never asked when in doubt."""
    from packaging.utils import canonicalize_name

    formats: dict[str, set[str]] = {"--no-binary": set(), "--only-binary": set()}
    args = source.options.child_args
    for flag, value in zip(args, args[1:]):
        if flag in formats:
            formats[flag] |= set(value.split(","))
    no_binary, only_binary = formats["--no-binary"] - {":none:"}, formats["--only-binary"] - {":none:"}
    if source.name is None:
        return bool(no_binary)
    name = canonicalize_name(source.name)
    if name in only_binary:
        return False
    return name in no_binary or (":all:" not in only_binary and ":all:" in no_binary)


def check_identity(wheel: Path, source: Source) -> None:
    """The wheel is ``source``'s, as far as pip knows it, and installs only inside its own directories."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    try:
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename:
        raise RemoteRejected(f"{wheel.name} is not a wheel file name") from None
    if source.name and canonicalize_name(source.name) != name:
        raise RemoteRejected(f"{wheel.name} is not a wheel of {source.name}")
    if source.version and _version(source.version) != version:
        raise RemoteRejected(f"{wheel.name} is not a wheel of {source.name} {source.version}")
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        outside = [m for m in members if "\\" in m or PurePosixPath(m).is_absolute() or ".." in PurePosixPath(m).parts]
        if outside:
            raise RemoteRejected(f"{wheel.name} has a member outside its install directory: {outside[0]!r}")
        info = {m.split("/", 1)[0] for m in members if m.split("/", 1)[0].endswith(".dist-info")}
        if len(info) != 1 or not _names_it(info.pop(), archive, name, version):
            raise RemoteRejected(f"{wheel.name}: its .dist-info does not match its file name")


def _names_it(info: str, archive: zipfile.ZipFile, name: str, version: Version) -> bool:
    """Whether the dist-info directory ``info`` and its METADATA name ``name`` at ``version``."""
    from email.parser import BytesHeaderParser

    from packaging.utils import canonicalize_name

    stem, _dash, info_version = info[: -len(".dist-info")].rpartition("-")
    try:
        metadata = BytesHeaderParser().parsebytes(archive.read(f"{info}/METADATA"))
    except KeyError:
        return False
    return (
        canonicalize_name(stem) == name
        and canonicalize_name(str(metadata.get("Name", ""))) == name
        and _version(info_version) == version
        and _version(str(metadata.get("Version", ""))) == version
    )


def _version(text: str) -> Version | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


@functools.cache
def _accepted_tags() -> frozenset[str]:
    from packaging.tags import sys_tags

    return frozenset(str(tag) for tag in sys_tags())


def _installable(wheel_name: str) -> bool:
    """Whether one of the wheel's tags is one this interpreter accepts (pipguard runs under the target)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(wheel_name)[3]
    except InvalidWheelFilename:
        return False
    return any(str(tag) in _accepted_tags() for tag in tags)
