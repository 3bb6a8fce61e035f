"""Minimal HTTP/1.1 framing for the proxy's hot path (pure, incremental).

Why not a full HTTP library: the proxy must add well under a millisecond,
and it never needs to understand most of a message. It only has to find
where each message ends (Content-Length, chunked, or end of stream), decide
whether the connection stays open, and forward the bytes unchanged. Both
the request and the response are forwarded as received (but for a chunked
answer's Content-Length, dropped); the decoded body is kept for monitoring,
the same object when the body was not chunked. ``ResponseConnection`` is the
connection both clients of the sidecar (upstream, shadow target) read responses on.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import cast

from vigil.sidecar.binary_tensors import HEADER_LENGTH

__all__ = [
    "BadMessage",
    "BodyTooLarge",
    "ChunkedScanner",
    "RequestHead",
    "Response",
    "ResponseConnection",
    "ResponseHead",
    "error_response",
    "parse_request_head",
    "parse_response_head",
    "read_response",
    "scan_chunked",
    "take_front",
    "with_connection_close",
    "with_identity_headers",
    "with_request_header",
    "without_header",
    "write_message",
]

MAX_HEADER_BYTES = 64 * 1024
#: A body this large or larger goes in a write of its own: joined to its head it would be
#: copied whole (a smaller one is joined: one write, one segment).
JOIN_BELOW = 64 * 1024
#: Longest chunk-size line (with its extensions) and longest trailer line.
MAX_CHUNK_LINE = 4096
#: RFC 9110/9112 grammar only. Python's int() also takes "+5", " 5", "1_0" and
#: "0x10": a proxy that reads those differently from the server behind it can be
#: made to see two requests where the server sees one (request smuggling).
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9a-fA-F]{1,15}")
#: Control characters no request head may hold: all but HTAB, CR and LF (CR and LF
#: only as CRLF pairs, checked apart; RFC 9112 2.2, RFC 9110 5.5).
_CONTROL = bytes(c for c in range(32) if c not in (9, 10, 13)) + b"\x7f"


def _check_head_bytes(raw: bytes) -> None:
    """Refuse a bare CR or LF and control characters (but HTAB) in a request head.

    The head is forwarded as received: a server behind the proxy that ends a line at a
    bare LF would read a second request hidden in a header value (request smuggling).
    """
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        raise BadMessage("bare CR or LF in the request head")
    if len(raw.translate(None, _CONTROL)) != len(raw):
        raise BadMessage("control character in the request head")


def _content_length(value: bytes) -> int:
    """A Content-Length value (1*DIGIT, optional surrounding whitespace)."""
    value = value.strip(b" \t")
    if not _DIGITS.fullmatch(value):
        raise BadMessage("bad Content-Length")
    return int(value)


def _chunk_size(line: bytes) -> int:
    """The size of a chunk line (1*HEXDIG, optional extensions after ';')."""
    size = line.split(b";", 1)[0].strip(b" \t")
    if not _HEX.fullmatch(size):
        raise BadMessage("bad chunk size")
    return int(size, 16)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BadMessage(Exception):
    """The peer sent something that is not valid HTTP/1.x framing."""


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit (answered with 413)."""


@dataclass(slots=True)
class RequestHead:
    """What the proxy needs to know about a request; ``raw`` is forwarded as is."""

    method: str
    target: str
    path: str
    http10: bool
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    content_type: str
    content_encoding: str
    shadow_copy: bool
    raw: bytes
    #: The client's X-Request-Id header, as sent ("" without one, or an empty one).
    request_id: str = ""
    #: The client sent an X-Request-Id header (maybe empty).
    has_request_id: bool = False
    #: Inference-Header-Content-Length: the body's JSON part, binary tensors after it.
    json_length: int | None = None


@dataclass(slots=True)
class Response:
    """An upstream response: ``head`` + ``raw_body`` are what the client gets."""

    status: int
    head: bytes
    raw_body: bytes
    body: bytes
    keep_alive: bool
    content_type: str = ""
    content_encoding: str = ""
    #: The model server's answer carries its own X-Request-Id header.
    has_request_id: bool = False
    #: Inference-Header-Content-Length: the body's JSON part, binary tensors after it.
    json_length: int | None = None


