"""A real remote store for the tests: nginx with WebDAV PUT, as a team would run it, plus the broken ones.

One nginx (the Debian package) runs as a child of the test session, ``daemon off;``, with its pid, logs
and temp paths under the session's tmp dir, on 127.0.0.1. Its servers share one document root:

- ``url``: GET, HEAD, PUT (``dav_methods PUT; create_full_put_path on;``), the store a fleet uses;
- ``read_only_url``: GET and HEAD only (``limit_except GET HEAD { deny all; }``: 403 on PUT);
- ``small_url``: PUT of at most 1 kB (413 for a wheel);
- ``broken_url``: 500 for everything.

``Hanging`` accepts connections and never answers (a server that is up but stuck), counting connections.
Keys come from the real ``openssl``, as a user would make them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

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
