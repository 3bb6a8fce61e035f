"""The real node's pure parts: address plan, configurations, packages, image archives."""

from __future__ import annotations

import ipaddress
import os
import shutil
import threading
from pathlib import Path

import pytest

from vigil.devcluster import network as network_module
from vigil.devcluster import node as node_module
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.network import NodeNetwork
from vigil.devcluster.node import (
    EVICTION_FREE_PERCENT,
    GIB,
    NOT_ROOT,
    START_HEADROOM_BYTES,
    NodeError,
    RealNode,
    check_disk,
    preflight,
)
from vigil.devcluster.packages import NODE_PACKAGES, missing


class TestAddressPlan:
    def test_each_range_lies_in_the_clusters_own_16(self) -> None:
        net = NodeNetwork.for_port_base(25400)
        own = ipaddress.ip_network(net.cluster_range)
        assert own == ipaddress.ip_network("10.154.0.0/16")
        for inside in (net.pod_range, net.service_range):
            assert ipaddress.ip_network(inside).subnet_of(own)  # type: ignore[arg-type]
        for address in (net.node_ip, net.host_ip, net.link_node_ip, net.dns_service_ip):
            assert ipaddress.ip_address(address) in own

    def test_pods_services_and_the_link_do_not_overlap(self) -> None:
        net = NodeNetwork.for_port_base(26400)
        link = ipaddress.ip_network(f"{net.host_ip}/{net.link_prefix}", strict=False)
        ranges = [ipaddress.ip_network(r) for r in (net.pod_range, net.service_range)] + [link]
        for index, first in enumerate(ranges):
            for second in ranges[index + 1 :]:
                assert not first.overlaps(second)
        assert ipaddress.ip_address(net.kubernetes_service_ip) in ranges[1]
        assert ipaddress.ip_address(net.dns_service_ip) in ranges[1]

    def test_two_clusters_a_hundred_ports_apart_share_nothing(self) -> None:
        first, second = NodeNetwork.for_port_base(25400), NodeNetwork.for_port_base(25500)
        assert not ipaddress.ip_network(first.cluster_range).overlaps(
            ipaddress.ip_network(second.cluster_range)
        )
        assert first.netns != second.netns and first.host_link != second.host_link
        assert len(first.host_link) <= 15  # the kernel's limit for link names


@pytest.fixture
def real_node(tmp_path: Path) -> RealNode:
    return LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, real_node=True).node()


def test_pods_get_no_default_route_and_no_masquerading(real_node: RealNode) -> None:
    (bridge,) = real_node._cni()["plugins"]  # type: ignore[misc]
    assert bridge["ipMasq"] is False
    assert bridge["isGateway"] is False and bridge["isDefaultGateway"] is False
    routes = bridge["ipam"]["routes"]
    assert routes == [{"dst": real_node.network.service_range, "gw": real_node.network.node_ip}]
    assert str(real_node.dir) in bridge["ipam"]["dataDir"]


def test_kubelet_authenticates_callers_and_asks_the_api_server(real_node: RealNode) -> None:
    config = real_node._kubelet_config()
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True, "cacheTTL": "30s"},
        "x509": {"clientCAFile": str(real_node.cluster.pki_dir / "ca.crt")},
    }
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["readOnlyPort"] == 0
    assert config["clusterDNS"] == [real_node.network.dns_service_ip]
    assert config["cgroupRoot"] == f"/vigil-{real_node.network.octet}"
    assert str(config["containerRuntimeEndpoint"]).endswith("containerd/containerd.sock")


def test_the_api_server_authorizes_nodes_and_calls_kubelet_with_a_certificate(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, real_node=True)
    args = cluster._apiserver_args(tmp_path)
    assert "--authorization-mode=Node,RBAC" in args
    plugins = next(a for a in args if a.startswith("--enable-admission-plugins="))
    # NodeRestriction for kubelet; the other two pin annotated namespaces to the real node.
    assert set(plugins.split("=")[1].split(",")) == {
        "NodeRestriction",
        "PodNodeSelector",
        "PodTolerationRestriction",
    }
    assert f"--advertise-address={cluster.network.host_ip}" in args
    assert any(a.startswith("--kubelet-client-certificate=") for a in args)
    assert f"--service-cluster-ip-range={cluster.network.service_range}" in args
    kwok_only = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path)._apiserver_args(tmp_path)
    assert "--advertise-address=127.0.0.1" in kwok_only


def test_without_root_the_node_stops_at_once_and_points_to_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_module.os, "geteuid", lambda: 1000)
    with pytest.raises(NodeError) as error:
        preflight()
    assert str(error.value) == NOT_ROOT
    assert "needs root" in NOT_ROOT and "make kind-up" in NOT_ROOT


