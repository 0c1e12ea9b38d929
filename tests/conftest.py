"""What every test shares: the tier marker of its folder (unit, integration, e2e: support/tiers.py), applied to each
collected test here; and, for the integration and end-to-end tiers, a real kube-apiserver for the whole test session
and the operator running under the deploy/ RBAC.

With `KUBECONFIG` set, its cluster is used as is; otherwise a local control plane
(etcd + kube-apiserver, see `stackops_lab.controlplane`) runs in a temporary directory
for the session and is stopped at the end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pytest

from stackops_lab import controlplane
from stackops_lab import operator as lab_operator
from support.kube import Kube, kube_for
from support.tiers import tier_of


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with the tier of the folder it sits in (`-m unit`, `-m integration`, `-m e2e`)."""
    for item in items:
        tier = tier_of(item.path)
        if tier is not None:
            item.add_marker(tier)


def progress(message: str) -> None:
    """Shown even while pytest captures output: the first start builds kube-apiserver (minutes)."""
    print(f"[lab] {message}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        yield kube_for(controlplane.external_cluster(kubeconfig))
        return
    plane = controlplane.LocalControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield kube_for(plane.start(progress))
    finally:
        plane.stop()


@pytest.fixture
def sa_token(kube: Kube) -> Callable[..., str]:
    """`sa_token(namespace, name, seconds=3600)`: a ServiceAccount token from the TokenRequest API."""
    return kube.service_account_token


TEST_OPERATOR_ARGS = ("--cloudstack-poll-seconds=0.2", "--rollout-pass-seconds=5", "--router-retry-seconds=1",
                      "--xen-poll-seconds=0.2")


@pytest.fixture(scope="session")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_operator.LocalOperator]:
    """deploy/ installed, and `stackops run` running with the ServiceAccount's token (not as admin)."""
    lab_operator.install(kube.kubeconfig)
    workdir = tmp_path_factory.mktemp("operator")
    token = lab_operator.service_account_token(kube.kubeconfig)
    config = lab_operator.token_kubeconfig(kube.kubeconfig, token, workdir / "kubeconfig")
    running = lab_operator.LocalOperator(kubeconfig=config, log_path=workdir / "operator.log", args=TEST_OPERATOR_ARGS)
    running.start()
    yield running
    running.stop()
