"""Flow control and time limits on client connections: a client that does not read its
answers holds no more than one of them in the sidecar, and the model server's time is
counted from the dispatch, the client's upload apart."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest
from sidecar_testkit import FakeTransport, answer_ok, capture_dispatch, scrape, until, value

from vigil.sidecar import proxy
from vigil.sidecar.proxy import _Client
from vigil.sidecar.wire import Response

GET = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
MIB = 1024 * 1024


class BufferedTransport(FakeTransport):
    """A transport with a write buffer: over ``high`` bytes it tells the protocol to pause
    writing, as asyncio's and uvloop's do; ``drain`` is the client reading it all."""

    def __init__(self, high: int = 64 * 1024) -> None:
        super().__init__()
        self.high = high
        self.buffered = 0
        self.protocol: _Client | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        over = self.buffered <= self.high < self.buffered + len(data)
        self.buffered += len(data)
        if over and self.protocol is not None:
            self.protocol.pause_writing()

    def drain(self) -> None:
        over = self.buffered > self.high
        self.buffered = 0
        if over and self.protocol is not None:
            self.protocol.resume_writing()


def buffered_client(sidecar_proxy: proxy.Proxy) -> tuple[_Client, BufferedTransport]:
    client = _Client(sidecar_proxy)
    transport = BufferedTransport()
    transport.protocol = client
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


def answer_big(client: _Client, request: proxy._Request) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MIB
    body = b"x" * MIB
    client.on_response(request, Response(200, head, body, body, True))


class TestAClientThatDoesNotRead:
    @staticmethod
    async def first_of(requests: int, model, start_sidecar, monkeypatch) -> tuple:
        """A sidecar's client that pipelined ``requests`` GETs and got a first answer over
        its transport's mark: (sidecar, the requests dispatched, client, transport)."""
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = buffered_client(sidecar.proxy)
        client.data_received(GET * requests)
        answer_big(client, sent[0])
        return sidecar, sent, client, transport

    async def test_its_next_request_waits_until_it_reads_the_answer(
        self, model, start_sidecar, monkeypatch
    ):
        sidecar, sent, client, transport = await self.first_of(3, model, start_sidecar, monkeypatch)
        # The answer fills the buffer: the pipelined requests stay unparsed, unsent.
        assert len(sent) == 1
        client.data_received(GET * (proxy.PIPELINE_BUFFER // len(GET) + 1))
        assert transport.paused  # and what it sends on piles up to a bound only
        transport.drain()
        assert len(sent) == 2 and not transport.paused
        answer_ok(client, sent[1])  # small: the buffer stays under its mark
        assert len(sent) == 3
        sidecar.proxy.draining = True  # the last answer then closes the connection
        answer_ok(client, sent[2])
        assert transport.closing and sidecar.proxy.in_flight == 0

    async def test_after_a_half_close_the_requests_behind_are_still_answered(
        self, model, start_sidecar, monkeypatch
    ):
        _, sent, client, transport = await self.first_of(2, model, start_sidecar, monkeypatch)
        assert client.eof_received()  # a request is still to be answered: stay open
        assert not transport.closing
        transport.drain()
        answer_ok(client, sent[1])
        assert bytes(transport.written).count(b"HTTP/1.1 200 OK") == 2 and transport.closing

    @pytest.mark.slow  # 40 answers of 1 MiB over a real socket
    async def test_over_tcp_the_sidecar_holds_one_answer_not_all(self, start_sidecar):
        served = 0

        async def model(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    served += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MIB)
                    writer.write(b"x" * MIB)
                    await writer.drain()

        server = await asyncio.start_server(model, "127.0.0.1", 0)
        async with server:
            upstream = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            sidecar = await start_sidecar(upstream)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", sidecar.proxy.port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            pipelined = 40
            writer.write(GET * pipelined)  # and reads nothing for now
            await until(lambda: served >= 1)
            await asyncio.sleep(0.3)  # time enough for the sidecar to go on, if it did
            (client,) = sidecar.proxy.clients
            assert served < pipelined // 2
            assert client.transport.get_write_buffer_size() <= MIB + 128 * 1024
            # Through the 4 KiB window the 40 MiB took ~10 000 tiny segments, a second of CPU.
            # Kernel buffers (doubled: 256 + 128 KiB) still hold under an answer's 1 MiB, so
            # every answer still pauses the sidecar's writing until the client reads it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
            sidecar_sock = client.transport.get_extra_info("socket")
            sidecar_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            for _ in range(pipelined):  # reading now, every answer comes
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                await reader.readexactly(MIB)
            assert served == pipelined
            writer.close()


class ManualTimers:
    """The proxy's loop clock and timers, moved by hand: deadlines without waiting."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = 0.0
        self.due: list[tuple[float, asyncio.Handle]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self.loop)
        self.due.append((self.now + delay, handle))
        return handle

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for when, handle in sorted(self.due, key=lambda item: item[0]):
            if when <= self.now and not handle.cancelled():
                self.due.remove((when, handle))
                handle._run()


def post(body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n + body


class TestTimeLimits:
    """upstream.timeoutSeconds is 1 here."""

    async def started(self, model, start_sidecar, monkeypatch):
        sidecar = await start_sidecar(model.url, upstream_timeout_seconds=1.0)
        timers = ManualTimers(asyncio.get_running_loop())
        monkeypatch.setattr(sidecar.proxy, "loop", timers)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = buffered_client(sidecar.proxy)
        return sidecar, timers, sent, client, transport

    async def test_a_slow_upload_does_not_count_against_the_model(
        self, model, start_sidecar, monkeypatch, http
    ):
        sidecar, timers, sent, client, transport = await self.started(
            model, start_sidecar, monkeypatch
        )
        client.data_received(post(b"{", length=2))
        timers.advance(0.9)  # the client takes its time over the body
        client.data_received(b"}")
        assert len(sent) == 1
        timers.advance(0.9)  # the model answers within its second
        answer_ok(client, sent[0])
        assert transport.answers() == [b"HTTP/1.1 200 OK"]
        m = await scrape(http, sidecar)
        assert value(m, "vigil_upstream_failures_total") == 0

    async def test_the_models_second_runs_from_the_dispatch(
        self, model, start_sidecar, monkeypatch, http
    ):
        sidecar, timers, sent, client, transport = await self.started(
            model, start_sidecar, monkeypatch
        )
        client.data_received(post(b"{}"))
        assert len(sent) == 1
        timers.advance(0.99)
        assert transport.answers() == []
        timers.advance(0.02)
        assert transport.answers() == [b"HTTP/1.1 504 Gateway Timeout"]
        m = await scrape(http, sidecar)
        assert value(m, "vigil_upstream_failures_total", reason="timeout") == 1

    async def test_a_body_that_does_not_come_is_the_clients_fault(
        self, model, start_sidecar, monkeypatch, http
    ):
        sidecar, timers, sent, client, transport = await self.started(
            model, start_sidecar, monkeypatch
        )
        client.data_received(post(b"{", length=2))
        timers.advance(1.01)
        assert sent == [] and transport.answers() == [b"HTTP/1.1 408 Request Timeout"]
        m = await scrape(http, sidecar)
        assert value(m, "vigil_rejected_requests_total", reason="body_timeout") == 1
        assert value(m, "vigil_request_outcomes_total", outcome="rejected") == 1
        assert value(m, "vigil_upstream_failures_total") == 0
