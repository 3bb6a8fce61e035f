"""Readiness follows the model server; shutdown drains in-flight requests."""

import asyncio
import os
import signal
import sys

import aiohttp
import pytest
from sidecar_testkit import (
    answer_ok,
    base,
    capture_dispatch,
    fake_client,
    hold_readiness,
    until,
    v2_body,
)

from vigil.devcluster.common import free_port
from vigil.sidecar import proxy
from vigil.sidecar.main import Sidecar


async def test_readiness_follows_the_model_server(model, start_sidecar, http, monkeypatch):
    # Readiness is cached (a second in production); a shorter cache keeps the wait short.
    monkeypatch.setattr(proxy, "READY_CACHE_SECONDS", 0.05)
    sidecar = await start_sidecar(model.url)
    for path in ("/healthz/ready", "/vigil/readyz"):
        async with http.get(f"{base(sidecar)}{path}") as resp:
            assert resp.status == 200
    model.ready = False
    async with asyncio.timeout(5):  # the cached answer until the cache runs out, then 503
        while True:
            async with http.get(f"{base(sidecar)}/healthz/ready") as resp:
                if resp.status == 503:
                    break
                assert resp.status == 200
            await asyncio.sleep(0.01)
    async with http.get(f"http://127.0.0.1:{sidecar.metrics_port}/readyz") as resp:
        assert resp.status == 503


async def test_drain_finishes_in_flight_requests_and_refuses_new_ones(model, start_sidecar, http):
    model.hold = asyncio.Event()  # the model server answers once released below
    sidecar = await start_sidecar(model.url)
    url = f"{base(sidecar)}/v2/models/m/infer"
    pending = asyncio.ensure_future(http.post(url, data=v2_body([[1, 2, 3]])))
    await until(lambda: model.requests)
    assert sidecar.proxy.in_flight == 1
    stopping = asyncio.ensure_future(sidecar.stop())
    await until(lambda: sidecar.proxy.draining)
    async with http.get(f"http://127.0.0.1:{sidecar.metrics_port}/readyz") as resp:
        assert resp.status == 503
    assert not stopping.done() and sidecar.proxy.in_flight == 1  # the drain waits for it
    model.hold.set()
    resp = await pending
    assert resp.status == 200
    await resp.read()
    await asyncio.wait_for(stopping, 5)
    try:
        async with aiohttp.ClientSession() as fresh:
            await fresh.post(url, data=b"{}")
        raise AssertionError("the drained sidecar still accepted a connection")
    except aiohttp.ClientConnectionError:
        pass


async def test_drain_waits_for_a_request_that_starts_as_the_last_one_ends(
    model, start_sidecar, monkeypatch
):
    # The drain wakes a loop turn after the count reached 0: a request that started
    # meanwhile on a kept-alive connection is answered before its connection closes.
    sidecar = await start_sidecar(model.url)
    proxy_ = sidecar.proxy
    sent = capture_dispatch(proxy_, monkeypatch)
    a, _ = fake_client(proxy_)
    b, b_transport = fake_client(proxy_)
    a.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    drain = asyncio.ensure_future(proxy_.drain(5.0))
    await until(lambda: proxy_.draining)  # the drain waits for a's request

    def in_one_turn() -> None:
        answer_ok(a, sent[0])
        b.data_received(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")

    asyncio.get_running_loop().call_soon(in_one_turn)
    await until(lambda: len(sent) == 2)
    assert not drain.done() and not b_transport.closing
    answer_ok(b, sent[1])
    assert await asyncio.wait_for(drain, 5) is True
    assert b_transport.answers() == [b"HTTP/1.1 200 OK"]
    assert b"Connection: close" in bytes(b_transport.written)


@pytest.mark.slow
async def test_process_exits_cleanly_on_sigterm_after_draining(model, tmp_path):
    model.hold = asyncio.Event()  # the model server answers once released below
    port, mport = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vigil.sidecar.main",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(mport),
        "--upstream",
        model.url,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "VIGIL_SIDECAR_CONFIG": ""},
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(15):
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/healthz/live") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.02)
            pending = asyncio.ensure_future(
                session.post(
                    f"http://127.0.0.1:{port}/v2/models/m/infer", data=v2_body([[1, 2, 3]])
                )
            )
            await until(lambda: model.requests, timeout=10)  # in flight, its answer held
            proc.send_signal(signal.SIGTERM)
            # Released only once the sidecar says it drains: the answer must still come.
            lines: list[str] = []
            async with asyncio.timeout(10):
                while not any("draining" in line for line in lines):
                    line = (await proc.stderr.readline()).decode()
                    if not line:
                        break  # exited without draining: the asserts below say so
                    lines.append(line)
            assert not pending.done()
            model.hold.set()
            resp = await asyncio.wait_for(pending, 5)
            assert resp.status == 200
            await resp.read()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        err = "".join(lines) + (await proc.stderr.read()).decode()
        assert "draining" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_idle_and_slow_header_connections_are_closed(model, start_sidecar):
    # The timeout firing is what is tested: short, as nothing here has to beat it.
    sidecar = await start_sidecar(model.url, idle_timeout_seconds=0.1)
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    slow_w.write(b"GET /healthz/live HTTP/1.1\r\n")  # never finishes its head
    try:
        async with asyncio.timeout(5):
            assert await idle_r.read() == b""
            assert await slow_r.read() == b""
    finally:
        idle_w.close()
        slow_w.close()


