"""Shadow comparison: copy sampled requests to another revision, compare answers.

The client's answer always comes from the local model. After it has been
sent, a sampled copy of the request and the local response go on a bounded
queue (full queue = counted drop); workers post the request to the target
(another revision's service or pod) over pooled keep-alive connections
(``vigil.sidecar.target``: raw asyncio protocols like the proxy's, not an
HTTP client library), with the live request's end-to-end headers (:func:`_forwarded`),
and compare the predictions (in v2, the local prediction's output and the target's
output of the same name: ``payload.prediction_output``) row by row:
classification agrees when the classes are equal, regression when
``|local - target| <= tolerance + relativeTolerance x |local|``; a classifier's scores
(probabilities: non-whole floats on either side) are compared as the decisions they
stand for (over 0.5: the positive class), or as numbers when the settings give an absolute
``tolerance``. Whether answers are a classifier's comes from the settings' ``task`` (the
operator's), else the reference profile's; with neither, from the answers themselves
(:func:`guess_classification`). Settings (target, revision, percent, ...) can change while
running via :meth:`Shadow.configure`.

The comparison runs on the proxy's event loop, so it is bounded: queued copies hold at
most :data:`QUEUE_BYTES`, and answers over :data:`MAX_COMPARED_BYTES` or
:data:`MAX_COMPARED_ROWS` are counted, not compared: ``too_large`` when the local
(stable's) answer is, ``target_too_large`` when only the target's is. Only a fault of the
target's answer counts as ``unparseable``; the local answer's is ``stable_unparseable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import zlib
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vigil.common.labels import class_key
from vigil.common.metric_specs import MetricSpec, declare
from vigil.core import metric_names
from vigil.core.window import NOT_COMPARED, STABLE_SIDE
from vigil.profile.model import category_key
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.metrics import BASE_LABELS
from vigil.sidecar.monitor import holds_scores, score_decision
from vigil.sidecar.payload import CONTENT_TYPE, ArgMaxes, ParsedOutput, parse_response
from vigil.sidecar.target import AnswerTooLarge, TargetClient

__all__ = ["Shadow", "ShadowCopy", "compare_predictions", "guess_classification", "observe_all"]

log = logging.getLogger("vigil.sidecar")
DIFF_BUCKETS = (1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 100.0)
#: Copies queued or being compared hold at most this many request and answer bytes; one
#: more is dropped (counted). A slow target must not fill the sidecar's memory (256Mi by
#: default) with copies of request bodies of up to limits.maxBodyBytes each.
QUEUE_BYTES = 32 * 1024 * 1024
#: Answers over this many bytes (as sent, or decoded) are not compared (``too_large``):
#: parsing runs on the proxy's event loop, ~10 ms per MB (a monitoring batch's bound).
MAX_COMPARED_BYTES = 1024 * 1024
#: Nor answers of more rows: comparing costs ~1 us a row, on the same loop.
MAX_COMPARED_ROWS = 20_000
#: Outcomes whose series exist at 0 once a target is set: those the operator reads
#: and ``compared``. A series born at its first count loses that count to Prometheus'
#: increase(). A fixed list: a bounded number of series.
ZEROED_OUTCOMES = ("compared", *NOT_COMPARED, *STABLE_SIDE)


def _unreadable(parsed: ParsedOutput) -> bool:
    """An answer not read: any violation but a Content-Type without "json" (a server's
    ``text/plain`` JSON is read, as the monitor and the golden replay read it)."""
    return any(kind != CONTENT_TYPE for kind in parsed.violations)


@dataclass(slots=True)
class ShadowCopy:
    """What a shadow worker needs: the request as sent and the local answer."""

    method: str
    target: str
    content_type: str
    body: bytes
    local_response: bytes
    local_content_type: str
    content_encoding: str = ""
    local_encoding: str = ""
    #: The live request's head as the model server got it; the copy carries its
    #: end-to-end headers (:func:`_forwarded`). Empty: Content-Type and -Encoding alone.
    head: bytes = b""
    #: The local answer's Inference-Header-Content-Length (binary tensors after it).
    local_json_length: int | None = None


def _size(copy: ShadowCopy) -> int:
    return len(copy.body) + len(copy.local_response) + len(copy.head)


def _decoded(body: bytes, encoding: str, limit: int) -> bytes | None:
    """The answer without its gzip/deflate, cut just past ``limit`` bytes (then too large
    to compare: inflating it all would take the loop's time and memory for nothing).

    None for an unknown encoding or a corrupt body, as ``monitor.decode_body``.
    """
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return None
    try:
        return zlib.decompressobj(47 if encoding != "deflate" else 15).decompress(body, limit + 1)
    except zlib.error:
        return None


def observe_all(histogram: Any, amounts: list[float]) -> None:
    """``histogram.observe(a)`` for each of ``amounts``, one increment per bucket.

    Observing row by row took longer than comparing the rows (a lock and a bucket search
    each). Uses the client library's histogram internals; without them, one by one.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    if not amounts:
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1  # the first bound >= amount; +Inf is last
    total.inc(math.fsum(amounts))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where copies go: address, Host header and path prefix of ``shadow.target``."""

    host: str
    port: int
    host_header: str
    prefix: str


@lru_cache(maxsize=16)
def _target_of(url: str) -> _Target:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return _Target(parts.hostname or "127.0.0.1", parts.port or 80, netloc, parts.path.rstrip("/"))


#: Headers of the live request a copy does not carry: the hop-by-hop ones (RFC 9110
#: 7.6.1; also those its Connection header names), which were for the hop to this
#: sidecar, and those the copy sets itself: Host (the target's), Content-Length (the body
#: goes de-chunked), Accept-Encoding (identity: the answer is read), Expect (the copy
#: waits for no 100) and X-Vigil-Shadow (its own mark).
_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"host",
        b"content-length",
        b"accept-encoding",
        b"expect",
        b"x-vigil-shadow",
    }
)


def _forwarded(head: bytes) -> list[bytes]:
    """The header lines of the live request ``head`` a copy carries: the end-to-end ones,
    as received. Those that give the body its meaning (Content-Type, Content-Encoding,
    the binary tensor extension's Inference-Header-Content-Length) and the client's own
    credentials (Authorization, Cookie: the candidate is the same model's server, and
    would refuse a copy without them as it would the client's request)."""
    kept: list[tuple[bytes, bytes]] = []
    named: set[bytes] = set()  # the names the Connection header lists
    for line in head[:-4].split(b"\r\n")[1:]:
        colon = line.find(b":")  # every line has one (parse_request_head)
        name = line[:colon].lower()
        if name not in _NOT_FORWARDED:
            kept.append((name, line))
        elif name == b"connection":
            named.update(token.strip().lower() for token in line[colon + 1 :].split(b","))
    return [line for name, line in kept if name not in named]


def _request_bytes(target: _Target, copy: ShadowCopy) -> bytes:
    """The copy as sent to the target (body as received, with its Content-Encoding)."""
    fields = (copy.method, copy.target, copy.content_type, copy.content_encoding)
    if any("\r" in f or "\n" in f for f in fields):
        raise ValueError("line break in a header of the shadow copy")
    if copy.head:
        lines = _forwarded(copy.head)
        if not any(line[:13].lower() == b"content-type:" for line in lines):
            lines.append(b"Content-Type: application/json")
    else:
        lines = [f"Content-Type: {copy.content_type or 'application/json'}".encode("latin-1")]
        if copy.content_encoding:
            lines.append(f"Content-Encoding: {copy.content_encoding}".encode("latin-1"))
    head = (
        f"{copy.method} {target.prefix}{copy.target} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        f"Content-Length: {len(copy.body)}\r\n"
        "Accept-Encoding: identity\r\nX-Vigil-Shadow: 1\r\n"
    )
    return head.encode("latin-1") + b"\r\n".join(lines) + b"\r\n\r\n" + copy.body


@dataclass(slots=True)
class _Children:
    """The labelled metric children of one target revision.

    Cached because ``labels()`` checks and looks up the label values on every
    call (five calls per copy).
    """

    requests: dict[str, Any]
    predictions: Any
    agreements: Any
    difference: Any
    target_duration: Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def compare_predictions(
    local: list[Any],
    target: list[Any],
    classification: bool,
    tolerance: float,
    relative_tolerance: float = 0.0,
    *,
    scores_as_numbers: bool = False,
) -> tuple[int, list[float]]:
    """Agreeing rows and the absolute numeric differences (rows where both are numbers).

    Classes agree when their labels are equal (``vigil.common.labels.class_key``: a BOOL
    ``true`` is the class ``1``, as in the golden replay); numbers when
    ``|local - target| <= tolerance + relative_tolerance x |local|`` (the
    local answer is the stable's: the candidate is measured against it).
    A classifier's answer holding scores (a non-whole float: ``monitor.holds_scores``)
    is compared by its decisions (a score over 0.5 is the class 1; the other side's labels
    as they are), or as numbers with ``scores_as_numbers``.
    """
    decided_local, decided_target = local, target
    if classification:
        local_scores, target_scores = holds_scores(local), holds_scores(target)
        if scores_as_numbers and (local_scores or target_scores):
            classification = False
        else:
            # A retrained classifier's scores move a little, its decisions hardly: compared
            # as numbers (5 % relative), score noise of sd 0.005 read as 17 % disagreement.
            if local_scores:
                decided_local = [score_decision(v) for v in local]
            if target_scores:
                decided_target = [score_decision(v) for v in target]
    agree = 0
    diffs: list[float] = []
    rows = zip(local, target, decided_local, decided_target, strict=True)
    for a, b, da, db in rows:
        na, nb = _number(a), _number(b)
        if na is not None and nb is not None:
            diffs.append(abs(na - nb))
        if classification:
            # One rule with the golden replay: true/false and 1/0 are the same decisions.
            agree += int(class_key(category_key(da)) == class_key(category_key(db)))
        elif na is not None and nb is not None:
            agree += int(abs(na - nb) <= tolerance + relative_tolerance * abs(na))
        else:
            agree += int(a == b)
    return agree, diffs


def guess_classification(values: list[Any], tolerance_given: bool) -> bool:
    """Whether the stable's answer ``values`` are class labels, when no task is known
    (no ``shadow.task``, no reference profile).

    ``[N, C]`` rows read by their arg-max are; then, with an absolute tolerance in the
    settings, no answer holding numbers is (the user's word that they are measured:
    a regressor answering whole numbers compared as exact labels ignored it); else
    whole numbers, text and booleans are labels, other numbers a regression's.
    """
    if isinstance(values, ArgMaxes):
        return True
    if tolerance_given:
        return not any(_number(v) is not None for v in values)
    return all(
        isinstance(v, str | int) or (isinstance(v, float) and v.is_integer()) for v in values
    )


#: Without an absolute tolerance in the settings: this share of the reference
#: profile's prediction standard deviation (a retrained regressor's answers
#: differ by about that much; a wrong one by far more).
DEFAULT_ABSOLUTE_SHARE_OF_STD = 0.05


def default_absolute_tolerance(prediction_std: float | None) -> float:
    """The absolute tolerance used when the settings give none."""
    if prediction_std is None or not math.isfinite(prediction_std) or prediction_std < 0:
        return 0.0
    return DEFAULT_ABSOLUTE_SHARE_OF_STD * prediction_std


#: The shadow families, each labelled with :data:`BASE_LABELS` and the target's revision
#: before its own.
_FAMILIES = (
    MetricSpec(
        "requests",
        Counter,
        "vigil_shadow_requests",
        "Shadow copies by outcome: compared, target_error (non-2xx), unreachable, timeout, "
        "unparseable (the target's answer), mismatch (different number of predictions), "
        "target_too_large (the target's answer too large to compare), too_large (this "
        "revision's own answer too large to compare), stable_unparseable (this revision's "
        "own answer unparseable), compare_error (the comparison failed).",
        ("outcome",),
    ),
    MetricSpec(
        "predictions",
        Counter,
        metric_names.SHADOW_PREDICTIONS,
        "Predictions (rows) compared between this revision and the target.",
    ),
    MetricSpec(
        "agreements",
        Counter,
        metric_names.SHADOW_AGREEMENTS,
        "Compared predictions that agree (same class; or within tolerance for regression).",
    ),
    MetricSpec(
        "difference",
        Histogram,
        metric_names.SHADOW_ABS_DIFFERENCE,
        "Absolute difference |local - target| of numeric predictions.",
        buckets=DIFF_BUCKETS,
    ),
    MetricSpec(
        "dropped",
        Counter,
        metric_names.SHADOW_DROPPED,
        "Shadow copies dropped because the shadow queue was full (in copies or bytes).",
    ),
    MetricSpec(
        "target_duration",
        Histogram,
        "vigil_shadow_target_duration_seconds",
        "Latency of the shadow target's answers.",
    ),
    MetricSpec(
        "percent",
        Gauge,
        "vigil_shadow_percent",
        "Share of inference requests copied to the shadow target (0 = off).",
    ),
)


class Shadow:
    """Shadow copier and its metrics (labelled with the target's revision)."""

    # Made from _FAMILIES by declare().
    requests: Counter
    predictions: Counter
    agreements: Counter
    difference: Histogram
    dropped: Counter
    target_duration: Histogram
    percent: Gauge

    def __init__(
        self,
        *,
        protocol: str,
        base: Mapping[str, str],
        registry: CollectorRegistry,
        classification: bool | None,
        settings: ShadowSettings,
        prediction_std: float | None = None,
    ) -> None:
        self.protocol = protocol
        self.base_values = tuple(base.values())
        self.classification = classification
        #: The absolute tolerance when the settings give none (from the reference profile).
        self.default_tolerance = default_absolute_tolerance(prediction_std)
        self.settings = settings
        self.queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(maxsize=settings.queue_size)
        #: Request and answer bytes of the copies queued or being compared.
        self.held_bytes = 0
        self._workers: list[asyncio.Task[None]] = []
        self._comparing = 0
        #: Workers waiting for a copy (the others are comparing one).
        self._waiting: set[asyncio.Task[Any] | None] = set()
        self._client = TargetClient()
        self._children_by_labels: dict[tuple[str, ...], _Children] = {}
        declare(self, _FAMILIES, registry, (*BASE_LABELS, "target_revision"))
        self._publish_settings()

    # ------------------------------------------------------------ settings

    def _labels(self) -> tuple[str, ...]:
        return (*self.base_values, self.settings.target_revision)

    def _children(self, labels: tuple[str, ...]) -> _Children:
        children = self._children_by_labels.get(labels)
        if children is None:
            if len(self._children_by_labels) >= 16:
                self._children_by_labels.clear()
            children = self._children_by_labels[labels] = _Children(
                {},
                self.predictions.labels(*labels),
                self.agreements.labels(*labels),
                self.difference.labels(*labels),
                self.target_duration.labels(*labels),
            )
        return children

    def _count(self, children: _Children, labels: tuple[str, ...], outcome: str) -> None:
        counter = children.requests.get(outcome)
        if counter is None:
            counter = children.requests[outcome] = self.requests.labels(*labels, outcome)
        counter.inc()

    def _publish_settings(self) -> None:
        self.percent.clear()
        self.percent.labels(*self._labels()).set(
            self.settings.percent if self.settings.enabled else 0
        )
        if self.settings.target:
            # At 0 before the first copy: increase() counts the first one of each outcome.
            labels = self._labels()
            children = self._children(labels)
            for outcome in ZEROED_OUTCOMES:
                if outcome not in children.requests:
                    children.requests[outcome] = self.requests.labels(*labels, outcome)
            self.dropped.labels(*labels)

    def configure(self, settings: ShadowSettings) -> None:
        """Apply new settings at run time: a queued copy goes to the target in force when a
        worker takes it, and is discarded if shadowing is off by then."""
        if settings == self.settings:
            return
        old = self.settings
        self.settings = settings
        self._publish_settings()
        log.info(
            "shadow settings: target=%s revision=%s percent=%s tolerance=%g+%g*|local| "
            "task=%s (was %s/%s/%s)",
            settings.target or "-",
            settings.target_revision or "-",
            settings.percent,
            settings.tolerance if settings.tolerance is not None else self.default_tolerance,
            settings.relative_tolerance,
            settings.task or "-",
            old.target or "-",
            old.target_revision or "-",
            old.percent,
        )
        resized = settings.queue_size != old.queue_size
        if resized:
            self._resize_queue(settings.queue_size)
        if self._workers and (resized or settings.concurrency != len(self._workers)):
            self._restaff()

    def _resize_queue(self, size: int) -> None:
        """Queued copies move to a queue of ``size``; those beyond it are counted as dropped."""
        fresh: asyncio.Queue[ShadowCopy] = asyncio.Queue(maxsize=size)
        while not self.queue.empty():
            copy = self.queue.get_nowait()
            if fresh.full():
                self.dropped.labels(*self._labels()).inc()
                self.held_bytes -= _size(copy)
            else:
                fresh.put_nowait(copy)
        self.queue = fresh

    def _restaff(self) -> None:
        """``concurrency`` workers on ``self.queue``. Idle workers are replaced: they wait on
        the queue they started on, which may be gone. A busy one finishes its copy and takes
        the next from the new queue, unless more are busy than wanted (those are cancelled
        and their copy abandoned)."""
        want = self.settings.concurrency
        busy = [task for task in self._workers if task not in self._waiting]
        for task in self._workers:
            if task in self._waiting or task in busy[want:]:
                task.cancel()
        loop = asyncio.get_running_loop()
        self._workers = busy[:want] + [
            loop.create_task(self._worker(), name="vigil-shadow")
            for _ in range(want - len(busy[:want]))
        ]

    # ------------------------------------------------------------ hot path

    def wants(self) -> bool:
        """Decide (by sampling) whether this request is copied."""
        s = self.settings
        return s.enabled and (s.percent >= 100.0 or random.random() * 100.0 < s.percent)

    def submit(self, copy: ShadowCopy) -> None:
        size = _size(copy)
        if self.held_bytes + size > QUEUE_BYTES:
            self.dropped.labels(*self._labels()).inc()
            return
        try:
            self.queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.dropped.labels(*self._labels()).inc()
            return
        self.held_bytes += size

    # ------------------------------------------------------------ workers

    def start(self) -> None:
        self._start_workers()

    def _start_workers(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._worker(), name=f"vigil-shadow-{i}")
            for i in range(self.settings.concurrency)
        ]

    def _stop_workers(self) -> None:
        for task in self._workers:
            task.cancel()
        self._workers = []

    async def stop(self) -> None:
        workers = self._workers
        self._stop_workers()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._client.close()

    @property
    def pending(self) -> int:
        """Copies queued or being compared."""
        return self.queue.qsize() + self._comparing

    async def _worker(self) -> None:
        me = asyncio.current_task()
        while True:
            self._waiting.add(me)
            try:
                copy = await self.queue.get()
            finally:
                self._waiting.discard(me)
            self._comparing += 1
            try:
                await self._compare(copy)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A fault of this sidecar's, not of either answer: never the target's.
                log.exception("shadow comparison failed")
                self.requests.labels(*self._labels(), "compare_error").inc()
            finally:
                self._comparing -= 1
                self.held_bytes -= _size(copy)

    def task_classification(self, settings: ShadowSettings) -> bool | None:
        """Whether answers are a classifier's: the settings' ``task`` (the operator's
        word), else the reference profile's; None: unknown (:func:`guess_classification`)."""
        if settings.task:
            return settings.task == "classification"
        return self.classification

    async def _compare(self, copy: ShadowCopy) -> None:
        s = self.settings
        if not s.enabled:
            return
        labels = self._labels()
        children = self._children(labels)
        classification = self.task_classification(s)
        # Task unknown: [N, C] rows are read by their arg-max, as a classifier's scores
        # (their first column alone says nothing); [N] answers read the same either way.
        parse_as = classification is not False
        target = _target_of(s.target)
        raw = _request_bytes(target, copy)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(s.timeout_seconds):
                resp = await self._client.request(
                    target.host, target.port, raw, copy.method == "HEAD", MAX_COMPARED_BYTES
                )
        except AnswerTooLarge:
            # The target's answer alone is over the cap, unless the local one is no measure.
            local = self._local_answer(copy, parse_as)
            self._count(children, labels, local if isinstance(local, str) else "target_too_large")
            return
        except TimeoutError:
            self._count(children, labels, "timeout")
            return
        except OSError:  # unreachable, reset, or not HTTP (TargetError)
            self._count(children, labels, "unreachable")
            return
        children.target_duration.observe(time.perf_counter() - start)
        if not 200 <= resp.status < 300:
            self._count(children, labels, "target_error")
            return
        found = self._local_answer(copy, parse_as)
        if isinstance(found, str):
            self._count(children, labels, found)
            return
        local_body, local = found
        # The target was asked for identity: an encoding it cannot undo is the target's.
        body = _decoded(resp.body, resp.content_encoding, MAX_COMPARED_BYTES)
        if body is None:
            self._count(children, labels, "unparseable")
            return
        if len(body) > MAX_COMPARED_BYTES:
            self._count(children, labels, "target_too_large")
            return
        same = (resp.content_type, resp.json_length) == (
            copy.local_content_type,
            copy.local_json_length,
        )
        if body == local_body and same:
            remote = local  # the same bytes: the same parse (a pure function)
        else:
            await asyncio.sleep(0)  # live requests go on between the parses
            # The target's output of the name the local prediction came from (v2).
            remote = parse_response(
                self.protocol, body, resp.content_type, parse_as, local.output, resp.json_length
            )
        if _unreadable(remote):
            self._count(children, labels, "unparseable")
            return
        if len(local.values) != len(remote.values):
            self._count(children, labels, "mismatch")
            return
        await asyncio.sleep(0)  # and before the comparison
        if classification is None:
            classification = guess_classification(local.values, s.tolerance is not None)
        self._judge(children, labels, local.values, remote.values, classification)

    def _judge(
        self,
        children: _Children,
        labels: tuple[str, ...],
        local: list[Any],
        remote: list[Any],
        classification: bool,
    ) -> None:
        """Compare two parsed answers of as many rows and count the outcome."""
        s = self.settings
        absolute = s.tolerance if s.tolerance is not None else self.default_tolerance
        # A tolerance the settings give is the user's word on how close scores must be.
        agree, diffs = compare_predictions(
            local,
            remote,
            classification,
            absolute,
            s.relative_tolerance,
            scores_as_numbers=s.tolerance is not None,
        )
        self._count(children, labels, "compared")
        children.predictions.inc(len(local))
        if agree:
            children.agreements.inc(agree)
        observe_all(children.difference, diffs)

    def _local_answer(
        self, copy: ShadowCopy, classification: bool
    ) -> tuple[bytes, ParsedOutput] | str:
        """The local (stable's) answer decoded and parsed, or the outcome that leaves the copy
        uncompared through no fault of the target's: ``stable_unparseable`` (an encoding
        this sidecar cannot undo, such as br or zstd; a corrupt or unparseable body) or
        ``too_large`` (over :data:`MAX_COMPARED_BYTES` or :data:`MAX_COMPARED_ROWS`)."""
        cap = MAX_COMPARED_BYTES
        body = _decoded(copy.local_response, copy.local_encoding, cap)
        if body is None:
            return "stable_unparseable"
        if len(body) > cap:
            return "too_large"
        parsed = parse_response(
            self.protocol,
            body,
            copy.local_content_type,
            classification,
            json_length=copy.local_json_length,
        )
        if _unreadable(parsed):
            return "stable_unparseable"
        if len(parsed.values) > MAX_COMPARED_ROWS:
            return "too_large"
        return body, parsed
