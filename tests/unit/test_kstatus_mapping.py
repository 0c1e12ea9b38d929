"""Every condition reason the operator writes, for each kind, mapped the same way by kstatus (Current / InProgress /
Failed), by the Argo CD health checks (Healthy / Progressing / Degraded) and by the Flux healthCheckExprs
(current / inProgress / failed).

The table below lists, per kind, each reason and which of the status helpers writes it (`st.ready`,
`st.progressing`, `st.not_ready`, `st.stalled`, `st.unknown`: the helper decides Ready/Reconciling/Stalled, the
reason only names why). Reasons that come from typed driver errors (SSH, CloudStack, XenAPI) and from the
CloudStackRelease pipeline are derived by running the operator's own wrappers over every error class, so a new
error class is mapped without editing this file. Each row's status is written through the real `StatusWriter`
(observedGeneration, merge_conditions) over an earlier status, then run through `tests/support/kstatus.py` (a port of
cli-utils' generic rules), the kind's health.lua and the kind's CEL expressions.

Two checks keep the table honest: a scan of the operator's source for reasons (what is passed to the status
helpers, to ReconcileError, assigned to a `reason`, written by the build pipeline: a string literal, or a member of
a reason enum such as `st.Reason.CONVERGING` or a kind's `Reason.ZONE_NOT_FOUND`, resolved to its value through the
file's own imports) fails when one is not in the table for the kinds its file serves, or is in it with another
helper than the code uses; and the reason tables of the user guide (docs/guide/kinds.md) and the README's summary
must agree with this one.
"""
from __future__ import annotations

import ast
import copy
import enum
import functools
import importlib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import kopf
import pytest

from support import gitops_eval as ge
from support import kstatus
from stackops import status as st
from stackops.api.common import API_VERSION, PAUSED_ANNOTATION
from stackops.api.kinds import BY_KIND, KINDS
from stackops.drivers import cloudstack as cloudstack_driver
from stackops.drivers import ssh as ssh_driver
from stackops.drivers import xenapi as xenapi_driver
from stackops.handlers.resources import StatusWriter
from stackops.reconcile.base import Action, ReconcileError
from stackops.reconcile.ssh import reconcile_error as ssh_failure
from stackops.reconcile.cloudstackrelease import plan as release_plan
from stackops.reconcile.cloudstackrelease import scripts as release_scripts
from stackops.reconcile.kvmhost import registration as kvm_registration
from stackops.reconcile.systemvmtemplate import cloudstack_failure as template_cloudstack_failure
from stackops.reconcile.xenpool import unreachable as xen_unreachable

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "stackops"
README = ROOT / "README.md"

ALL = tuple(k.kind for k in KINDS)
HELPERS = {"ready": st.ready, "progressing": st.progressing, "not_ready": st.not_ready, "stalled": st.stalled,
           "unknown": st.unknown}
# What each helper means to kstatus (and so to Argo CD and Flux through ge.ARGO_FOR_KSTATUS).
KSTATUS_FOR_HELPER = {"ready": "Current", "progressing": "InProgress", "not_ready": "Current", "stalled": "Failed",
                      "unknown": "Current"}


@dataclass(frozen=True)
class Row:
    kind: str
    reason: str
    helper: str
    observe: bool = False  # written under managementPolicy: Observe
    domain: tuple[st.ConditionState, ...] = field(default=(), compare=False)  # written with it


def rows(kinds: tuple[str, ...] | str, helper: str, *reasons: str, observe: bool = False,
         domain: tuple[st.ConditionState, ...] = ()) -> list[Row]:
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    return [Row(kind, reason, helper, observe, domain) for kind in kinds for reason in reasons]


UNREACHABLE = (st.ConditionState("Reachable", "False", "Unreachable", "no answer"),)

