"""The batched probe: one shell script (scripts/probe.sh), one SSH round trip, everything observe needs, in few
processes on the host (issue 18: a resync probes every host).

The script prints sections `@@<name> <argument>` followed by their output; nothing of the spec is interpolated
into it: spec values are positional arguments quoted by the SSH driver, so no spec value can run as code. The host
paths it reads come from paths.py. The files it reads (configuration, the OVSDB client certificates, the
checkpoints' files) come in one `files` section, a tar archive in base64; certificate fingerprints are computed
here from the certificates (the client key is never read: only its mode and SHA-256).

The versions of ovs-vsctl, libvirtd and QEMU cost a process each (`--version`): `Probe` keeps them per host by the
binary's identity (`stat -L`: device, inode, size, modification time, path) in the operator's memory and tells the
script which identities it knows; the script runs `--version` only for the others (the first probe of a host, or
after an upgrade replaced a binary).

Whether the host needs a reboot (issue 15): Debian's sentinel (paths.REBOOT_FILES) comes in the files section, at
no cost in processes; on EL hosts (dnf/yum) the script runs `needs-restarting -r` if installed (exit 1: needed).

`parse` also reads what the probe printed before issue 18 (a section per Open vSwitch table, per file, per
certificate, `ip` twice, values of checkpoints on their line): the captured outputs of the unit tests.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import re
import tarfile
from collections import OrderedDict
from typing import Any, Iterator, Mapping, Sequence

from ..shell import fill, load
from .client_certificate import fingerprint
from .guard import PROBE_SECTION, parse_checkpoints
from .observed import ClientFile, HostState, OvsBridge, OvsInterface, OvsPort, OvsState, file_text
from .paths import (GENERATED_CERT, IFCFG_DIR, PROBED_FILES, REBOOT_FILES, REBOOT_REQUIRED, REBOOT_REQUIRED_PKGS,
                    SECRET_CERT, SELINUX_CONFIG, with_paths)

# The script (scripts/probe.sh, reading paths.PROBED_FILES, with the checkpoints section of guard.py in it): its
# first positional parameter is the binary identities whose version the operator knows (Probe.arguments), the
# others the package names to query (plan.probe_arguments).
SCRIPT = with_paths(fill(load(__package__, "probe.sh"), "# stackops: the checkpoints section (guard.PROBE_SECTION) "
                         "goes here", PROBE_SECTION),
                    "PROBED_FILES", "GENERATED_CERT", "SECRET_FILES", "SECRET_CERT", "APPARMOR_DIR",
                    "REBOOT_FILES", "IFCFG_FILES")
KNOWN = "@@known"  # a version section's body: the operator knows this binary's version (Probe)
VERSION_SECTIONS = ("ovs-version", "libvirt-version", "qemu-version")
OVS_TABLES = ("Bridge", "Port", "Interface", "Manager", "SSL")  # the ovs section's documents, in this order


class ProbeError(ValueError):
    """The probe's output cannot be trusted (a file it found is not in its files section, which is not a tar
    archive): nothing is planned from it."""


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


def ovs_documents(text: str) -> list[str]:
    """The ovs section: one JSON document per table (OVS_TABLES), as `ovs-vsctl --format=json` prints them."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return documents
        _, end = decoder.raw_decode(text, at)
        documents.append(text[at:end])
        at = end


def parse_ovs(bridges: str, ports: str, interfaces: str, managers: str, ssl: str,
              ssl_table: str | None = None) -> OvsState:
    """The tables' `--format=json` documents; the SSL settings as `ovs-vsctl get-ssl` prints them (`ssl`) or as
    the SSL table's document (`ssl_table`)."""
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
    if ssl_table is None:
        ssl_configured, settings = "Private key:" in ssl and "Certificate:" in ssl, _ssl_settings(ssl)
    else:
        ssl_configured, settings = _ssl_row(ssl_table)
    return OvsState(
        bridges=parsed_bridges, ports=parsed_ports, interfaces=parsed_interfaces,
        managers=tuple(str(r["target"]) for r in manager_rows),
        manager_connected=any(r.get("is_connected") is True for r in manager_rows),
        ssl_configured=ssl_configured,
        **settings,
    )


