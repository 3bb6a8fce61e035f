"""Clean-up signals only the processes a state file recorded, never a pid's next owner.

After a reboot ``.vigil/cluster/state.json`` and ``.vigil/demo/state.json`` remain
and their pids belong to other programs; ``down`` and the demo's restart ran as
root and sent them SIGTERM, then SIGKILL (the demo to the whole process group).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.common import Recorded, command_line, pid_alive, process_identity
from vigil.devcluster.demo import stop_processes

# A free octet and ports (the session's cluster and the benchmarks use 264xx-270xx).
PORT_BASE = 31500  # octet 115: no cluster of the suites or benchmarks (264xx-299xx) has it


#: A process of one's own with more arguments (one process: a shell's child would outlive it).
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process of someone else's that happens to have a recorded pid (its own group)."""
    process = _started(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _started(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """The process, once exec'd: Popen may return while the child's /proc still shows
    this process's command line (a recorded process is found long after its start)."""
    process = subprocess.Popen(command, **options)
    deadline = time.monotonic() + 10
    while command_line(process.pid).split() != " ".join(command).split():
        assert time.monotonic() < deadline, f"{command} never started"
        time.sleep(0.01)
    return process


def _write_state(folder: Path, pids: dict[str, int], **extra: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps({"pids": pids, **extra}))


def _another_boots(identity: str | None) -> str:
    """The identity a process of the same pid had before a reboot."""
    assert identity is not None
    return f"00000000-0000-0000-0000-000000000000:{identity.rsplit(':', 1)[1]}"


def test_a_process_identity_is_its_boot_and_start_time() -> None:
    identity = process_identity(os.getpid())
    assert identity is not None
    boot, start = identity.rsplit(":", 1)
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert int(start) == int(stat.rsplit(")", 1)[1].split()[19])  # field 22
    assert process_identity(2**22 + 1) is None  # above any pid_max: no such process


def test_the_identity_is_read_past_a_command_name_with_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) (b c"
    odd.symlink_to("/bin/sleep")
    process = subprocess.Popen([str(odd), "60"])
    try:
        for _ in range(100):  # until exec has renamed it
            if "a) (b c" in Path(f"/proc/{process.pid}/stat").read_text():
                break
            time.sleep(0.01)
        identity = process_identity(process.pid)
        assert identity is not None and identity.rsplit(":", 1)[1].isdigit()
        assert Recorded(process.pid, identity, "").is_ours()
    finally:
        process.kill()
        process.wait()


def test_cluster_down_leaves_a_pid_that_is_another_process_now_alone(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    state = tmp_path / "cluster"
    identity = _another_boots(process_identity(stranger.pid))
    _write_state(state, {"etcd": stranger.pid}, identities={"etcd": identity})
    said: list[str] = []
    LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=said.append).down()
    assert stranger.poll() is None, "down killed a process that only had a recorded pid"
    assert not state.exists()
    assert any(f"pid {stranger.pid} belongs to another process" in line for line in said)


def test_cluster_down_of_an_older_state_stops_only_what_names_its_folder(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    """A state file from before identities: the command line must name the state folder;
    the API server's forwarder then named none (left running, it would hold the API
    server's address from every later cluster) and is known by its module."""
    state = tmp_path / "cluster"
    state.mkdir()
    ours = [
        _started([*SLEEPER, f"{state.resolve()}/etcd"]),
        _started([*SLEEPER, "vigil.devcluster.forward", "10.164.0.1", "26401"]),
    ]
    try:
        pids = {"etcd": ours[0].pid, "kube-apiserver-forward": ours[1].pid}
        _write_state(state, {**pids, "kwok": stranger.pid})
        LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=print).down()
        assert [process.wait(timeout=15) is not None for process in ours] == [True, True]
        assert stranger.poll() is None
    finally:
        for process in ours:
            process.kill()
            process.wait()


def test_cluster_down_stops_the_recorded_process(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    process = subprocess.Popen(["sleep", "60"])
    try:
        identity = process_identity(process.pid)
        _write_state(state, {"etcd": process.pid}, identities={"etcd": identity})
        LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=print).down()
        assert process.wait(timeout=15) is not None
    finally:
        process.kill()
        process.wait()


def test_a_started_component_is_recorded_with_its_identity(tmp_path: Path) -> None:
    cluster = LocalCluster(state_dir=tmp_path, bin_dir=tmp_path, port_base=PORT_BASE, log=print)
    cluster.logs_dir.mkdir(parents=True)
    pid = cluster._start("etcd", ["sleep", "60"])
    recorded = Recorded.now(pid, "")
    try:
        cluster._write_state({"etcd": pid})
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["pids"] == {"etcd": pid}
        assert state["identities"] == {"etcd": recorded.identity}
        cluster._stop("etcd", cluster._recorded(state)["etcd"])
        assert not pid_alive(pid)
    finally:
        recorded.signal(signal.SIGKILL)


def test_the_demo_leaves_a_reused_pid_and_its_group_alone(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    identity = _another_boots(process_identity(stranger.pid))
    _write_state(tmp_path, {"prometheus": stranger.pid}, identities={"prometheus": identity})
    stop_processes(tmp_path, say=print)
    assert stranger.poll() is None, "the demo killed a process group that only had its pid"
    assert not (tmp_path / "state.json").exists()


def test_the_demo_stops_its_own_previous_prometheus(tmp_path: Path) -> None:
    # An older state file (no identity): it is the demo's as its arguments name the folder.
    process = _started(
        [*SLEEPER, f"--config.file={tmp_path.resolve()}/prometheus/prometheus.yml"],
        start_new_session=True,
    )
    try:
        _write_state(tmp_path, {"prometheus": process.pid})
        stop_processes(tmp_path, say=print)
        assert process.wait(timeout=15) is not None
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_an_orphaned_api_server_forwarder_names_its_folder_and_goes_with_down(
    tmp_path: Path,
) -> None:
    """A forwarder left by a kill during up held its address, so every later one failed to
    bind; down's sweep finds processes by the state folder in their arguments."""
    state = tmp_path / "cluster"
    state.mkdir()
    cluster = LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, real_node=True)
    args = cluster.node()._forward_args()
    assert str(state.resolve()) in args
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args[3:5] = ["127.0.0.2", str(port)]  # a loopback address instead of the node link's
    forwarder = subprocess.Popen(args)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert forwarder.poll() is None, "the forwarder refused its arguments"
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.2", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the forwarder never listened")
        cluster.down()
        assert forwarder.wait(timeout=15) is not None
    finally:
        forwarder.kill()
        forwarder.wait()


def test_a_leftover_private_dockerd_is_stopped_and_the_machines_own_left_alone(
    tmp_path: Path,
) -> None:
    """The image builds' dockerd left by a kill is named in its pidfile; a pidfile's pid can
    be the machine's own Docker daemon's by now (same command name)."""
    from vigil.devcluster.engine import _stop_leftover

    dockerd = tmp_path / "dockerd"
    dockerd.symlink_to("/bin/sleep")
    pidfile = tmp_path / "dockerd.pid"
    machines = _started([str(dockerd), "60"])
    ours = _started([*SLEEPER, f"--pidfile={pidfile}"])
    try:
        pidfile.write_text(f"{machines.pid}\n")
        _stop_leftover(pidfile)
        assert machines.poll() is None, "another dockerd was stopped through our pidfile"
        pidfile.write_text(f"{ours.pid}\n")
        _stop_leftover(pidfile)
        assert ours.wait(timeout=15) is not None
    finally:
        for process in (machines, ours):
            process.kill()
            process.wait()


class _Stopped(Exception):
    """Where a test ends an ``up`` (before anything of it starts)."""


def test_up_after_an_up_killed_before_its_state_stops_what_that_one_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILLed up had written no state.json: its etcd (its own session) held the ports,
    the next up only said to choose other ones, and no down would ever know it."""
    state = tmp_path / "cluster"
    state.mkdir()
    orphan = _started([*SLEEPER, f"--data-dir={state.resolve()}/etcd"], start_new_session=True)
    cluster = LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=print)

    def ports_checked() -> None:
        raise _Stopped

    monkeypatch.setattr(cluster, "_check_ports_free", ports_checked)
    try:
        with pytest.raises(_Stopped):
            cluster.up()
        assert orphan.poll() is not None, "up left the killed up's etcd running"
    finally:
        orphan.kill()
        orphan.wait()


def test_down_stops_the_node_processes_no_state_recorded_before_tearing_the_node_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An up killed in the node's start recorded the control plane only: a kubelet still
    running while its network, mounts and cgroups go would make them again."""
    from vigil.devcluster import node as node_module

    state = tmp_path / "cluster"
    (state / "node").mkdir(parents=True)
    _write_state(state, {}, identities={}, real_node=True)
    kubelet = _started([*SLEEPER, f"--config={state.resolve()}/node/kubelet/config.yaml"])
    alive_at_teardown: list[bool] = []

    def teardown(node: object, processes: object, legacy: bool = False) -> None:
        alive_at_teardown.append(pid_alive(kubelet.pid))

    monkeypatch.setattr(node_module.RealNode, "teardown", teardown)
    try:
        LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=print).down()
        assert alive_at_teardown == [False]
        assert not state.exists()
    finally:
        kubelet.kill()
        kubelet.wait()


