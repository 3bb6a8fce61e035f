"""Ports handed to the tests' servers: free, and never the same one twice in a process."""

import socket

from vigil.devcluster.common import free_port


def test_ports_taken_one_after_another_are_all_different() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_a_port_handed_out_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
