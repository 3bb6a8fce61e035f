"""Answers reach the client whole: after a HEAD request, and while the sidecar shuts down."""

import asyncio
import socket

import pytest
from sidecar_testkit import answer_ok, capture_dispatch, fake_client, until

from vigil.devcluster.common import free_port

#: Larger than loopback's socket buffers together: part of it waits in the sidecar.
BIG = 12 * 1024 * 1024


async def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on one connection and read until the sidecar closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def _answers(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(status line, what follows its head up to the next status line) of each answer."""
    out = []
    for part in raw.split(b"HTTP/1.1 ")[1:]:
        head, _, rest = part.partition(b"\r\n\r\n")
        out.append((head.split(b"\r\n")[0], rest))
    return out


async def test_head_requests_to_the_health_endpoints_get_no_body(model, start_sidecar):
    # A body after a HEAD answer is read as the next answer's status line (aiohttp:
    # BadStatusLine), and the keep-alive connection is lost.
    sidecar = await start_sidecar(model.url)
    for path in (b"/healthz/live", b"/healthz/ready"):
        raw = await _exchange(
            sidecar.proxy.port,
            b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path
            + b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        answers = _answers(raw)
        assert [status for status, _ in answers] == [b"200 OK", b"200 OK"], raw
        assert answers[0][1] == b"" and answers[1][1] == b'{"alive":true}', raw
        assert b"Content-Length: " in raw.split(b"\r\n\r\n")[0]


async def test_a_head_request_the_model_server_cannot_answer_gets_its_error_head_alone(
    start_sidecar,
):
    sidecar = await start_sidecar(f"http://127.0.0.1:{free_port()}")  # nothing listens
    raw = await _exchange(
        sidecar.proxy.port,
        b"HEAD /v2/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    answers = _answers(raw)
    assert [status for status, _ in answers] == [b"503 Service Unavailable", b"200 OK"], raw
    assert answers[0][1] == b"", raw


async def test_a_head_request_the_sidecar_rejects_gets_its_head_alone(model, start_sidecar):
    sidecar = await start_sidecar(model.url, max_body_bytes=10)
    raw = await _exchange(
        sidecar.proxy.port, b"HEAD /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"Content-Length: " in head
    assert body == b""


async def _answered_unread(start_sidecar, monkeypatch):
    """A sidecar whose one client was answered and has read none of it: (proxy, the
    client's transport, the client)."""
    sidecar = await start_sidecar("http://127.0.0.1:9")
    proxy_ = sidecar.proxy
    sent = capture_dispatch(proxy_, monkeypatch)
    client, transport = fake_client(proxy_)
    client.data_received(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    answer_ok(client, sent[0])
    transport.unsent = 1_000_000
    return proxy_, transport, client


async def test_a_drain_waits_until_the_last_answer_has_left(start_sidecar, monkeypatch):
    # An answer is written whole to the transport; what a slow reader has not taken
    # yet is in its buffer, and the process exiting after the drain cut it off.
    proxy_, transport, _client = await _answered_unread(start_sidecar, monkeypatch)
    drain = asyncio.ensure_future(proxy_.drain(5.0))
    await asyncio.sleep(0.1)
    assert not drain.done() and not transport.closing
    transport.unsent = 0
    assert await asyncio.wait_for(drain, 5) is True
    assert transport.closing


async def test_a_drain_gives_up_on_a_client_that_never_reads_at_its_timeout(
    start_sidecar, monkeypatch
):
    proxy_, transport, client = await _answered_unread(start_sidecar, monkeypatch)
    assert await asyncio.wait_for(proxy_.drain(0.05), 5) is False
    assert transport.closing
    client.connection_lost(None)  # what the transport's close ends in


@pytest.mark.slow
async def test_a_slow_reader_gets_its_whole_answer_when_the_sidecar_stops(model, start_sidecar):
    sidecar = await start_sidecar(model.url, max_body_bytes=BIG)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", sidecar.proxy.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG)
    writer.write(b"x" * BIG)
    await reader.readuntil(b"\r\n\r\n")
    transports = [c.transport for c in sidecar.proxy.clients if c.transport is not None]
    await until(lambda: sum(t.get_write_buffer_size() for t in transports) > 0)
    # What is still in the sidecar when the drain ends is what an exiting process cuts off.
    left: list[int] = []
    drain = asyncio.ensure_future(sidecar.proxy.drain(10.0))
    drain.add_done_callback(
        lambda _: left.append(sum(t.get_write_buffer_size() for t in transports))
    )
    got = 0
    while chunk := await reader.read(65536):
        got += len(chunk)
        await asyncio.sleep(0.001)
    assert await drain is True
    assert left == [0] and got == BIG
    writer.close()
