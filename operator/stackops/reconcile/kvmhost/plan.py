"""plan(spec, host) → actions: pure, no I/O. A converged host plans nothing.

Order: packages (repository source, index refresh, install; nothing else is planned while packages are to be
installed), Open vSwitch (owned leftovers removed first, then bridges, ports, bonds, fake bridges, tunnels,
internal ports, MTUs), addresses, the OVSDB manager, the network configuration that brings them back at boot
(network.py), configuration files, security policy, service restarts.

plan_removal(host, owner, address) → what deleting the KvmHost under `deletionPolicy: Delete` removes: every
Open vSwitch object it owns, its ports before their bridge, except what is kept (see plan_removal).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...api.kvmhost import Bridge, KvmHostSpec
from . import client_certificate, config, guard, network, repository
from .actions import (APPARMOR_DISABLE, APPARMOR_ENFORCE, HostAction, InstallPackages, IpCommand, MoveAddress,
                      OvsCommand, RefreshPackageIndex, RestartService, RunCommand, WriteFile)
from .observed import ADDRESSES_KEY, OWNER_KEY, HostState, OvsPort, OvsState
from .paths import AGENT_LOG4J, AGENT_PROPERTIES, LIBVIRTD_CONF, LIBVIRTD_DEFAULTS, QEMU_CONF, SELINUX_CONFIG
from .reasons import Reason


# What each role is called by each package manager.
PACKAGES = {
    "apt": {"kvm": "qemu-system-x86", "libvirt": "libvirt-daemon-system", "libvirt-clients": "libvirt-clients",
            "bridge-utils": "bridge-utils", "openvswitch": "openvswitch-switch", "agent": "cloudstack-agent"},
    "yum": {"kvm": "qemu-kvm", "libvirt": "libvirt", "libvirt-clients": "libvirt-client",
            "bridge-utils": "bridge-utils", "openvswitch": "openvswitch", "agent": "cloudstack-agent"},
}
PACKAGES["dnf"] = PACKAGES["yum"]
# spec.packages.repositoryURL as a source of the host's package manager, and its signing key (repository.py).
REPOSITORY_FILES = repository.SOURCE_FILES
REPOSITORY_MARKER = repository.MARKER
# An apt index older than this is refreshed before an install: the versions it lists may be gone from the mirror.
APT_INDEX_MAX_AGE_SECONDS = 3600


class PlanError(Exception):
    """The spec cannot be applied to this host as it is (a person must act): reason + message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Inputs:
    """What the planner reads: the spec and the host's facts (HostFacts' values, with the spec)."""

    spec: KvmHostSpec
    host: HostState
    owner: str
    signing_key: str | None = None  # the value of spec.packages.signingKeySecretRef or signingKeyConfigMapRef
    client_tls: dict[str, str] | None = field(default=None, repr=False)  # openvswitch.manager.certificateSecretRef


def package_names(spec: KvmHostSpec, manager: str | None) -> list[str]:
    names = PACKAGES.get(manager or "", {})
    wanted = [names[r] for r in ("kvm", "libvirt", "libvirt-clients", "bridge-utils", "openvswitch", "agent")
              if r in names]
    return wanted + list(spec.packages.extra)


def probe_arguments(spec: KvmHostSpec) -> list[str]:
    """What the probe looks up: every package name either package manager may use, prefixed `apt:` or `yum:`
    when only that one uses it (the other's hosts skip it), the agent as `name=version` when the spec pins its
    version (the probe then also asks apt whether its index has it)."""
    pin = spec.packages.cloudstack_agent_version
    agents = {names["agent"] for names in PACKAGES.values()}
    apt, yum = set(package_names(spec, "apt")), set(package_names(spec, "yum"))
    arguments = []
    for name in sorted(apt | yum):
        prefix = "" if name in apt and name in yum else "apt:" if name in apt else "yum:"
        arguments.append(f"{prefix}{name}={pin}" if pin and name in agents else f"{prefix}{name}")
    return arguments


def pinned(manager: str, name: str, version: str | None) -> str:
    """An exact version as the package manager spells it on its command line."""
    if version is None:
        return name
    return f"{name}={version}" if manager == "apt" else f"{name}-{version}"


def version_matches(manager: str | None, installed: str, wanted: str) -> bool:
    """Whether the installed version is the pinned one (rpm reports version-release: a pin may omit the
    release)."""
    return installed == wanted or (manager in ("dnf", "yum") and installed.startswith(f"{wanted}-"))


