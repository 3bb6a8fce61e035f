"""Chunked bodies: each byte is framed once, and what a body may hold is bounded.

The proxy runs on one event loop: rescanning a body from its start on every read
would make a body in small pieces cost quadratic CPU for every connection. The
work is counted here (chunk-size lines read), never timed.
"""

from collections.abc import Iterator

import pytest
from sidecar_testkit import answer_ok, capture_dispatch, fake_client

from vigil.sidecar import wire
from vigil.sidecar.wire import BadMessage, ResponseConnection

CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKS = 1000
BODY = b"1\r\nX\r\n" * CHUNKS + b"0\r\n\r\n"


def _pieces(data: bytes) -> Iterator[bytes]:
    """``data`` cut in pieces of 1 to 7 bytes: lines and CRLFs split every which way."""
    pos, step = 0, 0
    while pos < len(data):
        step = step % 7 + 1
        yield data[pos : pos + step]
        pos += step


@pytest.fixture
def size_lines_read(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every chunk-size line the framing reads, in order."""
    read: list[bytes] = []
    original = wire._chunk_size

    def counting(line: bytes) -> int:
        read.append(line)
        return original(line)

    monkeypatch.setattr(wire, "_chunk_size", counting)
    return read


class TestEachChunkIsFramedOnce:
    async def test_a_request_body_in_small_pieces(
        self, model, start_sidecar, monkeypatch, size_lines_read
    ):
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, _ = fake_client(sidecar.proxy)
        client.data_received(CHUNKED_HEAD)
        for piece in _pieces(BODY):
            client.data_received(piece)
        assert len(sent) == 1
        assert sent[0].body == b"X" * CHUNKS and sent[0].raw_body == BODY
        assert len(size_lines_read) == CHUNKS + 1
        answer_ok(client, sent[0])

    def test_a_response_body_in_small_pieces(self, size_lines_read):
        conn = _Responses()
        conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in _pieces(BODY):
            conn.data_received(piece)
        assert [(raw, body) for _, raw, body, _ in conn.taken] == [(BODY, b"X" * CHUNKS)]
        assert len(size_lines_read) == CHUNKS + 1

    def test_a_scan_goes_on_where_the_last_one_stopped(self):
        scanner = wire.ChunkedScanner()
        buf = bytearray()
        data = b"3\r\nabc\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\nNEXT"
        for piece in _pieces(data):
            buf += piece
            found = scanner.scan(buf)
            if found is not None:
                break
        assert found == (len(data) - 4, b"abchello")
        assert wire.scan_chunked(data, 0, None) == found


class TestWhatAChunkedRequestMayHoldIsBounded:
    """maxBodyBytes counts the data; framing (chunk-size lines with their extensions,
    trailers) may add an eighth of it, at least 64 KiB, and no line is over 4 KiB."""

    @pytest.mark.parametrize(
        ("first", "then", "status"),
        [
            pytest.param(b"", b"1;" + b"e" * 4000 + b"\r\nX\r\n", b"413", id="extensions"),
            pytest.param(b"0\r\n", b"X-T: " + b"a" * 4000 + b"\r\n", b"413", id="trailers"),
            pytest.param(b"0\r\nX-T: ", b"a" * 4000, b"400", id="a-trailer-line-never-ends"),
        ],
    )
    async def test_the_request_is_refused_once_past_the_bound(
        self, model, start_sidecar, monkeypatch, first, then, status
    ):
        sidecar = await start_sidecar(model.url, max_body_bytes=1024)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(CHUNKED_HEAD + first)
        fed = len(first)
        while not transport.written and fed < 1024 * 1024:
            client.data_received(then)
            fed += len(then)
        assert transport.answers()[0].split(b" ")[1] == status
        assert transport.closing and not sent
        assert fed <= 1024 + 64 * 1024 + len(then)  # refused as soon as past the bound

    def test_a_trailer_line_is_as_long_as_a_chunk_size_line_at_most(self):
        with pytest.raises(BadMessage, match="trailer line too long"):
            wire.scan_chunked(b"0\r\nX-T: " + b"a" * 5000, 0, None)
        with pytest.raises(BadMessage, match="trailer line too long"):
            wire.scan_chunked(b"0\r\nX-T: " + b"a" * 5000 + b"\r\n\r\n", 0, None)
        assert wire.scan_chunked(b"0\r\nX-T: " + b"a" * 4000 + b"\r\n\r\n", 0, None) is not None


class _Responses(ResponseConnection):
    """A response connection that keeps every response it frames."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[tuple[wire.ResponseHead, bytes, bytes, bool]] = []

    def _expecting(self) -> bool:
        return not self.taken

    def _parse(self) -> None:
        taken = self._take_response(no_body=False)
        if taken is not None:
            self.taken.append(taken)

    def _invalid(self, error: BadMessage) -> None:
        raise error
