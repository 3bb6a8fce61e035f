"""Realized performance judged: the ``PerformanceDegraded`` condition from one window of labels.

Pure. The labels that arrived in ``spec.monitoring.performance.window``
(:class:`~vigil.core.window.RealizedPerformance`) give accuracy (a
classifier) or MAE (a regressor). The threshold is the strictest of the
absolute limit (``minAccuracy`` / ``maxMAE``) and the baseline (the reference
profile's validation score) worsened by ``maxDrop``, a share of it. Like a
runbook:

1. Fewer than ``minLabels`` scored labels -> Unknown, ``InsufficientLabels``.
2. No threshold (no limit set, no baseline) -> False, ``NoPerformanceThreshold``.
3. The whole 95 % interval beyond the threshold, or, after a True, not yet
   wholly back within it -> True, ``PerformanceBelowThreshold``.
4. Otherwise -> False, ``PerformanceMet``.

Judging on the interval, not the point estimate, keeps a sliding window of
a few hundred labels from flapping the condition on noise: accuracy has a
Wilson interval; MAE a normal one, its variance from the sums of absolute
and squared errors the sidecars count. A model truly near its threshold
would still flip at each window whose interval just clears it: a True holds
until the interval lies wholly on the good side, as a breached SLO does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from vigil.common import readable
from vigil.core.slo import interval_text
from vigil.core.spec import PerformanceSpec
from vigil.core.stats import normal_quantile, wilson
from vigil.core.status import ConditionState
from vigil.core.vocabulary import ConditionType, Reason
from vigil.core.window import RealizedPerformance
from vigil.profile import Validation

#: Two-sided confidence of the interval judged against the threshold.
CONFIDENCE = 0.95
#: Labels' worth of the limit an MAE's spread is at least (see :func:`measure`).
PRIOR_LABELS = 4.0
#: Per-class recall goes to status only up to this many classes (the rest: metrics).
MAX_CLASSES_IN_STATUS = 20
#: Outcomes of labels that were not joined, as status names them.
OTHER_OUTCOMES = (
    "duplicate",
    "unknown",
    "expired",
    "lost",
    "no_prediction",
    "unreachable",
    "invalid",
)

Metric = Literal["accuracy", "mae"]


@dataclass(frozen=True)
class Measured:
    """One window's realized figure and its interval."""

    metric: Metric
    value: float
    low: float
    high: float
    labels: int

    def worse_than(self, threshold: float) -> bool:
        """The whole interval is on the wrong side of the threshold."""
        return self.high < threshold if self.metric == "accuracy" else self.low > threshold

    def better_than(self, threshold: float) -> bool:
        """The whole interval is on the good side of the threshold (or on it)."""
        return self.low >= threshold if self.metric == "accuracy" else self.high <= threshold

    def still_worse(self, threshold: float) -> bool:
        """After a True: not yet wholly on the good side. Where no window of these labels
        could be (a perfect one's interval reaches past the threshold), the estimate on
        the good side is the best it can show, and clears it."""
        if self.better_than(threshold):
            return False
        if (
            self.metric == "accuracy"
            and wilson(self.labels, self.labels, CONFIDENCE)[0] < threshold
        ):
            return self.value < threshold
        return True

    def describe(self, threshold: float | None = None) -> str:
        """'accuracy 0.874 (95% CI 0.838-0.905)'; an interval end that is not ``threshold``
        gets more digits while it reads as it (an interval wholly under 0.9 never reads
        "0.850-0.900")."""
        name = "accuracy" if self.metric == "accuracy" else "MAE"
        interval = (
            f"{_figure(self.low)}-{_figure(self.high)}"
            if threshold is None
            else interval_text(_figure, self.low, self.high, threshold)
        )
        return f"{name} {_figure(self.value)} ({CONFIDENCE:.0%} CI {interval})"


def _figure(value: float, more: int = 0) -> str:
    """Three decimals; under 0.01 three significant digits (0.000 said nothing of an MAE
    of 2.4e-07 held to a threshold of 2.5e-07); ``more``: that many more."""
    if value == 0 or abs(value) >= 0.01 or not math.isfinite(value):
        return f"{value:.{3 + more}f}"
    return f"{value:.{3 + more}g}"


def measure(realized: RealizedPerformance, limit: float | None = None) -> Measured | None:
    """Accuracy (classifier) or MAE (regressor) with its interval; None without scored labels.
    An MAE's spread is at least :data:`PRIOR_LABELS` labels' worth of ``limit``² (a few
    labels with one error each show a spread of 0: one label over the limit was a breach)."""
    scored = realized.scored
    if scored <= 0:
        return None
    if realized.classification:
        # Prometheus extrapolates each counter of a window on its own: correct may pass scored.
        correct = min(sum(realized.correct_by_class.values()), scored)
        low, high = wilson(correct, scored, CONFIDENCE)
        return Measured("accuracy", correct / scored, low, high, round(scored))
    mae = realized.absolute_error_sum / scored
    variance = max(0.0, realized.squared_error_sum / scored - mae * mae)
    if limit is not None:
        variance = max(variance, PRIOR_LABELS * limit * limit / (scored + PRIOR_LABELS))
    radius = normal_quantile(0.5 + CONFIDENCE / 2) * math.sqrt(variance / scored)
    if not math.isfinite(mae + radius):
        return None
    return Measured("mae", mae, max(0.0, mae - radius), mae + radius, round(scored))


def baseline_for(metric: Metric, validation: Validation | None) -> float | None:
    """The profile's validation score in this metric (None: no baseline, or another task)."""
    if validation is None:
        return None
    return validation.accuracy if metric == "accuracy" else validation.mae


