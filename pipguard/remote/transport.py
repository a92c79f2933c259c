"""Plain GET / PUT to a remote store: an HTTP(S) server, or a shared directory (``file:///``).

HTTP goes through the standard library's ``urllib`` with pip's own network settings (``--proxy`` or the
proxy variables, ``--cert``, ``--client-cert``, ``--trusted-host``, ``--no-proxy-env``), rather than
through pip's ``PipSession``: that session retries with back-off (five times by default) and may ask a
keyring or a terminal for credentials on a 401, and a cache that must never stall an install can afford
neither. Here every request is tried once, never follows a redirect (a redirect could carry the
Authorization header to another host), and maps every outcome to one of three answers: done, not there,
or an error of the error tree (``RemoteUnavailable``: switch the remote off; ``RemoteRefused``: stop
uploading; ``RemoteRejected``: not what was promised).

Bounded waits, so a store can cost an install seconds, never the install:

- connecting waits ``connect_timeout``, each read ``timeout``, and each request ``deadline`` in all: a store
  that trickles a byte now and then is cut off at its deadline, however fast each read is;
- when the command stops (Ctrl-C, SIGTERM: the guard's ``stopping`` event), every request ends at once.
  A request in a build-ahead thread may be blocked in a read: a watcher thread shuts its socket down,
  which wakes that read, rather than waiting for its timeout;
- no more than ``limit`` + 1 bytes are read of an object: the byte past the size a manifest promises is
  the last one read;
- a loopback store is reached directly, never through a proxy: a proxy would reach its own loopback, not
  this machine's, and would see the Authorization header of a plain ``http://`` request in clear;
- a file store opens only regular files, without blocking: a FIFO planted in the store is refused at once.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import shutil
import socket
import ssl
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from pipguard.errors import RemoteRefused, RemoteRejected, RemoteUnavailable
from pipguard.remote.config import RemoteConfig, is_loopback
from pipguard.sources import Network

CHUNK = 1 << 16
WATCH_SECONDS = 0.1  # how soon a request notices that the command stops
Sink = Callable[[bytes], None]


class Transport(Protocol):
    """A remote store: paths are relative to its base (``v2/...``)."""

    def get(self, path: str, sink: Sink, limit: int) -> bool:
        """Stream the object at ``path`` into ``sink``; False if there is none. More than ``limit`` bytes
        raise ``RemoteRejected``."""

    def put(self, path: str, body: bytes | Path, replace: bool = False) -> None:
        """Store ``body`` at ``path`` (a store that can, refuses to replace an object unless asked)."""


def open_transport(config: RemoteConfig, network: Network, stopping: threading.Event) -> Transport:
    if config.scheme == "file":
        from urllib.request import url2pathname

        return FileTransport(Path(url2pathname(config.base[len("file://") :])), config.deadline, stopping)
    return HttpTransport(config, network, stopping)


class Deadline:
    """One request's end: its deadline, or the command stopping, whichever comes first."""

    def __init__(self, seconds: float, stopping: threading.Event) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.stopping = stopping

    def passed(self) -> str | None:
        """Why the request must end now, or None."""
        if self.stopping.is_set():
            return "stopped"
        if time.monotonic() >= self.ends:
            return f"took longer than {self.seconds:g}s in all (PIPGUARD_REMOTE_DEADLINE)"
        return None

    def check(self) -> None:
        why = self.passed()
        if why is not None:
            raise RemoteUnavailable(why)


def _read_limited(stream: IO[bytes], sink: Sink, limit: int, deadline: Deadline) -> None:
    """Copy ``stream`` into ``sink``, reading no more than ``limit`` + 1 bytes of it."""
    total = 0
    while True:
        deadline.check()
        chunk = stream.read(min(CHUNK, limit + 1 - total))
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise RemoteRejected(f"more than the {limit} bytes expected")
        sink(chunk)


# --- HTTP ------------------------------------------------------------------------------------------


class _Watch:
    """Ends one HTTP request at its deadline, or at once when the command stops, from a thread of its own.

    It shuts the request's socket down (the plain socket's ``shutdown``, also under TLS), which wakes a
    read or a write blocked on it in any thread; the request then fails, and ``check`` says why."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.why: str | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipguard-remote-watch", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(WATCH_SECONDS):
            why = self.deadline.passed()
            if why is not None:
                self._end(why)
                return

    def _end(self, why: str) -> None:
        with self._lock:
            self.why = why
            for sock in self._sockets:
                _shut(sock)

    def add(self, sock: socket.socket) -> None:
        """Watch a socket the request connected (shut at once if the request has already ended)."""
        with self._lock:
            self._sockets.append(sock)
            if self.why is not None:
                _shut(sock)

    def check(self) -> None:
        if self.why is not None:
            raise RemoteUnavailable(self.why)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket.shutdown, which unsets its TLS state


class _Timeouts:
    """A connection that connects within the connect timeout, then waits at most ``read_timeout`` per read,
    and is watched (its request's deadline, the command stopping) from its first byte on."""

    read_timeout: float
    watch: _Watch
    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)
        self.watch.add(self.sock)


