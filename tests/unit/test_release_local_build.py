"""CloudStackRelease `builder.type: Local`: there is no default builder; a Local build runs only when the operator
was started with `--allow-local-builds`, and then without the operator's credentials — a build whose commands
try to read the ServiceAccount token, the kubeconfig, the operator's environment or memory gets none of them."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stackops.api.cloudstackrelease import CloudStackReleaseSpec
from stackops.cli import parser
from stackops.reconcile import default_reconcilers
from stackops.reconcile.base import Context, ReconcileError
from stackops.reconcile.cloudstackrelease import CloudStackReleaseReconciler, isolation
from stackops.reconcile.cloudstackrelease.runner import LocalRunner

SECRETS = {"token": "SA-TOKEN-5e1f", "kubeconfig": "KUBECONFIG-FILE-77ab", "kube_dir": "KUBE-DIR-c0de",
           "env": "ENV-SECRET-91f0", "env_token": "ENV-TOKEN-3c3c"}


def release(work: Path, **changes: Any) -> CloudStackReleaseSpec:
    data: dict[str, Any] = {"source": {"repository": "https://127.0.0.1:9/nowhere.git", "baseRef": "4.8"},
                            "version": "4.8.0.16", "builder": {"type": "Local", "workDir": str(work)},
                            "packaging": {"enabled": False}}
    data.update(changes)
    return CloudStackReleaseSpec.model_validate(data)


def context(spec: CloudStackReleaseSpec, events: list[tuple[str, str, str]] | None = None,
            status: dict[str, Any] | None = None) -> Context:
    return Context(namespace="builds", name="release", generation=1, spec=spec, status=status or {}, secrets={},
                   event=lambda *e: (events if events is not None else []).append(e), logger=logging.getLogger("t"))


def test_there_is_no_default_builder() -> None:
    with pytest.raises(ValidationError) as error:
        CloudStackReleaseSpec.model_validate({"source": {"repository": "https://example.org/cs.git", "baseRef": "4.8"},
                                              "version": "4.8.0.16"})
    assert "builder" in str(error.value)
    with pytest.raises(ValidationError):
        CloudStackReleaseSpec.model_validate({"source": {"repository": "https://example.org/cs.git", "baseRef": "4.8"},
                                              "version": "4.8.0.16", "builder": {"workDir": "/srv/build"}})


def test_a_local_build_is_refused_without_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --allow-local-builds nothing runs in the operator's container: Stalled, LocalBuildsDisabled."""
    assert parser().parse_args(["run"]).allow_local_builds is False
    reconciler = default_reconcilers(object(), None)["CloudStackRelease"]
    assert isinstance(reconciler, CloudStackReleaseReconciler) and reconciler.local_builds is None

    async def no_process(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_process)
    spec = release(tmp_path / "work", build={"mavenCommand": ["cat", "/var/run/secrets/kubernetes.io/token"]})
    with pytest.raises(ReconcileError) as refused:
        asyncio.run(CloudStackReleaseReconciler(None).reconcile(context(spec)))
    assert refused.value.reason == "LocalBuildsDisabled" and refused.value.retry is False
    assert "--allow-local-builds" in str(refused.value)
    # deletion is not blocked by it: nothing is removed, and a Warning says so
    events: list[tuple[str, str, str]] = []
    asyncio.run(CloudStackReleaseReconciler(None).finalize(context(spec.model_copy(update={"deletion_policy": "Delete"}),
                                                                   events)))
    assert [reason for _, reason, _ in events] == ["LocalBuildsDisabled"]
    assert not (tmp_path / "work").exists()


def test_a_dumpable_operator_builds_nothing(tmp_path: Path) -> None:
    """pytest is dumpable (as an operator started without --allow-local-builds would be): a build could read its
    memory through /proc, so none starts."""
    assert not isolation.operator_protected()
    runner = LocalRunner(isolation.LocalBuilds((str(tmp_path),)))
    with pytest.raises(ReconcileError) as refused:
        asyncio.run(runner.script("touch ran", [], timeout=30))
    assert refused.value.reason == "LocalBuildIsolationUnavailable" and not refused.value.retry
    assert "dumpable" in str(refused.value) and not Path("ran").exists()


