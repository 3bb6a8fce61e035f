"""Closing client connections: the last answer says so, nothing after it is served,
and nothing complete before it is left unanswered."""

import asyncio

import pytest
from sidecar_testkit import answer_ok, capture_dispatch, fake_client, hold_readiness

from vigil.devcluster.common import free_port
from vigil.sidecar import proxy

ECHO = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"


async def _exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request``; the answer's head, and what follows until the sidecar closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        return head, await reader.read()
    finally:
        writer.close()


class TestTheLastAnswerSaysConnectionClose:
    async def test_a_model_answer_while_draining(self, model, start_sidecar):
        # During shutdown.delaySeconds a pooled client must not send its next request here.
        sidecar = await start_sidecar(model.url)
        sidecar.proxy.draining = True
        head, rest = await _exchange(sidecar.proxy.port, ECHO)
        assert head.startswith(b"HTTP/1.1 200") and rest == b"hi"
        assert b"\r\nconnection: close\r\n" in head.lower()
        assert b"keep-alive" not in head.lower()

    async def test_an_upstream_error_while_draining(self, start_sidecar):
        sidecar = await start_sidecar(f"http://127.0.0.1:{free_port()}")
        sidecar.proxy.draining = True
        head, _ = await _exchange(sidecar.proxy.port, ECHO)
        assert head.startswith(b"HTTP/1.1 503")
        assert b"\r\nconnection: close\r\n" in head.lower()

    def test_the_model_servers_connection_header_is_replaced(self):
        from vigil.sidecar.wire import with_connection_close

        raw = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"
        assert with_connection_close(raw) == (
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        )


class TestNothingIsServedAfterTheClose:
    async def test_a_request_behind_a_health_check_that_closes(
        self, model, start_sidecar, monkeypatch
    ):
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(
            b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + ECHO
        )
        assert transport.answers() == [b"HTTP/1.1 200 OK"] and transport.closing
        assert sent == [] and sidecar.proxy.in_flight == 0


class TestReading:
    async def test_resumes_after_a_readiness_check_behind_a_full_pipeline(
        self, model, start_sidecar, monkeypatch
    ):
        sidecar = await start_sidecar(model.url)
        answer = hold_readiness(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        big = 2 * proxy.PIPELINE_BUFFER
        client.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)
        client.data_received(b"x" * (proxy.PIPELINE_BUFFER + 1))
        assert transport.paused  # a full pipeline behind the check
        task = client.local_task
        assert task is not None
        answer.set()
        await task
        assert transport.answers() == [b"HTTP/1.1 200 OK"]
        assert not transport.paused  # the rest of the POST body can come in
        client.connection_lost(None)


class TestAfterTheClientHalfCloses:
    @pytest.mark.parametrize("pipelined", [1, 3])
    async def test_every_complete_request_is_answered_then_the_connection_closes(
        self, model, start_sidecar, monkeypatch, pipelined
    ):
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(ECHO * pipelined)
        assert client.eof_received()  # a request in flight: keep the connection open
        for n in range(pipelined):
            assert not transport.closing
            assert len(sent) == n + 1
            answer_ok(client, sent[n])
        heads = bytes(transport.written).split(b"ok")[:-1]
        assert len(heads) == pipelined and transport.closing
        assert [b"Connection: close" in head for head in heads] == [False] * (pipelined - 1) + [
            True
        ]

    async def test_an_incomplete_request_left_behind_is_not_waited_for(
        self, model, start_sidecar, monkeypatch
    ):
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(ECHO + ECHO[:-1])
        assert client.eof_received()
        answer_ok(client, sent[0])
        assert transport.answers() == [b"HTTP/1.1 200 OK"] and transport.closing
        assert len(sent) == 1
        client.connection_lost(None)
        assert sidecar.proxy.in_flight == 0
