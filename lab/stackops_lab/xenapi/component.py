"""`stackops lab up --xen`: the lab XenServer hosts (the XenAPI simulator) as a background process of the lab:
three hosts on loopback, two of them a pool and the third a fresh install ready to join. With `tls`, HTTPS with
certificates of a lab CA: `running()` then has `ca_pem` (the CA certificate, PEM; None without TLS) and `tls`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stackops_lab.background import BackgroundSimulator


class XenComponent(BackgroundSimulator):
    name = "xenapi"
    module = "stackops_lab.xenapi.cli"
    state = "xenapi.json"

    def __init__(self, *, hosts: int = 3, pool_size: int = 2, tls: bool = False) -> None:
        self.hosts = hosts
        self.pool_size = pool_size
        self.tls = tls

    def arguments(self, lab_dir: Path) -> list[str]:
        return ["--port", "0", "--hosts", str(self.hosts), "--pool-size", str(self.pool_size),
                *(["--tls"] if self.tls else [])]


def running(lab_dir: Path) -> dict[str, Any] | None:
    return XenComponent().running(lab_dir)