def parse_request_head(raw: bytes) -> RequestHead:
    """Parse a request head that ends with CRLF CRLF."""
    _check_head_bytes(raw)
    lines = raw[:-4].split(b"\r\n")
    try:
        method_b, target_b, version = lines[0].split(b" ")
    except ValueError as exc:
        raise BadMessage("malformed request line") from exc
    if not version.startswith(b"HTTP/1."):
        raise BadMessage("unsupported HTTP version")
    http10 = version == b"HTTP/1.0"
    content_length: int | None = None
    chunked = False
    connection = b""
    expect = False
    content_type = ""
    content_encoding = ""
    shadow_copy = False
    request_id = ""
    has_request_id = False
    json_length = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise BadMessage("malformed header line")
        key = name.strip()
        if len(key) != len(name):
            # RFC 9112 5.1, 5.2: "Name :" and obs-fold lines must get 400; a server
            # behind the proxy may read them differently (request smuggling).
            raise BadMessage("whitespace around a header name")
        key = key.lower()
        if key == b"content-length":
            length = _content_length(value)
            if content_length is not None and content_length != length:
                raise BadMessage("bad Content-Length")
            content_length = length
        elif key == b"transfer-encoding":
            codings = [c.strip() for c in value.lower().split(b",")]
            if codings[-1] != b"chunked":
                raise BadMessage("unsupported Transfer-Encoding")
            chunked = True
        elif key == b"connection":
            connection = value.strip().lower()
        elif key == b"expect":
            expect = value.strip().lower() == b"100-continue"
        elif key == b"content-type":
            content_type = value.strip().decode("latin-1").lower()
        elif key == b"content-encoding":
            content_encoding = value.strip().decode("latin-1").lower()
        elif key == b"x-vigil-shadow":
            shadow_copy = True
        elif key == b"x-request-id":
            request_id = value.strip().decode("latin-1")
            has_request_id = True
        elif key == HEADER_LENGTH:
            json_length = _json_length(value)
    if chunked and content_length is not None:
        # RFC 9112 6.3: the upstream connection is shared, and a server behind the
        # proxy that framed it by Content-Length would read a second request out of it.
        raise BadMessage("both Transfer-Encoding and Content-Length")
    keep_alive = (b"keep-alive" in connection) if http10 else (b"close" not in connection)
    target = target_b.decode("latin-1")
    path = target.split("?", 1)[0]
    if expect:
        # The proxy answers 100-continue itself; the upstream must not see it.
        raw = (
            b"\r\n".join(
                [lines[0], *(h for h in lines[1:] if not h.lower().startswith(b"expect:"))]
            )
            + b"\r\n\r\n"
        )
    return RequestHead(
        method=method_b.decode("latin-1"),
        target=target,
        path=path,
        http10=http10,
        content_length=content_length,
        chunked=chunked,
        keep_alive=keep_alive,
        expect_continue=expect,
        content_type=content_type,
        content_encoding=content_encoding,
        shadow_copy=shadow_copy,
        raw=raw,
        request_id=request_id,
        has_request_id=has_request_id,
        json_length=json_length,
    )


async def _read_chunked(reader: asyncio.StreamReader, limit: int | None) -> tuple[bytes, bytes]:
    """Read a chunked body; returns (raw bytes as sent, decoded body)."""
    raw = bytearray()
    body = bytearray()
    for _ in range(1_000_000):
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = _chunk_size(line[:-2])
        if size == 0:
            for _ in range(1000):  # trailers, up to the empty line
                trailer = await reader.readuntil(b"\r\n")
                raw += trailer
                if trailer == b"\r\n":
                    return bytes(raw), bytes(body)
            raise BadMessage("too many trailers")
        if limit is not None and len(body) + size > limit:
            raise BodyTooLarge()
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise BadMessage("bad chunk terminator")
        raw += chunk
        body += chunk[:-2]
    raise BadMessage("too many chunks")


