"""The lab's XenServer update files: what a lab pool accepts where a real one takes an `.iso` (7.1+ update) or an
`.xsupdate` (6.x patch), and a helper that builds them and serves them by URL and SHA-256, as the operator fetches
updates.

A real update is an ISO holding `update.xml` — `<update uuid name-label version installation-size key
after-apply-guidance enforce-homogeneity><name-description>…` (xapi_pool_update.ml parse_update_info) — and a
signed yum repository whose dependency resolution (dnf) and precheck script decide the precheck's verdict. The lab
file carries the same facts and the ones dnf would find, as one UTF-8 JSON object:

    {"format": "stackops-lab-update/1",      # required, exactly this
     "uuid": "…", "name_label": "XS82E031", "name_description": "…", "version": "1.0",
     "installation_size": 104857600,          # bytes; above a host's dom0 free space: ..._OUT_OF_SPACE
     "after_apply_guidance": ["restartHost"], # ⊆ restartHVM, restartPV, restartHost, restartXAPI
     "key": "RPM-GPG-KEY-lab",                # "" unsigned; a key the host has not imported: ..._GPGKEY_NOT_IMPORTED
     "enforce_homogeneity": false,
     "requires": ["XS82E030"],                # name_labels of updates that must be applied first
     "conflicts": ["XS82E029-alt"],           # name_labels of updates that must not be applied
     "server_version": "8.2.1",               # the host product_version it is for; "" for any
     "livepatch": "",                         # "", "complete" or "incomplete": the precheck's ok_livepatch_*
     "requires_no_running_vms": false}        # 6.x patches only: PATCH_PRECHECK_FAILED_VM_RUNNING

The same file is a 6.x patch (`.xsupdate`) when uploaded to a 6.x lab pool with PUT /pool_patch_upload
(calls_patch.py); there `requires` may name prerequisites by uuid too, as 6.x patches do.

Missing optional keys take the values above' neutral forms ("", [], 0, false). A file that is not such an object
is refused by pool_update.introduce with INVALID_UPDATE, as xapi refuses an ISO without a valid update.xml.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FORMAT = "stackops-lab-update/1"
LAB_KEY = "RPM-GPG-KEY-lab"  # the key every lab host has imported
GUIDANCE = ("restartHVM", "restartPV", "restartHost", "restartXAPI")


class InvalidUpdateFile(ValueError):
    """Not a lab update file; the message is xapi's INVALID_UPDATE parameter."""


@dataclass
class UpdateFile:
    name_label: str
    version: str = "1.0"
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    name_description: str = ""
    installation_size: int = 1048576
    after_apply_guidance: list[str] = field(default_factory=list)
    key: str = LAB_KEY
    enforce_homogeneity: bool = False
    requires: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    server_version: str = ""
    livepatch: str = ""
    requires_no_running_vms: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True).encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def parse(content: bytes) -> UpdateFile:
    """The update a file holds; InvalidUpdateFile with xapi's message when it holds none."""
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidUpdateFile("missing update document (update.xml) in the package.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidUpdateFile("missing update document (update.xml) in the package.")
    for name in ("uuid", "name_label", "version"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise InvalidUpdateFile(f"missing <{name.replace('_', '-')}> in update.xml")
    try:
        uuidlib.UUID(data["uuid"])
    except ValueError:
        raise InvalidUpdateFile("missing <uuid> in update.xml") from None
    known = {name: data[name] for name in UpdateFile.__dataclass_fields__ if name in data}
    update = UpdateFile(**known)
    if any(g not in GUIDANCE for g in update.after_apply_guidance) or update.livepatch not in ("", "complete",
                                                                                              "incomplete"):
        raise InvalidUpdateFile("Please upload a valid package.")
    return update


class UpdateServer:
    """Serves update files over plain HTTP on 127.0.0.1 (GET /<name>.iso), for a test or an e2e fixture whose
    operator downloads updates by URL and checks their SHA-256:

        with UpdateServer() as server:
            url, sha256 = server.add(UpdateFile("XS82E031", after_apply_guidance=["restartHost"]))
    """

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []  # paths asked for, in order
        files, requests = self.files, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                requests.append(self.path)
                body = files.get(self.path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="lab-update-server", daemon=True)

    def add(self, update: UpdateFile, name: str | None = None) -> tuple[str, str]:
        """Serve `update`; its URL and SHA-256."""
        filename = f"{name or update.name_label}.iso"
        self.files[filename] = update.to_bytes()
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{filename}", update.sha256

    def __enter__(self) -> UpdateServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
