"""One object over HTTP(S) to a file: streamed, hashed, resumed, retried.

Memory stays bounded by a few fixed buffers whatever the size. When a digest
is wanted, a second thread hashes each buffer while the next one is read
(hashlib, socket reads and file writes release the GIL), so verifying costs
little wall time on two cores.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import queue
import random
import re
import shutil
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from vigil.common.uris import shown_uri
from vigil.fetch.errors import FetchError, HttpStatusError, PermanentError, TransientError

BUFFER_BYTES = 1 << 20
#: Buffers in flight between the reader and the hashing thread.
HASH_BUFFERS = 4
MAX_REDIRECTS = 5
#: An error response's body is read for its words, never more than this.
ERROR_BODY_BYTES = 64 << 10
_TRANSIENT_STATUSES = frozenset({408, 425, 429})
#: TLS that cannot work whatever the retries: https:// aimed at a plain-HTTP port, say.
_TLS_MISMATCH = frozenset({"WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "HTTP_REQUEST"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Request:
    """One GET: an absolute URL (path and query already encoded) and its headers."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


#: Called for every attempt: S3 signs each one afresh (its signature holds the time).
RequestFactory = Callable[[], Request]
#: The words of an error response: ``(status, reason, body, headers) -> message``; the
#: headers' names in lower case.
Describe = Callable[[int, str, bytes, Mapping[str, str]], str]


