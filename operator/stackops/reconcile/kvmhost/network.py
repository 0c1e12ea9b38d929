"""The spec's Open vSwitch networking written as the distribution's network configuration, so that a rebooted host
comes back with its bridges' addresses and MTUs (issue 15): `ip addr add` and the operator's next pass would be
too late for a host whose management address sits on a VLAN bridge. Pure: the spec and the files the probe read
in, file actions out.

- apt hosts (Debian/Ubuntu): ifupdown with Open vSwitch's stanzas (openvswitch-switch's
  /usr/share/openvswitch/scripts/ifupdown.sh): one file the operator owns, paths.NETWORK_STACKOPS, and a
  `source` line of its directory added to the main file when nothing there includes it (the
  rest of that file is never rewritten). Each bridge is `auto` (and `allow-ovs`); its ports, bonds, tunnels,
  internal ports and VLAN fake bridges are `allow-<bridge>` stanzas the bridge's `ovs_ports` brings up. At boot
  ifupdown runs `ovs-vsctl --may-exist add-br/add-port` for objects Open vSwitch's database already holds (a no-op)
  and then sets the addresses (`inet static`, one stanza per further address) and MTUs. A bond is the exception:
  ifupdown.sh creates it with `add-bond` without `--may-exist`, which fails for a bond the database already holds;
  the bond itself is kept by the database, only that stanza's `ifup` reports the error.
- dnf/yum hosts (EL): one `ifcfg-<name>` per interface in paths.IFCFG_DIR, the network-scripts-openvswitch way
  (`DEVICETYPE=ovs`, `TYPE=OVSBridge|OVSPort|OVSIntPort|OVSBond|OVSTunnel`, `OVS_BRIDGE`, `IPADDR`/`PREFIX`, …).
  A NIC the spec makes a port gets its file replaced (the previous one, e.g. the installer's with the address
  now on the bridge, would put the address back on the NIC).

Every file the operator writes starts with MARKER; only such files are ever removed (when the spec drops what they
describe). No backups are kept: ifupdown sources every file of interfaces.d and network-scripts reads every
`ifcfg-*`, a backup there would be read as configuration too.
"""
from __future__ import annotations

import re
from typing import Mapping

from ...api.kvmhost import Bridge, KvmHostSpec
from .actions import HostAction, RunCommand, WriteFile
from .paths import IFCFG_DIR, NETWORK_INTERFACES, NETWORK_SOURCED_DIR, NETWORK_STACKOPS

MARKER = "# Written by stackops"
SOURCE_LINE = f"source {NETWORK_SOURCED_DIR}/*"
# What already makes ifupdown read interfaces.d: a `source` of its files or a `source-directory` of it.
_SOURCES = re.compile(rf"^[ \t]*(source[ \t]+{re.escape(NETWORK_SOURCED_DIR)}/\*|source-directory[ \t]+"
                      rf"{re.escape(NETWORK_SOURCED_DIR)}/?)[ \t]*$", re.M)


def owned(text: str | None) -> bool:
    return text is not None and text.startswith(MARKER)


def _header(owner: str, what: str) -> list[str]:
    return [f"{MARKER} for KvmHost {owner}: {what}.",
            "# Rewritten when it differs from the KvmHost's spec: change the spec, not this file."]


def _stanza(name: str, cidrs: list[str], mtu: int | None, options: list[str]) -> list[str]:
    """`iface <name>` with the Open vSwitch options, the first address and the MTU; one more `inet static` stanza
    per further address (ifupdown adds each)."""
    method = "static" if cidrs else "manual"
    lines = [f"iface {name} inet {method}", *(f"    {o}" for o in options)]
    if mtu is not None:
        lines.append(f"    mtu {mtu}")
    if cidrs:
        lines.append(f"    address {cidrs[0]}")
    for cidr in cidrs[1:]:
        lines += ["", f"iface {name} inet static", f"    address {cidr}"]
    return lines


