"""What a revision's pods did over a window, from the sidecars' counters.

Both metrics sources end here. The ``direct`` source scrapes every pod,
keeps recent scrapes per pod and computes each series' increase over the
window (:func:`pod_increase`), then adds the pods of a revision up
(:func:`add_series`); the ``prometheus`` source gets the same per-revision
increases from PromQL (``sum by (...) (increase(...))``). Either way the
result is a mapping of :data:`SeriesKey` to a number, which
:meth:`RevisionWindow.from_series` turns into named figures.

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
    total(names.REQUESTS): ("outcome",),
    bucket(names.REQUEST_DURATION): ("le",),
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
    total(names.SHADOW_PREDICTIONS): ("target_revision",),
    total(names.SHADOW_AGREEMENTS): ("target_revision",),
    sum_of(names.SHADOW_ABS_DIFFERENCE): ("target_revision",),
    count_of(names.SHADOW_ABS_DIFFERENCE): ("target_revision",),
}

#: Only inference requests count towards health (not probes, not /metadata).
FAMILY_FILTERS: Mapping[str, Mapping[str, str]] = {
    total(names.REQUESTS): {"endpoint": "infer"},
    bucket(names.REQUEST_DURATION): {"endpoint": "infer"},
}

#: Running sums that may go down (negative predictions): only a process
#: restart resets them, never a decrease.
GAUGE_SUMS = frozenset({names.PREDICTION_VALUE_SUM, names.PREDICTION_VALUE_SQUARES_SUM})

START_TIME_METRIC = names.SIDECAR_START_TIME


def series_key(name: str, labels: Mapping[str, str]) -> SeriesKey | None:
    """The kept key of a sample, or None when the health evaluation does not read it."""
    kept = FAMILY_LABELS.get(name)
    if kept is None:
        return None
    for label, value in FAMILY_FILTERS.get(name, {}).items():
        if labels.get(label) != value:
            return None
    return name, tuple((label, labels.get(label, "")) for label in kept)


@dataclass(frozen=True)
class Scrape:
    """One scrape of one pod's sidecar: when, since when the process runs, what it said."""

    at: float
    started_at: float | None
    values: Mapping[SeriesKey, float]


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
    Prometheus' ``increase`` does.
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
    previous = baseline
    for scrape in rest:
        reset = previous is None or _restarted(previous, scrape)
        for key, value in scrape.values.items():
            if reset:
                growth = value
            else:
                assert previous is not None
                old = previous.values.get(key, 0.0)
                if key[0] in GAUGE_SUMS:
                    growth = value - old
                else:
                    growth = value - old if value >= old else value
            totals[key] = totals.get(key, 0.0) + growth
        previous = scrape
    return totals


def add_series(parts: Iterable[Mapping[SeriesKey, float]]) -> dict[SeriesKey, float]:
    """Sum series across pods (exact: every replica bins against the same edges)."""
    total: dict[SeriesKey, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _by(series: Mapping[SeriesKey, float], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (metric, labels), value in series.items():
        if metric == name:
            key = dict(labels).get(label, "")
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


def _total(series: Mapping[SeriesKey, float], name: str) -> float:
    return sum(value for (metric, _), value in series.items() if metric == name)


def _le_value(text: str) -> float:
    return math.inf if text in {"+Inf", "inf", "Inf"} else float(text)


@dataclass(frozen=True)
class RevisionWindow:
    """One revision's figures over the window, summed across its pods."""

    requests_by_outcome: Mapping[str, float] = field(default_factory=dict)
    #: (upper bound, cumulative count) pairs, sorted, ending with +Inf.
    latency_buckets: tuple[tuple[float, float], ...] = ()
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
    pods: int = 0

    @property
    def requests(self) -> float:
        return sum(self.requests_by_outcome.values())

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
        return cls(
            requests_by_outcome=_by(series, total(names.REQUESTS), "outcome"),
            latency_buckets=tuple(sorted((_le_value(le), count) for le, count in buckets.items())),
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
            pods=pods,
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
