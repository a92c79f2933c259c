"""The remote tier's settings, manifests and file store, in-process."""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.wheels import make_wheel

from pipguard.errors import RemoteRefused, RemoteRejected
from pipguard.remote.config import is_loopback, parse
from pipguard.remote.keyfiles import PrivateKey, private_key
from pipguard.remote.manifest import accept, render
from pipguard.remote.tier import Tier, built_here_only, check_identity
from pipguard.remote.transport import FileTransport
from pipguard.sources import BuildOptions, Source

KEY = "ab" * 32


def key_pair(seed: int) -> PrivateKey:
    return private_key(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def source(name: str | None, version: str | None, *child_args: str) -> Source:
    """A Source as the seam describes an index sdist (nothing here downloads it)."""
    options = BuildOptions(child_args, {}, True, (), True, 0)
    return Source("archive", f"https://index.example/{name}-{version}.tar.gz", name, version, None, None,
                  None, None, options, download=lambda _dest: Path("/nonexistent"))


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
    config, complaints = parse(
        {"PIPGUARD_REMOTE": "http://cache.example/w", "PIPGUARD_REMOTE_TOKEN": "t0k", "PIPGUARD_REMOTE_ALLOW_HTTP": "1"}
    )
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


@pytest.mark.parametrize("blank", ["", " ", ":", " : "])
def test_a_verify_key_set_to_nothing_switches_the_remote_off(blank: str) -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": "https://cache.example", "PIPGUARD_REMOTE_VERIFY_KEY": blank})
    assert config is None and complaints == ["not using the remote cache: PIPGUARD_REMOTE_VERIFY_KEY: set, but names no key file"]


def test_plain_http_to_another_host_needs_a_verify_key_or_an_opt_in(tmp_path: Path) -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": "http://cache.example/w"})
    assert config is None and "PIPGUARD_REMOTE_ALLOW_HTTP=1" in complaints[0]
    allowed, complaints = parse({"PIPGUARD_REMOTE": "http://cache.example/w", "PIPGUARD_REMOTE_ALLOW_HTTP": "1"})
    assert allowed is not None and complaints == []
    assert parse({"PIPGUARD_REMOTE": "http://127.0.0.1:9/w"})[0] is not None  # loopback: this machine


def test_timeouts_and_loopback() -> None:
    config, complaints = parse({"PIPGUARD_REMOTE": "file:///w", "PIPGUARD_REMOTE_TIMEOUT": "-3"})
    assert config is not None and config.timeout == 5.0 and "PIPGUARD_REMOTE_TIMEOUT" in complaints[0]
    config, complaints = parse({"PIPGUARD_REMOTE": "file:///w", "PIPGUARD_REMOTE_DEADLINE": "inf"})
    assert config is not None and config.deadline == 60.0 and "PIPGUARD_REMOTE_DEADLINE" in complaints[0]
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
        {"size": 1 << 40},  # the same wheel, and a terabyte more to read
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
    never = threading.Event()
    store = FileTransport(tmp_path / "store", config.deadline, never)
    wheel = make_wheel(tmp_path / "built")
    Tier(config, store, never).upload(KEY, wheel)
    manifests = sorted((tmp_path / "store" / "v2" / "keys" / KEY).iterdir())
    assert [m.name for m in manifests] == sorted(["anyone.json", f"{signer.public.writer_id}.json"])
    before = [m.read_bytes() for m in manifests]
    Tier(config, store, never).upload(KEY, make_wheel(tmp_path / "rebuilt", version="1.0"))
    assert [m.read_bytes() for m in manifests] == before
    fetched = Tier(config, store, never).fetch(KEY, source("demo", "1.0"), tmp_path, "demo")
    assert fetched is not None and fetched.read_bytes() == wheel.read_bytes()
    assert not list((tmp_path / "store").rglob(".tmp-*"))


class RefusingStore(FileTransport):
    """A store that refuses every upload, once every uploader is inside its PUT (as builds ahead are)."""

    def __init__(self, root: Path, config: Any, uploaders: int) -> None:
        super().__init__(root, config.deadline, threading.Event())
        self.inside = threading.Barrier(uploaders, timeout=30)

    def put(self, path: str, body: bytes | Path, replace: bool = False) -> None:
        self.inside.wait()
        raise RemoteRefused("PUT answered 413 Request Entity Too Large")


def test_uploads_refused_in_several_threads_at_once_warn_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = parse({"PIPGUARD_REMOTE": (tmp_path / "store").as_uri(), "PIPGUARD_REMOTE_WRITE": "1"})
    assert config is not None
    (tmp_path / "store").mkdir()
    store = RefusingStore(tmp_path / "store", config, uploaders=3)
    tier = Tier(config, store, threading.Event())
    wheels = [make_wheel(tmp_path / f"built{n}", f"demo{n}") for n in range(3)]
    threads = [threading.Thread(target=tier.upload, args=(KEY, wheel)) for wheel in wheels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "413" in warnings[0] and "not uploading again" in warnings[0]
    assert tier.uploads_off and tier.counts["upload failed"] == 3


# --- what the store may supply, and what a fetched wheel must be ----------------------------------------


@pytest.mark.parametrize(
    "args, built_here",
    [
        (("--no-binary", ":none:", "--only-binary", ":none:"), False),
        (("--no-binary", ":all:", "--only-binary", ":none:"), True),
        (("--no-binary", "demo,other", "--only-binary", ":none:"), True),
        (("--no-binary", "other", "--only-binary", ":none:"), False),
        (("--no-binary", ":all:", "--only-binary", "demo"), False),  # pip: a name in --only-binary wins
        (("--no-binary", ":all:", "--only-binary", ":all:"), False),
    ],
)
def test_format_control_decides_as_pip_does(args: tuple[str, ...], built_here: bool) -> None:
    assert built_here_only(source("Demo", "1.0", *args)) is built_here


def test_a_source_of_unknown_name_under_a_named_no_binary_is_built_here() -> None:
    assert built_here_only(source(None, None, "--no-binary", "other"))
    assert not built_here_only(source(None, None, "--no-binary", ":none:"))


def test_a_wheel_must_be_the_sources_and_stay_in_its_directory(tmp_path: Path) -> None:
    good = make_wheel(tmp_path / "good", "demo", "1.0")
    check_identity(good, source("Demo", "1.0"))
    check_identity(good, source(None, None))
    with pytest.raises(RemoteRejected, match="not a wheel of other"):
        check_identity(good, source("other", "1.0"))
    with pytest.raises(RemoteRejected, match="not a wheel of demo 2.0"):
        check_identity(good, source("demo", "2.0"))
    escaping = tmp_path / "bad" / "demo-1.0-py3-none-any.whl"
    escaping.parent.mkdir()
    shutil.copy(good, escaping)
    with zipfile.ZipFile(escaping, "a") as archive:
        archive.writestr("../../outside.pth", "import os\n")
    with pytest.raises(RemoteRejected, match="outside its install directory"):
        check_identity(escaping, source("demo", "1.0"))
    renamed = tmp_path / "renamed" / "demo-1.0-py3-none-any.whl"
    renamed.parent.mkdir()
    shutil.copy(make_wheel(tmp_path / "other", "other", "1.0"), renamed)
    with pytest.raises(RemoteRejected, match="dist-info does not match"):
        check_identity(renamed, source(None, None))
