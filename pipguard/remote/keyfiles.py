"""Ed25519 keys in the PEM files ``openssl`` writes, signatures by pyca/cryptography, and writer ids.

- a private key: ``openssl genpkey -algorithm ed25519`` (PKCS#8: ``-----BEGIN PRIVATE KEY-----``);
- a public key: ``openssl pkey -in key.pem -pubout`` (``-----BEGIN PUBLIC KEY-----``); a verify key file
  may hold several, one block each (a team's writers, or the old and the new key while rotating).

Only the splitting of a file into its PEM blocks is done here (cryptography loads one key per call); every
block is decoded, checked and used by cryptography. An encrypted private key is refused with a message
saying how to decrypt it; any other block, or a key of another algorithm, is refused as well: a key file
is read strictly or not at all.

A public key of small order is refused. OpenSSL accepts one, and a signature by it proves nothing: for the
identity point, ``R = identity, S = 0`` verifies for every message (tests/unit/test_remote_signing.py).
The encodings refused are those of the eight points of order dividing 8, canonical or not (y and y + p
where that fits in 255 bits; either sign bit where x = 0).

A writer id names a writer's manifests on the remote store. It is derived from the public key alone, so a
reader computes the ids of the writers it trusts without any listing from the server.

This module imports cryptography at its top: config.py imports it only when it loads keys, so a
cryptography that does not import (under a target interpreter pipguard's build of it does not fit) switches
the remote off with one warning instead of breaking anything else.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipguard.errors import PipguardError

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
SMALL_ORDER = frozenset(
    bytes.fromhex(encoding)
    for encoding in (
        "0000000000000000000000000000000000000000000000000000000000000000",  # (+-sqrt(-1), 0): order 4
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000000",  # (0, 1): the identity
        "0100000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # (0, -1): order 2
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p: order 4, not canonical
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1: the identity again
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)


class KeyFileError(PipguardError):
    """A key file that cannot be read or is not an ed25519 key of the expected kind."""


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # the 32-byte encoding

    @property
    def writer_id(self) -> str:
        """``ed25519-`` and 128 bits of the key's sha256: a file name on the store, the same for everyone."""
        return "ed25519-" + hashlib.sha256(self.raw).hexdigest()[:32]

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    key: Ed25519PrivateKey = field(repr=False, compare=False)
    public: PublicKey

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def private_key(key: Ed25519PrivateKey) -> PrivateKey:
    """A signing key and the public key readers verify it with."""
    return PrivateKey(key, public_key(key.public_key()))


def public_key(key: Ed25519PublicKey) -> PublicKey:
    """The public key, unless it is one of small order (whose signatures prove nothing)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if raw in SMALL_ORDER:
        raise KeyFileError("a public key of small order, which would verify forged signatures")
    return PublicKey(raw)


def _blocks(path: Path) -> list[tuple[str, bytes]]:
    """(label, the whole block) of each PEM block in ``path``."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {path.name}: {getattr(exc, 'strerror', None) or exc}") from None
    return [(match.group(1), match.group(0).encode("ascii")) for match in _PEM_BLOCK.finditer(text)]


def _refusal(path: Path, exc: Exception) -> KeyFileError:
    """cryptography's complaint as one line (its messages can span several)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return KeyFileError(f"{path.name}: not a readable ed25519 key ({first})")


def load_private(path: Path) -> PrivateKey:
    """The signing key in ``path`` (an unencrypted PKCS#8 PEM file, as openssl genpkey writes it)."""
    blocks = _blocks(path)
    labels = [label for label, _block in blocks]
    if "ENCRYPTED PRIVATE KEY" in labels:
        raise KeyFileError(f"{path.name} is encrypted; decrypt it with openssl pkey -in KEY -out PLAIN")
    if labels != ["PRIVATE KEY"]:
        raise KeyFileError(f"{path.name} holds {', '.join(labels) or 'no PEM block'}, not one PRIVATE KEY block")
    try:
        key = serialization.load_pem_private_key(blocks[0][1], password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _refusal(path, exc) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path.name} holds a {type(key).__name__}, not an ed25519 key")
    return private_key(key)


def load_public(path: Path) -> list[PublicKey]:
    """Every public key in ``path`` (one or more PUBLIC KEY blocks, as openssl pkey -pubout writes them)."""
    blocks = _blocks(path)
    if not blocks:
        raise KeyFileError(f"{path.name} holds no PUBLIC KEY block")
    keys = []
    for label, block in blocks:
        if label != "PUBLIC KEY":
            raise KeyFileError(f"{path.name} holds a {label} block; a verify key file holds PUBLIC KEY blocks only")
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise _refusal(path, exc) from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path.name} holds a {type(key).__name__}, not an ed25519 key")
        try:
            keys.append(public_key(key))
        except KeyFileError as exc:
            raise KeyFileError(f"{path.name}: {exc}") from None
    return keys
