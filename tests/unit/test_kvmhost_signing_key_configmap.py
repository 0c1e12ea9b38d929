"""A KvmHost's package repository key from a ConfigMap (`packages.signingKeyConfigMapRef`) as well as from a
Secret: exactly one of the two with a repositoryURL (none with allowUnsigned); the handlers read the ConfigMap
(drivers/configmaps.py, test_configmap_reader.py) for a pass and for deletion, and report one missing or refused
(not found, forbidden, unreadable, without the key: support.configmaps.READ_FAILURES) like a Secret (Reconciling,
retried); the reconciler writes its value as the repository's keyring and refuses a value that is not one armored
public key, naming the ConfigMap; `stackops plan` takes it from ConfigMap manifests in the files, never from the
environment."""
from __future__ import annotations

import asyncio
import base64
import logging
from io import StringIO
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from pydantic import SecretStr, ValidationError

from support.configmaps import READ_FAILURES, CoreAPI, config_map, stored
from support.configmaps import KEY as CONFIG_MAP_KEY, NAME as CONFIG_MAP
from support.credentials import secret
from support.kvmhost_probe import OWNER, ProbeOnlyHost, probe_output
from support.specs import HOST_KEY
from stackops import status as st
from stackops.api.kinds import KVMHOST
from stackops.api.kvmhost import KvmHostSpec
from stackops.api.references import needed_config_maps, needed_secrets
from stackops.drivers.configmaps import ConfigMapReader
from stackops.handlers import resources
from stackops.plan import plan_files
from stackops.plan_secrets import environment_name
from stackops.reconcile.base import Context, Outcome, ReconcileError, Reconciler
from stackops.reconcile.kvmhost import KvmHostReconciler
from stackops.reconcile.kvmhost.plan import PlanError, plan
from stackops.reconcile.kvmhost.probe import parse

KEY = (Path(__file__).parent / "data" / "repository-key.asc").read_text()
PRIVATE = KEY.replace("PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK")
URL = "https://repo.example.com/cloudstack/4.19/"
APT_KEY = "/etc/apt/keyrings/stackops-cloudstack.asc"
APT_SOURCE = "/etc/apt/sources.list.d/stackops-cloudstack.list"
REF = {"name": CONFIG_MAP, "key": CONFIG_MAP_KEY}
SSH = {"privateKeySecretRef": {"name": "kvm-ssh"}, "hostKey": HOST_KEY}


def spec(**packages: Any) -> KvmHostSpec:
    return KvmHostSpec.model_validate({"address": "10.250.0.11", "ssh": SSH, "packages": packages})


def from_config_map(**packages: Any) -> KvmHostSpec:
    return spec(repositoryURL=URL, signingKeyConfigMapRef=REF, **packages)


