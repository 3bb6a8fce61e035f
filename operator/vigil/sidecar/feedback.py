"""Feedback: labels by request id, joined to the predictions they judge.

A label pipeline posts truths to ``/vigil/v1/feedback`` on the feedback
port, through the model's Service, so any pod may receive a label. The
receiving sidecar (the origin) joins what its own store holds, sends the
rest first to the pod a sidecar-made id names, then to every other peer in
turn (each joins what it holds and says which it does not), and counts
what nobody holds: ``unknown`` (a client id), ``lost`` (a sidecar-made id
whose pod went away without handing its predictions over), ``expired``
(outside the join window) or ``unreachable`` (a pod that may hold it did
not answer; the answer lists those ids for a retry). A label is counted
where its prediction is, against the revision that served it, once: the
store marks labelled rows, and one pod holds a prediction at a time.

On shutdown the sidecar hands its predictions to its peers
(``/vigil/v1/feedback/handoff``), so a rollout or a deleted pod loses none;
a killed process loses its store (labels for it then count as ``lost``).
The peer and handoff paths accept only connections from peer addresses.
Nothing here changes routing or settings. The design, the bounds and what
is lost in which failure: docs/design/ground-truth.md.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from vigil.common.labels import boolean_aliases
from vigil.common.uris import host_port
from vigil.core import metric_names
from vigil.profile import OTHER
from vigil.profile.model import category_key
from vigil.sidecar.config import FeedbackSettings
from vigil.sidecar.exposition import Families
from vigil.sidecar.identity import MAX_ID_LENGTH, clean_id, id_key, parse_sidecar_id
from vigil.sidecar.joinstore import (
    ABSENT,
    DUPLICATE,
    EXPIRED,
    FORGOTTEN,
    INVALID,
    JOINED,
    NO_PREDICTION,
    JoinStore,
    Labelled,
    StoredRecord,
)
from vigil.sidecar.listening import bound_port
from vigil.sidecar.monitor import MOMENT_LIMIT, Monitor, holds_scores
from vigil.sidecar.payload import ArgMaxes

__all__ = ["DELAY_BUCKETS", "FeedbackMetrics", "FeedbackService", "Label", "parse_labels"]

log = logging.getLogger("vigil.sidecar")

FEEDBACK_PATH = "/vigil/v1/feedback"
PEER_PATH = "/vigil/v1/feedback/peer"
HANDOFF_PATH = "/vigil/v1/feedback/handoff"
#: Outcomes the origin decides when no pod joined a label.
UNKNOWN = "unknown"
LOST = "lost"
UNREACHABLE = "unreachable"
OUTCOMES = (JOINED, DUPLICATE, NO_PREDICTION, EXPIRED, LOST, UNKNOWN, UNREACHABLE, INVALID)
#: Seconds from prediction to label: minutes to a month.
DELAY_BUCKETS = (
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    2 * 86400.0,
    4 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
)
#: True classes counted by name beyond the reference's (then __other__), as predictions are.
MAX_UNLISTED_CLASSES = 50
#: Revisions a pod counts labels for by name; one named only by a label's id (anyone who
#: sends labels can write one) beyond these is counted as __other__.
MAX_NAMED_REVISIONS = 16
#: A longer truth is no class name: refused, as ids over their length are.
MAX_TRUTH_LENGTH = MAX_ID_LENGTH
#: Predictions per handoff request at most (the peer adopts them without yielding).
HANDOFF_CHUNK = 20_000
#: A handoff request's body is cut at this share of ``max_body_bytes``: the peer runs the
#: same settings, and the rest is room for one whose limit is lower (413: halves go again).
HANDOFF_BODY_SHARE = 0.5
#: The tasks a handoff may name for a revision; anything else is no task (not scored).
TASKS = ("classification", "regression")
#: Labels joined between two yields to the event loop (about 10 us each).
YIELD_EVERY = 256
PEER_CACHE_SECONDS = 2.0
#: A connection from no known peer looks the peers up again (one that just started), at
#: most this often (and lookups go one at a time): a flood of such connections is not one
#: of lookups (each a resolver thread), which would starve the lookups labels need.
PEER_MISS_REFRESH_SECONDS = 0.5
#: A request body must arrive within this (else 408): aiohttp sets no limit, and a client
#: that stalls mid-upload would hold one of the few request slots for as long as it liked.
BODY_TIMEOUT_SECONDS = 10.0
#: A resolver that does not answer must not hold up a feedback request or a shutdown.
RESOLVE_TIMEOUT_SECONDS = 2.0
#: The least time one peer gets for a chunk of the handoff (when that much is left):
#: a busy peer cut off after adopting it would see the chunk land twice.
HANDOFF_MIN_SHARE_SECONDS = 1.0
#: A handoff's connection to a peer is made within this (in-cluster: milliseconds); a pod
#: on a lost node, still listed, then costs the others this much, not a whole share.
HANDOFF_CONNECT_SECONDS = 1.0


@functools.lru_cache(maxsize=4096)
def class_code(key: str) -> float:
    """A class label as an exact float (48-bit hash): predictions and truths compare by it."""
    return float(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6).digest(), "big"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


#: A class key that may be a column index (keys are canonical: no "01", no "1.0").
_INDEX = re.compile(r"0|[1-9][0-9]*")


@functools.lru_cache(maxsize=64)
def columns_are_classes(columns: int, classes: tuple[str, ...]) -> bool:
    """Whether the arg-max columns of ``columns`` scores name the classes themselves: the
    reference lists none (then truths must be column indices), only 0..columns-1, or false
    and true in two columns (scikit-learn's order; their labels read 0 and 1 as booleans)."""
    if columns == 2 and set(classes) <= {"false", "true"}:
        return True
    return all(_INDEX.fullmatch(c) is not None and int(c) < columns for c in classes)


def prediction_values(
    values: Sequence[Any], task: str, classes: tuple[str, ...] = ()
) -> list[float]:
    """A prediction's rows as the store keeps them (NaN: a row without a usable value);
    ``classes``: the reference's."""
    if task == "classification":
        if holds_scores(values):
            # Probabilities, not classes (the monitor's rule): no class was predicted, so
            # their labels count as no_prediction rather than as wrong.
            return [math.nan] * len(values)
        if isinstance(values, ArgMaxes) and not columns_are_classes(values.columns, classes):
            # Columns of scores for classes with other names: no answer says which column
            # is which class, so its labels count as no_prediction rather than as wrong.
            return [math.nan] * len(values)
        out = []
        # A boolean classifier's 0 and 1 (arg-max columns among them) are false and true.
        aliases = boolean_aliases(classes)
        for value in values:
            key = category_key(value) if not isinstance(value, list | dict) else None
            out.append(class_code(aliases.get(key, key)) if key is not None else math.nan)
        return out
    if task == "regression":
        return [math.nan if (n := _number(v)) is None else n for v in values]
    # No task known: the rows are joined and counted, not scored.
    return [0.0 for _ in values]


@dataclass(frozen=True, slots=True)
class Label:
    """One truth for one row of one prediction."""

    request_id: str
    key: int
    row: int | None
    truth: Any


@dataclass
class ParsedLabels:
    labels: list[Label] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    #: Entries walked: every item, and every row of a list of truths (null ones too). The
    #: request's bounds count these: an entry that yields no label still costs the walk.
    entries: int = 0


def booleans_are_classes(classes: Collection[str]) -> bool:
    """Whether a JSON ``true``/``false`` truth may name a class: only for a model whose
    reference classes are booleans (or are not known)."""
    return not classes or not {"true", "false"}.isdisjoint(classes)


def _truth_error(truth: Any, task: str, booleans: bool = True) -> str | None:
    if truth is None:
        return "truth is missing"
    if isinstance(truth, list | dict):
        return "truth must be a number or a string"
    if isinstance(truth, str) and len(truth) > MAX_TRUTH_LENGTH:
        return f"truth longer than {MAX_TRUTH_LENGTH} characters"
    if isinstance(truth, str) and not truth.strip():
        return "truth is blank: no class or number"
    if task == "regression":
        number = _number(truth)
        if number is None:
            return "truth must be a finite number (regression)"
        if abs(number) >= MOMENT_LIMIT:
            return (
                f"truth beyond +-{MOMENT_LIMIT:g} (regression): its error would overflow the sums"
            )
    if task == "classification" and isinstance(truth, bool) and not booleans:
        return "truth is a boolean but the model's classes are not: send the class"
    if isinstance(truth, float) and not math.isfinite(truth):
        return "truth must be finite"
    return None


def parse_labels(doc: Any, task: str, limit: int, classes: Collection[str] = ()) -> ParsedLabels:
    """Labels of a feedback body: ``{"id", "truth"[, "row"]}`` or ``{"labels": [...]}``.

    A list ``truth`` gives one truth per row (null skips a row); ``classes`` are the
    reference's. Raises OverflowError as soon as the entries walked (items and rows,
    null or empty ones too: ``ParsedLabels.entries``) pass ``limit``, ValueError for a
    body of another shape.
    """
    booleans = booleans_are_classes(classes)
    if isinstance(doc, dict) and "labels" in doc:
        items = doc["labels"]
        if not isinstance(items, list):
            raise ValueError("'labels' must be a list")
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise ValueError('expected {"id": ..., "truth": ...} or {"labels": [...]}')
    out = ParsedLabels()
    for item in items:
        # Counted before any work: items that yield no label (a truth of [] or of nulls)
        # would otherwise let a whole body be walked on the loop that proxies inference.
        out.entries += 1
        if out.entries > limit:
            raise OverflowError(limit)
        if not isinstance(item, dict):
            out.invalid.append("a label must be an object")
            continue
        request_id = clean_id(item.get("id"))
        if request_id is None:
            out.invalid.append(f"bad id {str(item.get('id'))[:80]!r}")
            continue
        key = id_key(request_id)
        truth = item.get("truth")
        row = item.get("row")
        if not _valid_row(row):
            out.invalid.append(f"{request_id}: row must be an integer >= 0")
            continue
        if isinstance(truth, list):
            if row is not None:
                out.invalid.append(f"{request_id}: give 'row' with one truth, not a list")
                continue
            for index, value in enumerate(truth):
                # The item counted as its first row; each further one counts as it comes
                # (null ones too): one item may hold millions.
                if index:
                    out.entries += 1
                    if out.entries > limit:
                        raise OverflowError(limit)
                if value is None:
                    continue
                error = _truth_error(value, task, booleans)
                if error:
                    out.invalid.append(f"{request_id}[{index}]: {error}")
                else:
                    out.labels.append(Label(request_id, key, index, value))
            continue
        error = _truth_error(truth, task, booleans)
        if error:
            out.invalid.append(f"{request_id}: {error}")
            continue
        out.labels.append(Label(request_id, key, row, truth))
    return out


class _RevisionFigures:
    """What the labels of one serving revision added up to."""

    __slots__ = ("abs_error", "correct", "delay", "outcomes", "scored", "squared_error")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.scored: dict[str, int] = {}
        self.correct: dict[str, int] = {}
        self.abs_error = 0.0
        self.squared_error = 0.0
        self.delay = [0.0] * (len(DELAY_BUCKETS) + 2)  # bucket counts, +Inf, sum

    def copy(self) -> _RevisionFigures:
        out = _RevisionFigures()
        out.outcomes = dict(self.outcomes)
        out.scored = dict(self.scored)
        out.correct = dict(self.correct)
        out.abs_error, out.squared_error = self.abs_error, self.squared_error
        out.delay = list(self.delay)
        return out

    def since(self, before: _RevisionFigures | None) -> dict[str, Any] | None:
        """What was added after ``before`` (a handoff's figures); None when nothing was."""
        before = before or _RevisionFigures()

        def grown(now: dict[str, int], then: dict[str, int]) -> dict[str, int]:
            return {k: n - then.get(k, 0) for k, n in now.items() if n > then.get(k, 0)}

        doc: dict[str, Any] = {
            "outcomes": grown(self.outcomes, before.outcomes),
            "scored": grown(self.scored, before.scored),
            "correct": grown(self.correct, before.correct),
            "absError": self.abs_error - before.abs_error,
            "squaredError": self.squared_error - before.squared_error,
            "delay": [a - b for a, b in zip(self.delay, before.delay, strict=True)],
        }
        return doc if doc["outcomes"] else None

    @classmethod
    def parse(cls, doc: Any) -> _RevisionFigures:
        """A handoff's figures (``since`` of a peer), checked whole; raises ValueError or TypeError.

        Nothing is applied while parsing: a malformed handoff must change nothing here.
        """
        if not isinstance(doc, dict):
            raise TypeError("figures must be an object")
        out = cls()
        for mine, name in (
            (out.outcomes, "outcomes"),
            (out.scored, "scored"),
            (out.correct, "correct"),
        ):
            theirs = doc[name]
            if not isinstance(theirs, dict):
                raise TypeError(f"figures.{name} must be an object")
            for key, n in theirs.items():
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise ValueError(f"figures.{name}: a count must be an integer >= 0")
                mine[str(key)] = n
        out.abs_error = _finite(doc["absError"])
        out.squared_error = _finite(doc["squaredError"])
        delay = doc["delay"]
        if not isinstance(delay, list) or len(delay) != len(out.delay):
            raise ValueError("delay buckets differ")
        out.delay = [_finite(x) for x in delay]
        return out

    def add(self, other: _RevisionFigures, slot: Callable[[str], str]) -> None:
        """Add parsed figures; ``slot`` names a true class here."""
        for key, n in other.outcomes.items():
            self.outcomes[key] = self.outcomes.get(key, 0) + n
        for mine, theirs in ((self.scored, other.scored), (self.correct, other.correct)):
            for key, n in theirs.items():
                key = slot(key)
                mine[key] = mine.get(key, 0) + n
        self.abs_error += other.abs_error
        self.squared_error += other.squared_error
        self.delay = [a + b for a, b in zip(self.delay, other.delay, strict=True)]


def _finite(value: Any) -> float:
    number = _number(value)
    if number is None:
        raise ValueError("figures: expected a finite number")
    return number


class FeedbackMetrics(Collector):
    """Counters of labels per serving revision; turned into series at scrape time.

    ``revision`` on these series is the revision that served the prediction
    (this pod's own for labels no pod holds); model, version and role are
    this pod's.
    """

    def __init__(
        self,
        base: dict[str, str],
        registry: CollectorRegistry | None,
        classes: Sequence[str] = (),
    ) -> None:
        self.base = base
        self.revisions: dict[str, _RevisionFigures] = {}
        #: The reference's classes: what a truth is checked against.
        self.classes = tuple(classes)
        self.booleans = booleans_are_classes(self.classes)
        #: A truth 0 or 1 for a boolean classifier is false or true (as its predictions are).
        self.aliases = boolean_aliases(self.classes)
        self.known_classes = set(classes)
        self.room = MAX_UNLISTED_CLASSES
        self.rejected: dict[str, int] = {}
        self.requests = 0
        self.peer_failures = 0
        self.handoff: dict[str, int] = {}
        #: The stopping pod's unscraped figures: sent, kept (given back), uncertain.
        self.handoff_figures: dict[str, int] = {}
        self.store: JoinStore | None = None
        #: The label figures as the last scrape read them: a handoff moves only what came
        #: after to a peer, so whoever scrapes the pods counts every label once.
        self.scraped: dict[str, _RevisionFigures] = {}
        if registry is not None:
            registry.register(self)

    def figures(self, revision: str) -> _RevisionFigures:
        found = self.revisions.get(revision)
        if found is None:
            found = self.revisions[revision] = _RevisionFigures()
        return found

    def zero_series(self, revision: str, task: str) -> None:
        """Show this pod's revision's series at 0 from startup: Prometheus' increase()
        skips a series' first sample, which would otherwise hold the first labels.

        The label sets are those its labels are counted in later: each outcome, the
        reference's classes (classification) or the one regression series, the delays.
        """
        figures = self.figures(revision)
        for outcome in OUTCOMES:
            figures.outcomes.setdefault(outcome, 0)
        slots = {"classification": self.classes, "regression": ("",)}.get(task, ())
        for slot in slots:
            figures.scored.setdefault(slot, 0)

    def named_revision(self, revision: str) -> str:
        """The series a revision read from a label's id is counted in: its own while there
        is room (its pods' and the ones handed over always have theirs), else OTHER."""
        if revision in self.revisions or len(self.revisions) < MAX_NAMED_REVISIONS:
            return revision
        return OTHER

    def count(self, revision: str, outcome: str, n: int = 1) -> None:
        outcomes = self.figures(revision).outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + n

    def truth_key(self, truth: Any) -> str | None:
        key = category_key(truth)
        return self.aliases.get(key, key) if key is not None else None

    def class_label(self, truth: Any) -> str:
        return self.class_slot(self.truth_key(truth) or "")

    def class_slot(self, key: str) -> str:
        """The series a true class is counted in: its own while there is room, else OTHER."""
        if key not in self.known_classes and self.room > 0:
            self.known_classes.add(key)
            self.room -= 1
        return key if key in self.known_classes else OTHER

    def take_unscraped(self) -> dict[str, dict[str, Any]]:
        """The label figures no scrape has read yet, taken out (shutdown: for a peer).

        The series go back to what the last scrape read, so a scrape after this
        sees no decrease (no counter reset) and nothing twice.
        """
        taken = {
            revision: doc
            for revision, fig in self.revisions.items()
            if (doc := fig.since(self.scraped.get(revision))) is not None
        }
        self.revisions = {revision: fig.copy() for revision, fig in self.scraped.items()}
        return taken

    @staticmethod
    def parse_figures(figures: Any) -> dict[str, _RevisionFigures]:
        """A peer's ``take_unscraped``, checked whole (raises ValueError or TypeError)."""
        if not isinstance(figures, dict):
            raise TypeError("figures must be an object")
        return {str(rev): _RevisionFigures.parse(doc) for rev, doc in figures.items()}

    def add_figures(self, figures: dict[str, _RevisionFigures]) -> None:
        """Count parsed figures here (handoff; also: given back when undelivered)."""
        for revision, parsed in figures.items():
            self.figures(revision).add(parsed, self.class_slot)

    def joined(self, found: Labelled, truth: Any, task: str, delay: float) -> None:
        figures = self.figures(found.revision)
        figures.outcomes[JOINED] = figures.outcomes.get(JOINED, 0) + 1
        hist = figures.delay
        index = next((i for i, b in enumerate(DELAY_BUCKETS) if delay <= b), len(DELAY_BUCKETS))
        hist[index] += 1
        hist[-1] += delay
        if found.prediction is None or not task:
            return
        # A truth checked by a pod of another task (a peer's label) may be no class.
        if _truth_error(truth, task, self.booleans) is not None:
            return
        if task == "classification":
            label = self.class_label(truth)
            figures.scored[label] = figures.scored.get(label, 0) + 1
            key = self.truth_key(truth)
            if key is not None and class_code(key) == found.prediction:
                figures.correct[label] = figures.correct.get(label, 0) + 1
        else:
            truth_value = _number(truth)
            if truth_value is None:
                return
            error = found.prediction - truth_value
            figures.scored[""] = figures.scored.get("", 0) + 1
            figures.abs_error += abs(error)
            figures.squared_error += error * error

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        families = Families(self.base)
        names, own, counter = families.names, families.values, families.counter
        rev_at = names.index("revision")

        def labels(revision: str, *extra: str) -> list[str]:
            values = list(own)
            values[rev_at] = revision
            return [*values, *extra]

        outcomes = counter(
            metric_names.FEEDBACK_LABELS,
            "Labels (one per prediction row) by outcome, against the revision that served "
            "the prediction: joined, duplicate, no_prediction, expired, lost, unknown, "
            "unreachable, invalid.",
            ("outcome",),
        )
        scored = counter(
            metric_names.FEEDBACK_SCORED,
            "Joined labels scored against their prediction, by true class (classification).",
            ("class",),
        )
        correct = counter(
            metric_names.FEEDBACK_CORRECT,
            "Scored labels whose prediction was right, by true class (classification).",
            ("class",),
        )
        abs_error = counter(
            metric_names.FEEDBACK_ABSOLUTE_ERROR,
            "Sum of |prediction - truth| over scored labels (regression).",
        )
        squared_error = counter(
            metric_names.FEEDBACK_SQUARED_ERROR,
            "Sum of (prediction - truth)^2 over scored labels (regression).",
        )
        delay = HistogramMetricFamily(
            metric_names.FEEDBACK_LABEL_DELAY,
            "Seconds from the prediction to its label, for joined labels.",
            labels=names,
        )
        for revision, fig in sorted(self.revisions.items()):
            for outcome, n in sorted(fig.outcomes.items()):
                outcomes.add_metric(labels(revision, outcome), n)
            for label, n in sorted(fig.scored.items()):
                scored.add_metric(labels(revision, label), n)
                correct.add_metric(labels(revision, label), fig.correct.get(label, 0))
            if "" in fig.scored:
                abs_error.add_metric(labels(revision), fig.abs_error)
                squared_error.add_metric(labels(revision), fig.squared_error)
            if JOINED in fig.outcomes:
                cumulative = 0.0
                buckets = []
                for bound, n in zip((*DELAY_BUCKETS, math.inf), fig.delay[:-1], strict=True):
                    cumulative += n
                    buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
                delay.add_metric(labels(revision), buckets, sum_value=fig.delay[-1])
        # What this scrape reads (it is served as it is: the event loop runs nothing else
        # meanwhile).
        self.scraped = {revision: fig.copy() for revision, fig in self.revisions.items()}
        yield outcomes
        yield scored
        yield correct
        yield abs_error
        yield squared_error
        yield delay
        yield families.counter_of(
            "vigil_feedback_requests", "Feedback requests accepted.", self.requests
        )
        yield families.counter_by(
            "vigil_feedback_rejected_requests",
            "Feedback requests refused: body_too_large (413), body_timeout (408), "
            "too_many_labels (413), rate_limited (429), busy (429), bad_request (400), "
            "not_a_peer (403), leaving (503: handing predictions over at shutdown).",
            "reason",
            self.rejected,
        )
        yield families.counter_of(
            "vigil_feedback_peer_failures",
            "Calls to other sidecars that got no answer.",
            self.peer_failures,
        )
        yield families.counter_by(
            "vigil_feedback_handoff_predictions",
            "Predictions handed over at shutdown: sent, adopted (from a peer), failed.",
            "outcome",
            self.handoff,
        )
        yield families.counter_by(
            "vigil_feedback_handoff_figures",
            "Handoffs of the label figures no scrape read: sent (confirmed by a peer), kept "
            "(no peer took them: still here), uncertain (sent, no answer: maybe counted there).",
            "outcome",
            self.handoff_figures,
        )
        store = self.store
        if store is None:
            return
        for name, doc, value in (
            ("vigil_feedback_store_predictions", "Predictions held for labels.", store.predictions),
            (
                "vigil_feedback_store_rows",
                "Prediction rows held (the bound is the capacity).",
                store.rows,
            ),
            (
                "vigil_feedback_store_capacity_rows",
                "Most prediction rows held at once.",
                store.capacity,
            ),
            (
                "vigil_feedback_store_bytes",
                "Memory bound of the join store (arrays and filters).",
                store.nbytes,
            ),
            (
                "vigil_feedback_store_oldest_age_seconds",
                "Age of the oldest prediction held: the window labels can be joined over now.",
                store.oldest_age(),
            ),
        ):
            yield families.gauge_of(name, doc, value)
        yield families.counter_by(
            "vigil_feedback_store_evicted_predictions",
            "Predictions let go: window (older than the join window), capacity (store full).",
            "reason",
            store.evicted,
        )
        yield families.counter_of(
            "vigil_feedback_store_reused_ids",
            "Client ids seen again on this pod: the newer prediction replaced the older.",
            store.reused,
        )


class _TokenBucket:
    """Labels per second with a burst; a request takes all its labels or none."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.at = clock()

    def take(self, n: int) -> float:
        """0 when taken; else the seconds until ``n`` would be there."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


def _normal_address(address: str) -> str:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    return host_port(str(ip), port)


#: getaddrinfo's errors that are the DNS server's answer "no address", not an outage.
_NO_SUCH_NAME = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})


