"""The operator against a real API server, under exactly the deploy/ RBAC (a ServiceAccount token, not admin).

- every example of deploy/examples/ applies and gets observedGeneration and honest conditions;
- a paused object is not written to at all, and catches up when unpaused;
- a spec the schema admits but the models refuse (cross-field) becomes Stalled/InvalidSpec;
- a missing Secret is reported and recovered from without intervention;
- Secret values never reach status, Events or the log; the operator never hits a 403.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch

from stackops_lab import operator as lab_operator
from support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"
KINDS = ("xenpools", "kvmhosts", "systemvmtemplates", "cloudstackreleases")
CLOSED_PORT = 9  # discard: nothing listens there on this machine
CLOSED_URL = f"https://127.0.0.1:{CLOSED_PORT}/client/api"  # https: a plain-HTTP CloudStack URL is refused
UNREACHABLE = {"kvmhosts": "Unreachable", "systemvmtemplates": "CloudStackUnreachable",
               "xenpools": "InvalidCA",  # the example's CA is a placeholder
               "cloudstackreleases": "Unreachable"}


def example_documents() -> list[dict[str, Any]]:
    """deploy/examples/, with every host address pointed at a closed loopback port: the examples name real-looking
    production addresses, and tests send traffic only to this machine and its lab namespaces."""
    documents = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    ssh_secrets = set()
    for document in documents:
        if document.get("kind") == "XenPool":  # every member on a loopback address, its XenAPI port closed
            for index, member in enumerate(document["spec"]["members"]):
                member["address"] = f"127.0.0.{index + 1}"
            document["spec"]["xenapiPort"] = CLOSED_PORT
        if document.get("kind") == "KvmHost":
            document["spec"]["address"] = "127.0.0.1"
            document["spec"]["ssh"]["port"] = CLOSED_PORT
            ssh_secrets.add(document["spec"]["ssh"]["privateKeySecretRef"]["name"])
        if document.get("kind") == "CloudStackRelease":  # the build host
            builder = document["spec"]["builder"]["ssh"]
            builder["address"] = "127.0.0.1"
            builder["ssh"]["port"] = CLOSED_PORT
            ssh_secrets.add(builder["ssh"]["privateKeySecretRef"]["name"])
    for document in documents:  # a real (throw-away) key instead of the placeholder, so the driver gets to connect
        if document.get("kind") == "Secret" and document["metadata"]["name"] in ssh_secrets:
            document["stringData"] = {"ssh-privatekey": throwaway_private_key()}
        elif document.get("kind") == "Secret" and "url" in document.get("stringData", {}):  # CloudStack, webhook
            document["stringData"]["url"] = CLOSED_URL
        annotations = document.get("metadata", {}).get("annotations") or {}
        if "stackops.io/allowed-destinations" in annotations:  # the credentials follow the addresses to loopback
            annotations["stackops.io/allowed-destinations"] = f"127.0.0.0/24, {CLOSED_URL}"
    return documents


def throwaway_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def get(kube: Any, resource: str, namespace: str, name: str) -> dict[str, Any]:
    return json.loads(kube.kubectl("get", resource, name, "-n", namespace, "-o", "json").stdout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return item
    return None


def reconciled(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


@pytest.fixture(scope="module")
def examples(kube: Any, operator: lab_operator.LocalOperator) -> list[dict[str, Any]]:
    documents = example_documents()
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    return documents


def example_objects(documents: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    found = []
    for d in documents:
        if d.get("apiVersion") == "stackops.io/v1alpha1":
            found.append((d["kind"].lower() + "s", d["metadata"].get("namespace", "default"), d["metadata"]["name"]))
    return found


def test_every_example_gets_honest_status(kube: Any, examples: list[dict[str, Any]]) -> None:
    objects = example_objects(examples)
    assert {resource for resource, _, _ in objects} == set(KINDS), "one example per kind"
    for resource, namespace, name in objects:
        obj = wait_for(lambda: (o := get(kube, resource, namespace, name)) and reconciled(o) and o,
                       what=f"{resource}/{name} observedGeneration", timeout=60, interval=0.5)
        ready = condition(obj, "Ready")
        assert ready is not None and ready["observedGeneration"] == obj["metadata"]["generation"]
        assert condition(obj, "Stalled")["status"] == "False"
        assert "stackops.io/finalizer" in obj["metadata"].get("finalizers", [])
        if resource in UNREACHABLE:  # its reconciler exists: the (closed) endpoint is unreachable, retried
            assert ready["status"] == "False" and ready["reason"] == UNREACHABLE[resource], obj["status"]
            assert condition(obj, "Reconciling")["status"] == "True"
            if resource in ("kvmhosts", "xenpools", "cloudstackreleases"):
                assert condition(obj, "Reachable")["status"] == "False"
        else:
            assert ready["status"] == "Unknown" and ready["reason"] == "ReconcilerNotImplemented", obj["status"]
            assert condition(obj, "Reconciling")["status"] == "False"


def test_printer_columns(kube: Any, examples: list[dict[str, Any]]) -> None:
    output = kube.kubectl("get", ",".join(KINDS), "-A").stdout
    for header in ("MASTER", "HOSTS", "HA", "ADDRESS", "OVS", "LIBVIRT", "VERSION", "PHASE", "COMMIT", "READY",
                   "AGE"):
        assert header in output, output


def handling_cycles(operator: lab_operator.LocalOperator, since: int) -> list[dict[str, Any]]:
    """The bodies the operator began a handling cycle on, from byte `since` of its log: kopf's debug line
    `<Creation|Updating|…> is in progress: <the body>` (the operator runs with --verbose in tests)."""
    with open(operator.log_path, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    bodies = []
    for line in text.splitlines():
        _, marker, body = line.partition(" is in progress: ")
        if marker and body.startswith("{"):
            try:
                bodies.append(ast.literal_eval(body))
            except (ValueError, SyntaxError):  # a line still being written
                continue
    return bodies


def versions_since(kube: Any, resource: str, namespace: str, name: str, since: str, until: str) -> list[str]:
    """Every resourceVersion the object had after `since`, up to `until`, from the API server's watch history."""
    api = kube_client.CustomObjectsApi(kube_config.new_client_from_config(config_file=kube.kubeconfig))
    versions: list[str] = []
    for event in kube_watch.Watch().stream(api.list_namespaced_custom_object, "stackops.io", "v1alpha1", namespace,
                                           resource, resource_version=since, field_selector=f"metadata.name={name}",
                                           timeout_seconds=120):
        assert event["type"] == "MODIFIED", event
        versions.append(event["object"]["metadata"]["resourceVersion"])
        if versions[-1] == until:
            break
    return versions


FENCE = "test.stackops.io/fence"


def test_paused_object_is_not_touched(kube: Any, examples: list[dict[str, Any]],
                                      operator: lab_operator.LocalOperator) -> None:
    """Nothing is written to a paused object, not even when its spec changes. kopf takes one object's events one
    after the other: once the operator has begun a cycle on a version of the object, every earlier cycle is over
    and written; so the test waits for the operator to have looked rather than for some time to pass."""
    resource, namespace, name = next(o for o in example_objects(examples) if o[0] == "kvmhosts")
    uid = wait_for(lambda: (o := get(kube, resource, namespace, name)) and reconciled(o) and o["metadata"]["uid"],
                   what="first reconcile", timeout=60, interval=0.5)
    since = operator.log_path.stat().st_size

    def handled(what: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        wait_for(lambda: any(b["metadata"].get("uid") == uid and predicate(b)
                             for b in handling_cycles(operator, since)), what=f"the operator to handle {what}",
                             timeout=60, interval=0.5)

    def version(verb: str, *args: str) -> str:
        """`kubectl <verb>` on the object; the resourceVersion it made."""
        return kube.kubectl(verb, resource, name, "-n", namespace, *args,
                            "-o", "jsonpath={.metadata.resourceVersion}").stdout.strip()

    # The pause comes with a fence: an annotation kopf counts as a change (it ignores its own stackops.io/ ones, the
    # pause included), so the operator begins a cycle on it. Once it has, the passes begun before the pause (a
    # retry may be under way) are over and written.
    version("annotate", "stackops.io/paused=true", f"{FENCE}=1", "--overwrite")
    handled("the pause", lambda b: b["metadata"].get("annotations", {}).get(FENCE) == "1")
    before = get(kube, resource, namespace, name)
    changed = version("patch", "--type=merge", "-p", json.dumps({"spec": {"resyncIntervalSeconds": 777}}))
    handled("the spec change made during the pause", lambda b: b["metadata"]["resourceVersion"] == changed)
    # a second fence: once the operator handles it, the cycle of the spec change is over and written
    fence = version("annotate", f"{FENCE}=2", "--overwrite")
    handled("the second fence", lambda b: b["metadata"]["resourceVersion"] == fence)
    after = get(kube, resource, namespace, name)
    assert after["metadata"]["resourceVersion"] == fence, "operator wrote to it"
    assert versions_since(kube, resource, namespace, name, before["metadata"]["resourceVersion"], fence) == [
        changed, fence], "operator wrote to it"
    assert after["status"] == before["status"]
    assert after["status"]["observedGeneration"] < after["metadata"]["generation"]

    kube.kubectl("annotate", resource, name, "-n", namespace, "stackops.io/paused-", f"{FENCE}-")
    wait_for(lambda: reconciled(get(kube, resource, namespace, name)), what="catch-up after unpause", timeout=60,
             interval=0.5)


def test_cross_field_error_is_stalled(kube: Any, examples: list[dict[str, Any]]) -> None:
    pool = next(d for d in examples if d.get("kind") == "XenPool")
    bad = json.loads(json.dumps(pool))
    bad["metadata"] = {"name": "bad-master", "namespace": pool["metadata"]["namespace"]}
    bad["spec"]["master"] = "not-a-member"
    kube.kubectl("apply", "-f", "-", input=json.dumps(bad))
    obj = wait_for(lambda: (o := get(kube, "xenpools", bad["metadata"]["namespace"], "bad-master"))
                   and reconciled(o) and o, what="InvalidSpec status", timeout=60, interval=0.5)
    stalled = condition(obj, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidSpec"
    assert "master" in stalled["message"] and "not-a-member" in stalled["message"]
    assert condition(obj, "Ready")["status"] == "False"


def test_missing_secret_then_recovered(kube: Any, examples: list[dict[str, Any]]) -> None:
    release = next(d for d in examples if d.get("kind") == "SystemVMTemplate")
    namespace = release["metadata"]["namespace"]
    obj = json.loads(json.dumps(release))
    obj["metadata"] = {"name": "late-secret", "namespace": namespace}
    obj["spec"]["cloudstack"] = {"secretRef": {"name": "arrives-later"}}
    obj["spec"].pop("notifications", None)
    kube.kubectl("apply", "-f", "-", input=json.dumps(obj))
    waiting = wait_for(lambda: (o := get(kube, "systemvmtemplates", namespace, "late-secret"))
                       and condition(o, "Ready") and o, what="SecretNotFound", timeout=60, interval=0.5)
    ready = condition(waiting, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound", ready
    assert condition(waiting, "Reconciling")["status"] == "True"

    kube.kubectl("create", "secret", "generic", "arrives-later", "-n", namespace,
                 f"--from-literal=url={CLOSED_URL}", "--from-literal=apiKey=k",
                 "--from-literal=secretKey=s")
    recovered = wait_for(lambda: (c := condition(get(kube, "systemvmtemplates", namespace, "late-secret"), "Ready"))
                         and c["reason"] == "CloudStackUnreachable", timeout=90, what="recovery", interval=0.5)
    assert recovered


def test_delete_with_orphan_policy_releases_finalizer(kube: Any, examples: list[dict[str, Any]]) -> None:
    namespace = next(d for d in examples if d.get("kind") == "XenPool")["metadata"]["namespace"]
    kube.kubectl("delete", "xenpools", "bad-master", "-n", namespace, "--timeout=60s", "--ignore-not-found")
    gone = kube.kubectl("get", "xenpools", "bad-master", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_no_secret_leaks_and_no_forbidden(kube: Any, examples: list[dict[str, Any]],
                                          operator: lab_operator.LocalOperator) -> None:
    log = operator.log_path.read_text(errors="replace")
    assert "forbidden" not in log.lower(), operator.log_tail()
    everything = log
    for resource in KINDS:
        everything += kube.kubectl("get", resource, "-A", "-o", "json").stdout
    everything += kube.kubectl("get", "events", "-A", "-o", "json").stdout
    for value in lab_operator.decode_secret_values(examples):
        assert value not in everything
