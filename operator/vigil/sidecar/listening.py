"""Where an aiohttp server listens once started (port 0 in tests: the kernel picks one)."""

from __future__ import annotations

from aiohttp import web


def bound_port(runner: web.AppRunner | None, configured: int) -> int:
    """The port ``runner``'s first site is bound to; ``configured`` before it listens."""
    assert runner is not None
    for address in runner.addresses:
        return int(address[1])
    return configured