# ------------------------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize(("packages", "message"), [
    ({"repositoryURL": URL, "signingKeyConfigMapRef": REF, "signingKeySecretRef": REF},
     "set either signingKeySecretRef or signingKeyConfigMapRef, not both"),
    ({"repositoryURL": URL, "signingKeyConfigMapRef": REF, "allowUnsigned": True},
     "set either signingKeyConfigMapRef or allowUnsigned, not both"),
    ({"signingKeyConfigMapRef": REF}, "signingKeyConfigMapRef is set without a repositoryURL to verify"),
    ({"repositoryURL": URL}, "repositoryURL needs signingKeySecretRef or signingKeyConfigMapRef"),
    ({"repositoryURL": "http://repo.example.com/el8/", "signingKeyConfigMapRef": REF}, "allowPlainHTTP"),
    ({"repositoryURL": URL, "signingKeyConfigMapRef": {"name": "Not_A_Name", "key": CONFIG_MAP_KEY}},
     "signingKeyConfigMapRef.name"),
])
def test_exactly_one_key_source_or_allow_unsigned(packages: dict, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        spec(**packages)
    assert message in str(refused.value)


def test_the_config_map_is_a_reference_the_operator_reads_and_no_secret() -> None:
    packages = from_config_map().packages
    assert packages.signing_key_config_map_ref is not None and packages.signing_key_secret_ref is None
    assert [(n.path, n.name, n.keys) for n in needed_config_maps(from_config_map())] == [
        ("spec.packages.signingKeyConfigMapRef", CONFIG_MAP, (CONFIG_MAP_KEY,))]
    assert [n.name for n in needed_secrets(from_config_map())] == ["kvm-ssh"]
    assert spec(repositoryURL="http://r.example.com/", allowPlainHTTP=True,
                signingKeyConfigMapRef=REF).packages.allow_plain_http


# ---------------------------------------------------------------------------------------------------- handlers


class Seen(Reconciler):
    kind = "KvmHost"

    def __init__(self) -> None:
        self.contexts: list[Context] = []

    async def reconcile(self, ctx: Context) -> Outcome:
        self.contexts.append(ctx)
        return Outcome(st.ready("Configured"), drift=[])

    async def finalize(self, ctx: Context) -> None:
        self.contexts.append(ctx)


class Secrets:
    async def read(self, namespace: str, needed: list) -> dict[str, dict[str, SecretStr]]:
        return {"kvm-ssh": {"ssh-privatekey": SecretStr("PRIVATE-KEY-VALUE")}}


def body(**extra: Any) -> dict[str, Any]:
    return {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
            "metadata": {"name": "kvm1", "namespace": "lab", "uid": "u-cm", "generation": 2},
            "spec": {"address": "10.0.1.21", "ssh": SSH,
                     "packages": {"repositoryURL": URL, "signingKeyConfigMapRef": REF}, **extra},
            "status": {}}


def test_the_handler_reads_the_config_map_into_the_context() -> None:
    seen = Seen()
    core = CoreAPI({CONFIG_MAP: stored({CONFIG_MAP_KEY: KEY})})
    deps = resources.Deps(reconcilers={"KvmHost": seen}, secrets=Secrets(),  # type: ignore[arg-type]
                          config_maps=ConfigMapReader(core))
    patch = kopf.Patch()
    asyncio.run(resources.reconcile_object(KVMHOST, deps, body(), patch, logging.getLogger("test")))
    assert seen.contexts[0].config_maps == {CONFIG_MAP: {CONFIG_MAP_KEY: KEY}}
    asyncio.run(resources.finalize_object(KVMHOST, deps, body(deletionPolicy="Delete"), logging.getLogger("test")))
    assert seen.contexts[1].config_maps == {CONFIG_MAP: {CONFIG_MAP_KEY: KEY}}
    assert core.calls == [("lab", CONFIG_MAP)] * 2


@pytest.mark.parametrize(("maps", "status", "reason", "message"), READ_FAILURES)
def test_a_config_map_missing_or_refused_is_reported_like_a_secret(maps: dict, status: int | None, reason: str,
                                                                    message: str) -> None:
    seen = Seen()
    deps = resources.Deps(reconcilers={"KvmHost": seen}, secrets=Secrets(),  # type: ignore[arg-type]
                          config_maps=ConfigMapReader(CoreAPI(maps, status)))
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as retried:
        asyncio.run(resources.reconcile_object(KVMHOST, deps, body(), patch, logging.getLogger("test")))
    assert retried.value.delay == resources.SECRET_RETRY_SECONDS and seen.contexts == []
    conditions = {c["type"]: c for c in patch["status"]["conditions"]}
    assert conditions["Reconciling"]["status"] == "True" and conditions["Reconciling"]["reason"] == reason
    assert conditions["Ready"]["status"] == "False" and "ConfigMap lab/repo-key" in conditions["Ready"]["message"]
    assert conditions["Ready"]["message"] == message  # the reader's own words


# ------------------------------------------------------------------------------------------------- reconciler


def test_the_reconciler_writes_the_config_map_key_and_stalls_on_a_private_one() -> None:
    host = ProbeOnlyHost(probe_output())
    ctx = Context(namespace="lab", name="kvm1", generation=1, spec=from_config_map(), status={},
                  secrets={"kvm-ssh": secret({"ssh-privatekey": "x"}, "10.250.0.11")},
                  event=lambda *e: None, logger=logging.getLogger("test"),
                  config_maps={CONFIG_MAP: {CONFIG_MAP_KEY: PRIVATE}})
    with pytest.raises(ReconcileError) as stalled:
        asyncio.run(KvmHostReconciler(host).reconcile(ctx))  # type: ignore[arg-type]
    assert stalled.value.reason == "SigningKeyInvalid" and not stalled.value.retry
    assert f"packages.signingKeyConfigMapRef (ConfigMap {CONFIG_MAP}, key {CONFIG_MAP_KEY})" in str(stalled.value)
    assert host.ran == []
    ctx.config_maps[CONFIG_MAP] = {CONFIG_MAP_KEY: KEY}
    ctx.spec = ctx.spec.model_copy(update={"management_policy": "Observe"})
    outcome = asyncio.run(KvmHostReconciler(host).reconcile(ctx))  # type: ignore[arg-type]
    assert [a.describe() for a in outcome.drift or []][:2] == [
        f"add the signing key of the package repository {URL} ({APT_KEY})",
        f"add the package repository {URL} ({APT_SOURCE})"]


def test_the_plan_names_the_config_map_of_a_value_that_is_no_public_key() -> None:
    with pytest.raises(PlanError) as refused:
        plan(from_config_map(), parse(probe_output(), 16509), OWNER, "not a key")
    assert refused.value.reason == "SigningKeyInvalid"
    assert str(refused.value).startswith(
        f"packages.signingKeyConfigMapRef (ConfigMap {CONFIG_MAP}, key {CONFIG_MAP_KEY}): ")
    key, *_ = plan(from_config_map(), parse(probe_output(), 16509), OWNER, KEY)
    assert key.path == APT_KEY and key.content == KEY


# ------------------------------------------------------------------------------------------------ stackops plan


def manifests(tmp_path: Path, *config_maps: dict[str, Any]) -> Path:
    kvmhost = {"apiVersion": "stackops.io/v1alpha1", "kind": "KvmHost",
               "metadata": {"name": "kvm01", "namespace": "site"},
               "spec": {"address": "10.0.1.21", "ssh": SSH,
                        "packages": {"repositoryURL": URL, "signingKeyConfigMapRef": REF}}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kvm-ssh", "namespace": "site"},
              "stringData": {"ssh-privatekey": "PRIVATE"}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump_all([kvmhost, secret, *config_maps]))
    return path


def run_plan(path: Path, environ: dict[str, str] | None = None) -> tuple[int, str, Seen]:
    seen, out = Seen(), StringIO()
    code = plan_files([path], out, reconcilers={"KvmHost": seen}, environ=environ or {})
    return code, out.getvalue(), seen


def test_plan_reads_the_key_from_a_config_map_manifest_among_the_files(tmp_path: Path) -> None:
    code, out, seen = run_plan(manifests(tmp_path, config_map(data={CONFIG_MAP_KEY: KEY})))
    assert code == 0, out
    assert seen.contexts[0].config_maps == {CONFIG_MAP: {CONFIG_MAP_KEY: KEY}}
    encoded = base64.b64encode(KEY.encode()).decode()
    code, out, seen = run_plan(manifests(tmp_path, config_map(binaryData={CONFIG_MAP_KEY: encoded})))
    assert code == 0 and seen.contexts[0].config_maps == {CONFIG_MAP: {CONFIG_MAP_KEY: KEY}}, out


def test_plan_takes_no_config_map_from_the_environment_or_another_namespace(tmp_path: Path) -> None:
    environ = {environment_name(CONFIG_MAP, CONFIG_MAP_KEY): KEY}
    code, out, seen = run_plan(manifests(tmp_path, config_map("elsewhere", data={CONFIG_MAP_KEY: KEY})), environ)
    assert code == 1 and seen.contexts == []
    assert ("cannot plan: ConfigMapNotFound: spec.packages.signingKeyConfigMapRef: no ConfigMap site/repo-key in "
            "the files") in out
    code, out, _ = run_plan(manifests(tmp_path, config_map(data={"other": KEY})))
    assert code == 1 and "ConfigMapKeyMissing: ConfigMap site/repo-key (spec.packages.signingKeyConfigMapRef) has " \
        "no key signing-key.asc" in out
