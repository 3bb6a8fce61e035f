"""Two clusters of one address octet: the second is refused before it writes anything, and a
node's teardown removes only the network and cgroups it recorded as made.

Port bases 26400 and 26410 both give octet 164: the second cluster's up failed in the
network check after writing its state, and its down then deleted the FIRST cluster's
namespace, link, cgroups (killing its pods) and CNI cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.devcluster import node as node_module
from vigil.devcluster.cluster import ClusterError, LocalCluster
from vigil.devcluster.network import NodeNetwork, pod_octet
from vigil.devcluster.node import RealNode

# Octets 116 and 117: no cluster of the suites or benchmarks (264xx-299xx) has them, nor the
# other unit tests (31500, octet 115), which this file's stand-in etcd would refuse.
BASE, SAME_OCTET, OTHER_OCTET = 31600, 31610, 31700


class _PastTheCheck(Exception):
    """up() went on to its port check."""


@pytest.fixture
def running_cluster(tmp_path: Path) -> Iterator[Path]:
    """A process that looks like another checkout's etcd (port base SAME_OCTET)."""
    other = tmp_path / "other-checkout" / ".vigil" / "cluster"
    etcd = subprocess.Popen(
        [
            str(tmp_path / "bin" / "etcd"),  # argv[0]: what /proc shows; python runs it
            "-c",
            "import time; time.sleep(60)",
            "--name=vigil",
            f"--data-dir={other}/etcd",
            f"--listen-client-urls=http://127.0.0.1:{SAME_OCTET}",
        ],
        executable=sys.executable,
    )
    deadline = time.monotonic() + 10
    cmdline = Path(f"/proc/{etcd.pid}/cmdline")
    while b"--name=vigil" not in cmdline.read_bytes():  # once it has exec'd
        assert time.monotonic() < deadline and etcd.poll() is None
        time.sleep(0.01)
    yield other
    etcd.kill()
    etcd.wait()


def test_bases_in_one_hundred_share_the_octet() -> None:
    assert pod_octet(BASE) == pod_octet(SAME_OCTET) == pod_octet(BASE + 10000)
    assert pod_octet(OTHER_OCTET) != pod_octet(BASE)


def _cluster(tmp_path: Path, base: int, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    cluster = LocalCluster(
        state_dir=tmp_path / "mine", bin_dir=tmp_path, port_base=base, real_node=True
    )

    def past() -> None:
        raise _PastTheCheck

    monkeypatch.setattr(cluster, "_check_ports_free", past)
    monkeypatch.setattr(node_module, "preflight", past)  # up's next step with a real node
    return cluster


def test_up_refuses_an_octet_a_running_cluster_has_naming_its_folder(
    running_cluster: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = _cluster(tmp_path, BASE, monkeypatch)
    with pytest.raises(ClusterError) as error:
        cluster.up()
    message = str(error.value)
    assert str(running_cluster) in message and f"(port base {SAME_OCTET})" in message
    assert "octet 116" in message and "VIGIL_CLUSTER_PORT_BASE" in message
    assert not (tmp_path / "mine").exists(), "up wrote its state before refusing"


def test_up_goes_on_beside_a_cluster_of_another_octet(
    running_cluster: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(_PastTheCheck):
        _cluster(tmp_path, OTHER_OCTET, monkeypatch).up()


class _Removals:
    """What a teardown removed of the machine's octet-named objects."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.done: list[str] = []
        monkeypatch.setattr(NodeNetwork, "delete", lambda net: self.done.append("network"))
        monkeypatch.setattr(RealNode, "_remove_cgroups", lambda node: self.done.append("cgroups"))
        monkeypatch.setattr(
            RealNode, "_kill_containers", lambda node: self.done.append("containers")
        )
        monkeypatch.setattr(
            RealNode,
            "_remove_machine_files",
            lambda node, cni_cache=True: self.done.append("cni cache" if cni_cache else "links"),
        )
        monkeypatch.setattr(RealNode, "_restore_kernel_tunables", lambda node: None)


def test_down_after_a_node_that_never_started_leaves_the_octets_network_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refused (or failed) second cluster: state with real_node, nothing made."""
    removals = _Removals(monkeypatch)
    state = tmp_path / "cluster"
    cluster = LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=SAME_OCTET)
    (state / "node").mkdir(parents=True)
    ports = {"etcd_client": SAME_OCTET, "etcd_peer": SAME_OCTET + 1, "apiserver": SAME_OCTET + 2}
    ports |= {"controller_manager": SAME_OCTET + 3, "scheduler": SAME_OCTET + 4}
    ports |= {"kwok": SAME_OCTET + 5}
    (state / "state.json").write_text(
        json.dumps({"pids": {}, "identities": {}, "ports": ports, "real_node": True})
    )
    cluster.down()
    assert removals.done == ["links"]
    assert not state.exists()


@pytest.mark.parametrize(
    ("record", "legacy", "removed"),
    [
        (None, False, ["links"]),  # nothing recorded: nothing made
        ([], False, ["links"]),
        (["network"], False, ["network", "cni cache"]),
        (["network", "cgroups"], False, ["containers", "network", "cgroups", "cni cache"]),
        # A node of a checkout that kept no record made all of it.
        (None, True, ["containers", "network", "cgroups", "cni cache"]),
    ],
)
def test_teardown_removes_what_the_node_recorded_as_made(
    record: list[str] | None,
    legacy: bool,
    removed: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    removals = _Removals(monkeypatch)
    node = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, port_base=BASE).node()
    node.dir.mkdir()
    if record is not None:
        (node.dir / "created.json").write_text(json.dumps(record))
    node.teardown({}, legacy=legacy)
    assert removals.done == removed


def test_the_node_records_each_object_before_making_it(tmp_path: Path) -> None:
    node = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, port_base=BASE).node()
    node.dir.mkdir()
    node._record_created()
    assert node._created(legacy=True) == set()
    node._record_created("network")
    node._record_created("cgroups")
    node._record_created("network")
    assert json.loads((node.dir / "created.json").read_text()) == ["cgroups", "network"]
