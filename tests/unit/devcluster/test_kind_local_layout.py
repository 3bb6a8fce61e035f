"""The kind path built here (hack/kind/local.sh): its files agree with each other.

The address plan and the image versions live in kind_node.py, the cluster's
kind configuration (hack/kind/local-cluster.yaml), the CNI configuration
baked into the node image and the scripts; a change in one place only would
give a node whose pods never get addresses or a kubeadm that asks for images
the node does not hold, found only minutes into a cluster start.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import yaml_kit
from vigil.devcluster import kind_node

ROOT = Path(__file__).resolve().parents[3]
KIND = ROOT / "hack" / "kind"


def _cluster_config() -> dict[str, object]:
    return yaml_kit.load((KIND / "local-cluster.yaml").read_text())


def test_cluster_ranges_are_the_node_images() -> None:
    networking = _cluster_config()["networking"]
    assert isinstance(networking, dict)
    assert networking["podSubnet"] == kind_node.POD_RANGE
    assert networking["serviceSubnet"] == kind_node.SERVICE_RANGE
    # The bridge's one subnet is the controller manager's first podCIDR.
    assert ipaddress.ip_network(kind_node.POD_SUBNET).subnet_of(
        ipaddress.ip_network(kind_node.POD_RANGE)
    )
    assert networking["disableDefaultCNI"] is True


def test_ranges_stay_clear_of_the_local_clusters() -> None:
    # network.py gives local clusters 10.100.0.0/16 to 10.199.0.0/16.
    for cidr in (kind_node.NODE_RANGE, kind_node.POD_RANGE, kind_node.SERVICE_RANGE):
        assert not 100 <= int(cidr.split(".")[1]) <= 199, cidr


def test_kubeadm_asks_for_the_images_the_node_holds() -> None:
    patches = "\n".join(_cluster_config()["kubeadmConfigPatches"])  # type: ignore[arg-type]
    assert "imageRepository: vigil.local" in patches
    assert f"imageTag: {kind_node.ETCD_VERSION}" in patches
    assert f"imageTag: {kind_node.COREDNS_VERSION}" in patches
    build = (ROOT / "hack" / "build-cluster.sh").read_text()
    assert f"ETCD_VERSION={kind_node.ETCD_VERSION}" in build
    assert f"COREDNS_VERSION={kind_node.COREDNS_VERSION}" in build


def test_cni_configuration_has_no_default_route_and_no_masquerading() -> None:
    text = (KIND / "node" / "10-vigil-bridge.conflist").read_text()
    for placeholder in re.findall(r"@[A-Z_]+@", text):
        text = text.replace(placeholder, "10.0.0.0/8")
    (bridge,) = json.loads(text)["plugins"]
    assert bridge["ipMasq"] is False
    routes = [route["dst"] for route in bridge["ipam"]["routes"]]
    assert "0.0.0.0/0" not in routes and len(routes) == 3


def test_scripts_use_the_same_network() -> None:
    local = (KIND / "local.sh").read_text()
    assert f"subnet={kind_node.NODE_RANGE}" in local
    assert "--internal" in local and "enable_ip_masquerade=false" in local
    assert kind_node.SERVICE_RANGE in (KIND / "e2e.sh").read_text()