def _debian_bridge(bridge: Bridge) -> list[str]:
    ports = [*bridge.ports, *(b.name for b in bridge.bonds), *(t.name for t in bridge.tunnels),
             *(p.name for p in bridge.internal_ports), *(v.name for v in bridge.vlan_bridges)]
    options = ["ovs_type OVSBridge"]
    if ports:
        options.append(f"ovs_ports {' '.join(ports)}")
    options.append(f"ovs_extra set Bridge {bridge.name} datapath_type={bridge.datapath_type}")
    lines = [f"auto {bridge.name}", f"allow-ovs {bridge.name}",
             *_stanza(bridge.name, list(bridge.addresses), bridge.mtu, options)]

    def port(name: str, cidrs: list[str], mtu: int | None, options: list[str]) -> None:
        lines.extend(["", f"allow-{bridge.name} {name}", *_stanza(name, cidrs, mtu, options)])

    for nic in bridge.ports:
        port(nic, [], bridge.mtu, [f"ovs_bridge {bridge.name}", "ovs_type OVSPort"])
    for bond in bridge.bonds:
        port(bond.name, [], None, [f"ovs_bridge {bridge.name}", "ovs_type OVSBond",
                                   f"ovs_bonds {' '.join(bond.interfaces)}",
                                   f"ovs_options bond_mode={bond.bond_mode} lacp={bond.lacp} "
                                   f"other_config:lacp-time={bond.lacp_time}"])
    for tunnel in bridge.tunnels:
        options = f"options:remote_ip={tunnel.remote_ip}" + (
            f" options:key={tunnel.key}" if tunnel.key is not None else "")
        port(tunnel.name, [], None, [f"ovs_bridge {bridge.name}", "ovs_type OVSTunnel",
                                     f"ovs_tunnel_type {tunnel.type}", f"ovs_tunnel_options {options}"])
    for internal in bridge.internal_ports:
        port(internal.name, list(internal.addresses), internal.mtu,
             [f"ovs_bridge {bridge.name}", "ovs_type OVSIntPort"])
    for vlan in bridge.vlan_bridges:  # a fake bridge: `add-br <name> <parent> <vlan>`
        port(vlan.name, list(vlan.addresses), vlan.mtu,
             ["ovs_type OVSBridge", f"ovs_options {bridge.name} {vlan.vlan}"])
    return lines


def debian_file(spec: KvmHostSpec, owner: str) -> str | None:
    """The content of paths.NETWORK_STACKOPS (None: the spec has no bridges, no file)."""
    bridges = spec.openvswitch.bridges
    if not bridges:
        return None
    lines = _header(owner, "the Open vSwitch bridges, ports, addresses and MTUs ifupdown sets up")
    for bridge in bridges:
        lines += ["", *_debian_bridge(bridge)]
    return "\n".join(lines) + "\n"


def sourcing(text: str | None) -> str | None:
    """/etc/network/interfaces with the `source` line of interfaces.d appended (None: it already has one)."""
    if text is not None and _SOURCES.search(text):
        return None
    if not text:
        return f"{SOURCE_LINE}\n"
    return text + ("" if text.endswith("\n") else "\n") + f"{SOURCE_LINE}\n"


def _ifcfg(owner: str, name: str, values: list[tuple[str, str | int]]) -> str:
    def quoted(value: str | int) -> str:
        text = str(value)
        return text if re.fullmatch(r"[A-Za-z0-9_./:=-]*", text) else '"' + text + '"'

    lines = _header(owner, f"Open vSwitch interface {name}")
    lines += [f"DEVICE={name}", "ONBOOT=yes", "DEVICETYPE=ovs"]
    lines += [f"{key}={quoted(value)}" for key, value in values]
    return "\n".join(lines) + "\n"


def _addresses(cidrs: list[str]) -> list[tuple[str, str | int]]:
    values: list[tuple[str, str | int]] = [("BOOTPROTO", "static" if cidrs else "none")]
    for i, cidr in enumerate(cidrs):
        suffix = "" if i == 0 else str(i)
        address, prefix = cidr.split("/")
        values += [(f"IPADDR{suffix}", address), (f"PREFIX{suffix}", prefix)]
    return values


def _mtu(mtu: int | None) -> list[tuple[str, str | int]]:
    return [] if mtu is None else [("MTU", mtu)]


