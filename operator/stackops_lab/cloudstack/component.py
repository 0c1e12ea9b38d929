"""`stackops lab up --cloudstack`: the lab CloudStack as a background process of the lab (`stackops lab
cloudstack`), recorded in the lab directory so `stackops lab down` stops it and manifests can point at it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from stackops_lab.cloudstack import images
from stackops_lab.hosts import WORKDIR

STATE = "cloudstack.json"
LOG = "cloudstack.log"


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


def running(lab_dir: Path) -> LabCloudStack | None:
    path = lab_dir / STATE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(data["pid"])):
        return None
    return LabCloudStack(data["endpoint"], data["baseUrl"], data["apiKey"], data["secretKey"], int(data["pid"]))


def _alive(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.startswith(b"stackops_lab.cloudstack") for part in command)


class CloudStackComponent:
    """Starts the simulator with the lab hosts' client key as its management key (so addHost can log in)."""

    name = "cloudstack"

    def __init__(self, *, routers: int = 200, redundant_pairs: int = 50, router_reboot: float = 3.0) -> None:
        self.routers = routers
        self.redundant_pairs = redundant_pairs
        self.router_reboot = router_reboot

    def start(self, lab_dir: Path, cluster: Any, progress: Callable[[str], None]) -> LabCloudStack:
        found = running(lab_dir)
        if found is not None:
            progress(f"the lab CloudStack already runs at {found.endpoint}")
            return found
        command = [sys.executable, "-m", "stackops_lab.cloudstack.cli", "--port", "0",
                   "--routers", str(self.routers), "--redundant-pairs", str(self.redundant_pairs),
                   "--router-reboot", str(self.router_reboot), "--state-file", str(lab_dir / STATE)]
        key = lab_dir / WORKDIR / "id_ed25519"  # the lab hosts authorize it for root
        if key.exists():
            command += ["--ssh-key", str(key)]
        log = open(lab_dir / LOG, "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("ready "):
            process.kill()
            raise RuntimeError(f"the lab CloudStack did not start; see {lab_dir / LOG}")
        deadline = time.monotonic() + 10
        while (found := running(lab_dir)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if found is None:
            raise RuntimeError(f"the lab CloudStack wrote no state file; see {lab_dir / LOG}")
        progress(f"lab CloudStack at {found.endpoint} ({self.routers} routers, log {lab_dir / LOG})")
        return found

    def stop(self, lab_dir: Path, progress: Callable[[str], None]) -> None:
        found = running(lab_dir)
        if found is None:
            return
        progress(f"stopping the lab CloudStack (pid {found.pid})")
        try:
            os.killpg(found.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while _alive(found.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(found.pid):
            os.killpg(found.pid, signal.SIGKILL)
