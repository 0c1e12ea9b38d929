"""GitHub over HTTP for the lab's CloudStack-like repository (fixture.py): clones and pull-request patches.

`ReleaseServer(fixture)` serves, on `bind:port` (port 0: a free one), from threads of this process:

- `/apache/cloudstack.git/…`: the bare repository with Git's dumb HTTP protocol (its files as they are:
  `info/refs`, `HEAD`, `objects/…`; the fixture runs `git update-server-info` after every change), so
  `git clone http://<address>:<port>/apache/cloudstack.git` and `git fetch` work from anywhere that reaches the
  address. Read-only: a push is refused.
- `/apache/cloudstack/pull/<n>.patch`: like github.com, a 302 to `/raw/apache/cloudstack/pull/<n>.patch`, which
  answers the patch (`git format-patch --stdout` of the pull request's commits); 404 for a number the fixture
  does not have. `curl -fsSL <repository without .git>/pull/<n>.patch` (or `wget`) follows the redirect.

Lab hosts do not reach the machine's 127.0.0.1 (a host's loopback is its own): bind the server to the lab's
bridge address, which every host reaches, `LabHost.gateway` (10.250.<slot>.1), e.g.
`ReleaseServer(fixture, bind=host.gateway)`; `repository_url` and `patch_url(n)` then name that address. Every
request is logged (`requests`: method, path, status) for tests.
"""

from __future__ import annotations

import http.server
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from stackops_lab.release.fixture import SourceFixture

OWNER_REPO = "apache/cloudstack"
GIT_PREFIX = f"/{OWNER_REPO}.git/"
PULL = re.compile(rf"^/{OWNER_REPO}/pull/(\d+)\.patch$")
RAW_PULL = re.compile(rf"^/raw/{OWNER_REPO}/pull/(\d+)\.patch$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    status: int


class ReleaseServer:
    """The fixture's repository and patches over HTTP (a context manager: started on enter, stopped on exit)."""

    def __init__(self, fixture: SourceFixture, bind: str = "127.0.0.1", port: int = 0) -> None:
        self.fixture = fixture
        self.bind = bind
        self.port = port
        self.lock = threading.Lock()
        self.log: list[Request] = []
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ReleaseServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.answer(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                server.answer(self, body=False)

            def do_POST(self) -> None:  # noqa: N802 - smart HTTP (push or fetch): not served
                server.reply(self, 403, b"read-only dumb HTTP repository\n", "text/plain", body=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((self.bind, self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="release-server", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None

    def __enter__(self) -> ReleaseServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """`http://<bind>:<port>` (the port chosen once started)."""
        return f"http://{self.bind}:{self.port}"

    @property
    def repository_url(self) -> str:
        """What to `git clone`: `http://<bind>:<port>/apache/cloudstack.git`."""
        return f"{self.url}/{OWNER_REPO}.git"

    def patch_url(self, number: int) -> str:
        """GitHub's patch URL of pull request `number`: `http://<bind>:<port>/apache/cloudstack/pull/<n>.patch`."""
        return f"{self.url}/{OWNER_REPO}/pull/{number}.patch"

    @property
    def requests(self) -> list[Request]:
        """Every request so far, in order."""
        with self.lock:
            return list(self.log)

    # ------------------------------------------------------------------ answers

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        if (match := PULL.match(path)) is not None:
            if int(match.group(1)) in self.fixture.patches:
                self.reply(handler, 302, b"", "text/html", body, location=f"/raw{path}")
            else:
                self.reply(handler, 404, b"Not Found\n", "text/plain", body)
        elif (match := RAW_PULL.match(path)) is not None:
            patch = self.fixture.patches.get(int(match.group(1)))
            if patch is None:
                self.reply(handler, 404, b"Not Found\n", "text/plain", body)
            else:
                self.reply(handler, 200, patch, "text/plain; charset=utf-8", body)
        elif path.startswith(GIT_PREFIX):
            file = self.repository_file(path.removeprefix(GIT_PREFIX))
            if file is None:
                self.reply(handler, 404, b"Not Found\n", "text/plain", body)
            else:
                binary = path.startswith(f"{GIT_PREFIX}objects/") and not path.startswith(f"{GIT_PREFIX}objects/info/")
                content_type = "application/octet-stream" if binary else "text/plain"
                self.reply(handler, 200, file.read_bytes(), content_type, body)
        else:
            self.reply(handler, 404, b"Not Found\n", "text/plain", body)

    def repository_file(self, relative: str) -> Path | None:
        """A regular file of the bare repository (nothing outside it, no directory listing)."""
        root = self.fixture.bare.resolve()
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def reply(self, handler: http.server.BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
              body: bool, location: str | None = None) -> None:
        with self.lock:
            self.log.append(Request(handler.command, urlsplit(handler.path).path, status))
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Cache-Control", "no-cache")
        if location is not None:
            handler.send_header("Location", location)
        handler.end_headers()
        if body:
            handler.wfile.write(data)