def _ssl_settings(text: str) -> dict[str, Any]:
    """`ovs-vsctl get-ssl`: `Private key: <path>`, `Certificate: …`, `CA Certificate: …`, `Bootstrap: true`."""
    found = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {"ssl_private_key": found.get("Private key", "").strip(),
            "ssl_certificate": found.get("Certificate", "").strip(),
            "ssl_ca_certificate": found.get("CA Certificate", "").strip(),
            "ssl_bootstrap": found.get("Bootstrap", "").strip() == "true"}


def _ssl_row(text: str) -> tuple[bool, dict[str, Any]]:
    """The SSL table (`list SSL`), what `get-ssl` shows: its one row, the one the Open_vSwitch record names (the
    table is not a root table: a row nothing names is removed)."""
    rows = ovs_rows(text)
    row = rows[0] if rows else {}
    return bool(rows), {"ssl_private_key": str(row.get("private_key", "")).strip(),
                        "ssl_certificate": str(row.get("certificate", "")).strip(),
                        "ssl_ca_certificate": str(row.get("ca_cert", "")).strip(),
                        "ssl_bootstrap": row.get("bootstrap_ca_cert") is True}


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


def _addresses(text: str, ipv4_only: bool = True) -> dict[str, tuple[str, ...]]:
    """Interface → IPv4 CIDRs from `ip -j -4 addr show` (every link listed has one), or from `ip -j addr show`
    (`ipv4_only=False`: the links without one are left out, as `-4` leaves them out)."""
    addresses: dict[str, tuple[str, ...]] = {}
    for link in json.loads(text) if text.strip() else []:
        cidrs = tuple(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet")
        if cidrs or ipv4_only:
            addresses[link["ifname"]] = cidrs
    return addresses


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


IndexAnswer = tuple[str, Mapping[str, tuple[str, ...]]]  # a package index answer: its identity, the versions listed


def _apt_index(text: str, known: IndexAnswer | None = None
               ) -> tuple[int | None, dict[str, tuple[str, ...]], str | None]:
    """(age of the apt index in seconds or None, package → versions it lists, the answer's identity) from the
    apt-index section; `known`: the identity and answer the operator told the script it knows (`known <identity>`
    in the section instead of the answer)."""
    age: int | None = None
    identity: str | None = None
    available: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "age" and fields[1].lstrip("-").isdigit():
            age = max(0, int(fields[1]))
        elif len(fields) == 2 and fields[0] == "index":
            identity = fields[1]
        elif len(fields) == 2 and fields[0] == "known":
            if known is None or known[0] != fields[1]:
                raise ProbeError(f"the probe left out the package index answer {fields[1]!r}, which the operator "
                                 f"does not remember")
            return age, dict(known[1]), fields[1]
        elif len(fields) == 3 and fields[0] == "available":
            versions = available.setdefault(fields[1], [])
            if fields[2] not in versions:
                versions.append(fields[2])
    return age, {name: tuple(versions) for name, versions in available.items()}, identity


def unpack(body: str) -> dict[str, bytes]:
    """The files section: a tar archive in base64 → absolute path → content. (A file reached twice, e.g. through a
    link, is stored once and then as a hard link to it: both are read.)"""
    if not body.strip():
        return {}
    try:
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(body)), mode="r:") as archive:
            return {"/" + member.name.lstrip("/"): reader.read() for member in archive
                    if (member.isfile() or member.islnk()) and (reader := archive.extractfile(member)) is not None}
    except (binascii.Error, tarfile.TarError, EOFError) as error:
        raise ProbeError(f"the probe's files section is no tar archive in base64 ({error})") from None


def _certificate_fingerprint(content: bytes | None) -> str | None:
    """SHA-1 of the first certificate of a PEM file, as `openssl x509 -fingerprint -sha1` shows it; None when
    there is none (openssl would print nothing)."""
    if content is None:
        return None
    try:
        return fingerprint(content.decode("ascii"))
    except (ValueError, IndexError):
        return None


