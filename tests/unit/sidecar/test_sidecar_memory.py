"""What a body costs the sidecar's memory (256Mi by default), and the budget of bodies held.

A body is held once on its way through (twice when chunked: as received and decoded),
never sliced or joined into copies: that is counted with tracemalloc on fake
transports, which keep what is written without copying it. Past a budget of
bytes held at once, new requests get 503 with Retry-After, answers 503 without it.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from sidecar_testkit import (
    FakeTransport,
    answer_ok,
    capture_dispatch,
    fake_client,
    scrape,
    sent_upstream,
    value,
)

from vigil.sidecar import proxy as proxy_module
from vigil.sidecar.proxy import _Upstream

SIZE = 4 * 1024 * 1024
PIECE = 64 * 1024
#: Times SIZE a body may cost at its peak: once (with a bytearray's growth margin of an
#: eighth), twice when chunked. Each slice or join of the body would add one.
HELD = {"length": 1.5, "chunked": 2.5}


@pytest.fixture
async def proxied(model, start_sidecar, monkeypatch):
    """A sidecar in front of the fake model, and the requests it would send to it."""
    sidecar = await start_sidecar(model.url)
    return sidecar, capture_dispatch(sidecar.proxy, monkeypatch)


def _post(body_size: int) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_size + (
        b"b" * body_size
    )


def _posted(proxy, body_size: int):
    """A fake client that sent a POST of ``body_size`` bytes, and its transport."""
    client, transport = fake_client(proxy)
    client.data_received(_post(body_size))
    return client, transport


class KeepingTransport(FakeTransport):
    """A fake transport that keeps what is written as is (a real one sends it, or keeps
    it for later): no copy of its own in what the test counts."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes | memoryview] = []

    def write(self, data: bytes | memoryview) -> None:
        self.parts.append(data)

    def sent(self) -> bytes:
        return b"".join(self.parts)


def _framed(framing: str, head: bytes) -> tuple[bytes, list[bytes]]:
    """A message of SIZE bytes of body: its head and its body in PIECE-sized reads."""
    data = b"x" * SIZE
    if framing == "length":
        wire = head + b"Content-Length: %d\r\n\r\n" % SIZE + data
    else:
        chunks = b"".join(
            b"%x\r\n" % PIECE + data[i : i + PIECE] + b"\r\n" for i in range(0, SIZE, PIECE)
        )
        wire = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return wire, [wire[i : i + PIECE] for i in range(0, len(wire), PIECE)]