def test_no_unisolated_build_where_namespaces_cannot_be_made(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the namespaces cannot be set up (a seccomp profile, a chroot), the build is refused, not run bare."""
    def refused_by_the_kernel(covers: Any, last_cap: int, report: int) -> None:
        os.write(report, b"unshare(CLONE_NEWUSER|CLONE_NEWNS): Operation not permitted")
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(isolation, "operator_protected", lambda: True)
    monkeypatch.setattr(isolation, "_enter", refused_by_the_kernel)
    marker = tmp_path / "ran"
    with pytest.raises(ReconcileError) as refused:
        asyncio.run(LocalRunner(isolation.LocalBuilds(())).script(f"touch {marker}", [], timeout=30))
    assert refused.value.reason == "LocalBuildIsolationUnavailable" and not refused.value.retry
    assert "Operation not permitted" in str(refused.value) and not marker.exists()


def test_a_build_gets_no_credential_from_the_environment() -> None:
    environ = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "KUBECONFIG": "/k",
               "STACKOPS_SECRET_XEN_ROOT_PASSWORD": "x", "GITHUB_TOKEN": "x", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
               "AWS_SECRET_ACCESS_KEY": "x", "https_proxy": "http://user:pw@proxy:3128", "no_proxy": "localhost",
               "http_proxy": "http://proxy:3128", "JAVA_HOME": "/usr/lib/jvm/java"}
    assert isolation.build_environment(environ) == {
        "PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "no_proxy": "localhost",
        "http_proxy": "http://proxy:3128", "JAVA_HOME": "/usr/lib/jvm/java"}
    assert isolation.build_environment({})["PATH"]


def test_the_operators_credential_paths_are_found(tmp_path: Path) -> None:
    found = isolation.LocalBuilds.discover(environ={"KUBECONFIG": f"/a/config{os.pathsep}/b/config", "HOME": "/home/op"})
    assert found.hidden == ("/var/run/secrets", "/a/config", "/b/config", "/home/op/.kube")


# --- a Local build that tries to read the operator's credentials ------------------------------------------------

OPERATOR = textwrap.dedent("""
    import asyncio, json, logging, os, sys, time
    from stackops.api.cloudstackrelease import CloudStackReleaseSpec
    from stackops.reconcile.base import Context, ReconcileError
    from stackops.reconcile.cloudstackrelease import CloudStackReleaseReconciler
    from stackops.reconcile.cloudstackrelease.isolation import LocalBuilds, protect_operator

    config = json.loads(sys.argv[1])
    protect_operator()  # what `stackops run --allow-local-builds` does first
    with open(config["pidfile"], "w") as file:
        file.write(str(os.getpid()))
    reconciler = CloudStackReleaseReconciler(None, LocalBuilds.discover(secrets_dir=config["secrets"]))
    spec = CloudStackReleaseSpec.model_validate(config["spec"])
    status = {}
    deadline = time.monotonic() + 600  # a guard against a hang, not a measure
    while status.get("phase") not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        ctx = Context(namespace="builds", name="release", generation=1, spec=spec, status=status, secrets={},
                      event=lambda *e: None, logger=logging.getLogger("operator"))
        try:
            outcome = asyncio.run(reconciler.reconcile(ctx))
        except ReconcileError as error:
            print(json.dumps({"refused": error.reason, "message": str(error)}))
            sys.exit(0)
        status.update(outcome.fields)
        time.sleep(0.2)
    print(json.dumps({"status": status}))
""")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_NOSYSTEM": "1",
                        "HOME": str(repo)})


def attacking_repository(tmp_path: Path, targets: dict[str, str], pidfile: Path, secrets: Path) -> Path:
    """A CloudStack-like tree whose version command works and whose build (`mavenCommand: [sh, attack.sh]`)
    tries every way to the operator's credentials it knows, then prints its environment."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pom.xml").write_text("<project>\n  <version>4.8.0</version>\n</project>\n")
    (repo / "setversion.sh").write_text('sed -i "s|<version>.*</version>|<version>$1</version>|" pom.xml\n')
    reads = "".join(f'try {name} "{path}"\n' for name, path in targets.items())
    (repo / "attack.sh").write_text(textwrap.dedent(f"""\
        operator=$(cat {pidfile})
        try() {{  # try NAME PATH: a read that gives nothing (a file covered by /dev/null) reads nothing
            if content=$(cat "$2" 2>/dev/null) && [ -n "$content" ]; then printf '%s\n' "$content"; echo "attack: read $1"
            else echo "attack: cannot read $1"; fi
        }}
        {reads.rstrip()}
        try operator-environ "/proc/$operator/environ"
        try operator-memory "/proc/$operator/mem"
        try operator-root "/proc/$operator/root{secrets}/kubernetes.io/serviceaccount/token"
        if umount {secrets} 2>/dev/null; then echo "attack: unmounted"; fi
        try token-after-umount "{secrets}/kubernetes.io/serviceaccount/token"
        if unshare --user --map-root-user --mount umount {secrets} 2>/dev/null; then echo "attack: unmounted"; fi
        env | sed 's/^/env: /'
        echo "attack: done"
        """))
    git(repo, "init", "-q", "-b", "4.8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "CloudStack-like tree")
    return repo


def test_a_local_build_cannot_read_the_operators_credentials(tmp_path: Path) -> None:
    secrets = tmp_path / "run-secrets"  # where /var/run/secrets would be
    token = secrets / "kubernetes.io" / "serviceaccount" / "token"
    token.parent.mkdir(parents=True)
    token.write_text(SECRETS["token"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(SECRETS["kubeconfig"])
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(SECRETS["kube_dir"])
    for path in (tmp_path, secrets, token.parent.parent, token.parent, home, home / ".kube"):
        path.chmod(0o755)
    pidfile = tmp_path / "operator.pid"
    repo = attacking_repository(tmp_path, {"token": str(token), "kubeconfig": str(kubeconfig),
                                           "kube-dir": str(home / ".kube" / "config")}, pidfile, secrets)
    work = tmp_path / "work"
    spec = {"source": {"repository": f"file://{repo}", "baseRef": "4.8"}, "version": "4.8.0.16",
            "allowFileURLs": True, "builder": {"type": "Local", "workDir": str(work)},
            "build": {"versionCommand": ["sh", "setversion.sh", "%VERSION%"], "mavenCommand": ["sh", "attack.sh"],
                      "timeoutMinutes": 10},
            "packaging": {"enabled": False}}
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", "KUBECONFIG": str(kubeconfig),
           "STACKOPS_SECRET_XEN_ROOT_PASSWORD": SECRETS["env"], "GITHUB_TOKEN": SECRETS["env_token"],
           "GIT_CONFIG_NOSYSTEM": "1", **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    config = {"pidfile": str(pidfile), "secrets": str(secrets), "spec": spec}
    run = subprocess.run([sys.executable, "-c", OPERATOR, json.dumps(config)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if result.get("refused") == "LocalBuildIsolationUnavailable" and not user_namespaces_work():
        pytest.skip(f"this machine cannot make user namespaces, and the build was refused: {result['message']}")
    assert "status" in result, result
    status = result["status"]
    log = (work / "builds" / status["inputsHash"] / "log").read_text()
    assert status["phase"] == "Succeeded", log
    assert "attack: done" in log, log
    for name in ("token", "kubeconfig", "kube-dir", "operator-environ", "operator-memory", "operator-root",
                 "token-after-umount"):
        assert f"attack: cannot read {name}" in log, log
    assert "attack: read" not in log and "attack: unmounted" not in log, log
    environment = [line[len("env: "):] for line in log.splitlines() if line.startswith("env: ")]
    assert environment and not [v for v in environment if v.split("=")[0] == "KUBECONFIG"
                                or v.startswith("STACKOPS_") or v.split("=")[0].endswith("_TOKEN")], environment
    for secret in SECRETS.values():
        assert secret not in log and secret not in run.stdout + run.stderr, secret


def user_namespaces_work() -> bool:
    """Whether this machine lets an unprivileged process make user and mount namespaces at all."""
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run([unshare, "--user", "--mount", "true"],
                                                  capture_output=True, timeout=30).returncode == 0
