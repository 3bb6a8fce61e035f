"""Logging in again (kopf does on a 401: a rotated token) while reconciles hold the client."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from fake_sessions import FakeSession, fake_sessions

from vigil.operator.runtime import OperatorOptions, build_runtime, login, shutdown


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[FakeSession]:
    return fake_sessions(monkeypatch)


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


async def test_shutdown_closes_the_metrics_sources_after_the_reconciles_under_way() -> None:
    # A rollout measuring at SIGTERM read "no sidecar answered" from a session the health
    # loop's stop had closed, and wrote it into status.
    runtime = build_runtime(OperatorOptions())
    order: list[str] = []
    reconciler_close, sources_close = runtime.reconciler.close, runtime.health.sources.close

    async def reconciles_finish(grace: float = 0.0) -> None:
        order.append("reconciles")
        await reconciler_close(grace)

    async def sources_closed() -> None:
        order.append("sources")
        await sources_close()

    runtime.reconciler.close = reconciles_finish  # type: ignore[method-assign]
    runtime.health.sources.close = sources_closed  # type: ignore[method-assign]
    await shutdown(runtime)
    assert order == ["reconciles", "sources"]
