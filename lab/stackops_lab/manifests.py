"""KvmHost manifests for the lab's KVM hosts: the deploy/examples/ KvmHost, adjusted to what a lab host is (its
address and pinned host key, the lab's client key, the userspace datapath, its spare NICs, a VXLAN port to the
next lab host, no NSX controller)."""
from __future__ import annotations

from typing import Any, Sequence

SSH_SECRET = "lab-kvm-ssh"
CLOUDSTACK_SECRET = "lab-cloudstack"
SYSTEMVM_VERSION = "4.19.1"


DESTINATIONS = "stackops.io/allowed-destinations"


def allowed(*destinations: str) -> dict[str, str]:
    """A credential Secret's annotation: where the operator may send it (the lab's own addresses and URLs)."""
    return {DESTINATIONS: ", ".join(dict.fromkeys(destinations))}


def cloudstack_secret_data(cloudstack: Any) -> dict[str, str]:
    """`url`, `apiKey`, `secretKey` of the lab CloudStack, and `allowPlainHTTP`: the lab serves its API over plain
    HTTP, which the operator refuses without the Secret's consent."""
    return {"url": cloudstack.endpoint, "apiKey": cloudstack.api_key, "secretKey": cloudstack.secret_key,
            "allowPlainHTTP": "true"}


def cloudstack_secret(cloudstack: Any, namespace: str) -> dict[str, Any]:
    """The Secret a CloudStack connection references (cloudstack_secret_data)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": CLOUDSTACK_SECRET, "namespace": namespace},
            "stringData": cloudstack_secret_data(cloudstack)}


def systemvmtemplate_manifests(cloudstack: Any, namespace: str, *, max_unavailable: int = 10) -> list[dict[str, Any]]:
    """The deploy/examples/ SystemVMTemplate pointed at the lab CloudStack and its own images."""
    templates = [{"hypervisor": hypervisor, "url": cloudstack.image_url(hypervisor, SYSTEMVM_VERSION),
                  "checksum": cloudstack.image_checksum(hypervisor, SYSTEMVM_VERSION), "format": fmt}
                 for hypervisor, fmt in (("KVM", "QCOW2"), ("XenServer", "VHD"))]
    return [cloudstack_secret(cloudstack, namespace), {
        "apiVersion": "stackops.io/v1alpha1", "kind": "SystemVMTemplate",
        "metadata": {"name": f"systemvm-{SYSTEMVM_VERSION}", "namespace": namespace},
        "spec": {"cloudstack": {"secretRef": {"name": CLOUDSTACK_SECRET}}, "version": SYSTEMVM_VERSION,
                 "templates": templates, "rollout": {"routers": {"maxUnavailable": max_unavailable}},
                 "resyncIntervalSeconds": 60},
    }]


PACKAGE_KEY_SECRET, PACKAGE_KEY = "lab-package-key", "signing-key.asc"


def package_key_secret(key: str, namespace: str) -> dict[str, Any]:
    """The Secret holding the public key the lab's apt repository is signed with (aptrepo.public_key)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": PACKAGE_KEY_SECRET, "namespace": namespace},
            "stringData": {PACKAGE_KEY: key}}


def lab_packages(repository_url: str) -> dict[str, Any]:
    """`spec.packages` installing from the lab's repository served at `repository_url`: verified with its key
    (package_key_secret); over plain HTTP when the URL says so, as the lab serves it on its own bridge."""
    return {"repositoryURL": repository_url,
            "signingKeySecretRef": {"name": PACKAGE_KEY_SECRET, "key": PACKAGE_KEY},
            **({"allowPlainHTTP": True} if repository_url.startswith("http://") else {})}


def kvmhost_manifests(hosts: Sequence[Any], namespace: str, *, cloudstack: Any = None,
                      repository_url: str | None = None, repository_key: str = "") -> list[dict[str, Any]]:
    """A Secret with the lab's client key and one KvmHost per lab host; with a lab CloudStack, each host is
    registered in its first zone's KVM cluster; with `repository_url` (the lab's apt repository served there,
    signed with `repository_key`), each host takes cloudstack-agent from it."""
    if not hosts:
        return []
    documents: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
        "metadata": {"name": SSH_SECRET, "namespace": namespace,
                     "annotations": allowed(*(host.address for host in hosts))},
        "stringData": {"ssh-privatekey": hosts[0].client_key_pem},
    }]
    for index, host in enumerate(hosts):
        peer = hosts[(index + 1) % len(hosts)]
        bridge: dict[str, Any] = {
            "name": "cloudbr0", "datapathType": "netdev", "mtu": 9000,
            "bonds": [{"name": "bond0", "interfaces": list(host.nics[:2]), "bondMode": "balance-tcp",
                       "lacp": "active", "lacpTime": "fast"}],
            "vlanBridges": [{"name": "mgmt0", "vlan": 123}, {"name": "storage0", "vlan": 124}],
        }
        if peer is not host:
            bridge["tunnels"] = [{"name": "vxlan0", "type": "vxlan", "remoteIP": peer.address, "key": 5001}]
        documents.append({
            "apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": f"lab-{host.name}", "namespace": namespace},
            "spec": {
                "address": host.address,
                "ssh": {"user": "root", "privateKeySecretRef": {"name": SSH_SECRET}, "hostKey": host.host_key},
                "openvswitch": {"bridges": [bridge]},
                "libvirt": {"listenTls": False, "listenTcp": True, "tcpPort": 16509, "authTcp": "none",
                            "mdnsAdv": False},
                "cloudstackAgent": {"properties": {"network.bridge.type": "openvswitch"}, "logLevel": "DEBUG"},
                "resyncIntervalSeconds": 60,
            },
        })
        if cloudstack is not None:
            documents[-1]["spec"]["cloudstack"] = {
                "connection": {"secretRef": {"name": CLOUDSTACK_SECRET}}, "zone": "lab-zone-1",
                "pod": "lab-zone-1-pod-1", "cluster": "lab-zone-1-kvm", "hostTags": ["lab"]}
        if repository_url is not None:
            documents[-1]["spec"]["packages"] = lab_packages(repository_url)
    if repository_url is not None:
        documents.append(package_key_secret(repository_key, namespace))
    if cloudstack is not None:
        documents.append(cloudstack_secret(cloudstack, namespace))
    return documents


