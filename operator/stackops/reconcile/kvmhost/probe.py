"""The batched probe: one shell script (scripts/probe.sh), one SSH round trip, everything observe needs.

The script prints sections `@@<name> <argument>` followed by their output; nothing of the spec is interpolated
into it: spec values are positional arguments quoted by the SSH driver, so no spec value can run as code. The host
paths it reads come from paths.py.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Iterator

from ..shell import load
from .guard import PROBE_SECTION, parse_checkpoints
from .observed import ClientFile, Observed, OvsBridge, OvsInterface, OvsPort, OvsState, file_text
from .paths import SELINUX_CONFIG, with_paths

# The script (scripts/probe.sh, reading paths.PROBED_FILES, then the checkpoints section of guard.py): its
# positional parameters are the package names to query (plan.probe_arguments).
SCRIPT = with_paths(load(__package__, "probe.sh"), "PROBED_FILES", "GENERATED_CERT", "SECRET_FILES", "SECRET_CERT",
                    "APPARMOR_DIR") + PROBE_SECTION + "true\n"


def sections(output: str) -> Iterator[tuple[str, str, str]]:
    """(name, argument, body) for each `@@name argument` section."""
    name = argument = None
    body: list[str] = []
    for line in output.splitlines():
        match = re.fullmatch(r"@@([a-z-]+) (.*)", line)
        if match:
            if name is not None:
                yield name, argument or "", "\n".join(body).strip("\n")
            name, argument, body = match.group(1), match.group(2), []
        elif name is not None:
            body.append(line)
    if name is not None:
        yield name, argument or "", "\n".join(body).strip("\n")


def _ovs_value(value: Any) -> Any:
    """OVSDB JSON (`--data=json`) to Python: ["uuid", u], ["set", [...]], ["map", [[k, v], …]]."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, data = value
        if kind == "uuid":
            return data
        if kind == "set":
            return [_ovs_value(v) for v in data]
        if kind == "map":
            return {str(_ovs_value(k)): str(_ovs_value(v)) for k, v in data}
    return value


def ovs_rows(text: str) -> list[dict[str, Any]]:
    if not text.strip():
        return []
    table = json.loads(text)
    headings = table["headings"]
    return [{h: _ovs_value(v) for h, v in zip(headings, row)} for row in table["data"]]