async def read_response(reader: asyncio.StreamReader, head_request: bool) -> Response:
    """Read one response from the upstream (1xx interim responses are skipped)."""
    for _ in range(10):
        raw_head = await reader.readuntil(b"\r\n\r\n")
        head = parse_response_head(raw_head)
        if head.status >= 200 or head.status == 101:
            break
    else:
        raise BadMessage("too many interim responses")
    keep_alive = head.keep_alive
    if head_request or head.status in (204, 304) or head.status < 200:
        raw = body = b""
    elif head.chunked:
        raw, body = await _read_chunked(reader, None)
    elif head.content_length is not None:
        length = head.content_length
        raw = body = await reader.readexactly(length) if length else b""
    else:
        raw = body = await reader.read()  # delimited by the end of the connection
        keep_alive = False
    return Response(
        head.status,
        raw_head,
        raw,
        body,
        keep_alive,
        head.content_type,
        head.content_encoding,
        json_length=head.json_length,
    )


@dataclass(slots=True)
class ResponseHead:
    """Framing facts of an upstream response head."""

    status: int
    content_length: int | None
    chunked: bool
    keep_alive: bool
    content_type: str
    content_encoding: str
    has_request_id: bool = False
    #: A chunked answer that also had a Content-Length line: Transfer-Encoding wins.
    length_ignored: bool = False
    #: Inference-Header-Content-Length: the body's JSON part, binary tensors after it.
    json_length: int | None = None


def parse_response_head(raw_head: bytes) -> ResponseHead:
    """Parse a response head that ends with CRLF CRLF."""
    if len(raw_head) < 12 or not raw_head.startswith(b"HTTP/1."):
        raise BadMessage("malformed status line")
    try:
        status = int(raw_head[9:12])
    except ValueError as exc:
        raise BadMessage("malformed status code") from exc
    content_length: int | None = None
    chunked = False
    connection = b""
    ctype = cenc = b""
    has_request_id = False
    json_length = None
    for line in raw_head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            try:
                content_length = int(value)
            except ValueError as exc:
                raise BadMessage("bad Content-Length") from exc
            if content_length < 0:
                raise BadMessage("bad Content-Length")
        elif key == b"x-request-id":
            has_request_id = True
        elif key == b"content-type":
            ctype = value
        elif key == b"content-encoding":
            cenc = value
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            connection = value.strip().lower()
        elif key == HEADER_LENGTH:
            json_length = _json_length(value)
    http10 = raw_head.startswith(b"HTTP/1.0")
    keep_alive = (b"keep-alive" in connection) if http10 else (b"close" not in connection)
    return ResponseHead(
        status,
        None if chunked else content_length,
        chunked,
        keep_alive,
        ctype.strip().decode("latin-1").lower(),
        cenc.strip().decode("latin-1").lower(),
        has_request_id,
        chunked and content_length is not None,
        json_length,
    )


def _json_length(value: bytes) -> int | None:
    """An Inference-Header-Content-Length's value (None: not a length; the body is then
    read as a whole, as the model server will refuse it)."""
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 12 else None


def with_request_header(raw_head: bytes, request_id: str, replace: bool = False) -> bytes:
    """A request head with ``X-Request-Id`` added.

    ``replace``: the client sent an id the sidecar does not use; the model server
    gets the sidecar's instead, so that both name the request alike.
    """
    if replace:
        lines = raw_head[:-4].split(b"\r\n")
        kept = [
            lines[0],
            *(h for h in lines[1:] if h.partition(b":")[0].lower() != b"x-request-id"),
        ]
        raw_head = b"\r\n".join(kept) + b"\r\n\r\n"
    return raw_head[:-2] + b"X-Request-Id: " + request_id.encode("latin-1") + b"\r\n\r\n"


def without_header(raw_head: bytes, name: bytes) -> bytes:
    """A message head without its ``name`` lines (``name`` lower case)."""
    lines = raw_head[:-4].split(b"\r\n")
    kept = [lines[0], *(h for h in lines[1:] if h.partition(b":")[0].strip().lower() != name)]
    return b"\r\n".join(kept) + b"\r\n\r\n"


