"""The remote layout and its manifests: what a writer publishes for a key, and what a reader accepts.

Layout under the base URL (plain GET / PUT, so any HTTP or file store serves it)::

    v2/blobs/<sha256 of the wheel>/<wheel file name>   the wheel, content-addressed
    v2/keys/<cache key>/<writer id>.json               one manifest per writer and key

A writer id is ``ed25519-<fingerprint of its public key>`` for a signing writer. Plain HTTP has no
listing, and needs none: a reader that trusts some public keys computes their writer ids and fetches
exactly those manifests. ``anyone.json`` is for readers with no verify key (they trust whoever can write
to the store): every writer, signing or not, puts its manifest there too when the name is free.
So entries of different writers for one key coexist, and one that a reader does not trust is never even
read by it: an untrusted writer that publishes first cannot shadow a trusted one (CVE-2025-36852).

A manifest holds the key, the wheel's file name, size and sha256, when it was made, the writer id and the
signature: no credentials, no local paths, no URLs. The signature covers a domain-separated message of
the key, the sha256, the size and the file name, so a signed manifest cannot be moved to another key or
wheel, and a reader stops reading a blob one byte past the size its writer signed. (``v1``, whose
signatures did not cover the size, is not read: its entries are misses.)
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pipguard.errors import RemoteRejected

if TYPE_CHECKING:
    from pipguard.remote.keyfiles import PrivateKey, PublicKey

FORMAT = "pipguard-remote/2"
LAYOUT = "v2"
ANYONE = "anyone"
MAX_MANIFEST_BYTES = 16 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WHEEL_NAME = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")
T = TypeVar("T")


@dataclass(frozen=True)
class Manifest:
    key: str
    wheel: str
    size: int
    sha256: str
    writer: str

    @property
    def blob_path(self) -> str:
        return blob_path(self.sha256, self.wheel)


def manifest_path(key: str, writer: str) -> str:
    return f"{LAYOUT}/keys/{key}/{writer}.json"


def blob_path(sha256: str, wheel: str) -> str:
    return f"{LAYOUT}/blobs/{sha256}/{wheel}"


def signed_message(key: str, sha256: str, size: int, wheel: str) -> bytes:
    """What a signature covers: the key, the wheel's sha256, size and file name, and what they are for."""
    return f"{FORMAT}\nkey={key}\nsha256={sha256}\nsize={size}\nwheel={wheel}\n".encode()


def render(key: str, wheel: str, size: int, sha256: str, signer: PrivateKey | None) -> tuple[str, bytes]:
    """(writer id, manifest bytes) for a wheel this process built; signed when there is a signing key."""
    writer = signer.public.writer_id if signer else ANYONE
    signature = base64.b64encode(signer.sign(signed_message(key, sha256, size, wheel))).decode() if signer else None
    document = {
        "format": FORMAT,
        "key": key,
        "wheel": wheel,
        "size": size,
        "sha256": sha256,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "writer": writer,
        "signature": signature,
    }
    return writer, json.dumps(document, indent=1, sort_keys=True).encode()


def accept(data: bytes, key: str, trusted: PublicKey | None) -> Manifest:
    """The manifest in ``data`` if it is well-formed, for ``key`` and (when ``trusted`` is given) written
    and signed by that key; otherwise :class:`RemoteRejected` saying why."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RemoteRejected(f"manifest is not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RemoteRejected(f"manifest is not in the {FORMAT} format")
    manifest = Manifest(
        key=_field(document, "key", str),
        wheel=_field(document, "wheel", str),
        size=_field(document, "size", int),
        sha256=_field(document, "sha256", str),
        writer=_field(document, "writer", str),
    )
    if manifest.key != key:
        raise RemoteRejected("manifest belongs to another key")
    if trusted is not None and manifest.writer != trusted.writer_id:
        raise RemoteRejected(f"manifest is by {manifest.writer}, not {trusted.writer_id}")
    if not _HEX64.fullmatch(manifest.sha256) or not _WHEEL_NAME.fullmatch(manifest.wheel) or manifest.size < 0:
        raise RemoteRejected("manifest names a bad sha256, wheel name or size")
    if trusted is not None:
        _check_signature(document.get("signature"), manifest, trusted)
    return manifest


def _field(document: dict[str, object], name: str, kind: type[T]) -> T:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RemoteRejected(f"manifest field {name!r} is missing or not a {kind.__name__}")
    return value


def _check_signature(encoded: object, manifest: Manifest, trusted: PublicKey) -> None:
    if not isinstance(encoded, str):
        raise RemoteRejected("manifest is not signed")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteRejected("manifest signature is not base64") from None
    if not trusted.verify(signed_message(manifest.key, manifest.sha256, manifest.size, manifest.wheel), signature):
        raise RemoteRejected(f"manifest signature does not verify with {trusted.writer_id}")
