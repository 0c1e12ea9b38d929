"""`stackops lab up --xen`: the lab XenServer hosts (the XenAPI simulator) as a background process of the lab:
three hosts on loopback, two of them a pool and the third a fresh install ready to join. With `tls`, HTTPS with
certificates of a lab CA: `running()` then has `ca_pem` (the CA certificate, PEM; None without TLS) and `tls`. With
`lab_network`, the hosts listen on addresses of the machine on the lab hosts' bridge (LabHosts.machine_addresses)
instead: where an operator Pod on the lab's node reaches them, as it reaches real XenServer hosts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stackops_lab.background import BackgroundSimulator
from stackops_lab.hosts import LabHosts


class XenComponent(BackgroundSimulator):
    name = "xenapi"
    module = "stackops_lab.xenapi.cli"
    state = "xenapi.json"

    def __init__(self, *, hosts: int = 3, pool_size: int = 2, tls: bool = False, lab_network: bool = False) -> None:
        self.hosts = hosts
        self.pool_size = pool_size
        self.tls = tls
        self.lab_network = lab_network

    def arguments(self, lab_dir: Path) -> list[str]:
        address = LabHosts(lab_dir).machine_addresses(self.hosts)[:1] if self.lab_network else []
        return ["--port", "0", "--hosts", str(self.hosts), "--pool-size", str(self.pool_size),
                *(["--tls"] if self.tls else []), *(["--address", *address] if address else [])]


def running(lab_dir: Path) -> dict[str, Any] | None:
    return XenComponent().running(lab_dir)