def threshold(metric: Metric, policy: PerformanceSpec, baseline: float | None) -> float | None:
    """The strictest of the absolute limit and the baseline worsened by ``maxDrop``."""
    if metric == "accuracy":
        limits = [policy.min_accuracy] if policy.min_accuracy is not None else []
        if baseline is not None:
            limits.append(baseline * (1.0 - policy.max_drop))
        return max(limits) if limits else None
    limits = [policy.max_mae] if policy.max_mae is not None else []
    if baseline is not None:
        limits.append(baseline * (1.0 + policy.max_drop))
    return min(limits) if limits else None


@dataclass(frozen=True)
class PerformanceReport:
    """The condition and the figures of one window (``status.health.performance``)."""

    condition: ConditionState
    measured: Measured | None = None
    baseline: float | None = None
    threshold: float | None = None
    #: Figures for status, rounded (no None values).
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def degraded(self) -> bool | None:
        return self.condition.status


def _limits_text(
    limit: float, baseline: float | None, validation: Validation | None, max_drop: float
) -> str:
    """'threshold 0.884 (baseline 0.930 holdout, maxDrop 5%)'."""
    if baseline is None or validation is None:
        return f"threshold {limit:.4g}"
    return (
        f"threshold {limit:.4g} (baseline {baseline:.4g} {validation.method}, "
        f"maxDrop {readable.percent(max_drop)})"
    )


def _report(
    degraded: bool | None,
    reason: Reason,
    message: str,
    measured: Measured | None,
    figures: dict[str, Any],
    baseline: float | None = None,
    limit: float | None = None,
) -> PerformanceReport:
    condition = ConditionState(ConditionType.PERFORMANCE_DEGRADED, degraded, reason, message)
    return PerformanceReport(condition, measured, baseline, limit, figures)


def judge(
    realized: RealizedPerformance,
    policy: PerformanceSpec,
    validation: Validation | None,
    span: str,
    *,
    held: bool = False,
) -> PerformanceReport:
    """PerformanceDegraded over one window (see the module docstring for the runbook);
    ``held``: the last verdict on this revision was True."""
    measured = measure(realized)
    figures = status_figures(realized, span)
    if measured is None or measured.labels < policy.min_labels:
        have = 0 if measured is None else measured.labels
        message = f"{have} labels < {policy.min_labels} needed over {span}"
        return _report(None, Reason.INSUFFICIENT_LABELS, message, measured, figures)
    baseline = baseline_for(measured.metric, validation)
    limit = threshold(measured.metric, policy, baseline)
    if baseline is not None:
        figures["baseline"] = round(baseline, 4)
    if limit is None:
        setting = "minAccuracy" if measured.metric == "accuracy" else "maxMAE"
        message = (
            f"{measured.describe()} over {span}, {measured.labels} labels; no threshold: "
            f"set spec.monitoring.performance.{setting}, or build the reference profile "
            "with --label-column for a baseline"
        )
        return _report(False, Reason.NO_PERFORMANCE_THRESHOLD, message, measured, figures)
    figures["threshold"] = round(limit, 4)
    if measured.metric == "mae":
        measured = measure(realized, limit) or measured
    limits = _limits_text(limit, baseline, validation, policy.max_drop)
    tail = f"{limits} over {span}, {measured.labels} labels"
    good = ">=" if measured.metric == "accuracy" else "<="
    if measured.worse_than(limit) or (held and measured.still_worse(limit)):
        word = "<" if measured.metric == "accuracy" else ">"
        if not measured.worse_than(limit):
            word, tail = f"not surely {good}", f"{tail}, held until it is"
        message = f"{measured.describe(limit)} {word} {tail}"
        return _report(
            True, Reason.PERFORMANCE_BELOW_THRESHOLD, message, measured, figures, baseline, limit
        )
    within = measured.value >= limit if measured.metric == "accuracy" else measured.value <= limit
    word = good if within else "not surely beyond"
    message = f"{measured.describe(limit)} {word} {tail}"
    return _report(False, Reason.PERFORMANCE_MET, message, measured, figures, baseline, limit)


def _rounded(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def status_figures(realized: RealizedPerformance, span: str) -> dict[str, Any]:
    """``status.health.performance`` without the verdict's baseline and threshold."""
    recall = realized.recall
    outcomes = {
        name: round(realized.outcome(name)) for name in OTHER_OUTCOMES if realized.outcome(name)
    }
    joined, scored = round(realized.labels), round(realized.scored)
    figures: dict[str, Any] = {
        "window": span,
        "labels": joined,
        # What minLabels counts, said where it differs (joined labels of an unknown task,
        # counters read at different times).
        "scored": scored if scored != joined else None,
        "accuracy": _rounded(realized.accuracy, 4),
        "mae": _rounded(realized.mae, 4),
        "rmse": _rounded(realized.rmse, 4),
        "recall": (
            {name: round(value, 4) for name, value in recall.items()}
            if recall and len(recall) <= MAX_CLASSES_IN_STATUS
            else None
        ),
        "labelDelayP50": _rounded(realized.delay_quantile(0.5), 1),
        "labelDelayP95": _rounded(realized.delay_quantile(0.95), 1),
        "notJoined": outcomes or None,
    }
    return {key: value for key, value in figures.items() if value is not None}


def readable_figures(figures: dict[str, Any]) -> dict[str, str]:
    """The printer columns' text: realized accuracy in percent, or the MAE."""
    out: dict[str, str] = {}
    if "accuracy" in figures:
        out["realized"] = readable.percent(figures["accuracy"])
    elif "mae" in figures:
        out["realized"] = f"MAE {figures['mae']:.4g}"
    if "labelDelayP95" in figures:
        out["labelDelayP95"] = readable.duration(figures["labelDelayP95"])
    return out
