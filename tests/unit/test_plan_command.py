"""`stackops plan` without infrastructure: reconcilers replaced by fakes that report what a pass under Observe
would. Checks the parts around the operator's code: which resources are planned, where credentials come from,
that every pass runs under Observe, the rendering and the exit codes (0 nothing, 2 changes, 1 errors).
(tests/e2e/test_plan.py runs it for real against the lab.)"""
from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackops import status as st
from stackops.cli import main as cli_main
from stackops.plan import plan_files
from stackops.api.references import NeededSecret
from stackops.plan_secrets import ManifestSecrets, destinations_name, environment_name
from stackops.reconcile.cloudstackrelease import CloudStackReleaseReconciler
from stackops.reconcile.systemvmtemplate import SystemVMTemplateReconciler
from stackops.reconcile.base import Action, Context, Outcome, ReconcileError, Reconciler
from support.specs import MINIMAL

SECRET_VALUE = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret\n-----END OPENSSH PRIVATE KEY-----"


@dataclass(frozen=True)
class Change(Action):
    text: str
    operation: str = field(default="change", kw_only=True)  # type: ignore[misc]

    def describe(self) -> str:
        return self.text


class Fake(Reconciler):
    """Reports `outcome` (or raises `error`) and remembers the contexts it was given."""

    kind = "KvmHost"

    def __init__(self, outcome: Outcome | None = None, error: ReconcileError | None = None):
        self.outcome = outcome or Outcome(conditions=st.ready("Configured"), drift=[])
        self.error = error
        self.seen: list[Context] = []

    async def reconcile(self, ctx: Context) -> Outcome:
        self.seen.append(ctx)
        if self.error is not None:
            raise self.error
        return self.outcome


def kvmhost(name: str = "kvm01", policy: str = "Manage", secret: str = "kvm01-ssh") -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL["KvmHost"])
    spec["managementPolicy"] = policy
    spec["ssh"]["privateKeySecretRef"] = {"name": secret, "key": "ssh-privatekey"}
    return {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": name, "namespace": "site"}, "spec": spec}


def secret(name: str = "kvm01-ssh", encoded: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "site"}}
    if encoded:
        document["data"] = {"ssh-privatekey": base64.b64encode(SECRET_VALUE.encode()).decode()}
    else:
        document["stringData"] = {"ssh-privatekey": SECRET_VALUE}
    return document


def write(tmp_path: Path, *documents: dict[str, Any]) -> Path:
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def plan(path: Path, fake: Fake, **options: Any) -> tuple[int, str]:
    out = StringIO()
    code = plan_files([path], out, reconcilers={"KvmHost": fake}, environ=options.pop("environ", {}), **options)
    return code, out.getvalue()


def changes(*texts: str) -> Outcome:
    return Outcome(conditions=st.not_ready("DriftObserved", "differs"), drift=[Change(t) for t in texts])


def test_converged_exits_0_and_every_pass_runs_under_observe(tmp_path: Path) -> None:
    fake = Fake()
    code, out = plan(write(tmp_path, kvmhost(), secret()), fake)
    assert code == 0, out
    assert "KvmHost site/kvm01" in out and "no changes" in out and "1 resource: 0 to change, 1 unchanged" in out
    ctx = fake.seen[0]
    assert ctx.spec.management_policy == "Observe"  # the operator's own pass, which changes nothing
    assert ctx.namespace == "site" and ctx.name == "kvm01"
    assert ctx.secret("kvm01-ssh", "ssh-privatekey").get_secret_value() == SECRET_VALUE
    assert SECRET_VALUE not in out


def test_changes_exit_2_with_a_line_per_change(tmp_path: Path) -> None:
    outcome = Outcome(conditions=st.not_ready("DriftObserved", "differs"),
                      drift=[Change("create bridge cloudbr0", operation="add"),
                             Change("remove port vnet3 from cloudbr0", operation="remove"),
                             Change("set MTU of eno1 to 9000")])
    outcome.drift.append(Change("restart libvirtd"))  # type: ignore[union-attr]
    code, out = plan(write(tmp_path, kvmhost(), secret()), Fake(outcome))
    assert code == 2, out
    lines = out.splitlines()
    assert lines[0].endswith(": 4 changes")
    assert lines[1:5] == ["  + create bridge cloudbr0", "  - remove port vnet3 from cloudbr0",
                          "  ~ set MTU of eno1 to 9000", "  ~ restart libvirtd"]
    assert lines[-1] == "1 resource: 1 to change, 0 unchanged"


