"""The lab node's configuration (stackops_lab.node): everything of its containerd and kubelet under the lab's
directory, never the machine's own containerd; address ranges apart from the lab hosts' and the Services'."""
from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

from stackops_lab import controlplane, node


def a_node(tmp_path: Path) -> node.Node:
    return node.Node(tmp_path / "lab" / "node", controlplane.LocalControlPlane(tmp_path / "lab" / "controlplane",
                                                                               serve_node=True))


def test_containerd_keeps_everything_under_the_lab_directory(tmp_path: Path) -> None:
    lab_node = a_node(tmp_path)
    config = tomllib.loads(lab_node.write_containerd_config().read_text())
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    runc = cri["containerd"]["runtimes"]["runc"]
    paths = [config["root"], config["state"], config["grpc"]["address"], config["ttrpc"]["address"],
             config["debug"]["address"], config["plugins"]["io.containerd.internal.v1.opt"]["path"],
             runc["options"]["Root"], cri["cni"]["conf_dir"]]
    assert all(Path(path).is_relative_to(lab_node.workdir) for path in paths), paths
    assert config["grpc"]["address"] == str(lab_node.containerd_socket)
    assert cri["sandbox_image"] == node.PAUSE_IMAGE
    assert cri["netns_mounts_under_state_dir"] is True  # Pods' network namespaces unmounted with the lab
    assert cri["restrict_oom_score_adj"] is True
    assert runc["options"]["SystemdCgroup"] is False


def test_kubelet_runs_on_the_lab_containerd_and_never_evicts_nor_deletes_images(tmp_path: Path) -> None:
    lab_node = a_node(tmp_path)
    pki = controlplane.pki_in(tmp_path / "pki")
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in
                 lab_node.kubelet_command(Path("/x/kubelet"), tmp_path / "k", pki)[1:])
    assert flags["container-runtime-endpoint"] == f"unix://{lab_node.containerd_socket}"
    assert Path(flags["root-dir"]).is_relative_to(lab_node.workdir)
    assert Path(flags["volume-plugin-dir"]).is_relative_to(lab_node.workdir)
    assert flags["cgroup-driver"] == "cgroupfs" and flags["fail-swap-on"] == "false"
    assert flags["pod-infra-container-image"] == node.PAUSE_IMAGE
    assert flags["image-gc-high-threshold"] == "100"
    assert flags["anonymous-auth"] == "false" and flags["authorization-mode"] == "Webhook"


def test_pod_addresses_are_apart_from_the_lab_hosts_services_and_the_node_link(tmp_path: Path) -> None:
    lab_node = a_node(tmp_path)
    lab_node.write_cni_config()
    (conflist,) = (lab_node.workdir / "cni" / "net.d").iterdir()
    bridge = json.loads(conflist.read_text())["plugins"][0]
    assert bridge["ipMasq"] is True
    subnet = ipaddress.ip_network(bridge["ipam"]["ranges"][0][0]["subnet"])
    assert subnet.subnet_of(ipaddress.ip_network(node.CLUSTER_CIDR))  # type: ignore[arg-type]
    link = ipaddress.ip_network(f"{node.NODE_ADDRESS}/{node.LINK_PREFIX}", strict=False)
    others = ["10.250.0.0/16", "10.251.0.0/16", controlplane.SERVICE_CLUSTER_IP_RANGE, str(link)]
    assert not any(ipaddress.ip_network(node.CLUSTER_CIDR).overlaps(ipaddress.ip_network(o)) for o in others)
