"""One ``up`` or ``down`` of a cluster at a time, across processes, and no deadlock within one.

``down`` removed the lock file while ``up`` held it, so the next test worker locked a new
file at once; ``make cluster-up``/``cluster-down`` and ``make demo`` took no lock at all.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flock_queue import queued_behind

from vigil.devcluster import cli
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.common import exclusive

PORT_BASE = 31500  # octet 115: no cluster of the suites or benchmarks (264xx-299xx) has it


class _PastTheLock(Exception):
    """up() got to its port check (the test's stop)."""


def _held_elsewhere(lock: Path) -> bool:
    """Whether some open file description holds the lock (this process's included)."""
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_down_keeps_the_lock_file(tmp_path: Path) -> None:
    """A process waiting on the file must lock the same file as the next one to come."""
    state = tmp_path / "cluster"
    cluster = LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=print)
    state.mkdir()
    (state / "state.json").write_text('{"pids": {}}')
    cluster._lock_file().touch()
    inode = cluster._lock_file().stat().st_ino
    cluster.down()
    assert not state.exists()
    assert cluster._lock_file().stat().st_ino == inode


@pytest.mark.parametrize("caller_holds_it", [False, True], ids=["make-cluster-up", "connect"])
def test_up_holds_the_lock_and_its_down_inside_does_not_deadlock(
    caller_holds_it: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "cluster"
    cluster = LocalCluster(state_dir=state, bin_dir=tmp_path, port_base=PORT_BASE, log=print)
    state.mkdir()
    (state / "state.json").write_text('{"pids": {}}')  # an unhealthy cluster: up runs down
    seen: dict[str, bool] = {}

    def check_ports() -> None:
        seen["locked"] = _held_elsewhere(cluster._lock_file())
        seen["down ran"] = not state.exists()
        raise _PastTheLock

    monkeypatch.setattr(cluster, "_check_ports_free", check_ports)
    failures: list[BaseException] = []

    def up() -> None:
        try:
            if caller_holds_it:  # as the tests' connect() did
                with exclusive(cluster._lock_file()):
                    cluster.up()
            else:
                cluster.up()
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=up, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "up() deadlocked on its own lock"
    assert len(failures) == 1 and isinstance(failures[0], _PastTheLock), failures
    assert seen == {"locked": True, "down ran": True}
    assert not _held_elsewhere(cluster._lock_file())  # released on the way out


@pytest.mark.slow
@pytest.mark.parametrize("command", ["down", "up"])
def test_make_cluster_up_and_down_wait_for_the_clusters_lock(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "cluster"
    monkeypatch.setenv("VIGIL_CLUSTER_DIR", str(state))
    monkeypatch.setenv("VIGIL_CLUSTER_PORT_BASE", str(PORT_BASE))
    monkeypatch.setenv("VIGIL_BIN_DIR", str(tmp_path))
    monkeypatch.setattr(LocalCluster, "_check_ports_free", lambda self: None)
    monkeypatch.setattr(LocalCluster, "_make_pki", lambda self: (_ for _ in ()).throw(_PastTheLock))
    lock = LocalCluster(state_dir=state)._lock_file()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"handle = open({str(lock)!r}, 'a'); fcntl.flock(handle, fcntl.LOCK_EX)\n"
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        finished = threading.Event()
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(cli.main([command, "--no-real-node"]))
            except BaseException as error:
                outcome.append(error)
            finished.set()

        threading.Thread(target=run, daemon=True).start()
        # queued behind the holder, not merely slow to get there
        assert queued_behind([lock], finished.is_set), (
            f"cluster {command} did not wait for the lock"
        )
        assert not finished.is_set()
        holder.communicate("", timeout=10)  # the other process lets go
        assert finished.wait(20)
        if command == "down":
            assert outcome == [0]
        else:
            assert len(outcome) == 1 and isinstance(outcome[0], _PastTheLock)
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_between_threads(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "x.lock"
    order: list[str] = []
    with exclusive(lock), exclusive(lock):
        other = threading.Thread(target=lambda: _take(lock, order))
        other.start()
        time.sleep(0.05)
        order.append("first done")
    other.join(timeout=10)
    assert order == ["first done", "second"]
    assert not _held_elsewhere(lock)


def _take(lock: Path, order: list[str]) -> None:
    with exclusive(lock):
        order.append("second")