# --- the reasons written with a literal in the code -------------------------------------------------------------
TABLE: list[Row] = [
    # handlers/resources.py, drivers/secrets.py, reconcile/base.py: every kind
    *rows(ALL, "stalled", "InvalidSpec"),
    *rows(ALL, "progressing", "SecretNotFound", "SecretKeyMissing", "SecretForbidden", "SecretUnreadable",
          "InternalError", "CredentialDestinationsInvalid"),
    # reconcile/base.py Context.credential: a credential's Secret does not list where the spec sends it
    *rows(ALL, "stalled", "CredentialNotAllowed"),
    # KvmHost
    *rows("KvmHost", "ready", "Configured"),
    *rows("KvmHost", "progressing", "ConfigMapNotFound", "ConfigMapKeyMissing", "ConfigMapForbidden",
          "ConfigMapUnreadable"),  # drivers/configmaps.py: packages.signingKeyConfigMapRef
    *rows("KvmHost", "progressing", "Converging", "CommandFailed", "CheckpointFailed", "ConnectionLost",
          "ProbeOutputInvalid", "RegistrationRefused"),
    *rows("KvmHost", "progressing", "PackageInstallFailed",
          domain=(st.ConditionState("Configured", "False", "PackageInstallFailed", "apt-get failed"),)),
    *rows("KvmHost", "progressing", "RollbackPending", domain=UNREACHABLE),
    *rows("KvmHost", "not_ready", "DriftObserved", observe=True),
    # maintenance (reconcile/kvmhost/maintenance.py): waiting for the group's lock, its peers, room, the window
    *rows("KvmHost", "progressing", "MaintenanceWaiting", "WaitingForMaintenanceWindow"),
    *rows("KvmHost", "stalled", "MaintenanceFailed", "MaintenanceTimeout"),  # status.maintenance.reason
    *rows("KvmHost", "stalled", "RolledBack", "InterfaceInUse", "PackagesMissing", "NoPackageManager",
          "OpenVSwitchNotRunning", "SELinuxUnavailable", "AppArmorUnavailable", "ZoneNotFound", "PodNotFound",
          "ClusterNotFound", "ClusterNotKVM", "SigningKeyInvalid", "ClientCertificateInvalid"),
    # Ready waits for the CloudStack host: CloudStackHost<state>, retried while the state can change by itself
    *rows("KvmHost", "progressing", "CloudStackHostConnecting", "CloudStackHostAlert", "CloudStackHostDisconnected",
          "CloudStackHostDown", "CloudStackHostError", "CloudStackHostUp"),  # Up but in Maintenance (not by this KvmHost)
    *rows("KvmHost", "not_ready", "CloudStackHostNotRegistered", observe=True),
    *rows("KvmHost", "not_ready", "CloudStackHostNoCloudStackDriver"),
    # XenPool
    *rows("XenPool", "ready", "PoolConverged"),
    *rows("XenPool", "progressing", "Converging", "MemberUnreachable", "MasterFailedOver", "InvalidCA",
          "MasterNotInPool", "PoolChangeTimeout", "FailoverTimeout", "MakeUniqueFailed", "MakeUniqueTimeout",
          "MakeUniqueCertificate", "HostNotFound", "RegistrationFailed", "AuthenticationFailed", "XenAPIError",
          "HA_IS_ENABLED", "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"),  # xapi's error codes are reasons as they are
    *rows("XenPool", "progressing", "MasterLostHAWillRecover", "MasterUnreachable",
          "MasterUnreachableFromOperatorOnly", "SupportersViewUnavailable", domain=UNREACHABLE),
    *rows("XenPool", "not_ready", "DriftObserved", observe=True),
    *rows("XenPool", "stalled", "TooFewHostsForHA", "DuplicateHostUUID", "DuplicateHostName", "MemberInAnotherPool",
          "MemberIsMasterOfOtherHosts", "JoiningHostHasRunningVMs", "HostHasResidentVMs", "CannotEjectMaster",
          "HeartbeatSRNotFound", "HeartbeatSRAmbiguous", "HeartbeatSRNotShared", "ZoneNotFound", "PodNotFound",
          "ClusterNotXenServer", "CloudStackUnavailable", "MakeUniqueNeedsSSH"),
    # Ready waits for the CloudStack cluster: CloudStack<Registered reason>, retried under Manage
    *rows("XenPool", "progressing", "CloudStackClusterUnmanaged", "CloudStackHostsMissing", "CloudStackHostsNotUp"),
    *rows("XenPool", "not_ready", "CloudStackClusterUnmanaged", "CloudStackHostsMissing", "CloudStackHostsNotUp",
          "CloudStackNotRegistered", observe=True),
    *rows("XenPool", "not_ready", "CloudStackNoMaster"),
    # XenPool's rolling maintenance: xapi's and CloudStack's refusals of a step pass through as they are spelled
    *rows("XenPool", "progressing", "Rolling", "WaitingForMaintenanceWindow", "RollBlocked", "DownloadFailed"),
    *rows("XenPool", "stalled", "RollFailed", "BootTimeUnknown", "UpdateNameMismatch", "HostDidNotReturn",
          "HostLeftPool", "UpdateChecksumMismatch", "MaintenanceFailed", "MaintenanceTimeout",
          "CANNOT_EVACUATE_HOST"),
    # SystemVMTemplate
    *rows("SystemVMTemplate", "progressing", "Registering", "Activating", "ReplacingSystemVMs", "UpgradingRouters",
          "WaitingForMaintenanceWindow", "RetryingRouters", "NotificationFailed", "ResolvingReboots"),
    *rows("SystemVMTemplate", "ready", "RolloutComplete"),
    *rows("SystemVMTemplate", "stalled", "RoutersFailed", "RolloutBlocked", "OsTypeNotFound",
          "WebhookAddressNotAllowed"),
    *rows("SystemVMTemplate", "not_ready", "DriftDetected", observe=True),
    # CloudStackRelease (the pipeline's phases and failures are derived below)
    *rows("CloudStackRelease", "progressing", "BuildStarted", "Pending", "BuildHostError", "BuildStartFailed",
          "BuildHostTimeout", "SourceUnreachable", "PatchDownloadFailed"),
    *rows("CloudStackRelease", "ready", "Succeeded"),
    *rows("CloudStackRelease", "not_ready", "BuildNeeded", observe=True),
    # reconcile/cloudstack.py: a CloudStack URL that is not https, without the Secret's allowPlainHTTP
    *rows(("KvmHost", "XenPool", "SystemVMTemplate"), "stalled", "InsecureEndpoint"),
    # XenPool reports the driver's refusal of a CloudStack too old through cluster.failed() (KvmHost and
    # SystemVMTemplate through the wrappers of derived_rows)
    *rows("XenPool", "stalled", "UnsupportedCloudStackVersion"),
    *rows("CloudStackRelease", "stalled", "InputsHashMismatch", "SSHUnavailable", "LocalBuildsDisabled",
          "LocalBuildIsolationUnavailable", "BuildOutputInvalid"),
]