def test_disruptive_changes_are_marked(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Join(Change):
        disruptive = True

    drift = [Join("join xen3", operation="add")]
    code, out = plan(write(tmp_path, kvmhost(), secret()), Fake(Outcome(st.not_ready("X", ""), drift=drift)))
    assert code == 2 and "  + join xen3 (disruptive)" in out


def test_observe_resources_report_drift_but_change_nothing(tmp_path: Path) -> None:
    code, out = plan(write(tmp_path, kvmhost(policy="Observe"), secret()), Fake(changes("set MTU of eno1 to 9000")))
    assert code == 0, out
    assert "1 change left alone (managementPolicy: Observe)" in out and "1 observed with drift" in out


def test_a_stalled_resource_is_an_error(tmp_path: Path) -> None:
    fake = Fake(Outcome(conditions=st.stalled("TooFewHostsForHA", "HA needs three hosts"), drift=[]))
    code, out = plan(write(tmp_path, kvmhost(), secret()), fake)
    assert code == 1 and "cannot plan: TooFewHostsForHA: HA needs three hosts" in out


def test_unreachable_infrastructure_is_an_error(tmp_path: Path) -> None:
    fake = Fake(error=ReconcileError("Unreachable", "root@10.0.0.1:22: connection refused"))
    code, out = plan(write(tmp_path, kvmhost(), secret()), fake)
    assert code == 1 and "cannot plan: Unreachable: root@10.0.0.1:22: connection refused" in out


def test_errors_win_over_changes(tmp_path: Path) -> None:
    path = write(tmp_path, kvmhost("a"), kvmhost("b", secret="missing"), secret())
    code, out = plan(path, Fake(changes("create bridge cloudbr0")))
    assert code == 1 and "1 to change" in out and "1 with errors" in out


def test_invalid_spec_names_the_field_and_nothing_is_observed(tmp_path: Path) -> None:
    document = kvmhost()
    document["spec"]["address"] = "not an address; rm -rf /"
    fake = Fake()
    code, out = plan(write(tmp_path, document, secret()), fake)
    assert code == 1 and "cannot plan: InvalidSpec: spec.address" in out
    assert fake.seen == []


def test_base64_data_secrets_are_read(tmp_path: Path) -> None:
    fake = Fake()
    assert plan(write(tmp_path, kvmhost(), secret(encoded=True)), fake)[0] == 0
    assert fake.seen[0].secret("kvm01-ssh", "ssh-privatekey").get_secret_value() == SECRET_VALUE


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    assert environment_name("kvm01-ssh", "ssh-privatekey") == "STACKOPS_SECRET_KVM01_SSH_SSH_PRIVATEKEY"
    assert environment_name("cloudstack-api", "apiKey") == "STACKOPS_SECRET_CLOUDSTACK_API_APIKEY"
    fake = Fake()
    code, out = plan(write(tmp_path, kvmhost()), fake,
                     environ={"STACKOPS_SECRET_KVM01_SSH_SSH_PRIVATEKEY": SECRET_VALUE})
    assert code == 0, out
    assert fake.seen[0].secret("kvm01-ssh", "ssh-privatekey").get_secret_value() == SECRET_VALUE


def test_optional_keys_come_from_the_environment_too() -> None:
    """A CloudStack Secret's allowPlainHTTP (a lab's http:// endpoint) is read from the environment when there;
    absent, it is simply not there (it is optional)."""
    needed = [NeededSecret("spec.cloudstack.apiSecretRef", "cloudstack-api", ("url", "apiKey", "secretKey"),
                     ("allowPlainHTTP",))]
    environ = {environment_name("cloudstack-api", key): "v" for key in ("url", "apiKey", "secretKey")}
    assert set(ManifestSecrets(environ).read("demo", needed)["cloudstack-api"]) == {"url", "apiKey", "secretKey"}
    environ[environment_name("cloudstack-api", "allowPlainHTTP")] = "true"
    values = ManifestSecrets(environ).read("demo", needed)["cloudstack-api"]
    assert values["allowPlainHTTP"].get_secret_value() == "true"


def test_where_credentials_may_go_follows_where_their_values_come_from() -> None:
    """A list in the files counts for values from the files; for a value from the CI job's environment only the
    environment's list counts: a branch's author can edit the manifests, not the job's variables."""
    needed = [NeededSecret("spec.ssh.privateKeySecretRef", "kvm01-ssh", ("ssh-privatekey",))]
    document = {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "kvm01-ssh", "annotations": {"stackops.io/allowed-destinations": "10.9.9.9"}},
                "stringData": {"ssh-privatekey": SECRET_VALUE}}
    files = ManifestSecrets({})
    files.add("demo", document)
    assert files.read("demo", needed)["kvm01-ssh"].destinations.allows("10.9.9.9")

    sealed = copy.deepcopy(document)
    sealed["stringData"]["ssh-privatekey"] = "ENC[AES256_GCM,data:Zm9v,iv:YmFy,tag:YmF6,type:str]"
    environ = {environment_name("kvm01-ssh", "ssh-privatekey"): SECRET_VALUE}
    from_environment = ManifestSecrets(environ)
    from_environment.add("demo", sealed)
    assert not from_environment.read("demo", needed)["kvm01-ssh"].destinations, "the manifest's list is ignored"
    environ[destinations_name("kvm01-ssh")] = "10.0.0.0/24"
    assert destinations_name("kvm01-ssh") == "STACKOPS_DESTINATIONS_KVM01_SSH"
    allowed = from_environment.read("demo", needed)["kvm01-ssh"].destinations
    assert allowed.allows("10.0.0.7") and not allowed.allows("10.9.9.9")