def describe_status(status: int, reason: str, _body: bytes, _headers: Mapping[str, str]) -> str:
    return f"{status} {reason}".strip()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: ``base``, ``2*base``, ``4*base`` ... at most ``cap``, with jitter."""

    retries: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delay(self, failure: int, retry_after: float | None = None) -> float:
        backoff = min(self.cap_seconds, self.base_seconds * 2 ** (failure - 1))
        # Jitter keeps many init containers from retrying in step; a server's Retry-After
        # is waited out whole (sooner, it answers 429 or 503 again).
        backoff *= random.uniform(0.8, 1.0)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.cap_seconds))
        return backoff


@dataclass(frozen=True)
class Connection:
    """How to reach servers: a socket timeout (per read, not per file) and TLS."""

    timeout_seconds: float = 30.0
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str | None


class Progress:
    """``bytes of total`` lines on the log, at most one a ``interval`` seconds."""

    def __init__(
        self,
        total: int | None = None,
        *,
        interval: float = 1.0,
        out: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done_bytes = 0
        self._interval = interval
        self._out = out if out is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._last = self._started

    def set_total(self, total: int | None) -> None:
        self.total = total

    def advance(self, count: int) -> None:
        self.done_bytes += count
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self.report()

    def rewind(self, count: int) -> None:
        """A restart from the beginning takes back what was counted."""
        self.done_bytes -= count

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done_bytes / elapsed / 1e6
        if self.total:
            percent = 100 * self.done_bytes // self.total
            return f"{self.done_bytes} of {self.total} bytes ({percent}%), {rate:.1f} MB/s"
        return f"{self.done_bytes} bytes (total unknown), {rate:.1f} MB/s"

    def report(self) -> None:
        log(self.line(), out=self._out)


def log(message: str, *, out: IO[str] | None = None) -> None:
    print(f"vigil-fetch: {message}", file=out if out is not None else sys.stderr, flush=True)


class FileSink:
    """Writes to the target; a local write error is permanent (a full disk stays full)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        try:
            self._file = open(path, "wb", buffering=0)  # noqa: SIM115 (closed by close())
        except OSError as error:  # a name too long for the file system, a read-only folder
            raise local_write_error(error, path, 0) from None

    def write(self, view: memoryview) -> None:
        try:
            while view:
                count = self._file.write(view)
                self.written += count
                view = view[count:]
        except OSError as error:
            raise local_write_error(error, self.path, self.written) from None

    def restart(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self.written = 0

    def close(self) -> str | None:
        self._file.close()
        return None


class HashingSink:
    """A :class:`FileSink` whose bytes a second thread hashes (sha256) as they pass."""

    def __init__(self, inner: FileSink) -> None:
        self.inner = inner
        self._hash = hashlib.sha256()
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._work: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        for _ in range(HASH_BUFFERS):
            self._free.put(bytearray(BUFFER_BYTES))
        self._thread = threading.Thread(target=self._hash_loop, name="sha256", daemon=True)
        self._thread.start()

    def buffer(self) -> bytearray:
        return self._free.get()

    def give_back(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def write_buffer(self, buffer: bytearray, count: int) -> None:
        """Write ``buffer[:count]`` now, hash it in the background, then free it."""
        try:
            self.inner.write(memoryview(buffer)[:count])
        except FetchError:
            self._free.put(buffer)
            raise
        self._work.put((buffer, count))

    def _hash_loop(self) -> None:
        while (item := self._work.get()) is not None:
            buffer, count = item
            self._hash.update(memoryview(buffer)[:count])
            self._free.put(buffer)

    def _drain(self) -> None:
        self._work.put(None)
        self._thread.join()

    def restart(self) -> None:
        self._drain()
        self.inner.restart()
        self._hash = hashlib.sha256()
        self._thread = threading.Thread(target=self._hash_loop, name="sha256", daemon=True)
        self._thread.start()

    def close(self) -> str | None:
        self._drain()
        self.inner.close()
        return self._hash.hexdigest()


def local_write_error(error: OSError, path: Path, written: int) -> PermanentError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path.parent)
        return PermanentError(
            f"no space left on device writing {path.name} after {written} bytes"
            f" ({free} bytes free in {path.parent})"
        )
    return PermanentError(f"cannot write {path}: {error.strerror or error}")


def free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def check_room(folder: Path, needed: int, what: str) -> None:
    """Fail before downloading when the folder cannot hold ``needed`` bytes."""
    free = free_bytes(folder)
    if needed > free:
        raise PermanentError(
            f"no space left on device: {what} needs {needed} bytes, {free} bytes free in {folder}"
        )


#: What a request line cannot carry as it is: controls, space, and all that is not ASCII.
_UNSENDABLE = re.compile(rb"[^\x21-\x7e]")


def escape_unsendable(text: str) -> str:
    """Percent-encode (UTF-8) what a request line cannot carry; the rest, escapes
    included, stays as written, so an S3 request keeps the path it signed."""
    data = text.encode("utf-8", errors="surrogateescape")
    return _UNSENDABLE.sub(lambda m: b"%%%02X" % m[0][0], data).decode("ascii")


def _connect(url: str, connection: Connection) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    target = escape_unsendable(parts.path or "/")
    if parts.query:
        target += "?" + escape_unsendable(parts.query)
    host = parts.hostname or ""
    if parts.scheme == "https":
        context = connection.ssl_context or ssl.create_default_context()
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, parts.port, timeout=connection.timeout_seconds, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=connection.timeout_seconds)
    return conn, target


def _unsendable_request(headers: Mapping[str, str], url: str, error: Exception) -> PermanentError:
    """Words for a request http.client refused to send. Never the values: a header
    holds a credential, a URL's query a signature."""
    for name, value in headers.items():
        if re.search(r"[\r\n\0]|[^\x00-\xff]", value):
            return PermanentError(
                f"cannot send the request: its {name} header holds a line break or a character"
                " HTTP cannot carry (check the credentials it is made from)"
            )
    return PermanentError(
        f"cannot send the request to {_where(url)}: its URL or headers hold what HTTP"
        f" cannot carry ({type(error).__name__})"
    )


@dataclass(frozen=True)
class Opened:
    """A response, its connection (the caller closes it), and the URL that answered."""

    conn: http.client.HTTPConnection
    response: http.client.HTTPResponse
    #: The request's URL, or where its redirects led.
    url: str


