"""Fixtures: a tiny fake model server and an in-process sidecar, loopback only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import pytest
from sidecar_testkit import FEATURES, FakeModel

from vigil.profile import build_profile
from vigil.sidecar.config import Settings, ShadowSettings
from vigil.sidecar.main import Sidecar


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    server = FakeModel()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def profile_path(tmp_path):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(0, 3, 2000), rng.normal(0, 1, 2000), rng.normal(5, 2, 2000)])
    preds = (x[:, 0].astype(int)) % 3
    profile = build_profile(
        x, predictions=preds, feature_names=FEATURES, model_name="m", model_version="1"
    )
    path = tmp_path / "profile.json"
    path.write_text(profile.to_json())
    return path


@pytest.fixture
async def start_sidecar() -> AsyncIterator[Callable[..., Any]]:
    """Factory: start an in-process sidecar on free loopback ports; stopped at the end."""
    started: list[Sidecar] = []

    async def factory(upstream: str, **overrides: Any) -> Sidecar:
        shadow = overrides.pop("shadow", ShadowSettings())
        settings = replace(
            Settings(
                model_name="m",
                model_version="1",
                revision="r1",
                role="stable",
                upstream=upstream,
                listen_host="127.0.0.1",
                listen_port=0,
                metrics_host="127.0.0.1",
                metrics_port=0,
                drain_timeout_seconds=5.0,
            ),
            shadow=shadow,
            **overrides,
        )
        sidecar = Sidecar.create(settings)
        await sidecar.start()
        started.append(sidecar)
        return sidecar

    try:
        yield factory
    finally:
        for sidecar in started:
            with contextlib.suppress(Exception):
                await sidecar.stop()
    # Every path a test took (errors, timeouts, clients gone) gave back the bodies it held:
    # a leak would add up until every request got 503 (proxy.HELD_BYTES_BUDGET).
    held = [sidecar.proxy.held for sidecar in started if sidecar.proxy.held]
    assert not held, f"body bytes still counted as held after stop: {held}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def answering() -> AsyncIterator[Callable[[bytes], Any]]:
    """Factory: a loopback target answering every request 200 with ``body`` (JSON)."""
    servers: list[asyncio.Server] = []

    async def start(
        body: bytes, extra: bytes = b"", content_type: bytes = b"application/json"
    ) -> str:
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type
            + b"\r\n"
            + extra
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
                    writer.write(answer)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    try:
        yield start
    finally:
        for server in servers:
            server.close()