def plan_repository(inputs: Inputs, manager: str) -> list[HostAction]:
    """The spec's package repository as a source file of the host's package manager and, when it is signed, its
    key (written atomically); what stackops wrote is removed when the spec drops the URL. A key that is not one
    armored OpenPGP public key stops the plan (`SigningKeyInvalid`)."""
    packages = inputs.spec.packages
    secret, config_map = packages.signing_key_secret_ref, packages.signing_key_config_map_ref
    key = None
    if secret is not None or config_map is not None:
        try:
            key = repository.armored_public_key(inputs.signing_key or "")
        except repository.KeyInvalid as error:
            where = (f"packages.signingKeySecretRef (Secret {secret.name}, key {secret.key})" if secret is not None
                     else f"packages.signingKeyConfigMapRef (ConfigMap {config_map.name}, key {config_map.key})")
            raise PlanError(Reason.SIGNING_KEY_INVALID, f"{where}: {error}") from None
    return repository.plan_repository(manager, packages.repository_url, key, inputs.host.files)


def _refresh_reason(inputs: Inputs, manager: str, installs: list[tuple[str, str | None]], source_changed: bool) -> str:
    """Why the index must be brought up to date before installing ("": it need not)."""
    if manager != "apt":
        return "dnf/yum metadata may predate the packages asked for"
    if source_changed:
        return "the repository source changed"
    age = inputs.host.package_index_age
    if age is None:
        return "the host has no package index yet"
    for name, version in installs:
        available = inputs.host.available.get(name, ())
        if version is None and not available:
            return f"{name} is not in the index"
        if version is not None and version not in available:
            return f"{name} {version} is not in the index"
    if age > APT_INDEX_MAX_AGE_SECONDS:
        return f"the index is {age // 3600} h {age % 3600 // 60} min old"
    return ""


def agent_change(spec: KvmHostSpec, host: HostState) -> tuple[str, str] | None:
    """(installed, pinned) when cloudstack-agent is installed and is not the pinned version: the change that
    maintenance.packageChanges UnderMaintenance makes on an emptied host."""
    agent = PACKAGES.get(host.package_manager or "", {}).get("agent")
    wanted = spec.packages.cloudstack_agent_version
    have = host.packages.get(agent) if agent else None
    if have is None or wanted is None or version_matches(host.package_manager, have, wanted):
        return None
    return have, wanted


def plan_packages(inputs: Inputs, defer_agent: bool = False) -> list[HostAction]:
    """The spec's repository as a package source, then — when a package is missing or the agent is not the
    pinned version — a refresh of the package index if it may not list what is asked for, and one install.
    `defer_agent`: an installed agent of another version is left as it is (its change is made under
    maintenance)."""
    manager = inputs.host.package_manager
    packages = inputs.spec.packages
    wanted = package_names(inputs.spec, manager)
    agent = PACKAGES.get(manager or "", {}).get("agent")
    actions = plan_repository(inputs, manager) if manager and packages.install else []
    installs: list[tuple[str, str | None]] = []
    changes: list[str] = []
    for name in wanted:
        have = inputs.host.packages.get(name)
        version = packages.cloudstack_agent_version if name == agent else None
        if have is None:
            installs.append((name, version))
            changes.append(name if version is None else f"{name} {version}")
        elif version is not None and not version_matches(manager, have, version) and not defer_agent:
            installs.append((name, version))
            changes.append(f"{name} {have} → {version}")
    if not installs:
        return actions
    if manager is None:
        raise PlanError(Reason.NO_PACKAGE_MANAGER, "neither apt nor dnf/yum found on the host")
    if not packages.install:
        raise PlanError(Reason.PACKAGES_MISSING, f"packages to install: {', '.join(changes)}, and packages.install is "
                        "false")
    reason = _refresh_reason(inputs, manager, installs, source_changed=bool(actions))
    if reason:
        command = "apt-get update" if manager == "apt" else f"{manager} clean expire-cache"
        actions.append(RefreshPackageIndex(f"refresh the package index ({command}): {reason}", manager=manager))
    downgrade = any(version is not None and inputs.host.packages.get(name) is not None
                    for name, version in installs)
    actions.append(InstallPackages(f"install {', '.join(changes)} with {manager}", operation="add", manager=manager,
                                   packages=tuple(pinned(manager, name, version) for name, version in installs),
                                   downgrade=downgrade))
    return actions


