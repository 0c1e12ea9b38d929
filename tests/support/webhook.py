"""A local webhook for the maintenance notices of KvmHost and XenPool (spec.maintenance.notifications): the e2e
tests of both see what it heard and can make it refuse a notice."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class NoticeReceiver:
    """An HTTP endpoint on 127.0.0.1 giving each notice POSTed to it (its JSON body) to `keep`, in the request's
    thread, before it answers: HTTP 503 for a (host, phase) in `refuse`, else 204. Serves from `start` (or `with`)
    to `close`."""

    def __init__(self) -> None:
        self.refuse: set[tuple[str, str]] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.keep(body)
                self.send_response(503 if (body["host"], body["phase"]) in receiver.refuse else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def keep(self, body: dict[str, Any]) -> None:
        """What the test keeps of a notice, with what it wants to know of the moment it arrived."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notices?token=t0ken"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
