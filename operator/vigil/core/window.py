"""What a revision's pods did over a window, from the sidecars' counters.

Both metrics sources end here. The ``direct`` source scrapes every pod,
keeps recent scrapes per pod and computes each series' increase over the
window (:func:`pod_increase`), then adds the pods of a revision up
(:func:`add_series`); the ``prometheus`` source gets the same per-revision
increases from PromQL (``sum by (...) (increase(...))``, ``delta`` for the
prediction count and sums). Either way the result is a mapping of
:data:`SeriesKey` to a number, which :meth:`RevisionWindow.from_series`
turns into named figures.

Only the label dimensions in :data:`FAMILY_LABELS` are kept: model,
version, role, pod and instance are summed away, so replicas merge and
the label set stays small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vigil.core import metric_names as names
from vigil.core.metric_names import bucket, count_of, sum_of, total

#: A series: metric name and its kept labels, sorted.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

#: Families the health evaluation reads, with the labels it keeps. Each one is
#: one batched query per cycle in the prometheus source.
FAMILY_LABELS: Mapping[str, tuple[str, ...]] = {
    total(names.REQUESTS): ("origin", "outcome"),
    # Read where a revision's sidecars predate the family above (an operator upgrade).
    total(names.REQUESTS_BY_CODE): ("origin", "outcome"),
    bucket(names.REQUEST_DURATION): ("origin", "le"),
    total(names.INPUT_ROWS): (),
    total(names.FEATURE_BIN): ("feature", "bin"),
    total(names.FEATURE_CATEGORY): ("feature", "category"),
    total(names.FEATURE_MISSING): ("feature",),
    total(names.FEATURE_OUT_OF_RANGE): ("feature",),
    total(names.PREDICTION_CLASS): ("class",),
    total(names.PREDICTION_BIN): ("bin",),
    total(names.PREDICTIONS): (),
    names.PREDICTION_VALUE_SUM: (),
    names.PREDICTION_VALUE_SQUARES_SUM: (),
    total(names.SHADOW_REQUESTS): ("target_revision", "outcome"),
    total(names.SHADOW_PREDICTIONS): ("target_revision",),
    total(names.SHADOW_AGREEMENTS): ("target_revision",),
    sum_of(names.SHADOW_ABS_DIFFERENCE): ("target_revision",),
    count_of(names.SHADOW_ABS_DIFFERENCE): ("target_revision",),
    total(names.SHADOW_DROPPED): ("target_revision",),
    total(names.FEEDBACK_LABELS): ("outcome",),
    total(names.FEEDBACK_SCORED): ("class",),
    total(names.FEEDBACK_CORRECT): ("class",),
    total(names.FEEDBACK_ABSOLUTE_ERROR): (),
    total(names.FEEDBACK_SQUARED_ERROR): (),
    bucket(names.FEEDBACK_LABEL_DELAY): ("le",),
}

#: Ground-truth families: their ``revision`` label is the revision that *served* the
#: prediction, which may differ from the counting pod's (a prediction handed over
#: at shutdown). The direct source keeps that label and picks by it.
SERVED_REVISION_FAMILIES = frozenset(
    {
        total(names.FEEDBACK_LABELS),
        total(names.FEEDBACK_SCORED),
        total(names.FEEDBACK_CORRECT),
        total(names.FEEDBACK_ABSOLUTE_ERROR),
        total(names.FEEDBACK_SQUARED_ERROR),
        bucket(names.FEEDBACK_LABEL_DELAY),
    }
)

#: Only inference requests count towards health (not probes, not /metadata).
FAMILY_FILTERS: Mapping[str, Mapping[str, str]] = {
    total(names.REQUESTS): {"endpoint": "infer"},
    total(names.REQUESTS_BY_CODE): {"endpoint": "infer"},
    bucket(names.REQUEST_DURATION): {"endpoint": "infer"},
}

#: Running sums that may go down (negative predictions): only a process
#: restart resets them, never a decrease.
GAUGE_SUMS = frozenset({names.PREDICTION_VALUE_SUM, names.PREDICTION_VALUE_SQUARES_SUM})

START_TIME_METRIC = names.SIDECAR_START_TIME

#: Outcomes of the shadow copies a stable's sidecars sent but could not compare, though the
#: candidate's pods were to answer them: it answered late, unparseably or with another number
#: of rows, or could not be reached. Not ``target_error``: its own sidecar counts that one.
NOT_COMPARED = (
    "timeout",
    "unparseable",
    "mismatch",
    "unreachable",
    "target_too_large",
    "too_large",
)
#: Said, never blamed on the candidate: copies the stable's side could not compare (its own
#: answer unreadable, the comparison failed) or never sent (its shadow queue was full).
STABLE_SIDE = ("stable_unparseable", "compare_error")
DROPPED = "dropped"
WHY_NOT_COMPARED = (*NOT_COMPARED, *STABLE_SIDE, DROPPED)


def series_key(name: str, labels: Mapping[str, str]) -> SeriesKey | None:
    """The kept key of a sample, or None when the health evaluation does not read it."""
    kept = FAMILY_LABELS.get(name)
    if kept is None:
        return None
    for label, value in FAMILY_FILTERS.get(name, {}).items():
        if labels.get(label) != value:
            return None
    if name in SERVED_REVISION_FAMILIES:
        kept = (*kept, "revision")
    return name, tuple((label, labels.get(label, "")) for label in kept)


def served_by(series: Mapping[SeriesKey, float], revision: str) -> dict[SeriesKey, float]:
    """The ground-truth series of predictions ``revision`` served, without that label.

    The direct source adds these over every pod of the ModelDeployment (a label
    may be counted on another revision's pod) and picks the revision's own.
    """
    out: dict[SeriesKey, float] = {}
    for (name, labels), value in series.items():
        if name not in SERVED_REVISION_FAMILIES:
            continue
        if dict(labels).get("revision") != revision:
            continue
        key = (name, tuple(item for item in labels if item[0] != "revision"))
        out[key] = out.get(key, 0.0) + value
    return out


@dataclass(frozen=True)
class Scrape:
    """One scrape of one pod's sidecar: when, since when the process runs, what it said."""

    at: float
    started_at: float | None
    values: Mapping[SeriesKey, float]
    #: The growth since the scrape kept before it, standing for scrapes dropped between them.
    step: Mapping[SeriesKey, float] | None = None
    #: The process of the scrape kept before it, no counter down or gone (its keeper knows):
    #: across a run of these the growth is the last one's values minus the first one's.
    continues: bool = False


def _restarted(before: Scrape, after: Scrape) -> bool:
    return (
        before.started_at is not None
        and after.started_at is not None
        and after.started_at != before.started_at
    )


def pod_increase(scrapes: Sequence[Scrape], window_start: float) -> dict[SeriesKey, float]:
    """How much each series of one pod grew from ``window_start`` to the last scrape.

    The baseline is the last scrape at or before ``window_start``. Without
    one, a process that started inside the window counts from zero (its
    counters began there); otherwise the oldest scrape is the baseline and
    the figure covers only part of the window. Counter resets (a decrease,
    or a new process start time) count the new value as growth, as
    Prometheus' ``increase`` does; a scrape's ``step`` stands for those dropped before it.
    """
    if not scrapes:
        return {}
    ordered = sorted(scrapes, key=lambda s: s.at)
    before = [s for s in ordered if s.at <= window_start]
    if before:
        chain = [before[-1], *[s for s in ordered if s.at > window_start]]
        baseline: Scrape | None = chain[0]
        rest = chain[1:]
    else:
        first = ordered[0]
        starts_inside = first.started_at is not None and first.started_at >= window_start
        baseline = None if starts_inside else first
        rest = ordered if starts_inside else ordered[1:]
    totals: dict[SeriesKey, float] = {}
    previous = run_start = baseline
    for scrape in rest:
        if previous is not None and scrape.continues:
            previous = scrape  # counted with the rest of its run, at the run's end
            continue
        _add_run(totals, run_start, previous)
        _add_growth(totals, previous, scrape)
        previous = run_start = scrape
    _add_run(totals, run_start, previous)
    return totals


def growth(before: Scrape | None, after: Scrape) -> dict[SeriesKey, float]:
    """Each series' growth from ``before`` (None: zero) to ``after``, the next scrape kept."""
    totals: dict[SeriesKey, float] = {}
    _add_growth(totals, before, after)
    return totals


def _add_growth(totals: dict[SeriesKey, float], before: Scrape | None, after: Scrape) -> None:
    total = totals.get  # bound once: thousands of series per scrape
    if before is not None and after.step is not None:
        for key, value in after.step.items():
            totals[key] = total(key, 0.0) + value
    elif before is None or _restarted(before, after):
        for key, value in after.values.items():
            totals[key] = total(key, 0.0) + value
    else:
        last = before.values.get
        for key, value in after.values.items():
            old = last(key, 0.0)
            grown = value - old if value >= old or key[0] in GAUGE_SUMS else value
            totals[key] = total(key, 0.0) + grown


def _add_run(totals: dict[SeriesKey, float], first: Scrape | None, last: Scrape | None) -> None:
    """The growth across a run of scrapes each continuing the one before: one difference."""
    if first is None or last is None or last is first:
        return
    total = totals.get
    base = first.values.get
    for key, value in last.values.items():
        totals[key] = total(key, 0.0) + (value - base(key, 0.0))


def add_series(parts: Iterable[Mapping[SeriesKey, float]]) -> dict[SeriesKey, float]:
    """Sum series across pods (exact: every replica bins against the same edges)."""
    total: dict[SeriesKey, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _by(
    series: Mapping[SeriesKey, float],
    name: str,
    label: str,
    where: tuple[str, str] | None = None,
) -> dict[str, float]:
    """Sums of ``name`` by one label; ``where`` = (label, value) keeps only those series."""
    out: dict[str, float] = {}
    for (metric, labels), value in series.items():
        if metric == name:
            label_map = dict(labels)
            if where is not None and label_map.get(where[0], "") != where[1]:
                continue
            key = label_map.get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def _nested(
    series: Mapping[SeriesKey, float], name: str, outer: str, inner: str
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (metric, labels), value in series.items():
        if metric == name:
            label_map = dict(labels)
            slot = out.setdefault(label_map.get(outer, ""), {})
            key = label_map.get(inner, "")
            slot[key] = slot.get(key, 0.0) + value
    return out


def _not_compared(series: Mapping[SeriesKey, float]) -> dict[str, dict[str, float]]:
    """Per target revision, the copies of each :data:`NOT_COMPARED` outcome and those
    :data:`DROPPED` (none: left out)."""
    sent = _nested(series, total(names.SHADOW_REQUESTS), "target_revision", "outcome")
    for target, dropped in _by(series, total(names.SHADOW_DROPPED), "target_revision").items():
        sent.setdefault(target, {})[DROPPED] = dropped
    out = {
        target: {why: n for why, n in outcomes.items() if why in WHY_NOT_COMPARED and n > 0}
        for target, outcomes in sent.items()
    }
    return {target: outcomes for target, outcomes in out.items() if outcomes}


def _total(series: Mapping[SeriesKey, float], name: str) -> float:
    return sum(value for (metric, _), value in series.items() if metric == name)


def _le_value(text: str) -> float:
    return math.inf if text in {"+Inf", "inf", "Inf"} else float(text)


@dataclass(frozen=True)
class RealizedPerformance:
    """What the labels that arrived in the window say about one revision's predictions.

    A window of label *arrival*: a label counts when it arrives, against the
    revision that served its prediction. Figures that cannot be computed
    (no scored label; accuracy of a regressor) are None. Shares are at most 1: Prometheus
    extrapolates each counter apart, and correct may pass scored."""

    #: Labels (prediction rows) by outcome: joined, duplicate, no_prediction, expired,
    #: lost, unknown, unreachable, invalid (docs/design/ground-truth.md).
    labels_by_outcome: Mapping[str, float] = field(default_factory=dict)
    #: Scored labels and the correct ones by true class ("" for a regressor).
    scored_by_class: Mapping[str, float] = field(default_factory=dict)
    correct_by_class: Mapping[str, float] = field(default_factory=dict)
    absolute_error_sum: float = 0.0
    squared_error_sum: float = 0.0
    #: (upper bound in seconds, cumulative count) pairs of the label delay, ending with +Inf.
    delay_buckets: tuple[tuple[float, float], ...] = ()

    def outcome(self, name: str) -> float:
        return self.labels_by_outcome.get(name, 0.0)

    @property
    def labels(self) -> float:
        """Labels joined to their prediction in the window."""
        return self.outcome("joined")

    @property
    def scored(self) -> float:
        return sum(self.scored_by_class.values())

    @property
    def classification(self) -> bool:
        return any(label != "" for label in self.scored_by_class)

    @property
    def accuracy(self) -> float | None:
        if not self.classification or self.scored <= 0:
            return None
        return min(1.0, sum(self.correct_by_class.values()) / self.scored)

    @property
    def recall(self) -> dict[str, float]:
        """Per true class: the share of its labels the revision predicted right."""
        if not self.classification:
            return {}
        return {
            label: min(1.0, self.correct_by_class.get(label, 0.0) / scored)
            for label, scored in sorted(self.scored_by_class.items())
            if scored > 0
        }

    @property
    def mae(self) -> float | None:
        scored = self.scored_by_class.get("", 0.0)
        return self.absolute_error_sum / scored if scored > 0 and not self.classification else None

    @property
    def rmse(self) -> float | None:
        scored = self.scored_by_class.get("", 0.0)
        if scored <= 0 or self.classification:
            return None
        return math.sqrt(max(0.0, self.squared_error_sum / scored))

    def delay_quantile(self, q: float) -> float | None:
        """Seconds from prediction to label (linear inside a bucket, as Prometheus does)."""
        return quantile_from_buckets(q, self.delay_buckets)

    @classmethod
    def from_series(cls, series: Mapping[SeriesKey, float]) -> RealizedPerformance:
        delay = _by(series, bucket(names.FEEDBACK_LABEL_DELAY), "le")
        return cls(
            labels_by_outcome=_by(series, total(names.FEEDBACK_LABELS), "outcome"),
            scored_by_class=_by(series, total(names.FEEDBACK_SCORED), "class"),
            correct_by_class=_by(series, total(names.FEEDBACK_CORRECT), "class"),
            absolute_error_sum=_total(series, total(names.FEEDBACK_ABSOLUTE_ERROR)),
            squared_error_sum=_total(series, total(names.FEEDBACK_SQUARED_ERROR)),
            delay_buckets=tuple(sorted((_le_value(le), n) for le, n in delay.items())),
        )


@dataclass(frozen=True)
class RevisionWindow:
    """One revision's figures over the window, summed across its pods."""

    #: Every inference request it answered, live and shadow copies.
    requests_by_outcome: Mapping[str, float] = field(default_factory=dict)
    #: (upper bound, cumulative count) pairs, sorted, ending with +Inf.
    latency_buckets: tuple[tuple[float, float], ...] = ()
    #: The shadow copies among them (sent by another revision's sidecars).
    copies_by_outcome: Mapping[str, float] = field(default_factory=dict)
    copy_latency_buckets: tuple[tuple[float, float], ...] = ()
    input_rows: float = 0.0
    feature_bins: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    feature_categories: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    feature_missing: Mapping[str, float] = field(default_factory=dict)
    feature_out_of_range: Mapping[str, float] = field(default_factory=dict)
    prediction_classes: Mapping[str, float] = field(default_factory=dict)
    prediction_bins: Mapping[str, float] = field(default_factory=dict)
    predictions: float = 0.0
    prediction_sum: float = 0.0
    prediction_squares_sum: float = 0.0
    shadow_predictions: Mapping[str, float] = field(default_factory=dict)
    shadow_agreements: Mapping[str, float] = field(default_factory=dict)
    #: Sum and count of |local - target| over paired numeric predictions.
    shadow_difference_sum: Mapping[str, float] = field(default_factory=dict)
    shadow_differences: Mapping[str, float] = field(default_factory=dict)
    #: Per target revision, the copies sent that could not be compared, by outcome
    #: (:data:`NOT_COMPARED`).
    shadow_not_compared: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    pods: int = 0
    realized: RealizedPerformance = field(default_factory=RealizedPerformance)

    @property
    def requests(self) -> float:
        return sum(self.requests_by_outcome.values())

    @property
    def copies(self) -> float:
        return sum(self.copies_by_outcome.values())

    @property
    def live_by_outcome(self) -> dict[str, float]:
        """The live requests (all but the shadow copies), by outcome."""
        return {
            outcome: max(0.0, count - self.copies_by_outcome.get(outcome, 0.0))
            for outcome, count in self.requests_by_outcome.items()
        }

    @property
    def live_latency_buckets(self) -> tuple[tuple[float, float], ...]:
        copies = dict(self.copy_latency_buckets)
        return tuple((le, max(0.0, n - copies.get(le, 0.0))) for le, n in self.latency_buckets)

    def mean_abs_difference(self, target: str | None = None) -> float | None:
        """Mean |local - target| of the paired numeric predictions this revision compared.

        ``target`` picks one target revision (None: all of them); None when none was compared.
        """
        picked = [target] if target is not None else list(self.shadow_differences)
        count = sum(self.shadow_differences.get(name, 0.0) for name in picked)
        if count <= 0:
            return None
        mean = sum(self.shadow_difference_sum.get(name, 0.0) for name in picked) / count
        return mean if math.isfinite(mean) else None

    @classmethod
    def from_series(cls, series: Mapping[SeriesKey, float], pods: int) -> RevisionWindow:
        buckets = _by(series, bucket(names.REQUEST_DURATION), "le")
        shadow = ("origin", names.ORIGIN_SHADOW)
        copy_buckets = _by(series, bucket(names.REQUEST_DURATION), "le", shadow)
        requests = total(names.REQUESTS)
        if not any(key[0] == requests for key in series):  # sidecars before that family
            requests = total(names.REQUESTS_BY_CODE)
        return cls(
            requests_by_outcome=_by(series, requests, "outcome"),
            latency_buckets=tuple(sorted((_le_value(le), count) for le, count in buckets.items())),
            copies_by_outcome=_by(series, requests, "outcome", shadow),
            copy_latency_buckets=tuple(
                sorted((_le_value(le), count) for le, count in copy_buckets.items())
            ),
            input_rows=_total(series, total(names.INPUT_ROWS)),
            feature_bins=_nested(series, total(names.FEATURE_BIN), "feature", "bin"),
            feature_categories=_nested(
                series, total(names.FEATURE_CATEGORY), "feature", "category"
            ),
            feature_missing=_by(series, total(names.FEATURE_MISSING), "feature"),
            feature_out_of_range=_by(series, total(names.FEATURE_OUT_OF_RANGE), "feature"),
            prediction_classes=_by(series, total(names.PREDICTION_CLASS), "class"),
            prediction_bins=_by(series, total(names.PREDICTION_BIN), "bin"),
            predictions=_total(series, total(names.PREDICTIONS)),
            prediction_sum=_total(series, names.PREDICTION_VALUE_SUM),
            prediction_squares_sum=_total(series, names.PREDICTION_VALUE_SQUARES_SUM),
            shadow_predictions=_by(series, total(names.SHADOW_PREDICTIONS), "target_revision"),
            shadow_agreements=_by(series, total(names.SHADOW_AGREEMENTS), "target_revision"),
            shadow_difference_sum=_by(
                series, sum_of(names.SHADOW_ABS_DIFFERENCE), "target_revision"
            ),
            shadow_differences=_by(
                series, count_of(names.SHADOW_ABS_DIFFERENCE), "target_revision"
            ),
            shadow_not_compared=_not_compared(series),
            pods=pods,
            realized=RealizedPerformance.from_series(series),
        )


def quantile_from_buckets(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative (upper bound, count) pairs.

    Linear interpolation inside the bucket holding the rank; the lowest
    bucket starts at 0; a rank in the +Inf bucket returns the highest finite
    bound. None when there are no observations.
    """
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    ordered = sorted(buckets)
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound
