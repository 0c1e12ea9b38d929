"""`make demo`'s release source: the lab's CloudStack-like repository served (by `stackops lab release-source` in
the background) on the lab hosts' bridge, where a lab host building a CloudStackRelease reaches it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stackops_lab.background import BackgroundSimulator
from stackops_lab.controlplane import LabError
from stackops_lab.hosts import LabHosts


class ReleaseSourceComponent(BackgroundSimulator):
    name = "release-source"
    module = "stackops_lab.release.cli"
    state = "release-source.json"

    def arguments(self, lab_dir: Path) -> list[str]:
        hosts = LabHosts(lab_dir).running()
        if not hosts:
            raise LabError("the release source needs the lab hosts (it serves on their bridge): start them first")
        return ["--directory", str(lab_dir / "release-source"), "--bind", hosts[0].gateway]


def running(lab_dir: Path) -> dict[str, Any] | None:
    return ReleaseSourceComponent().running(lab_dir)