def _no_such_name(error: BaseException) -> bool:
    return isinstance(error, socket.gaierror) and error.errno in _NO_SUCH_NAME


class Peers:
    """The other sidecars of this ModelDeployment: host:port entries, DNS names resolved."""

    def __init__(self, entries: Sequence[str], me: str, clock: Callable[[], float]) -> None:
        self.entries = tuple(entries)
        self.me = _normal_address(me) if me else ""
        self.clock = clock
        self._cached: tuple[float, tuple[str, ...]] = (-math.inf, ())
        #: Each entry's addresses at its last answered lookup.
        self._last_answer: dict[str, set[str]] = {}
        #: Entries the last lookup could not resolve: the peers may be more than listed.
        self.unresolved: tuple[str, ...] = ()
        self._refreshing = asyncio.Lock()
        #: Lookups done: a call that waited for one takes its answer.
        self._lookups = 0

    async def resolve(self, fresh: bool = False) -> tuple[str, ...]:
        """Every peer address but this pod's own, sorted (a stable order for every pod).

        An entry that cannot be resolved now (a DNS outage) keeps its last answer and
        is listed in ``unresolved``. One lookup at a time: callers meanwhile take its answer."""
        at, cached = self._cached
        if not fresh and self.clock() - at < PEER_CACHE_SECONDS:
            return cached
        done = self._lookups
        async with self._refreshing:
            if self._lookups != done:  # looked up while this call waited
                return self._cached[1]
            peers = await self._look_up()
            self._lookups += 1
            return peers

    async def _look_up(self) -> tuple[str, ...]:
        loop = asyncio.get_running_loop()
        found: set[str] = set()
        unresolved: list[str] = []
        for entry in self.entries:
            host, _, port = entry.rpartition(":")
            host = host.strip("[]")
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM),
                    RESOLVE_TIMEOUT_SECONDS,
                )
            except (OSError, TimeoutError) as error:
                if _no_such_name(error):
                    infos = []  # an answer: no pod behind the name now (none ready)
                else:
                    log.warning("feedback peers: cannot resolve %s: %s", entry, error)
                    unresolved.append(entry)
                    found |= self._last_answer.get(entry, set())
                    continue
            answer = {_normal_address(f"{info[4][0]}:{port}") for info in infos}
            self._last_answer[entry] = answer
            found |= answer
        self.unresolved = tuple(unresolved)
        found.discard(self.me)
        peers = tuple(sorted(found))
        self._cached = (self.clock(), peers)
        return peers

    async def allows(self, remote: str | None) -> bool:
        """Whether a connection from ``remote`` (an IP) comes from a peer."""
        if not remote:
            return False
        if remote in self._hosts(await self.resolve()):
            return True
        if self.clock() - self._cached[0] < PEER_MISS_REFRESH_SECONDS:
            return False
        return remote in self._hosts(await self.resolve(fresh=True))

    def _hosts(self, peers: tuple[str, ...]) -> set[str]:
        """The IPs of ``peers`` and of this pod."""
        hosts = {p.rpartition(":")[0].strip("[]") for p in peers}
        if self.me:
            hosts.add(self.me.rpartition(":")[0].strip("[]"))
        return hosts


