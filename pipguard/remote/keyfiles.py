"""Ed25519 keys in the PEM files ``openssl`` writes, and the writer ids derived from them.

- a private key: ``openssl genpkey -algorithm ed25519`` (PKCS#8, RFC 8410: ``-----BEGIN PRIVATE KEY-----``);
- a public key: ``openssl pkey -in key.pem -pubout`` (SubjectPublicKeyInfo: ``-----BEGIN PUBLIC KEY-----``).

Only the few DER shapes RFC 8410 defines are read (a minimal TLV walker, no ASN.1 library: pipguard's
dependencies are fixed). An encrypted private key is refused with a message saying how to decrypt it.

A writer id names a writer's manifests on the remote store. It is derived from the public key alone, so a
reader computes the ids of the writers it trusts without any listing from the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pipguard.errors import PipguardError
from pipguard.remote import ed25519

ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112, DER-encoded with its tag and length
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


class KeyFileError(PipguardError):
    """A key file that cannot be read or is not an ed25519 key of the expected kind."""


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # 32 bytes

    @property
    def writer_id(self) -> str:
        """``ed25519-`` and 128 bits of the key's sha256: a file name on the store, the same for everyone."""
        return "ed25519-" + hashlib.sha256(self.raw).hexdigest()[:32]

    def verify(self, message: bytes, signature: bytes) -> bool:
        return ed25519.verify(self.raw, message, signature)


@dataclass(frozen=True)
class PrivateKey:
    raw: bytes  # 32 bytes: the RFC 8032 secret
    public: PublicKey

    def sign(self, message: bytes) -> bytes:
        return ed25519.sign(self.raw, message)


def _tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after it) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise KeyFileError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or offset + count > len(data):
            raise KeyFileError("bad DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise KeyFileError("truncated DER")
    return tag, data[offset:end], end


def _children(content: bytes) -> list[tuple[int, bytes]]:
    found, offset = [], 0
    while offset < len(content):
        tag, value, offset = _tlv(content, offset)
        found.append((tag, value))
    return found


def _sequence(der: bytes) -> list[tuple[int, bytes]]:
    tag, content, end = _tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise KeyFileError("not a DER SEQUENCE")
    return _children(content)


def _is_ed25519(algorithm: tuple[int, bytes]) -> bool:
    tag, content = algorithm
    return tag == 0x30 and content == ED25519_OID


def parse_private_der(der: bytes) -> PrivateKey:
    """PKCS#8 / OneAsymmetricKey (RFC 8410 section 7): version, algorithm, OCTET STRING { OCTET STRING }."""
    items = _sequence(der)
    if len(items) < 3 or items[0] not in ((0x02, b"\x00"), (0x02, b"\x01")):
        raise KeyFileError("not a PKCS#8 private key")
    if not _is_ed25519(items[1]) or items[2][0] != 0x04:
        raise KeyFileError("not an ed25519 private key")
    tag, secret, end = _tlv(items[2][1], 0)
    if tag != 0x04 or len(secret) != ed25519.SECRET_SIZE or end != len(items[2][1]):
        raise KeyFileError("not an ed25519 private key")
    return PrivateKey(secret, PublicKey(ed25519.public_key(secret)))


def parse_public_der(der: bytes) -> PublicKey:
    """SubjectPublicKeyInfo (RFC 8410 section 4): algorithm, BIT STRING with no unused bits."""
    items = _sequence(der)
    if len(items) != 2 or not _is_ed25519(items[0]):
        raise KeyFileError("not an ed25519 public key")
    tag, bits = items[1]
    if tag != 0x03 or len(bits) != 1 + ed25519.PUBLIC_SIZE or bits[0] != 0:
        raise KeyFileError("not an ed25519 public key")
    return PublicKey(bits[1:])


def _blocks(text: str) -> list[tuple[str, bytes]]:
    blocks = []
    for match in _PEM_BLOCK.finditer(text):
        try:
            blocks.append((match.group(1), base64.b64decode("".join(match.group(2).split()), validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise KeyFileError(f"bad PEM ({exc})") from exc
    return blocks


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {path.name}: {getattr(exc, 'strerror', None) or exc}") from exc


def load_private(path: Path) -> PrivateKey:
    """The signing key in ``path`` (an unencrypted PKCS#8 PEM file, as openssl genpkey writes it)."""
    blocks = _blocks(_read(path))
    if any(label == "ENCRYPTED PRIVATE KEY" for label, _ in blocks):
        raise KeyFileError(f"{path.name} is encrypted; decrypt it with openssl pkey -in KEY -out PLAIN")
    keys = [parse_private_der(der) for label, der in blocks if label == "PRIVATE KEY"]
    if len(keys) != 1:
        raise KeyFileError(f"{path.name} holds {len(keys)} PRIVATE KEY blocks, not one")
    return keys[0]


def load_public(path: Path) -> list[PublicKey]:
    """Every public key in ``path`` (one or more PUBLIC KEY blocks, as openssl pkey -pubout writes them)."""
    keys = [parse_public_der(der) for label, der in _blocks(_read(path)) if label == "PUBLIC KEY"]
    if not keys:
        raise KeyFileError(f"{path.name} holds no PUBLIC KEY block")
    return keys