class Unreached(Exception):
    """A network error talking to ``url``: the request's, or a redirect's."""

    def __init__(self, cause: OSError | http.client.HTTPException, url: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.url = url


def open_response(
    request: Request,
    extra_headers: Mapping[str, str],
    connection: Connection,
    *,
    follow_redirects: bool,
) -> Opened:
    """Send the GET (following redirects when asked); raises :class:`Unreached` naming
    the URL last asked when the network fails."""
    url = request.url
    headers = {**request.headers, **extra_headers}
    for _ in range(MAX_REDIRECTS + 1):
        try:
            conn, target = _connect(url, connection)
        except (ValueError, http.client.InvalidURL) as error:  # a port that is no number
            raise _unsendable_request(headers, url, error) from None
        try:
            try:
                conn.request("GET", target, headers=headers)
            except ssl.SSLError:  # a ValueError too (a certificate refused): said elsewhere
                raise
            except (ValueError, http.client.InvalidURL) as error:  # UnicodeError included
                raise _unsendable_request(headers, url, error) from None
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            raise Unreached(error, url) from error
        except BaseException:
            conn.close()
            raise
        location = response.getheader("Location")
        if not (follow_redirects and response.status in _REDIRECTS and location):
            return Opened(conn, response, url)
        conn.close()
        url = _redirect_target(url, location)
        # A redirect elsewhere gets none of the original request's headers.
        headers = dict(extra_headers)
    raise PermanentError(f"more than {MAX_REDIRECTS} redirects")


def _redirect_target(url: str, location: str) -> str:
    """The absolute URL a ``Location`` names; refuses one that is not http(s)."""
    # http.client reads header bytes as Latin-1: back to the server's bytes (UTF-8, as
    # browsers take them), percent-encoded when sent.
    with contextlib.suppress(UnicodeError):
        location = location.encode("latin-1").decode("utf-8", errors="surrogateescape")
    try:
        joined = urllib.parse.urljoin(url, location)
        scheme = urllib.parse.urlsplit(joined).scheme.lower()
    except ValueError:  # an unclosed IPv6 bracket
        raise PermanentError(f"redirected to {shown_uri(location)}, not a URL") from None
    if scheme not in ("http", "https"):
        # ftp://, file://: no retry reaches them over HTTP.
        raise PermanentError(f"redirected to {shown_uri(joined)}, which is not an http(s):// URL")
    if scheme == "http" and urllib.parse.urlsplit(url).scheme.lower() == "https":
        # Followed, anyone on the way could serve any archive: TLS (and a private CA) would
        # protect nothing.
        raise PermanentError(
            f"redirected from https to {shown_uri(joined)}: refused, the artifact would "
            "travel unencrypted and unauthenticated"
        )
    return joined


def _where(url: str) -> str:
    """``host[:port]`` of a URL, never a ``user:password@``."""
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2]


def transient_error_words(error: BaseException, url: str) -> str | None:
    """The words of a network error worth retrying; None when it is not one."""
    parts = urllib.parse.urlsplit(url)
    where = _where(url)
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed early by {where} (body incomplete)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return None
    if isinstance(error, ssl.SSLError) and error.reason in _TLS_MISMATCH:
        return None
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host {parts.hostname!r}: {error.strerror}"
    if isinstance(error, TimeoutError | socket.timeout):
        return f"timed out waiting for {where}"
    if isinstance(error, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(error, http.client.RemoteDisconnected):
        return f"{where} closed the connection without a response"
    if isinstance(error, ConnectionError):
        return f"connection to {where} failed: {error.strerror or error}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error with {where}: {error.reason or error}"
    if isinstance(error, http.client.HTTPException):
        return f"bad HTTP response from {where}: {type(error).__name__} {error}".strip()
    if isinstance(error, OSError) and error.errno in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ETIMEDOUT,
    ):
        return f"cannot reach {where}: {error.strerror}"
    return None


