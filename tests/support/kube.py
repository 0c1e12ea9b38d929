"""The cluster the integration and end-to-end tiers run against (the `kube` fixture in tests/conftest.py), driven
through kubectl."""
from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from stackops_lab import controlplane
from stackops_lab import operator as lab_operator


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@dataclass(frozen=True)
class Kube:
    """A cluster for tests, driven through kubectl."""

    provider: str
    kubeconfig: str
    server: str
    admin_token: str
    kubectl_binary: str

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        as_token: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin, or as the bearer of `as_token`."""
        command = [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}"]
        if as_token is not None:
            command.append(f"--token={as_token}")
        command += args
        result = subprocess.run(command, input=input, capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    @contextlib.contextmanager
    def scratch_namespace(self, prefix: str) -> Iterator[str]:
        """A namespace of the with-block's own, `prefix`-<8 hex digits>, deleted after it (not waited for)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false")

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token for ServiceAccount `namespace/name`, minted with the TokenRequest API."""
        return lab_operator.service_account_token(self.kubeconfig, namespace, name, seconds)


def kube_for(cluster: controlplane.ClusterInfo) -> Kube:
    return Kube(
        provider=cluster.provider,
        kubeconfig=str(cluster.kubeconfig),
        server=cluster.server,
        admin_token=cluster.admin_token,
        kubectl_binary=str(controlplane.find_kubectl()),
    )