def _one(value: Any) -> Any:
    """An optional OVSDB column: [] (empty set) → None."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_ovs(bridges: str, ports: str, interfaces: str, managers: str, ssl: str) -> OvsState:
    interface_rows = ovs_rows(interfaces)
    port_rows = ovs_rows(ports)
    bridge_rows = ovs_rows(bridges)
    interface_names = {r["_uuid"]: r["name"] for r in interface_rows}
    port_bridge = {port: b["name"] for b in bridge_rows for port in _as_list(b["ports"])}
    parsed_interfaces = {
        r["name"]: OvsInterface(
            name=r["name"], type=r.get("type") or "", options=dict(r.get("options") or {}),
            mtu_request=_one(r.get("mtu_request")), mtu=_one(r.get("mtu")),
            external_ids=dict(r.get("external_ids") or {}))
        for r in interface_rows
    }
    parsed_ports = {
        r["name"]: OvsPort(
            name=r["name"], bridge=port_bridge.get(r["_uuid"], ""),
            interfaces=tuple(sorted(interface_names.get(i, i) for i in _as_list(r["interfaces"]))),
            tag=_one(r.get("tag")), fake_bridge=bool(r.get("fake_bridge")),
            bond_mode=_one(r.get("bond_mode")), lacp=_one(r.get("lacp")),
            other_config=dict(r.get("other_config") or {}), external_ids=dict(r.get("external_ids") or {}))
        for r in port_rows
    }
    parsed_bridges = {
        r["name"]: OvsBridge(name=r["name"], datapath_type=r.get("datapath_type") or "",
                             external_ids=dict(r.get("external_ids") or {}))
        for r in bridge_rows
    }
    manager_rows = ovs_rows(managers)
    return OvsState(
        bridges=parsed_bridges, ports=parsed_ports, interfaces=parsed_interfaces,
        managers=tuple(str(r["target"]) for r in manager_rows),
        manager_connected=any(r.get("is_connected") is True for r in manager_rows),
        ssl_configured="Private key:" in ssl and "Certificate:" in ssl,
        **_ssl_settings(ssl),
    )


def _ssl_settings(text: str) -> dict[str, Any]:
    """`ovs-vsctl get-ssl`: `Private key: <path>`, `Certificate: …`, `CA Certificate: …`, `Bootstrap: true`."""
    found = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {"ssl_private_key": found.get("Private key", "").strip(),
            "ssl_certificate": found.get("Certificate", "").strip(),
            "ssl_ca_certificate": found.get("CA Certificate", "").strip(),
            "ssl_bootstrap": found.get("Bootstrap", "").strip() == "true"}


def _client_files(text: str) -> dict[str, ClientFile]:
    """`<mode> <sha256> <path>` lines of the client-files section."""
    files = {}
    for line in text.splitlines():
        fields = line.split(" ", 2)
        if len(fields) == 3 and fields[0].isdigit() and re.fullmatch(r"[0-9a-f]{64}", fields[1]):
            files[fields[2]] = ClientFile(mode=fields[0], digest=fields[1])
    return files


def _version(text: str) -> str | None:
    match = re.search(r"(\d+\.\d+(\.\d+)*)", text or "")
    return match.group(1) if match else None


def _addresses(text: str) -> tuple[dict[str, tuple[str, ...]], dict[str, bool]]:
    addresses: dict[str, tuple[str, ...]] = {}
    for link in json.loads(text) if text.strip() else []:
        cidrs = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet")
        addresses[link["ifname"]] = cidrs
    return addresses, {}


def _links_up(text: str) -> dict[str, bool]:
    return {link["ifname"]: "UP" in link.get("flags", []) for link in (json.loads(text) if text.strip() else [])}


def _listening_ports(text: str) -> set[int]:
    ports = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            port = fields[3].rsplit(":", 1)[-1]
            if port.isdigit():
                ports.add(int(port))
    return ports


def _apt_index(text: str) -> tuple[int | None, dict[str, tuple[str, ...]]]:
    """(age of the apt index in seconds or None, package → versions it lists) from the apt-index section."""
    age: int | None = None
    available: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "age" and fields[1].lstrip("-").isdigit():
            age = max(0, int(fields[1]))
        elif len(fields) == 3 and fields[0] == "available":
            versions = available.setdefault(fields[1], [])
            if fields[2] not in versions:
                versions.append(fields[2])
    return age, {name: tuple(versions) for name, versions in available.items()}


def parse(output: str, libvirt_tcp_port: int) -> Observed:
    found: dict[str, str] = {}
    files: dict[str, str | None] = {}
    for name, argument, body in sections(output):
        if name == "file":
            files[argument] = None if body.strip() == "@@missing" else file_text(base64.b64decode(body))
        else:
            found[name] = body
    packages: dict[str, str | None] = {}
    for line in found.get("packages", "").splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            packages[fields[0]] = fields[1] if fields[2] == "installed" else None
    ovs = None
    if "ovs-bridge" in found:
        ovs = parse_ovs(found["ovs-bridge"], found.get("ovs-port", ""), found.get("ovs-interface", ""),
                        found.get("ovs-manager", ""), found.get("ovs-ssl", ""))
    services = {}
    for line in found.get("services", "").splitlines():
        fields = line.split()
        if len(fields) == 2:
            services[fields[0]] = fields[1] == "active"
    addresses, _ = _addresses(found.get("ip-addr", ""))
    fingerprint = found.get("certificate", "").partition("=")[2].strip() or None
    apparmor = found.get("apparmor", "").strip()
    selinux_config = files.get(SELINUX_CONFIG)
    host_time, checkpoints = parse_checkpoints(found.get("checkpoints", ""))
    index_age, available = _apt_index(found.get("apt-index", ""))
    return Observed(
        os_name=found.get("os", "").strip() or None,
        kernel=found.get("kernel", "").strip() or None,
        package_manager=found.get("pm", "").strip() or None,
        packages=packages,
        ovs_version=_version(found.get("ovs-version", "")),
        libvirt_version=_version(found.get("libvirt-version", "")),
        qemu_version=_version(found.get("qemu-version", "")),
        agent_version=packages.get("cloudstack-agent"),
        ovs=ovs,
        files=files,
        addresses=addresses,
        links_up=_links_up(found.get("ip-link", "")),
        services=services,
        apparmor=None if not apparmor else ("enabled" if apparmor.upper().startswith("Y") else "disabled"),
        apparmor_profiles_disabled=tuple(found.get("apparmor-disabled", "").split()),
        selinux=found.get("selinux", "").strip() or None,
        selinux_config=selinux_config,
        certificate_fingerprint=fingerprint,
        libvirt_tcp_listening=libvirt_tcp_port in _listening_ports(found.get("listening", "")),
        checkpoints=checkpoints,
        host_time=host_time,
        package_index_age=index_age,
        available=available,
        client_files=_client_files(found.get("client-files", "")),
        client_certificate_fingerprint=found.get("client-certificate", "").partition("=")[2].strip() or None,
    )