# Raised only while an object is being deleted: the finalizer retries and writes no condition.
NOT_IN_STATUS = {
    "RemovalIncomplete": "KvmHost deletion (finalize)",
    "RemoveFailed": "CloudStackRelease deletion (finalize)",
    "MaintenanceFailed": "KvmHost / XenPool deletion: a CloudStack host that does not reach Maintenance",
    "MaintenanceTimeout": "KvmHost / XenPool deletion: a CloudStack host that does not reach Maintenance",
}


# --- the reasons derived from the code -------------------------------------------------------------------------

def subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += subclasses(sub)
    return found


def helper_of(error: ReconcileError) -> str:
    return "progressing" if error.retry else "stalled"  # reconcile_object: retry → progressing, else stalled


def cloudstack_error(cls: type) -> cloudstack_driver.CloudStackError:
    try:
        return cls("listHosts", "failed")
    except TypeError:
        return cls("listHosts", "job-1", "failed")


def derived_rows() -> list[Row]:
    derived: list[Row] = []
    # SSH errors: the KvmHost reconciler and the CloudStackRelease build host runner pass them on as they are
    for cls in subclasses(ssh_driver.SSHError):
        error = ssh_failure(cls("10.0.0.1:22: failed"))
        derived += rows(("KvmHost", "CloudStackRelease"), helper_of(error), error.reason)
    # CloudStack errors: SystemVMTemplate's and KvmHost registration's own wrappers
    for cls in subclasses(cloudstack_driver.CloudStackError):
        error = template_cloudstack_failure(cloudstack_error(cls), "reading CloudStack")
        derived += rows("SystemVMTemplate", helper_of(error), error.reason)
        error = kvm_registration.failure(cloudstack_error(cls), "registering the host in CloudStack")
        derived += rows("KvmHost", helper_of(error), error.reason)
    # XenAPI errors that mean the pool cannot be reached go through XenPool's unreachable()
    for cls in (xenapi_driver.XenUnreachable, xenapi_driver.XenTLSError, xenapi_driver.XenNoMaster):
        error = xen_unreachable(cls("session.login_with_password", "CONNECTION"))
        derived += rows("XenPool", helper_of(error), error.reason, domain=tuple(error.conditions))
    # CloudStackRelease: the pipeline's phases while it runs, its failures by the plan's own classes
    for phase in sorted(set(re.findall(r"\bphase ([A-Z]\w+)", pipeline_text()))):
        derived += rows("CloudStackRelease", "progressing", phase)
    derived += rows("CloudStackRelease", "progressing", *sorted(release_plan.TRANSIENT))
    derived += rows("CloudStackRelease", "stalled", *sorted(release_plan.STALLING))
    return derived


