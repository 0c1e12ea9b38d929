"""The operator's Prometheus endpoint (`stackops run --metrics-address`), scraped from the running operator: a
KvmHost whose SSH port is closed shows up as reconcile passes, SSH calls that failed `Unreachable`, and a
not-Ready gauge that goes away when the object is deleted. No label names a host."""
from __future__ import annotations

import urllib.request
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client.parser import text_string_to_metric_families

from stackops_lab import operator as lab_operator
from support.wait import wait_for

NAMESPACE = "stackops-metrics"
NAME = "kvm-metrics"
CLOSED_PORT = 9  # discard: nothing listens there
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC2xdOEtTrsqrZ15mkeqxOhiZTFK/0MIfiM7nnaIY1Kw"


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def manifests() -> str:
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
         "metadata": {"name": f"{NAME}-ssh", "namespace": NAMESPACE,
                      "annotations": {"stackops.io/allowed-destinations": "127.0.0.1"}},
         "stringData": {"ssh-privatekey": key}},
        {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost", "metadata": {"name": NAME, "namespace": NAMESPACE},
         "spec": {"address": "127.0.0.1", "deletionPolicy": "Orphan",
                  "ssh": {"port": CLOSED_PORT, "privateKeySecretRef": {"name": f"{NAME}-ssh"}, "hostKey": HOST_KEY,
                          "connectTimeoutSeconds": 2}}},
    ]
    return yaml.safe_dump_all(documents)


def test_metrics_endpoint_reports_reconciles_and_remote_calls(kube: Any,
                                                              operator: lab_operator.LocalOperator) -> None:
    kube.kubectl("apply", "-f", "-", input=manifests())
    try:
        def seen() -> list | None:
            samples = scrape(operator.metrics_url)
            reconciles = [s for s in samples if s[0] == "stackops_reconciles_total" and s[1]["kind"] == "KvmHost"
                          and s[2] >= 1]
            ssh = [s for s in samples if s[0] == "stackops_remote_calls_total" and s[1]["driver"] == "ssh"
                   and s[1]["outcome"] == "Unreachable" and s[2] >= 1]
            ready = [s for s in samples if s[0] == "stackops_resource_ready"
                     and s[1] == {"kind": "KvmHost", "namespace": NAMESPACE, "name": NAME}]
            return samples if reconciles and ssh and ready else None

        samples = wait_for(seen, what="KvmHost reconciles and SSH calls in /metrics", timeout=90, interval=1)
        results = {s[1]["result"] for s in samples if s[0] == "stackops_reconciles_total"
                   and s[1]["kind"] == "KvmHost" and s[2] >= 1}
        assert "retry" in results, results  # Unreachable: retried with backoff
        ready = next(s for s in samples if s[0] == "stackops_resource_ready" and s[1].get("name") == NAME)
        assert ready[2] == 0
        assert any(s[0] == "stackops_reconcile_duration_seconds_count" and s[1] == {"kind": "KvmHost"}
                   for s in samples)
        assert any(s[0] == "stackops_remote_call_duration_seconds_count" and s[1] == {"driver": "ssh"}
                   for s in samples)
        for name, labels, _ in samples:
            assert not any("127.0.0.1" in v for v in labels.values()), (name, labels)
    finally:  # the finalizer is released (deletionPolicy Orphan); the lab has no namespace controller
        kube.kubectl("delete", "kvmhosts", NAME, "-n", NAMESPACE, "--timeout=60s", "--ignore-not-found")
        kube.kubectl("delete", "secret", f"{NAME}-ssh", "-n", NAMESPACE, "--ignore-not-found", check=False)

    def gone() -> bool:
        return not any(s[0] == "stackops_resource_ready" and s[1].get("name") == NAME
                       for s in scrape(operator.metrics_url))

    wait_for(gone, what="the deleted KvmHost's gauges to go", timeout=90, interval=1)