def _reboot(found: Mapping[str, str], exits: Mapping[str, str], stored: Mapping[str, bytes | None],
            package_manager: str | None) -> tuple[bool | None, tuple[str, ...]]:
    """(whether the host needs a reboot, the packages that asked): the sentinel REBOOT_REQUIRED present, with the
    names in REBOOT_REQUIRED_PKGS, is a yes on any host, its absence a no except on EL (dnf/yum), where nothing
    writes it and `needs-restarting -r` answers (exit 1: needed, 0: not; the packages on its `  * name` lines);
    EL without needs-restarting, or a probe without the reboot section, does not know (None)."""
    if "reboot" not in found:
        return None, ()
    if stored.get(REBOOT_REQUIRED) is not None:
        names = (stored.get(REBOOT_REQUIRED_PKGS) or b"").decode("utf-8", "replace").split()
        return True, tuple(dict.fromkeys(names))
    status = exits.get("needs-restarting-exit", "").strip()
    if status in ("0", "1"):
        listed = re.findall(r"(?m)^\s*\*\s+(\S+)", found.get("needs-restarting", ""))
        return status == "1", tuple(dict.fromkeys(listed)) if status == "1" else ()
    if package_manager in ("dnf", "yum"):
        return None, ()
    return False, ()


CLOCK_TICKS = 100  # USER_HZ, the unit of /proc/<pid>/stat's start time on every Linux architecture hosts run


def _boot(text: str) -> tuple[str | None, float | None]:
    """(boot id, when PID 1 started in seconds since the epoch) from the boot section: the boot id, the kernel's
    btime, then /proc/1/stat (its 22nd field, after the command in parentheses, is the start in clock ticks)."""
    lines = text.splitlines()
    boot_id = lines[0].strip() if lines and lines[0].strip() else None
    try:
        btime = int(lines[1])
        fields = lines[2].rsplit(")", 1)[1].split()
        return boot_id, btime + int(fields[19]) / CLOCK_TICKS
    except (IndexError, ValueError):
        return boot_id, None