def pipeline_text() -> str:
    """Every shell script of the build pipeline (module-level strings and what the script builders return)."""
    texts = [v for v in vars(release_scripts).values() if isinstance(v, str)]
    texts += [f() for name, f in vars(release_scripts).items()
              if callable(f) and name.endswith("_script") and not name.startswith("_")]
    return "\n".join(texts)


FULL_TABLE: list[Row] = TABLE + derived_rows()
PREFIXES = {"KvmHost": "CloudStackHost", "XenPool": "CloudStack"}  # Ready's reason while registration waits


def table_ids(row: Row) -> str:
    return f"{row.kind}-{row.reason}-{row.helper}" + ("-observe" if row.observe else "")


def unique_rows() -> list[Row]:
    seen: dict[tuple[str, str, str, bool], Row] = {}
    for row in FULL_TABLE:
        seen.setdefault((row.kind, row.reason, row.helper, row.observe), row)
    return list(seen.values())


# --- writing a row's status the way the operator does ----------------------------------------------------------

@dataclass(frozen=True)
class Difference(Action):
    what: str = "set something"

    def describe(self) -> str:
        return self.what


GENERATION = 4


def written(row: Row, generation: int = GENERATION) -> dict[str, Any]:
    """The object after the operator's pass wrote this row's conditions through StatusWriter, over the status of
    an earlier pass (another outcome, an older generation, a domain condition)."""
    kind = BY_KIND[row.kind]
    earlier = st.merge_conditions(None, st.stalled("Earlier", "an earlier outcome") + [
        st.ConditionState("Reachable", "True", "Connected")], generation - 1, timestamp="2025-03-04T09:00:00Z")
    body = {
        "apiVersion": API_VERSION, "kind": row.kind,
        "metadata": {"name": "example", "namespace": "stackops-demo", "generation": generation,
                     "uid": "0d6f2c1e-4c3a-4b8e-9f00-000000000001"},
        "spec": {"managementPolicy": "Observe" if row.observe else "Manage"},
        "status": {"observedGeneration": generation - 1, "conditions": earlier},
    }
    patch = kopf.Patch()
    writer = StatusWriter(kind, body, patch)
    message = f"{row.reason} happened (a message)"
    writer.write(HELPERS[row.helper](row.reason, message) + list(row.domain),
                 drift=[Difference()] if row.observe else None)
    obj = copy.deepcopy(body)
    obj["status"] = {**body["status"], **json.loads(json.dumps(dict(patch["status"])))}
    return obj


def verdicts(kind: str, obj: dict[str, Any]) -> tuple[str, str, str]:
    return kstatus.compute(obj).status, ge.argo_health(kind, obj)["status"], ge.flux_status(kind, obj)


@pytest.mark.parametrize("row", unique_rows(), ids=table_ids)
def test_kstatus_argo_cd_and_flux_agree_on_each_reason(row: Row) -> None:
    obj = written(row)
    status = obj["status"]
    assert status["observedGeneration"] == GENERATION
    assert {c["type"]: c["observedGeneration"] for c in status["conditions"]}["Ready"] == GENERATION
    expected = KSTATUS_FOR_HELPER[row.helper]
    assert verdicts(row.kind, obj) == (expected, ge.ARGO_FOR_KSTATUS[expected], expected)
    argo = ge.argo_health(row.kind, obj)
    assert row.reason in argo["message"]
    if expected != "Current":  # kstatus carries the condition's message; Argo CD names the reason too
        assert kstatus.compute(obj).message == f"{row.reason} happened (a message)"
        assert argo["message"] == f"{row.reason}: {row.reason} happened (a message)"


@pytest.mark.parametrize("row", [r for r in unique_rows() if r.reason in {"Converging", "InvalidSpec",
                                                                            "ReconcilerNotImplemented"}
                                 or r.observe], ids=table_ids)
def test_a_spec_change_not_yet_observed_is_in_progress_everywhere(row: Row) -> None:
    obj = written(row)
    obj["metadata"]["generation"] = GENERATION + 1
    assert verdicts(row.kind, obj) == ("InProgress", "Progressing", "InProgress")
    assert ge.argo_health(row.kind, obj)["message"] == (f"Waiting for the operator to observe generation "
                                                        f"{GENERATION + 1} (status is for generation {GENERATION})")


