"""The shadow copies' raw-protocol client (``vigil.sidecar.target``) and what the target sees.

A scripted loopback server answers each request with bytes chosen by the
test, so that framing (Content-Length, chunked, end of connection, interim
1xx), keep-alive reuse, stale connections, broken HTTP and timeouts are all
exercised without an HTTP library in between.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable

import pytest
from sidecar_testkit import FakeModel, base, scrape, settle, v2_body, value

from vigil.sidecar import wire
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.target import TargetClient, TargetError

ROWS = [[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0]]
#: Named as the fake model names its output: the comparison reads outputs by name.
ANSWER = json.dumps(
    {"outputs": [{"name": "predict", "shape": [3, 1], "datatype": "INT64", "data": [0, 1, 2]}]}
).encode()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


class Scripted:
    """Loopback server: ``reply(request_bytes) -> bytes | None`` (None: close without answer)."""

    def __init__(self, reply: Callable[[bytes], bytes | None], close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in self.writers:
                w.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def make(reply: Callable[[bytes], bytes | None], close_after: bool = False) -> Scripted:
        server = Scripted(reply, close_after)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


def post(body: bytes = b"{}") -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body


async def test_keep_alive_connection_is_reused(scripted) -> None:
    server = scripted(lambda _: ok(ANSWER))
    port = await server.start()
    client = TargetClient()
    for _ in range(5):
        resp = await client.request("127.0.0.1", port, post(), False)
        assert (resp.status, resp.body, resp.content_type) == (200, ANSWER, "application/json")
    assert server.connections == 1
    client.close()


@pytest.mark.parametrize(
    "answer, body",
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"[1]"), b"[1]"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", b"busy"),
    ],
    ids=["chunked", "interim-100", "no-content", "error-status"],
)
async def test_answers_are_framed(scripted, answer: bytes, body: bytes) -> None:
    server = scripted(lambda _: answer)
    port = await server.start()
    client = TargetClient()
    resp = await client.request("127.0.0.1", port, post(), False)
    assert resp.body == body
    resp = await client.request("127.0.0.1", port, post(), False)  # and the connection goes on
    assert resp.body == body
    assert server.connections == 1
    client.close()


async def test_answer_delimited_by_the_end_of_the_connection(scripted) -> None:
    server = scripted(
        lambda _: b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nuntil close", close_after=True
    )
    port = await server.start()
    client = TargetClient()
    resp = await client.request("127.0.0.1", port, post(), False)
    assert (resp.body, resp.content_encoding) == (b"until close", "gzip")
    assert client.idle == []  # not reusable


async def test_stale_keep_alive_connection_is_retried_once_on_a_fresh_one(
    scripted, monkeypatch
) -> None:
    # Closed as the request came (a server closing it while idle): however loaded the loop.
    monkeypatch.setattr(wire, "STALE_RETRY_SECONDS", 60.0)
    answers = iter([ok(b"[1]"), None, ok(b"[2]")])  # the 2nd request finds the old connection dead
    server = scripted(lambda _: next(answers))
    port = await server.start()
    client = TargetClient()
    assert (await client.request("127.0.0.1", port, post(), False)).body == b"[1]"
    assert (await client.request("127.0.0.1", port, post(), False)).body == b"[2]"
    assert server.connections == 2 and len(server.requests) == 3


async def test_a_copy_the_target_read_before_dropping_the_connection_is_not_resent(
    scripted, monkeypatch
) -> None:
    """Lost after the target may have run it (its sidecar killed, say): the candidate ran
    and counted the copy twice, and a failure that happened once was hidden."""
    monkeypatch.setattr(wire, "STALE_RETRY_SECONDS", 0.0)
    answers = iter([ok(b"[1]"), None, ok(b"[2]")])
    server = scripted(lambda _: next(answers))
    port = await server.start()
    client = TargetClient()
    assert (await client.request("127.0.0.1", port, post(), False)).body == b"[1]"
    with pytest.raises(TargetError, match="without an answer"):
        await client.request("127.0.0.1", port, post(), False)
    assert len(server.requests) == 2


async def test_broken_answers_raise_target_error(scripted) -> None:
    server = scripted(lambda _: b"SPDY/9 nonsense\r\n\r\n")
    port = await server.start()
    client = TargetClient()
    with pytest.raises(TargetError):
        await client.request("127.0.0.1", port, post(), False)
    closing = scripted(lambda _: None)  # closes a fresh connection without answering
    port = await closing.start()
    with pytest.raises(TargetError):
        await client.request("127.0.0.1", port, post(), False)


async def test_refused_connection_is_an_os_error() -> None:
    with pytest.raises(OSError):
        await TargetClient().request("127.0.0.1", 9, post(), False)


async def test_a_timed_out_exchange_closes_its_connection() -> None:
    """A late answer must never be read as the answer to the next copy."""
    gate = asyncio.Event()
    closed = asyncio.Event()

    async def slow_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await gate.wait()
        writer.write(ok(b'"late"'))
        if await reader.read() == b"":  # the client closed the connection
            closed.set()
        writer.close()

    server = await asyncio.start_server(slow_serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = TargetClient()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.request("127.0.0.1", port, post(b""), False)
    assert client.idle == []
    gate.set()
    async with asyncio.timeout(2):
        await closed.wait()
    server.close()


async def test_idle_connections_to_another_target_are_not_reused(scripted) -> None:
    a, b = scripted(lambda _: ok(b'"a"')), scripted(lambda _: ok(b'"b"'))
    port_a, port_b = await a.start(), await b.start()
    client = TargetClient()
    assert (await client.request("127.0.0.1", port_a, post(), False)).body == b'"a"'
    assert (await client.request("127.0.0.1", port_b, post(), False)).body == b'"b"'
    assert (await client.request("127.0.0.1", port_a, post(), False)).body == b'"a"'
    client.close()


# ---------------------------------------------------------------- through the sidecar


async def test_target_receives_the_copy_with_its_headers_under_the_target_path(
    model, scripted, start_sidecar, http
) -> None:
    target = scripted(lambda _: ok(ANSWER))
    port = await target.start()
    sidecar = await start_sidecar(
        model.url,
        shadow=ShadowSettings(
            target=f"http://127.0.0.1:{port}/prefix/", target_revision="t", percent=100
        ),
    )
    raw = gzip.compress(v2_body(ROWS))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with http.post(f"{base(sidecar)}/v2/models/m/infer?x=1", data=raw, headers=headers) as r:
        assert r.status == 200
    await settle(sidecar)
    head, _, body = target.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /prefix/v2/models/m/infer?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert b"X-Vigil-Shadow: 1" in lines and b"Content-Encoding: gzip" in lines
    assert body == raw  # as the client sent it
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_requests_total", outcome="compared") == 1
    assert value(m, "vigil_shadow_agreements_total", target_revision="t") == 3


@pytest.mark.parametrize(
    "answer, outcome",
    [
        (ok(gzip.compress(ANSWER), b"Content-Encoding: gzip\r\n"), "compared"),
        (ok(ANSWER, b"Content-Encoding: br\r\n"), "unparseable"),
        (ok(b"not json"), "unparseable"),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", "target_error"),
        (b"garbage\r\n\r\n", "unreachable"),
        (ok(b'{"outputs": [{"shape": [1], "data": [0]}]}'), "mismatch"),
    ],
    ids=["gzip", "unknown-encoding", "not-json", "500", "not-http", "mismatch"],
)
async def test_target_answers_are_counted_by_outcome(
    model: FakeModel, scripted, start_sidecar, http, answer: bytes, outcome: str
) -> None:
    target = scripted(lambda _: answer)
    port = await target.start()
    sidecar = await start_sidecar(
        model.url,
        shadow=ShadowSettings(target=f"http://127.0.0.1:{port}", target_revision="t", percent=100),
    )
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
        assert r.status == 200
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_requests_total", target_revision="t", outcome=outcome) == 1


async def test_slow_target_times_out(model, start_sidecar, http) -> None:
    slow = FakeModel()
    slow.delay = 0.6  # well past the copy's 0.1 s timeout
    await slow.start()
    try:
        # The timeout firing is what is tested: short, as nothing has to beat it.
        sidecar = await start_sidecar(
            model.url,
            shadow=ShadowSettings(
                target=slow.url, target_revision="t", percent=100, timeout_seconds=0.1
            ),
        )
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
            pass
        await settle(sidecar)  # the copy's comparison included: it ends at its timeout
        m = await scrape(http, sidecar)
        assert value(m, "vigil_shadow_requests_total", outcome="timeout") == 1
    finally:
        await slow.stop()


async def test_identical_answers_are_parsed_once_and_still_compared(
    model, start_sidecar, http, monkeypatch
) -> None:
    from vigil.sidecar import shadow as shadow_module

    calls: list[bytes] = []
    real = shadow_module.parse_response

    def counting(protocol, body, content_type, classification, **extra):  # type: ignore[no-untyped-def]
        calls.append(body)
        return real(protocol, body, content_type, classification, **extra)

    monkeypatch.setattr(shadow_module, "parse_response", counting)
    sidecar = await start_sidecar(
        model.url, shadow=ShadowSettings(target=model.url, target_revision="same", percent=100)
    )
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
        pass
    await settle(sidecar)
    assert len(calls) == 1
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_agreements_total", target_revision="same") == 3


async def test_an_answer_delimited_by_the_end_but_cut_by_a_reset_is_an_error() -> None:
    # Only a clean end of the connection ends such an answer: half a prediction compared
    # with the stable's whole one would count as a disagreement.
    from sidecar_testkit import FakeTransport

    from vigil.sidecar.target import _Connection

    client = TargetClient()
    connection = _Connection(client, ("127.0.0.1", 1))
    connection.connection_made(FakeTransport())  # type: ignore[arg-type]
    waiter: asyncio.Future = asyncio.get_running_loop().create_future()
    connection.send(b"POST / HTTP/1.1\r\n\r\n", waiter, no_body=False, reused=False)
    connection.data_received(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"out')
    connection.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(TargetError, match="reset"):
        await waiter
