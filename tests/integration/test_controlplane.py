"""The test cluster is a real API server: authentication, RBAC, CRD validation; and the lab cleans up."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from support.kube import Kube

REPO = Path(__file__).resolve().parents[2]
SOURCES = os.pathsep.join([str(REPO / "operator"), str(REPO / "lab")])  # this checkout's stackops and stackops_lab

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer, minimum: 1}}
"""

WIDGET = """
apiVersion: {group}/v1
kind: Widget
metadata: {{name: {name}, namespace: default}}
spec: {{size: {size}}}
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tls_context(kubeconfig: str) -> ssl.SSLContext:
    cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    if cluster.get("insecure-skip-tls-verify"):
        return ssl._create_unverified_context()
    if "certificate-authority-data" in cluster:
        return ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return ssl.create_default_context(cafile=cluster.get("certificate-authority"))


def http_status(kube: Kube, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(kube.server + path, headers=headers)
    try:
        with urllib.request.urlopen(request, context=tls_context(kube.kubeconfig), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_admin_token_is_accepted(kube: Kube) -> None:
    assert http_status(kube, "/api/v1/namespaces/default/pods", kube.admin_token or None) == 200
    assert "default" in kube.kubectl("get", "namespaces", "-o", "name").stdout


def test_requests_without_a_known_token_are_rejected(kube: Kube) -> None:
    # Our control plane runs with --anonymous-auth=false; other clusters may answer 403 to anonymous.
    anonymous = {401} if kube.provider == "local" else {401, 403}
    assert http_status(kube, "/api/v1/namespaces/default/pods", None) in anonymous
    assert http_status(kube, "/api/v1/namespaces/default/pods", "not-a-known-token") == 401


def test_service_account_needs_a_role_binding(kube: Kube, sa_token: Callable[..., str]) -> None:
    namespace = unique("rbac")
    kube.kubectl("create", "namespace", namespace)
    kube.kubectl("create", "serviceaccount", "robot", f"--namespace={namespace}")
    token = sa_token(namespace, "robot")

    denied = kube.kubectl("get", "pods", f"--namespace={namespace}", as_token=token, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f"system:serviceaccount:{namespace}:robot" in denied.stderr

    kube.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", f"--namespace={namespace}")
    kube.kubectl(
        "create", "rolebinding", "robot-reads-pods", "--role=pod-reader",
        f"--serviceaccount={namespace}:robot", f"--namespace={namespace}",
    )
    allowed = kube.kubectl("get", "pods", f"--namespace={namespace}", as_token=token, check=False)
    assert allowed.returncode == 0, allowed.stderr


def test_crd_schema_minimum_rejects_a_bad_object(kube: Kube) -> None:
    group = f"{unique('lab')}.stackops.test"
    kube.kubectl("apply", "-f", "-", input=CRD.format(group=group))
    try:
        kube.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
        kube.kubectl("apply", "-f", "-", input=WIDGET.format(group=group, name="good", size=3))
        bad = kube.kubectl("apply", "-f", "-", input=WIDGET.format(group=group, name="bad", size=0), check=False)
        assert bad.returncode != 0
        assert "spec.size" in bad.stderr
        assert "greater than or equal to 1" in bad.stderr
    finally:
        kube.kubectl("delete", f"crd/widgets.{group}", "--wait=false", check=False)


GADGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                text: {{type: string}}
                count: {{type: integer}}
                ratio: {{type: number}}
                enabled: {{type: boolean}}
                tags: {{type: array, items: {{type: string}}}}
                ports: {{type: array, items: {{type: integer}}}}
                nested:
                  type: object
                  properties:
                    name: {{type: string}}
                    size: {{type: integer}}
                    active: {{type: boolean}}
                    deeper: {{type: object, properties: {{note: {{type: string}}}}}}
"""

ZERO_SPEC = {
    "text": "",
    "count": 0,
    "ratio": 0,
    "enabled": False,
    "tags": [],
    "ports": [],
    "nested": {},
}
ZERO_FILLED_SPEC = {
    "text": "",
    "count": 0,
    "ratio": 0,
    "enabled": False,
    "tags": ["", "x"],
    "ports": [0, 1],
    "nested": {"name": "", "size": 0, "active": False, "deeper": {"note": ""}},
}
NONZERO_SPEC = {
    "text": "hello",
    "count": 3,
    "ratio": 0.5,
    "enabled": True,
    "tags": ["a"],
    "ports": [80],
    "nested": {"name": "n", "size": 2, "active": True, "deeper": {"note": "deep"}},
}


def gadget(group: str, name: str, spec: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
    )


def test_custom_resources_keep_zero_values(kube: Kube) -> None:
    """Empty strings, 0, false, [] and {} pass schema validation and read back unchanged.

    Regression: kube-apiserver 1.20 built with Go >= 1.16 took every "" in a custom resource for
    null (`spec.text in body must be of type string: "null"`); see `fix_zero_value_validation`.
    """
    group = f"{unique('zero')}.stackops.test"
    kube.kubectl("apply", "-f", "-", input=GADGET_CRD.format(group=group))
    try:
        kube.kubectl("wait", "--for=condition=Established", f"crd/gadgets.{group}", "--timeout=60s")
        objects = {"zeros": ZERO_SPEC, "filled": ZERO_FILLED_SPEC, "values": NONZERO_SPEC}
        for name, spec in objects.items():
            kube.kubectl("apply", "-f", "-", input=gadget(group, name, spec))
        # Updates are validated too: turn every value of `values` into a zero value.
        kube.kubectl("apply", "-f", "-", input=gadget(group, "values", ZERO_FILLED_SPEC))
        objects["values"] = ZERO_FILLED_SPEC

        for name, spec in objects.items():
            stored = json.loads(kube.kubectl("get", f"gadgets.{group}", name, "-o", "json").stdout)
            assert stored["spec"] == spec, name
    finally:
        kube.kubectl("delete", f"crd/gadgets.{group}", "--wait=false", check=False)


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `stackops lab …` in a separate process, as a user would (the command found by the lab's entry point)."""
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env["PYTHONPATH"] = SOURCES
    return subprocess.run(
        [sys.executable, "-m", "stackops.cli", "lab", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def test_lab_up_status_down_leaves_nothing_behind(tmp_path: Path, kube: Kube) -> None:
    lab_dir = tmp_path / "lab"
    up = lab("--dir", str(lab_dir), "up", "--provider=local")
    assert up.returncode == 0, up.stderr
    kubeconfig = up.stdout.strip().splitlines()[-1]
    assert Path(kubeconfig).is_file()
    state = json.loads((lab_dir / "controlplane" / "state.json").read_text())
    assert set(state["pids"]) == {"etcd", "kube-apiserver"}
    namespaces = subprocess.run(
        [kube.kubectl_binary, f"--kubeconfig={kubeconfig}", "get", "namespaces", "-o", "name"],
        capture_output=True, text=True, check=True,
    )
    assert "namespace/default" in namespaces.stdout

    again = lab("--dir", str(lab_dir), "up", "--provider=local")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == kubeconfig
    assert json.loads((lab_dir / "controlplane" / "state.json").read_text())["pids"] == state["pids"]
    assert lab("--dir", str(lab_dir), "status").returncode == 0

    down = lab("--dir", str(lab_dir), "down")
    assert down.returncode == 0, down.stderr
    assert not lab_dir.exists()
    assert processes_mentioning(str(lab_dir)) == []
    assert lab("--dir", str(lab_dir), "status").returncode == 1
    assert lab("--dir", str(lab_dir), "down").returncode == 0