@pytest.mark.parametrize("kind", ALL)
def test_paused_is_suspended_for_argo_cd_only(kind: str) -> None:
    """kstatus and Flux do not know the annotation: they keep reading the status the operator last wrote."""
    obj = written(Row(kind, "InvalidSpec", "stalled"))
    obj["metadata"]["annotations"] = {PAUSED_ANNOTATION: "true"}
    assert verdicts(kind, obj) == ("Failed", "Suspended", "Failed")
    obj["metadata"]["generation"] += 1  # a change made while paused waits for the operator
    assert verdicts(kind, obj) == ("InProgress", "Suspended", "InProgress")


@pytest.mark.parametrize("kind", ALL)
def test_deletion_is_terminating_for_kstatus(kind: str) -> None:
    """Argo CD reports "Pending deletion" (Progressing) itself before any health.lua runs."""
    obj = written(Row(kind, "InternalError", "progressing"))
    obj["metadata"]["deletionTimestamp"] = "2025-03-04T11:00:00Z"
    assert kstatus.compute(obj) == kstatus.Result("Terminating", "Resource scheduled for deletion")


def test_every_kind_has_every_outcome() -> None:
    for kind in ALL:
        helpers = {row.helper for row in FULL_TABLE if row.kind == kind}
        assert helpers == set(HELPERS) - {"unknown"}, kind  # Ready=Unknown: no reconciler writes it


# --- the table against the code ----------------------------------------------------------------------------------

REASON = re.compile(r"^(?:[A-Z][A-Za-z]+|[A-Z][A-Z0-9_]+)$")
# The files that write status, and the kinds they write it for. plan.py and cli.py are offline tools.
FILE_KINDS: dict[str, tuple[str, ...]] = {
    "handlers/resources.py": ALL, "drivers/secrets.py": ALL, "reconcile/base.py": ALL,
    "drivers/configmaps.py": ("KvmHost",),  # the only kind whose spec can name a ConfigMap
    "drivers/ssh.py": ("KvmHost", "CloudStackRelease"),
    # KvmHost registration and XenPool report CloudStack errors through their own wrappers (derived_rows)
    "drivers/cloudstack.py": ("SystemVMTemplate",),
    "drivers/xenapi.py": ("XenPool",),
    "reconcile/maintenance.py": (),
    "reconcile/cloudstack.py": ("KvmHost", "XenPool", "SystemVMTemplate"),
    "reconcile/kvmhost/": ("KvmHost",), "reconcile/xenpool/": ("XenPool",),
    "reconcile/systemvmtemplate/": ("SystemVMTemplate",), "reconcile/cloudstackrelease/": ("CloudStackRelease",),
}
# How calls other than the status helpers and ReconcileError end up in status (see each one's use).
FIXED_HELPER = {
    "refused": "stalled",  # xenpool/cluster.py: ReconcileError(…, retry=False)
    "Problem": "stalled",  # xenpool/__init__.py report(): st.stalled(first.reason, …)
    "PlanError": "stalled",  # kvmhost plan(): ReconcileError(error.reason, …, retry=False)
    "SecretError": "progressing",  # handlers/resources.py: st.progressing(error.reason, …)
    "ConfigMapError": "progressing",  # handlers/resources.py: the same
}


@dataclass(frozen=True)
class Found:
    path: str
    line: int
    reason: str
    helper: str | None  # None: the code does not fix it here
    prefix: bool = False  # an f-string's leading literal: the reason is this plus something else
    literal: bool = field(default=False, compare=False)  # a string literal in the code (not an enum member)