def _owned(owner: str) -> tuple[str, ...]:
    return (f"external_ids:{OWNER_KEY}={owner}",)


def _desired_port_names(bridge: Bridge) -> set[str]:
    return ({*bridge.ports} | {b.name for b in bridge.bonds} | {v.name for v in bridge.vlan_bridges}
            | {t.name for t in bridge.tunnels} | {p.name for p in bridge.internal_ports})


def plan_ovs(inputs: Inputs) -> list[HostAction]:
    spec = inputs.spec.openvswitch
    ovs = inputs.host.ovs
    if not spec.bridges and spec.manager is None:
        return []
    if ovs is None:
        raise PlanError(Reason.OPEN_VSWITCH_NOT_RUNNING, "Open vSwitch does not answer (ovs-vsctl show failed)")
    actions: list[HostAction] = []
    actions += _remove_owned_leftovers(inputs, ovs)
    for bridge in spec.bridges:
        actions += _plan_bridge(inputs, ovs, bridge)
    return actions


def _remove_owned_leftovers(inputs: Inputs, ovs: OvsState) -> list[HostAction]:
    wanted_bridges = {b.name for b in inputs.spec.openvswitch.bridges}
    wanted_ports = {(b.name, p) for b in inputs.spec.openvswitch.bridges for p in _desired_port_names(b)}
    owned_bridges, owned_ports = ovs.owned_by(inputs.owner)
    actions: list[HostAction] = []
    for port in owned_ports:
        if port.bridge in wanted_bridges and (port.bridge, port.name) not in wanted_ports:
            actions.append(_remove_port(port, "no longer in the spec"))
    for bridge in owned_bridges:
        if bridge.name not in wanted_bridges:
            actions.append(_remove_bridge(bridge.name, "no longer in the spec"))
    return actions


def _remove_port(port: OvsPort, why: str, label: str = "port") -> OvsCommand:
    """A port (NIC, bond, tunnel, internal port) leaves its bridge; a fake bridge is deleted as a bridge."""
    if port.fake_bridge:
        return OvsCommand(f"remove VLAN bridge {port.name} ({why})", disruptive=True, operation="remove",
                          args=("del-br", port.name))
    return OvsCommand(f"remove {label} {port.name} from {port.bridge} ({why})", disruptive=True, operation="remove",
                      args=("del-port", port.bridge, port.name))


def _remove_bridge(name: str, why: str) -> OvsCommand:
    return OvsCommand(f"remove bridge {name} ({why})", disruptive=True, operation="remove", args=("del-br", name))


def _foreign(ovs: OvsState, name: str, bridge: str) -> None:
    port = ovs.ports.get(name)
    if port is not None and port.bridge != bridge:
        raise PlanError(Reason.INTERFACE_IN_USE, f"{name} is already a port of bridge {port.bridge}, not {bridge}")


