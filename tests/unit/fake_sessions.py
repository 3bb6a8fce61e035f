"""Fake aiohttp sessions that count what the kube client opens, sends and closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest


class FakeResponse:
    status = 200

    async def text(self) -> str:
        return "{}"


class FakeSession:
    """Stands in for aiohttp.ClientSession: answers {}, records the token of each request
    and counts its closes."""

    #: When set, answers wait for it (a request held in flight).
    gate: asyncio.Event | None = None

    def __init__(self, *, headers: dict[str, str], **_: Any) -> None:
        self.authorization = headers.get("Authorization")
        self.closes = 0
        self.closed = False
        self.sent: list[str | None] = []

    @contextlib.asynccontextmanager
    async def request(self, method: str, url: str, **_: Any) -> AsyncIterator[FakeResponse]:
        if self.closed:
            raise RuntimeError("Session is closed")  # what aiohttp raises
        self.sent.append(self.authorization)
        await asyncio.sleep(0)  # in flight: other tasks (a close, a login) run meanwhile
        if self.gate is not None:
            await self.gate.wait()
        if self.closed:
            raise aiohttp.ClientConnectionError("Connector is closed.")
        yield FakeResponse()

    async def close(self) -> None:
        self.closes += 1
        self.closed = True  # at once, as aiohttp marks its connector
        await asyncio.sleep(0)  # its connections close meanwhile


def fake_sessions(monkeypatch: pytest.MonkeyPatch) -> list[FakeSession]:
    """aiohttp's sessions replaced by fakes: the list of those opened, in order."""
    opened: list[FakeSession] = []

    def open_session(**kwargs: Any) -> FakeSession:
        opened.append(FakeSession(**kwargs))
        return opened[-1]

    monkeypatch.setattr(aiohttp, "ClientSession", open_session)
    monkeypatch.setattr(aiohttp, "TCPConnector", lambda **_: None)
    return opened
