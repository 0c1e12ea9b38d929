"""Shared by the SystemVMTemplate tests, beside `stackops_lab.rollout` (the spec, Secrets, status loop and audit
reading they share with bench/router_rollout.py): which routers of a redundant pair rebooted, and a webhook that
records the tenant notices."""
from __future__ import annotations

import http.server
import json
import threading
import time
from collections import defaultdict
from typing import Any


def reboots_by_pair(audit: list[dict[str, Any]]) -> dict[str, list[str]]:
    pairs: dict[str, list[str]] = defaultdict(list)
    for entry in audit:
        if entry.get("event") == "router.reboot.start" and entry.get("pair"):
            pairs[entry["pair"]].append(entry["router"])
    return pairs


# ---------------------------------------------------------------------------------------------------- webhook


class Webhook:
    """A local HTTP endpoint that records the JSON notices it receives, in arrival order."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.times: list[float] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.notices.append(json.loads(body))
                recorder.times.append(time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # maxUnavailable notices arrive at once; the default backlog of 5 drops some

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notices?token=abc"

    def __enter__(self) -> "Webhook":
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