def _plan_bridge(inputs: Inputs, ovs: OvsState, bridge: Bridge) -> list[HostAction]:
    owner = inputs.owner
    actions: list[HostAction] = []
    existing = ovs.bridges.get(bridge.name)
    if existing is None:
        if bridge.name in ovs.ports:
            raise PlanError(Reason.INTERFACE_IN_USE,
                            f"{bridge.name} exists as a port of bridge {ovs.ports[bridge.name].bridge}")
        actions.append(OvsCommand(f"create bridge {bridge.name} (datapath {bridge.datapath_type})", operation="add",
                                  args=("add-br", bridge.name, "--", "set", "Bridge", bridge.name,
                                        f"datapath_type={bridge.datapath_type}", *_owned(owner))))
    elif (existing.datapath_type or "system") != bridge.datapath_type:
        actions.append(OvsCommand(f"set datapath of bridge {bridge.name} to {bridge.datapath_type}", disruptive=True,
                                  args=("set", "Bridge", bridge.name, f"datapath_type={bridge.datapath_type}")))

    for nic in bridge.ports:
        _foreign(ovs, nic, bridge.name)
        if nic not in ovs.ports:
            actions.append(OvsCommand(f"add {nic} to bridge {bridge.name}", operation="add", args=(
                "add-port", bridge.name, nic, "--", "set", "Port", nic, *_owned(owner))))

    for bond in bridge.bonds:
        _foreign(ovs, bond.name, bridge.name)
        for nic in bond.interfaces:
            if nic in ovs.ports and ovs.ports[nic].name != bond.name:
                raise PlanError(Reason.INTERFACE_IN_USE,
                                f"{nic} is already port {nic} of bridge {ovs.ports[nic].bridge}")
        options = (f"bond_mode={bond.bond_mode}", f"lacp={bond.lacp}", f"other_config:lacp-time={bond.lacp_time}")
        port = ovs.ports.get(bond.name)
        create = ("add-bond", bridge.name, bond.name, *bond.interfaces, *options, "--", "set", "Port", bond.name,
                  *_owned(owner))
        if port is None:
            actions.append(OvsCommand(f"create bond {bond.name} of {', '.join(bond.interfaces)} on {bridge.name} "
                                      f"({bond.bond_mode}, lacp {bond.lacp}, lacp-time {bond.lacp_time})",
                                      operation="add", args=create))
        elif port.interfaces != tuple(sorted(bond.interfaces)):
            actions.append(OvsCommand(f"rebuild bond {bond.name} with {', '.join(bond.interfaces)}", disruptive=True,
                                      args=("del-port", bridge.name, bond.name, "--", *create)))
        elif (port.bond_mode, port.lacp, port.other_config.get("lacp-time")) != (
                bond.bond_mode, bond.lacp, bond.lacp_time):
            actions.append(OvsCommand(f"set bond {bond.name} to {bond.bond_mode}, lacp {bond.lacp}, lacp-time "
                                      f"{bond.lacp_time}", args=("set", "Port", bond.name, *options)))

    for vlan in bridge.vlan_bridges:
        _foreign(ovs, vlan.name, bridge.name)
        port = ovs.ports.get(vlan.name)
        create = ("add-br", vlan.name, bridge.name, str(vlan.vlan), "--", "set", "Port", vlan.name, *_owned(owner))
        if port is None:
            actions.append(OvsCommand(f"create VLAN bridge {vlan.name} (VLAN {vlan.vlan}) on {bridge.name}",
                                      operation="add", args=create))
        elif port.tag != vlan.vlan or not port.fake_bridge:
            actions.append(OvsCommand(f"move VLAN bridge {vlan.name} to VLAN {vlan.vlan}", disruptive=True,
                                      args=("del-br", vlan.name, "--", *create)))

    for tunnel in bridge.tunnels:
        _foreign(ovs, tunnel.name, bridge.name)
        options = [f"options:remote_ip={tunnel.remote_ip}"] + ([f"options:key={tunnel.key}"] if tunnel.key is not None
                                                                else [])
        iface = ovs.interfaces.get(tunnel.name)
        if tunnel.name not in ovs.ports:
            actions.append(OvsCommand(f"create {tunnel.type} port {tunnel.name} to {tunnel.remote_ip} on {bridge.name}",
                                      operation="add",
                                      args=("add-port", bridge.name, tunnel.name, "--", "set", "Interface",
                                            tunnel.name, f"type={tunnel.type}", *options, "--", "set", "Port",
                                            tunnel.name, *_owned(owner))))
        elif iface is None or iface.type != tunnel.type or iface.options.get("remote_ip") != tunnel.remote_ip or \
                iface.options.get("key") != (None if tunnel.key is None else str(tunnel.key)):
            args: tuple[str, ...] = ("set", "Interface", tunnel.name, f"type={tunnel.type}", *options)
            if tunnel.key is None and iface is not None and "key" in iface.options:
                args += ("--", "remove", "Interface", tunnel.name, "options", "key")
            actions.append(OvsCommand(f"set {tunnel.type} port {tunnel.name} to {tunnel.remote_ip}", args=args))

    for internal in bridge.internal_ports:
        _foreign(ovs, internal.name, bridge.name)
        if internal.name not in ovs.ports:
            actions.append(OvsCommand(f"create internal port {internal.name} on {bridge.name}", operation="add", args=(
                "add-port", bridge.name, internal.name, "--", "set", "Interface", internal.name, "type=internal",
                "--", "set", "Port", internal.name, *_owned(owner))))

    mtus = {bridge.name: bridge.mtu, **{nic: bridge.mtu for b in bridge.bonds for nic in b.interfaces},
            **{nic: bridge.mtu for nic in bridge.ports},
            **{v.name: v.mtu for v in bridge.vlan_bridges}, **{p.name: p.mtu for p in bridge.internal_ports}}
    for name, mtu in mtus.items():
        if mtu is not None and (ovs.interfaces.get(name) is None or ovs.interfaces[name].mtu_request != mtu):
            actions.append(OvsCommand(f"set MTU of {name} to {mtu}", args=(
                "set", "Interface", name, f"mtu_request={mtu}")))
    return actions