def _peak(feed: Callable[[], object]) -> int:
    """The most memory allocated at once while ``feed`` runs, beyond what was before."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        feed()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_large_request_is_held_once_on_its_way_to_the_model_server(proxied, framing):
    sidecar, sent = proxied
    client, _ = fake_client(sidecar.proxy)
    wire, pieces = _framed(framing, b"POST /echo HTTP/1.1\r\nHost: x\r\n")
    upstream = _Upstream(sidecar.proxy)
    to_model = KeepingTransport()
    upstream.connection_made(to_model)  # type: ignore[arg-type]

    def forward() -> None:
        for piece in pieces:
            client.data_received(piece)
        upstream.send(client, sent[0], reused=False)

    peak = _peak(forward)
    assert peak < HELD[framing] * SIZE, f"{peak / SIZE:.2f} times the body"
    assert to_model.sent() == wire
    assert sent[0].body == b"x" * SIZE
    answer_ok(client, sent[0])
    assert sidecar.proxy.held == 0


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_large_answer_is_held_once_on_its_way_to_the_client(proxied, framing):
    sidecar, sent = proxied
    client, _ = fake_client(sidecar.proxy)
    to_client = KeepingTransport()
    client.transport = to_client  # type: ignore[assignment]
    client.data_received(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
    upstream = sent_upstream(sidecar.proxy, client, sent[0], transport=KeepingTransport())
    wire, pieces = _framed(framing, b"HTTP/1.1 200 OK\r\n")

    def receive() -> None:
        for piece in pieces:
            upstream.data_received(piece)

    peak = _peak(receive)
    assert peak < HELD[framing] * SIZE, f"{peak / SIZE:.2f} times the body"
    assert to_client.sent() == wire
    assert sidecar.proxy.held == 0


class TestTheBudgetOfBodiesHeld:
    """HELD_BYTES_BUDGET, here 1000 bytes: bodies of requests and answers on their way, and
    answers a client has not read (not the copies queued for monitoring and shadowing)."""

    @pytest.fixture(autouse=True)
    def small_budget(self, monkeypatch):
        monkeypatch.setattr(proxy_module, "HELD_BYTES_BUDGET", 1000)

    async def test_a_request_past_it_gets_503_with_retry_after_and_is_counted(self, proxied, http):
        sidecar, sent = proxied
        first, _ = _posted(sidecar.proxy, 600)
        _, refused = _posted(sidecar.proxy, 600)
        assert len(sent) == 1
        assert refused.answers() == [b"HTTP/1.1 503 Service Unavailable"]
        assert b"\r\nRetry-After: 1\r\n" in refused.written
        assert b"X-Vigil-Error: memory_budget" in refused.written and refused.closing
        m = await scrape(http, sidecar)
        assert value(m, "vigil_rejected_requests_total", reason="memory_budget") == 1
        # Once the first is answered, its body is no longer held: the next one goes.
        answer_ok(first, sent[0])
        third, _ = _posted(sidecar.proxy, 600)
        assert len(sent) == 2
        answer_ok(third, sent[1])

    async def test_a_chunked_request_is_refused_once_past_it(self, proxied):
        sidecar, sent = proxied
        first, _ = _posted(sidecar.proxy, 400)
        second, refused = fake_client(sidecar.proxy)
        second.data_received(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # Counted as received and decoded: 261 + 256 bytes, with the first's 400.
        second.data_received(b"100\r\n" + b"c" * 256 + b"\r\n")
        assert not refused.written
        second.data_received(b"100\r\n" + b"c" * 256 + b"\r\n")
        assert refused.answers() == [b"HTTP/1.1 503 Service Unavailable"]
        assert len(sent) == 1
        answer_ok(first, sent[0])
        assert sidecar.proxy.held == 0

    async def test_a_request_alone_goes_whatever_its_size(self, proxied):
        sidecar, sent = proxied
        client, transport = _posted(sidecar.proxy, 5000)
        assert len(sent) == 1 and not transport.written
        answer_ok(client, sent[0])
        assert sidecar.proxy.held == 0

    async def test_an_answer_past_it_gets_503_and_another_alone_goes(self, proxied):
        sidecar, sent = proxied
        clients, upstreams = [], []
        for _ in range(2):
            client, transport = fake_client(sidecar.proxy)
            client.data_received(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(transport)
            upstreams.append(sent_upstream(sidecar.proxy, client, sent[-1]))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1200\r\n\r\n"
        upstreams[0].data_received(head + b"a" * 700)
        upstreams[1].data_received(head + b"a" * 700)  # 1400 held with the first's
        assert clients[1].answers() == [b"HTTP/1.1 503 Service Unavailable"]
        # The model server ran the request already: no invitation to run it again.
        assert b"Retry-After" not in clients[1].written
        assert b"X-Vigil-Error: upstream_memory_budget" in clients[1].written
        assert upstreams[1].transport.closing  # type: ignore[union-attr]
        upstreams[0].data_received(b"a" * 500)  # alone: its 1200 bytes go
        assert clients[0].answers() == [b"HTTP/1.1 200 OK"]
        assert sidecar.proxy.held == 0

    async def test_answers_a_client_has_not_read_count_until_it_reads_them(self, proxied):
        # Not counted, clients that read nothing took the sidecar past its 256Mi: eight
        # answers of 24 MiB written, none read, RSS 271 MB, and no request refused.
        sidecar, sent = proxied
        slow, transport = fake_client(sidecar.proxy)
        transport.unsent = 900
        slow.pause_writing()  # its buffer full: 900 bytes of answers it has not read
        _, refused = _posted(sidecar.proxy, 600)
        assert refused.answers() == [b"HTTP/1.1 503 Service Unavailable"] and not sent
        transport.unsent = 0
        slow.resume_writing()  # read at last
        client, _ = _posted(sidecar.proxy, 600)
        assert len(sent) == 1
        answer_ok(client, sent[0])
        assert sidecar.proxy.held == 0

    async def test_a_reader_that_takes_nothing_is_cut_off_by_the_reaper_and_counts_no_more(
        self, proxied
    ):
        # Closed, its buffer never empties and its connection is never lost: counted for
        # good, every later request would get 503.
        sidecar, sent = proxied
        slow, transport = fake_client(sidecar.proxy)
        transport.unsent = 900
        slow.pause_writing()
        slow.reap(0.0, 75.0)  # closed: what it has not read may still go
        assert transport.closing and not transport.aborted
        slow.reap(74.0, 75.0)
        assert not transport.aborted
        slow.reap(75.0, 75.0)  # nothing taken for another idle timeout: cut off
        assert transport.aborted
        slow.connection_lost(None)
        client, _ = _posted(sidecar.proxy, 600)
        assert len(sent) == 1
        answer_ok(client, sent[0])
        assert sidecar.proxy.held == 0

    async def test_a_client_closed_after_its_answer_is_looked_at_by_the_reaper_too(self, proxied):
        # Closed after a Connection: close answer it did not read, it stayed marked busy:
        # never reaped, its 900 bytes counted for ever and every request refused.
        sidecar, sent = proxied
        slow, transport = fake_client(sidecar.proxy)
        slow.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer_ok(slow, sent[0])
        transport.unsent = 900
        slow.pause_writing()
        assert transport.closing and sidecar.proxy.clients[slow] < float("inf")
        transport.unsent = 0
        slow.connection_lost(None)

    async def test_a_slow_reader_still_reading_is_closed_not_cut_off(self, proxied):
        sidecar, _ = proxied
        slow, transport = fake_client(sidecar.proxy)
        transport.unsent = 900
        slow.pause_writing()
        slow.reap(0.0, 75.0)
        transport.unsent = 500  # it reads, slowly: its window reopened once in a minute
        slow.reap(60.0, 75.0)
        slow.reap(130.0, 75.0)
        assert transport.closing and not transport.aborted
        transport.unsent = 0  # it has read all: the connection ends
        slow.connection_lost(None)
        assert sidecar.proxy.held == 0

    async def test_a_body_admitted_at_its_head_is_never_refused_half_sent(self, proxied):
        # A small request admitted while a large one uploaded made the large one's next
        # read go past the budget: 100 Continue, then 503 after most of it was sent.
        sidecar, sent = proxied
        big, big_transport = fake_client(sidecar.proxy)
        whole = _post(900)
        head_end = whole.index(b"\r\n\r\n") + 4
        big.data_received(whole[: head_end + 500])
        small, _ = _posted(sidecar.proxy, 200)
        big.data_received(whole[head_end + 500 :])
        assert len(sent) == 2 and not big_transport.answers()
        for request in sent:
            answer_ok(small if request.body == b"b" * 200 else big, request)
        assert sidecar.proxy.held == 0

    async def test_a_head_holds_nothing_until_its_body_comes(self, proxied):
        # Heads declaring large bodies and sending none held the budget until the body
        # timeout (60 s): every other request with a body got 503 meanwhile.
        sidecar, sent = proxied
        waiting, _ = fake_client(sidecar.proxy)
        waiting.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n")
        assert sidecar.proxy.held == 0
        client, transport = _posted(sidecar.proxy, 600)
        assert len(sent) == 1 and not transport.written
        # The waiting body counts as it comes (admitted at its head, it goes on whole).
        waiting.data_received(b"b" * 300)
        assert sidecar.proxy.held == 900
        waiting.data_received(b"b" * 600)
        assert len(sent) == 2
        answer_ok(client, sent[0])
        answer_ok(waiting, sent[1])
        assert sidecar.proxy.held == 0

    async def test_a_declared_length_that_does_not_fit_is_refused_at_the_head(self, proxied):
        sidecar, sent = proxied
        first, _ = _posted(sidecar.proxy, 600)
        second, refused = fake_client(sidecar.proxy)
        second.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n")
        assert refused.answers() == [b"HTTP/1.1 503 Service Unavailable"]
        answer_ok(first, sent[0])
        assert sidecar.proxy.held == 0

    async def test_copies_queued_for_monitoring_and_shadowing_refuse_no_request(
        self, proxied, monkeypatch
    ):
        # Their queues have their own bounds and drop copies when full; counted here, a
        # slow monitor or shadow target turned live requests away.
        sidecar, sent = proxied
        monkeypatch.setattr(sidecar.monitor, "queued_bytes", 900)
        monkeypatch.setattr(sidecar.shadow, "held_bytes", 900)
        client, transport = _posted(sidecar.proxy, 600)
        assert len(sent) == 1 and not transport.written
        answer_ok(client, sent[0])
        assert sidecar.proxy.held == 0

    async def test_a_chunked_answer_leaves_nothing_on_its_idle_connection(self, proxied):
        # Its scanner held the decoded body: kept on the idle connection (outside the
        # budget), and counted by the next answer on it whose head came in pieces.
        sidecar, sent = proxied
        client, transport = fake_client(sidecar.proxy)
        client.data_received(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
        upstream = sent_upstream(sidecar.proxy, client, sent[-1])
        upstream.data_received(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"320\r\n"
            + b"a" * 800
            + b"\r\n0\r\n\r\n"
        )
        assert transport.answers() == [b"HTTP/1.1 200 OK"]
        assert upstream.chunks is None
        # Another request holds 600 bytes; the next answer on the connection comes in pieces.
        other, _ = _posted(sidecar.proxy, 600)
        client.data_received(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
        upstream.send(client, sent[-1], reused=True)
        upstream.data_received(b"HTTP/1.1 200 OK\r\nContent-")
        upstream.data_received(b"Length: 2\r\n\r\nok")
        assert transport.answers() == [b"HTTP/1.1 200 OK"] * 2
        answer_ok(other, sent[1])
        assert sidecar.proxy.held == 0


async def test_what_a_client_has_not_taken_counts_the_kernels_send_queue_too() -> None:
    # The transport's buffer alone stood still for 25 s while a slow reader drained the
    # kernel's megabytes: the reaper took it for one that reads nothing and cut it off.
    import asyncio

    accepted: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)  # type: ignore[arg-type]

    server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)  # reads nothing
    transport = await accepted
    try:
        transport.write(b"x" * (8 << 20))  # the kernel takes its share at once
        in_kernel = proxy_module._unacknowledged(transport) - transport.get_write_buffer_size()
        assert in_kernel > 0
    finally:
        transport.abort()
        writer.close()
        server.close()
