"""The shadow copies' HTTP/1.1 client: keep-alive connections on asyncio protocols.

Why not aiohttp (as before): profiled in-process, an aiohttp client request
(request and response objects, header multidicts, stream reader, payload
writer, several futures and tasks per exchange) was the larger half of a
shadow copy's CPU, more than the whole proxied request. The copy now goes
out the way the proxy's own requests do (``proxy._Upstream``): one write of
head and body on a pooled keep-alive connection, the answer framed in
``data_received`` with the same parsers (``wire``), one future per exchange.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from vigil.sidecar.wire import (
    BadMessage,
    BodyTooLarge,
    ChunkedScanner,
    ResponseConnection,
    ResponseHead,
)

__all__ = ["AnswerTooLarge", "TargetClient", "TargetError", "TargetResponse"]

MAX_IDLE = 64


class TargetError(ConnectionError):
    """The target broke the exchange: closed the connection, or sent invalid HTTP."""


class AnswerTooLarge(TargetError):
    """The answer is over the exchange's ``max_body``: not read further, the connection closed."""


class _Stale(TargetError):
    """A reused keep-alive connection closed before any answer: retry on a fresh one."""


@dataclass(slots=True)
class TargetResponse:
    """The target's answer: ``body`` de-chunked but still content-encoded."""

    status: int
    body: bytes
    content_type: str
    content_encoding: str
    #: Inference-Header-Content-Length: the body's JSON part, binary tensors after it.
    json_length: int | None = None


class _Connection(ResponseConnection):
    """One keep-alive connection to the target, one exchange at a time."""

    def __init__(self, client: TargetClient, key: tuple[str, int]) -> None:
        super().__init__()
        self.client = client
        self.key = key
        self.waiter: asyncio.Future[TargetResponse] | None = None
        self.no_body = False
        self.max_body: int | None = None

    def send(
        self,
        raw: bytes,
        waiter: asyncio.Future[TargetResponse],
        no_body: bool,
        reused: bool,
        max_body: int | None = None,
    ) -> None:
        assert self.transport is not None
        self.waiter, self.no_body, self.reused = waiter, no_body, reused
        self.max_body = max_body
        self.got_bytes = False
        self.sent_at = asyncio.get_running_loop().time()
        self.transport.write(raw)

    def _expecting(self) -> bool:
        waiter = self.waiter
        return waiter is not None and not waiter.done()  # not given up

    def _invalid(self, error: BadMessage) -> None:
        self._fail(TargetError(f"invalid HTTP from the shadow target: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        head = self.head
        if head is not None and not head.chunked and head.content_length is None and exc is None:
            # An answer delimited by the end of the connection: complete now (a reset cuts
            # it short: half a prediction would read as a disagreement).
            self._done(head, bytes(self.buf), reusable=False)
            return
        if self.closed_while_idle():  # later, it may have run the copy: not sent twice
            self._fail(_Stale("kept-alive connection closed by the shadow target"))
        elif self.got_bytes and exc is not None:
            self._fail(TargetError("shadow target reset the connection mid-answer"))
        else:
            self._fail(TargetError("shadow target closed the connection without an answer"))

    def _chunked_scanner(self) -> ChunkedScanner:
        limit = self.max_body
        # Framing besides the data: as much again (chunks down to a few bytes), bounded.
        return ChunkedScanner(0, limit, 2 * limit + 4096) if limit is not None else ChunkedScanner()

    def _parse(self) -> None:
        limit = self.max_body
        try:
            taken = self._take_response(no_body=self.no_body)
            head = self.head
            if limit is not None and head is not None and not head.chunked:
                # Refused once its length says so, or once more has come before the end
                # (a chunked one: by its scanner).
                if taken is not None:
                    size = len(taken[2])
                else:
                    size = max(head.content_length or 0, len(self.buf))
                if size > limit:
                    raise BodyTooLarge
        except BodyTooLarge:
            self._fail(AnswerTooLarge(f"shadow target answer over {limit} bytes"))
            return
        if taken is None:
            return  # more to come, or until the connection closes
        head, _, body, leftover = taken
        self._done(head, body, reusable=head.keep_alive and not leftover)

    def _done(self, head: ResponseHead, body: bytes, reusable: bool) -> None:
        waiter = self.waiter
        self.waiter = self.head = None
        self.buf.clear()
        if reusable and not self.closed:
            self.client.release(self)
        else:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(
                TargetResponse(
                    head.status, body, head.content_type, head.content_encoding, head.json_length
                )
            )

    def _fail(self, error: TargetError) -> None:
        waiter = self.waiter
        self.waiter = self.head = None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class TargetClient:
    """Pooled keep-alive HTTP/1.1 exchanges with shadow targets (plain http)."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self.idle: list[_Connection] = []

    async def request(
        self, host: str, port: int, raw: bytes, no_body: bool, max_body: int | None = None
    ) -> TargetResponse:
        """Send ``raw`` (a complete request) and return the answer.

        Raises :class:`TargetError` (an ``OSError``) when the exchange breaks and
        ``OSError`` when the target cannot be reached; :class:`AnswerTooLarge` (a
        TargetError) for a body over ``max_body`` bytes (as sent: still encoded).
        Cancelled (a timeout), the connection is closed: a late answer must not reach
        the next exchange.
        """
        loop = asyncio.get_running_loop()
        key = (host, port)
        for attempt in range(2):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                _, conn = await loop.create_connection(lambda: _Connection(self, key), host, port)
            waiter: asyncio.Future[TargetResponse] = loop.create_future()
            conn.send(raw, waiter, no_body, reused, max_body)
            try:
                return await waiter
            except _Stale:
                if attempt:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.key == key:
                return conn
            conn.close()  # closed, or to a target no longer in use
        return None

    def release(self, conn: _Connection) -> None:
        if len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle connections (those in use close when their exchange ends)."""
        while self.idle:
            self.idle.pop().close()
