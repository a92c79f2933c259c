"""Key files and signatures: real openssl keys and signatures both ways, strict parsing, small-order keys."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from pipguard.remote.keyfiles import SMALL_ORDER, KeyFileError, load_private, load_public

IDENTITY = bytes([1]) + bytes(31)  # the encoding of the neutral point (0, 1)
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # SubjectPublicKeyInfo for a 32-byte ed25519 key

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def pem_public(raw: bytes) -> str:
    body = base64.b64encode(SPKI_PREFIX + raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


@pytest.fixture
def openssl_key(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "key.pem", tmp_path / "key.pub.pem"
    _openssl("genpkey", "-algorithm", "ed25519", "-out", str(private))
    _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
    return private, public


@needs_openssl
def test_openssl_keys_load_and_agree(openssl_key: tuple[Path, Path]) -> None:
    private, public = openssl_key
    signer = load_private(private)
    (verifier,) = load_public(public)
    assert signer.public == verifier
    assert verifier.writer_id.startswith("ed25519-") and len(verifier.writer_id) == 8 + 32


@needs_openssl
def test_openssl_verifies_ours_and_we_verify_openssls(tmp_path: Path, openssl_key: tuple[Path, Path]) -> None:
    private, public = openssl_key
    message = tmp_path / "message"
    message.write_bytes(b"pipguard-remote/2\nkey=abc\n")
    ours = tmp_path / "ours.sig"
    ours.write_bytes(load_private(private).sign(message.read_bytes()))
    _openssl("pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", str(public), "-in", str(message), "-sigfile", str(ours))
    theirs = tmp_path / "theirs.sig"
    _openssl("pkeyutl", "-sign", "-rawin", "-inkey", str(private), "-in", str(message), "-out", str(theirs))
    assert theirs.read_bytes() == ours.read_bytes()  # ed25519 is deterministic
    verifier = load_public(public)[0]
    assert verifier.verify(message.read_bytes(), theirs.read_bytes())
    assert not verifier.verify(message.read_bytes() + b"x", theirs.read_bytes())
    assert not verifier.verify(message.read_bytes(), theirs.read_bytes()[:63])


def test_several_public_keys_in_one_file(tmp_path: Path) -> None:
    raws = [Ed25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(2)]
    both = tmp_path / "trusted.pem"
    both.write_text("a comment openssl ignores too\n" + "".join(pem_public(raw) for raw in raws))
    assert [key.raw for key in load_public(both)] == raws


@pytest.mark.parametrize(
    "load, text, complaint",
    [
        (load_private, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"),
        (load_private, "", "no PEM block"),
        (load_private, "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n", "not a readable ed25519 key"),
        (load_public, pem_public(bytes(31)), "not a readable ed25519 key"),  # 31 bytes in a 32-byte frame
        (load_public, pem_public(IDENTITY).replace("MCowBQYDK2Vw", "MCowBQYDK2Vx"), "not a readable ed25519 key"),  # ed448
        (load_public, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PUBLIC KEY blocks only"),
        (load_public, "nothing\n", "no PUBLIC KEY block"),
    ],
)
def test_a_bad_key_file_is_one_line(tmp_path: Path, load: Callable[[Path], object], text: str, complaint: str) -> None:
    path = tmp_path / "key.pem"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=complaint) as raised:
        load(path)
    assert "\n" not in str(raised.value)
    with pytest.raises(KeyFileError, match="cannot read"):
        load(tmp_path / "missing.pem")


@needs_openssl
def test_an_rsa_key_is_not_an_ed25519_key(tmp_path: Path) -> None:
    private, public = tmp_path / "rsa.pem", tmp_path / "rsa.pub.pem"
    _openssl("genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024", "-out", str(private))
    _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
    with pytest.raises(KeyFileError, match="not an ed25519 key"):
        load_private(private)
    with pytest.raises(KeyFileError, match="not an ed25519 key"):
        load_public(public)


def test_the_identity_key_forges_with_openssl_and_is_refused_here(tmp_path: Path) -> None:
    """Why the check exists: OpenSSL takes the identity as a key, and R = identity, S = 0 then verifies
    for any message. pipguard refuses such a key where it reads it."""
    forged = IDENTITY + bytes(32)
    Ed25519PublicKey.from_public_bytes(IDENTITY).verify(forged, b"any manifest at all")  # no InvalidSignature
    path = tmp_path / "identity.pub.pem"
    path.write_text(pem_public(IDENTITY))
    with pytest.raises(KeyFileError, match="small order"):
        load_public(path)


@pytest.mark.parametrize("raw", sorted(SMALL_ORDER))
def test_every_small_order_encoding_is_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "small.pub.pem"
    path.write_text(pem_public(raw))
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        pytest.skip("this OpenSSL refuses this encoding itself")
    with pytest.raises(KeyFileError, match="small order"):
        load_public(path)


def test_the_small_order_list_is_checked_by_openssl_itself() -> None:
    """Each encoding but the identity's, mapped to Curve25519 (u = (1 + y) / (1 - y)), is a point X25519
    refuses to agree with (an all-zero secret: small order); the identity has no such u. A normal key maps
    to one it agrees with."""
    p = 2**255 - 19
    ys = set()
    for raw in SMALL_ORDER:
        y = int.from_bytes(raw, "little") % (1 << 255) % p
        ys.add(y)
        if y != 1:
            with pytest.raises(ValueError):
                X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(_montgomery(y)))
    assert len(ys) == 5  # 0 (order 4), 1 (the identity), p - 1 (order 2), and y, p - y of the order-8 points
    normal = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    y = int.from_bytes(normal, "little") % (1 << 255)
    assert len(X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(_montgomery(y)))) == 32


def _montgomery(y: int) -> bytes:
    p = 2**255 - 19
    return ((1 + y) * pow(1 - y, -1, p) % p).to_bytes(32, "little")