Names = dict[str, Any]
UNRESOLVED = object()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, tree: ast.Module) -> Names:
    """What the file's imports (at any depth) bind: local name → module or object, for resolving `st.Reason.X`
    or `Reason.X` to the enum member it names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: Names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module or ""
            for alias in node.names:
                try:
                    names[alias.asname or alias.name] = importlib.import_module(f"{base}.{alias.name}")
                except ImportError:
                    try:
                        names[alias.asname or alias.name] = getattr(importlib.import_module(base), alias.name)
                    except (ImportError, AttributeError):
                        pass
        elif isinstance(node, ast.Import):
            for alias in node.names:
                try:
                    module = importlib.import_module(alias.name)
                except ImportError:
                    continue
                names[alias.asname] = module if alias.asname else importlib.import_module(alias.name.split(".")[0])
    return names


def resolve(node: ast.AST, names: Names) -> Any:
    """The object a name or attribute chain (`st.Reason.CONVERGING`) refers to, or UNRESOLVED."""
    if isinstance(node, ast.Name):
        return names.get(node.id, UNRESOLVED)
    if isinstance(node, ast.Attribute):
        base = resolve(node.value, names)
        return UNRESOLVED if base is UNRESOLVED else getattr(base, node.attr, UNRESOLVED)
    return UNRESOLVED


def enum_value(node: ast.AST, names: Names) -> str | None:
    """The string a reference names: a reason enum's member (`Reason.X`), or a typed error's `reason` class
    attribute (`CommandFailed.reason`)."""
    value = resolve(node, names)
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str) else None
    return str(value) if isinstance(value, str) else None


def literals(node: ast.AST, names: Names | None = None) -> Iterator[tuple[str, bool, bool]]:
    """The strings a reason expression can evaluate to, as (value, prefix, literal): constants, members of the
    reason enums (`Reason.X`, resolved through `names`) and typed errors' reasons (`CommandFailed.reason`), both
    branches of `a if c else b`, each operand of `x or "Default"`, an f-string's leading literal or member (marked
    as a prefix)."""
    names = names or {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value, False, True
    elif isinstance(node, (ast.Name, ast.Attribute)) and (member := enum_value(node, names)) is not None:
        yield member, False, False
    elif isinstance(node, ast.IfExp):
        yield from literals(node.body, names)
        yield from literals(node.orelse, names)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from literals(value, names)
    elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        yield str(node.values[0].value), True, True
    elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.FormattedValue) \
            and (member := enum_value(node.values[0].value, names)) is not None:
        yield member, True, False


def call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "st":
        return f"st.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def scan_python(path: Path) -> Iterator[Found]:
    rel = str(path.relative_to(PACKAGE))
    tree = ast.parse(path.read_text())
    names = imported_names(path, tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = call_name(node)
            helper: str | None = None
            if name.startswith("st.") and name[3:] in HELPERS:
                helper = name[3:]
            elif name == "ReconcileError":
                retry = next((k.value for k in node.keywords if k.arg == "retry"), ast.Constant(True))
                helper = helper_of(ReconcileError("", "", retry=retry.value)) \
                    if isinstance(retry, ast.Constant) else None
            elif name in FIXED_HELPER:
                helper = FIXED_HELPER[name]
            else:
                for keyword in node.keywords:  # Decision(…, reason="ToolMissing")
                    if keyword.arg == "reason":
                        for value, prefix, literal in literals(keyword.value, names):
                            yield Found(rel, node.lineno, value, None, prefix, literal)
                continue
            if node.args:
                for value, prefix, literal in literals(node.args[0], names):
                    yield Found(rel, node.lineno, value, helper, prefix, literal)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                targets = [target] if not isinstance(target, ast.Tuple) else list(target.elts)
                values = [node.value] if not isinstance(target, ast.Tuple) else (
                    list(node.value.elts) if isinstance(node.value, ast.Tuple) else [])
                for name_node, value in zip(targets, values):
                    if isinstance(name_node, ast.Name) and name_node.id == "reason":
                        for text, prefix, literal in literals(value, names):  # reason = "…" (classes, locals)
                            yield Found(rel, node.lineno, text, None, prefix, literal)
                    if isinstance(name_node, ast.Attribute) and name_node.attr in ("problem", "failure") \
                            and isinstance(value, ast.Tuple) and value.elts:
                        for text, prefix, literal in literals(value.elts[0], names):  # facts.problem = (…)
                            yield Found(rel, node.lineno, text, None, prefix, literal)


@functools.lru_cache(maxsize=1)
def scan() -> tuple[Found, ...]:
    found: list[Found] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if kinds_of(rel) is not None:
            found += [f for f in scan_python(path) if REASON.match(f.reason) or f.prefix]
    for match in re.finditer(r"\bfail ([A-Z][a-z]\w*) ", pipeline_text()):  # the build pipeline's failures
        found.append(Found("reconcile/cloudstackrelease/scripts.py", 0, match.group(1), None))
    return tuple(found)


def kinds_of(rel: str) -> tuple[str, ...] | None:
    for prefix, kinds in FILE_KINDS.items():
        if rel == prefix or (prefix.endswith("/") and rel.startswith(prefix)):
            return kinds
    return None


def covered(kind: str, found: Found) -> list[Row]:
    """The table's rows for what the code writes; a registration reason is Ready's reason behind a prefix."""
    names = {found.reason}
    if kind in PREFIXES and not found.prefix:
        names.add(PREFIXES[kind] + found.reason)
    return [r for r in FULL_TABLE if r.kind == kind and (r.reason.startswith(found.reason) if found.prefix
                                                          else r.reason in names)]


def test_the_scan_finds_reasons_in_every_file_that_writes_them() -> None:
    """A guard for the scan itself: if it found nothing somewhere, the test below would pass for nothing."""
    files = {f.path for f in scan()}
    for rel in FILE_KINDS:
        if rel.endswith("/"):
            assert any(f.startswith(rel) for f in files), rel
        else:
            assert rel in files, rel
    assert len(scan()) > 150


def test_every_reason_in_the_code_is_in_the_table() -> None:
    missing, wrong = [], []
    for found in scan():
        kinds = kinds_of(found.path) or ()
        if found.reason in NOT_IN_STATUS:
            continue
        if not kinds:
            missing.append(f"{found.path}:{found.line} {found.reason}: a file that serves no kind")
        for kind in kinds:
            matching = covered(kind, found)
            if not matching:
                missing.append(f"{found.path}:{found.line} {kind} {found.reason}")
            elif found.helper is not None and found.helper not in {r.helper for r in matching}:
                wrong.append(f"{found.path}:{found.line} {kind} {found.reason}: the code writes it with "
                             f"st.{found.helper}, the table says {sorted({r.helper for r in matching})}")
    assert missing == [], "reasons the operator writes that test_kstatus_mapping.TABLE does not map"
    assert wrong == []


def test_the_table_has_no_reason_the_code_never_writes() -> None:
    written_names = {f.reason for f in scan()}
    prefixes = {f.reason for f in scan() if f.prefix}
    stale = [row for row in TABLE
             if row.reason not in written_names
             and not any(row.reason.startswith(p) for p in prefixes)
             and not re.fullmatch(r"[A-Z][A-Z0-9_]+", row.reason)]  # xapi error codes come from xapi
    assert stale == []


# --- the table against the user guide ----------------------------------------------------------------------------

GUIDE = ROOT / "docs" / "guide" / "kinds.md"
ON_HELPER = (("`Stalled=True`", "stalled"), ("`Reconciling=True`", "progressing"), ("`Ready=True`", "ready"),
             ("`Ready=False`", "not_ready"), ("`Ready=Unknown`", "unknown"))


def guide_reason_tables() -> list[tuple[tuple[str, ...], str, str | None]]:
    """(kinds, reason, helper or None) for each reason in the guide's reason tables (`| reason | on | … |`), the
    kind being that of the `## <Kind>` section (every kind before the first)."""
    found = []
    kinds: tuple[str, ...] = ALL
    in_table = False
    for line in GUIDE.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            kinds = (title,) if title in ALL else ALL
        if line.startswith("| reason | on |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        if not in_table or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        helper = next((h for marker, h in ON_HELPER if marker in cells[1]), None)
        for reason in re.findall(r"`([A-Za-z_]+)`", cells[0]):
            found.append((kinds, reason, helper))
    return found


def test_the_readme_summary_names_only_mapped_reasons() -> None:
    """The README's per-kind summary table (`| kind | conditions added | Ready=True reason | typical … |`)."""
    text = README.read_text()
    names = 0
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] in ALL and len(cells) >= 4:
            for reason in re.findall(r"`([A-Za-z_]+)`", " ".join(cells[2:])):
                names += 1
                assert any(r.kind == cells[0] and r.reason == reason for r in FULL_TABLE), (cells[0], reason)
    assert names > 20, "the README's summary of reasons was not found"