def test_sops_encrypted_values_are_taken_from_the_environment(tmp_path: Path) -> None:
    encrypted = secret()
    encrypted["stringData"]["ssh-privatekey"] = "ENC[AES256_GCM,data:Zm9v,iv:YmFy,tag:YmF6,type:str]"
    fake = Fake()
    assert plan(write(tmp_path, kvmhost(), encrypted), fake)[0] == 1 and fake.seen == []
    code, out = plan(write(tmp_path, kvmhost(), encrypted), fake,
                     environ={"STACKOPS_SECRET_KVM01_SSH_SSH_PRIVATEKEY": SECRET_VALUE})
    assert code == 0, out
    assert fake.seen[0].secret("kvm01-ssh", "ssh-privatekey").get_secret_value() == SECRET_VALUE


def test_an_unreachable_outcome_is_an_error(tmp_path: Path) -> None:
    conditions = [*st.progressing("MasterUnreachable", "master xen1 does not answer"),
                  st.ConditionState("Reachable", "False", "MasterUnreachable", "master xen1 does not answer")]
    code, out = plan(write(tmp_path, kvmhost(), secret()), Fake(Outcome(conditions=conditions, drift=[])))
    assert code == 1 and "cannot plan: MasterUnreachable: master xen1 does not answer" in out


def test_a_missing_secret_says_where_it_was_looked_for(tmp_path: Path) -> None:
    fake = Fake()
    code, out = plan(write(tmp_path, kvmhost()), fake)
    assert code == 1 and fake.seen == []
    assert ("SecretNotFound: spec.ssh.privateKeySecretRef: no Secret site/kvm01-ssh in the files and no "
            "STACKOPS_SECRET_KVM01_SSH_SSH_PRIVATEKEY in the environment") in out


def test_a_secret_in_another_namespace_does_not_count(tmp_path: Path) -> None:
    other = secret()
    other["metadata"]["namespace"] = "elsewhere"
    assert plan(write(tmp_path, kvmhost(), other), Fake())[0] == 1


