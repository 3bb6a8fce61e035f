"""A second local cluster with a real node beside the session's: up, reuse, down.

Its own ports, state folder and address octet; the session's cluster (and
its real node, if it has one) must not notice. ``down`` must leave nothing
on the machine: what the node made (processes, mounts, links, routes,
network namespace, iptables chains, cgroups, containerd's and kubelet's
files outside the state folder, kernel tunables) is listed before ``up``
and after ``down``, and the lists must be equal.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from test_real_node import KEY, SERVICE, VALUE, get_from_host, run_pods, web_pod

from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster, pid_alive
from vigil.devcluster.network import NetworkError, NodeNetwork, pod_octet
from vigil.devcluster.node import KERNEL_TUNABLES, NODE_NAME
from vigil.devcluster.node_images import BUSYBOX_PAGE, busybox_image

# Lists host-wide state (mounts, cgroups, links, iptables) before up and after down:
# other tests' pods would change those lists (serial: see pyproject).
pytestmark = pytest.mark.serial


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_real_node_port_base() -> int:
    """Ports free on 127.0.0.1 and an address octet no other cluster's node uses."""
    for base in range(27500, 29900, 100):
        if Path(f"/run/netns/vigil-{pod_octet(base)}").exists():
            continue
        with socket.socket() as probe:
            taken = any(
                probe.connect_ex(("127.0.0.1", port)) == 0 for port in range(base, base + 6)
            )
        if not taken:
            return base
    raise AssertionError("no free port base with a free address octet in 27500-29900")


def _lines(*command: str) -> list[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.stdout.splitlines()


def footprint(state_dir: Path, octet: int, pids: set[int]) -> dict[str, object]:
    """Everything of the cluster's real node that could stay on the machine."""
    state = str(state_dir.resolve())
    marker = f"10.{octet}."
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if state in cmdline or int(entry.name) in pids:
                processes.append(f"{entry.name} {cmdline[:120]}")
    cgroups = sorted(
        str(path)
        for mount in Path("/sys/fs/cgroup").iterdir()
        for path in mount.glob(f"vigil-{octet}")
    )
    log_links = [
        str(link)
        for link in Path("/var/log/containers").glob("*")
        if link.is_symlink() and os.readlink(link).startswith(state)
    ]
    return {
        "processes": processes,
        "mounts": [
            line
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if state in line or f"vigil-{octet}" in line
        ],
        "links": [line for line in _lines("ip", "-o", "link") if f"vigil{octet}" in line],
        "routes": [
            line for line in _lines("ip", "route", "show", "table", "all") if marker in line
        ],
        "network namespaces": [n for n in _lines("ip", "netns", "list") if f"vigil-{octet}" in n],
        "iptables": [
            line for line in _lines("iptables-save") if line.startswith(":KUBE-") or marker in line
        ],
        "cgroups": cgroups,
        "state folder": state_dir.exists(),
        "cni cache": sorted(str(p) for p in Path("/var/lib/cni/results").glob(f"vigil-{octet}-*")),
        "container log links": log_links,
        "kernel tunables": {
            name: (Path("/proc/sys") / name).read_text().strip() for name in KERNEL_TUNABLES
        },
    }


def test_a_second_real_node_cluster_comes_up_beside_and_leaves_nothing(
    cluster: ClusterClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = free_real_node_port_base()
    octet = pod_octet(base)
    state = tmp_path_factory.mktemp("rn") / "cluster"
    before = footprint(state, octet, set())
    second = LocalCluster(
        state_dir=state, port_base=base, nodes=1, real_node=True, log=lambda _: None
    )
    shim_sockets: list[Path] = []
    container_pids: set[int] = set()
    try:
        second.up()
        pids = json.loads((state / "state.json").read_text())["pids"]
        assert second.up() == second.kubeconfig  # reused: nothing restarted
        assert json.loads((state / "state.json").read_text())["pids"] == pids

        client = second.client()
        client.kubectl("create", "namespace", "lifecycle")
        archive = busybox_image()
        second.node().load_images([archive])
        client.apply(SERVICE, namespace="lifecycle")
        run_pods(client, "lifecycle", web_pod(archive.ref))
        service_ip = client.get_json("service", "web", "-n", "lifecycle")["spec"]["clusterIP"]
        assert ipaddress.ip_address(service_ip) in ipaddress.ip_network(
            second.network.service_range
        )
        assert get_from_host(f"http://{service_ip}/") == BUSYBOX_PAGE
        container_pids = second.node().container_pids()
        assert container_pids
        shim_sockets = second.node()._shim_sockets()
        assert shim_sockets and all(path.exists() for path in shim_sockets)
        during = footprint(state, octet, container_pids)
        assert during["network namespaces"] and during["cgroups"] and during["mounts"]
        assert during["iptables"] == before["iptables"], "kube-proxy wrote the machine's rules"
    finally:
        second.down()
    after = footprint(state, octet, container_pids)
    assert after == before
    assert not any(pid_alive(pid) for pid in container_pids)
    assert not any(path.exists() for path in shim_sockets)

    # The session's cluster did not notice (its own node, if it has one, is still Ready).
    nodes = cluster.get_json("nodes")["items"]
    for node in nodes:
        if node["metadata"]["name"] == NODE_NAME:
            ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
            assert ready == "True"
            assert node["metadata"]["labels"][KEY] == VALUE


def test_a_killed_clusters_empty_namespace_is_reclaimed_and_a_live_one_refused() -> None:
    """A session killed mid-run leaves its node's namespace with nothing in it: the
    next cluster with that octet takes it over; one with a process inside is live."""
    network = NodeNetwork.for_port_base(free_real_node_port_base())
    subprocess.run(["ip", "netns", "add", network.netns], check=True)
    try:
        # It says so once inside: checked before that, the namespace is still empty and
        # is (rightly) reclaimed under the process about to enter it.
        inside = "echo inside; exec sleep 60"
        resident = subprocess.Popen(
            ["ip", "netns", "exec", network.netns, "sh", "-c", inside],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert resident.stdout is not None and resident.stdout.readline() == "inside\n"
            with pytest.raises(NetworkError, match="processes run in it"):
                network.check_free()
        finally:
            resident.kill()
            resident.wait()
        network.check_free()
        assert not network.netns_path.exists()
        assert network.leftovers() == []
    finally:
        network.delete()
