"""Logging in again (kopf does on a 401: a rotated token) while reconciles hold the client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest

from vigil.operator.runtime import OperatorOptions, build_runtime, login, shutdown


class FakeResponse:
    status = 200

    async def text(self) -> str:
        return "{}"


class FakeSession:
    """Stands in for aiohttp.ClientSession: answers {}, records the token of each request."""

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
        await asyncio.sleep(0)  # in flight: a login runs meanwhile
        if self.closed:
            raise aiohttp.ClientConnectionError("Connector is closed.")
        yield FakeResponse()

    async def close(self) -> None:
        self.closes += 1
        self.closed = True
        await asyncio.sleep(0)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[FakeSession]:
    opened: list[FakeSession] = []

    def open_session(**kwargs: Any) -> FakeSession:
        opened.append(FakeSession(**kwargs))
        return opened[-1]

    monkeypatch.setattr(aiohttp, "ClientSession", open_session)
    monkeypatch.setattr(aiohttp, "TCPConnector", lambda **_: None)
    return opened


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The service account's token as kopf reads it at each login: the last one listed."""
    current = ["t0"]

    def login_via_client(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server="https://api.example:6443", insecure=True, scheme="Bearer", token=current[-1]
        )

    monkeypatch.setattr(kopf, "login_via_client", login_via_client)
    return current


async def test_a_client_held_across_a_login_uses_the_new_token_and_leaves_no_session_open(
    sessions: list[FakeSession], tokens: list[str]
) -> None:
    runtime = build_runtime(OperatorOptions())
    await login(runtime)
    api = runtime.api()  # a reconcile or a health cycle holds it for its whole run
    await api.get("ModelDeployment", "ml", "m")

    tokens.append("t1")
    await login(runtime)
    await api.get("ModelDeployment", "ml", "m")
    await runtime.api().get("ModelDeployment", "ml", "m")
    await shutdown(runtime)

    assert [sent for session in sessions for sent in session.sent] == [
        "Bearer t0",
        "Bearer t1",
        "Bearer t1",
    ]
    assert [session.closes for session in sessions] == [1] * len(sessions)


async def test_requests_racing_logins_all_succeed_and_leave_no_session_open(
    sessions: list[FakeSession], tokens: list[str]
) -> None:
    runtime = build_runtime(OperatorOptions())
    await login(runtime)
    api = runtime.api()

    for token in ("t1", "t2", "t3"):
        readers = [asyncio.create_task(api.get("ModelDeployment", "ml", "m")) for _ in range(10)]
        await asyncio.sleep(0)
        tokens.append(token)
        await asyncio.gather(login(runtime), login(runtime), *readers)
    await api.get("ModelDeployment", "ml", "m")
    await shutdown(runtime)

    assert [session.authorization for session in sessions] == [
        "Bearer t0",
        "Bearer t1",
        "Bearer t2",
        "Bearer t3",
    ]
    assert [session.closes for session in sessions] == [1] * len(sessions)