async def test_the_serving_port_opens_last_so_its_answer_means_everything_is_up(
    model, start_sidecar, monkeypatch
):
    # A probe (or a test) that saw the serving port answer goes on to scrape the
    # metrics port and to send requests that need the monitor and the ids.
    seen: dict[str, bool] = {}
    original = proxy.Proxy.start

    async def start_and_look(self: proxy.Proxy) -> None:
        sidecar = started[0]
        seen["metrics bound"] = sidecar.metrics_runner is not None and bool(
            sidecar.metrics_runner.addresses
        )
        seen["monitor started"] = sidecar.monitor._task is not None
        await original(self)

    started: list = []
    monkeypatch.setattr(proxy.Proxy, "start", start_and_look)
    real_create = Sidecar.create

    def create_and_remember(settings):
        sidecar = real_create(settings)
        started.append(sidecar)
        return sidecar

    monkeypatch.setattr(Sidecar, "create", staticmethod(create_and_remember))
    await start_sidecar(model.url)
    assert seen == {"metrics bound": True, "monitor started": True}


class TestAnsweredProbesCountAsActivity:
    """The idle reaper closes connections by their last activity: a kept-alive connection
    that only carries probes is busy, not idle."""

    async def test_a_liveness_probe(self, model, start_sidecar):
        sidecar = await start_sidecar(model.url)
        client, transport = fake_client(sidecar.proxy)
        sidecar.proxy.clients[client] = 0.0  # active long ago, to the reaper
        before = sidecar.proxy.loop.time()
        client.data_received(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert transport.answers() == [b"HTTP/1.1 200 OK"] and not transport.closing
        assert sidecar.proxy.clients[client] >= before

    async def test_a_readiness_probe_is_busy_until_answered(
        self, model, start_sidecar, monkeypatch
    ):
        sidecar = await start_sidecar(model.url)
        answer = hold_readiness(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        sidecar.proxy.clients[client] = 0.0
        client.data_received(b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sidecar.proxy.clients[client] == proxy._BUSY  # however long the check takes
        before = sidecar.proxy.loop.time()
        task = client.local_task
        assert task is not None
        answer.set()
        await task
        assert transport.answers() == [b"HTTP/1.1 200 OK"] and not transport.closing
        assert before <= sidecar.proxy.clients[client] < proxy._BUSY

    async def test_a_readiness_check_that_raises_is_answered_and_frees_the_connection(
        self, model, start_sidecar, monkeypatch
    ):
        sidecar = await start_sidecar(model.url)

        async def broken() -> tuple[int, bytes]:
            raise ValueError("an answer read_response could not parse")

        monkeypatch.setattr(sidecar.proxy, "readiness", broken)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        task = client.local_task
        assert task is not None
        await task
        assert transport.answers() == [b"HTTP/1.1 503 Service Unavailable"]
        assert sidecar.proxy.clients[client] < proxy._BUSY  # the idle reaper may close it