def parse(output: str, libvirt_tcp_port: int, known: Mapping[str, str | None] | None = None,
          index: IndexAnswer | None = None) -> HostState:
    """The probe's output as facts; `known`: the versions of the binaries the operator told the script it knows
    (identity → version); `index`: the package index answer it told the script it knows (identity, answer)."""
    found: dict[str, str] = {}
    stored: dict[str, bytes | None] = {}  # every file the probe read (path → content, None: missing)
    file_sections: list[str] = []  # before issue 18, each configuration file had a section
    one_pass = False  # the files section: every one of PROBED_FILES was looked for
    listed: list[str] = []  # the files it found and read, as that section says
    versions: dict[str, str | None] = {}  # version section → version
    binaries: dict[str, str | None] = {}  # identity → version, for Probe
    exits: dict[str, str] = {}  # an exit status section → the status (its argument)
    for name, argument, body in sections(output):
        if name == "file":
            stored[argument] = None if body.strip() == "@@missing" else base64.b64decode(body)
            file_sections.append(argument)
        elif name == "files":
            stored.update(unpack(body))
            one_pass, listed = True, ["/" + path for path in argument.split() if path != "-"]
        elif name in VERSION_SECTIONS:
            version = (known or {}).get(argument) if body.strip() == KNOWN else _version(body)
            versions[name] = version
            if argument != "-" and body.strip():
                binaries[argument] = version
        elif name == "needs-restarting-exit":
            exits[name] = argument
        else:
            found[name] = body
    unread = [path for path in listed if stored.get(path) is None]
    if unread:  # a file the host has was not read: nothing is planned from "missing" (it would be written anew)
        raise ProbeError(f"the probe found {', '.join(unread)} on the host but did not read it")
    files = {path: None if (content := stored.get(path)) is None else file_text(content)
             for path in (PROBED_FILES if one_pass else [p for p in file_sections if p not in REBOOT_FILES])}
    files.update({path: file_text(content) for path, content in stored.items()  # EL's ifcfg-* (network.py)
                  if path.startswith(f"{IFCFG_DIR}/ifcfg-") and content is not None})
    packages: dict[str, str | None] = {}
    for line in found.get("packages", "").splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            packages[fields[0]] = fields[1] if fields[2] == "installed" else None
    ovs = None
    if "ovs" in found:
        documents = dict(zip(OVS_TABLES, ovs_documents(found["ovs"])))
        ovs = parse_ovs(documents.get("Bridge", ""), documents.get("Port", ""), documents.get("Interface", ""),
                        documents.get("Manager", ""), "", ssl_table=documents.get("SSL", ""))
    elif "ovs-bridge" in found:
        ovs = parse_ovs(found["ovs-bridge"], found.get("ovs-port", ""), found.get("ovs-interface", ""),
                        found.get("ovs-manager", ""), found.get("ovs-ssl", ""))
    services = {}
    for line in found.get("services", "").splitlines():
        fields = line.split()
        if len(fields) == 2:
            services[fields[0]] = fields[1] == "active"
    if "ip" in found:
        addresses, links_up = _addresses(found["ip"], ipv4_only=False), _links_up(found["ip"])
    else:
        addresses, links_up = _addresses(found.get("ip-addr", "")), _links_up(found.get("ip-link", ""))
    if "certificate" in found or "client-certificate" in found:
        generated = found.get("certificate", "").partition("=")[2].strip() or None
        from_secret = found.get("client-certificate", "").partition("=")[2].strip() or None
    else:
        generated = _certificate_fingerprint(stored.get(GENERATED_CERT))
        from_secret = _certificate_fingerprint(stored.get(SECRET_CERT))
    apparmor = found.get("apparmor", "").strip()
    selinux_config = files.get(SELINUX_CONFIG)
    host_time, checkpoints = parse_checkpoints(found.get("checkpoints", ""), stored)
    index_age, available, index_identity = _apt_index(found.get("apt-index", ""), index)
    package_manager = found.get("pm", "").strip() or None
    reboot_required, reboot_required_by = _reboot(found, exits, stored, package_manager)
    boot_id, boot_time = _boot(found.get("boot", ""))
    return HostState(
        os_name=found.get("os", "").strip() or None,
        kernel=found.get("kernel", "").strip() or None,
        package_manager=package_manager,
        packages=packages,
        ovs_version=versions.get("ovs-version"),
        libvirt_version=versions.get("libvirt-version"),
        qemu_version=versions.get("qemu-version"),
        agent_version=packages.get("cloudstack-agent"),
        ovs=ovs,
        files=files,
        addresses=addresses,
        links_up=links_up,
        services=services,
        apparmor=None if not apparmor else ("enabled" if apparmor.upper().startswith("Y") else "disabled"),
        apparmor_profiles_disabled=tuple(found.get("apparmor-disabled", "").split()),
        selinux=found.get("selinux", "").strip() or None,
        selinux_config=selinux_config,
        certificate_fingerprint=generated,
        libvirt_tcp_listening=libvirt_tcp_port in _listening_ports(found.get("listening", "")),
        checkpoints=checkpoints,
        host_time=host_time,
        package_index_age=index_age,
        available=available,
        client_files=_client_files(found.get("client-files", "")),
        client_certificate_fingerprint=from_secret,
        binary_versions=binaries,
        package_index=index_identity,
        reboot_required=reboot_required,
        reboot_required_by=reboot_required_by,
        boot_id=boot_id,
        boot_time=boot_time,
    )


class Probe:
    """SCRIPT as the reconciler runs it, with what it remembers between probes, in the operator's memory (never on
    the host): the versions of each host's binaries by identity, and its last package index answer (the versions
    `apt-cache madison` listed for the packages to install, by the index's identity and the names asked), for at
    most `hosts` hosts (the one probed least recently is forgotten first: it costs its next probe three
    `--version` and one `apt-cache madison`, nothing else)."""

    script = SCRIPT

    def __init__(self, hosts: int = 4096) -> None:
        self.hosts = hosts
        # per host: identity → version of its binaries, and (identity, answer) of its package index or None
        self._known: OrderedDict[str, tuple[dict[str, str | None], IndexAnswer | None]] = OrderedDict()

    def arguments(self, host: str, packages: Sequence[str]) -> list[str]:
        """The script's positional parameters for `host` (any key naming the host: owner and address)."""
        versions, index = self._known.get(host, ({}, None))
        return [" ".join(sorted([*versions, *([index[0]] if index else [])])), *packages]

    def parse(self, host: str, output: str, libvirt_tcp_port: int) -> HostState:
        versions, index = self._known.get(host, ({}, None))
        facts = parse(output, libvirt_tcp_port, versions, index)
        answer = (facts.package_index, facts.available) if facts.package_index else None
        self._known[host] = (dict(facts.binary_versions), answer)
        self._known.move_to_end(host)
        while len(self._known) > self.hosts:
            self._known.popitem(last=False)
        return facts
