"""`stackops lab examples`: deploy/examples/ pointed at the running lab, for `stackops plan` and `kubectl apply`.

Each example keeps its spec; only what names a production environment is replaced by the lab's equivalent:
addresses, pinned host keys and the SSH key; the CloudStack endpoint and its zone, pod and cluster names; the
XenServer hosts' addresses, port and credentials (the lab's XenAPI speaks plain HTTP); the system VM images and
their checksums; the release's source repository, pull requests and Maven command. What a lab cannot have is
dropped, and said so in `DROPPED`: the NSX manager (the lab has none: OVS would connect out to it), the package
repository (production packages), the SELinux policy (lab hosts have no SELinux), the tenant webhook and the
maintenance window (the lab's rollout must run now), packaging to a web server's directory.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import checkout
from .checkout import EXAMPLES
from .manifests import (
    allowed,
    cloudstack_secret_data,
    cloudstackrelease_manifests,
    kvmhost_manifests,
    xen_destinations,
    xenpool_manifests,
)

LAB_ZONE, LAB_POD = "lab-zone-1", "lab-zone-1-pod-1"
DROPPED = {
    "KvmHost": ["spec.packages (production package repository)", "spec.openvswitch.manager (no NSX manager)",
                "spec.securityPolicy.seLinux (no SELinux in lab hosts)"],
    "SystemVMTemplate": ["spec.notifications (no tenant webhook)",
                         "spec.rollout.routers.maintenanceWindow (the lab rolls out now)"],
    "XenPool": ["spec.tls.caSecretRef (the lab XenAPI speaks plain HTTP)"],
    "CloudStackRelease": ["spec.pullRequests[].patchURL (the lab serves GitHub-like patch URLs itself)"],
}


class LabMissing(Exception):
    """A part of the lab an example needs is not running."""


def load(directory: Path = EXAMPLES) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(path.name, [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)])
            for path in sorted(checkout.path(directory).glob("*.yaml"))]


def _lab_spec(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind)["spec"]


class Retarget:
    """Rewrites example documents with the lab's hosts (`LabHost`s), CloudStack (`LabCloudStack`), XenServer hosts
    and release source (their `running()` states)."""

    def __init__(self, hosts: Sequence[Any], cloudstack: Any, xen: dict[str, Any] | None,
                 release: dict[str, Any] | None):
        self.hosts, self.cloudstack, self.xen, self.release = list(hosts), cloudstack, xen, release
        self.ssh_secrets: set[str] = set()
        self.cloudstack_secrets: set[str] = set()
        self.xen_secrets: set[str] = set()
        self.unused_secrets: set[str] = set()

    def need(self, what: Any, name: str) -> Any:
        if not what:
            raise LabMissing(f"the examples need the lab's {name}: start it with `stackops lab up --hosts 2 "
                             "--cloudstack --xen --release`")
        return what

    def cloudstack_ref(self, connection: dict[str, Any], cluster_suffix: str) -> None:
        self.need(self.cloudstack, "CloudStack")
        self.cloudstack_secrets.add(connection["connection"]["secretRef"]["name"])
        connection.update(zone=LAB_ZONE, pod=LAB_POD, cluster=cluster_suffix)

    def kvmhost(self, spec: dict[str, Any], index: int) -> None:
        hosts = self.need(self.hosts, "KVM hosts")
        host, peer = hosts[index % len(hosts)], hosts[(index + 1) % len(hosts)]
        lab = _lab_spec(kvmhost_manifests([host], "lab"), "KvmHost")
        spec["address"] = host.address
        spec["ssh"].update(hostKey=host.host_key, port=22)
        self.ssh_secrets.add(spec["ssh"]["privateKeySecretRef"]["name"])
        key = (spec.pop("packages", None) or {}).get("signingKeySecretRef")
        if key:
            self.unused_secrets.add(key["name"])
        spec.get("securityPolicy", {}).pop("seLinux", None)
        ovs = spec.get("openvswitch") or {}
        ovs.pop("manager", None)
        for bridge in ovs.get("bridges", []):
            bridge["datapathType"] = lab["openvswitch"]["bridges"][0]["datapathType"]
            for bond in bridge.get("bonds", []):
                bond["interfaces"] = list(host.nics[:len(bond["interfaces"])])
            for tunnel in bridge.get("tunnels", []):
                tunnel["remoteIP"] = peer.address
            if peer is host:
                bridge.pop("tunnels", None)
        if "cloudstack" in spec:
            self.cloudstack_ref(spec["cloudstack"], "lab-zone-1-kvm")

    def xenpool(self, spec: dict[str, Any]) -> None:
        xen = self.need(self.xen, "XenServer hosts")
        lab = _lab_spec(xenpool_manifests(xen, "lab"), "XenPool")
        by_name = {m["name"]: m for m in lab["members"]}
        missing = [m["name"] for m in spec["members"] if m["name"] not in by_name]
        if missing:
            raise LabMissing(f"the lab has no XenServer host named {', '.join(missing)}")
        for member in spec["members"]:
            member["address"] = by_name[member["name"]]["address"]
        spec["xenapiPort"] = lab["xenapiPort"]
        ca = (spec.get("tls") or {}).get("caSecretRef")
        if ca:
            self.unused_secrets.add(ca["name"])
        spec["tls"] = dict(lab["tls"])
        self.xen_secrets.add(spec["credentialsSecretRef"]["name"])
        if "cloudstack" in spec:
            self.cloudstack_ref(spec["cloudstack"], "lab-xen-pool")

    def systemvmtemplate(self, spec: dict[str, Any]) -> None:
        cloudstack = self.need(self.cloudstack, "CloudStack")
        self.cloudstack_secrets.add(spec["cloudstack"]["secretRef"]["name"])
        for template in spec["templates"]:
            template["url"] = cloudstack.image_url(template["hypervisor"], spec["version"])
            template["checksum"] = cloudstack.image_checksum(template["hypervisor"], spec["version"])
        notifications = spec.pop("notifications", None)
        if notifications:
            self.unused_secrets.add(notifications["webhookURLSecretRef"]["name"])
        (spec.get("rollout") or {}).get("routers", {}).pop("maintenanceWindow", None)

    def cloudstackrelease(self, spec: dict[str, Any]) -> None:
        release = self.need(self.release, "release source")
        lab = _lab_spec(cloudstackrelease_manifests(release, self.need(self.hosts, "KVM hosts"), "lab"),
                        "CloudStackRelease")
        spec["source"] = lab["source"]
        spec["version"] = lab["version"]
        spec["pullRequests"] = lab["pullRequests"]
        builder = spec["builder"]["ssh"]
        builder["address"] = lab["builder"]["ssh"]["address"]
        builder["ssh"]["hostKey"] = lab["builder"]["ssh"]["ssh"]["hostKey"]
        self.ssh_secrets.add(builder["ssh"]["privateKeySecretRef"]["name"])
        spec["build"] = {**spec.get("build", {}), **lab["build"]}
        spec.get("build", {}).pop("mavenProfiles", None)  # the Maven stand-in knows no profiles
        spec["publish"] = lab["publish"]

    def secret(self, document: dict[str, Any]) -> dict[str, Any] | None:
        name = document["metadata"]["name"]
        if name in self.unused_secrets:
            return None
        annotations = document["metadata"].setdefault("annotations", {})
        if name in self.ssh_secrets:
            document["stringData"] = {"ssh-privatekey": self.hosts[0].client_key_pem}
            annotations.update(allowed(*(host.address for host in self.hosts)))
        elif name in self.cloudstack_secrets:
            document["stringData"] = cloudstack_secret_data(self.cloudstack)
        elif name in self.xen_secrets:
            document["stringData"] = {"username": self.xen["username"], "password": self.xen["password"]}
            annotations.update(xen_destinations(self.xen, self.cloudstack))
        if not annotations:
            del document["metadata"]["annotations"]
        return document

    def files(self, examples: list[tuple[str, list[dict[str, Any]]]]) -> list[tuple[str, list[dict[str, Any]]]]:
        """Every example file's documents, retargeted (Secrets last, once every reference is known)."""
        result = [(name, copy.deepcopy(documents)) for name, documents in examples]
        kvm = 0
        for _, documents in result:
            for document in documents:
                kind, spec = document.get("kind"), document.get("spec")
                if kind == "KvmHost":
                    self.kvmhost(spec, kvm)
                    kvm += 1
                elif kind == "XenPool":
                    self.xenpool(spec)
                elif kind == "SystemVMTemplate":
                    self.systemvmtemplate(spec)
                elif kind == "CloudStackRelease":
                    self.cloudstackrelease(spec)
        return [(name, [d for d in (self.secret(d) if d.get("kind") == "Secret" else d for d in documents)
                        if d is not None]) for name, documents in result]


def running_lab(lab_dir: Path) -> Retarget:
    from .cloudstack.component import running as cloudstack_running
    from .hosts import LabHosts
    from .release.component import running as release_running
    from .xenapi.component import running as xen_running

    return Retarget(LabHosts(lab_dir).running() or [], cloudstack_running(lab_dir), xen_running(lab_dir),
                    release_running(lab_dir))


def write(lab_dir: Path, output: Path, examples: Path = EXAMPLES) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, documents in running_lab(lab_dir).files(load(examples)):
        path = output / name
        path.write_text("# deploy/examples/" + name + ", pointed at the lab by `stackops lab examples`\n"
                        + yaml.safe_dump_all(documents, sort_keys=False))
        written.append(path)
    return written
