"""The operator's two core API reads (drivers/kube.py CoreReads) make the request CoreV1Api makes and return its
models and errors, without loading CoreV1Api (30,000 generated lines, about 20 MiB). Against a local HTTP server
that answers like the API server."""
from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackops.drivers.kube import CoreReads

SECRET = {"apiVersion": "v1", "kind": "Secret",
          "metadata": {"name": "ssh", "namespace": "ops", "annotations": {"stackops.io/allowed-destinations": "10.0.0.1"}},
          "data": {"ssh-privatekey": base64.b64encode(b"key").decode()}}
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "repo", "namespace": "ops"},
              "data": {"key.asc": "PUBLIC"}}


class APIServer(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str | None]] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: APIServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        found = {"/api/v1/namespaces/ops/secrets/ssh": SECRET,
                 "/api/v1/namespaces/ops/configmaps/repo": CONFIG_MAP}.get(self.path)
        status, body = (200, found) if found else (404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[APIServer]:
    server = APIServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def reads(server: APIServer) -> CoreReads:
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}",
                                         api_key={"BearerToken": "t0k3n"}, api_key_prefix={"BearerToken": "Bearer"})
    return CoreReads(client.ApiClient(configuration))


def test_a_secret_and_a_config_map_are_read_as_corev1api_reads_them(server: APIServer) -> None:
    core = reads(server)
    secret = core.read_namespaced_secret("ssh", "ops")
    assert isinstance(secret, client.V1Secret)
    assert secret.data == SECRET["data"] and secret.metadata.annotations == SECRET["metadata"]["annotations"]
    config_map = core.read_namespaced_config_map("repo", "ops")
    assert isinstance(config_map, client.V1ConfigMap) and config_map.data == {"key.asc": "PUBLIC"}
    assert server.requests == [("/api/v1/namespaces/ops/secrets/ssh", "Bearer t0k3n"),
                               ("/api/v1/namespaces/ops/configmaps/repo", "Bearer t0k3n")]


def test_an_error_status_is_an_api_exception(server: APIServer) -> None:
    with pytest.raises(ApiException) as raised:
        reads(server).read_namespaced_secret("gone", "ops")
    assert raised.value.status == 404


def test_corev1api_is_not_loaded() -> None:
    """In a process of its own: making the reads loads neither kubernetes.client.api.core_v1_api nor its models'
    whole set."""
    code = ("import sys; from kubernetes import client; from stackops.drivers.kube import CoreReads; "
            "CoreReads(client.ApiClient()); "
            "print('kubernetes.client.api.core_v1_api' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
