"""`stackops lab up --cloudstack`: the lab CloudStack as a background process of the lab, recorded in the lab
directory so `stackops lab down` stops it and manifests can point at it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stackops_lab.background import BackgroundSimulator
from stackops_lab.cloudstack import images
from stackops_lab.hosts import WORKDIR


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
    """The simulator with the lab hosts' client key as its management key (so addHost can log in)."""

    name = "cloudstack"
    module = "stackops_lab.cloudstack.cli"
    state = "cloudstack.json"

    def __init__(self, *, routers: int = 200, redundant_pairs: int | None = None, router_reboot: float = 3.0) -> None:
        self.routers = routers
        self.redundant_pairs = routers // 4 if redundant_pairs is None else redundant_pairs  # half the routers paired
        self.router_reboot = router_reboot

    def arguments(self, lab_dir: Path) -> list[str]:
        args = ["--port", "0", "--routers", str(self.routers), "--redundant-pairs", str(self.redundant_pairs),
                "--router-reboot", str(self.router_reboot)]
        key = lab_dir / WORKDIR / "id_ed25519"  # the lab hosts authorize it for root
        return args + (["--ssh-key", str(key)] if key.exists() else [])


def running(lab_dir: Path) -> LabCloudStack | None:
    data = CloudStackComponent().running(lab_dir)
    if data is None:
        return None
    return LabCloudStack(data["endpoint"], data["baseUrl"], data["apiKey"], data["secretKey"], int(data["pid"]))
