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
- a verify key that cannot be read switches the remote off: reading unsigned entries when signed ones
  were asked for would be weaker than not reading at all; a signing key that cannot be read switches
  uploads off, for the same reason.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipguard.redact import redact
from pipguard.remote.keyfiles import KeyFileError, PrivateKey, PublicKey, load_private, load_public

DEFAULT_TIMEOUT = 5.0
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
    signing_key: PrivateKey | None = None
    write = env.get("PIPGUARD_REMOTE_WRITE", "").lower() in TRUE
    try:
        verify_keys = _verify_keys(env.get("PIPGUARD_REMOTE_VERIFY_KEY", ""))
    except KeyFileError as exc:
        return None, [f"not using the remote cache: PIPGUARD_REMOTE_VERIFY_KEY: {exc}"]
    if env.get("PIPGUARD_REMOTE_SIGNING_KEY"):
        try:
            signing_key = load_private(Path(env["PIPGUARD_REMOTE_SIGNING_KEY"]).expanduser())
        except KeyFileError as exc:
            complaints.append(f"not uploading to the remote cache: PIPGUARD_REMOTE_SIGNING_KEY: {exc}")
            write = False
    if signing_key is not None and signing_key.public not in verify_keys:
        verify_keys += (signing_key.public,)  # a signing writer reads what it signs, never anyone's
    authorization = None if scheme == "file" else _authorization(parts, env)
    if authorization and scheme == "http" and not is_loopback(host):
        complaints.append(f"not sending credentials to {host} over plain http://; use https://")
        authorization = None
    timeout, complaint = _timeout(env.get("PIPGUARD_REMOTE_TIMEOUT", ""))
    complaints += [complaint] if complaint else []
    config = RemoteConfig(base, write, verify_keys, signing_key, authorization, timeout)
    return config, complaints


def _verify_keys(raw: str) -> tuple[PublicKey, ...]:
    """Every public key in the files ``raw`` names (separated by ``os.pathsep``)."""
    found: list[PublicKey] = []
    for name in filter(None, (part.strip() for part in raw.split(os.pathsep))):
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
    return _from_netrc(parts.hostname or "", env.get("NETRC"))


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


def _timeout(raw: str) -> tuple[float, str | None]:
    if not raw:
        return DEFAULT_TIMEOUT, None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        return DEFAULT_TIMEOUT, f"ignoring PIPGUARD_REMOTE_TIMEOUT={raw!r}: not a number of seconds"
    return value, None