def plan_addresses(inputs: Inputs) -> list[HostAction]:
    """Addresses on bridges, VLAN bridges and internal ports; the ones the operator set are recorded in the
    interface's external_ids so that only those are ever removed."""
    ovs = inputs.host.ovs
    actions: list[HostAction] = []
    for bridge in inputs.spec.openvswitch.bridges:
        wanted = {bridge.name: bridge.addresses, **{v.name: v.addresses for v in bridge.vlan_bridges},
                  **{p.name: p.addresses for p in bridge.internal_ports}}
        # NICs the spec makes ports of this bridge: an address one of them holds and the spec puts on an
        # interface of the bridge is moved (with the NIC's routes), not copied.
        members = [*bridge.ports, *(nic for bond in bridge.bonds for nic in bond.interfaces)]
        for iface, cidrs in wanted.items():
            have = set(inputs.host.addresses.get(iface, ()))
            recorded = set(filter(None, (ovs.interfaces[iface].external_ids.get(ADDRESSES_KEY, "").split(",")
                                         if ovs and iface in ovs.interfaces else [])))
            management = inputs.spec.address
            for cidr in sorted(recorded - set(cidrs)):
                if cidr in have:
                    actions.append(IpCommand(f"remove address {cidr} from {iface}", operation="remove",
                                             disruptive=cidr.split("/")[0] == management,
                                             args=("addr", "del", cidr, "dev", iface)))
            for cidr in cidrs:
                holder = next((nic for nic in members if cidr in inputs.host.addresses.get(nic, ())), None)
                if cidr not in have and holder is not None:
                    actions.append(MoveAddress(f"move address {cidr} from {holder} to {iface} (with the routes "
                                               f"through {holder})", cidr=cidr, source=holder, target=iface))
                elif cidr not in have:
                    actions.append(IpCommand(f"add address {cidr} to {iface}", operation="add",
                                             disruptive=cidr.split("/")[0] == management,
                                             args=("addr", "add", cidr, "dev", iface)))
            if cidrs and not inputs.host.links_up.get(iface, False):
                actions.append(IpCommand(f"bring {iface} up", args=("link", "set", iface, "up")))
            if set(cidrs) != recorded and (cidrs or recorded):
                value = ",".join(cidrs)
                args = ("set", "Interface", iface, f'external_ids:{ADDRESSES_KEY}="{value}"') if value else (
                    "remove", "Interface", iface, "external_ids", ADDRESSES_KEY)
                actions.append(OvsCommand(f"record the addresses stackops manages on {iface}", args=args))
    return actions


def client_material(inputs: Inputs) -> client_certificate.Material | None:
    """The client key and certificate of `clientCertificate: Secret`, checked (`ClientCertificateInvalid`)."""
    manager = inputs.spec.openvswitch.manager
    if manager is None or manager.client_certificate != "Secret" or manager.certificate_secret_ref is None:
        return None
    try:
        return client_certificate.material(inputs.client_tls or {}, manager.certificate_secret_ref.name)
    except client_certificate.MaterialInvalid as error:
        raise PlanError(Reason.CLIENT_CERTIFICATE_INVALID, f"openvswitch.manager.certificateSecretRef: {error}; "
                        "nothing was written") from None


def plan_manager(inputs: Inputs) -> list[HostAction]:
    """SSL (the client certificate, generated or from a Secret: client_certificate.py), then the manager."""
    manager = inputs.spec.openvswitch.manager
    ovs = inputs.host.ovs
    if manager is None or ovs is None:
        return []
    actions: list[HostAction] = []
    target = f"{manager.protocol}:{manager.address}:{manager.port}"
    if manager.protocol == "ssl":
        actions += client_certificate.plan_ssl(manager, ovs, client_material(inputs), inputs.host.client_files,
                                               generated=inputs.host.certificate_fingerprint is not None)
    if ovs.managers != (target,):
        actions.append(OvsCommand(f"set the OVSDB manager to {target}", args=("set-manager", target)))
    return actions