def ifcfg_files(spec: KvmHostSpec, owner: str) -> dict[str, str]:
    """path → content of the `ifcfg-<name>` files of every bridge, port, bond, tunnel, internal port and VLAN
    bridge of the spec."""
    files: dict[str, str] = {}

    def add(name: str, values: list[tuple[str, str | int]]) -> None:
        files[f"{IFCFG_DIR}/ifcfg-{name}"] = _ifcfg(owner, name, values)

    for bridge in spec.openvswitch.bridges:
        add(bridge.name, [("TYPE", "OVSBridge"), *_addresses(list(bridge.addresses)), *_mtu(bridge.mtu),
                          ("OVS_EXTRA", f"set Bridge {bridge.name} datapath_type={bridge.datapath_type}")])
        on = ("OVS_BRIDGE", bridge.name)
        for nic in bridge.ports:
            add(nic, [("TYPE", "OVSPort"), on, ("BOOTPROTO", "none"), *_mtu(bridge.mtu)])
        for bond in bridge.bonds:
            add(bond.name, [("TYPE", "OVSBond"), on, ("BOOTPROTO", "none"),
                            ("BOND_IFACES", " ".join(bond.interfaces)),
                            ("OVS_OPTIONS", f"bond_mode={bond.bond_mode} lacp={bond.lacp} "
                                            f"other_config:lacp-time={bond.lacp_time}")])
        for tunnel in bridge.tunnels:
            options = f"options:remote_ip={tunnel.remote_ip}" + (
                f" options:key={tunnel.key}" if tunnel.key is not None else "")
            add(tunnel.name, [("TYPE", "OVSTunnel"), on, ("BOOTPROTO", "none"), ("OVS_TUNNEL_TYPE", tunnel.type),
                              ("OVS_TUNNEL_OPTIONS", options)])
        for internal in bridge.internal_ports:
            add(internal.name, [("TYPE", "OVSIntPort"), on, *_addresses(list(internal.addresses)),
                                *_mtu(internal.mtu)])
        for vlan in bridge.vlan_bridges:  # a fake bridge: `add-br <name> <parent> <vlan>`
            add(vlan.name, [("TYPE", "OVSBridge"), *_addresses(list(vlan.addresses)), *_mtu(vlan.mtu),
                            ("OVS_OPTIONS", f"{bridge.name} {vlan.vlan}")])
    return files


def wanted_files(spec: KvmHostSpec, owner: str, manager: str | None) -> dict[str, str | None]:
    """The network configuration files the spec wants on a host of this package manager: path → content (None:
    the file must not be there, if the operator wrote it)."""
    if manager == "apt":
        return {NETWORK_STACKOPS: debian_file(spec, owner)}
    if manager in ("dnf", "yum"):
        return dict(ifcfg_files(spec, owner))
    return {}


def remove_owned(manager: str | None, files: Mapping[str, str | None], why: str) -> list[HostAction]:
    """The network configuration files stackops wrote, removed (deletion: left in place they would bring the
    removed bridges back at the next boot)."""
    paths = [NETWORK_STACKOPS] if manager == "apt" else sorted(
        p for p in files if p.startswith(f"{IFCFG_DIR}/ifcfg-")) if manager in ("dnf", "yum") else []
    return [RunCommand(f"remove the network configuration {path} ({why})", operation="remove",
                       command=("rm", "-f", path)) for path in paths if owned(files.get(path))]


def plan_network(spec: KvmHostSpec, owner: str, manager: str | None,
                 files: Mapping[str, str | None]) -> list[HostAction]:
    """File actions: a file that differs from the spec is rewritten, one the operator wrote that the spec no
    longer describes is removed; on apt hosts /etc/network/interfaces gets its `source` line when it lacks it."""
    wanted = wanted_files(spec, owner, manager)
    actions: list[HostAction] = []
    if manager in ("dnf", "yum"):
        for path in sorted(p for p, text in files.items() if p.startswith(f"{IFCFG_DIR}/ifcfg-") and owned(text)):
            wanted.setdefault(path, None)
    for path, content in wanted.items():
        have = files.get(path)
        if content is None:
            if owned(have):
                actions.append(RunCommand(f"remove the network configuration {path} (no longer in the spec)",
                                          operation="remove", command=("rm", "-f", path)))
            continue
        if have != content:
            why = "written" if have is None else "rewritten, it differs from the spec" if owned(have) else \
                "replaced, it was not written by stackops"
            actions.append(WriteFile(f"write the network configuration {path} ({why})", path=path, content=content,
                                     backup=False, operation="add" if have is None else "change"))
    if manager == "apt" and wanted.get(NETWORK_STACKOPS) is not None:
        text = files.get(NETWORK_INTERFACES)
        edited = sourcing(text)
        if edited is not None:
            actions.append(WriteFile(f"add `{SOURCE_LINE}` to {NETWORK_INTERFACES}", path=NETWORK_INTERFACES,
                                     content=edited, operation="add" if text is None else "change"))
    return actions