def test_a_local_builder_is_not_observed_here(tmp_path: Path) -> None:
    release = {"apiVersion": "stackops.io/v1alpha1", "kind": "CloudStackRelease",
               "metadata": {"name": "r", "namespace": "site"},
               "spec": {**copy.deepcopy(MINIMAL["CloudStackRelease"]), "builder": {"type": "Local"}}}
    real = CloudStackReleaseReconciler()  # the kind's own reconciler says it cannot be observed from here
    seen: list[Context] = []

    async def observed(ctx: Context) -> Outcome:
        seen.append(ctx)
        return Outcome(conditions=st.ready("Built"), drift=[])

    real.reconcile = observed  # type: ignore[method-assign]
    out = StringIO()
    code = plan_files([write(tmp_path, release)], out, reconcilers={"CloudStackRelease": real}, environ={})
    assert code == 1 and "cannot plan: LocalBuilder" in out.getvalue() and seen == []


@pytest.mark.parametrize(("stage", "then"), [
    ("Registering", "  then RolloutStages: once the templates are Ready, activate them, replace the system VMs and "
                    "reboot the routers that need the new version (within maxUnavailable, BACKUP before MASTER)"),
    ("Activating", "  then RolloutStages: then replace the system VMs and reboot the routers"),
    ("ReplacingSystemVMs", "  then RolloutStages: then reboot the routers"),
    ("UpgradingRouters", None),
])
def test_a_rollout_says_which_stages_follow_its_changes(tmp_path: Path, stage: str, then: str | None) -> None:
    template = {"apiVersion": "stackops.io/v1alpha1", "kind": "SystemVMTemplate",
                "metadata": {"name": "systemvm", "namespace": "site"},
                "spec": copy.deepcopy(MINIMAL["SystemVMTemplate"])}
    admin = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cloudstack-admin", "namespace": "site"},
             "stringData": {"url": "https://cloud.example.com/client/api", "apiKey": "k", "secretKey": "s"}}
    real = SystemVMTemplateReconciler(pool=None)  # type: ignore[arg-type]  # its own later_stages answers
    fake = Fake(Outcome(conditions=st.not_ready("DriftDetected", f"{stage}: 1 router(s) left alone"),
                        drift=[Change("register template x", operation="add")]))
    real.reconcile = fake.reconcile  # type: ignore[method-assign]
    out = StringIO()
    code = plan_files([write(tmp_path, template, admin)], out, reconcilers={"SystemVMTemplate": real}, environ={})
    lines = out.getvalue().splitlines()
    assert code == 2 and lines[1] == "  + register template x", lines
    following = [line for line in lines if line.startswith("  then")]
    assert (following == []) if then is None else (len(following) == 1 and following[0].startswith(then)), lines


def test_json_output(tmp_path: Path) -> None:
    code, out = plan(write(tmp_path, kvmhost(), secret()), Fake(changes("create bridge cloudbr0")), output="json")
    report = json.loads(out)
    assert code == 2 and report["exitCode"] == 2
    [resource] = report["resources"]
    assert resource["kind"] == "KvmHost" and resource["namespace"] == "site" and resource["name"] == "kvm01"
    assert resource["result"] == "changes"
    assert resource["changes"] == [{"description": "create bridge cloudbr0", "disruptive": False}]


def test_other_manifests_are_ignored_and_directories_are_walked(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "host.yml").write_text(yaml.safe_dump_all([kvmhost(), secret()]))
    (tmp_path / "ns.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": "site"}}))
    (tmp_path / "README.md").write_text("not yaml: [")
    out = StringIO()
    assert plan_files([tmp_path], out, reconcilers={"KvmHost": Fake()}, environ={}) == 0
    assert out.getvalue().count("KvmHost site/kvm01") == 1


def test_unreadable_yaml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: [unclosed\n")
    out = StringIO()
    assert plan_files([path], out, reconcilers={}, environ={}) == 1
    assert "cannot read the manifests" in out.getvalue()


def test_the_symbol_is_the_operation_the_action_declares_not_its_verb(tmp_path: Path) -> None:
    drift = [Change("install nothing", operation="remove"), Change("remove nothing", operation="add"),
             Change("create nothing", operation="change")]
    code, out = plan(write(tmp_path, kvmhost(), secret()), Fake(Outcome(st.not_ready("X", ""), drift=drift)))
    assert code == 2 and out.splitlines()[1:4] == ["  - install nothing", "  + remove nothing", "  ~ create nothing"]


def test_cli_help_names_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["plan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit 0: nothing would change; 2: changes pending; 1: an error." in text
    assert "STACKOPS_SECRET_<SECRET NAME>_<KEY>" in text
