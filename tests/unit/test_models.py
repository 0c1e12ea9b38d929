"""The API models: valid specs parse, defaults are the documented ones, invalid specs fail with the field named."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stackops.api.cloudstackrelease import CloudStackReleaseSpec
from stackops.api.common import to_camel
from stackops.api.kinds import BY_KIND
from stackops.api.kvmhost import KvmHostSpec
from stackops.api.systemvmtemplate import SystemVMTemplateSpec
from stackops.api.xenpool import XenPoolSpec
from stackops.api.validation import format_validation_error

from support.specs import FULL, HOST_KEY, MINIMAL  # noqa: E402

MODELS: dict[str, type[BaseModel]] = {
    "XenPool": XenPoolSpec,
    "KvmHost": KvmHostSpec,
    "SystemVMTemplate": SystemVMTemplateSpec,
    "CloudStackRelease": CloudStackReleaseSpec,
}


def spec(kind: str, full: bool = False, **changes: Any) -> dict[str, Any]:
    """A deep copy of the minimal (or full) spec with top-level keys replaced."""
    data = copy.deepcopy((FULL if full else MINIMAL)[kind])
    data.update(changes)
    return data


def parse(kind: str, data: dict[str, Any]) -> Any:
    return MODELS[kind].model_validate(data)


def error_text(kind: str, data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse(kind, data)
    return format_validation_error(caught.value)


Path = tuple[Any, ...]


def set_path(data: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def get_path(data: dict[str, Any], path: Path) -> Any:
    node: Any = data
    for key in path:
        node = node[key]
    return node


def dotted(path: Path) -> str:
    text = "spec"
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text


# --- valid specs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MODELS))
def test_minimal_spec_parses(kind: str) -> None:
    parse(kind, spec(kind))


@pytest.mark.parametrize("kind", list(MODELS))
def test_full_spec_parses_and_round_trips(kind: str) -> None:
    model = parse(kind, spec(kind, full=True))
    dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped == spec(kind, full=True)
    assert parse(kind, dumped) == model


def test_kinds_use_these_models() -> None:
    assert {name: k.spec for name, k in BY_KIND.items()} == MODELS


def test_unknown_fields_are_rejected() -> None:
    text = error_text("XenPool", spec("XenPool", haTimeout=180))
    assert "spec.haTimeout" in text
    text = error_text("KvmHost", spec("KvmHost", ssh={**MINIMAL["KvmHost"]["ssh"], "hostkey": HOST_KEY}))
    assert "spec.ssh.hostkey" in text


def test_snake_case_names_are_accepted_in_python() -> None:
    model = XenPoolSpec(members=[{"name": "xen1", "address": "10.0.0.1"}], credentials_secret_ref={"name": "root"},
                        tls={"insecure_skip_verify": True})
    assert model.tls.insecure_skip_verify is True


@pytest.mark.parametrize(("snake", "camel"), [
    ("heartbeat_sr", "heartbeatSR"), ("remote_ip", "remoteIP"), ("repository_url", "repositoryURL"),
    ("vm_ha_restart_priority", "vmHARestartPriority"), ("system_vms", "systemVMs"), ("members", "members"),
    ("timeout_seconds", "timeoutSeconds"), ("webhook_url_secret_ref", "webhookURLSecretRef"),
])
def test_camel_case_aliases_keep_acronyms_in_capitals(snake: str, camel: str) -> None:
    assert to_camel(snake) == camel


# --- defaults -------------------------------------------------------------------------------------------------------


def test_xenpool_defaults() -> None:
    pool = parse("XenPool", spec("XenPool"))
    assert pool.management_policy == "Manage"
    assert pool.deletion_policy == "Orphan"
    assert pool.ha.enabled is True
    assert pool.ha.timeout_seconds == 180
    assert pool.ha.heartbeat_sr.type == "nfs"
    assert pool.ha.allow_fewer_than_three_hosts is False
    assert pool.ha.host_failures_to_tolerate is None
    assert pool.vm_ha_restart_priority.policy == "Clear"
    assert pool.host_recovery.enable_disabled_hosts is True
    assert pool.master_failover.policy == "Disabled"
    assert pool.uniqueness.policy == "Detect"
    assert pool.allowed_destructive_actions == []
    assert pool.master is None and pool.cloudstack is None and pool.vswitch_controller is None
    assert pool.resync_interval_seconds == 300


def test_xenpool_ha_timeout_defaults_to_180_even_when_ha_is_given() -> None:
    pool = parse("XenPool", spec("XenPool", ha={"enabled": True}))
    assert pool.ha.timeout_seconds == 180


def test_kvmhost_defaults() -> None:
    host = parse("KvmHost", spec("KvmHost"))
    assert host.management_policy == "Manage"
    assert host.deletion_policy == "Orphan"
    assert host.ssh.user == "root" and host.ssh.port == 22 and host.ssh.sudo is False
    assert host.ssh.private_key_secret_ref.key == "ssh-privatekey"
    assert host.packages.install is True
    assert host.openvswitch.bridges == [] and host.openvswitch.manager is None
    assert host.openvswitch.rollback_timeout_seconds == 60
    assert host.libvirt.listen_tcp is True and host.libvirt.listen_tls is False
    assert host.libvirt.tcp_port == 16509 and host.libvirt.auth_tcp == "none"
    assert host.qemu.vnc_listen == "0.0.0.0"
    assert host.cloudstack_agent.properties == {"network.bridge.type": "openvswitch"}
    assert host.cloudstack_agent.log_level == "INFO"
    assert host.security_policy.app_armor == "Unmanaged" and host.security_policy.se_linux == "Unmanaged"


def test_kvmhost_bond_and_bridge_defaults() -> None:
    host = parse("KvmHost", spec("KvmHost", openvswitch={"bridges": [{
        "name": "cloudbr0",
        "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"]}],
        "tunnels": [{"name": "vxlan0", "remoteIP": "10.0.0.2"}],
    }], "manager": {"address": "10.0.0.9"}}))
    bridge = host.openvswitch.bridges[0]
    assert bridge.datapath_type == "system"
    bond = bridge.bonds[0]
    assert (bond.bond_mode, bond.lacp, bond.lacp_time) == ("balance-tcp", "active", "fast")
    assert bridge.tunnels[0].type == "vxlan"
    manager = host.openvswitch.manager
    assert (manager.protocol, manager.port, manager.client_certificate) == ("ssl", 6632, "Generate")


def test_systemvmtemplate_defaults() -> None:
    template = parse("SystemVMTemplate", spec("SystemVMTemplate"))
    assert template.management_policy == "Manage"
    assert template.deletion_policy == "Orphan"
    assert template.activation.set_router_template is True
    assert template.activation.set_minimum_required_version is True
    assert template.rollout.system_vms.replace is True
    routers = template.rollout.routers
    assert routers.enabled is True and routers.max_unavailable == 1
    assert routers.only_requiring_upgrade is True and routers.respect_redundant_pairs is True
    assert routers.maintenance_window is None and routers.max_retries == 3
    assert template.templates[0].zones == [] and template.templates[0].os_type == "Debian GNU/Linux 12 (64-bit)"
    assert template.resync_interval_seconds == 120


def test_cloudstackrelease_defaults() -> None:
    release = parse("CloudStackRelease", spec("CloudStackRelease"))
    assert release.management_policy == "Manage"
    assert release.deletion_policy == "Orphan"
    assert release.version_rule == "Legacy"
    assert release.allow_schema_upgrade is False
    assert release.pull_requests == []
    assert release.builder.type == "Local" and release.builder.work_dir == "/var/lib/stackops/build"
    assert release.build.maven_profiles == ["systemvm"] and release.build.skip_tests is True
    assert release.build.timeout_minutes == 180
    assert release.packaging.enabled is True and release.packaging.distribution == "centos7"


# --- cross-field validators -----------------------------------------------------------------------------------------


def test_xenpool_master_must_be_a_member() -> None:
    text = error_text("XenPool", spec("XenPool", master="xen9"))
    assert "master" in text and "'xen9'" in text and "not one of the members" in text


@pytest.mark.parametrize(("members", "message"), [
    ([{"name": "xen1", "address": "10.0.0.11"}, {"name": "xen1", "address": "10.0.0.12"}],
     "members: names must be unique"),
    ([{"name": "xen1", "address": "10.0.0.11"}, {"name": "xen2", "address": "10.0.0.11"}],
     "members: addresses must be unique"),
], ids=["names", "addresses"])
def test_xenpool_members_unique(members: list[dict[str, str]], message: str) -> None:
    assert message in error_text("XenPool", spec("XenPool", members=members))


def test_xenpool_needs_ca_or_explicit_insecure_skip_verify() -> None:
    data = spec("XenPool")
    del data["tls"]
    text = error_text("XenPool", data)
    assert "caSecretRef" in text and "insecureSkipVerify" in text
    assert "insecureSkipVerify" in error_text("XenPool", spec("XenPool", tls={"insecureSkipVerify": False}))
    parse("XenPool", spec("XenPool", tls={"caSecretRef": {"name": "xen-ca"}}))


def test_xenpool_make_unique_needs_ssh() -> None:
    data = spec("XenPool", uniqueness={"policy": "MakeUnique"},
                members=[{"name": "xen1", "address": "10.0.0.11", "sshHostKey": HOST_KEY}])
    assert "uniqueness.ssh is required when uniqueness.policy is MakeUnique" in error_text("XenPool", data)


def test_xenpool_make_unique_needs_every_host_key() -> None:
    data = spec("XenPool", uniqueness={"policy": "MakeUnique", "ssh": {"privateKeySecretRef": {"name": "xen-ssh"}}},
                members=[{"name": "xen1", "address": "10.0.0.11", "sshHostKey": HOST_KEY},
                         {"name": "xen2", "address": "10.0.0.12"}, {"name": "xen3", "address": "10.0.0.13"}])
    text = error_text("XenPool", data)
    assert "sshHostKey" in text and "xen2, xen3" in text and "xen1" not in text


def test_xenpool_heartbeat_sr_needs_exactly_one_selector() -> None:
    text = error_text("XenPool", spec("XenPool", ha={"heartbeatSR": {"type": "nfs", "nameLabel": "NFS SR"}}))
    assert text.startswith("spec.ha.heartbeatSR: ") and "exactly one" in text
    assert "exactly one" in error_text("XenPool", spec("XenPool", ha={"heartbeatSR": {}}))


def test_xenpool_needs_a_member() -> None:
    assert "spec.members" in error_text("XenPool", spec("XenPool", members=[]))


def test_kvmhost_interface_names_unique_within_a_bridge() -> None:
    bridges = [{"name": "cloudbr0", "ports": ["eno1"], "bonds": [{"name": "bond0", "interfaces": ["eno1", "eno2"]}]}]
    text = error_text("KvmHost", spec("KvmHost", openvswitch={"bridges": bridges}))
    assert "openvswitch: interface name 'eno1' is used twice" in text


def test_kvmhost_interface_names_unique_across_bridges() -> None:
    bridges = [{"name": "cloudbr0", "vlanBridges": [{"name": "mgmt0", "vlan": 10}]},
               {"name": "cloudbr1", "internalPorts": [{"name": "mgmt0"}]}]
    assert "'mgmt0' is used twice" in error_text("KvmHost", spec("KvmHost", openvswitch={"bridges": bridges}))
    bridges = [{"name": "cloudbr0"}, {"name": "cloudbr0"}]
    assert "'cloudbr0' is used twice" in error_text("KvmHost", spec("KvmHost", openvswitch={"bridges": bridges}))


def test_kvmhost_secret_client_certificate_needs_secret() -> None:
    data = spec("KvmHost", openvswitch={"manager": {"address": "10.0.0.9", "clientCertificate": "Secret"}})
    assert "certificateSecretRef is required" in error_text("KvmHost", data)


def test_kvmhost_needs_pinned_host_key() -> None:
    data = spec("KvmHost", ssh={"privateKeySecretRef": {"name": "kvm-ssh"}})
    assert "spec.ssh.hostKey: Field required" in error_text("KvmHost", data)


def test_systemvmtemplate_one_template_per_hypervisor() -> None:
    template = MINIMAL["SystemVMTemplate"]["templates"][0]
    data = spec("SystemVMTemplate", templates=[template, {**template, "url": "https://example.com/other.qcow2"}])
    assert "templates: one entry per hypervisor" in error_text("SystemVMTemplate", data)


@pytest.mark.parametrize("value", ["0", "150%", "abc", 0, -1, "0%", "10", "10 %", "%"])
def test_systemvmtemplate_max_unavailable_rejected(value: Any) -> None:
    data = spec("SystemVMTemplate", rollout={"routers": {"maxUnavailable": value}})
    text = error_text("SystemVMTemplate", data)
    assert "spec.rollout.routers.maxUnavailable" in text
    assert "maxUnavailable must be" in text


@pytest.mark.parametrize("value", [1, 5, 500, "1%", "10%", "100%"])
def test_systemvmtemplate_max_unavailable_accepted(value: Any) -> None:
    data = spec("SystemVMTemplate", rollout={"routers": {"maxUnavailable": value}})
    assert parse("SystemVMTemplate", data).rollout.routers.max_unavailable == value


@pytest.mark.parametrize("value", ["4.8", "4.8.0.16.1", "v4.8.0", "4.8.0-SNAPSHOT", "4..8.0", ""])
def test_versions_rejected(value: str) -> None:
    assert "spec.version" in error_text("CloudStackRelease", spec("CloudStackRelease", version=value))
    assert "spec.version" in error_text("SystemVMTemplate", spec("SystemVMTemplate", version=value))


@pytest.mark.parametrize("value", ["4.8.0", "4.8.0.16", "4.19.1.0"])
def test_versions_accepted(value: str) -> None:
    parse("CloudStackRelease", spec("CloudStackRelease", version=value))


@pytest.mark.parametrize(("field", "value"), [
    *(("checksum", value) for value in ["abc", "{SHA-512}xyz", "{SHA-999}" + "a" * 32, "a" * 31,
                                        "{sha-256}" + "a" * 64]),
    *(("url", value) for value in ["ftp://example.com/t.qcow2", "example.com/t.qcow2", "https://", "file:///t.qcow2"]),
])
def test_systemvmtemplate_template_field_rejected(field: str, value: str) -> None:
    data = spec("SystemVMTemplate")
    data["templates"][0][field] = value
    assert f"spec.templates[0].{field}" in error_text("SystemVMTemplate", data)


def test_cloudstackrelease_ssh_builder_needs_ssh() -> None:
    data = spec("CloudStackRelease", builder={"type": "SSH"})
    assert "builder.ssh is required when builder.type is SSH" in error_text("CloudStackRelease", data)


def test_cloudstackrelease_pull_requests_unique() -> None:
    data = spec("CloudStackRelease", pullRequests=[{"number": 12}, {"number": 13}, {"number": 12}])
    assert "pullRequests: each number at most once" in error_text("CloudStackRelease", data)


def test_cloudstackrelease_pull_request_number_positive() -> None:
    data = spec("CloudStackRelease", pullRequests=[{"number": 0}])
    assert "spec.pullRequests[0].number" in error_text("CloudStackRelease", data)


@pytest.mark.parametrize(("kind", "field", "value"), [
    ("XenPool", ("ha", "timeoutSeconds"), 29),
    ("XenPool", ("ha", "timeoutSeconds"), 3601),
    ("XenPool", ("ha", "timeoutSeconds"), "180s"),
    ("XenPool", ("managementPolicy",), "Sometimes"),
    ("XenPool", ("deletionPolicy",), "Destroy"),
    ("XenPool", ("members",), "xen1"),
    ("XenPool", ("masterFailover", "delaySeconds"), 10),
    ("XenPool", ("vswitchController", "address"), "10.0.0.300"),
    ("XenPool", ("allowedDestructiveActions", 0), "Reboot"),
    ("KvmHost", ("managementPolicy",), "Sometimes"),
    ("KvmHost", ("openvswitch", "bridges", 0, "vlanBridges", 0, "vlan"), "abc"),
    ("KvmHost", ("openvswitch", "bridges", 0, "vlanBridges", 0, "vlan"), 0),
    ("KvmHost", ("openvswitch", "bridges", 0, "vlanBridges", 0, "vlan"), 4095),
    ("KvmHost", ("openvswitch", "bridges", 0, "mtu"), 575),
    ("KvmHost", ("openvswitch", "bridges", 0, "mtu"), 9217),
    ("KvmHost", ("openvswitch", "bridges", 0, "bonds", 0, "interfaces"), ["eno49"]),
    ("KvmHost", ("openvswitch", "bridges", 0, "bonds", 0, "lacpTime"), "medium"),
    ("KvmHost", ("openvswitch", "bridges", 0, "bonds", 0, "lacp"), "on"),
    ("KvmHost", ("openvswitch", "bridges", 0, "addresses", 0), "10.0.1.21"),
    ("KvmHost", ("openvswitch", "bridges", 0, "addresses", 0), "10.0.1.21/33"),
    ("KvmHost", ("openvswitch", "bridges", 0, "tunnels", 0, "remoteIP"), "10.0.0.300"),
    ("KvmHost", ("openvswitch", "bridges", 0, "tunnels", 0, "key"), -1),
    ("KvmHost", ("openvswitch", "bridges", 0, "name"), "a-very-long-bridge-name"),
    ("KvmHost", ("openvswitch", "rollbackTimeoutSeconds"), 5),
    ("KvmHost", ("ssh", "port"), 0),
    ("KvmHost", ("ssh", "port"), 65536),
    ("KvmHost", ("ssh", "hostKey"), "ssh-dss AAAAB3NzaC1kc3MAAACBAP"),
    ("KvmHost", ("ssh", "hostKey"), "AAAAC3NzaC1lZDI1NTE5AAAAIB3Xx5h9nJ"),
    ("KvmHost", ("address",), "10.0.1.21:22"),
    ("SystemVMTemplate", ("templates", 0, "hypervisor"), "kvm"),
    ("SystemVMTemplate", ("rollout", "routers", "maintenanceWindow", "start"), "24:00"),
    ("SystemVMTemplate", ("rollout", "routers", "maintenanceWindow", "durationMinutes"), 10),
    ("CloudStackRelease", ("versionRule",), "Newest"),
    ("CloudStackRelease", ("builder", "workDir"), "relative/dir"),
])
def test_field_errors_name_the_field(kind: str, field: Path, value: Any) -> None:
    data = spec(kind, full=True)
    set_path(data, field, value)
    assert dotted(field) in error_text(kind, data)


@pytest.mark.parametrize("address", ["10.0.0.300", "256.1.1.1", "1.2.3.4.5"])
def test_malformed_ipv4_addresses_rejected_as_host_address(address: str) -> None:
    # A member address looks like an IPv4 address but is not one: it must not pass as a DNS name.
    members = [{"name": "xen1", "address": address}]
    assert "spec.members[0].address" in error_text("XenPool", spec("XenPool", members=members))


@pytest.mark.parametrize("address", ["10.0.0.11", "fd00::11", "::1", "xen1", "xen1.example.com", "XEN-1.lab"])
def test_host_addresses_accepted(address: str) -> None:
    parse("XenPool", spec("XenPool", members=[{"name": "xen1", "address": address}]))


# --- shell metacharacters -------------------------------------------------------------------------------------------

# Every name, interface, address, reference and URL-like field, with a valid value to spoil.
STRING_FIELDS: list[tuple[str, Path]] = [
    ("XenPool", ("members", 0, "name")),
    ("XenPool", ("members", 0, "address")),
    ("XenPool", ("members", 0, "sshHostKey")),
    ("XenPool", ("master",)),
    ("XenPool", ("credentialsSecretRef", "name")),
    ("XenPool", ("tls", "caSecretRef", "name")),
    ("XenPool", ("tls", "caSecretRef", "key")),
    ("XenPool", ("ha", "heartbeatSR", "uuid")),
    ("XenPool", ("vswitchController", "address")),
    ("XenPool", ("uniqueness", "ssh", "user")),
    ("XenPool", ("uniqueness", "ssh", "privateKeySecretRef", "name")),
    ("XenPool", ("uniqueness", "ssh", "privateKeySecretRef", "key")),
    ("XenPool", ("cloudstack", "connection", "secretRef", "name")),
    ("XenPool", ("cloudstack", "zone")),
    ("XenPool", ("cloudstack", "pod")),
    ("XenPool", ("cloudstack", "cluster")),
    ("KvmHost", ("address",)),
    ("KvmHost", ("ssh", "user")),
    ("KvmHost", ("ssh", "privateKeySecretRef", "name")),
    ("KvmHost", ("ssh", "privateKeySecretRef", "key")),
    ("KvmHost", ("ssh", "hostKey")),
    ("KvmHost", ("packages", "repositoryURL")),
    ("KvmHost", ("packages", "cloudstackAgentVersion")),
    ("KvmHost", ("packages", "extra", 0)),
    ("KvmHost", ("openvswitch", "bridges", 0, "name")),
    ("KvmHost", ("openvswitch", "bridges", 0, "addresses", 0)),
    ("KvmHost", ("openvswitch", "bridges", 0, "ports", 0)),
    ("KvmHost", ("openvswitch", "bridges", 0, "bonds", 0, "name")),
    ("KvmHost", ("openvswitch", "bridges", 0, "bonds", 0, "interfaces", 0)),
    ("KvmHost", ("openvswitch", "bridges", 0, "vlanBridges", 0, "name")),
    ("KvmHost", ("openvswitch", "bridges", 0, "vlanBridges", 0, "addresses", 0)),
    ("KvmHost", ("openvswitch", "bridges", 0, "tunnels", 0, "name")),
    ("KvmHost", ("openvswitch", "bridges", 0, "tunnels", 0, "remoteIP")),
    ("KvmHost", ("openvswitch", "bridges", 0, "internalPorts", 0, "name")),
    ("KvmHost", ("openvswitch", "bridges", 0, "internalPorts", 0, "addresses", 0)),
    ("KvmHost", ("openvswitch", "manager", "address")),
    ("KvmHost", ("openvswitch", "manager", "certificateSecretRef", "name")),
    ("KvmHost", ("qemu", "vncListen")),
    ("KvmHost", ("cloudstack", "connection", "secretRef", "name")),
    ("KvmHost", ("cloudstack", "zone")),
    ("KvmHost", ("cloudstack", "pod")),
    ("KvmHost", ("cloudstack", "cluster")),
    ("KvmHost", ("cloudstack", "hostTags", 0)),
    ("SystemVMTemplate", ("cloudstack", "secretRef", "name")),
    ("SystemVMTemplate", ("version",)),
    ("SystemVMTemplate", ("templates", 0, "url")),
    ("SystemVMTemplate", ("templates", 0, "checksum")),
    ("SystemVMTemplate", ("templates", 0, "zones", 0)),
    ("SystemVMTemplate", ("templates", 0, "name")),
    ("SystemVMTemplate", ("rollout", "routers", "maintenanceWindow", "start")),
    ("SystemVMTemplate", ("rollout", "routers", "maintenanceWindow", "timeZone")),
    ("SystemVMTemplate", ("notifications", "webhookURLSecretRef", "name")),
    ("SystemVMTemplate", ("notifications", "webhookURLSecretRef", "key")),
    ("CloudStackRelease", ("source", "repository")),
    ("CloudStackRelease", ("source", "baseRef")),
    ("CloudStackRelease", ("source", "upstream", "repository")),
    ("CloudStackRelease", ("source", "upstream", "ref")),
    ("CloudStackRelease", ("version",)),
    ("CloudStackRelease", ("pullRequests", 1, "patchURL")),
    ("CloudStackRelease", ("builder", "ssh", "address")),
    ("CloudStackRelease", ("builder", "ssh", "ssh", "user")),
    ("CloudStackRelease", ("builder", "ssh", "ssh", "privateKeySecretRef", "name")),
    ("CloudStackRelease", ("builder", "ssh", "ssh", "hostKey")),
    ("CloudStackRelease", ("builder", "workDir")),
    ("CloudStackRelease", ("build", "mavenProfiles", 0)),
    ("CloudStackRelease", ("build", "mavenCommand", 0)),
    ("CloudStackRelease", ("build", "versionCommand", 0)),
    ("CloudStackRelease", ("packaging", "distribution")),
    ("CloudStackRelease", ("publish", "directory")),
    ("CloudStackRelease", ("publish", "baseURL")),
]

METACHARACTERS = {
    "semicolon": ";reboot",
    "command-substitution": "$(reboot)",
    "backtick": "`reboot`",
    "pipe": "|reboot",
    "ampersand": "&reboot",
    "redirect": ">x",
    "newline": "\nreboot",
    "trailing-newline": "\n",
    "space": " reboot",
    "double-quote": '"x',
    "single-quote": "'x",
}

# Fields whose values legitimately contain a character of the list above.
ALLOWED = {
    ("SystemVMTemplate", ("templates", 0, "osType")): {"space"},  # "Debian GNU/Linux 12 (64-bit)"
}
STRING_FIELDS.append(("SystemVMTemplate", ("templates", 0, "osType")))


def _metachar_cases() -> list[Any]:
    cases = []
    for kind, field in STRING_FIELDS:
        for label, suffix in METACHARACTERS.items():
            if label in ALLOWED.get((kind, field), set()):
                continue
            cases.append(pytest.param(kind, field, suffix, id=f"{kind}-{dotted(field)}-{label}"))
    return cases


def test_every_field_listed_has_a_valid_string_in_the_full_spec() -> None:
    for kind, field in STRING_FIELDS:
        value = get_path(FULL[kind], field)
        assert isinstance(value, str) and value, (kind, field)


@pytest.mark.parametrize(("kind", "field", "suffix"), _metachar_cases())
def test_shell_metacharacters_rejected(kind: str, field: Path, suffix: str) -> None:
    data = spec(kind, full=True)
    set_path(data, field, get_path(data, field) + suffix)
    text = error_text(kind, data)
    assert dotted(field) in text


@pytest.mark.parametrize("label", list(METACHARACTERS))
def test_shell_metacharacters_rejected_in_property_keys(label: str) -> None:
    data = spec("KvmHost", cloudstackAgent={"properties": {"guest.cpu.mode" + METACHARACTERS[label]: "x"}})
    assert "spec.cloudstackAgent.properties" in error_text("KvmHost", data)


@pytest.mark.parametrize("value", ["host-passthrough\nhost=evil", "a\rb", "a\x00b", "a\x7fb",
                                   # C1 controls and the Unicode line/paragraph separators (issue 12)
                                   "a\u2028b=evil", "a\u2029b", "a\x85b=evil", "a\x80b", "a\x9fb"])
def test_control_characters_rejected_in_property_values(value: str) -> None:
    data = spec("KvmHost", cloudstackAgent={"properties": {"guest.cpu.mode": value}})
    assert "spec.cloudstackAgent.properties" in error_text("KvmHost", data)


@pytest.mark.parametrize("value", ["host-passthrough", "C:\\dir\\", "a=b:c#d!e", " x ", "caf\u00e9 \u00a0\u4e2d", ""])
def test_property_values_accepted(value: str) -> None:
    data = spec("KvmHost", cloudstackAgent={"properties": {"guest.cpu.mode": value}})
    assert parse("KvmHost", data).cloudstack_agent.properties["guest.cpu.mode"] == value


@pytest.mark.parametrize("name", ["openssh-server-", "vim+", "vim+-", "vim-+", "-vim", "+vim"])
def test_package_names_with_an_apt_modifier_suffix_rejected(name: str) -> None:
    # `apt-get install openssh-server-` removes openssh-server.
    data = spec("KvmHost", packages={"extra": ["qemu-guest-agent", name]})
    assert "spec.packages.extra[1]" in error_text("KvmHost", data)


@pytest.mark.parametrize("name", ["qemu-guest-agent", "g++", "gcc-c++", "libstdc++6", "python3.11", "nfs_utils", "a"])
def test_package_names_accepted(name: str) -> None:
    assert parse("KvmHost", spec("KvmHost", packages={"extra": [name]})).packages.extra == [name]


@pytest.mark.parametrize("version", ["4.19.0.0-", "4.19.0.0+"])
def test_agent_version_with_an_apt_modifier_suffix_rejected(version: str) -> None:
    # `apt-get install cloudstack-agent=4.19.0.0-` would remove the agent.
    data = spec("KvmHost", packages={"cloudstackAgentVersion": version})
    assert "spec.packages.cloudstackAgentVersion" in error_text("KvmHost", data)


@pytest.mark.parametrize("value", ["NFS SR\nx", "a\x00b", ""])
def test_control_characters_rejected_in_heartbeat_sr_name_label(value: str) -> None:
    data = spec("XenPool", ha={"heartbeatSR": {"nameLabel": value}})
    assert "spec.ha.heartbeatSR.nameLabel" in error_text("XenPool", data)


# --- format_validation_error ----------------------------------------------------------------------------------------


def test_format_validation_error_names_camel_case_path() -> None:
    data = spec("XenPool", members=[{"name": "xen1", "address": "10.0.0.1;reboot"}])
    text = error_text("XenPool", data)
    assert text.startswith("spec.members[0].address: String should match pattern")


def test_format_validation_error_joins_several_errors() -> None:
    data = spec("XenPool", ha={"timeoutSeconds": 10}, managementPolicy="Sometimes")
    text = error_text("XenPool", data)
    parts = text.split("; ")
    assert any(p.startswith("spec.ha.timeoutSeconds: ") and "greater than or equal to 30" in p for p in parts)
    assert any(p.startswith("spec.managementPolicy: ") and "'Manage'" in p for p in parts)


def test_format_validation_error_uses_aliases_with_acronyms() -> None:
    text = error_text("XenPool", spec("XenPool", ha={"heartbeatSR": {"uuid": "nope"}}))
    assert text.startswith("spec.ha.heartbeatSR.uuid: ")
    data = spec("KvmHost", full=True)
    data["openvswitch"]["bridges"][0]["tunnels"][0]["remoteIP"] = "x"
    assert error_text("KvmHost", data).startswith("spec.openvswitch.bridges[0].tunnels[0].remoteIP: ")


def test_format_validation_error_model_level_message_has_no_prefix() -> None:
    text = error_text("XenPool", spec("XenPool", master="xen9"))
    assert text == "master: 'xen9' is not one of the members"
    assert "Value error" not in text


def test_format_validation_error_required_field() -> None:
    data = spec("XenPool")
    del data["credentialsSecretRef"]
    assert error_text("XenPool", data) == "spec.credentialsSecretRef: Field required"