def _retry_after(response: http.client.HTTPResponse) -> float | None:
    value = response.getheader("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _Retry(Exception):
    """One attempt failed in a way worth another (internal to :func:`download`)."""

    def __init__(self, words: str, retry_after: float | None = None) -> None:
        super().__init__(words)
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Piece:
    """A 206's ``Content-Range: bytes FIRST-LAST/COMPLETE``; COMPLETE None for ``*``."""

    first: int
    last: int
    complete: int | None


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def _content_range(value: str | None) -> _Piece | None:
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    complete = None if match[3] == "*" else int(match[3])
    if last < first or (complete is not None and last >= complete):
        return None
    return _Piece(first, last, complete)


@dataclass
class _Resume:
    """What one attempt leaves the next."""

    #: Bytes in the file: the next request asks for the rest from there.
    offset: int = 0
    #: A strong ETag, else Last-Modified, for If-Range: the rest of the same object only.
    validator: str | None = None
    #: The object's size as the server stated it: a 200's Content-Length, or the complete
    #: length of a 206's Content-Range. A 206 may carry less than all the rest.
    total: int | None = None


def download(
    make_request: RequestFactory,
    target: Path,
    *,
    progress: Progress,
    retry: RetryPolicy,
    connection: Connection,
    describe: Describe = describe_status,
    sha256: bool = False,
    follow_redirects: bool = True,
    expected_size: int | None = None,
) -> Downloaded:
    """GET one object into ``target``; resume with ``Range`` after a broken transfer, and
    ask for more while the file is short of the object's size.

    Raises :class:`PermanentError` (4xx, a local write error, bad TLS, a size that changed
    mid-way) or :class:`TransientError` once ``retry.retries`` retries in a row failed.
    """
    file_sink = FileSink(target)
    sink: FileSink | HashingSink = HashingSink(file_sink) if sha256 else file_sink
    job = _Job(sink, file_sink, progress, connection, describe, follow_redirects, expected_size)
    state = _Resume()
    failures = 0
    furthest = 0
    try:
        while True:
            request = make_request()
            try:
                complete = _attempt(request, job, state)
            except _Retry as attempt_error:
                state.offset = file_sink.written
                # Further than any attempt before: count afresh. A server that ignores Range
                # starts over at byte 0, so more than this attempt's start is no progress.
                if state.offset > furthest:
                    failures, furthest = 0, state.offset
                failures += 1
                if failures > retry.retries:
                    raise TransientError(
                        f"{attempt_error} (gave up after {failures} attempts in a row)"
                    ) from None
                pause = retry.delay(failures, attempt_error.retry_after)
                log(
                    f"{attempt_error}; retry {failures} of {retry.retries} in {pause:.1f} s"
                    + (f", resuming at byte {state.offset}" if state.offset else "")
                )
                time.sleep(pause)
                continue
            if complete:
                return Downloaded(size=state.offset, sha256=sink.close())
            # A piece came whole and the object goes on: progress, not a failure, so the
            # rest is asked for at once.
            failures, furthest = 0, max(furthest, state.offset)
    except BaseException:
        sink.close()
        remove_quietly(target)
        raise


@dataclass(frozen=True)
class _Job:
    """What every attempt at one object shares: where the bytes go, how they are asked."""

    sink: FileSink | HashingSink
    file_sink: FileSink
    progress: Progress
    connection: Connection
    describe: Describe
    follow_redirects: bool
    expected_size: int | None


def _attempt(request: Request, job: _Job, state: _Resume) -> bool:
    """One GET of what the file lacks; True once the file holds the whole object.

    A failure of the network or the server after a redirect names where the redirect
    led, the URL last asked."""
    conn: http.client.HTTPConnection | None = None
    url = request.url
    failure: FetchError | _Retry
    of_the_server = True
    try:
        try:
            opened = open_response(
                request,
                _range_headers(state),
                job.connection,
                follow_redirects=job.follow_redirects,
            )
        except Unreached as unreached:
            url = unreached.url
            raise unreached.cause from None
        conn, url = opened.conn, opened.url
        return _receive(opened, job, state)
    except (FetchError, _Retry) as error:
        failure = error
        # Not a full disk or a size that changed: those are no URL's doing.
        of_the_server = isinstance(error, HttpStatusError | _Retry)
    except (OSError, http.client.HTTPException) as error:
        failure = _network_failure(error, url)
    finally:
        if conn is not None:
            conn.close()
    if url == request.url or not of_the_server:
        raise failure
    if isinstance(failure, FetchError):
        raise failure.about(_redirected(url)) from None
    raise _Retry(f"{_redirected(url)}: {failure}", failure.retry_after) from None


def _receive(opened: Opened, job: _Job, state: _Resume) -> bool:
    """Check the answer and stream its body into the file; True once the file is whole."""
    sink, file_sink, progress = job.sink, job.file_sink, job.progress
    response = opened.response
    _check_status(response, state.offset, job.describe)
    piece_end, remaining = _bounds(response, sink, state, progress, file_sink.path.name)
    goal = state.total if state.total is not None else job.expected_size
    end = piece_end if piece_end is not None else goal
    if goal is not None and progress.total is None:
        progress.set_total(goal)
    if remaining is not None:
        check_room(file_sink.path.parent, remaining, file_sink.path.name)
    # Read until the connection closes: only how it closes can tell a cut, and only a
    # digest can check the bytes.
    # Over TLS too, a close without close_notify counts as the end: many servers skip
    # it, and one that always does could never be fetched.
    unverified = end is None and not response.chunked and not isinstance(sink, HashingSink)
    state.validator = _validator(response)
    _stream(_body_reader(response, opened.conn, remaining, job.connection), sink, progress)
    state.offset = file_sink.written
    if end is not None and state.offset != end:
        of = goal if goal is not None else end
        raise _Retry(f"connection closed early by the server ({state.offset} of {of} bytes)")
    if unverified:
        name = file_sink.path.name
        log(
            f"warning: the server sent {name} without a length, ending it by closing the"
            f" connection: the size of {name} could not be verified (set sha256 to verify it)"
        )
    return goal is None or state.offset >= goal


def _redirected(url: str) -> str:
    """Says where a redirect led: a failure there names that URL, not the one asked."""
    return f"redirected to {shown_uri(url)}"


def _network_failure(error: OSError | http.client.HTTPException, url: str) -> FetchError | _Retry:
    """What a network error talking to ``url`` (the last URL asked) comes to."""
    words = transient_error_words(error, url)
    if words is not None:
        return _Retry(words)
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentError(f"TLS certificate verification failed: {error.verify_message}")
    if isinstance(error, ssl.SSLError) and error.reason in _TLS_MISMATCH:
        return PermanentError(
            f"TLS with {_where(url)} failed: {error.reason} (does it speak https on that port?)"
        )
    return PermanentError(f"{type(error).__name__}: {error}")


def _range_headers(state: _Resume) -> dict[str, str]:
    if not state.offset:
        return {}
    extra = {"Range": f"bytes={state.offset}-"}
    if state.validator:
        extra["If-Range"] = state.validator
    return extra


def _check_status(response: http.client.HTTPResponse, offset: int, describe: Describe) -> None:
    """Raise for an error status (:class:`_Retry` when another attempt may do better)."""
    status = response.status
    if status >= 300 and not (status == 416 and offset):
        body = response.read(ERROR_BODY_BYTES)
        headers = {name.lower(): value for name, value in response.getheaders()}
        words = describe(status, response.reason, body, headers)
        if status >= 500 or status in _TRANSIENT_STATUSES:
            raise _Retry(words, _retry_after(response))
        raise HttpStatusError(words, status)


def _bounds(
    response: http.client.HTTPResponse,
    sink: FileSink | HashingSink,
    state: _Resume,
    progress: Progress,
    name: str,
) -> tuple[int | None, int | None]:
    """Where a 206's bytes end in the file (None for a whole object), and the Content-Length.

    Starts the file over when the server sent the whole object instead of the rest, and
    keeps ``state.total`` as the server states it.
    """
    status = response.status
    value = response.getheader("Content-Range")
    piece = _content_range(value) if status == 206 else None
    if piece is not None and piece.first != state.offset:
        piece = None  # a range we did not ask for
    current = _validator(response)
    if piece is not None and _changed(state.validator, current):
        # The rest of another version (a server that ignores If-Range): its bytes after
        # the file's would make one object of two.
        log(f"restarting from byte 0 ({name} changed while it was fetched)")
        progress.rewind(state.offset)
        sink.restart()
        state.offset = 0
        raise _Retry(f"{name} changed while it was fetched ({state.validator}, then {current})")
    if state.offset and piece is None:
        # The whole object again (it changed, or the server knows no ranges),
        # or a range we did not ask for: start over.
        log(f"restarting from byte 0 (the server answered {status} to a resumed request)")
        progress.rewind(state.offset)
        sink.restart()
        state.offset = 0
        if status != 200:
            raise _Retry(f"the server answered {status} to a resumed request")
    length = response.getheader("Content-Length")
    remaining = int(length) if length is not None and length.isdigit() else None
    if piece is None:
        state.total = remaining  # a whole object, perhaps a new one: its own length
        return None, remaining
    if piece.complete is not None:
        if state.total is not None and piece.complete != state.total:
            # The rest of another object than the one the file holds the start of.
            raise PermanentError(
                f"the size of {name} changed while it was fetched: {state.total} bytes,"
                f" then {piece.complete} (Content-Range: {value})"
            )
        state.total = piece.complete
    return piece.last + 1, remaining


def _validator(response: http.client.HTTPResponse) -> str | None:
    """What ``If-Range`` sends back: a strong ETag, else Last-Modified (None: neither)."""
    etag = response.getheader("ETag")
    return etag if etag and not etag.startswith("W/") else response.getheader("Last-Modified")


def _changed(before: str | None, now: str | None) -> bool:
    """Whether two validators of one kind (both ETags, quoted, or both dates) differ."""
    if not before or not now or before.startswith('"') != now.startswith('"'):
        return False
    return before != now


Readinto = Callable[[memoryview | bytearray], int]


class DirectBody:
    """The body of a plain-HTTP response of known length, read from the socket itself.

    Blocking reads with ``MSG_WAITALL`` fill a whole buffer per system call,
    so the kernel wakes the reader once per buffer instead of per packet:
    a 512 MiB GET from SeaweedFS's S3 gateway went from 1.0-1.9 s (system
    time 0.7-1.4 s) to 0.7 s (0.25 s) this way (bench/README.md).
    """

    def __init__(
        self, response: http.client.HTTPResponse, sock: socket.socket, length: int, timeout: float
    ) -> None:
        self._response = response
        self._sock = sock
        self._left = length
        self._first = True
        # A blocking socket with a kernel receive timeout: Python's own timeout
        # would make the socket non-blocking, and MSG_WAITALL would not wait.
        sock.settimeout(None)
        seconds = int(timeout)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", seconds, int((timeout - seconds) * 1e6)),
        )

    def readinto(self, view: memoryview | bytearray) -> int:
        want = min(len(view), self._left)
        if want <= 0:
            return 0
        count = 0
        if self._first:
            # What http.client read ahead with the headers comes first.
            self._first = False
            data = self._response.fp.read1(min(want, BUFFER_BYTES))
            count = len(data)
            view[:count] = data
        if not count:
            # Also after an empty first read: the buffered reader answers a timeout with
            # no bytes, as it does the end; the socket itself tells them apart.
            try:
                count = self._sock.recv_into(view, want, socket.MSG_WAITALL)
            except BlockingIOError:
                raise TimeoutError("timed out") from None
        self._left -= count
        return count


def _body_reader(
    response: http.client.HTTPResponse,
    conn: http.client.HTTPConnection,
    length: int | None,
    connection: Connection,
) -> Readinto:
    sock = conn.sock
    # TLS sockets take no flags, and a chunked body has framing to parse.
    if length is None or response.chunked or sock is None or isinstance(sock, ssl.SSLSocket):
        return response.readinto
    return DirectBody(response, sock, length, connection.timeout_seconds).readinto


def _stream(read: Readinto, sink: FileSink | HashingSink, progress: Progress) -> None:
    if isinstance(sink, HashingSink):
        while True:
            buffer = sink.buffer()
            try:
                count = read(buffer)
            except BaseException:
                sink.give_back(buffer)
                raise
            if not count:
                sink.give_back(buffer)
                return
            sink.write_buffer(buffer, count)
            progress.advance(count)
    view = memoryview(bytearray(BUFFER_BYTES))
    while count := read(view):
        sink.write(view[:count])
        progress.advance(count)


def default_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust store, or only ``ca_file`` when given (a private CA)."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as error:
        why = getattr(error, "reason", None) or error.strerror or error
        raise PermanentError(
            f"the CA file {ca_file} holds no usable PEM certificate: {why}"
        ) from None


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
