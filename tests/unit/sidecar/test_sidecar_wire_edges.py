"""HTTP/1.1 edge cases of the protocol-based proxy, against raw loopback servers."""

import asyncio

from sidecar_testkit import (
    answer_ok,
    base,
    capture_dispatch,
    fake_client,
    scrape,
    sent_upstream,
    until,
    value,
)


async def _raw_server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return head, await reader.readexactly(length)


def _sent_upstream(sidecar, monkeypatch, request, *, reused=False):
    """A request from a fake client sent on a fake upstream connection: (client, its
    transport, the upstream connection, the request sent)."""
    sent = capture_dispatch(sidecar.proxy, monkeypatch)
    client, transport = fake_client(sidecar.proxy)
    client.data_received(request)
    return client, transport, sent_upstream(sidecar.proxy, client, sent[0], reused=reused), sent[0]


async def test_pipelined_requests_are_answered_in_order(model, start_sidecar):
    sidecar = await start_sidecar(model.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    try:
        bodies = [b"one", b"two-two", b"three"]
        writer.write(
            b"".join(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
                for b in bodies
            )
        )
        for expected in bodies:
            head, body = await _read_response(reader)
            assert head.startswith(b"HTTP/1.1 200") and body == expected
    finally:
        writer.close()


async def test_close_delimited_and_interim_responses_from_upstream(start_sidecar, http):
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    server, url = await _raw_server(handler)
    try:
        sidecar = await start_sidecar(url)
        for _ in range(2):  # the sidecar opens a fresh upstream connection each time
            async with http.get(f"{base(sidecar)}/anything") as resp:
                assert resp.status == 200
                assert await resp.read() == b"until the end"
    finally:
        server.close()


async def test_close_delimited_answer_cut_by_a_reset_is_a_502(
    model, start_sidecar, http, monkeypatch
):
    # Only a clean end of the connection ends such an answer; a reset means it is cut short.
    sidecar = await start_sidecar(model.url)
    get = b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n"
    _, transport, upstream, _ = _sent_upstream(sidecar, monkeypatch, get)
    upstream.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe first half")
    upstream.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    assert transport.answers() == [b"HTTP/1.1 502 Bad Gateway"]
    assert b"the first half" not in transport.written
    m = await scrape(http, sidecar)
    assert value(m, "vigil_upstream_failures_total", reason="reset") == 1


async def test_stale_keep_alive_connection_is_retried_once(start_sidecar, http):
    """The model server closes idle connections; the next request must not fail."""
    served = 0
    closed = asyncio.Queue()

    async def handler(reader, writer):
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # Back in the sidecar's pool of idle connections (the sidecar runs by now).
        await until(lambda: any(not upstream.closed for upstream in sidecar.proxy.idle))
        writer.close()  # keep-alive promised, then closed while idle
        await writer.wait_closed()
        closed.put_nowait(served)

    server, url = await _raw_server(handler)
    try:
        sidecar = await start_sidecar(url)
        for n in range(1, 4):
            async with http.get(f"{base(sidecar)}/x") as resp:
                assert resp.status == 200 and await resp.read() == b"ok"
            assert await asyncio.wait_for(closed.get(), 5) == n  # its connection is stale now
        assert served == 3
    finally:
        server.close()


async def test_a_post_the_model_server_read_before_dropping_the_connection_is_not_resent(
    start_sidecar, http
):
    """A kept-alive connection lost after the model server read the request and worked on
    it: the request may have had its effect (or killed a worker), and is not sent again."""
    received: list[bytes] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def handler(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            received.append(await reader.readexactly(length))
            if received[-1] == b"poison":
                await asyncio.sleep(0.05)  # works on it, then the worker dies
                writer.transport.abort()
                return
            writer.write(answer)
            await writer.drain()

    server, url = await _raw_server(handler)
    try:
        sidecar = await start_sidecar(url)
        for body, status in ((b"fine", 200), (b"poison", 502)):  # the second on a reused one
            async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body) as resp:
                assert resp.status == status
        assert received == [b"fine", b"poison"]
        m = await scrape(http, sidecar)
        assert value(m, "vigil_upstream_failures_total", reason="reset") == 1
    finally:
        server.close()


async def test_a_post_on_a_connection_lost_as_it_was_written_is_retried(
    model, start_sidecar, monkeypatch
):
    """The model server closed the kept-alive connection while idle, its FIN crossing the
    request: the connection is lost at once, and the request goes again on a fresh one."""
    sidecar = await start_sidecar(model.url)
    resent: list[object] = []
    monkeypatch.setattr(sidecar.proxy, "connect_and_send", lambda c, r: resent.append(r))
    post = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    client, transport, upstream, sent = _sent_upstream(sidecar, monkeypatch, post, reused=True)
    upstream.connection_lost(None)
    assert resent == [sent] and not transport.written
    answer_ok(client, sent)


async def test_a_chunked_answer_with_a_content_length_reaches_the_client_without_it(
    model, start_sidecar, monkeypatch
):
    """RFC 9112 6.3: Transfer-Encoding overrides Content-Length, and a proxy removes the
    length: a client that framed the answer by it would misread the connection."""
    sidecar = await start_sidecar(model.url)
    get = b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n"
    _, transport, upstream, _ = _sent_upstream(sidecar, monkeypatch, get)
    upstream.data_received(
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert b"Content-Length" not in head and b"Transfer-Encoding: chunked" in head
    assert body == b"2\r\nok\r\n0\r\n\r\n"


async def test_empty_lines_before_a_request_line_are_ignored(model, start_sidecar, monkeypatch):
    """RFC 9112 2.2: a server SHOULD ignore at least one CRLF before the request-line (some
    clients send one after a body): not a 400 and a closed connection."""
    sidecar = await start_sidecar(model.url)
    sent = capture_dispatch(sidecar.proxy, monkeypatch)
    client, transport = fake_client(sidecar.proxy)
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    client.data_received(b"\r\n" + post + b"\r\n\r\n" + post)
    assert len(sent) == 1 and sent[0].head.raw.startswith(b"POST /echo ")
    answer_ok(client, sent[0])
    assert len(sent) == 2 and sent[1].body == b"hi"
    answer_ok(client, sent[1])
    assert transport.written.count(b"HTTP/1.1 200 OK") == 2 and not transport.closing


async def test_head_request_has_no_body(model, start_sidecar):
    sidecar = await start_sidecar(model.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    try:
        for _ in range(2):
            writer.write(b"HEAD /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_client_gone_mid_request_is_recorded_and_nothing_breaks(model, start_sidecar, http):
    model.hold = asyncio.Event()  # the model server answers once released below
    sidecar = await start_sidecar(model.url)
    _, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    body = b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}'
    writer.write(
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    await writer.drain()
    await until(lambda: model.requests)
    writer.close()
    # The sidecar sees the client go (its end of the connection read, or lost) mid-request.
    await until(lambda: all(client.eof or client.closed for client in sidecar.proxy.clients))
    assert sidecar.proxy.in_flight == 1
    model.hold.set()
    async with asyncio.timeout(5):  # the model answers; nobody reads it
        while not value(await scrape(http, sidecar), "vigil_requests_total", outcome="success"):
            await asyncio.sleep(0.02)
    assert sidecar.proxy.in_flight == 0
    async with http.get(f"{base(sidecar)}/healthz/live") as resp:
        assert resp.status == 200
    # Counted once, as answered: nothing more for it after the client's connection closed.
    m = await scrape(http, sidecar)
    assert value(m, "vigil_requests_total", endpoint="infer") == 1
    assert value(m, "vigil_requests_total", outcome="success", endpoint="infer") == 1


async def test_slow_request_body_times_out_with_408(model, start_sidecar):
    # The timeout firing is what is tested: short, as nothing here has to beat it.
    sidecar = await start_sidecar(model.url, upstream_timeout_seconds=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    try:
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 408 Request Timeout")
        assert b"Connection: close" in head
        assert sidecar.proxy.in_flight == 0
    finally:
        writer.close()


class TestTakingTheFinalResponseHead:
    """wire.take_final_response_head: the framing the proxy and the shadow client share."""

    def test_interim_answers_are_skipped_and_the_body_stays(self) -> None:
        from vigil.sidecar.wire import take_final_response_head

        buf = bytearray(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        taken = take_final_response_head(buf)
        assert taken is not None
        head, raw = taken
        assert head.status == 200 and head.content_length == 2
        assert raw.startswith(b"HTTP/1.1 200 OK") and raw.endswith(b"\r\n\r\n")
        assert bytes(buf) == b"ok"

    def test_a_head_still_arriving_is_left_for_later(self) -> None:
        from vigil.sidecar.wire import take_final_response_head

        buf = bytearray(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le")
        assert take_final_response_head(buf) is None
        assert bytes(buf) == b"HTTP/1.1 200 OK\r\nContent-Le"  # the interim one is gone
        buf += b"ngth: 0\r\n\r\n"
        taken = take_final_response_head(buf)
        assert taken is not None and taken[0].status == 200 and not buf

    def test_an_oversized_head_or_endless_interim_answers_are_refused(self) -> None:
        import pytest

        from vigil.sidecar.wire import MAX_HEADER_BYTES, BadMessage, take_final_response_head

        with pytest.raises(BadMessage, match="too large"):
            take_final_response_head(bytearray(b"H" * (MAX_HEADER_BYTES + 1)))
        with pytest.raises(BadMessage, match="interim"):
            take_final_response_head(bytearray(b"HTTP/1.1 102 Processing\r\n\r\n" * 11))
