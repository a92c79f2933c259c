"""A real remote store for the tests: nginx with WebDAV PUT, as a team would run it, plus the broken ones.

One nginx (the Debian package) runs as a child of the test session, ``daemon off;``, with its pid, logs
and temp paths under the session's tmp dir, on 127.0.0.1. Its servers share one document root:

- ``url``: GET, HEAD, PUT (``dav_methods PUT; create_full_put_path on;``), the store a fleet uses;
- ``read_only_url``: GET and HEAD only (``limit_except GET HEAD { deny all; }``: 403 on PUT);
- ``small_url``: PUT of at most 1 kB (413 for a wheel);
- ``broken_url``: 500 for everything.

``Hanging`` accepts connections and never answers (a server that is up but stuck), counting connections.
``HostileStore`` serves a store's directory and lies where a test says (trickling, overflowing);
``RecordingProxy`` forwards plain HTTP and keeps what it saw. Keys come from the real ``openssl``, as a
user would make them.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
START_SECONDS = 30.0


def nginx_binary() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server(port: int, root: Path, body: str) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
{body}
        }}
    }}"""


WRITABLE = """            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 1g;"""
READ_ONLY = """            limit_except GET HEAD { deny all; }"""
SMALL = """            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 1k;"""
BROKEN = """            return 500;"""


def nginx_config(base: Path, ports: dict[str, int]) -> str:
    """A complete nginx.conf: every path under ``base``, the body temp dir on the store's filesystem."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would otherwise run as nobody
    temp = {name: base / "temp" / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    store = base / "store"
    servers = "".join(
        _server(ports[name], store, body)
        for name, body in (("rw", WRITABLE), ("ro", READ_ONLY), ("small", SMALL), ("broken", BROKEN))
    )
    return f"""{user}daemon off;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log;
events {{ worker_connections 128; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    default_type application/octet-stream;
{servers}
}}
"""


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Nginx:
    """A running nginx; ``store`` is its document root on disk (for tampering and for checking)."""

    process: subprocess.Popen[bytes]
    base: Path
    ports: dict[str, int]

    @property
    def store(self) -> Path:
        return self.base / "store"

    def url(self, kind: str = "rw", prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[kind]}/{prefix}".rstrip("/")

    def error_log(self) -> str:
        path = self.base / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(binary: str, base: Path) -> Nginx:
    """Write the config, start nginx in the foreground, and wait until every server accepts."""
    ports = {name: free_port() for name in ("rw", "ro", "small", "broken")}
    (base / "store").mkdir(parents=True)
    config = base / "nginx.conf"
    config.write_text(nginx_config(base, ports))
    log = open(base / "nginx.out", "wb")
    process = subprocess.Popen(
        [binary, "-c", str(config), "-p", str(base), "-e", str(base / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = Nginx(process, base, ports)
    deadline = time.monotonic() + START_SECONDS
    while not all(_accepting(port) for port in ports.values()):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"nginx did not start: {(base / 'nginx.out').read_text()}{server.error_log()}")
        time.sleep(0.05)
    return server


class Hanging:
    """A server that accepts connections and never answers a byte; counts what it accepted."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _address = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(connection)

    def __enter__(self) -> Hanging:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.listener.close()
        for connection in self._held:
            connection.close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def openssl_keypair(directory: Path, name: str) -> KeyPair:
    """``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout``, exactly as the README says."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True, capture_output=True)
    return KeyPair(private, public)


# --- hostile stores and a proxy, served by the test itself on 127.0.0.1 ------------------------------

DRIP_SECONDS = 0.05
MOST_DRIPPED = 2400  # a drip ends by itself after two minutes, whatever the client does
HANG_UP_SECONDS = 30.0  # how long an overflowing store waits for the client to hang up


class _Served:
    """An HTTP server on 127.0.0.1, in threads of this process while entered; each GET goes to ``answer``."""

    def __init__(self) -> None:
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.answer(self)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()


class HostileStore(_Served):
    """A store that serves a directory (as nginx would) over HTTP on 127.0.0.1, lying where a test says.

    ``lies`` maps a path under the base URL to how that object is served: ``"drip"`` (one byte every
    50 ms, then more forever, within ``MOST_DRIPPED``), ``"overflow"`` (the object and one byte more, no
    Content-Length, then nothing until the client hangs up). ``asked`` is set at the first request for a
    lying path; ``requests`` lists the path of every GET; ``hung_up`` whether a client closed an
    overflowing response without waiting for more."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.lies: dict[str, str] = {}
        self.requests: list[str] = []
        self.asked = threading.Event()
        self.hung_up = False

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.requests.append(handler.path)
        path = handler.path.lstrip("/")
        file = self.root / path
        if not file.is_file():
            handler.send_error(404)
            return
        body = file.read_bytes()
        how = self.lies.get(path)
        if how is not None:
            self.asked.set()
        handler.send_response(200)
        if how is None:
            handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        with contextlib.suppress(OSError):
            if how == "drip":
                self._drip(handler, body)
            elif how == "overflow":
                self._overflow(handler, body)
            else:
                handler.wfile.write(body)

    def _drip(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        padded = body + b" " * MOST_DRIPPED
        for index in range(MOST_DRIPPED):
            handler.wfile.write(padded[index : index + 1])
            handler.wfile.flush()
            time.sleep(DRIP_SECONDS)

    def _overflow(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        handler.wfile.write(body + b"!")
        handler.wfile.flush()
        handler.connection.settimeout(HANG_UP_SECONDS)
        try:
            self.hung_up = handler.connection.recv(1) == b""
        except TimeoutError:
            self.hung_up = False

class RecordingProxy(_Served):
    """A plain HTTP forward proxy on 127.0.0.1 that keeps every request it forwards (line and headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.seen.append(f"{handler.command} {handler.path}\n{handler.headers}")
        parts = urllib.parse.urlsplit(handler.path)
        upstream = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("proxy-connection", "connection")}
            upstream.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
            reply = upstream.getresponse()
            body = reply.read()
        finally:
            upstream.close()
        handler.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def other_python() -> str | None:
    """A CPython 3.11+ (what pipguard runs on) of another minor version than this one (on PATH, or one
    pyenv has), if any."""
    candidates = [f"python3.{minor}" for minor in range(11, 15)]
    pyenv = shutil.which("pyenv")
    if pyenv:
        listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True).stdout.split()
        for version in listed:
            prefix = subprocess.run([pyenv, "prefix", version], capture_output=True, text=True).stdout.strip()
            if prefix:
                candidates.append(str(Path(prefix) / "bin" / "python3"))
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in candidates:
        try:
            found = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = found.stdout.strip()
        if found.returncode == 0 and version != mine and tuple(map(int, version.split("."))) >= (3, 11):
            return candidate
    return None
