"""KvmHost manifests for the lab's KVM hosts: the deploy/examples/ KvmHost, adjusted to what a lab host is (its
address and pinned host key, the lab's client key, the userspace datapath, its spare NICs, a VXLAN port to the
next lab host, no NSX controller)."""
from __future__ import annotations

from typing import Any, Sequence

SSH_SECRET = "lab-kvm-ssh"


def kvmhost_manifests(hosts: Sequence[Any], namespace: str) -> list[dict[str, Any]]:
    """A Secret with the lab's client key and one KvmHost per lab host."""
    if not hosts:
        return []
    documents: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
        "metadata": {"name": SSH_SECRET, "namespace": namespace},
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
    return documents
