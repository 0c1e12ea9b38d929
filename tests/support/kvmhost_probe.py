"""A KVM host's probe output in a chosen state, for the KvmHost unit tests (real `ovs-vsctl --format=json`
output of a lab ovsdb-server and the stock Debian libvirtd.conf / qemu.conf)."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from support.specs import HOST_KEY

from stackops.reconcile.kvmhost.plan import AGENT_PROPERTIES, LIBVIRTD_CONF

DATA = Path(__file__).resolve().parents[1] / "unit" / "data"
OWNER = "lab/kvm1"
AGENT_PROPERTIES_STOCK = "# agent.properties\n#network.bridge.type=linuxbridge\nworkers=5\nhost=localhost\n"
LOG4J_STOCK = ('<log4j:configuration>\n  <category name="com.cloud">\n    <priority value="INFO"/>\n  </category>\n'
               '</log4j:configuration>\n')
INSTALLED = {p: "1.0" for p in ("qemu-system-x86", "libvirt-daemon-system", "libvirt-clients", "bridge-utils",
                                 "openvswitch-switch", "cloudstack-agent")}
# A spec for the host probe_output describes by default: a bridge whose VLAN bridge holds the host's management
# addresses (mgmt0's), with a bond of two spare NICs and a tunnel to a peer. Copy it before changing it.
SPEC: dict[str, Any] = {
    "address": "10.250.0.11",
    "ssh": {"privateKeySecretRef": {"name": "k"}, "hostKey": HOST_KEY},
    "openvswitch": {"bridges": [{
        "name": "cloudbr0", "datapathType": "netdev", "mtu": 9000,
        "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"]}],
        "vlanBridges": [{"name": "mgmt0", "vlan": 123, "addresses": ["10.250.1.11/24", "10.250.2.11/24"]}],
        "tunnels": [{"name": "vxlan0", "remoteIP": "10.250.0.12", "key": 5001}],
    }]},
}


def ovs_section(name: str) -> str:
    return (DATA / "ovsdb" / f"{name}.json").read_text()


def probe_output(*, ovs: bool = True, files: dict[str, str | bytes | None] | None = None,
                 packages: dict[str, str] | None = None, addresses: dict[str, list[str]] | None = None,
                 services: dict[str, str] | None = None, listening: tuple[int, ...] = (22, 16509),
                 empty_ovs: bool = False) -> str:
    """What the probe script prints on a host in the given state (a file's content as text, or as bytes)."""
    files = {LIBVIRTD_CONF: (DATA / "libvirtd.conf").read_text(), "/etc/libvirt/qemu.conf":
             (DATA / "qemu.conf").read_text(), AGENT_PROPERTIES: AGENT_PROPERTIES_STOCK,
             "/etc/cloudstack/agent/log4j-cloud.xml": LOG4J_STOCK, "/etc/default/libvirtd": "",
             **(files or {})}
    packages = INSTALLED if packages is None else packages
    out = ["@@os -", "Debian GNU/Linux 12 (bookworm)", "@@kernel -", "6.1.0-18-amd64", "@@pm -", "apt",
           "@@packages -", *(f"{p}\t{v}\tinstalled" for p, v in packages.items()),
           "@@ovs-version -", "ovs-vsctl (Open vSwitch) 3.1.0"]
    if ovs:
        empty = '{"data":[],"headings":[]}'
        for section, table in (("ovs-bridge", "Bridge"), ("ovs-port", "Port"), ("ovs-interface", "Interface"),
                               ("ovs-manager", "Manager")):
            out += [f"@@{section} -", empty if empty_ovs else ovs_section(table)]
        out += ["@@ovs-ssl -", ""]
    out += ["@@libvirt-version -", "libvirtd (libvirt) 9.0.0", "@@qemu-version -",
            "QEMU emulator version 7.2.0 (Debian 1:7.2+dfsg-7)"]
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        out += [f"@@file {path}", "@@missing" if data is None else base64.b64encode(data).decode()]
    links = [{"ifname": name, "flags": ["UP"], "addr_info": [
        {"family": "inet", "local": c.split("/")[0], "prefixlen": int(c.split("/")[1])} for c in cidrs]}
        for name, cidrs in (addresses or {"eth0": ["10.250.0.11/24"],
                                          "mgmt0": ["10.250.1.11/24", "10.250.2.11/24"]}).items()]
    out += ["@@ip-addr -", json.dumps(links), "@@ip-link -", json.dumps(links)]
    out += ["@@services -", *(f"{s} {state}" for s, state in (services or {"libvirtd": "active",
                                                                         "cloudstack-agent": "active"}).items())]
    out += ["@@apparmor -", "", "@@apparmor-disabled -", "", "@@selinux -", "", "@@certificate -", "",
            "@@listening -", *(f"LISTEN 0 128 0.0.0.0:{p} 0.0.0.0:*" for p in listening)]
    return "\n".join(out) + "\n"


class ProbeOnlyHost:
    """An SSH connection to a host whose probe prints `text` and that must not be changed (a reconciler under test
    that stalls before any change, or only observes): any other command is recorded in `ran` and fails the pass.
    It is its own pool too (`connection(target)` returns it), for `KvmHostReconciler(ProbeOnlyHost(text))`."""

    def __init__(self, text: str):
        self.text = text
        self.ran: list[tuple[str, ...]] = []

    async def run_script(self, script, *, args=(), timeout=60.0, check=True, mutation=False, label="script"):
        from stackops.drivers.ssh import CommandResult
        return CommandResult(0, self.text, "")

    async def run(self, argv, *, input=None, timeout=60.0, check=True, mutation=False, label=None):
        self.ran.append(tuple(argv))
        raise AssertionError("nothing is run on the host")

    def connection(self, target: object) -> "ProbeOnlyHost":
        return self
