"""HTTP plumbing: one ThreadingHTTPServer per lab host, on the host's own address, answering XML-RPC on
POST / and POST /RPC2 (xapi's HTTP server takes both; the Python SDK posts to the URL's path, /RPC2 for a
bare http://host:port). Every answer is HTTP 200 text/xml holding the XenAPI envelope; nothing is ever an
XML-RPC fault. JSON-RPC (/jsonrpc) is not served. Plain HTTP, unless the lab has TLS (tls.py): then every
accepted connection is wrapped with the host's current server context and does its handshake in its own thread
(a client that fails it, or speaks plain HTTP, is disconnected without an answer; the audit log's
tls.handshake_failed says why).

A host that is killed (or whose xapi is stopped) stops listening (connection refused) and its open connections
are shut down, so a client sees what it would see of a dead host.

A host standing in a lab host's dom0 (dom0.py) listens inside that lab host's network namespace: the socket is
created by a short-lived thread that enters the namespace (setns(2)) and keeps belonging to it once bound; the
usual threads serve it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import socketserver
import ssl
import threading
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from xml.parsers.expat import ExpatError

from stackops_lab.xenapi.calls_patch import pool_patch_upload
from stackops_lab.xenapi.calls_update import import_raw_vdi
from stackops_lab.xenapi.dispatch import failure
from stackops_lab.xenapi.tls import HANDSHAKE_TIMEOUT

if TYPE_CHECKING:
    from stackops_lab.xenapi.simulator import XenLab
    from stackops_lab.xenapi.state import Machine

log = logging.getLogger(__name__)
RPC_PATHS = ("/", "/RPC2")
CLONE_NEWNET = 0x40000000


def netns_socket(netns_path: str, address: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on (address, port) in the network namespace at `netns_path` (needs root): bound
    by a thread of its own that enters the namespace and ends there (setns changes the calling thread only)."""
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def bind_inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns {netns_path}: {os.strerror(error)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(backlog)
            except OSError:
                sock.close()
                raise
            result.append(sock)
        except BaseException as error:  # handed to the caller's thread
            errors.append(error)

    thread = threading.Thread(target=bind_inside, name="xenapi-lab-netns-bind", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def adopt_socket(server: socketserver.TCPServer, sock: socket.socket) -> None:
    """Serve `sock` (already bound and listening) from `server`, made with bind_and_activate=False."""
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    if isinstance(server, ThreadingHTTPServer):
        server.server_name, server.server_port = server.server_address[0], server.server_address[1]


class HostServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], lab: XenLab, machine: Machine, netns: str | None = None) -> None:
        self.lab = lab
        self.machine = machine
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        if netns is None:
            super().__init__(address, Handler)
            return
        super().__init__(address, Handler, bind_and_activate=False)
        adopt_socket(self, netns_socket(netns, address[0], address[1], self.request_queue_size))

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, and with TLS wrap the connection (the handshake waits for finish_request, off the accept loop)."""
        connection, address = super().get_request()
        tls = self.lab.tls
        if tls is None:
            return connection, address
        try:
            return tls.context(self.machine.name).wrap_socket(connection, server_side=True,
                                                              do_handshake_on_connect=False), address
        except (OSError, ValueError):
            connection.close()
            raise OSError("TLS wrap failed") from None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(HANDSHAKE_TIMEOUT)
                request.do_handshake()
                request.settimeout(None)
            except OSError as error:  # ssl.SSLError included: a plain HTTP client, an unknown CA, a timeout
                log.debug("%s: TLS handshake with %s failed: %s", self.machine.name, client_address, error)
                self.lab.audit_log.record("tls.handshake_failed", host=self.machine.name, error=str(error))
                return
        super().finish_request(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: HostServer
    server_version = "xapi/1.20"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("%s %s " + format, self.server.machine.name, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.answer(200, "text/html", b"<html><body>XenServer lab host</body></html>")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.path.split("?")[0] not in RPC_PATHS:
            self.answer(404, "text/plain", b"not found")
            return
        try:
            params, method = xmlrpc.client.loads(body)
        except (ExpatError, ValueError, TypeError) as error:
            envelope = failure(["XMLRPC_UNMARSHAL_FAILURE", str(body[:200], "utf-8", "replace"), str(error)])
        else:
            answer = self.server.lab.dispatcher.handle(self.server.machine, method or "", params)
            if answer is None:  # the host died under the call: no answer at all
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            envelope = answer
        payload = xmlrpc.client.dumps((envelope,), methodresponse=True, allow_none=False).encode("utf-8")
        self.answer(200, "text/xml", payload)

    def do_PUT(self) -> None:  # noqa: N802
        """Uploads: PUT /import_raw_vdi (calls_update.py) and /pool_patch_upload (calls_patch.py)."""
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length is not None and int(length) > 0 else (
            b"" if length is not None else None)
        uploads = {"/import_raw_vdi": import_raw_vdi, "/pool_patch_upload": pool_patch_upload}
        upload = uploads.get(self.path.split("?")[0])
        if upload is None:
            self.answer(404, "text/plain", b"not found")
            return
        status, headers = upload(self.server.lab, self.server.machine, self.path, self.headers, body)
        self.close_connection = True  # xapi answers an import with keep_alive false
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass

    def answer(self, status: int, content_type: str, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class Listener:
    """A host's endpoint: started when its xapi listens, stopped when the host dies or its xapi stops.
    `netns`: the path of the network namespace to listen in (a dom0 stand-in's), else the machine's."""

    def __init__(self, lab: XenLab, machine: Machine, port: int, netns: str | None = None) -> None:
        self.lab = lab
        self.machine = machine
        self.port = port
        self.netns = netns
        self.server: HostServer | None = None
        self.thread: threading.Thread | None = None

    def bind(self) -> int:
        if self.server is None:
            self.server = HostServer((self.machine.address, self.port), self.lab, self.machine, self.netns)
            self.port = self.server.server_address[1]
        return self.port

    def start(self) -> None:
        self.bind()
        if self.thread is None and self.lab.running:
            assert self.server is not None
            self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                           name=f"xenapi-lab-{self.machine.name}", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        server, thread = self.server, self.thread
        self.server, self.thread = None, None
        if server is None:
            return
        if thread is not None:
            server.shutdown()
            thread.join(timeout=5)
        server.server_close()
        server.close_connections()