def test_listing_the_nodes_cgroups_survives_cgroups_vanishing_meanwhile(
    real_node: RealNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At teardown the runtime removes exited containers' cgroups while the node lists them."""
    mount = tmp_path / "cpuacct"
    root = mount / real_node.cgroup_root.lstrip("/")
    pods = root / "kubepods" / "burstable"
    pods.mkdir(parents=True)
    monkeypatch.setattr(node_module, "_cgroup_mounts", lambda controller=None: iter([mount]))
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for pod in range(4):
                (pods / f"pod{pod}" / "container" / "sub").mkdir(parents=True, exist_ok=True)
                shutil.rmtree(pods / f"pod{pod}", ignore_errors=True)

    remover = threading.Thread(target=churn, daemon=True)
    remover.start()
    try:
        # pathlib's rglob failed about 1 in 20 of these: 300 miss it with odds 0.95^300 ~ 2e-7.
        for _ in range(300):
            listed = real_node._cgroup_dirs()
            assert listed[-1] == root and pods in listed
    finally:
        stop.set()
        remover.join()
    assert real_node._cgroup_dirs() == [pods, pods.parent, root]


def _mounted(monkeypatch: pytest.MonkeyPatch, *mounts: Path) -> None:
    monkeypatch.setattr(node_module, "_cgroup_mounts", lambda controller=None: iter(mounts))


def _new_cgroup(root: Path, name: str) -> Path:
    """What mkdir makes in a cpuset hierarchy (v1 or v2): empty cpuset files."""
    cgroup = root / name.lstrip("/")
    cgroup.mkdir()
    for file in ("cpuset.cpus", "cpuset.mems"):
        (cgroup / file).write_text("\n")
    return cgroup


def test_on_cgroup_v2_the_nodes_cgroup_inherits_its_cpus(
    real_node: RealNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cgroup v2 root (Debian 12's only hierarchy) has no cpuset.cpus: the node failed to
    start, every time, on reading it."""
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cpuset.cpus.effective").write_text("0-1\n")
    (root / "cpuset.mems.effective").write_text("0\n")
    cgroup = _new_cgroup(root, real_node.cgroup_root)
    _mounted(monkeypatch, root)
    real_node._make_cgroup_root()
    assert (cgroup / "cpuset.cpus").read_text().strip() == ""  # empty: the parent's
    assert not (root / "cpuset.cpus").exists()


def test_on_a_cgroup_v1_cpuset_hierarchy_the_nodes_cgroup_gets_the_roots_cpus(
    real_node: RealNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpuset, memory = tmp_path / "cpuset", tmp_path / "memory"
    cpuset.mkdir()
    memory.mkdir()
    (cpuset / "cpuset.cpus").write_text("0-1\n")
    (cpuset / "cpuset.mems").write_text("0\n")
    cgroup = _new_cgroup(cpuset, real_node.cgroup_root)
    _mounted(monkeypatch, cpuset, memory)
    real_node._make_cgroup_root()
    assert (cgroup / "cpuset.cpus").read_text() == "0-1\n"
    assert (cgroup / "cpuset.mems").read_text() == "0\n"
    assert (memory / real_node.cgroup_root.lstrip("/")).is_dir()


def test_a_cgroup_the_node_cannot_make_is_one_line_not_a_traceback(
    real_node: RealNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "unmounted"
    _mounted(monkeypatch, gone)
    with pytest.raises(NodeError) as error:
        real_node._make_cgroup_root()
    said = str(error.value)
    assert said.startswith(f"cannot make the node's cgroup {gone / real_node.cgroup_root[1:]}")
    assert "No such file or directory" in said and "\n" not in said


def test_missing_names_each_package_once(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_text("")
    wanted = {
        str(present): "here",
        str(tmp_path / "absent-a"): "pkg-a",
        str(tmp_path / "absent-b"): "pkg-a",
        "no-such-command-vigil": "pkg-b",
    }
    assert missing(wanted) == ["pkg-a", "pkg-b"]


def test_every_command_the_nodes_network_runs_comes_with_its_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine without procps had no sysctl: the node failed midway, naming no package."""
    commands: list[list[str]] = []

    def run(args: list[str], what: str) -> str:
        commands.append(list(args))
        return ""

    monkeypatch.setattr(network_module, "_run", run)
    NodeNetwork.for_port_base(25400)._wire()
    programs = {args[0] for args in commands}
    programs |= {args[args.index("--") + 1] for args in commands if args[0] == "nsenter"}
    assert {"ip", "nsenter", "sysctl", "iptables"} <= programs
    assert programs <= set(NODE_PACKAGES)
    assert NODE_PACKAGES["sysctl"] == "procps"


class _Stat:
    """What os.statvfs says: a file system of ``size`` GiB with ``free`` GiB free."""

    def __init__(self, size: float, free: float) -> None:
        self.f_frsize = 4096
        self.f_blocks = int(size * GIB / 4096)
        self.f_bavail = int(free * GIB / 4096)


def test_a_disk_near_the_kubelets_eviction_threshold_is_refused_with_the_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A 252 GiB file system with 7.6 GiB free: above the kubelet's 2 % (5.0 GiB), but not by
    # the images' worth; the node would turn DiskPressure once they are in and run no pod.
    monkeypatch.setattr(os, "statvfs", lambda path: _Stat(252, 7.6))
    with pytest.raises(NodeError) as error:
        check_disk(tmp_path, START_HEADROOM_BYTES)
    assert str(error.value) == (
        f"7.6 GiB free on the file system of {tmp_path}: the real node's kubelet stops every "
        "pod below 5.0 GiB (2 % of 252 GiB) and the node needs 3 GiB above that: free some "
        "space (old clones, caches) and retry"
    )
    monkeypatch.setattr(os, "statvfs", lambda path: _Stat(252, 9.0))
    check_disk(tmp_path, START_HEADROOM_BYTES)


def test_the_threshold_checked_is_the_one_the_kubelet_evicts_at(real_node: RealNode) -> None:
    eviction = real_node._kubelet_config()["evictionHard"]
    assert eviction["nodefs.available"] == eviction["imagefs.available"] == "2%"
    assert EVICTION_FREE_PERCENT == 2
