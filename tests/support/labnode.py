"""A lab with a node (stackops_lab.node): the local control plane started for a node, and the node itself, as
`stackops lab up --node` starts them. One lab node runs on a machine at a time (its network namespace and the
machine's routes to the Services and Pods are the machine's), so a test module that needs one takes it for the
module (`running_lab_node`) and takes it down at its end."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stackops_lab import controlplane
from stackops_lab.node import Node, NodeComponent
from support.kube import Kube, kube_for


@dataclass(frozen=True)
class LabNode:
    lab_dir: Path
    kube: Kube
    node: Node
    cluster: controlplane.ClusterInfo


def progress(message: str) -> None:
    print(f"[lab] {message}", file=sys.__stderr__, flush=True)


def up(lab_dir: Path) -> LabNode:
    component = NodeComponent()
    cluster = controlplane.up(lab_dir, progress, provider="local", components=[component], serve_node=True)
    return LabNode(lab_dir, kube_for(cluster), component.node(lab_dir), cluster)


def down(lab_dir: Path) -> None:
    controlplane.down(lab_dir, progress, components=[NodeComponent()])


@contextmanager
def running_lab_node(lab_dir: Path) -> Iterator[LabNode]:
    try:
        yield up(lab_dir)
    finally:
        down(lab_dir)
