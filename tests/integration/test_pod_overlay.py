"""The lab installs the operator as users do: an overlay of deploy/ (or deploy/namespaced/) that changes the image
and nothing else, built by the lab's kubectl (1.20: kustomize v2.0) from a directory anywhere on the machine."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from stackops_lab import checkout, controlplane
from stackops_lab.checkout import DEPLOY, NAMESPACED
from stackops_lab.podoperator import overlay, split_reference


def kustomize(directory: Path) -> list[dict]:
    built = subprocess.run([str(controlplane.find_kubectl()), "kustomize", str(directory)], capture_output=True,
                           text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(built) if d]


@pytest.mark.parametrize("installation", [DEPLOY, NAMESPACED], ids=["deploy", "namespaced"])
def test_the_overlay_replaces_the_image_and_nothing_else(tmp_path: Path, installation: Path) -> None:
    shipped = kustomize(checkout.path(installation))
    built = kustomize(overlay(tmp_path / "somewhere" / "overlay", "localhost/stackops:0.1.0-lab.5e1f", installation))
    images = [c["image"] for d in built if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]]
    assert images == ["localhost/stackops:0.1.0-lab.5e1f"]
    for document in shipped:
        if document["kind"] == "Deployment":
            document["spec"]["template"]["spec"]["containers"][0]["image"] = images[0]
    assert built == shipped


def test_image_references() -> None:
    assert split_reference("localhost/stackops:0.1.0-lab.5e1f") == ("localhost/stackops", "0.1.0-lab.5e1f")
    assert split_reference("registry.example.com:5000/stackops") == ("registry.example.com:5000/stackops", "latest")
    assert split_reference("stackops") == ("stackops", "latest")
