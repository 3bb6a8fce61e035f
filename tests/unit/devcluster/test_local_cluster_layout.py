"""The local cluster's pure parts: ports, node manifests, kubeconfigs."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from vigil.devcluster.cluster import (
    ClusterError,
    LocalCluster,
    Ports,
    cluster_endpoint,
    write_kubeconfig,
)


def test_ports_are_consecutive_from_the_base() -> None:
    ports = Ports.from_base(30000)
    assert ports.etcd_client == 30000 and ports.kwok == 30005
    assert sorted(p for ps in ports.by_component().values() for p in ps) == list(
        range(30000, 30006)
    )


def test_the_demos_prometheus_follows_the_port_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two demos at two port bases never share (and so never reuse) one Prometheus."""
    from vigil.devcluster.demo import Demo

    monkeypatch.setenv("VIGIL_CLUSTER_PORT_BASE", "25600")
    assert Demo().prometheus_port == 25691
    monkeypatch.delenv("VIGIL_CLUSTER_PORT_BASE")
    assert Demo().prometheus_port == 26491
    assert 26491 not in range(26400, 26406)


def test_each_node_has_its_own_loopback_pod_cidr(tmp_path: Path) -> None:
    nodes = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, nodes=3).node_manifests()
    cidrs = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]  # type: ignore[index]
    assert len(set(cidrs)) == 3
    assert all(c.network_address.is_loopback for c in cidrs)
    assert all(
        n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"  # type: ignore[index]
        for n in nodes
    )


def test_kubeconfig_round_trips_server_and_ca(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    write_kubeconfig(path, "https://127.0.0.1:1", "Q0E=", "tok", "me")
    assert cluster_endpoint(path) == ("https://127.0.0.1:1", "Q0E=")
    assert path.stat().st_mode & 0o077 == 0


def test_a_taken_port_names_the_component(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cluster = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, port_base=port - 2)
        with pytest.raises(ClusterError, match=rf"kube-apiserver needs 127.0.0.1:{port}"):
            cluster._check_ports_free()


@pytest.mark.slow
def test_a_component_that_dies_at_start_names_itself_and_its_log(tmp_path: Path) -> None:
    cluster = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path)
    cluster.logs_dir.mkdir(parents=True)
    pid = cluster._start("etcd", ["sh", "-c", "echo 'bind: address already in use'; exit 3"])
    with pytest.raises(ClusterError) as error:
        cluster._wait("etcd", pid, lambda: False, timeout=10)
    message = str(error.value)
    assert "etcd exited during start" in message
    assert str(cluster.logs_dir / "etcd.log") in message
    assert "address already in use" in message


def test_down_leaves_no_state_behind(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    cluster = LocalCluster(state_dir=state, bin_dir=tmp_path)
    state.mkdir()
    (state / "state.json").write_text('{"pids": {}, "ports": {}}')
    cluster.down()
    assert not state.exists()
