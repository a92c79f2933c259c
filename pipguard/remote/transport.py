"""Plain GET / HEAD / PUT to a remote store: an HTTP(S) server, or a shared directory (``file:///``).

HTTP goes through the standard library's ``urllib`` with pip's own network settings (``--proxy`` or the
proxy variables, ``--cert``, ``--client-cert``, ``--trusted-host``, ``--no-proxy-env``), rather than
through pip's ``PipSession``: that session retries with back-off (five times by default) and may ask a
keyring or a terminal for credentials on a 401, and a cache that must never stall an install can afford
neither. Here every request has a connect timeout and a read timeout, is tried once, never follows a
redirect (a redirect could carry the Authorization header to another host), and maps every outcome to one
of three answers: done, not there, or an error of the error tree (``RemoteUnavailable``: switch the
remote off; ``RemoteRefused``: stop uploading; ``RemoteRejected``: not what was promised).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from pipguard.errors import RemoteRefused, RemoteRejected, RemoteUnavailable
from pipguard.remote.config import RemoteConfig
from pipguard.sources import Network

CHUNK = 1 << 16
Sink = Callable[[bytes], None]


class Transport(Protocol):
    """A remote store: paths are relative to its base (``v1/...``)."""

    def get(self, path: str, sink: Sink, limit: int) -> bool:
        """Stream the object at ``path`` into ``sink``; False if there is none. More than ``limit`` bytes
        raise ``RemoteRejected``."""

    def exists(self, path: str) -> bool:
        """Whether there is an object at ``path``."""

    def put(self, path: str, body: bytes | Path, replace: bool = False) -> None:
        """Store ``body`` at ``path`` (a store that can, refuses to replace an object unless asked)."""


def open_transport(config: RemoteConfig, network: Network) -> Transport:
    if config.scheme == "file":
        from urllib.request import url2pathname

        return FileTransport(Path(url2pathname(config.base[len("file://") :])))
    return HttpTransport(config, network)


def _read_limited(stream: IO[bytes], sink: Sink, limit: int) -> None:
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise RemoteRejected(f"more than the {limit} bytes expected")
        sink(chunk)


# --- HTTP ------------------------------------------------------------------------------------------


class _Timeouts:
    """A connection that connects within the connect timeout, then waits at most ``read_timeout`` per read."""

    read_timeout: float
    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_Timeouts, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Timeouts, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_connection, _HTTPConnection, self.read_timeout)
        return self.do_open(connection, req)  # type: ignore[arg-type]


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self.read_timeout = read_timeout
        self.tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_connection, _HTTPSConnection, self.read_timeout, context=self.tls)
        return self.do_open(connection, req)  # type: ignore[arg-type]


def _connection(kind: type[Any], read_timeout: float, host: str, **kwargs: Any) -> Any:
    made = kind(host, **kwargs)
    made.read_timeout = read_timeout
    return made


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx becomes an HTTPError: a store answers in place or not at all


def _tls_context(network: Network, host: str, port: int | None) -> ssl.SSLContext:
    """pip's TLS settings: ``--cert`` (a file or a directory), ``--client-cert``, ``--trusted-host``."""
    trusted = {host, f"{host}:{port}"} if port else {host}
    if trusted & set(network.trusted_hosts):
        context = ssl._create_unverified_context()
    elif network.cert and os.path.isdir(network.cert):
        context = ssl.create_default_context(capath=network.cert)
    else:
        context = ssl.create_default_context(cafile=network.cert or None)
    if network.client_cert:
        context.load_cert_chain(network.client_cert)
    return context


def _proxies(network: Network) -> urllib.request.ProxyHandler:
    if network.proxy:
        return urllib.request.ProxyHandler({"http": network.proxy, "https": network.proxy})
    return urllib.request.ProxyHandler({} if network.no_proxy_env else None)


class HttpTransport:
    """GET, HEAD and PUT against ``config.base`` with pip's network settings and bounded waits."""

    def __init__(self, config: RemoteConfig, network: Network) -> None:
        import urllib.parse

        self.base = config.base
        self.display = config.display
        self._authorization = config.authorization
        self._connect_timeout = config.connect_timeout
        parts = urllib.parse.urlsplit(config.base)
        handlers: list[Any] = [_proxies(network), _NoRedirect(), _HTTPHandler(config.timeout)]
        if parts.scheme == "https":
            try:
                handlers.append(_HTTPSHandler(config.timeout, _tls_context(network, parts.hostname or "", parts.port)))
            except (OSError, ValueError) as exc:
                raise RemoteUnavailable(f"TLS settings: {exc}") from None
        self._opener = urllib.request.build_opener(*handlers)

    @contextlib.contextmanager
    def _request(self, method: str, path: str, body: IO[bytes] | bytes | None = None, size: int = 0) -> Iterator[Any]:
        """The response to one request (``None`` for a 404), or the error it amounts to."""
        request = urllib.request.Request(f"{self.base}/{path}", data=body, method=method)
        if self._authorization:
            request.add_unredirected_header("Authorization", self._authorization)
        if body is not None:
            request.add_header("Content-Length", str(size))
            request.add_header("Content-Type", "application/octet-stream")
        try:
            with self._opener.open(request, timeout=self._connect_timeout) as response:
                yield response
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410) and method != "PUT":
                yield None
                return
            status = f"{method} answered {exc.code} {exc.reason}"
            if method == "PUT" and 400 <= exc.code < 500:
                raise RemoteRefused(status) from None
            raise RemoteUnavailable(status) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise RemoteUnavailable(f"{method}: {type(exc).__name__}: {reason}") from None

    def get(self, path: str, sink: Sink, limit: int) -> bool:
        with self._request("GET", path) as response:
            if response is None:
                return False
            _read_limited(response, sink, limit)
            return True

    def exists(self, path: str) -> bool:
        with self._request("HEAD", path) as response:
            return response is not None

    def put(self, path: str, body: bytes | Path, replace: bool = False) -> None:
        if isinstance(body, bytes):
            with self._request("PUT", path, body, len(body)):
                return
        with open(body, "rb") as stream, self._request("PUT", path, stream, os.fstat(stream.fileno()).st_size):
            return


# --- a shared directory ------------------------------------------------------------------------------


class FileTransport:
    """A directory (an NFS or SMB mount, say): objects are written aside and linked into place whole."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, path: str) -> Path:
        """Where ``path`` is; the store's own directory must exist (an unmounted share is not an empty one)."""
        if not self.root.is_dir():
            raise RemoteUnavailable("the store's directory does not exist")
        return self.root.joinpath(*path.split("/"))

    def get(self, path: str, sink: Sink, limit: int) -> bool:
        try:
            with open(self._path(path), "rb") as stream:
                _read_limited(stream, sink, limit)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise RemoteUnavailable(f"reading the store: {exc.strerror or exc}") from None
        return True

    def exists(self, path: str) -> bool:
        try:
            return self._path(path).is_file()
        except OSError as exc:
            raise RemoteUnavailable(f"reading the store: {exc.strerror or exc}") from None

    def put(self, path: str, body: bytes | Path, replace: bool = False) -> None:
        """Write aside, then link into place: readers see all or nothing, and nothing is replaced unless asked."""
        target = self._path(path)
        temporary = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                if isinstance(body, bytes):
                    out.write(body)
                else:
                    with open(body, "rb") as source:
                        shutil.copyfileobj(source, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)
            if replace:
                os.replace(temporary, target)
            else:
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, target)
        except OSError as exc:
            raise RemoteRefused(f"writing the store: {exc.strerror or exc}") from None
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