class _HTTPConnection(_Timeouts, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Timeouts, http.client.HTTPSConnection):
    pass


class _Request(urllib.request.Request):
    """A request that carries its watch to the connection made for it."""

    def __init__(self, url: str, watch: _Watch, data: IO[bytes] | bytes | None, method: str) -> None:
        super().__init__(url, data=data, method=method)
        self.watch = watch


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_connection, _HTTPConnection, self.read_timeout, req)
        return self.do_open(connection, req)  # type: ignore[arg-type]


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self.read_timeout = read_timeout
        self.tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_connection, _HTTPSConnection, self.read_timeout, req, context=self.tls)
        return self.do_open(connection, req)  # type: ignore[arg-type]


def _connection(kind: type[Any], read_timeout: float, req: urllib.request.Request, host: str, **kwargs: Any) -> Any:
    made = kind(host, **kwargs)
    made.read_timeout = read_timeout
    made.watch = getattr(req, "watch")
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


def _proxies(network: Network, host: str) -> urllib.request.ProxyHandler:
    """pip's proxy, or the proxy variables; none for a loopback store (this machine, reached directly)."""
    if is_loopback(host):
        return urllib.request.ProxyHandler({})
    if network.proxy:
        return urllib.request.ProxyHandler({"http": network.proxy, "https": network.proxy})
    return urllib.request.ProxyHandler({} if network.no_proxy_env else None)


class HttpTransport:
    """GET and PUT against ``config.base`` with pip's network settings and bounded waits."""

    def __init__(self, config: RemoteConfig, network: Network, stopping: threading.Event) -> None:
        import urllib.parse

        self.base = config.base
        self._authorization = config.authorization
        self._connect_timeout = config.connect_timeout
        self._deadline = config.deadline
        self._stopping = stopping
        parts = urllib.parse.urlsplit(config.base)
        handlers: list[Any] = [_proxies(network, parts.hostname or ""), _NoRedirect(), _HTTPHandler(config.timeout)]
        if parts.scheme == "https":
            try:
                handlers.append(_HTTPSHandler(config.timeout, _tls_context(network, parts.hostname or "", parts.port)))
            except (OSError, ValueError) as exc:
                raise RemoteUnavailable(f"TLS settings: {exc}") from None
        self._opener = urllib.request.build_opener(*handlers)

    @contextlib.contextmanager
    def _request(
        self, method: str, path: str, body: IO[bytes] | bytes | None = None, size: int = 0
    ) -> Iterator[tuple[Any, Deadline]]:
        """The response to one request (``None`` for a 404) and its deadline, or the error it amounts to."""
        deadline = Deadline(self._deadline, self._stopping)
        with _Watch(deadline) as watch:
            try:
                with self._response(_Request(f"{self.base}/{path}", watch, body, method), size) as response:
                    yield response, deadline
            except (RemoteUnavailable, RemoteRefused, RemoteRejected):
                watch.check()  # a request cut off fails as whatever its broken socket gave: say why it was cut
                raise
            watch.check()  # a read cut off may look like the end of the body

    @contextlib.contextmanager
    def _response(self, request: _Request, size: int) -> Iterator[Any]:
        method = request.get_method()
        if self._authorization:
            request.add_unredirected_header("Authorization", self._authorization)
        if request.data is not None:
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
        with self._request("GET", path) as (response, deadline):
            if response is None:
                return False
            if response.length is not None and response.length > limit:
                raise RemoteRejected(f"{response.length} bytes, more than the {limit} expected")
            _read_limited(response, sink, limit, deadline)
            return True

    def put(self, path: str, body: bytes | Path, replace: bool = False) -> None:
        if isinstance(body, bytes):
            with self._request("PUT", path, body, len(body)):
                return
        with open(body, "rb") as stream, self._request("PUT", path, stream, os.fstat(stream.fileno()).st_size):
            return


def _open_regular(path: Path) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file. Opened without blocking, so a FIFO (or a device)
    planted in the store costs an fstat, not a reader that waits forever for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RemoteRejected(f"{path.name} on the store is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --- a shared directory ------------------------------------------------------------------------------


class FileTransport:
    """A directory (an NFS or SMB mount, say): objects are written aside and linked into place whole."""

    def __init__(self, root: Path, deadline: float, stopping: threading.Event) -> None:
        self.root = root
        self._deadline = deadline
        self._stopping = stopping

    def _path(self, path: str) -> Path:
        """Where ``path`` is; the store's own directory must exist (an unmounted share is not an empty one)."""
        if not self.root.is_dir():
            raise RemoteUnavailable("the store's directory does not exist")
        return self.root.joinpath(*path.split("/"))

    def get(self, path: str, sink: Sink, limit: int) -> bool:
        deadline = Deadline(self._deadline, self._stopping)
        try:
            with _open_regular(self._path(path)) as stream:
                _read_limited(stream, sink, limit, deadline)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise RemoteUnavailable(f"reading the store: {exc.strerror or exc}") from None
        return True

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
