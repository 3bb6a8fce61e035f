"""The kube adapter's HTTP sessions: each one opened is closed exactly once.

A session left open holds a connector (sockets, TLS buffers) and logs
"Unclosed client session"; the sessions here are fakes that count.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from fake_sessions import FakeSession, fake_sessions

from vigil.kube.client import Connection, KubeClient, KubeError


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[FakeSession]:
    return fake_sessions(monkeypatch)


def connection(token: str) -> Connection:
    return Connection(server="https://api.example:6443", insecure=True, token=token)


async def test_a_request_after_close_fails_instead_of_opening_a_session(
    sessions: list[FakeSession],
) -> None:
    client = KubeClient(connection("t0"))
    await client.get("Deployment", "ml", "d")
    await client.close()
    with pytest.raises(KubeError) as caught:
        await client.get("Deployment", "ml", "d")
    assert caught.value.status == 0 and caught.value.retryable
    assert [session.closes for session in sessions] == [1]


async def test_a_request_racing_close_leaves_no_session_open(sessions: list[FakeSession]) -> None:
    client = KubeClient(connection("t0"))
    await client.get("Deployment", "ml", "d")
    closing = asyncio.create_task(client.close())
    await asyncio.sleep(0)  # close() is waiting for the session's connections
    with contextlib.suppress(KubeError):
        await client.get("Deployment", "ml", "d")
    await closing
    assert [session.closes for session in sessions] == [1]


async def test_new_credentials_serve_later_requests_and_every_session_is_closed_once(
    sessions: list[FakeSession],
) -> None:
    client = KubeClient(connection("t0"))
    for token in ("t1", "t2", "t3"):
        # Requests in flight as logins (two at once) replace the credentials.
        readers = [asyncio.create_task(client.get("Deployment", "ml", "d")) for _ in range(20)]
        await asyncio.sleep(0)
        await asyncio.gather(
            client.reconnect(connection(token)), client.reconnect(connection(token)), *readers
        )
        await client.get("Deployment", "ml", "d")
        assert sessions[-1].authorization == f"Bearer {token}"
    await client.close()

    # Every request finished (none failed as its session closed under it), and each
    # session was closed once, after its last request.
    assert sum(len(session.sent) for session in sessions) == 3 * 21
    assert [session.closes for session in sessions] == [1] * len(sessions)


async def test_a_replaced_session_still_busy_at_close_is_closed_once(
    sessions: list[FakeSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeSession, "gate", asyncio.Event())  # never answered
    client = KubeClient(connection("t0"))
    reader = asyncio.create_task(client.get("Deployment", "ml", "d"))
    await asyncio.sleep(0.01)  # in flight on the first session
    await client.reconnect(connection("t1"))
    assert sessions[0].closes == 0  # its request is not cut short
    closing = asyncio.create_task(client.close())
    await asyncio.sleep(0.01)
    FakeSession.gate.set()  # the request finds its session closed and fails
    await closing
    with pytest.raises(KubeError):  # the operator stops: cut short now
        await reader
    assert [session.closes for session in sessions] == [1]
