"""`stackops run` where it has no Kubernetes API to work with (no credentials, an unusable kubeconfig, a server that
refuses connections) stops at once with one line saying what was looked for and what to do: no traceback."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackops.drivers.kube import SERVICE_ACCOUNT_TOKEN

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: lab
  user: {{token: not-a-secret}}
contexts:
- name: lab
  context: {{cluster: lab, user: lab}}
current-context: lab
"""


def run(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`stackops run` with HOME an empty directory, outside a Pod, and `env` on top; no health nor metrics server."""
    base = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")}
    return subprocess.run([sys.executable, "-m", "stackops.cli", "run", "--standalone", "--liveness", "",
                           "--metrics-address", ""], env={**base, "HOME": str(home), **env},
                          capture_output=True, text=True, timeout=120)


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("stackops run:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_no_kubeconfig_outside_a_pod(tmp_path: Path) -> None:
    result = run(tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert "no Kubernetes credentials" in line
    assert "not in a Pod (KUBERNETES_SERVICE_HOST is not set)" in line
    assert "no kubeconfig at ~/.kube/config (KUBECONFIG is not set)" in line
    assert "set KUBECONFIG" in line and "ServiceAccount token" in line


def test_kubeconfig_named_but_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "config"
    result = run(tmp_path, KUBECONFIG=str(missing))
    assert result.returncode == 2
    assert f"no kubeconfig at KUBECONFIG={missing}" in one_line(result.stderr)


@pytest.mark.parametrize("text", ["garbage: yes\n", "clusters: [\n", "[]\n"])
def test_unusable_kubeconfig(tmp_path: Path, text: str) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(text)
    result = run(tmp_path, KUBECONFIG=str(kubeconfig))
    assert result.returncode == 2
    assert f"the kubeconfig at KUBECONFIG={kubeconfig} is not usable: " in one_line(result.stderr)


@pytest.mark.skipif(os.path.exists(SERVICE_ACCOUNT_TOKEN), reason="this machine has a ServiceAccount token")
def test_in_a_pod_without_a_service_account_token(tmp_path: Path) -> None:
    """automountServiceAccountToken: false: the Service's variables are there, the token is not."""
    result = run(tmp_path, KUBERNETES_SERVICE_HOST="10.96.0.1", KUBERNETES_SERVICE_PORT="443")
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert f"in a Pod, but no ServiceAccount token at {SERVICE_ACCOUNT_TOKEN}" in line
    assert "automountServiceAccountToken: true" in line


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port of 127.0.0.1 that is bound but not listening: connections to it are refused while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_server_refusing_connections(tmp_path: Path, refusing_port: int) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(KUBECONFIG.format(port=refusing_port))
    result = run(tmp_path, KUBECONFIG=str(kubeconfig))
    line = one_line(result.stderr)
    assert result.returncode == 1
    assert f"cannot reach the Kubernetes API server at https://127.0.0.1:{refusing_port}: " in line
    assert "Connection refused" in line
    assert "not-a-secret" not in result.stderr + result.stdout
