"""The remote tier's settings, manifests and file store, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.wheels import make_wheel

from pipguard.errors import RemoteRejected
from pipguard.remote import ed25519
from pipguard.remote.config import is_loopback, parse
from pipguard.remote.keyfiles import PrivateKey, PublicKey
from pipguard.remote.manifest import accept, render
from pipguard.remote.tier import Tier
from pipguard.remote.transport import FileTransport

KEY = "ab" * 32


def key_pair(seed: int) -> PrivateKey:
    secret = bytes([seed]) * 32
    return PrivateKey(secret, PublicKey(ed25519.public_key(secret)))


# --- configuration -----------------------------------------------------------------------------------


def test_no_remote_unless_configured() -> None:
    assert parse({}) == (None, [])


def test_credentials_in_the_url_are_kept_out_of_the_base_and_the_display() -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": "https://ci:s3cret@cache.example:8443/wheels/"})
    assert complaints == [] and config is not None
    assert config.base == "https://cache.example:8443/wheels"
    assert "s3cret" not in config.display and "s3cret" not in repr(config)
    assert config.authorization is not None and config.authorization.startswith("Basic ")
    assert not config.write


def test_a_token_wins_and_is_never_sent_over_plain_http_to_another_host() -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": "http://cache.example/w", "PIPGUARD_REMOTE_TOKEN": "t0k"})
    assert config is not None and config.authorization is None
    assert complaints and "plain http" in complaints[0] and "t0k" not in complaints[0]
    local, complaints = parse({"PIPGUARD_REMOTE": "http://127.0.0.1:8080", "PIPGUARD_REMOTE_TOKEN": "t0k"})
    assert local is not None and local.authorization == "Bearer t0k" and complaints == []


def test_netrc_credentials(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine cache.example login ci password pw\n")
    netrc.chmod(0o600)
    config, _ = parse({"PIPGUARD_REMOTE": "https://cache.example", "NETRC": str(netrc)})
    assert config is not None and config.authorization == "Basic Y2k6cHc="


@pytest.mark.parametrize("url", ["ftp://x/y", "https://", "file://host/share", "http://h:notaport/"])
def test_bad_urls_are_ignored_with_a_complaint(url: str) -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": url})
    assert config is None and len(complaints) == 1 and "ignoring PIPGUARD_REMOTE" in complaints[0]


def test_unreadable_keys_switch_off_what_they_protect(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    assert parse({"PIPGUARD_REMOTE": "file:///srv/w", "PIPGUARD_REMOTE_VERIFY_KEY": missing})[0] is None
    config, complaints = parse(
        {"PIPGUARD_REMOTE": "file:///srv/w", "PIPGUARD_REMOTE_WRITE": "1", "PIPGUARD_REMOTE_SIGNING_KEY": missing}
    )
    assert config is not None and not config.write and "not uploading" in complaints[0]


def test_timeouts_and_loopback() -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": "file:///w", "PIPGUARD_REMOTE_TIMEOUT": "-3"})
    assert config is not None and config.timeout == 5.0 and "PIPGUARD_REMOTE_TIMEOUT" in complaints[0]
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("cache.example")


# --- manifests -----------------------------------------------------------------------------------------


def test_a_signed_manifest_verifies_only_with_its_writers_key() -> None:
    writer, other = key_pair(1), key_pair(2)
    writer_id, body = render(KEY, "demo-1.0-py3-none-any.whl", 10, "cd" * 32, writer)
    assert writer_id == writer.public.writer_id
    assert accept(body, KEY, writer.public).sha256 == "cd" * 32
    assert accept(body, KEY, None).wheel == "demo-1.0-py3-none-any.whl"  # a reader who trusts anyone
    with pytest.raises(RemoteRejected):
        accept(body, KEY, other.public)
    with pytest.raises(RemoteRejected, match="another key"):
        accept(body, "ef" * 32, writer.public)


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "ee" * 32},  # another wheel under the same signature
        {"wheel": "demo-1.0-py3-none-any.whl/../../x.whl"},
        {"size": -1},
        {"signature": None},
        {"format": "other"},
        {"size": "10"},
    ],
)
def test_a_changed_manifest_is_rejected(change: dict[str, object]) -> None:
    writer = key_pair(1)
    _writer_id, body = render(KEY, "demo-1.0-py3-none-any.whl", 10, "cd" * 32, writer)
    document = {**json.loads(body), **change}
    with pytest.raises(RemoteRejected):
        accept(json.dumps(document).encode(), KEY, writer.public)


def test_a_manifest_has_no_credentials_or_paths() -> None:
    _writer_id, body = render(KEY, "demo-1.0-py3-none-any.whl", 10, "cd" * 32, None)
    document = json.loads(body)
    assert set(document) == {"format", "key", "wheel", "size", "sha256", "created", "writer", "signature"}
    assert document["writer"] == "anyone" and document["signature"] is None


# --- the tier over a file store --------------------------------------------------------------------------


def test_upload_then_fetch_over_a_file_store_and_never_overwrite(tmp_path: Path) -> None:
    signer = key_pair(3)
    config, _ = parse({"PIPGUARD_REMOTE": (tmp_path / "store").as_uri(), "PIPGUARD_REMOTE_WRITE": "1"})
    assert config is not None
    config = type(config)(config.base, True, (signer.public,), signer)
    (tmp_path / "store").mkdir()
    store = FileTransport(tmp_path / "store")
    wheel = make_wheel(tmp_path / "built")
    Tier(config, store).upload(KEY, wheel)
    manifests = sorted((tmp_path / "store" / "v1" / "keys" / KEY).iterdir())
    assert [m.name for m in manifests] == sorted(["anyone.json", f"{signer.public.writer_id}.json"])
    before = [m.read_bytes() for m in manifests]
    Tier(config, store).upload(KEY, make_wheel(tmp_path / "rebuilt", version="1.0"))
    assert [m.read_bytes() for m in manifests] == before
    fetched = Tier(config, store).fetch(KEY, tmp_path, "demo")
    assert fetched is not None and fetched.read_bytes() == wheel.read_bytes()
    assert not list((tmp_path / "store").rglob(".tmp-*"))
