"""Ed25519 and key files: RFC 8032's test vectors, and real openssl keys and signatures both ways."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipguard.remote import ed25519
from pipguard.remote.keyfiles import KeyFileError, load_private, load_public, parse_public_der

# RFC 8032 section 7.1, TEST 1 and TEST 2: (secret, public, message, signature).
VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


@pytest.mark.parametrize("secret, public, message, signature", VECTORS)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    assert ed25519.public_key(bytes.fromhex(secret)).hex() == public
    assert ed25519.sign(bytes.fromhex(secret), bytes.fromhex(message)).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))


def test_a_changed_message_key_or_signature_does_not_verify() -> None:
    secret, public, message, signature = (bytes.fromhex(v) for v in VECTORS[1])
    assert not ed25519.verify(public, message + b"x", signature)
    assert not ed25519.verify(bytes.fromhex(VECTORS[0][1]), message, signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not ed25519.verify(public, message, flipped)
    too_big_s = signature[:32] + (ed25519.L + 1).to_bytes(32, "little")
    assert not ed25519.verify(public, message, too_big_s)
    assert not ed25519.verify(public[:31], message, signature) and not ed25519.verify(public, message, signature[:63])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


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
    message.write_bytes(b"pipguard-remote/1\nkey=abc\n")
    ours = tmp_path / "ours.sig"
    ours.write_bytes(load_private(private).sign(message.read_bytes()))
    _openssl("pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", str(public), "-in", str(message), "-sigfile", str(ours))
    theirs = tmp_path / "theirs.sig"
    _openssl("pkeyutl", "-sign", "-rawin", "-inkey", str(private), "-in", str(message), "-out", str(theirs))
    assert theirs.read_bytes() == ours.read_bytes()  # ed25519 is deterministic
    assert load_public(public)[0].verify(message.read_bytes(), theirs.read_bytes())


def test_several_public_keys_in_one_file_and_refusals(tmp_path: Path) -> None:
    block = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAo36rangkriAAc9T4xagjI6ty/Cud00bdyfm2pSsYjvY=\n-----END PUBLIC KEY-----\n"
    other = block.replace("MCowBQYDK2VwAyEAo36", "MCowBQYDK2VwAyEAo37")
    both = tmp_path / "trusted.pem"
    both.write_text(block + other)
    assert len(load_public(both)) == 2
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="encrypted"):
        load_private(encrypted)
    with pytest.raises(KeyFileError):
        load_private(both)  # public keys are not a signing key
    with pytest.raises(KeyFileError):
        parse_public_der(bytes.fromhex("302a300506032b6571032100") + bytes(32))  # ed448's OID, not ed25519's
    with pytest.raises(KeyFileError):
        load_public(tmp_path / "missing.pem")
