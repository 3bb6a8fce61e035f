"""The kube adapter against a local HTTP server speaking the API server's protocol."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from local_api import local_api

from vigil.kube.client import Connection, KubeClient, KubeError


class FakeApiServer:
    """Records requests; answers from a table of (method, path) -> (status, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "content_type": request.headers.get("Content-Type"),
                "authorization": request.headers.get("Authorization"),
                "body": json.loads(body) if body else None,
            }
        )
        status, payload = self.answers.get((request.method, request.path), (200, {}))
        return web.json_response(payload, status=status)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeApiServer, KubeClient]]:
    fake = FakeApiServer()
    async with local_api(fake.handle, token="t0ken") as client:
        yield fake, client


async def test_get_returns_the_object_or_none(server: tuple[FakeApiServer, KubeClient]) -> None:
    fake, client = server
    fake.answers[("GET", "/apis/apps/v1/namespaces/ml/deployments/wine-a")] = (
        200,
        {"kind": "Deployment"},
    )
    assert await client.get("Deployment", "ml", "wine-a") == {"kind": "Deployment"}
    fake.answers[("GET", "/api/v1/namespaces/ml/services/wine")] = (404, {"message": "nf"})
    assert await client.get("Service", "ml", "wine") is None
    assert fake.requests[0]["authorization"] == "Bearer t0ken"


async def test_list_uses_a_label_selector(server: tuple[FakeApiServer, KubeClient]) -> None:
    fake, client = server
    fake.answers[("GET", "/api/v1/namespaces/ml/configmaps")] = (200, {"items": [{"a": 1}]})
    items = await client.list("ConfigMap", "ml", "vigil.dev/model-deployment=wine")
    assert items == [{"a": 1}]
    assert fake.requests[0]["query"] == {"labelSelector": "vigil.dev/model-deployment=wine"}


async def test_apply_is_a_forced_server_side_apply(
    server: tuple[FakeApiServer, KubeClient],
) -> None:
    fake, client = server
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "wine", "namespace": "ml"},
    }
    await client.apply(manifest)
    (request,) = fake.requests
    assert request["method"] == "PATCH"
    assert request["path"] == "/api/v1/namespaces/ml/services/wine"
    assert request["content_type"] == "application/apply-patch+yaml"
    assert request["query"] == {"fieldManager": "vigil-operator", "force": "true"}
    assert request["body"] == manifest


async def test_delete_tolerates_gone_objects(server: tuple[FakeApiServer, KubeClient]) -> None:
    fake, client = server
    fake.answers[("DELETE", "/apis/apps/v1/namespaces/ml/deployments/x")] = (404, {})
    await client.delete("Deployment", "ml", "x")
    assert fake.requests[0]["body"]["propagationPolicy"] == "Background"


async def test_status_is_a_merge_patch_of_the_subresource(
    server: tuple[FakeApiServer, KubeClient],
) -> None:
    fake, client = server
    await client.patch_status("ModelDeployment", "ml", "wine", {"phase": "Healthy"})
    (request,) = fake.requests
    assert request["path"] == "/apis/vigil.dev/v1alpha1/namespaces/ml/modeldeployments/wine/status"
    assert request["content_type"] == "application/merge-patch+json"
    assert request["body"] == {"status": {"phase": "Healthy"}}