def test_the_sweep_spares_the_process_running_it_and_its_parents(tmp_path: Path) -> None:
    """A shell that ran up or down may name the state folder in its own arguments."""
    state = tmp_path / "cluster"
    state.mkdir()
    sweep = (
        "import sys; from pathlib import Path; from vigil.devcluster.cluster import LocalCluster; "
        "found = LocalCluster(state_dir=Path(sys.argv[1]))._processes_using_state_dir(); "
        "print(*sorted(p.pid for p in found))"
    )
    stranger = _started([*SLEEPER, f"{state.resolve()}/etcd"])
    try:
        # Two commands: the shell stays the sweep's parent (it execs a last command).
        script = f'"{sys.executable}" -c "$1" "$0"; true'
        shell = subprocess.run(
            ["bash", "-c", script, str(state.resolve()), sweep],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shell.stdout.split() == [str(stranger.pid)]
    finally:
        stranger.kill()
        stranger.wait()


def test_a_cluster_folder_is_not_one_whose_name_merely_starts_the_same() -> None:
    # A fresh up stopped another cluster's etcd living in .vigil/cluster-ci beside it.
    from vigil.devcluster.common import names_folder

    folder = "/work/x/.vigil/cluster"
    assert names_folder(f"etcd --data-dir={folder}/etcd", folder)
    assert names_folder(f"kubectl --kubeconfig {folder}", folder)
    assert not names_folder("etcd --data-dir=/work/x/.vigil/cluster-ci/etcd", folder)
    assert not names_folder("etcd --data-dir=/work/x/.vigil/cluster2/etcd", folder)
