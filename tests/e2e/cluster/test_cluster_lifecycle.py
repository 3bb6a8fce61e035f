"""cluster-up is idempotent and cluster-down leaves no process and no data behind.

Runs a second, throw-away cluster on its own ports and state folder, so the
session's cluster is untouched.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from vigil.devcluster.cluster import LocalCluster, pid_alive

# A second control plane: its start takes both cores for a minute (serial: see pyproject).
pytestmark = pytest.mark.serial


def free_port_base(span: int = 6) -> int:
    for base in range(27400, 28400, 100):  # one pod-network octet per hundred (network.pod_octet)
        ok = True
        for port in range(base, base + span):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise AssertionError("no free port range found in 27400-28400")


def test_up_reuses_a_healthy_cluster_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    cluster = LocalCluster(state_dir=state, port_base=free_port_base(), log=lambda _: None)
    try:
        kubeconfig = cluster.up()
        pids = json.loads((state / "state.json").read_text())["pids"]
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        nodes = cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
        assert nodes == ["node/kwok-node-0", "node/kwok-node-1"]

        assert cluster.up() == kubeconfig
        assert json.loads((state / "state.json").read_text())["pids"] == pids
    finally:
        cluster.down()
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not state.exists()