# Where the guide and the code disagree on the helper, to be fixed in one or the other.
GUIDE_DISAGREES: dict[tuple[str, str], str] = {}


def test_the_guide_reason_tables_agree_with_the_table() -> None:
    entries = guide_reason_tables()
    assert len(entries) > 80, "the guide's reason tables were not found"
    assert {kinds for kinds, _, _ in entries} == {ALL, *((k,) for k in ALL)}
    disagree = []
    for kinds, reason, helper in entries:
        for kind in kinds:
            matching = {r.helper for r in FULL_TABLE if r.kind == kind and r.reason == reason}
            if not matching:
                disagree.append(f"{kind} {reason}: in the guide, not in the table")
            elif helper is not None and helper not in matching and (kind, reason) not in GUIDE_DISAGREES:
                disagree.append(f"{kind} {reason}: the guide says {helper}, the code writes {sorted(matching)}")
    assert disagree == []


# --- the table against docs/gitops.md ----------------------------------------------------------------------------

GITOPS_DOC = ROOT / "docs" / "gitops.md"
DOC_COLUMNS = {"Healthy (Current)": "Current", "Progressing (InProgress)": "InProgress", "Degraded (Failed)": "Failed"}


def test_the_gitops_doc_lists_every_reason_under_its_health() -> None:
    """docs/gitops.md "Every reason, by health": exactly the reasons of the table, each under what it maps to
    (the xapi error codes are examples of a family)."""
    lines = GITOPS_DOC.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| kind | Healthy (Current) |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")][1:]
    assert [DOC_COLUMNS.get(c) for c in columns] == ["Current", "InProgress", "Failed"]
    documented: dict[str, set[tuple[str, str]]] = {}
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        documented[cells[0]] = {(re.sub(r"\W", "", reason), DOC_COLUMNS[column])
                                for column, cell in zip(columns, cells[1:])
                                for reason in re.findall(r"`([A-Za-z_]+)`", cell)}
    assert set(documented) == {"every kind", *ALL}
    for kind in ALL:
        expected = {(r.reason, KSTATUS_FOR_HELPER[r.helper]) for r in FULL_TABLE if r.kind == kind}
        assert documented["every kind"] | documented[kind] == expected, kind


