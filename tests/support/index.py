"""A PEP 503 simple index over loopback HTTP, serving a directory of dists.

Tests use it to exercise pip's real network path (links with hashes, basic
auth, per-file hit counts) without leaving the machine.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

from .projects import normalized

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


def project_of(filename: str) -> str | None:
    """Normalized project name a dist filename belongs to (None if not a dist)."""
    if filename.endswith(".whl"):
        return normalized(filename.split("-")[0])
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            return normalized(filename[: -len(suffix)].rsplit("-", 1)[0])
    return None


class IndexServer:
    """Serve /simple/ (PEP 503) and /files/ from directory on 127.0.0.1:<ephemeral>."""

    def __init__(self, directory: Path, auth: tuple[str, str] | None = None,
                 hashes: bool = True) -> None:
        self.directory = Path(directory)
        self.auth = auth
        self.hashes = hashes
        self.hits: dict[str, int] = {}
        self.user_agents: dict[str, set[str]] = {}  # by path: the User-Agent headers it was asked with
        # Paths answered only once a condition holds (hold()), and whether it did before the deadline.
        self._holds: dict[str, tuple[Callable[[], bool], float]] = {}
        self.held_until_met: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # quiet
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> IndexServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name=f"IndexServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> IndexServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- URLs
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Index URL for --index-url (credentials not included)."""
        return f"{self.base}/simple/"

    @property
    def files_url(self) -> str:
        """Flat listing of every dist, for --find-links."""
        return f"{self.base}/files/"

    @property
    def auth_url(self) -> str:
        """Index URL with the basic-auth credentials embedded, as pip takes them."""
        if self.auth is None:
            return self.url
        user, token = (quote(part, safe="") for part in self.auth)
        return f"http://{user}:{token}@127.0.0.1:{self.port}/simple/"

    # -- content
    def _record_hit(self, path: str, user_agent: str | None) -> None:
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            self.user_agents.setdefault(path, set()).add(user_agent or "")

    def hold(self, path: str, until: Callable[[], bool], timeout: float = 60.0) -> None:
        """Answer ``path`` only once ``until()`` holds (checked every 20 ms), or after ``timeout``;
        ``held_until_met[path]`` says which it was."""
        self._holds[path] = (until, timeout)

    def _wait_for_hold(self, path: str) -> None:
        if path not in self._holds:
            return
        until, timeout = self._holds[path]
        deadline = time.monotonic() + timeout
        while not (met := until()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.held_until_met.setdefault(path, met)

    def dists(self, project: str | None = None) -> list[Path]:
        """Dist files on disk (read per request, so tests may add files while serving)."""
        want = normalized(project) if project is not None else None
        return sorted(
            p for p in self.directory.iterdir()
            if p.is_file() and project_of(p.name) is not None
            and (want is None or project_of(p.name) == want)
        )

    def _anchor(self, path: Path, href_prefix: str) -> str:
        href = href_prefix + quote(path.name)
        if self.hashes:
            href += "#sha256=" + hashlib.sha256(path.read_bytes()).hexdigest()
        return f'<a href="{html.escape(href)}">{html.escape(path.name)}</a><br/>'

    def render(self, path: str) -> bytes | None:
        """HTML for an index path, or None for 404."""
        if path == "/simple/":
            names = sorted({project_of(p.name) for p in self.dists()} - {None})
            body = "".join(f'<a href="{n}/">{n}</a><br/>' for n in names)
        elif m := re.fullmatch(r"/simple/([^/]+)/", path):
            files = self.dists(m.group(1))
            if not files:
                return None
            body = "".join(self._anchor(p, "../../files/") for p in files)
        elif path == "/files/":
            body = "".join(self._anchor(p, "") for p in self.dists())
        else:
            return None
        return f"<!DOCTYPE html><html><body>{body}</body></html>".encode()

    def authorized(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        expected = base64.b64encode(":".join(self.auth).encode()).decode()
        return header == f"Basic {expected}"


def _make_handler(server: IndexServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: tests read hits, not stderr

        def _send(self, status: int, body: bytes, ctype: str = "text/html",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            server._record_hit(path, self.headers.get("User-Agent"))
            if not server.authorized(self.headers.get("Authorization")):
                self._send(401, b"unauthorized", "text/plain",
                           {"WWW-Authenticate": 'Basic realm="pipguard-fixture"'})
                return
            if path.startswith("/files/") and path != "/files/":
                name = path[len("/files/"):]
                file = server.directory / name
                if "/" in name or not file.is_file():
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, file.read_bytes(), "application/octet-stream")
                return
            if path == "/simple":
                path = "/simple/"
            elif re.fullmatch(r"/simple/[^/]+", path):
                path += "/"
            server._wait_for_hold(path)
            body = server.render(path)
            if body is None:
                self._send(404, b"not found", "text/plain")
            else:
                self._send(200, body)

        do_HEAD = do_GET

    return Handler
