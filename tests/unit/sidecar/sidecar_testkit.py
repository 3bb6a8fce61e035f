"""Helpers for the sidecar unit tests: a tiny fake model server, scraping, bodies."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from vigil.sidecar.main import Sidecar
from vigil.sidecar.proxy import Proxy, _Client, _Request, _Upstream
from vigil.sidecar.wire import Response

FEATURES = ["a", "b", "c"]


def _predict(rows: list[list[Any]], offset: int = 0) -> list[int]:
    """Deterministic 'model': class = int(a) mod 3 (+ offset)."""
    out = []
    for row in rows:
        try:
            out.append((int(float(row[0])) + offset) % 3)
        except (TypeError, ValueError, IndexError):
            out.append(0)
    return out


class V2Server:
    """A v2 model server's two routes on a free port; subclasses answer ``infer``."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", self.infer)
        app.router.add_get("/v2/health/ready", self.ready)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def ready(self, _request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def infer(self, request: web.Request) -> web.Response:
        raise NotImplementedError


class FakeModel:
    """A small aiohttp model server speaking v2 and v1 (and some misbehaviour)."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.ready = True
        self.delay = 0.0
        #: Set on stop: a delayed answer is cut short, so teardown does not wait it out.
        self.stopping = asyncio.Event()
        #: An Event a test may put here: v2 inference answers wait until it is set (or
        #: the server stops), so a test holds a request in flight exactly as long as it needs.
        self.hold: asyncio.Event | None = None
        self.requests: list[bytes] = []
        #: The X-Request-Id header lines of each inference request, as received.
        self.request_ids: list[list[str]] = []
        #: The X-Vigil-Shadow header of each inference request (None: none came).
        self.shadow_marks: list[str | None] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v2/health/ready", self.health)
        app.router.add_post("/v2/models/{name}/infer", self.v2)
        app.router.add_post("/v2/models/{name}/versions/{v}/infer", self.v2)
        app.router.add_get("/v1/models/{name}", self.health)
        app.router.add_post("/v1/models/{name}:predict", self.v1)
        app.router.add_post("/echo", self.echo)
        app.router.add_get("/chunked", self.chunked)
        app.router.add_get("/status/{code}", self.status)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        self.stopping.set()
        if self.hold is not None:
            self.hold.set()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

    async def v2(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(body)
        self.request_ids.append(request.headers.getall("X-Request-Id", []))
        self.shadow_marks.append(request.headers.get("X-Vigil-Shadow"))
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.delay)
        if self.hold is not None:
            await self.hold.wait()
        try:
            doc = json.loads(body)
            tensor = doc["inputs"][0]
            rows, width = tensor["shape"][0], tensor["shape"][1]
            data = np.asarray(tensor["data"], dtype=object).reshape(rows, width).tolist()
        except Exception as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        preds = _predict(data, self.offset)
        return web.json_response(
            {
                "model_name": request.match_info["name"],
                "outputs": [
                    {
                        "name": "predict",
                        "shape": [len(preds), 1],
                        "datatype": "INT64",
                        "data": preds,
                    }
                ],
            }
        )

    async def v1(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(body)
        try:
            rows = json.loads(body)["instances"]
        except Exception as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"predictions": _predict(rows, self.offset)})

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=body,
            content_type="application/octet-stream",
            headers={"X-Echo-Len": str(len(body))},
        )

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"hello ", b"chunked ", b"world"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"code": request.match_info["code"]}, status=int(request.match_info["code"])
        )


def base(sidecar: Sidecar) -> str:
    return f"http://127.0.0.1:{sidecar.proxy.port}"


async def scrape(session: aiohttp.ClientSession, sidecar: Sidecar) -> dict[tuple, float]:
    """Metrics as {(name, frozenset(labels)): value}."""
    async with session.get(f"http://127.0.0.1:{sidecar.metrics_port}/metrics") as resp:
        text = await resp.text()
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[tuple, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= ls)


async def settle(sidecar: Sidecar, timeout: float = 5.0) -> None:
    """Wait until every answered request is counted: nothing left in the monitoring queue
    (a batch is processed as it leaves it) and no shadow copy queued or being compared."""
    await until(lambda: not (sidecar.monitor.pending or sidecar.shadow.pending), timeout)


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` is true, looking every few milliseconds (TimeoutError
    after ``timeout`` seconds): instead of sleeping a guess of how long it takes."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def v2_body(rows: list[list[Any]]) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}
            ]
        }
    ).encode()


class FakeTransport:
    """Stands in for a socket under one of the proxy's protocols: records what is written
    and whether reading is paused. A test then drives the callbacks one by one, with no
    timing and no TCP coalescing in the way. Like a real transport, ``close`` does not
    call ``connection_lost`` at once."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.paused = False
        #: Bytes written that a slow reader has not taken yet (a test sets it).
        self.unsent = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: what it has not taken is ``unsent``

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return False  # the proxy then closes instead of lingering

    def write_eof(self) -> None:
        raise AssertionError("can_write_eof() said no")

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def answers(self) -> list[bytes]:
        """The status lines written so far."""
        return [line for line in bytes(self.written).split(b"\r\n") if line.startswith(b"HTTP/1.")]


def fake_client(proxy: Proxy) -> tuple[_Client, FakeTransport]:
    """A client connection of ``proxy`` on a :class:`FakeTransport`."""
    client = _Client(proxy)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


def sent_upstream(
    proxy: Proxy,
    client: _Client,
    request: _Request,
    *,
    reused: bool = False,
    transport: FakeTransport | None = None,
) -> _Upstream:
    """An upstream connection of ``proxy`` (on ``transport``, a fake one by default) that
    sent ``request`` for ``client``: the model server's answer is fed to it."""
    upstream = _Upstream(proxy)
    upstream.connection_made(transport or FakeTransport())  # type: ignore[arg-type]
    upstream.send(client, request, reused=reused)
    return upstream


def capture_dispatch(proxy: Proxy, monkeypatch: Any) -> list[_Request]:
    """Keep the requests ``proxy`` would send to the model server, instead of sending them."""
    sent: list[_Request] = []
    monkeypatch.setattr(proxy, "dispatch", lambda client, request: sent.append(request))
    return sent


def hold_readiness(proxy: Proxy, monkeypatch: Any) -> asyncio.Event:
    """Readiness checks wait for the returned event, then answer ready."""
    answer = asyncio.Event()

    async def readiness() -> tuple[int, bytes]:
        await answer.wait()
        return 200, b'{"ready":true}'

    monkeypatch.setattr(proxy, "readiness", readiness)
    return answer


def answer_ok(client: _Client, request: _Request) -> None:
    """Answer ``request`` as the model server would: 200, body ``ok``, keep-alive."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    client.on_response(request, Response(200, head, b"ok", b"ok", True))


#: Three rows the fake model answers 0, 1, 2; the stable's sidecar labels of a shadow test.
SHADOW_ROWS = [[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0]]
SHADOW_LABELS = {"model": "m", "version": "1", "revision": "st", "role": "stable"}


def stable_shadow(
    target: str, registry: Any, classification: bool | None = True, **settings: Any
) -> Any:
    """A stable's shadow copier to ``target`` (revision "c", every request copied);
    ``classification`` None: a stable without a reference profile."""
    from vigil.sidecar.config import ShadowSettings
    from vigil.sidecar.shadow import Shadow

    return Shadow(
        protocol="v2",
        base=SHADOW_LABELS,
        registry=registry,
        classification=classification,
        settings=ShadowSettings(
            **{"target": target, "target_revision": "c", "percent": 100, **settings}
        ),
    )


@contextlib.asynccontextmanager
async def ticks_at_each_batch(monitor: Any, monkeypatch: Any) -> AsyncIterator[list[int]]:
    """While inside: a task counting its turns on the event loop (standing for the proxy),
    and the list of its count at each batch the monitor takes (``flush``)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    at_batch: list[int] = []
    flush = monitor.flush
    monkeypatch.setattr(monitor, "flush", lambda *a: at_batch.append(ticks) or flush(*a))
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        yield at_batch
    finally:
        task.cancel()