XEN_SECRET = "lab-xen-root"


XEN_CLUSTER = "lab-xen-pool"


def xen_destinations(xen: dict[str, Any], cloudstack: Any = None) -> dict[str, str]:
    """Where the lab's XenServer password may go: every lab XenServer host, and the lab CloudStack (addHost)."""
    return allowed(*(h["address"] for _, h in sorted(xen["hosts"].items())),
                   *([cloudstack.endpoint] if cloudstack is not None else []))


def xenpool_manifests(xen: dict[str, Any], namespace: str, *, name: str = "lab-pool",
                      cloudstack: Any = None) -> list[dict[str, Any]]:
    """The deploy/examples/ XenPool pointed at the lab XenServer hosts (`stackops lab xenapi` state): every lab host
    a member (the standalone one gets joined), HA on the NFS SR with the explicit 180 s timeout, a vswitch
    controller (a documentation address: only recorded in the pool, never contacted), plain HTTP; with a lab
    CloudStack, the pool is registered as cluster `lab-xen-pool` of its first zone."""
    hosts = xen["hosts"]
    documents = [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": XEN_SECRET, "namespace": namespace, "annotations": xen_destinations(xen, cloudstack)},
         "stringData": {"username": xen["username"], "password": xen["password"]}},
        {"apiVersion": "stackops.io/v1alpha1", "kind": "XenPool", "metadata": {"name": name, "namespace": namespace},
         "spec": {"members": [{"name": n, "address": h["address"]} for n, h in sorted(hosts.items())],
                  "credentialsSecretRef": {"name": XEN_SECRET}, "tls": {"plainHTTP": True},
                  "xenapiPort": xen["port"],
                  "ha": {"enabled": True, "heartbeatSR": {"type": "nfs"}, "timeoutSeconds": 180},
                  "vswitchController": {"address": "192.0.2.50"},
                  "vmHARestartPriority": {"policy": "Clear"}, "resyncIntervalSeconds": 60}},
    ]
    if cloudstack is not None:
        documents[-1]["spec"]["cloudstack"] = {
            "connection": {"secretRef": {"name": CLOUDSTACK_SECRET}}, "zone": "lab-zone-1",
            "pod": "lab-zone-1-pod-1", "cluster": XEN_CLUSTER}
        documents.append(cloudstack_secret(cloudstack, namespace))
    return documents


RELEASE_NAME = "lab-4.8.0.16"


def cloudstackrelease_manifests(release: dict[str, Any], hosts: Sequence[Any], namespace: str) -> list[dict[str, Any]]:
    """The deploy/examples/ CloudStackRelease built on the first lab host from the lab's release source
    (`stackops lab release-source` state): 4.8.0.16 of branch 4.8 with two pull requests that apply, the Maven
    stand-in, RPMs for CentOS 7 published as a yum repository on the build host. Uses the KvmHosts' SSH Secret."""
    if not hosts:
        return []
    host = hosts[0]
    return [{
        "apiVersion": "stackops.io/v1alpha1", "kind": "CloudStackRelease",
        "metadata": {"name": RELEASE_NAME, "namespace": namespace},
        "spec": {
            "source": {"repository": release["repository"], "baseRef": release["base_ref"]},
            "version": "4.8.0.16", "versionRule": "Legacy",
            "pullRequests": [{"number": n} for n in release["applying"][:2]],
            "builder": {"type": "SSH", "workDir": "/var/lib/stackops/build", "ssh": {
                "address": host.address,
                "ssh": {"user": "root", "privateKeySecretRef": {"name": SSH_SECRET}, "hostKey": host.host_key}}},
            "build": {"mavenCommand": release["maven_command"], "timeoutMinutes": 30},
            "packaging": {"enabled": True, "distribution": "centos7"},
            "publish": {"directory": "/var/lib/stackops/repo/cloudstack-4.8.0.16"},
        },
    }]
