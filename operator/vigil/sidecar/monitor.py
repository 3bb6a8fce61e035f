"""Data-science monitoring: inputs per feature, predictions, drift readiness.

The proxy hands each finished inference exchange to :meth:`Monitor.submit`
(an append to a bounded deque; drops are counted). A background task wakes
up every ``FLUSH_INTERVAL`` seconds and drains the queue in batches, so the
proxy pays no task wake-up per request and the per-feature work is shared
by all requests of a batch; it parses the bodies (see
:mod:`vigil.sidecar.payload`) on the proxy's event loop, so the work is
bounded: a body is read up to ``MAX_MONITORED_BYTES`` decoded (a larger
exchange is skipped and counted) and a batch stops at ``BATCH_BYTES``
decoded, yielding to the proxy in between. It adds to plain counters: counts per
reference bin or category, missing and out-of-range values, prediction
classes or bins and running sums. A collector turns those counters into
Prometheus series at scrape time, which keeps per-request work small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import sys
import time
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from vigil.common.labels import NUMBERS_AS_BOOLEANS, boolean_aliases
from vigil.core import metric_names
from vigil.profile import OTHER, FeatureProfile, ProfileError, ReferenceProfile, load_profile
from vigil.profile.bins import bin_index, float32_bounds
from vigil.profile.model import category_key, to_float32
from vigil.sidecar.config import Settings
from vigil.sidecar.exposition import Families
from vigil.sidecar.payload import (
    CONTENT_ENCODING,
    TYPE,
    ArgMaxes,
    parse_request,
    parse_response,
)

__all__ = [
    "MOMENT_LIMIT",
    "Exchange",
    "Monitor",
    "Recorder",
    "ReferenceState",
    "holds_scores",
    "load_reference",
]

log = logging.getLogger("vigil.sidecar")
BATCH = 256
#: A batch stops at this many decoded request and answer bytes (batch scoring sends
#: megabytes a request): parsing runs on the proxy's event loop, which yields between batches.
BATCH_BYTES = 1024 * 1024
#: A request or answer decoding past this is not parsed (``too_large``): parsing takes the
#: proxy's loop ~15-130 ms and ~50 MiB of objects per 2 MiB, beside a 256Mi limit.
MAX_MONITORED_BYTES = 2 * 1024 * 1024
#: Queued copies beyond this many bytes are dropped (counted), like those beyond the count.
QUEUE_BYTES = 64 * 1024 * 1024
#: How often queued exchanges are processed. Metrics lag by at most this much;
#: a batch at 500 rps (~25 one-row requests) takes well under a millisecond.
FLUSH_INTERVAL = 0.05


@dataclass(slots=True)
class Exchange:
    """A copy of one inference request/response, queued for monitoring."""

    request: bytes
    request_type: str
    response: bytes | None
    response_type: str
    request_encoding: str = ""
    response_encoding: str = ""
    #: The answered request's id when its prediction is kept for labels ("" = not kept).
    request_id: str = ""
    served_at: float = 0.0
    #: False: sampled out of input monitoring, queued only to read its prediction.
    sampled: bool = True
    #: Inference-Header-Content-Length of the request and of the answer (binary tensors).
    request_json_length: int | None = None
    response_json_length: int | None = None


def _size(exchange: Exchange) -> int:
    return len(exchange.request) + len(exchange.response or b"")


def _work(body: bytes | None) -> int:
    """What a decoded body costs a batch: its bytes, up to those a skipped one was cut at."""
    return min(len(body), MAX_MONITORED_BYTES + 1) if body is not None else 0


def _add(counts: dict[str, int], kind: str, n: int = 1) -> None:
    if n:
        counts[kind] = counts.get(kind, 0) + n


@dataclass(frozen=True, slots=True)
class _Batch:
    """What the exchanges of one batch add, counted together at its end (NumPy per feature
    once a batch, not once a request)."""

    columns: dict[str, list[Any]]
    predictions: list[Any] = field(default_factory=list)
    scores: list[Any] = field(default_factory=list)


#: Keeps a prediction for the labels to come: (request id, served at, row values or
#: None when the answer could not be read). Set by the feedback service.
Recorder = Callable[[str, float, list[Any] | None], None]


def decode_body(body: bytes, encoding: str, limit: int = MAX_MONITORED_BYTES) -> bytes | None:
    """Undo gzip/deflate on the monitoring copy (the client's bytes are untouched).

    Inflating stops just past ``limit`` bytes: a result longer than ``limit`` is too
    large to parse, and is cut there (a 58 KB gzip body held 60 MB of JSON).
    Returns None for an unknown encoding or a corrupt body.
    """
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return None
    wbits = 47 if encoding != "deflate" else 15  # 47 = gzip or zlib header, auto
    try:
        return zlib.decompressobj(wbits).decompress(body, limit + 1)
    except zlib.error:
        return None


@dataclass(slots=True)
class ReferenceState:
    """The loaded reference, or why drift monitoring is off."""

    profile: ReferenceProfile | None
    reason: str  # ok | no_reference | unreadable | invalid
    message: str = ""


def load_reference(path: str) -> ReferenceState:
    """Load the profile; never raises (a bad profile only turns drift off)."""
    if not path:
        return ReferenceState(None, "no_reference", "no reference profile configured")
    try:
        return ReferenceState(load_profile(path), "ok")
    except ProfileError as exc:
        reason = "unreadable" if "cannot read" in str(exc) else "invalid"
        return ReferenceState(None, reason, str(exc))


#: Below this many values per feature, pure-Python bisect beats NumPy's call overhead.
SMALL_BATCH = 48


class _NumericCounts:
    """Live counts of one numeric feature against its reference bins."""

    def __init__(self, profile: FeatureProfile) -> None:
        assert profile.edges is not None
        self.edges = np.asarray(profile.edges, dtype=np.float64)
        # Where each edge begins in float32 terms (vigil.profile.bins), for the bisect path.
        self.bounds = low, high = float32_bounds(self.edges)
        self.low_list = [float(e) for e in low]
        self.last_high = float(high[-1])
        self.last_edge = float(self.edges[-1])
        self.bins = [0] * (self.edges.size + 1)
        self.missing = 0
        self.out_of_range = 0
        self.type_errors = 0

    def add(self, values: list[Any]) -> None:
        if len(values) <= SMALL_BATCH:
            self._add_small(values)
        else:
            self._add_large(values)

    def _add_small(self, values: list[Any]) -> None:
        """Same rule as :func:`vigil.core.drift.bin_index`, one value at a time."""
        edges = self.low_list
        last, last_edge = self.last_high, self.last_edge
        top = len(edges) - 1
        bins = self.bins
        for v in values:
            t = type(v)
            if t is float:
                f: float | None = v
            elif t is int:
                f = _int_float(v)
            elif v is None:
                self.missing += 1
                continue
            else:
                # Not a JSON number: a type violation, even when it reads as one
                # ("0.038", true): the server may coerce it, the client's schema is wrong.
                self.type_errors += 1
                f = _to_float(v)
                if f is None:
                    continue
            assert f is not None
            if f != f:  # NaN: missing
                self.missing += 1
                continue
            i = bisect_right(edges, f)
            if i == top + 1 and (f < last or f == last_edge):  # on the last edge: inside
                i = top
            bins[i] += 1
            if i == 0 or i == top + 1:
                self.out_of_range += 1

    def _add_large(self, values: list[Any]) -> None:
        if set(map(type, values)) <= _JSON_NUMBERS:
            try:
                arr = np.asarray(values, dtype=np.float64)
            except OverflowError:  # an integer past the largest float: +-inf, out of range
                arr = np.asarray([_int_float(v) if type(v) is int else v for v in values])
        else:
            present = [v for v in values if v is not None]
            self.missing += len(values) - len(present)
            self.type_errors += sum(1 for v in present if type(v) not in _JSON_NUMBERS)
            floats = [_to_float(v) for v in present]
            arr = np.asarray([f for f in floats if f is not None], dtype=np.float64)
        nan = np.isnan(arr)
        self.missing += int(np.count_nonzero(nan))
        present_values = arr[~nan]
        if present_values.size == 0:
            return
        counts = np.bincount(
            bin_index(present_values, self.edges, self.bounds), minlength=len(self.bins)
        ).tolist()
        for i, n in enumerate(counts):
            self.bins[i] += n
        self.out_of_range += counts[0] + counts[-1]


#: What JSON numbers parse to (bool is a subclass of int, and is not one).
_JSON_NUMBERS = frozenset({float, int})


def _int_float(value: int) -> float:
    """An integer as a float; one past the largest float (JSON allows it) as +-inf."""
    if -_LARGEST <= value <= _LARGEST:
        return float(value)
    return math.inf if value > 0 else -math.inf


_LARGEST = sys.float_info.max
#: The square of a value past it overflows a running sum of squares (predictions here,
#: label errors in vigil.sidecar.feedback).
MOMENT_LIMIT = 1e150


def _to_float(value: Any) -> float | None:
    """Float of a JSON value: None/null -> NaN (missing); not a number -> None."""
    if value is None:
        return math.nan
    if isinstance(value, int):  # bool too
        return _int_float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def holds_scores(values: Sequence[Any]) -> bool:
    """Whether one answer's predictions are scores (probabilities), not class labels.

    A float that is no whole number cannot be a label (labels arrive as ``1`` or
    ``1.0``); counted as labels, each distinct probability became a class of its own.
    The join store follows the same rule (feedback.prediction_values).
    """
    return any(type(v) is float and not v.is_integer() and v == v for v in values)


def score_decision(value: Any) -> Any:
    """The class a score stands for: 1 (positive) over 0.5, else 0; not a finite number
    (a label, a boolean): as is. A tie is 0, as an arg-max over ``[1 - s, s]`` and
    scikit-learn's ``predict`` decide it: a model answering its probabilities and one
    answering its labels agree."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return value
    return int(value > 0.5)


#: Class labels outside the reference a prediction counter still counts by name
#: (then ``__other__``): another revision's classes are compared by label.
MAX_UNLISTED_CLASSES = 50


class _CategoryCounts:
    """Live counts of one categorical feature (top-K + other), or of predicted classes.

    ``unlisted`` labels outside the reference are counted under their own
    name (at most that many), the rest under :data:`OTHER`. ``numbers_as_booleans``:
    when every allowed category is a boolean, the numbers 0 and 1 count as false and true.
    """

    def __init__(
        self, profile: FeatureProfile, unlisted: int = 0, *, numbers_as_booleans: bool = False
    ) -> None:
        self.known = set(profile.categories or ())
        self.room = unlisted
        self.allowed = frozenset(profile.allowed) if profile.allowed is not None else None
        # An FP32 tensor or one-hot columns carry a boolean as 0/1, keyed "0"/"1": never
        # the reference's true/false. category_key stays as is (profile fingerprints).
        booleans = self.allowed is not None and self.allowed <= {"false", "true"}
        self.aliases = NUMBERS_AS_BOOLEANS if numbers_as_booleans and booleans else {}
        self.counts: dict[str, int] = dict.fromkeys((*(profile.categories or ()), OTHER), 0)
        self.float32 = _float32_categories(self.allowed or self.known)
        self.missing = 0
        self.out_of_range = 0
        self.type_errors = 0

    def add(self, values: list[Any]) -> None:
        for value in values:
            if isinstance(value, list | dict):
                self.type_errors += 1
                continue
            key = category_key(value)
            if key is None:
                self.missing += 1
                continue
            if self.aliases and type(value) in _JSON_NUMBERS:
                key = self.aliases.get(key, key)
            if key not in self.known:
                if self.float32 and type(value) is float:
                    key = self._as_float32(key, value)
                if key not in self.known and self.room > 0:
                    self.known.add(key)
                    self.counts[key] = 0
                    self.room -= 1
            self.counts[key if key in self.known else OTHER] += 1
            if self.allowed is not None and key not in self.allowed:
                self.out_of_range += 1

    def _as_float32(self, key: str, value: float) -> str:
        """The reference category that is ``value`` in float32, when none is ``value``.

        A float32 column's 0.1 is keyed "0.1" (``category_key``); a client holding it
        as float32 sends 0.10000000149011612, and a float64 column's 0.1 meets float32
        senders: one number, as bins compare (``vigil.profile.bins``).
        """
        if self.allowed is not None and key in self.allowed:
            return key
        return self.float32.get(to_float32(value), key)


def _float32_categories(categories: Iterable[str]) -> dict[float | None, str]:
    """The categories that are non-integral numbers, by their float32 value (of two that
    share it, the one with the shorter key: a float32's own)."""
    out: dict[float | None, str] = {}
    for category in sorted(categories, key=lambda c: (len(c), c)):
        try:
            number = float(category)
        except ValueError:
            continue
        single = to_float32(number)
        if single is None or category_key(number) != category or number.is_integer():
            continue
        out.setdefault(single, category)
    return out


class _Window:
    """Min and max over a sliding time window, in ten sub-slots."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.slot = seconds / 10.0
        self.seconds = seconds
        self.clock = clock
        self.slots: deque[tuple[float, float, float]] = deque()

    def add(self, lo: float, hi: float) -> None:
        now = self.clock()
        start = now - (now % self.slot)
        if self.slots and self.slots[-1][0] == start:
            _, old_lo, old_hi = self.slots[-1]
            self.slots[-1] = (start, min(old_lo, lo), max(old_hi, hi))
        else:
            self.slots.append((start, lo, hi))
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self.slots and self.slots[0][0] + self.slot <= now - self.seconds:
            self.slots.popleft()

    def bounds(self) -> tuple[float, float]:
        self._expire(self.clock())
        if not self.slots:
            return math.nan, math.nan
        return min(s[1] for s in self.slots), max(s[2] for s in self.slots)


class Monitor(Collector):
    """Queue, background parser and the data-science series."""

    def __init__(
        self,
        settings: Settings,
        *,
        base: dict[str, str],
        registry: CollectorRegistry,
        reference: ReferenceState,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Monitors as ``settings`` say: their protocol and ``monitoring`` keys."""
        self.protocol = settings.protocol
        self.base = base
        self.reference = reference
        #: Changed at run time (vigil.sidecar.main applies a new monitoring.samplePercent).
        self.sample_percent = settings.sample_percent
        self.queue: deque[Exchange] = deque()
        self.queue_size = settings.queue_size
        self.queued_bytes = 0
        #: Exchanges taken off the queue so far (each processed before the loop runs on).
        self.taken = 0
        self.dropped = 0
        self.errors = 0
        #: Sampled exchanges not parsed: a request or answer over MAX_MONITORED_BYTES.
        self.too_large = 0
        self.exchanges = 0
        self.rows = 0
        self.violations: dict[str, int] = {}
        self.prediction_violations: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        profile = reference.profile
        self.classification = profile.task == "classification" if profile else False
        self.all_features: tuple[str, ...] = profile.feature_names if profile else ()
        features, max_features = settings.features, settings.max_features
        chosen = [f for f in (features or self.all_features) if f in self.all_features]
        unknown = [f for f in features if f not in self.all_features]
        if unknown and profile is not None:
            log.warning("monitoring.features not in the reference profile: %s", unknown)
        self.monitored = tuple(chosen[:max_features])
        self.unmonitored = len(self.all_features) - len(self.monitored)
        if profile is not None and len(chosen) > max_features:
            log.warning(
                "feature cap: monitoring %d of %d features (monitoring.maxFeatures=%d); "
                "not monitored: %s",
                len(self.monitored),
                len(self.all_features),
                max_features,
                ", ".join(chosen[max_features:]),
            )
        self.counters: dict[str, _NumericCounts | _CategoryCounts] = {}
        if profile is not None:
            for name in self.monitored:
                fp = profile.feature(name)
                self.counters[name] = (
                    _NumericCounts(fp)
                    if fp.type == "numeric"
                    else _CategoryCounts(fp, numbers_as_booleans=True)
                )
        self.prediction: _NumericCounts | _CategoryCounts | None = None
        predicted = profile.prediction if profile is not None else None
        self.boolean_predictions = predicted is not None and bool(
            boolean_aliases(tuple(predicted.categories or ()))
        )
        if profile is not None and profile.prediction is not None:
            fp = profile.prediction
            # A boolean classifier's 0/1 (INT64, FP32) is the reference's false/true.
            self.prediction = (
                _NumericCounts(fp)
                if fp.type == "numeric"
                else _CategoryCounts(fp, unlisted=MAX_UNLISTED_CLASSES, numbers_as_booleans=True)
            )
        self.pred_count = 0
        self.pred_sum = 0.0
        self.pred_sumsq = 0.0
        self.window = _Window(settings.prediction_window_seconds, clock)
        self.recorder: Recorder | None = None
        if reference.reason != "ok":
            log.warning("drift monitoring is off (%s): %s", reference.reason, reference.message)
        registry.register(self)

    # ------------------------------------------------------------ hot path

    def submit(self, exchange: Exchange) -> None:
        """Queue a copy for monitoring; never blocks, drops when full.

        Sampling applies to input monitoring only: a prediction kept for labels
        is still read. A dropped one is kept without its values.
        """
        keep = bool(exchange.request_id) and self.recorder is not None
        if self.sample_percent < 100.0 and random.random() * 100.0 >= self.sample_percent:
            if not keep:
                return
            exchange.sampled = False
        size = _size(exchange)
        if len(self.queue) >= self.queue_size or self.queued_bytes + size > QUEUE_BYTES:
            self.dropped += 1
            if keep:
                assert self.recorder is not None
                self.recorder(exchange.request_id, exchange.served_at, None)
        else:
            self.queue.append(exchange)
            self.queued_bytes += size

    async def drain(self) -> None:
        """Process everything queued at the call (a label must see every prediction
        answered before it), yielding between batches as the background task does.

        Exchanges queued meanwhile are left to that task: under steady load the queue
        never empties, and a drain that waited for it would never end.
        """
        target = self.taken + len(self.queue)
        while self.taken < target and self.flush():
            if self.taken < target:
                await asyncio.sleep(0)

    # ------------------------------------------------------------ background

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vigil-monitor")

    async def stop(self, timeout: float = 2.0) -> None:
        """Process what is queued (bounded by ``timeout``), then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline:
            self.flush()

    @property
    def pending(self) -> int:
        """Exchanges waiting to be processed."""
        return len(self.queue)

    def flush(self, limit: int = BATCH) -> int:
        """Process up to ``limit`` queued exchanges (and about BATCH_BYTES decoded) now;
        returns how many."""
        queue = self.queue
        batch = self._batch()
        taken = work = 0
        while queue and taken < limit and work < BATCH_BYTES:
            exchange = queue.popleft()
            self.queued_bytes -= _size(exchange)
            self.taken += 1
            taken += 1
            work += self._take(exchange, batch)
        if taken:
            self._count(batch)
        return taken

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            # Bounded work per chunk, yielding in between so a backlog never
            # holds the proxy up for long.
            while self.flush():
                await asyncio.sleep(0)

    def process(self, exchanges: list[Exchange]) -> None:
        """Parse and count ``exchanges`` as one batch (synchronous; also used by tests)."""
        batch = self._batch()
        for exchange in exchanges:
            self._take(exchange, batch)
        self._count(batch)

    def _batch(self) -> _Batch:
        return _Batch({name: [] for name in self.counters})

    def _take(self, ex: Exchange, batch: _Batch) -> int:
        """Read one exchange into ``batch`` and keep its prediction for labels; returns the
        decoded bytes read. Never raises: a bad exchange loses only itself (counted)."""
        values: list[Any] | None = None
        work = 0
        try:
            values, work = self._read(ex, batch) if ex.sampled else self._prediction(ex)
        except Exception:  # monitoring must never take the proxy down
            self.errors += 1
            log.exception("monitoring failed on an exchange")
        if ex.request_id and self.recorder is not None:
            try:
                self.recorder(ex.request_id, ex.served_at, values or None)
            except Exception:
                self.errors += 1
                log.exception("keeping a prediction for labels failed")
        return work

    def _read(self, ex: Exchange, batch: _Batch) -> tuple[list[Any] | None, int]:
        """Parse a sampled exchange into ``batch``: (its predictions, decoded bytes).

        Both bodies are parsed before anything is added, so one that fails part-way
        adds nothing.
        """
        self.exchanges += 1
        request = decode_body(ex.request, ex.request_encoding)
        response = self._response(ex)
        if response is None and ex.response is not None and self.protocol != "raw":
            # A 2xx answer whose encoding is not read (br, zstd) or whose body is corrupt:
            # counted, as for inputs, not silently left out of the predictions.
            _add(self.prediction_violations, CONTENT_ENCODING)
        work = _work(request) + _work(response)
        if request is None:
            _add(self.violations, CONTENT_ENCODING)
            return self._values(ex, response), work
        if len(request) > MAX_MONITORED_BYTES or _work(response) > MAX_MONITORED_BYTES:
            self.too_large += 1
            return self._values(ex, response), work
        parsed = parse_request(
            self.protocol, request, ex.request_type, self.all_features, ex.request_json_length
        )
        out = None
        if response is not None:
            out = parse_response(
                self.protocol,
                response,
                ex.response_type,
                self.classification,
                json_length=ex.response_json_length,
            )
        classes = isinstance(self.prediction, _CategoryCounts)
        scores = out is not None and classes and holds_scores(out.values)
        self.rows += parsed.rows
        for kind in parsed.violations:
            _add(self.violations, kind)
        for name, values in parsed.columns.items():
            if name in batch.columns:
                batch.columns[name].extend(values)
        if out is None:
            return None, work
        for kind in out.violations:
            _add(self.prediction_violations, kind)
        if scores:
            batch.scores.extend(out.values)
        else:
            batch.predictions.extend(self._as_classes(out.values))
        return out.values, work

    def _as_classes(self, values: list[Any]) -> list[Any]:
        """A boolean classifier's two scores per row: its arg-max column 1 is true
        (scikit-learn's order), counted as the reference's class, not as a class "1"."""
        if isinstance(values, ArgMaxes) and values.columns == 2 and self.boolean_predictions:
            return [bool(index) for index in values]
        return values

    def _response(self, ex: Exchange) -> bytes | None:
        """The decoded answer to read predictions from (None: none to read)."""
        if ex.response is None or self.protocol == "raw":
            return None
        return decode_body(ex.response, ex.response_encoding)

    def _prediction(self, ex: Exchange) -> tuple[list[Any] | None, int]:
        """The predictions of an exchange not monitored (sampled out), for labels only."""
        if not ex.request_id or self.recorder is None:
            return None, 0
        response = self._response(ex)
        return self._values(ex, response), _work(response)

    def _values(self, ex: Exchange, response: bytes | None) -> list[Any] | None:
        """The predictions of an answer not counted, when kept for labels and not too large."""
        if not ex.request_id or self.recorder is None or response is None:
            return None
        if len(response) > MAX_MONITORED_BYTES:
            return None
        return parse_response(
            self.protocol,
            response,
            ex.response_type,
            self.classification,
            json_length=ex.response_json_length,
        ).values

    def _count(self, batch: _Batch) -> None:
        """Add a batch's columns and predictions to the counters."""
        try:
            for name, values in batch.columns.items():
                if values:
                    counter = self.counters[name]
                    before = counter.type_errors
                    counter.add(values)
                    _add(self.violations, TYPE, counter.type_errors - before)
            if batch.predictions or batch.scores:
                self._add_predictions(batch.predictions, batch.scores)
        except Exception:  # monitoring must never take the proxy down
            self.errors += 1
            log.exception("monitoring failed on a batch")

    def _add_predictions(self, values: list[Any], scores: list[Any]) -> None:
        """Count ``values`` by class or bin, and their numbers in the moments; ``scores``
        (a classifier's probabilities) count in the moments alone."""
        counter = self.prediction
        if counter is not None and values:
            before = counter.type_errors
            counter.add(values)
            _add(self.prediction_violations, TYPE, counter.type_errors - before)
        # Moments of plausible numbers only: a value near the float limit (or an integer past
        # it) would make the sums infinite for good.
        numbers = [
            x
            for x in (_int_float(v) if type(v) is int else v for v in chain(values, scores))
            if type(x) is float and abs(x) < MOMENT_LIMIT
        ]
        if not numbers:
            return
        self.pred_count += len(numbers)
        self.pred_sum += math.fsum(numbers)
        self.pred_sumsq += math.fsum(x * x for x in numbers)
        self.window.add(min(numbers), max(numbers))

    # ------------------------------------------------------------ exposition

    def collect(self) -> Iterator[Metric]:
        families = Families(self.base)
        base = families.values
        counter, gauge = families.counter, families.gauge

        yield families.counter_of(
            metric_names.INPUT_ROWS, "Rows (instances) seen in inference requests.", self.rows
        )
        yield families.counter_by(
            "vigil_input_schema_violations",
            "Inference requests (or values, for kind=type) that do not fit the expected "
            "schema: malformed_json, content_type, content_encoding, unknown_payload, shape, type, "
            "feature_count.",
            "kind",
            self.violations,
        )
        yield families.counter_by(
            "vigil_prediction_schema_violations",
            "Inference responses whose predictions could not be read, by kind (or "
            "predictions, for kind=type).",
            "kind",
            self.prediction_violations,
        )
        pmiss = counter("vigil_prediction_missing", "Missing (null/NaN) predictions.")
        if self.prediction is not None:  # counted against the reference's prediction only
            pmiss.add_metric(base, self.prediction.missing)
        yield pmiss

        fbin = counter(
            metric_names.FEATURE_BIN,
            "Values per reference bin of a numeric feature (bin 0 = underflow, last = overflow).",
            ("feature", "bin"),
        )
        fcat = counter(
            metric_names.FEATURE_CATEGORY,
            "Values per reference category of a categorical feature (__other__ = the rest).",
            ("feature", "category"),
        )
        fmiss = counter(metric_names.FEATURE_MISSING, "Missing (null/NaN) values.", ("feature",))
        frange = counter(
            metric_names.FEATURE_OUT_OF_RANGE,
            "Values outside the reference range (numeric) or allowed set (categorical).",
            ("feature",),
        )
        for name, c in self.counters.items():
            if isinstance(c, _NumericCounts):
                for i, n in enumerate(c.bins):
                    fbin.add_metric([*base, name, str(i)], n)
            else:
                for label, n in c.counts.items():
                    fcat.add_metric([*base, name, label], n)
            fmiss.add_metric([*base, name], c.missing)
            frange.add_metric([*base, name], c.out_of_range)
        yield fbin
        yield fcat
        yield fmiss
        yield frange

        pclass = counter(metric_names.PREDICTION_CLASS, "Predictions per class.", ("class",))
        pbin = counter(
            metric_names.PREDICTION_BIN,
            "Predictions per reference bin (regression; bin 0 = underflow, last = overflow).",
            ("bin",),
        )
        p = self.prediction
        if isinstance(p, _CategoryCounts):
            for label, n in p.counts.items():
                pclass.add_metric([*base, label], n)
        elif isinstance(p, _NumericCounts):
            for i, n in enumerate(p.bins):
                pbin.add_metric([*base, str(i)], n)
        yield pclass
        yield pbin
        yield families.counter_of(
            metric_names.PREDICTIONS,
            "Numeric predictions seen (sum/squares denominator).",
            self.pred_count,
        )
        yield families.gauge_of(
            metric_names.PREDICTION_VALUE_SUM,
            "Sum of numeric predictions since start.",
            self.pred_sum,
        )
        yield families.gauge_of(
            metric_names.PREDICTION_VALUE_SQUARES_SUM,
            "Sum of squared numeric predictions since start (for the standard deviation).",
            self.pred_sumsq,
        )
        lo, hi = self.window.bounds()
        yield families.gauge_of(
            "vigil_prediction_value_min", "Smallest prediction in the recent window.", lo
        )
        yield families.gauge_of(
            "vigil_prediction_value_max", "Largest prediction in the recent window.", hi
        )

        yield families.gauge_of(
            "vigil_monitored_features", "Features whose inputs are monitored.", len(self.counters)
        )
        yield families.gauge_of(
            "vigil_unmonitored_features",
            "Reference features left out by the feature cap or selection (0 = all monitored).",
            self.unmonitored,
        )
        drift = gauge(
            "vigil_drift_monitoring_enabled",
            "1 when a valid reference profile is loaded; 0 with the reason "
            "(no_reference, unreadable, invalid).",
            ("reason",),
        )
        drift.add_metric([*base, self.reference.reason], 1 if self.reference.reason == "ok" else 0)
        yield drift
        yield families.counter_of(
            "vigil_monitoring_dropped",
            "Exchanges not monitored because the queue was full.",
            self.dropped,
        )
        yield families.counter_of(
            "vigil_monitoring_too_large",
            f"Exchanges not monitored because a request or answer decodes past "
            f"{MAX_MONITORED_BYTES} bytes (still in the request metrics).",
            self.too_large,
        )
        yield families.counter_of(
            "vigil_monitoring_errors",
            "Internal errors while monitoring an exchange or a batch.",
            self.errors,
        )
        yield families.gauge_of(
            "vigil_monitoring_queue_length", "Exchanges waiting to be monitored.", len(self.queue)
        )