def _libvirt_values(spec: KvmHostSpec) -> dict[str, str | int | bool]:
    lv = spec.libvirt
    return {"listen_tls": lv.listen_tls, "listen_tcp": lv.listen_tcp, "tcp_port": str(lv.tcp_port),
            "auth_tcp": lv.auth_tcp, "mdns_adv": lv.mdns_adv}


def _edit(inputs: Inputs, path: str, wanted: dict[str, str | int | bool], style: config.Style, service: str | None,
          what: str) -> list[HostAction]:
    text = inputs.host.files.get(path)
    changes = config.needs_change(text, wanted, style)
    if not changes:
        return []
    summary = f"set {', '.join(changes.values())} in {path}" if len(changes) <= 3 else \
        f"set {len(changes)} {what} keys in {path}: {', '.join(changes)}"
    return [WriteFile(summary, path=path, content=config.set_keys(text, wanted, style), service=service)]


def plan_files(inputs: Inputs) -> list[HostAction]:
    spec = inputs.spec
    actions: list[HostAction] = []
    actions += _edit(inputs, LIBVIRTD_CONF, _libvirt_values(spec), "libvirt", "libvirtd", "libvirtd")
    actions += _edit(inputs, QEMU_CONF, {"vnc_listen": spec.qemu.vnc_listen}, "libvirt", "libvirtd", "qemu")
    defaults = LIBVIRTD_DEFAULTS.get(inputs.host.package_manager or "")
    if defaults and (spec.libvirt.listen_tcp or spec.libvirt.listen_tls):
        actions += _edit(inputs, defaults, {"LIBVIRTD_ARGS": "--listen"}, "shell", "libvirtd", "libvirtd")
    if spec.cloudstack_agent.properties:
        if inputs.host.files.get(AGENT_PROPERTIES) is None and inputs.host.packages.get("cloudstack-agent") is None:
            pass  # written once the agent package is installed (the next pass)
        else:
            actions += _edit(inputs, AGENT_PROPERTIES, dict(spec.cloudstack_agent.properties), "properties",
                             "cloudstack-agent", "agent")
    log4j = inputs.host.files.get(AGENT_LOG4J)
    if log4j is not None and config.log_level(log4j) not in (None, spec.cloudstack_agent.log_level):
        edited = config.set_log_level(log4j, spec.cloudstack_agent.log_level)
        if edited is not None:
            actions.append(WriteFile(f"set the cloudstack-agent log level to {spec.cloudstack_agent.log_level}",
                                     path=AGENT_LOG4J, content=edited, service="cloudstack-agent"))
    return actions


def plan_security(inputs: Inputs) -> list[HostAction]:
    policy = inputs.spec.security_policy
    host = inputs.host
    actions: list[HostAction] = []
    if policy.se_linux != "Unmanaged":
        if host.selinux is None:
            raise PlanError(Reason.SELINUX_UNAVAILABLE,
                            f"seLinux: {policy.se_linux} asked, but the host has no SELinux")
        if host.selinux != policy.se_linux:
            actions.append(RunCommand(f"set SELinux to {policy.se_linux}",
                                      command=("setenforce", "1" if policy.se_linux == "Enforcing" else "0")))
        actions += _edit(inputs, SELINUX_CONFIG, {"SELINUX": policy.se_linux.lower()}, "properties", None,
                         "SELinux")
    if policy.app_armor != "Unmanaged":
        if host.apparmor is None:
            raise PlanError(Reason.APPARMOR_UNAVAILABLE,
                            f"appArmor: {policy.app_armor} asked, but the host has no AppArmor")
        profiles = ("usr.sbin.libvirtd", "usr.lib.libvirt.virt-aa-helper")
        disabled = set(host.apparmor_profiles_disabled)
        if policy.app_armor == "DisableLibvirt":
            for profile in profiles:
                if profile not in disabled:
                    actions.append(RunCommand(f"disable the AppArmor profile {profile}", operation="remove",
                                              command=("sh", "-c", APPARMOR_DISABLE, "stackops-apparmor", profile)))
        else:
            for profile in profiles:
                if profile in disabled:
                    actions.append(RunCommand(f"enforce the AppArmor profile {profile}", command=(
                        "sh", "-c", APPARMOR_ENFORCE, "stackops-apparmor", profile)))
    return actions


