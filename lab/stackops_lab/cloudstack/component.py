"""`stackops lab up --cloudstack`: the lab CloudStack as a background process of the lab, recorded in the lab
directory so `stackops lab down` stops it and manifests can point at it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stackops_lab.background import BackgroundSimulator
from stackops_lab.cloudstack import images
from stackops_lab.controlplane import LabError
from stackops_lab.hosts import WORKDIR, LabHosts


@dataclass(frozen=True)
class LabCloudStack:
    """A running lab CloudStack, as manifests need it."""

    endpoint: str
    base_url: str
    api_key: str
    secret_key: str
    pid: int

    def image_url(self, hypervisor: str, version: str) -> str:
        return f"{self.base_url}/images/{images.file_name(hypervisor, version)}"

    def image_checksum(self, hypervisor: str, version: str) -> str:
        return images.checksum(images.image_bytes(images.file_name(hypervisor, version)))


class CloudStackComponent(BackgroundSimulator):
    """The simulator with the lab hosts' client key as its management key (so addHost can log in). With
    `lab_network`, it serves on the machine's address on the lab hosts' bridge (their gateway) instead of 127.0.0.1:
    where an operator Pod on the lab's node reaches it, as it reaches a real management server."""

    name = "cloudstack"
    module = "stackops_lab.cloudstack.cli"
    state = "cloudstack.json"

    def __init__(self, *, routers: int = 200, redundant_pairs: int | None = None, router_reboot: float = 3.0,
                 lab_network: bool = False) -> None:
        self.routers = routers
        self.lab_network = lab_network
        self.redundant_pairs = routers // 4 if redundant_pairs is None else redundant_pairs  # half the routers paired
        self.router_reboot = router_reboot

    def arguments(self, lab_dir: Path) -> list[str]:
        args = ["--port", "0", "--routers", str(self.routers), "--redundant-pairs", str(self.redundant_pairs),
                "--router-reboot", str(self.router_reboot)]
        key = lab_dir / WORKDIR / "id_ed25519"  # the lab hosts authorize it for root
        if self.lab_network:
            hosts = LabHosts(lab_dir).read_state()
            if hosts is None:
                raise LabError("the lab CloudStack on the lab network needs the lab hosts (and so their bridge): "
                               "start them first (`stackops lab up --hosts N`)")
            args += ["--host", hosts.gateway]
        return args + (["--ssh-key", str(key)] if key.exists() else [])


def running(lab_dir: Path) -> LabCloudStack | None:
    data = CloudStackComponent().running(lab_dir)
    if data is None:
        return None
    return LabCloudStack(data["endpoint"], data["baseUrl"], data["apiKey"], data["secretKey"], int(data["pid"]))
