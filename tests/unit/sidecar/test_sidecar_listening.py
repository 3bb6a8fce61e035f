"""Where the sidecar listens: by default every address of both families, since a pod's IP
may be IPv6 (bound to 0.0.0.0, an IPv6-only cluster's probes never reached it)."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp

from vigil.sidecar.config import Settings
from vigil.sidecar.main import Sidecar


def _ports(sockets: Any) -> dict[int, int]:
    """The port bound per address family (port 0 gives each family its own)."""
    return {sock.family: sock.getsockname()[1] for sock in sockets}


def _loopback_ipv6() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        raise AssertionError(f"this test needs IPv6 loopback (::1): {error}") from None


async def test_by_default_both_ports_answer_over_ipv4_and_ipv6(
    model: Any, start_sidecar: Any, http: aiohttp.ClientSession
) -> None:
    _loopback_ipv6()
    defaults = Settings()
    sidecar: Sidecar = await start_sidecar(
        model.url, listen_host=defaults.listen_host, metrics_host=defaults.metrics_host
    )
    assert sidecar.proxy.server is not None and sidecar.metrics_runner is not None
    serving = _ports(sidecar.proxy.server.sockets)
    metrics = {
        socket.AF_INET6 if ":" in address[0] else socket.AF_INET: address[1]
        for address in sidecar.metrics_runner.addresses
    }
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "[::1]")):
        ready = f"http://{host}:{serving[family]}/v2/health/ready"
        async with http.get(ready) as answer:
            assert answer.status == 200, host
        async with http.get(f"http://{host}:{metrics[family]}/metrics") as answer:
            assert answer.status == 200 and "vigil_" in await answer.text(), host