def plan_services(inputs: Inputs, changes: list[HostAction]) -> list[HostAction]:
    """Restart a service when its configuration changed, or start it when it is not running."""
    restart = []
    for service in ("libvirtd", "cloudstack-agent"):
        changed = any(isinstance(a, WriteFile) and a.service == service for a in changes)
        installed = service != "cloudstack-agent" or inputs.host.packages.get("cloudstack-agent") is not None
        if not installed:
            continue
        if changed:
            restart.append(RestartService(f"restart {service} (its configuration changed)", service=service))
        elif inputs.host.services.get(service) is False:
            restart.append(RestartService(f"start {service} (it is not running)", operation="add", service=service))
    if inputs.spec.libvirt.listen_tcp and not inputs.host.libvirt_tcp_listening and not any(
            a.service == "libvirtd" for a in restart if isinstance(a, RestartService)):
        restart.append(RestartService(f"restart libvirtd (not listening on TCP {inputs.spec.libvirt.tcp_port})",
                                      service="libvirtd"))
    return restart


def management_path(spec: KvmHostSpec, host: HostState) -> set[str]:
    """Interfaces a change to which can cut the operator off: the one carrying the management address, the bridge
    it belongs to and that bridge's ports and NICs, and any interface the spec would move the address to."""
    address = spec.address
    names = carrying_path(address, host)
    for bridge in spec.openvswitch.bridges:
        wanted = {bridge.name: bridge.addresses, **{v.name: v.addresses for v in bridge.vlan_bridges},
                  **{p.name: p.addresses for p in bridge.internal_ports}}
        for iface, cidrs in wanted.items():
            if any(c.split("/")[0] == address for c in cidrs) and iface not in names:
                names.add(iface)
    return names


def carrying_path(address: str, host: HostState) -> set[str]:
    """The part of the management path the host has now: the interface carrying `address`, the bridge it belongs
    to (a VLAN bridge's parent) and that bridge's ports and NICs."""
    names = {iface for iface, cidrs in host.addresses.items() if any(c.split("/")[0] == address for c in cidrs)}
    ovs = host.ovs
    if ovs is not None:
        for iface in list(names):
            port = ovs.ports.get(iface)
            bridge = port.bridge if port is not None else (iface if iface in ovs.bridges else None)
            if bridge:
                names.add(bridge)
                for other in ovs.ports.values():
                    if other.bridge == bridge:
                        names.add(other.name)
                        names.update(other.interfaces)
    return names


def plan(spec: KvmHostSpec, host: HostState, owner: str, signing_key: str | None = None,
         client_tls: dict[str, str] | None = None, defer_agent: bool = False) -> list[HostAction]:
    """`signing_key`: the value of spec.packages.signingKeySecretRef, when the spec has one; `client_tls`: the
    keys of openvswitch.manager.certificateSecretRef (`tls.crt`, `tls.key`, `ca.crt`), when it has one;
    `defer_agent`: a change of the installed agent's version is left to maintenance (`agent_change`)."""
    inputs = Inputs(spec=spec, host=host, owner=owner, signing_key=signing_key, client_tls=client_tls)
    actions = plan_packages(inputs, defer_agent)
    if any(isinstance(a, InstallPackages) for a in actions):
        return actions  # the rest is planned against the host once its packages are there
    actions += plan_ovs(inputs)
    actions += plan_addresses(inputs)
    actions += plan_manager(inputs)
    actions += network.plan_network(spec, owner, host.package_manager, host.files)
    actions += plan_files(inputs)
    actions += plan_security(inputs)
    actions += plan_services(inputs, actions)
    return actions


def agent_install(spec: KvmHostSpec, host: HostState, owner: str, signing_key: str | None = None) -> list[HostAction]:
    """The package actions of the agent's version change alone (the index refreshed when it may not list the
    version, then the install), for maintenance's Updating step."""
    return [a for a in plan_packages(Inputs(spec=spec, host=host, owner=owner, signing_key=signing_key))
            if isinstance(a, (InstallPackages, RefreshPackageIndex))]


# --------------------------------------------------------------------------------------------------------------
# deletionPolicy: Delete

REMOVAL_WHY = "deletionPolicy Delete"


@dataclass(frozen=True)
class Kept:
    """An owned Open vSwitch object that deletion leaves on the host, and why."""

    what: str  # "bridge cloudbr0", "bond bond0 on cloudbr0", "VLAN bridge mgmt0 on cloudbr0"
    reason: str  # ManagementPath | SharedObject
    detail: str = ""  # for SharedObject: the ports stackops did not create that deleting it would delete