async def test_an_event_is_created_once_and_a_repeat_is_no_error(
    server: tuple[FakeApiServer, KubeClient],
) -> None:
    fake, client = server
    event = {"metadata": {"name": "wine.0123456789abcdef", "namespace": "ml"}, "reason": "R"}
    assert await client.create_event(event) is True
    assert fake.requests[-1]["method"] == "POST"
    assert fake.requests[-1]["path"] == "/api/v1/namespaces/ml/events"
    assert fake.requests[-1]["body"] == event
    fake.answers[("POST", "/api/v1/namespaces/ml/events")] = (409, {"message": "exists"})
    assert await client.create_event(event) is False
    fake.answers[("POST", "/api/v1/namespaces/ml/events")] = (403, {"message": "forbidden"})
    with pytest.raises(KubeError):
        await client.create_event(event)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (409, True), (429, True), (403, False), (422, False)],
)
async def test_errors_say_whether_a_retry_may_help(
    server: tuple[FakeApiServer, KubeClient], status: int, retryable: bool
) -> None:
    fake, client = server
    fake.answers[("PATCH", "/api/v1/namespaces/ml/configmaps/c")] = (status, {"message": "nope"})
    with pytest.raises(KubeError) as caught:
        await client.apply({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"}})
    assert caught.value.status == status
    assert caught.value.retryable is retryable
    assert "nope" in str(caught.value)


async def test_an_unreachable_server_is_a_retryable_error() -> None:
    client = KubeClient(Connection(server="http://127.0.0.1:9"), timeout=2)
    try:
        with pytest.raises(KubeError) as caught:
            await client.get("Service", "ml", "x")
        assert caught.value.status == 0 and caught.value.retryable
    finally:
        await client.close()


@pytest.mark.slow
async def test_writes_in_flight_are_capped_services_apart_and_connections_bounded() -> None:
    """Writes reach the API server at most MAX_CONCURRENT_WRITES at a time, Services at most
    MAX_CONCURRENT_SERVICE_WRITES (without holding the other writes back), and reads share
    a bounded pool of connections.

    (bench/scale: hundreds of Service applies at once passed the server's own
    timeout and every retry allocated a ClusterIP again; with one shared limit,
    Deployments and status patches queued behind the slow Services.)
    """
    import asyncio

    from vigil.kube.client import (
        MAX_CONCURRENT_SERVICE_WRITES,
        MAX_CONCURRENT_WRITES,
        MAX_CONNECTIONS,
    )

    in_flight = {"services": 0, "configmaps": 0, "GET": 0, "all": 0}
    peak = dict(in_flight)

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        kind = "GET" if request.method == "GET" else request.path.split("/")[-2]
        for key in (kind, "all"):
            in_flight[key] += 1
            peak[key] = max(peak[key], in_flight[key])
        await asyncio.sleep(0.2 if kind == "services" else 0.05)
        for key in (kind, "all"):
            in_flight[key] -= 1
        return web.json_response({"items": []})

    def manifest(kind: str, name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "ml"}}

    async with local_api(slow) as client:
        services = [client.apply(manifest("Service", f"s{i}")) for i in range(12)]
        writes = [client.apply(manifest("ConfigMap", f"c{i}")) for i in range(48)]
        reads = [client.list("ConfigMap", "ml", "a=b") for _ in range(48)]
        await asyncio.gather(*services, *writes, *reads)
    assert peak["services"] == MAX_CONCURRENT_SERVICE_WRITES
    assert peak["configmaps"] == MAX_CONCURRENT_WRITES
    assert peak["GET"] > 1
    assert peak["all"] <= MAX_CONNECTIONS


def test_an_empty_name_names_no_object() -> None:
    # It used to address the whole collection: a GET answered with a List.
    with pytest.raises(KubeError, match="an empty name names no object"):
        KubeClient._path("Deployment", "ml", "")
    assert KubeClient._path("Deployment", "ml").endswith("/namespaces/ml/deployments")


@pytest.mark.parametrize(
    ("status", "header", "retry_after"),
    [
        (429, "7", 7.0),
        (429, "0.5", 0.5),
        (503, "2", 2.0),
        (429, "86400", 300.0),  # capped: a misconfigured server cannot park the operator
        (429, "soon", None),
        (429, "-3", None),
        (429, "nan", None),
        (429, None, None),
    ],
)
async def test_an_error_carries_how_long_the_server_asked_to_wait(
    status: int, header: str | None, retry_after: float | None
) -> None:
    async def throttled(request: web.Request) -> web.Response:
        # API Priority and Fairness answers in plain text, its wait in the header.
        headers = {"Retry-After": header} if header is not None else {}
        return web.Response(status=status, text="Too many requests", headers=headers)

    async with local_api(throttled) as client:
        with pytest.raises(KubeError) as caught:
            await client.get("Deployment", "ml", "d")
    assert caught.value.retry_after == retry_after
    assert caught.value.retryable


async def test_an_unreachable_server_names_no_wait() -> None:
    client = KubeClient(Connection(server="http://127.0.0.1:9"), timeout=2)
    try:
        with pytest.raises(KubeError) as caught:
            await client.get("Service", "ml", "x")
        assert caught.value.retry_after is None
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("status", "text"),
    [(200, "<html>Bad gateway page</html>"), (502, '["not", "a", "Status"]'), (200, "\udcff")],
)
async def test_an_answer_that_is_no_json_is_a_retryable_error(status: int, text: str) -> None:
    # A proxy's page in the API server's place: the caller's KubeError handling, not a crash.
    async def proxy(request: web.Request) -> web.Response:
        return web.Response(status=status, body=text.encode(errors="surrogateescape"))

    async with local_api(proxy) as client:
        with pytest.raises(KubeError) as caught:
            await client.get("Deployment", "ml", "d")
    assert caught.value.retryable