@dataclass
class _Pending:
    """A label no pod has joined yet, and what the pods asked so far said."""

    label: Label
    at: float
    asked: set[str] = field(default_factory=set)
    forgotten: bool = False
    done: bool = False


class _Refused(Exception):
    """Leaves a handler with the sidecar's own error answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _answering_refusals(handler: Handler) -> Handler:
    """The handler, answering a :class:`_Refused` it raises with the refusal's response."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except _Refused as refused:
            return refused.response

    return answer


class FeedbackService:
    """The feedback port: labels in, joined where their predictions are."""

    def __init__(
        self,
        settings: FeedbackSettings,
        *,
        revision: str,
        task: str,
        monitor: Monitor,
        metrics: FeedbackMetrics,
        listen_host: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.host = settings.host or listen_host
        self.revision = revision
        self.task = task
        #: Each held revision's task: a prediction is scored by the task of the revision
        #: that made it ("": none known, joined but not scored), wherever it is held.
        self.tasks: dict[str, str] = {revision: task}
        self.monitor = monitor
        self.metrics = metrics
        metrics.zero_series(revision, task)
        self.clock = clock
        #: Every id this process makes from now on is in its store, or was let go from it.
        self.started_at = clock()
        self.store = JoinStore(
            settings.max_predictions,
            settings.window_seconds,
            settings.max_rows_per_prediction,
            clock,
        )
        metrics.store = self.store
        self.address = settings.advertise or _default_advertise(settings.port)
        self.peers = Peers(settings.peers, self.address, time.monotonic)
        self.bucket = _TokenBucket(
            settings.labels_per_second, settings.burst_labels, time.monotonic
        )
        self.busy = 0
        #: Requests joining labels here now (public and peers'): a handoff waits for them.
        self.joining = 0
        #: Handing the store over (shutdown): a label joined here now would be lost.
        self.leaving = False
        #: The store went to the peers: what it still holds is theirs to join.
        self.exported = False
        self.runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        monitor.recorder = self.record

    # ------------------------------------------------------------ predictions

    def record(self, request_id: str, served_at: float, values: list[Any] | None) -> None:
        """Keep a prediction (called by the monitoring task, off the latency path)."""
        classes = self.metrics.classes
        rows = prediction_values(values, self.task, classes) if values is not None else None
        self.store.add(id_key(request_id), served_at, rows, self.revision)

    # ------------------------------------------------------------ server

    async def start(self) -> None:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post(FEEDBACK_PATH, _answering_refusals(self._feedback))
        app.router.add_post(PEER_PATH, _answering_refusals(self._peer))
        app.router.add_post(HANDOFF_PATH, _answering_refusals(self._handoff))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.settings.port)
        await site.start()
        if not self.address or (self.settings.port == 0 and not self.settings.advertise):
            # No pod IP given (outside a pod): the bound address, loopback for a wildcard.
            host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
            self.address = f"{host}:{self.port}"
            self.peers.me = _normal_address(self.address)
        log.info(
            "feedback on %s:%d (peers reach it at %s); join store of %d rows, %.1f MB, window %gs",
            self.host,
            self.port,
            self.address,
            self.store.capacity,
            self.store.nbytes / 1e6,
            self.settings.window_seconds,
        )

    @property
    def port(self) -> int:
        return bound_port(self.runner, self.settings.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.peer_timeout_seconds)
            )
        return self._session

    async def _body(self, request: web.Request) -> Any:
        """The decoded JSON body, or an HTTP error answer (counted)."""
        length = request.content_length
        if length is not None and length > self.settings.max_body_bytes:
            raise self._refuse(
                413, "body_too_large", f"body over {self.settings.max_body_bytes} bytes"
            )
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise self._refuse(
                413, "body_too_large", f"body over {self.settings.max_body_bytes} bytes"
            ) from None
        except TimeoutError:
            refused = self._refuse(
                408, "body_timeout", f"body not received within {BODY_TIMEOUT_SECONDS:g} s"
            )
            # A 408 ends the connection (RFC 9110): the rest of the body is no next request.
            refused.response.force_close()
            raise refused from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise self._refuse(400, "bad_request", f"not JSON: {error}") from None

    def _refuse(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> _Refused:
        """An answer of the sidecar's own (counted), raised to leave the handler."""
        self.metrics.reject(reason)
        body = orjson.dumps({"error": message, "reason": reason, "source": "vigil-sidecar"})
        return _Refused(
            web.Response(
                status=status,
                body=body,
                content_type="application/json",
                headers={"X-Vigil-Error": reason, **(headers or {})},
            )
        )

    # ------------------------------------------------------------ the public endpoint

    def _check_leaving(self) -> None:
        if self.leaving:
            raise self._refuse(
                503, "leaving", "this pod is handing its predictions over", {"Retry-After": "1"}
            )

    async def _feedback(self, request: web.Request) -> web.Response:
        self._check_leaving()
        if self.busy >= self.settings.max_concurrent_requests:
            raise self._refuse(
                429, "busy", "too many feedback requests at once", {"Retry-After": "1"}
            )
        self.busy += 1
        try:
            doc = await self._body(request)
            try:
                parsed = parse_labels(
                    doc, self.task, self.settings.max_labels_per_request, self.metrics.classes
                )
            except OverflowError:
                raise self._refuse(
                    413,
                    "too_many_labels",
                    f"more than {self.settings.max_labels_per_request} labels in one request",
                ) from None
            except ValueError as error:
                raise self._refuse(400, "bad_request", str(error)) from None
            # Reading the body awaited: a handoff may have begun meanwhile. From the
            # count below the handoff waits for this request (not for a slow client).
            self._check_leaving()
            wait = self.bucket.take(parsed.entries)
            if wait > 0:
                raise self._refuse(
                    429,
                    "rate_limited",
                    f"over {self.settings.labels_per_second:g} labels/s",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
            self.metrics.requests += 1
            self.joining += 1
            try:
                summary = await self.join(parsed)
            finally:
                self.joining -= 1
            return web.json_response(summary)
        finally:
            self.busy -= 1

    async def join(self, parsed: ParsedLabels) -> dict[str, Any]:
        """Join a batch of labels wherever their predictions are; count each once."""
        now = self.clock()
        tally = dict.fromkeys(OUTCOMES, 0)
        errors: list[str] = list(parsed.invalid)
        if parsed.invalid:
            self.metrics.count(self.revision, INVALID, len(parsed.invalid))
            tally[INVALID] += len(parsed.invalid)
        await self.monitor.drain()
        pending: list[_Pending] = []
        for index, label in enumerate(parsed.labels):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a batch of thousands must not hold up the proxy
            outcome = self._join_here(label, now, errors)
            if outcome in (ABSENT, FORGOTTEN):
                pending.append(_Pending(label, now, forgotten=outcome == FORGOTTEN))
            else:
                tally[outcome] += 1
        retry: list[str] = []
        if pending:
            failed = await self._ask_peers(pending, tally, errors)
            for item in pending:
                if item.done:
                    continue
                outcome, revision = self._unjoined(item, failed, now)
                self.metrics.count(revision, outcome)
                tally[outcome] += 1
                if outcome == UNREACHABLE:
                    retry.append(item.label.request_id)
        return {
            "received": len(parsed.labels) + len(parsed.invalid),
            **{_camel(k): v for k, v in tally.items()},
            "retry": sorted(set(retry)),
            "errors": errors[:20],
        }

    def _join_here(self, label: Label, at: float, errors: list[str]) -> str:
        """Label a row this pod holds; counts it (JOINED, DUPLICATE, ...) or says ABSENT."""
        if self.exported:
            # A request that outlived the handoff's wait: the rows went to the peers
            # unlabelled, so marking them here would let a second label join there.
            return ABSENT
        found = self.store.label(
            label.key, label.row, at, functools.partial(self._error_problem, label.truth)
        )
        if found.outcome == ABSENT and self._made_here(label.request_id):
            # Let go for room, its filter of forgotten keys past it: not lost with a pod.
            return FORGOTTEN
        if found.outcome in (ABSENT, FORGOTTEN):
            return found.outcome
        if found.outcome == JOINED:
            task = self.tasks.get(found.revision, "")
            self.metrics.joined(found, label.truth, task, max(0.0, at - found.served_at))
            return JOINED
        if found.outcome == INVALID and found.detail:
            errors.append(f"{label.request_id}: {found.detail}")
        self.metrics.count(found.revision, found.outcome)
        return found.outcome

    def _made_here(self, request_id: str) -> bool:
        """Whether this sidecar process made the id (not one killed before it restarted)."""
        sid = parse_sidecar_id(request_id)
        return sid is not None and sid.owner == self.peers.me and sid.served_at >= self.started_at

    def _error_problem(self, truth: Any, revision: str, prediction: float) -> str:
        """Why ``truth`` cannot be scored against a regression prediction ("" if it can):
        an error past MOMENT_LIMIT would turn the error sums infinite for good."""
        truth_value = _number(truth)
        if self.tasks.get(revision) != "regression" or truth_value is None:
            return ""
        error = prediction - truth_value
        if abs(error) < MOMENT_LIMIT:  # False for NaN and infinity too
            return ""
        return (
            f"truth {truth_value:g} is {abs(error):g} from the prediction: beyond "
            f"+-{MOMENT_LIMIT:g}, its square would overflow the error sums"
        )

    def _unjoined(self, item: _Pending, failed: set[str], now: float) -> tuple[str, str]:
        """What a label no pod joined counts as, and against which revision."""
        sid = parse_sidecar_id(item.label.request_id)
        named = self.metrics.named_revision(sid.revision) if sid else self.revision
        # Peers unknown (a DNS outage): a label none of the known ones holds may be at
        # one of them, so it is unreachable (resend it), not unknown or lost.
        if item.asked & failed or self.peers.unresolved:
            return UNREACHABLE, named
        if sid is not None:
            if item.forgotten or sid.served_at < now - self.settings.window_seconds:
                return EXPIRED, named
            return LOST, named
        return (EXPIRED if item.forgotten else UNKNOWN), self.revision

    async def _ask_peers(
        self, pending: list[_Pending], tally: dict[str, int], errors: list[str]
    ) -> set[str]:
        """Send the labels this pod does not hold to the other pods; returns the silent ones.

        One pod after the other (not all at once): the first that holds a
        prediction joins its label, and no other is asked about it again.
        """
        peers = await self.peers.resolve()
        failed: set[str] = set()
        # A sidecar-made id names its pod: ask that one first.
        first: dict[str, list[_Pending]] = {}
        for item in pending:
            sid = parse_sidecar_id(item.label.request_id)
            if sid is not None and sid.owner in peers:
                first.setdefault(sid.owner, []).append(item)
        rounds: list[tuple[str, Sequence[_Pending]]] = [
            *first.items(),
            *((peer, pending) for peer in peers),
        ]
        refused: set[str] = set()
        for peer, candidates in rounds:
            batch = [i for i in candidates if not i.done and peer not in i.asked]
            if batch:
                for item in batch:
                    item.asked.add(peer)
                await self._ask_peer(peer, batch, tally, errors, failed, refused)
        if refused:
            # A pod stops listening only after handing its predictions over, perhaps to this
            # pod after its own look or to a peer asked before it: look here, then ask the
            # peers that answered once more.
            await self._join_pending_here(pending, tally, errors)
            for peer in peers:
                batch = [i for i in pending if not i.done]
                if batch and peer not in failed | refused:
                    for item in batch:
                        item.asked.add(peer)  # silent now: it may hold them (unreachable)
                    await self._ask_peer(peer, batch, tally, errors, failed, refused)
        return failed

    async def _join_pending_here(
        self, pending: list[_Pending], tally: dict[str, int], errors: list[str]
    ) -> None:
        """Join here what arrived (a handoff) since this pod first looked."""
        await self.monitor.drain()
        for index, item in enumerate(pending):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            if item.done:
                continue
            outcome = self._join_here(item.label, item.at, errors)
            if outcome == FORGOTTEN:
                item.forgotten = True
            elif outcome != ABSENT:
                item.done = True
                tally[outcome] += 1

    async def _ask_peer(
        self,
        peer: str,
        batch: list[_Pending],
        tally: dict[str, int],
        errors: list[str],
        failed: set[str],
        refused: set[str],
    ) -> None:
        """One peer's answers for ``batch``: its labels joined there are done."""
        answers = await self._call_peer(peer, batch, refused)
        if answers is None:
            failed.add(peer)
            return
        for item, answer in zip(batch, answers, strict=True):
            outcome = str(answer[0]) if answer else ABSENT
            if outcome == FORGOTTEN:
                item.forgotten = True
            elif outcome != ABSENT:
                item.done = True
                tally[outcome if outcome in tally else INVALID] += 1
                if outcome == INVALID and len(answer) > 1:
                    errors.append(f"{item.label.request_id}: {answer[1]}")

    async def _call_peer(
        self, peer: str, batch: Sequence[_Pending], refused: set[str]
    ) -> list[list[Any]] | None:
        payload = orjson.dumps(
            {"labels": [[i.label.request_id, i.label.row, i.label.truth, i.at] for i in batch]}
        )
        try:
            async with self._client().post(
                f"http://{peer}{PEER_PATH}",
                data=payload,
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status != 200:
                    raise aiohttp.ClientError(f"HTTP {response.status}")
                answers = orjson.loads(await response.read())["results"]
        except aiohttp.ClientConnectorError as error:
            self.metrics.peer_failures += 1
            if isinstance(error.os_error, ConnectionRefusedError):
                # Nothing listens there (a pod gone or restarting): it holds nothing,
                # whatever it held is lost or was handed over. Not worth a retry.
                refused.add(peer)
                return [[ABSENT] for _ in batch]
            log.warning("feedback: peer %s did not answer: %s", peer, error)
            return None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as error:
            self.metrics.peer_failures += 1
            log.warning("feedback: peer %s did not answer: %s", peer, error)
            return None
        if not isinstance(answers, list) or len(answers) != len(batch):
            self.metrics.peer_failures += 1
            return None
        return answers

    # ------------------------------------------------------------ peers' endpoints

    async def _peer(self, request: web.Request) -> web.Response:
        """Another sidecar asks: join what you hold, say what you do not (count nothing else)."""
        if not await self.peers.allows(request.remote):
            raise self._refuse(403, "not_a_peer", "only the model's own sidecars call this")
        self._check_leaving()  # the asking pod counts these unreachable: a retry finds them
        doc = await self._body(request)
        try:
            rows = doc["labels"]
            labels = [(Label(str(r[0]), id_key(str(r[0])), r[1], r[2]), float(r[3])) for r in rows]
        except (TypeError, KeyError, IndexError, ValueError):
            raise self._refuse(400, "bad_request", "malformed peer request") from None
        if any(not _valid_row(label.row) for label, _ in labels):
            raise self._refuse(400, "bad_request", "malformed peer request: row")
        self._check_leaving()  # a handoff began while the body was read
        self.joining += 1
        try:
            return await self._peer_join(labels)
        finally:
            self.joining -= 1

    async def _peer_join(self, labels: list[tuple[Label, float]]) -> web.Response:
        await self.monitor.drain()
        results: list[list[Any]] = []
        for index, (label, at) in enumerate(labels):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            errors: list[str] = []
            outcome = self._join_here(label, at, errors)
            results.append([outcome, *errors[:1]])
        return web.json_response({"results": results})

    async def _handoff(self, request: web.Request) -> web.Response:
        """A peer going away hands its predictions (and its unscraped figures) over.

        All or nothing: a malformed handoff changes nothing, so the sender may try
        another peer. Refused (503) while this pod leaves too: what it adopted after
        its own export would be lost though it answered 200.
        """
        if not await self.peers.allows(request.remote):
            raise self._refuse(403, "not_a_peer", "only the model's own sidecars call this")
        self._check_leaving()
        doc = await self._body(request)
        try:
            records = [
                StoredRecord(
                    int(key),
                    float(served_at),
                    str(revision),
                    int(flags),
                    tuple((None if v is None else float(v), bool(seen)) for v, seen in rows),
                )
                for key, served_at, revision, flags, rows in doc["records"]
            ]
            # A sender that names tasks but none for a revision leaves it unscored. One that
            # names none at all (an older sidecar) is scored by this pod's task, as it was.
            stated = doc.get("tasks") or {}
            if not isinstance(stated, dict):
                raise TypeError("tasks must be an object")
            unstated = "tasks" not in doc
            given = "figures" in doc
            figures = FeedbackMetrics.parse_figures(doc.get("figures") or {})
            if not self.store.has_room_for_revisions({r.revision for r in records}):
                raise ValueError("too many revisions")
        except (TypeError, KeyError, ValueError, OverflowError, AttributeError):
            raise self._refuse(400, "bad_request", "malformed handoff") from None
        self._check_leaving()  # a handoff of this pod's own began while the body was read
        # Nothing below awaits; counted anyway so that an export never runs mid-adoption.
        self.joining += 1
        try:
            adopted = 0
            for record in records:
                if self.store.adopt(record):
                    adopted += 1
                    if record.revision not in self.tasks:
                        task = self.task if unstated else stated.get(record.revision)
                        self.tasks[record.revision] = task if task in TASKS else ""
            # The leaving pod's labels no scrape read: counted here from now on.
            self.metrics.add_figures(figures)
        finally:
            self.joining -= 1
        self.metrics.handoff["adopted"] = self.metrics.handoff.get("adopted", 0) + adopted
        # "figures" confirms them: a sidecar that ignores them (an older one) leaves the
        # sender to try another peer.
        return web.json_response({"adopted": adopted, **({"figures": True} if given else {})})

    async def handoff(self) -> int:
        """Hand every held prediction to the peers (shutdown); returns how many went.

        With them go the label figures no scrape has read yet: counted on a peer,
        they are not lost with this pod (labels joined here since its last scrape).
        """
        self.leaving = True
        timeout = self.settings.handoff_timeout_seconds
        # A request already joining here would mark or count after the export below: that
        # label would be lost, or joined a second time at the peer. Capped at half the
        # timeout: a request waiting on a silent peer must not leave the send no time.
        waited = time.monotonic() + timeout / 2
        while self.joining and time.monotonic() < waited:
            await asyncio.sleep(0.01)
        if self.joining:
            log.warning(
                "feedback: handing over with %d feedback requests still running here: what "
                "they count from now on stays on this pod (read only by a scrape after this)",
                self.joining,
            )
        await self.monitor.drain()
        records = list(self.store.export())
        self.exported = True
        figures = self.metrics.take_unscraped()
        deadline = time.monotonic() + timeout
        if not records and not figures:
            return 0
        try:
            peers = await self.peers.resolve(fresh=True)
        except OSError:
            peers = ()
        # A peer that timed out on the figures is asked for predictions only when no other is.
        silent = await self._hand_figures(peers, figures, deadline) if figures else set()
        if not peers:
            self.metrics.handoff["failed"] = self.metrics.handoff.get("failed", 0) + len(records)
            log.warning("feedback: no peer to hand %d predictions to: lost", len(records))
            return 0
        revisions = {r.revision for r in records}
        head = b'{"tasks":%s,"records":' % orjson.dumps(
            {revision: self.tasks.get(revision, "") for revision in revisions}
        )
        budget = max(1, int(self.settings.max_body_bytes * HANDOFF_BODY_SHARE))
        chunks = _handoff_chunks(records, len(head), budget)
        # Halves of a chunk a peer refused as too large (413: it adopted none), next first.
        halves: list[list[bytes]] = []
        sent = index = 0
        while time.monotonic() < deadline:
            chunk = halves.pop() if halves else next(chunks, None)
            if chunk is None:
                break
            payload = b"%s[%s]}" % (head, b",".join(chunk))
            delivered = too_large = False
            order = [peers[(index + k) % len(peers)] for k in range(len(peers))]
            order = [peer for peer in order if peer not in silent] or order
            for attempt, peer in enumerate(order):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Each peer left to try gets its share: a silent one cannot take it all.
                share = max(left / (len(order) - attempt), min(left, HANDOFF_MIN_SHARE_SECONDS))
                try:
                    status, _ = await _post_handoff(self._client(), peer, payload, share)
                    delivered, too_large = status == 200, status == 413
                except TimeoutError:
                    silent.add(peer)  # asked again only when no other is left
                except (aiohttp.ClientError, OSError):
                    pass
                if delivered or (too_large and len(chunk) > 1):
                    break
            if too_large and not delivered and len(chunk) > 1:
                half = len(chunk) // 2
                halves += [chunk[half:], chunk[:half]]
                continue
            index += 1
            sent += len(chunk) if delivered else 0
        # Whatever was not delivered (refused, no answer, out of time) is lost with this pod.
        for outcome, n in (("sent", sent), ("failed", len(records) - sent)):
            if n:
                self.metrics.handoff[outcome] = self.metrics.handoff.get(outcome, 0) + n
        log.info("feedback: handed %d of %d predictions to peers", sent, len(records))
        return sent

    async def _hand_figures(
        self, peers: Sequence[str], figures: dict[str, dict[str, Any]], deadline: float
    ) -> set[str]:
        """Send the unscraped figures alone, before the predictions (small, answered fast);
        returns the peers that timed out.

        Given back here (for a last scrape) only when no peer can have counted them: a
        failed connection, a refusal, an answer not confirming them. A timeout or a
        reset after sending may have counted them there: then possibly lost, not twice.
        """
        payload = orjson.dumps({"records": [], "figures": figures})
        done = self.metrics.handoff_figures
        silent: set[str] = set()
        # A new connection each: a pooled one the peer closed would fail after "sending".
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            for peer in peers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    # At most half the time left: the predictions are sent after them.
                    status, body = await _post_handoff(session, peer, payload, left / 2)
                    answer = orjson.loads(body) if status == 200 else None
                except aiohttp.ServerTimeoutError:
                    # No connection within its bound (a pod on a lost node, still listed):
                    # nothing was sent, so the next peer may take them.
                    silent.add(peer)
                    continue
                except aiohttp.ClientConnectorError:
                    continue  # nothing was sent
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                    done["uncertain"] = done.get("uncertain", 0) + 1
                    log.warning(
                        "feedback: label figures sent to %s, no answer (%s): maybe counted "
                        "there, not sent again (may be missing from the sums)",
                        peer,
                        error,
                    )
                    return (silent | {peer}) if isinstance(error, TimeoutError) else silent
                if isinstance(answer, dict) and answer.get("figures") is True:
                    done["sent"] = done.get("sent", 0) + 1
                    return silent
        done["kept"] = done.get("kept", 0) + 1
        self.metrics.add_figures(FeedbackMetrics.parse_figures(figures))
        log.warning("feedback: no peer took the label figures: kept for a last scrape here")
        return silent


def _handoff_chunks(
    records: Sequence[StoredRecord], head: int, budget: int
) -> Iterator[list[bytes]]:
    """The records encoded, in chunks whose body (``head`` bytes before them) stays within
    ``budget`` bytes and HANDOFF_CHUNK records; a record over the budget alone goes alone."""
    chunk: list[bytes] = []
    size = head + 2
    for r in records:
        part = orjson.dumps(
            [str(r.key), r.served_at, r.revision, r.flags, [list(x) for x in r.rows]]
        )
        if chunk and (size + len(part) + 1 > budget or len(chunk) >= HANDOFF_CHUNK):
            yield chunk
            chunk, size = [], head + 2
        chunk.append(part)
        size += len(part) + 1
    if chunk:
        yield chunk


async def _post_handoff(
    session: aiohttp.ClientSession, peer: str, payload: bytes, timeout: float
) -> tuple[int, bytes]:
    """POST ``payload`` to ``peer``'s handoff path: its status and body.

    A connection not made within HANDOFF_CONNECT_SECONDS (or half ``timeout``) raises
    aiohttp.ServerTimeoutError, and only that does (no read bound is set): nothing was
    sent. Any other timeout is the plain TimeoutError of ``timeout`` (maybe received).
    """
    bound = aiohttp.ClientTimeout(
        total=timeout, sock_connect=min(HANDOFF_CONNECT_SECONDS, timeout / 2)
    )
    async with session.post(
        f"http://{peer}{HANDOFF_PATH}",
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=bound,
    ) as response:
        return response.status, await response.read()


def _valid_row(row: Any) -> bool:
    return row is None or (isinstance(row, int) and not isinstance(row, bool) and row >= 0)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _default_advertise(port: int) -> str:
    """$VIGIL_POD_IP (the downward API) and the feedback port; "" outside a pod."""
    ip = os.environ.get("VIGIL_POD_IP", "")
    return host_port(ip, port) if ip and port else ""