@dataclass(frozen=True)
class Removal:
    """What deleting a KvmHost does to the host's Open vSwitch: `actions` in order (every port, bond, tunnel and
    VLAN bridge before its bridge), `kept` the owned objects left in place."""

    actions: tuple[HostAction, ...] = ()
    kept: tuple[Kept, ...] = ()


def _port_label(ovs: OvsState, port: OvsPort) -> str:
    if port.fake_bridge:
        return "VLAN bridge"
    if len(port.interfaces) > 1 or port.bond_mode:
        return "bond"
    iface = ovs.interfaces.get(port.name)
    kind = iface.type if iface is not None else ""
    if kind == "internal":
        return "internal port"
    return f"{kind} port" if kind else "port"


def plan_removal(host: HostState, owner: str, address: str) -> Removal:
    """The Open vSwitch objects `owner` (namespace/name) created — marked `external_ids:stackops-owner` — removed,
    bridge by bridge (by name): its owned VLAN bridges, then its other owned ports (bonds, tunnels, internal ports,
    NICs), then the bridge itself when owned. Nothing else is touched. Two kinds of owned objects are kept:

    - `ManagementPath`: removing them would name an interface of the path the management `address` runs over now
      (the interface carrying it, its bridge and that bridge's ports and NICs; `guard.risky_actions`). Deleting
      them could cut the operator and everyone else off the host, with nobody left to put it back: the whole
      bridge carrying the address stays, with its owned ports, bonds, tunnels and VLAN bridges.
    - `SharedObject`: a bridge that also holds ports stackops did not create (a VM's, a hand-made one), or a VLAN
      bridge whose VLAN has such ports: `ovs-vsctl del-br` would delete those too. Its owned ports are removed.

    When nothing is kept, the network configuration files stackops wrote (network.py) go last: left in place they
    would bring the removed objects back at the next boot. When something is kept they stay as they are.

    Raises PlanError when Open vSwitch is installed but does not answer (its objects cannot be seen); a host
    without Open vSwitch has nothing to remove."""
    ovs = host.ovs
    if ovs is None:
        if host.ovs_version is None:
            return Removal()
        raise PlanError(Reason.OPEN_VSWITCH_NOT_RUNNING, "Open vSwitch does not answer (ovs-vsctl show failed): the "
                        "objects this KvmHost created cannot be removed until it does")

    def mine(port: OvsPort) -> bool:
        return port.external_ids.get(OWNER_KEY) == owner

    owned_bridges, owned_ports = ovs.owned_by(owner)
    owned_names = {b.name for b in owned_bridges}
    candidates: list[tuple[str, HostAction]] = []
    kept: list[Kept] = []
    for bridge in sorted(owned_names | {p.bridge for p in owned_ports if p.bridge}):
        ports = sorted((p for p in owned_ports if p.bridge == bridge), key=lambda p: (not p.fake_bridge, p.name))
        for port in ports:
            label = _port_label(ovs, port)
            what = f"{label} {port.name} on {bridge}"
            if port.fake_bridge:
                others = sorted(o.name for o in ovs.ports.values() if o.bridge == bridge and o.tag == port.tag
                                and o.name != port.name and not mine(o))
                if others:
                    kept.append(Kept(what, "SharedObject", f"VLAN {port.tag} also has {', '.join(others)}"))
                    continue
            candidates.append((what, _remove_port(port, REMOVAL_WHY, label)))
        if bridge in owned_names:
            others = sorted(o.name for o in ovs.ports.values() if o.bridge == bridge and o.name != bridge
                            and not mine(o))
            if others:
                kept.append(Kept(f"bridge {bridge}", "SharedObject", f"it also holds {', '.join(others)}"))
                continue
            candidates.append((f"bridge {bridge}", _remove_bridge(bridge, REMOVAL_WHY)))
    risky = {id(a) for a in guard.risky_actions([action for _, action in candidates],
                                                 carrying_path(address, host))}
    actions: list[HostAction] = []
    for what, action in candidates:
        if id(action) in risky:
            kept.append(Kept(what, "ManagementPath"))
        else:
            actions.append(action)
    if not kept:  # with kept objects the file still describes them (and the management address): it stays
        actions += network.remove_owned(host.package_manager, host.files, REMOVAL_WHY)
    return Removal(actions=tuple(actions), kept=tuple(kept))