# --- reasons and condition types are enums -----------------------------------------------------------------------

# The typed errors of these drivers keep their reason as a class attribute (`reason = "Unreachable"` in the class
# body): the class is the reason's type, and derived_rows() maps every class through the wrapper that reports it.
TYPED_ERRORS = ("drivers/ssh.py", "drivers/xenapi.py", "drivers/cloudstack.py")
# The modules that define the enums: their members are the only place the strings are spelled.
ENUM_MODULES = ("status.py", "reconcile/kvmhost/reasons.py", "reconcile/xenpool/reasons.py",
                "reconcile/systemvmtemplate/reasons.py", "reconcile/cloudstackrelease/reasons.py")


def class_attribute_reasons(rel: str) -> set[int]:
    """The lines of `reason = "…"` written directly in a class body."""
    lines = set()
    for node in ast.walk(ast.parse((PACKAGE / rel).read_text())):
        if isinstance(node, ast.ClassDef):
            lines |= {item.lineno for item in node.body if isinstance(item, ast.Assign)
                      and any(isinstance(t, ast.Name) and t.id == "reason" for t in item.targets)}
    return lines


def test_the_code_writes_reasons_through_enums() -> None:
    """Every reason the scan finds in the operator's Python is a member of a reason enum (`st.Reason.X`, a kind's
    `Reason.X`), but for the drivers' typed errors; the build pipeline's shell spells its own."""
    bare = [f"{f.path}:{f.line} {f.reason}" for f in scan()
            if f.literal and not (f.path in TYPED_ERRORS and f.line in class_attribute_reasons(f.path))]
    assert bare == [], "reasons written as string literals: use the enum (status.Reason or reconcile/<kind>/reasons.py)"


def test_the_scan_resolves_enum_members_through_the_files_imports() -> None:
    """A guard for the scan: a member, in each form the code writes one, is found as its value."""
    source = ("from .. import status as st\n"
              "from ..status import Reason\n"
              "from ..drivers.ssh import CommandFailed\n"
              "def f(error, x):\n"
              "    st.stalled(st.Reason.INVALID_SPEC, 'm')\n"
              "    raise ReconcileError(CommandFailed.reason, 'm')\n"
              "    raise ReconcileError(Reason.CONVERGING if x else 'Literal', 'm')\n"
              "    reason = error.reason or st.Reason.INTERNAL_ERROR\n"
              "    st.progressing(f'{st.Reason.CONNECTED}{x}', 'm')\n")
    path = PACKAGE / "reconcile" / "example.py"
    tree = ast.parse(source)
    names = imported_names(path, tree)
    assert names["st"] is st and names["Reason"] is st.Reason
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args]
    found = {value for call in calls for value in literals(call.args[0], names)}
    assert {("InvalidSpec", False, False), ("Converging", False, False), ("Literal", False, True),
            ("Connected", True, False), ("CommandFailed", False, False)} <= found
    assign = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign))
    assert list(literals(assign.value, names)) == [("InternalError", False, False)]


def condition_type_literals(path: Path) -> Iterator[tuple[int, str]]:
    """String literals (docstrings aside) that are a condition type: ConditionState("Ready", …), c.type == "Ready",
    get_condition(status, "Ready"), …"""
    types = {t.value for t in st.ConditionType}
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in types and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_condition_type_is_a_string_literal() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel not in ENUM_MODULES:
            found += [f"{rel}:{line} {value}" for line, value in condition_type_literals(path)]
    assert found == [], "condition types written as string literals: use status.ConditionType"
    assert any(condition_type_literals(PACKAGE / "status.py")), "the scan found nothing where the types are spelled"
