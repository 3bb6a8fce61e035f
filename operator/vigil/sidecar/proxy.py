"""The reverse proxy: client connections in, pooled keep-alive connections out.

Why asyncio protocols instead of a framework (or even streams) on the hot
path: an aiohttp server plus client session that parses both bodies adds
1.6-2.0 ms at p90 on the target machines, and the proxy's budget is 1 ms.
Here everything happens in ``data_received`` callbacks: no task, future or
coroutine switch per request. A request costs two header scans, one write
upstream, one write back and a few counter increments. Moving from asyncio
streams to protocols took the whole sidecar from ~175 to ~115 us of user
CPU per proxied request (a bare protocol proxy without monitoring: ~35 us).
Everything else (JSON parsing, binning, shadow copies) happens after the
response is written, in background tasks fed by bounded queues.

The proxy's own endpoints on the serving port are ``/healthz/live``
(alive) and ``/healthz/ready`` (ready when the model server is and the
sidecar is not draining), with the aliases ``/vigil/healthz`` and
``/vigil/readyz``; everything else goes to the model server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import re
import struct
import termios
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from vigil.sidecar.config import Settings
from vigil.sidecar.identity import IdMaker, body_id, clean_id
from vigil.sidecar.metrics import LIVE, OpsMetrics, origin_of, outcome_of
from vigil.sidecar.monitor import Exchange, Monitor
from vigil.sidecar.payload import endpoint_of
from vigil.sidecar.shadow import Shadow, ShadowCopy
from vigil.sidecar.wire import (
    MAX_HEADER_BYTES,
    BadMessage,
    BodyTooLarge,
    ChunkedScanner,
    RequestHead,
    Response,
    ResponseConnection,
    error_response,
    parse_request_head,
    read_response,
    simple_response,
    take_front,
    with_connection_close,
    with_identity_headers,
    with_request_header,
    write_message,
)

__all__ = ["Proxy", "UpstreamError"]

log = logging.getLogger("vigil.sidecar")
#: Liveness and readiness on the serving port (the pod's probes use these).
HEALTH_PATHS = frozenset({"/healthz/live", "/vigil/healthz"})
READY_PATHS = frozenset({"/healthz/ready", "/vigil/readyz"})
READY_CACHE_SECONDS = 1.0
MAX_IDLE_UPSTREAM = 64
#: Pause reading a client that pipelines this much while a request is running.
PIPELINE_BUFFER = 1024 * 1024
#: After answering a request it rejects (413, 400, 431), the sidecar half-closes and
#: reads and discards what the client is still sending, for at most this long and this
#: much, before closing. Closing a socket with unread input makes the kernel send a
#: reset, and a client still uploading its (too large) body would then lose the answer.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024 * 1024
#: A chunked request, or answer, may hold this much framing (chunk-size lines with
#: extensions, trailers) besides its limits.maxBodyBytes of data, or an eighth of that if
#: more: enough for chunks down to ~60 bytes, and the buffer stays bounded.
CHUNK_FRAMING_BYTES = 64 * 1024
#: An answer is buffered whole (its predictions are read): past this, or past
#: limits.maxBodyBytes if larger, it is a 502, not the sidecar's memory (256Mi by default).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: Body bytes held at once (requests being received or in flight, answers being received)
#: past which a new request gets 503 with Retry-After:
#: with what a body costs on its way, the sidecar stays within its memory (256Mi by
#: default). A request is taken all the same when nothing else is held. The copies queued
#: for monitoring and shadowing are bounded apart (and dropped when their queues are full).
HELD_BYTES_BUDGET = 96 * 1024 * 1024
#: The Retry-After of that 503, in seconds: bodies held leave within about that.
BUSY_RETRY_AFTER = 1
#: Methods a second send cannot change the outcome of (RFC 9110 9.2.2): retried once on a
#: fresh connection when a kept-alive one is lost before any byte of the answer.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BUSY = float("inf")  # activity mark of a connection with a request in progress
#: Empty lines before a request line, ignored (RFC 9112 2.2): some clients send a CRLF
#: after a request's body.
_BLANK_LINES = re.compile(rb"(?:\r\n)+")
#: How often a drain looks whether the answers written have left for the clients.
SEND_POLL_SECONDS = 0.01


def _without_shadow_mark(raw: bytes) -> bytes:
    """A request head without its ``X-Vigil-Shadow`` lines.

    The mark is Vigil's, between two sidecars: the model server has no use for it (and
    the head's parser has refused whitespace before a header's colon).
    """
    lines = raw[:-4].split(b"\r\n")
    kept = [lines[0], *(h for h in lines[1:] if not h.lower().startswith(b"x-vigil-shadow:"))]
    return b"\r\n".join(kept) + b"\r\n\r\n"


def _blank_lines(buf: bytearray) -> int:
    """How many bytes of empty lines ``buf`` starts with."""
    match = _BLANK_LINES.match(buf)
    return match.end() if match is not None else 0


def _bounded_scanner(limit: int) -> ChunkedScanner:
    """A chunked body's scanner: ``limit`` bytes of data, framing as CHUNK_FRAMING_BYTES says."""
    return ChunkedScanner(0, limit, limit + max(CHUNK_FRAMING_BYTES, limit // 8))


class UpstreamError(Exception):
    """The model server did not answer; ``reason`` is a metric label."""

    def __init__(
        self, reason: str, status: int, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass(slots=True, eq=False)
class _Request:
    """One request on its way through the proxy."""

    head: RequestHead
    raw_body: bytes
    body: bytes
    endpoint: str
    #: When the request was complete (its body received): its duration runs from here.
    start: float
    timer: asyncio.TimerHandle | None
    upstream: _Upstream | None = None
    retried: bool = False
    #: Inference requests only: the id the answer carries (docs/howto/feedback.md).
    request_id: str = ""


class _Upstream(ResponseConnection):
    """One keep-alive connection to the model server, one request at a time."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.client: _Client | None = None
        self.request: _Request | None = None
        #: Bytes of the answer being received, counted in the proxy's ``held``.
        self.held = 0

    # -------------------------------------------------------------- events

    def _expecting(self) -> bool:
        return self.request is not None

    def _invalid(self, error: BadMessage) -> None:
        self.fail(UpstreamError("protocol", 502, "model server sent invalid HTTP"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.held = self.proxy.charge(self.held, 0)
        request, client = self.request, self.client
        if request is None or client is None:
            return
        head = self.head
        if head is not None and not head.chunked and head.content_length is None and exc is None:
            # A response delimited by the end of the connection: complete now (a reset,
            # exc, cuts it short instead: a 502 below, never half an answer as a whole).
            body, self.buf = self.buf, bytearray()
            self._finish(
                Response(
                    head.status,
                    self.head_raw,
                    body,
                    body,
                    False,
                    head.content_type,
                    head.content_encoding,
                    head.has_request_id,
                    head.json_length,
                ),
                reusable=False,
            )
            return
        self.request = self.client = None
        if not self.got_bytes and self.reused and not request.retried and self._stale(request):
            # A stale keep-alive connection: retry once on a fresh one.
            request.retried = True
            self.proxy.connect_and_send(client, request)
            return
        why = "reset the connection mid-answer" if self.got_bytes else "closed the connection"
        client.on_failure(request, UpstreamError("reset", 502, f"model server {why}"))

    def _stale(self, request: _Request) -> bool:
        """Whether the lost connection may be retried for ``request``: the method is
        idempotent, or the model server closed it while idle (any other, an inference
        POST, may have been read and worked on: a retry would run it twice)."""
        return request.head.method in IDEMPOTENT or self.closed_while_idle()

    # -------------------------------------------------------------- actions

    def send(self, client: _Client, request: _Request, reused: bool) -> None:
        assert self.transport is not None
        self.client, self.request, self.reused = client, request, reused
        self.sent_at = self.proxy.loop.time()
        self.got_bytes = False
        request.upstream = self
        head = request.head
        write_message(self.transport, head.raw, request.raw_body)

    def _answer_limit(self) -> int:
        return max(MAX_ANSWER_BYTES, self.proxy.settings.max_body_bytes)

    def _chunked_scanner(self) -> ChunkedScanner:
        return _bounded_scanner(self._answer_limit())

    def _parse(self) -> None:
        request = self.request
        assert request is not None
        limit = self._answer_limit()
        try:
            taken = self._take_response(no_body=request.head.method == "HEAD")
            head = self.head
            # A chunked answer's scanner bounds it; any other is refused once its length
            # says so, or once more than the limit has come before the connection closes.
            if (
                taken is None
                and head is not None
                and not head.chunked
                and max(head.content_length or 0, len(self.buf)) > limit
            ):
                raise BodyTooLarge
        except BodyTooLarge:
            self.fail(
                UpstreamError("body_too_large", 502, f"model server answer over {limit} bytes")
            )
            return
        if taken is None:
            self._hold()  # more to come, or until the connection closes
            return
        # Forwarded as received: a chunked body with its framing.
        head, raw_body, body, leftover = taken
        self._finish(
            Response(
                head.status,
                self.head_raw,
                raw_body,
                body,
                head.keep_alive,
                head.content_type,
                head.content_encoding,
                head.has_request_id,
                head.json_length,
            ),
            reusable=head.keep_alive and not leftover,
        )

    def _hold(self) -> None:
        """Count the answer received so far in the budget (HELD_BYTES_BUDGET); past it,
        with other bodies held, the answer is refused: 503 (X-Vigil-Error
        upstream_memory_budget, outcome upstream_error), without Retry-After: the model
        server has already run the request, and a client retrying would run it again."""
        chunks, client = self.chunks, self.client
        held = len(self.buf) + (chunks.size if chunks is not None else 0)
        # The exchange is the unit: its own request's body is no other body.
        own = client.held if client is not None else 0
        if self.proxy.admits(self.held + own, held + own):
            self.held = self.proxy.charge(self.held, held)
            return
        words = f"the sidecar holds {HELD_BYTES_BUDGET >> 20} MiB of bodies; answer dropped"
        self.fail(UpstreamError("memory_budget", 503, words))

    def _finish(self, response: Response, reusable: bool) -> None:
        client, request = self.client, self.request
        self.client = self.request = None
        if self.held:  # an answer in several reads
            self.held = self.proxy.charge(self.held, 0)
        self.head = None
        self.head_raw = b""
        self.buf.clear()
        if reusable and not self.closed:
            self.proxy.release(self)
        else:
            self.close()
        if client is not None and request is not None:
            client.on_response(request, response)

    def fail(self, error: UpstreamError) -> None:
        client, request = self.client, self.request
        self.client = self.request = None
        self.held = self.proxy.charge(self.held, 0)
        self.close()
        if client is not None and request is not None:
            client.on_failure(request, error)

    def abandon(self) -> None:
        """Drop the running exchange (the client's timer fired) and the connection."""
        self.client = self.request = None
        self.held = self.proxy.charge(self.held, 0)
        self.close()


class _Client(asyncio.Protocol):
    """One client connection: parses requests, one in flight at a time."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: RequestHead | None = None
        self.head_end = 0
        #: Where framing the chunked body of ``head`` stopped (None: not started).
        self.chunks: ChunkedScanner | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.request: _Request | None = None
        self.local_task: asyncio.Task[None] | None = None
        self.counted = False
        self.continued = False
        self.paused = False
        #: The client does not read its answers (the transport's buffer is over its
        #: high-water mark): no further request is taken until it does.
        self.write_blocked = False
        self.closed = False
        self.eof = False  # the client half-closed: close after the answer in flight
        #: Bytes still accepted (and discarded) while lingering; None = not lingering.
        self.linger_budget: int | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        #: Body bytes of the request being received or in flight, in the proxy's ``held``.
        self.held = 0
        #: Answer bytes the client has not read (its transport's buffer when it filled),
        #: in ``held`` too until it drains: readers that take nothing must not take the
        #: sidecar past its memory.
        self.unread = 0
        #: What the client had not taken at the idle reaper's last look (None: not looked
        #: at yet), and when that last went down (loop time).
        self.unsent_seen: int | None = None
        self.taken_at = 0.0

    # -------------------------------------------------------------- events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        self.proxy.clients[self] = self.proxy.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.pop(self, None)
        self.unread = self.proxy.charge(self.unread, 0)
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        if self.request is None:  # nothing upstream: stop the body timer
            self._cancel_timer()
            self._uncount()
            self.held = self.proxy.charge(self.held, 0)
        # A request in flight finishes (or times out) and is recorded then.

    def data_received(self, data: bytes) -> None:
        if self.linger_budget is not None:
            self.linger_budget -= len(data)
            if self.linger_budget < 0:
                self.close()
            return
        self.buf += data
        if self.request is None and self.local_task is None and not self.write_blocked:
            self._parse()
        elif len(self.buf) > PIPELINE_BUFFER and not self.paused and self.transport:
            self.paused = True
            self.transport.pause_reading()

    def pause_writing(self) -> None:
        # Answers the client does not read would pile up here: one per pipelined request.
        self.write_blocked = True
        if self.transport is not None:
            self.unread = self.proxy.charge(self.unread, self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.unread = self.proxy.charge(self.unread, 0)
        if self.request is None and self.local_task is None:
            self._resume()

    # -------------------------------------------------------------- parsing

    def _parse(self) -> None:
        proxy = self.proxy
        settings = proxy.settings
        for _ in range(10_000):
            if (
                self.closed
                or self.request is not None
                or self.local_task is not None
                or self.write_blocked
            ):
                return
            head = self.head
            if head is None:
                if self.buf.startswith(b"\r\n"):
                    del self.buf[: _blank_lines(self.buf)]
                end = self.buf.find(b"\r\n\r\n")
                # The whole head counts, also one that came with its end in a single read.
                if (end + 4 if end >= 0 else len(self.buf)) > MAX_HEADER_BYTES:
                    self._reject(431, "headers_too_large", "headers too large")
                    return
                if end < 0:
                    return
                try:
                    head = parse_request_head(bytes(self.buf[: end + 4]))
                except BadMessage as exc:
                    self._reject(400, "bad_request", str(exc))
                    return
                del self.buf[: end + 4]
                if head.shadow_copy:
                    head.raw = _without_shadow_mark(head.raw)
                if head.path in HEALTH_PATHS or head.path in READY_PATHS:
                    self._local(head)
                    continue
                length = head.content_length or 0
                if length > settings.max_body_bytes:
                    self._too_large(head)
                    return
                # A declared length that does not fit is refused at once; the body is
                # counted as it comes (a head alone holds nothing: heads sent without
                # their bodies must not hold the budget from others until their timeout).
                if not proxy.admits(0, length):
                    self._busy(head)
                    return
                self.head, self.continued = head, False
                proxy.clients[self] = _BUSY
                self._count()
            endpoint = endpoint_of(settings.protocol, head.method, head.path)
            if head.chunked:
                chunks = self.chunks
                if chunks is None:
                    chunks = self.chunks = _bounded_scanner(settings.max_body_bytes)
                try:
                    found = chunks.scan(self.buf)
                except BodyTooLarge:
                    self._too_large(head)
                    return
                except BadMessage as exc:
                    self._bad_body(endpoint, str(exc), origin_of(head.shadow_copy), head)
                    return
                if found is None:
                    # Its size unknown, a chunked body counts as it comes (and framed).
                    held = len(self.buf) + chunks.size
                    if not proxy.admits(self.held, held):
                        self._busy(head)
                        return
                    self.held = proxy.charge(self.held, held)
                    self._await_body(head)
                    return
                self.chunks = None
                end, body = found
                self.held = proxy.charge(self.held, end + len(body))
                raw_body, self.buf = take_front(self.buf, end)
            else:
                end = head.content_length or 0
                # Admitted at its head: counted as it comes, never refused half sent (a
                # small request admitted meanwhile must not cut a large upload short).
                held = min(len(self.buf), end)  # the rest of the buffer: the next request
                self.held = proxy.charge(self.held, held)
                if held < end:
                    self._await_body(head)
                    return
                raw_body, self.buf = take_front(self.buf, end)
                body = raw_body
            self.head = None
            if self.timer is not None:  # the body's: it has all come
                self.timer.cancel()
                self.timer = None
            # The duration runs from the complete request: a slow upload is the client's
            # time (bounded by the body's timer); the model server's starts now.
            request = _Request(head, raw_body, body, endpoint, proxy.clock(), None)
            if endpoint == "infer":
                request.request_id = proxy.identify(head, body)
            request.timer = proxy.loop.call_later(
                settings.upstream_timeout_seconds, self._timed_out
            )
            self.request = request
            proxy.dispatch(self, request)

    def _await_body(self, head: RequestHead) -> None:
        """The body has not all come: bound the wait (once per request), and ask for it."""
        if self.timer is None:
            self.timer = self.proxy.loop.call_later(
                self.proxy.settings.upstream_timeout_seconds, self._body_timed_out
            )
        if head.expect_continue and not self.continued and self.transport is not None:
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -------------------------------------------------------------- outcomes

    def _settle(self, request: _Request) -> bool:
        """End ``request`` as the one in flight; False when it no longer is (it timed out
        and was answered meanwhile): then the caller does nothing more for it."""
        if self.request is not request:
            return False
        if request.timer is not None:
            request.timer.cancel()
        self.request = None
        self._uncount()
        self.proxy.held -= self.held
        self.held = 0
        return True

    def on_response(self, request: _Request, resp: Response) -> None:
        if not self._settle(request):
            return
        proxy = self.proxy
        head = request.head
        # Computed before the write: the answer must say so when it is the last one.
        closing = self._closing(head.keep_alive and resp.keep_alive)
        if not self.closed and self.transport is not None:
            answer_head = resp.head
            if closing and resp.keep_alive:
                # The model server's head promises keep-alive; pooled clients would reuse it.
                answer_head = with_connection_close(answer_head)
            if request.request_id:
                answer_head = with_identity_headers(
                    answer_head,
                    b"X-Request-Id: %s\r\n%s" % (request.request_id.encode(), proxy.revision_line),
                    resp.has_request_id,
                )
            write_message(self.transport, answer_head, resp.raw_body)
        proxy.ops.observe(
            request.endpoint,
            outcome_of(resp.status),
            resp.status,
            proxy.clock() - request.start,
            len(request.body),
            len(resp.body),
            origin_of(head.shadow_copy),
        )
        if request.endpoint == "infer":
            proxy.record(request, resp)
        self._next(closing)

    def on_failure(self, request: _Request, error: UpstreamError) -> None:
        if not self._settle(request):
            return
        proxy = self.proxy
        proxy.ops.upstream_failure(error.reason)
        proxy.ops.observe(
            request.endpoint,
            "upstream_error",
            error.status,
            proxy.clock() - request.start,
            len(request.body),
            0,
            origin_of(request.head.shadow_copy),
        )
        closing = self._closing(request.head.keep_alive)
        if not self.closed and self.transport is not None:
            self.transport.write(
                error_response(
                    error.status,
                    f"upstream_{error.reason}",
                    str(error),
                    close=closing,
                    head_only=request.head.method == "HEAD",
                    retry_after=error.retry_after,
                )
            )
        self._next(closing)

    def _body_timed_out(self) -> None:
        """The body did not come within the bound: the client's fault, not the model's (408,
        which ends the connection: the rest of the body is no next request)."""
        self.timer = None
        head = self.head
        words = (
            "request body not received within "
            f"{self.proxy.settings.upstream_timeout_seconds:g} s of its head"
        )
        if head is None:
            self._reject(408, "body_timeout", words)
            return
        endpoint = endpoint_of(self.proxy.settings.protocol, head.method, head.path)
        self._reject(408, "body_timeout", words, endpoint, origin_of(head.shadow_copy), head)

    def _timed_out(self) -> None:
        """The model server did not answer within upstream.timeoutSeconds of the dispatch."""
        request = self.request
        if request is None:  # answered meanwhile (its timer is cancelled then)
            return
        request.timer = None
        if request.upstream is not None:
            request.upstream.abandon()
        self.on_failure(request, UpstreamError("timeout", 504, "model server timed out"))

    def _closing(self, keep_alive: bool) -> bool:
        """Whether the connection closes after the answer being written now: the
        exchange was not keep-alive, the sidecar is draining, or the client half-closed
        and nothing it sent is left to answer."""
        return not keep_alive or self.proxy.draining or (self.eof and not self.buf)

    def _next(self, closing: bool) -> None:
        """After an answer: close, or go on with the next (pipelined) request."""
        if self.closed or self.transport is None:
            return
        if closing:
            self.close()
            return
        self.proxy.clients[self] = self.proxy.loop.time()
        self._resume()

    def _resume(self) -> None:
        """Go on reading and with the requests pipelined meanwhile, unless the client
        does not read its answers: then resume_writing does, once it has."""
        transport = self.transport
        if self.closed or transport is None or self.write_blocked:
            return
        if self.paused:
            self.paused = False
            transport.resume_reading()
        if self.buf:
            self._parse()
        if self.eof and self.request is None and self.local_task is None and not self.closed:
            # Half-closed: what is left cannot become a request, and no answer is due.
            self.close()

    # -------------------------------------------------------------- local answers

    def _local(self, head: RequestHead) -> None:
        # A body we do not read: do not reuse the connection.
        keep = head.keep_alive and not (head.content_length or head.chunked)
        proxy = self.proxy
        head_only = head.method == "HEAD"
        if head.path in HEALTH_PATHS:
            self._write(
                simple_response(200, b'{"alive":true}', close=not keep, head_only=head_only)
            )
            if not keep:
                self.close()  # and nothing behind it is parsed or served
                return
            # An answered probe is activity: the idle reaper must not close this connection.
            proxy.clients[self] = proxy.loop.time()
            return
        proxy.clients[self] = _BUSY  # until the answer (_next), however long the check takes
        self.local_task = proxy.loop.create_task(self._ready(keep, head_only))

    async def _ready(self, keep: bool, head_only: bool) -> None:
        try:
            status, body = await self.proxy.readiness()
        except Exception:  # answered all the same: the connection is busy until it is
            log.exception("readiness check failed")
            status, body = 503, b'{"ready":false,"reason":"readiness check failed"}'
        finally:
            self.local_task = None
        closing = self._closing(keep)
        self._write(simple_response(status, body, close=closing, head_only=head_only))
        self._next(closing)

    # -------------------------------------------------------------- helpers

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        """The client finished sending (half-close).

        A request in flight still gets its answer, and so do the complete ones
        pipelined behind it (also those waiting for the client to read earlier
        answers): keep the connection open and close it once none is left
        (``_next``). Otherwise, and while lingering, close now.
        """
        if self.linger_budget is None and (
            self.request is not None
            or self.local_task is not None
            or (self.write_blocked and self.buf)
        ):
            self.eof = True
            return True
        return None

    def _reply_and_close(self, data: bytes) -> None:
        """Answer a request the sidecar rejects, then close without resetting the client."""
        self._write(data)
        self._cancel_timer()
        self._uncount()
        self.held = self.proxy.charge(self.held, 0)
        self.head = None
        self.chunks = None
        self.closed = True
        self._linger()

    def _linger(self) -> None:
        """Half-close and discard the rest of the client's bytes, then close.

        Why: a client uploading a body the sidecar refuses (413) is still writing
        when the answer goes out; closing at once with its bytes unread makes the
        kernel send a reset, and most clients then report a broken connection
        instead of the 413. Bounded in time and bytes.
        """
        transport = self.transport
        if transport is None:
            return
        self.buf.clear()
        try:
            can_half_close = transport.can_write_eof()
        except (AttributeError, NotImplementedError):
            can_half_close = False
        if not can_half_close or transport.is_closing():
            transport.close()
            return
        self.linger_budget = LINGER_MAX_BYTES
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        if self.paused:
            self.paused = False
            transport.resume_reading()
        self.linger_timer = self.proxy.loop.call_later(LINGER_SECONDS, transport.close)

    def _reject(
        self,
        status: int,
        reason: str,
        message: str,
        endpoint: str = "other",
        origin: str = LIVE,
        head: RequestHead | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Refuse a request, counted: it never completed, so its answer goes at once and the
        duration it adds is 0 (the time the client took to send what came is not latency).
        ``head``: the request's, when it was read (a HEAD request's answer has no body)."""
        self.proxy.ops.reject(reason)
        self.proxy.ops.observe(endpoint, "rejected", status, 0.0, 0, 0, origin)
        head_only = head is not None and head.method == "HEAD"
        self._reply_and_close(
            error_response(
                status, reason, message, close=True, head_only=head_only, retry_after=retry_after
            )
        )

    def _too_large(self, head: RequestHead) -> None:
        settings = self.proxy.settings
        endpoint = endpoint_of(settings.protocol, head.method, head.path)
        words = f"request body over {settings.max_body_bytes} bytes"
        self._reject(413, "body_too_large", words, endpoint, origin_of(head.shadow_copy), head)

    def _busy(self, head: RequestHead) -> None:
        """Refuse a request while the proxy holds its budget of bodies (HELD_BYTES_BUDGET)."""
        endpoint = endpoint_of(self.proxy.settings.protocol, head.method, head.path)
        words = f"the sidecar holds {HELD_BYTES_BUDGET >> 20} MiB of bodies; retry later"
        origin = origin_of(head.shadow_copy)
        self._reject(503, "memory_budget", words, endpoint, origin, head, BUSY_RETRY_AFTER)

    def _bad_body(
        self, endpoint: str, why: str, origin: str, head: RequestHead | None = None
    ) -> None:
        self._reject(400, "bad_request", f"bad request body: {why}", endpoint, origin, head)

    def _count(self) -> None:
        if not self.counted:
            self.counted = True
            self.proxy.begin()

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.proxy.end()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        # Marked at once, not in connection_lost: bytes already buffered behind the
        # last answer must not be parsed and served.
        self.closed = True
        # Idle from now for the reaper: closed after its answer (Connection: close), one
        # that does not read it is cut off in time too (busy, it was never looked at).
        if self.proxy.clients.get(self) == _BUSY:
            self.proxy.clients[self] = self.proxy.loop.time()
        if self.transport is not None:
            self.transport.close()

    def reap(self, now: float, span: float) -> None:
        """Idle past listen.idleTimeoutSeconds (``span``): closed, its unread answers still
        sent. One that has taken none of them for ``span`` more is cut off: closed, its
        buffer would hold their memory for as long as TCP keeps the connection. What it
        takes shows in the kernel's send queue, which moves only when the client's window
        reopens (every 100 KB or so read: a slow reader's queue stands still for seconds)."""
        unsent = _unacknowledged(self.transport) if self.transport is not None else 0
        if self.unsent_seen is None or unsent < self.unsent_seen:
            self.taken_at = now
        self.unsent_seen = unsent
        stalled = self.write_blocked and now - self.taken_at >= span
        if stalled and self.transport is not None:
            self.closed = True
            self.transport.abort()
            return
        self.close()


def _unacknowledged(transport: asyncio.Transport) -> int:
    """Bytes written to a client that it has not acknowledged: the transport's buffer and
    the kernel's send queue (Linux: TIOCOUTQ; elsewhere the buffer alone)."""
    queued = 0
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    return transport.get_write_buffer_size() + queued


class Proxy:
    """Serves the pod's ``http`` port."""

    def __init__(
        self,
        settings: Settings,
        ops: OpsMetrics,
        monitor: Monitor,
        shadow: Shadow,
        ids: IdMaker | None = None,
    ) -> None:
        self.settings = settings
        self.ops = ops
        self.monitor = monitor
        self.shadow = shadow
        self.clock: Callable[[], float] = time.perf_counter
        self.ids = ids or IdMaker(settings.revision, "")
        self.revision_line = b"X-Vigil-Revision: %s\r\n" % settings.revision.encode("latin-1")
        self._parse_body_id = settings.protocol in ("v2", "v1")
        self._raw = settings.protocol == "raw"
        self.server: asyncio.Server | None = None
        self.draining = False
        self.in_flight = 0
        #: Body bytes of the requests and answers on their way (HELD_BYTES_BUDGET).
        self.held = 0
        self.idle: deque[_Upstream] = deque()
        #: Client connections and when they were last active (_BUSY while serving).
        self.clients: dict[_Client, float] = {}
        self._idle_event = asyncio.Event()
        self._idle_event.set()
        self._ready_at = 0.0
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # The proxy is built inside the running loop (Sidecar.create); start() re-reads it.
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(
            lambda: _Client(self),
            self.settings.listen_host,
            self.settings.listen_port,
            backlog=1024,
            reuse_address=True,
        )

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.sockets
        return int(self.server.sockets[0].getsockname()[1])

    async def drain(self, timeout: float) -> bool:
        """Stop accepting, wait for in-flight requests and for their answers to be sent,
        close idle connections.

        Returns False when requests were still running, or answers still being sent, at
        the deadline.
        """
        self.draining = True
        if self.server is not None:
            self.server.close()
        done = True
        try:
            async with asyncio.timeout(timeout):
                # Woken a loop turn after the count reached 0, a request may have started
                # meanwhile on a kept-alive connection: done only when none runs now (the
                # connections close below, in this same turn, so none starts after).
                while True:
                    while self.in_flight:
                        await self._idle_event.wait()
                    if not self.unsent_bytes():
                        break
                    # An answer is written whole to the transport: a slow reader's rest is
                    # still in its buffer, and the process exiting would cut it off.
                    await asyncio.sleep(SEND_POLL_SECONDS)
        except TimeoutError:
            done = False
            log.warning(
                "drain timeout: %d requests still in flight, %d answer bytes unsent",
                self.in_flight,
                self.unsent_bytes(),
            )
        for client in list(self.clients):
            client.close()
        while self.idle:
            self.idle.pop().abandon()
        return done

    def unsent_bytes(self) -> int:
        """Answer bytes written but not yet handed to the kernel, over the connections
        still open (a closed one leaves the table when its connection is lost)."""
        total = 0
        for client in self.clients:
            if client.transport is not None:
                total += client.transport.get_write_buffer_size()
        return total

    async def reap_idle(self) -> None:
        """Close client connections idle for longer than ``listen.idleTimeoutSeconds``.

        One timestamp per request instead of a timer per request; this also
        bounds clients that never finish sending their headers.
        """
        idle = self.settings.idle_timeout_seconds
        while True:
            await asyncio.sleep(min(max(idle / 4, 0.05), 5.0))
            now = self.loop.time()
            for client, since in list(self.clients.items()):
                if since < now - idle:
                    client.reap(now, idle)

    def charge(self, was: int, now: int) -> int:
        """A holder's body bytes go from ``was`` to ``now`` in ``held``; returns ``now``."""
        self.held += now - was
        return now

    def admits(self, was: int, now: int) -> bool:
        """Whether a request may hold ``now`` body bytes instead of ``was``: within the
        budget with all else held, or nothing else is held (a request always goes alone).

        The copies queued for monitoring and shadowing are not counted: their queues have
        their own bounds and drop copies when full (a live request is never refused for
        them), and they mostly hold the very bodies of the requests counted here."""
        others = self.held - was
        return others <= 0 or others + now <= HELD_BYTES_BUDGET

    def begin(self) -> None:
        self.in_flight += 1
        self.ops.in_flight = self.in_flight
        self._idle_event.clear()

    def end(self) -> None:
        self.in_flight -= 1
        self.ops.in_flight = self.in_flight
        if self.in_flight == 0:
            self._idle_event.set()

    # ------------------------------------------------------------ upstream

    def dispatch(self, client: _Client, request: _Request) -> None:
        """Send a complete request on an idle connection, or open one."""
        idle = self.idle
        while idle:
            upstream = idle.pop()
            if not upstream.closed:
                upstream.send(client, request, reused=True)
                return
        self.connect_and_send(client, request)

    def connect_and_send(self, client: _Client, request: _Request) -> None:
        task = self.loop.create_task(self._connect_and_send(client, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_and_send(self, client: _Client, request: _Request) -> None:
        try:
            _, upstream = await self.loop.create_connection(
                lambda: _Upstream(self), self.settings.upstream_host, self.settings.upstream_port
            )
        except ConnectionRefusedError:
            client.on_failure(
                request, UpstreamError("refused", 503, "model server refused the connection")
            )
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.EADDRNOTAVAIL):
                error = UpstreamError("refused", 503, "model server refused the connection")
            else:
                error = UpstreamError("reset", 502, f"cannot connect to the model server: {exc}")
            client.on_failure(request, error)
            return
        if client.request is not request:  # timed out while connecting
            self.release(upstream)
            return
        upstream.send(client, request, reused=False)

    def release(self, upstream: _Upstream) -> None:
        if len(self.idle) < MAX_IDLE_UPSTREAM and not upstream.closed:
            self.idle.append(upstream)
        else:
            upstream.abandon()

    # ------------------------------------------------------------ monitoring

    def identify(self, head: RequestHead, body: bytes) -> str:
        """The id of an inference request: the body's ``id``, the client's header, or a new one.

        The body's wins: gateways (Envoy Gateway, Istio, Contour, ingress-nginx) add or
        replace ``X-Request-Id`` with their own, and only the body's is surely the client's.
        The model server gets the id in ``X-Request-Id``: added when the request had
        none, replaced when it had another (a gateway's, an unusable one).
        """
        found = body_id(body) if self._parse_body_id else None
        if found is None:
            given = clean_id(head.request_id) if head.request_id else None
            if given is not None:
                return given
            found = self.ids.make()
        if not head.has_request_id or head.request_id != found:
            head.raw = with_request_header(head.raw, found, replace=head.has_request_id)
        return found

    def record(self, request: _Request, resp: Response) -> None:
        """Queue copies for monitoring and shadowing (after the client has its answer).

        Every answer that carried an id keeps it, also one without a prediction to
        read (an error, the raw protocol): a label for it then counts as
        ``no_prediction``, not as ``lost`` (which says the pod went away).
        """
        head = request.head
        # A shadow copy's answer never reached a client: nobody labels it here.
        request_id = "" if head.shadow_copy else request.request_id
        if self._raw:
            if request_id and self.monitor.recorder is not None:
                # Bodies are not read in raw: the id alone is queued, and kept unmonitored.
                self.monitor.submit(
                    Exchange(b"", "", None, "", "", "", request_id, time.time(), sampled=False)
                )
            return
        ok = 200 <= resp.status < 300
        self.monitor.submit(
            Exchange(
                request.body,
                head.content_type,
                resp.body if ok else None,
                resp.content_type,
                head.content_encoding,
                resp.content_encoding if ok else "",
                request_id,
                time.time(),
                request_json_length=head.json_length,
                response_json_length=resp.json_length if ok else None,
            )
        )
        if ok and not head.shadow_copy and self.shadow.wants():
            self.shadow.submit(
                ShadowCopy(
                    head.method,
                    head.target,
                    head.content_type,
                    request.body,
                    resp.body,
                    resp.content_type,
                    head.content_encoding,
                    resp.content_encoding,
                    head.raw,
                    resp.json_length,
                )
            )

    # ------------------------------------------------------------ readiness

    async def upstream_ready(self) -> bool:
        """Ask the model server's readiness path (cached for a second)."""
        now = time.monotonic()
        if now - self._ready_at < READY_CACHE_SECONDS:
            return self._ready
        async with self._ready_lock:
            if time.monotonic() - self._ready_at < READY_CACHE_SECONDS:
                return self._ready
            ready = False
            writer = None
            try:
                async with asyncio.timeout(2.0):
                    reader, writer = await asyncio.open_connection(
                        self.settings.upstream_host, self.settings.upstream_port
                    )
                    writer.write(
                        f"GET {self.settings.effective_readiness_path} HTTP/1.1\r\n"
                        f"Host: {self.settings.upstream_host}\r\n"
                        "Connection: close\r\n\r\n".encode("latin-1")
                    )
                    resp = await read_response(reader, head_request=False)
                    ready = 200 <= resp.status < 300
            except (OSError, TimeoutError, BadMessage, asyncio.IncompleteReadError):
                ready = False
            finally:
                if writer is not None:
                    writer.close()
            self._ready, self._ready_at = ready, time.monotonic()
            self.ops.set_upstream_ready(ready)
            return ready

    async def readiness(self) -> tuple[int, bytes]:
        if self.draining:
            return 503, b'{"ready":false,"reason":"draining"}'
        if not await self.upstream_ready():
            return 503, b'{"ready":false,"reason":"model server not ready"}'
        return 200, b'{"ready":true}'
