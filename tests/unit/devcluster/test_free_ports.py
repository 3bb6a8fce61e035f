"""Ports handed to the tests' servers: free, never the same one twice in a process, and
never one another test worker may be handed."""

import itertools
import socket

from vigil.devcluster.common import _port_block, free_port


def test_ports_taken_one_after_another_are_all_different() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_a_port_handed_out_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_each_test_worker_takes_ports_from_a_block_of_its_own(monkeypatch) -> None:
    # Two workers each probing bind(0) were handed the same port (about 6 in 300 each).
    blocks = {}
    for worker in ("", "gw0", "gw1", "gw7"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        blocks[worker] = _port_block()
    starts = sorted(block.start for block in blocks.values())
    assert len(set(starts)) == 4
    # Clear of the kubelet's ports and of the local clusters' (26400 and up).
    assert all(b.start >= 11000 and b.stop <= 20000 for b in blocks.values())
    assert all(later - earlier >= 1000 for earlier, later in itertools.pairwise(starts))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert free_port() in blocks["gw1"]


def test_a_port_in_use_is_passed_over() -> None:
    first = free_port()
    while first + 2 not in _port_block():  # the block's end: the turn starts again
        first = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", first + 1))
        assert free_port() == first + 2
