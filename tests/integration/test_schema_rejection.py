"""The generated CRDs on a real API server: invalid objects are refused naming the field, valid ones are accepted
and defaulted as the models default them."""
from __future__ import annotations

import copy
import json
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from stackops.api.common import API_VERSION
from stackops.api.kinds import BY_KIND, KINDS

if TYPE_CHECKING:
    from support.kube import Kube

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
CRD_NAMES = [f"{k.plural}.{k.group}" for k in KINDS] + ["clusterkopfpeerings.kopf.dev"]


from support.specs import FULL, HOST_KEY, MINIMAL  # noqa: E402

# KvmHost with one bridge carrying a bond and a VLAN bridge, to spoil the nested fields.
KVM_WITH_BRIDGE = {
    **MINIMAL["KvmHost"],
    "openvswitch": {"bridges": [{
        "name": "cloudbr0",
        "bonds": [{"name": "bond0", "interfaces": ["eno49", "eno50"]}],
        "vlanBridges": [{"name": "mgmt0", "vlan": 123}],
    }]},
    "packages": {"extra": ["qemu-guest-agent"]},
}
BASES = {**MINIMAL, "KvmHostBridge": KVM_WITH_BRIDGE}
DELETE = object()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def manifest(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": API_VERSION, "kind": kind,
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def spoil(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def field_regex(field: str) -> str:
    """`spec.members[0].name` also matches the spellings API servers use for list items: `spec.members.0.name`,
    and (Kubernetes 1.20) `spec.members.name` without the index."""
    parts = re.split(r"\[(\d+)\]", field)
    pattern = ""
    for i, part in enumerate(parts):
        pattern += re.escape(part) if i % 2 == 0 else rf"(\[{part}\]|\.{part})?"
    return pattern + r"(?![A-Za-z0-9])"


# --- the cluster ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd_state(kube: Kube) -> dict[str, Any]:
    """Apply crds/ once; the result of the apply and which CRDs became Established."""
    applied = kube.kubectl("apply", "-f", str(CRD_DIR), check=False)
    established = {name: wait_established(kube, name) for name in CRD_NAMES}
    return {"applied": applied, "established": established}


def wait_established(kube: Kube, name: str, timeout: float = 60.0) -> str | None:
    """None once CRD `name` is Established, else kubectl's last complaint.

    `kubectl wait` gives up at once (instead of waiting) when it reads the CRD before the API server has written
    any condition (`.status.conditions accessor error: <nil>`), so it is retried until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        waited = kube.kubectl("wait", "--for", "condition=established", "--timeout=60s", f"crd/{name}", check=False)
        if waited.returncode == 0:
            return None
        if "NotFound" in waited.stderr or time.monotonic() >= deadline:
            return (waited.stdout + waited.stderr).strip()
        time.sleep(0.5)


@pytest.fixture(scope="module")
def namespace(kube: Kube, crd_state: dict[str, Any]) -> str:
    # Namespaces never finish deleting on the local control plane: a fresh name, not cleaned up.
    name = unique("schema-rejection")
    kube.kubectl("create", "namespace", name)
    return name


def require_crd(crd_state: dict[str, Any], kind: str) -> None:
    kind = "KvmHost" if kind == "KvmHostBridge" else kind
    name = BY_KIND[kind].crd_name
    problem = crd_state["established"][name]
    if problem is not None:
        applied = crd_state["applied"]
        pytest.fail(f"CRD {name} is not Established: {problem}\n"
                    f"`kubectl apply -f crds/` exit {applied.returncode}\nstdout: {applied.stdout}\n"
                    f"stderr: {applied.stderr}")


def kubectl_apply(kube: Kube, text: str) -> Any:
    # --validate=false: the API server, not kubectl's client-side validation, must refuse.
    return kube.kubectl("apply", "--validate=false", "-f", "-", input=text, check=False)


def test_crds_apply_and_become_established(kube: Kube, crd_state: dict[str, Any]) -> None:
    applied = crd_state["applied"]
    assert applied.returncode == 0, f"kubectl apply -f crds/ failed:\n{applied.stdout}\n{applied.stderr}"
    assert {n: p for n, p in crd_state["established"].items() if p} == {}


# --- invalid objects ------------------------------------------------------------------------------------------------

INVALID: list[Any] = [
    # (base, path under spec, value, field the API server must name)
    pytest.param("XenPool", ("managementPolicy",), "Sometimes", "spec.managementPolicy", id="enum-managementPolicy"),
    pytest.param("XenPool", ("deletionPolicy",), "Destroy", "spec.deletionPolicy", id="enum-deletionPolicy"),
    pytest.param("XenPool", ("members", 0, "address"), "10.0.0.300", "spec.members[0].address",
                 id="member-address-10.0.0.300"),
    pytest.param("XenPool", ("members", 0, "address"), "host;rm -rf /", "spec.members[0].address",
                 id="member-address-shell"),
    pytest.param("KvmHost", ("address",), "host;rm -rf /", "spec.address", id="kvm-address-shell"),
    pytest.param("XenPool", ("vswitchController",), {"address": "10.0.0.300"}, "spec.vswitchController.address",
                 id="vswitch-controller-10.0.0.300"),
    pytest.param("XenPool", ("ha",), {"timeoutSeconds": 29}, "spec.ha.timeoutSeconds", id="ha-timeout-29"),
    pytest.param("XenPool", ("ha",), {"timeoutSeconds": 3601}, "spec.ha.timeoutSeconds", id="ha-timeout-3601"),
    pytest.param("XenPool", ("ha",), {"timeoutSeconds": "180s"}, "spec.ha.timeoutSeconds", id="ha-timeout-string"),
    pytest.param("XenPool", ("members",), DELETE, "spec.members", id="xenpool-without-members"),
    pytest.param("XenPool", ("members",), [], "spec.members", id="xenpool-empty-members"),
    pytest.param("XenPool", ("members",), "xen1", "spec.members", id="members-string"),
    pytest.param("XenPool", ("members", 0, "name"), "xen1;reboot", "spec.members[0].name", id="member-name-shell"),
    pytest.param("XenPool", ("members", 0, "name"), "xen 1", "spec.members[0].name", id="member-name-space"),
    pytest.param("XenPool", ("credentialsSecretRef", "name"), "root`id`", "spec.credentialsSecretRef.name",
                 id="secret-name-backtick"),
    pytest.param("KvmHost", ("ssh", "hostKey"), DELETE, "spec.ssh.hostKey", id="kvmhost-without-hostKey"),
    pytest.param("KvmHost", ("ssh", "hostKey"), "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "spec.ssh.hostKey",
                 id="bad-host-key-type"),
    pytest.param("KvmHost", ("ssh", "hostKey"), HOST_KEY + "; rm -rf /", "spec.ssh.hostKey", id="bad-host-key-shell"),
    pytest.param("KvmHost", ("ssh", "privateKeySecretRef", "name"), "kvm-ssh$(reboot)",
                 "spec.ssh.privateKeySecretRef.name", id="secret-name-substitution"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "bonds", 0, "interfaces", 1), "eno50;reboot",
                 "spec.openvswitch.bridges[0].bonds[0].interfaces[1]", id="bond-interface-shell"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "bonds", 0, "interfaces"), ["eno49"],
                 "spec.openvswitch.bridges[0].bonds[0].interfaces", id="bond-one-interface"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "bonds", 0, "lacpTime"), "medium",
                 "spec.openvswitch.bridges[0].bonds[0].lacpTime", id="bad-lacpTime"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "name"), "br0$(reboot)",
                 "spec.openvswitch.bridges[0].name", id="bridge-name-shell"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "name"), "br0\nreboot",
                 "spec.openvswitch.bridges[0].name", id="bridge-name-newline"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "vlanBridges", 0, "name"), "mgmt0|x",
                 "spec.openvswitch.bridges[0].vlanBridges[0].name", id="vlan-bridge-name-pipe"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "vlanBridges", 0, "vlan"), 4095,
                 "spec.openvswitch.bridges[0].vlanBridges[0].vlan", id="vlan-4095"),
    pytest.param("KvmHostBridge", ("openvswitch", "bridges", 0, "vlanBridges", 0, "vlan"), "abc",
                 "spec.openvswitch.bridges[0].vlanBridges[0].vlan", id="vlan-string"),
    pytest.param("KvmHostBridge", ("packages", "extra", 0), "vim&&reboot", "spec.packages.extra[0]",
                 id="package-name-shell"),
    pytest.param("KvmHostBridge", ("packages", "extra", 0), "openssh-server-", "spec.packages.extra[0]",
                 id="package-name-apt-remove-suffix"),
    pytest.param("KvmHostBridge", ("packages", "extra", 0), "vim+", "spec.packages.extra[0]",
                 id="package-name-apt-install-suffix"),
    pytest.param("KvmHost", ("packages",), {"cloudstackAgentVersion": "4.19.0.0-"},
                 "spec.packages.cloudstackAgentVersion", id="agent-version-apt-remove-suffix"),
    pytest.param("KvmHost", ("cloudstackAgent",), {"properties": {"guest.cpu.mode": "a\u2028b=evil"}},
                 "spec.cloudstackAgent.properties", id="property-value-line-separator"),
    pytest.param("KvmHost", ("cloudstackAgent",), {"properties": {"guest.cpu.mode": "a\x85b=evil"}},
                 "spec.cloudstackAgent.properties", id="property-value-next-line"),
    pytest.param("KvmHost", ("cloudstackAgent",), {"properties": {"guest.cpu.mode": "a\rb=evil"}},
                 "spec.cloudstackAgent.properties", id="property-value-carriage-return"),
    pytest.param("KvmHost", ("packages",), {"repositoryURL": "http://repo.example.com/a b"},
                 "spec.packages.repositoryURL", id="repository-url-space"),
    pytest.param("SystemVMTemplate", ("version",), "4.8", "spec.version", id="version-4.8"),
    pytest.param("CloudStackRelease", ("version",), "4.8.0.16.1", "spec.version", id="version-five-parts"),
    pytest.param("CloudStackRelease", ("version",), "v4.8.0", "spec.version", id="version-v-prefix"),
    pytest.param("SystemVMTemplate", ("templates", 0, "checksum"), "{SHA-512}not-hex", "spec.templates[0].checksum",
                 id="bad-checksum"),
    pytest.param("SystemVMTemplate", ("templates", 0, "url"), "ftp://download.example.com/t.qcow2",
                 "spec.templates[0].url", id="bad-url-ftp"),
    pytest.param("SystemVMTemplate", ("templates", 0, "hypervisor"), "kvm", "spec.templates[0].hypervisor",
                 id="hypervisor-lowercase"),
    pytest.param("SystemVMTemplate", ("rollout",), {"routers": {"maxUnavailable": "abc"}},
                 "spec.rollout.routers.maxUnavailable", id="maxUnavailable-abc"),
    pytest.param("CloudStackRelease", ("pullRequests",), [{"number": 0}], "spec.pullRequests[0].number",
                 id="pull-request-0"),
    pytest.param("CloudStackRelease", ("source", "baseRef"), "4.8;reboot", "spec.source.baseRef", id="git-ref-shell"),
    pytest.param("CloudStackRelease", ("source", "repository"), "https://github.com/apache/cloud stack.git",
                 "spec.source.repository", id="git-url-space"),
]


@pytest.mark.parametrize(("base", "path", "value", "field"), INVALID)
def test_invalid_object_rejected(kube: Kube, crd_state: dict[str, Any], namespace: str, base: str,
                                 path: tuple[Any, ...], value: Any, field: str) -> None:
    kind = "KvmHost" if base == "KvmHostBridge" else base
    require_crd(crd_state, kind)
    name = unique("bad")
    result = kubectl_apply(kube, manifest(kind, name, namespace, spoil(BASES[base], path, value)))
    if result.returncode == 0:
        stored = kube.kubectl("get", BY_KIND[kind].crd_name, name, "-n", namespace, "-o", "json", check=False)
        spec = json.loads(stored.stdout or "{}").get("spec") if stored.returncode == 0 else None
        pytest.fail(f"the API server accepted {field}={value!r}: {result.stdout.strip()}\n"
                    f"stored spec: {json.dumps(spec)}")
    assert "is invalid" in result.stderr, result.stderr
    assert re.search(field_regex(field), result.stderr), f"{field} not named in: {result.stderr}"


def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID) >= 20


def test_field_regex() -> None:
    pattern = field_regex("spec.members[0].name")
    assert re.search(pattern, 'spec.members[0].name: Invalid value')
    assert re.search(pattern, 'spec.members.0.name in body')
    assert re.search(pattern, 'spec.members.name: Invalid value')
    assert not re.search(pattern, 'spec.members[0].nameLabel')
    assert not re.search(field_regex("spec.version"), "spec.versionRule: x")


# --- valid objects --------------------------------------------------------------------------------------------------


def stored_spec(kube: Kube, kind: str, name: str, namespace: str) -> dict[str, Any]:
    result = kube.kubectl("get", BY_KIND[kind].crd_name, name, "-n", namespace, "-o", "json")
    return json.loads(result.stdout)["spec"]


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_minimal_object_accepted_and_defaulted_like_the_model(kube: Kube, crd_state: dict[str, Any], namespace: str,
                                                              kind: str) -> None:
    require_crd(crd_state, kind)
    name = unique("minimal")
    result = kubectl_apply(kube, manifest(kind, name, namespace, MINIMAL[kind]))
    assert result.returncode == 0, result.stderr
    spec = stored_spec(kube, kind, name, namespace)
    model = BY_KIND[kind].spec
    # The server's defaults must be the model's: parsing the stored spec gives what parsing the manifest gives.
    assert model.model_validate(spec) == model.model_validate(MINIMAL[kind])
    assert spec["managementPolicy"] == "Manage"
    assert spec["deletionPolicy"] == "Orphan"


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_full_object_accepted(kube: Kube, crd_state: dict[str, Any], namespace: str, kind: str) -> None:
    require_crd(crd_state, kind)
    name = unique("full")
    result = kubectl_apply(kube, manifest(kind, name, namespace, FULL[kind]))
    assert result.returncode == 0, result.stderr
    spec = stored_spec(kube, kind, name, namespace)
    model = BY_KIND[kind].spec
    assert model.model_validate(spec) == model.model_validate(FULL[kind])


def test_xenpool_defaults_filled_by_the_server(kube: Kube, crd_state: dict[str, Any], namespace: str) -> None:
    require_crd(crd_state, "XenPool")
    name = unique("defaults")
    assert kubectl_apply(kube, manifest("XenPool", name, namespace, MINIMAL["XenPool"])).returncode == 0
    spec = stored_spec(kube, "XenPool", name, namespace)
    assert spec["ha"]["timeoutSeconds"] == 180
    assert spec["ha"]["enabled"] is True
    assert spec["ha"]["heartbeatSR"] == {"type": "nfs"}
    assert spec["managementPolicy"] == "Manage"
    assert spec["deletionPolicy"] == "Orphan"
    assert spec["uniqueness"]["policy"] == "Detect"
    assert spec["resyncIntervalSeconds"] == 300


def test_xenpool_partial_ha_gets_timeout_default(kube: Kube, crd_state: dict[str, Any], namespace: str) -> None:
    require_crd(crd_state, "XenPool")
    name = unique("partial-ha")
    data = {**MINIMAL["XenPool"], "ha": {"enabled": True}}
    assert kubectl_apply(kube, manifest("XenPool", name, namespace, data)).returncode == 0
    assert stored_spec(kube, "XenPool", name, namespace)["ha"]["timeoutSeconds"] == 180


def test_kvmhost_defaults_filled_by_the_server(kube: Kube, crd_state: dict[str, Any], namespace: str) -> None:
    require_crd(crd_state, "KvmHost")
    name = unique("defaults")
    result = kubectl_apply(kube, manifest("KvmHost", name, namespace, KVM_WITH_BRIDGE))
    assert result.returncode == 0, result.stderr
    spec = stored_spec(kube, "KvmHost", name, namespace)
    bond = spec["openvswitch"]["bridges"][0]["bonds"][0]
    assert (bond["lacp"], bond["lacpTime"], bond["bondMode"]) == ("active", "fast", "balance-tcp")
    assert spec["ssh"]["user"] == "root" and spec["ssh"]["port"] == 22
    assert spec["ssh"]["privateKeySecretRef"]["key"] == "ssh-privatekey"
    assert spec["cloudstackAgent"]["properties"] == {"network.bridge.type": "openvswitch"}


def test_kvmhost_agent_properties_kept(kube: Kube, crd_state: dict[str, Any], namespace: str) -> None:
    require_crd(crd_state, "KvmHost")
    name = unique("properties")
    properties = {"network.bridge.type": "openvswitch", "guest.cpu.mode": "host-passthrough"}
    data = {**MINIMAL["KvmHost"], "cloudstackAgent": {"properties": properties}}
    assert kubectl_apply(kube, manifest("KvmHost", name, namespace, data)).returncode == 0
    assert stored_spec(kube, "KvmHost", name, namespace)["cloudstackAgent"]["properties"] == properties


def test_kvmhost_awkward_valid_values_accepted(kube: Kube, crd_state: dict[str, Any], namespace: str) -> None:
    # What the patterns must not refuse: agent.properties values with backslashes, separators and non-ASCII
    # (written escaped), and package names ending in "++".
    require_crd(crd_state, "KvmHost")
    name = unique("awkward")
    properties = {"guest.cpu.mode": "C:\\dir\\ a=b:c#d!e caf\u00e9 \u4e2d", "network.bridge.type": "openvswitch"}
    data = {**MINIMAL["KvmHost"], "cloudstackAgent": {"properties": properties},
            "packages": {"extra": ["g++", "gcc-c++"], "cloudstackAgentVersion": "4.19.0.0~rc1"}}
    result = kubectl_apply(kube, manifest("KvmHost", name, namespace, data))
    assert result.returncode == 0, result.stderr
    spec = stored_spec(kube, "KvmHost", name, namespace)
    assert spec["cloudstackAgent"]["properties"] == properties
    assert spec["packages"]["extra"] == ["g++", "gcc-c++"]


def test_systemvmtemplate_int_or_string_accepted(kube: Kube, crd_state: dict[str, Any], namespace: str) -> None:
    require_crd(crd_state, "SystemVMTemplate")
    for value in (3, "25%"):
        name = unique("maxunavailable")
        data = {**MINIMAL["SystemVMTemplate"], "rollout": {"routers": {"maxUnavailable": value}}}
        result = kubectl_apply(kube, manifest("SystemVMTemplate", name, namespace, data))
        assert result.returncode == 0, result.stderr
        spec = stored_spec(kube, "SystemVMTemplate", name, namespace)
        assert spec["rollout"]["routers"]["maxUnavailable"] == value
        assert spec["rollout"]["routers"]["maxRetries"] == 3
