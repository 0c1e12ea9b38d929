"""HTTP plumbing: a ThreadingHTTPServer answering

- GET/POST /client/api   the CloudStack API (parameters from the query string and, for POST, a form body;
                         the query string wins, as ApiServlet's utf8Fixup makes it)
- GET /images/<file>     lab system VM images (images.py)
- GET /lab/health        200 {"status": "ok"}
- GET /lab/audit         the audit log (JSON list)
- GET /lab/access        the access log: each request line (method, path and query string) and status
- GET/POST /lab/faults   the faults (JSON); POST a JSON object of fields to change
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from stackops_lab.cloudstack import images
from stackops_lab.cloudstack.api import JSON_TYPE, json_body

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

log = logging.getLogger(__name__)
API_PATH = "/client/api"


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: CloudStackSimulator) -> None:
        self.sim = sim
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    server: SimulatorServer
    server_version = "Apache-Coyote/1.1"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The access log line, as a web server or proxy in front of CloudStack writes it: the request line, URL
        and query string included (kept by the simulator: `access_log()`)."""
        self.server.sim.access.append(f"{self.requestline} {code}")
        super().log_request(code, size)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.route("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self.route("HEAD")

    def route(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self.read_body()
        path = parts.path.rstrip("/") or "/"
        if path == API_PATH and method in ("GET", "POST"):
            params: dict[str, str] = {}
            if method == "POST" and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            in_url = parse_qsl(parts.query, keep_blank_values=True)
            params.update(in_url)
            status, content_type, payload = self.server.sim.api.handle(params, method,
                                                                       tuple(name for name, _ in in_url))
            self.answer(status, content_type, payload)
        elif path.startswith("/images/") and method in ("GET", "HEAD"):
            name = path[len("/images/"):]
            try:
                data = images.image_bytes(name)
            except KeyError:
                self.answer(404, JSON_TYPE, json_body({"error": f"no lab image {name!r}"}))
                return
            self.answer(200, "application/octet-stream", data, head=method == "HEAD")
        elif path == "/lab/health":
            self.answer(200, JSON_TYPE, json_body({"status": "ok", "endpoint": self.server.sim.endpoint}))
        elif path == "/lab/audit" and method == "GET":
            self.answer(200, JSON_TYPE, json_body(self.server.sim.audit()))
        elif path == "/lab/access" and method == "GET":
            self.answer(200, JSON_TYPE, json_body(self.server.sim.access_log()))
        elif path == "/lab/faults" and method in ("GET", "POST"):
            faults = self.server.sim.faults
            if method == "POST":
                try:
                    changes = json.loads(body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("a JSON object of fault fields is expected")
                    faults.update(changes)
                except (TypeError, ValueError) as error:
                    self.answer(400, JSON_TYPE, json_body({"error": str(error)}))
                    return
                self.server.sim.audit_log.record("faults.updated", **faults.to_json())
            self.answer(200, JSON_TYPE, json_body(faults.to_json()))
        else:
            self.answer(404, JSON_TYPE, json_body({"error": f"nothing at {method} {parts.path}"}))

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def answer(self, status: int, content_type: str, payload: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)