def with_connection_close(raw_head: bytes) -> bytes:
    """A response head that says ``Connection: close`` (any Connection line replaced).

    For answers after which the sidecar closes the connection: a pooled client
    must not send its next request on it.
    """
    return without_header(raw_head, b"connection")[:-2] + b"Connection: close\r\n\r\n"


def with_identity_headers(raw_head: bytes, identity: bytes, replace_id: bool) -> bytes:
    """An answer head with the sidecar's ``X-Request-Id`` and ``X-Vigil-Revision`` lines.

    ``replace_id``: the model server set its own X-Request-Id; the sidecar's
    (the join key) replaces it, so that the client sees one.
    """
    if replace_id:
        lines = raw_head[:-4].split(b"\r\n")
        kept = [lines[0], *(h for h in lines[1:] if not h.lower().startswith(b"x-request-id:"))]
        raw_head = b"\r\n".join(kept) + b"\r\n\r\n"
    return raw_head[:-2] + identity + b"\r\n"


#: A kept-alive connection lost this soon after a request was written, before any byte of
#: the answer: the server had closed it while idle (its FIN crossed the request), and the
#: request may go again on a fresh one. Later the server may have read it and worked on it.
STALE_RETRY_SECONDS = 0.005


class ResponseConnection(asyncio.Protocol):
    """A keep-alive connection that reads one response at a time (the proxy's upstream
    connections, the shadow copies' client): bytes gather in ``buf`` for ``_parse``.

    Bytes nobody waits for mean HTTP that cannot be followed: the connection is dropped.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: ResponseHead | None = None
        self.head_raw = b""
        self.got_bytes = False
        self.reused = False
        self.closed = False
        #: When the request went out on this connection (loop time).
        self.sent_at = 0.0
        #: Where framing the chunked body of ``head`` stopped (a new one for each head,
        #: dropped once the body is taken).
        self.chunks: ChunkedScanner | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def closed_while_idle(self) -> bool:
        """Whether the connection, kept alive and lost before any byte of the answer, was
        closed by the server while idle (STALE_RETRY_SECONDS), its request unread."""
        elapsed = asyncio.get_running_loop().time() - self.sent_at
        return self.reused and not self.got_bytes and elapsed <= STALE_RETRY_SECONDS

    def data_received(self, data: bytes) -> None:
        if not self._expecting():
            self.close()
            return
        self.got_bytes = True
        self.buf += data
        try:
            self._parse()
        except BadMessage as exc:
            self._invalid(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _take_response(
        self, no_body: bool
    ) -> tuple[ResponseHead, bytes | bytearray, bytes | bytearray, bool] | None:
        """The response in ``buf`` once complete, taken off it: its head, its body as
        received and decoded (the same object unless chunked) and whether bytes follow
        it; None until then (the head is kept in ``head`` as soon as it is in).
        ``no_body``: the answer to a HEAD request."""
        head = self.head
        if head is None:
            taken = take_final_response_head(self.buf)
            if taken is None:
                return None
            head, self.head_raw = taken
            self.head = head
            self.chunks = self._chunked_scanner() if head.chunked else None
        if no_body or head.status in (204, 304):
            self.chunks = None
            return head, b"", b"", bool(self.buf)
        if head.chunked:
            found = (self.chunks if self.chunks is not None else ChunkedScanner()).scan(self.buf)
            if found is None:
                return None
            end, body = found
            # The scanner holds the decoded body: dropped with it, not kept on an idle
            # connection (outside the budget, and read as the next answer's by _hold).
            self.chunks = None
            raw, self.buf = take_front(self.buf, end)
            return head, raw, body, bool(self.buf)
        length = head.content_length
        if length is None or len(self.buf) < length:
            return None  # or delimited by the end of the connection: complete then
        raw, self.buf = take_front(self.buf, length)
        return head, raw, raw, bool(self.buf)

    def _chunked_scanner(self) -> ChunkedScanner:
        """The scanner of a chunked answer (unbounded here; a subclass may bound it)."""
        return ChunkedScanner()

    def _expecting(self) -> bool:
        """Whether an exchange waits for a response."""
        raise NotImplementedError

    def _parse(self) -> None:
        """Frame what ``buf`` holds; finish the exchange once the response is complete."""
        raise NotImplementedError

    def _invalid(self, error: BadMessage) -> None:
        """Fail the exchange: the response was not valid HTTP."""
        raise NotImplementedError


def take_final_response_head(buf: bytearray) -> tuple[ResponseHead, bytes] | None:
    """Take the final response head (and its raw bytes) off the front of ``buf``.

    Interim answers (1xx but 101) are taken off and skipped. None while the head
    has not all arrived; BadMessage for a head over MAX_HEADER_BYTES or more than
    ten interim answers in one go. Shared by the proxy's upstream connections and
    the shadow copies' client, which frame answers alike.
    """
    for _ in range(10):
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise BadMessage("response head too large")
            return None
        raw = bytes(buf[: end + 4])
        parsed = parse_response_head(raw)
        del buf[: end + 4]
        if parsed.status >= 200 or parsed.status == 101:
            if parsed.length_ignored:
                # RFC 9112 6.3: a proxy forwarding a chunked answer removes Content-Length
                # (a client that framed it by the length would misread the connection).
                raw = without_header(raw, b"content-length")
            return parsed, raw
    raise BadMessage("too many interim responses")


def take_front(buf: bytearray, end: int) -> tuple[bytes | bytearray, bytearray]:
    """``buf[:end]`` and the buffer to go on with, at most one copy made.

    A message that ends the buffer, the usual case, is the buffer itself (its owner
    goes on with a new one): bodies of tens of MiB are not copied on the way through.
    The part taken must not change after: it is handed on, to a transport too.
    """
    if end == len(buf):
        return buf, bytearray()
    if end == 0:
        return b"", buf
    with memoryview(buf) as view:  # one copy, where buf[:end] would make a second
        front = bytes(view[:end])
    del buf[:end]
    return front, buf


def write_message(transport: asyncio.WriteTransport, head: bytes, body: bytes | bytearray) -> None:
    """Write a message: a small one in one write, a large body apart from its head.

    A large body is passed as a view: asyncio's transport copies what the socket did
    not take at once, and a view spares it a second copy (slicing a bytes object).
    """
    if len(body) < JOIN_BELOW:
        transport.write(head + body if body else head)
        return
    transport.write(head)
    transport.write(memoryview(body))


def scan_chunked(
    buf: bytes | bytearray, start: int, limit: int | None
) -> tuple[int, bytearray] | None:
    """Find the end of a chunked body that starts at ``buf[start]`` (in one go).

    Returns ``(end, decoded body)`` once the whole body (with trailers) is in
    ``buf``, ``None`` while more bytes are needed. Raises
    :class:`BadMessage` on bad framing and :class:`BodyTooLarge` over ``limit``.
    A body that arrives in pieces: :class:`ChunkedScanner`.
    """
    return ChunkedScanner(start, limit).scan(buf)


_SIZE, _DATA, _TRAILER = 0, 1, 2


class ChunkedScanner:
    """Frames one chunked body as it arrives: each :meth:`scan` goes on where the
    last one stopped, so a body in many small reads costs linear, not quadratic, work.

    ``limit`` bounds the decoded body; ``raw_limit`` everything the body takes
    in the buffer (data and framing: chunk-size lines with their extensions,
    trailers), which would otherwise grow without bound. No line is longer than
    :data:`MAX_CHUNK_LINE`. The buffer may only grow between scans.
    """

    __slots__ = (
        "_body",
        "_left",
        "_lines",
        "_pos",
        "_seen",
        "_start",
        "_state",
        "limit",
        "raw_limit",
    )

    def __init__(
        self, start: int = 0, limit: int | None = None, raw_limit: int | None = None
    ) -> None:
        self.limit = limit
        self.raw_limit = raw_limit
        self._start = start
        self._pos = start  # the first byte not framed yet
        self._seen = start  # no line end before here in the line that starts at _pos
        self._state = _SIZE
        self._left = 0  # data bytes of the current chunk (in _DATA)
        self._lines = 0  # chunk-size and trailer lines so far
        self._body = bytearray()

    @property
    def size(self) -> int:
        """Data bytes framed so far (the decoded body's length)."""
        return len(self._body)

    def scan(self, buf: bytes | bytearray) -> tuple[int, bytearray] | None:
        """``(end, decoded body)`` once the body is complete in ``buf``; None until then.
        The body is the scanner's own buffer (a scanner frames one body).

        Raises :class:`BadMessage` on bad framing and :class:`BodyTooLarge` over a limit.
        """
        pos, n, raw_limit = self._pos, len(buf), self.raw_limit
        try:
            while True:
                if self._state == _DATA:
                    left = self._left
                    if n < pos + left + 2:
                        break
                    if buf[pos + left : pos + left + 2] != b"\r\n":
                        raise BadMessage("bad chunk terminator")
                    # Through a view: a slice of buf would be a copy more of the chunk.
                    self._body += memoryview(buf)[pos : pos + left]
                    pos += left + 2
                    self._state = _SIZE
                    continue
                # A chunk-size or trailer line. Search only what is new (a CR may end the
                # bytes seen so far), so that a line in small pieces is not rescanned.
                eol = buf.find(b"\r\n", max(pos, self._seen - 1))
                if eol < 0 or eol - pos > MAX_CHUNK_LINE:
                    if eol >= 0 or n - pos > MAX_CHUNK_LINE:
                        raise BadMessage(
                            "trailer line too long"
                            if self._state == _TRAILER
                            else "chunk size line too long"
                        )
                    self._seen = n
                    break
                self._lines += 1
                if self._state == _TRAILER:
                    if eol == pos:  # the empty line: the end
                        end = pos + 2
                        if raw_limit is not None and end - self._start > raw_limit:
                            raise BodyTooLarge()
                        # The scanner's own buffer, not a copy: a scanner frames one body.
                        return end, self._body
                    pos = eol + 2
                    if self._lines > 1000:
                        raise BadMessage("too many trailers")
                else:
                    if self._lines > 1_000_000:
                        raise BadMessage("too many chunks")
                    size = _chunk_size(bytes(buf[pos:eol]))
                    pos = eol + 2
                    if size == 0:
                        self._state, self._lines = _TRAILER, 0
                    else:
                        if self.limit is not None and len(self._body) + size > self.limit:
                            raise BodyTooLarge()
                        self._state, self._left = _DATA, size
                if raw_limit is not None and pos - self._start > raw_limit:
                    raise BodyTooLarge()
        finally:
            self._pos = pos
        if raw_limit is not None and n - self._start > raw_limit:
            raise BodyTooLarge()
        return None


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    close: bool = False,
    head_only: bool = False,
    retry_after: int | None = None,
) -> bytes:
    """A small JSON error from the sidecar itself (never from the model).

    ``X-Vigil-Error`` carries a stable machine-readable reason so that a
    client can tell the sidecar's answers from the model server's.
    ``head_only``: the answer to a HEAD request (:func:`simple_response`).
    ``retry_after``: seconds, for a ``Retry-After`` line.
    """
    body = json.dumps({"error": message, "reason": code, "source": "vigil-sidecar"}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Vigil-Error: {code}\r\n"
        + (f"Retry-After: {retry_after}\r\n" if retry_after is not None else "")
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)


def simple_response(
    status: int,
    body: bytes,
    content_type: str = "application/json",
    *,
    close: bool = False,
    head_only: bool = False,
) -> bytes:
    """A complete response for the sidecar's own endpoints (``close``: the last one).

    ``head_only``: the answer to a HEAD request, its head alone with the Content-Length
    a GET would get; a body after it would be read as the next answer's status line.
    """
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)
