"""The remote tier's configuration, parsed from the variables settings.py reads (a pure function of them).

Decisions made here, once, so the rest never sees a secret it should not send:

- credentials come from ``PIPGUARD_REMOTE_TOKEN`` (bearer), else the URL's user-info, else ``.netrc``
  (``$NETRC`` or ``~/.netrc``), and are dropped, with a complaint, for plain ``http://`` to a host that is
  not loopback: a token on the wire in clear is a token given away;
- the base URL kept has no user-info, so nothing printed or stored can carry it (``display`` is what
  users see);
- a writer with a signing key trusts its own public key (with the verify keys): it reads only what it
  or the writers it trusts signed, never an unsigned entry, so a trusted job cannot pick up and re-share
  an untrusted writer's wheel;
- a verify key that cannot be read, is of small order, or a ``PIPGUARD_REMOTE_VERIFY_KEY`` that is set but
  names no file (``""``, ``":"``) switches the remote off: reading unsigned entries when signed ones were
  asked for would be weaker than not reading at all; a signing key that cannot be read switches uploads
  off, for the same reason;
- plain ``http://`` to a host that is not loopback, with no verify key, switches the remote off unless
  ``PIPGUARD_REMOTE_ALLOW_HTTP=1`` says so: anyone on the way could hand out any wheel;
- cryptography (keyfiles.py) is imported here, when a remote is configured: if it does not import under
  this interpreter, the remote is off (one complaint), never half on.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from pipguard.redact import redact

if TYPE_CHECKING:
    from pipguard.remote.keyfiles import PrivateKey, PublicKey

DEFAULT_TIMEOUT = 5.0
DEFAULT_DEADLINE = 60.0
CONNECT_TIMEOUT = 2.0
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class RemoteConfig:
    """Where the remote store is and what this process may do with it."""

    base: str  # http(s)://host[:port]/path or file:///path, without user-info or a trailing slash
    write: bool
    verify_keys: tuple[PublicKey, ...]
    signing_key: PrivateKey | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)  # an HTTP Authorization header value
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE  # seconds one request may take in all, however the store trickles
    connect_timeout: float = CONNECT_TIMEOUT

    @property
    def scheme(self) -> str:
        return self.base.split(":", 1)[0]

    @property
    def display(self) -> str:
        """The URL as users see it (it has no credentials; redacting again costs nothing)."""
        return redact(self.base)

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.base).hostname or ""


def parse(env: Mapping[str, str]) -> tuple[RemoteConfig | None, list[str]]:
    """The configuration ``env`` describes (None: no remote), and complaints to show as warnings."""
    raw = env.get("PIPGUARD_REMOTE", "").strip()
    if not raw:
        return None, []
    complaints: list[str] = []
    parts = urllib.parse.urlsplit(raw)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None, [f"ignoring PIPGUARD_REMOTE={redact(raw)!r}: bad port"]
    if scheme not in ("http", "https", "file") or (scheme != "file" and not parts.hostname):
        return None, [f"ignoring PIPGUARD_REMOTE={redact(raw)!r}: use https://, http:// or file:///"]
    if scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        return None, [f"ignoring PIPGUARD_REMOTE={redact(raw)!r}: a file URL names an absolute path, file:///…"]
    host = parts.hostname or ""
    netloc = host if ":" not in host else f"[{host}]"
    if port:
        netloc += f":{port}"
    base = urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))
    try:
        from pipguard.remote import keyfiles
    except ImportError as exc:
        return None, [f"not using the remote cache: the cryptography package does not load here ({exc})"]
    try:
        verify_keys = _verify_keys(env)
    except keyfiles.KeyFileError as exc:
        return None, [f"not using the remote cache: PIPGUARD_REMOTE_VERIFY_KEY: {exc}"]
    write = env.get("PIPGUARD_REMOTE_WRITE", "").lower() in TRUE
    signing_key: PrivateKey | None = None
    if env.get("PIPGUARD_REMOTE_SIGNING_KEY"):
        try:
            signing_key = keyfiles.load_private(Path(env["PIPGUARD_REMOTE_SIGNING_KEY"]).expanduser())
        except keyfiles.KeyFileError as exc:
            complaints.append(f"not uploading to the remote cache: PIPGUARD_REMOTE_SIGNING_KEY: {exc}")
            write = False
    if signing_key is not None and signing_key.public not in verify_keys:
        verify_keys += (signing_key.public,)  # a signing writer reads what it signs, never anyone's
    cleartext = scheme == "http" and not is_loopback(host)
    if cleartext and not verify_keys and env.get("PIPGUARD_REMOTE_ALLOW_HTTP", "").lower() not in TRUE:
        return None, [
            f"not using the remote cache {redact(base)}: over plain http:// to another host anyone on the way could "
            "replace its wheels; use https://, a verify key, or PIPGUARD_REMOTE_ALLOW_HTTP=1"
        ]
    authorization = None if scheme == "file" else _authorization(parts, env)
    if authorization and cleartext:
        complaints.append(f"not sending credentials to {host} over plain http://; use https://")
        authorization = None
    timeout, complaint = _seconds(env, "PIPGUARD_REMOTE_TIMEOUT", DEFAULT_TIMEOUT)
    deadline, deadline_complaint = _seconds(env, "PIPGUARD_REMOTE_DEADLINE", DEFAULT_DEADLINE)
    complaints += [c for c in (complaint, deadline_complaint) if c]
    config = RemoteConfig(base, write, verify_keys, signing_key, authorization, timeout, deadline)
    return config, complaints


def _verify_keys(env: Mapping[str, str]) -> tuple[PublicKey, ...]:
    """Every public key in the files ``PIPGUARD_REMOTE_VERIFY_KEY`` names (separated by ``os.pathsep``).

    Set but naming no file is an error, not "trust everyone": a CI secret that came out empty must not
    turn verification off."""
    from pipguard.remote.keyfiles import KeyFileError, load_public

    if "PIPGUARD_REMOTE_VERIFY_KEY" not in env:
        return ()
    names = [part.strip() for part in env["PIPGUARD_REMOTE_VERIFY_KEY"].split(os.pathsep) if part.strip()]
    if not names:
        raise KeyFileError("set, but names no key file")
    found: list[PublicKey] = []
    for name in names:
        for key in load_public(Path(name).expanduser()):
            if key not in found:
                found.append(key)
    return tuple(found)


def _authorization(parts: urllib.parse.SplitResult, env: Mapping[str, str]) -> str | None:
    """The Authorization header: bearer token, else the URL's user-info, else .netrc, else none."""
    token = env.get("PIPGUARD_REMOTE_TOKEN", "").strip()
    if token:
        return f"Bearer {token}"
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        return _basic(user, password)
    return _from_netrc(parts.hostname or "", env.get("NETRC") or None)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _from_netrc(host: str, path: str | None) -> str | None:
    import netrc

    try:
        found = netrc.netrc(path).authenticators(host) if path or (Path.home() / ".netrc").is_file() else None
    except (OSError, netrc.NetrcParseError):
        return None
    if not found:
        return None
    login, _account, password = found
    return _basic(login or "", password or "")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: plain http there never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _seconds(env: Mapping[str, str], name: str, default: float) -> tuple[float, str | None]:
    """A positive number of seconds from ``env[name]``; the default, and a complaint, for anything else."""
    raw = env.get(name, "").strip()
    if not raw:
        return default, None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        return default, f"ignoring {name}={raw!r}: not a number of seconds"
    return value, None
