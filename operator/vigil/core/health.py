"""Judge a revision's health from measured figures: a pure function.

:func:`evaluate` takes what the sidecars counted over the window
(:class:`~vigil.core.window.RevisionWindow`), the training-data reference
and the policy from ``spec.monitoring``, and returns a :class:`HealthReport`:
the figures (rounded, never NaN or Inf) and one verdict, checked in this
order, like a runbook:

1. No figures at all (the source failed)   -> ``MetricsUnavailable``.
2. Fewer requests than ``minRequests``      -> ``InsufficientData`` (never judge on too little).
3. Error rate or p95 latency over the SLO   -> ``Degraded``.
4. A feature's drift at or over threshold   -> ``DriftDetected`` (level ``threshold``).
5. Otherwise                                -> ``Healthy`` (drift may still be at ``warning``).

Definitions (also in docs/health.md):

- error rate = requests whose answer was not 1xx-3xx (model 4xx and 5xx,
  the sidecar's own rejections, an unreachable model server) / all
  inference requests;
- p95 latency = ``histogram_quantile(0.95)`` over the window's bucket
  increases, as Prometheus computes it;
- drift per feature = the configured method (PSI or Jensen-Shannon
  distance) between the reference's bin proportions and the live counts in
  the same bins; overall drift = the largest per-feature score, so the
  overall verdict never hides one drifting feature behind many stable ones;
- missing rate per feature = missing values / input rows, flagged when it
  exceeds the reference's null rate by more than
  :data:`MISSING_RATE_TOLERANCE`; out-of-range rate = values outside the
  reference's range or set / input rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vigil.core import drift

# The spec's thresholds are read by vigil.core.spec; MonitoringSettings and
# monitoring_settings are re-exported until the reconcile imports them there.
from vigil.core.spec import (  # noqa: F401
    SOURCE_DIRECT,
    SOURCE_PROMETHEUS,
    HealthPolicy,
    MonitoringSettings,
    monitoring_settings,
)
from vigil.core.status import ConditionState
from vigil.core.vocabulary import ConditionType, Reason, Verdict
from vigil.core.window import RevisionWindow, quantile_from_buckets
from vigil.profile import OTHER, FeatureProfile, ReferenceProfile

DriftLevel = Literal["none", "warning", "threshold", "unknown"]

#: A feature's live missing rate may exceed its reference null rate by this much.
MISSING_RATE_TOLERANCE = 0.05
#: Input rows a feature needs in the window before its drift is judged. PSI's
#: bias under no drift is about (bins - 1) / rows: 0.05 for 12 slots at 200
#: rows, well under the usual 0.1 warning; with fewer rows, noise alone would
#: raise DriftDetected.
MIN_ROWS_FOR_DRIFT = 200


@dataclass(frozen=True)
class HealthReport:
    """The verdict and the figures behind it, ready for status (rounded, finite)."""

    verdict: Verdict
    requests: int
    error_rate: float | None = None
    latency_p95: float | None = None
    prediction_mean: float | None = None
    prediction_std: float | None = None
    drift_method: str = "psi"
    drift_score: float | None = None
    drift_level: DriftLevel = "unknown"
    drift_features: Mapping[str, float] = field(default_factory=dict)
    missing_rates: Mapping[str, float] = field(default_factory=dict)
    missing_over_reference: tuple[str, ...] = ()
    out_of_range_rate: float | None = None
    agreement: float | None = None
    #: Mean |stable - candidate| of the paired numeric predictions (regression, shadow).
    mean_abs_difference: float | None = None
    reason: str = ""
    message: str = ""
    #: Why drift was not judged (no reference, too few rows), when it was not.
    drift_note: str = ""


def _finite(value: float | None, digits: int) -> float | None:
    """Round for status; NaN and Inf never reach it."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def format_window(seconds: float) -> str:
    """300 -> '5m', 90 -> '90s', 3600 -> '1h' (as the user wrote it, roughly)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def format_percent(value: float) -> str:
    return f"{value * 100:.1f}%" if value >= 0.001 or value == 0 else f"{value * 100:.2f}%"


def format_seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"


def _error_rate(window: RevisionWindow) -> float | None:
    total = window.requests
    if total <= 0:
        return None
    errors = total - window.requests_by_outcome.get("success", 0.0)
    return max(0.0, errors) / total


def _prediction_moments(window: RevisionWindow) -> tuple[float | None, float | None]:
    if window.predictions <= 0:
        return None, None
    mean = window.prediction_sum / window.predictions
    variance = window.prediction_squares_sum / window.predictions - mean * mean
    if not (math.isfinite(mean) and math.isfinite(variance)):
        return None, None
    # Rounding can make a tiny variance negative.
    return mean, math.sqrt(max(0.0, variance))


def _live_counts(feature: FeatureProfile, window: RevisionWindow) -> list[float] | None:
    """Live counts in the reference's slots for one feature (None if none seen)."""
    if feature.type == "categorical":
        seen = window.feature_categories.get(feature.name, {})
        labels = [*(feature.categories or ()), OTHER]
        counts = [seen.get(label, 0.0) for label in labels]
    else:
        seen = window.feature_bins.get(feature.name, {})
        counts = [seen.get(str(slot), 0.0) for slot in range(len(feature.proportions))]
    if sum(counts) < MIN_ROWS_FOR_DRIFT:
        return None
    return counts


def feature_drift(
    reference: ReferenceProfile, window: RevisionWindow, method: drift.DriftMethod
) -> dict[str, float]:
    """Drift score per reference feature that has live counts in the window."""
    scores: dict[str, float] = {}
    for feature in reference.features:
        counts = _live_counts(feature, window)
        if counts is None or len(counts) != len(feature.proportions):
            continue
        score = drift.drift_score(method, feature.proportions, counts)
        if math.isfinite(score):
            scores[feature.name] = score
    return scores


def _drift_level(score: float | None, policy: HealthPolicy) -> DriftLevel:
    if score is None:
        return "unknown"
    if score >= policy.drift_threshold:
        return "threshold"
    if score >= policy.drift_warning:
        return "warning"
    return "none"


def _agreement(window: RevisionWindow) -> float | None:
    predictions = sum(window.shadow_predictions.values())
    if predictions <= 0:
        return None
    return sum(window.shadow_agreements.values()) / predictions


def evaluate(
    window: RevisionWindow | None,
    reference: ReferenceProfile | None,
    policy: HealthPolicy,
    source_error: str | None = None,
) -> HealthReport:
    """The verdict on one revision over one window (see the module docstring)."""
    span = format_window(policy.window_seconds)
    # 1. No figures: say why, judge nothing.
    if window is None:
        return HealthReport(
            verdict=Verdict.METRICS_UNAVAILABLE,
            requests=0,
            drift_method=policy.drift_method,
            reason=Reason.METRICS_UNAVAILABLE,
            message=source_error or "no metrics from the sidecars",
        )

    requests = round(window.requests)
    error_rate = _error_rate(window)
    p95 = quantile_from_buckets(0.95, window.latency_buckets)
    mean, std = _prediction_moments(window)
    scores = feature_drift(reference, window, policy.drift_method) if reference else {}
    overall = max(scores.values()) if scores else None
    level = _drift_level(overall, policy)
    rows = window.input_rows
    missing_rates = (
        {name: count / rows for name, count in window.feature_missing.items()} if rows > 0 else {}
    )
    missing_over = tuple(
        sorted(
            f.name
            for f in (reference.features if reference else ())
            if missing_rates.get(f.name, 0.0) > f.null_rate + MISSING_RATE_TOLERANCE
        )
    )
    out_of_range = sum(window.feature_out_of_range.values()) / rows if rows > 0 else None
    figures = HealthReport(
        verdict=Verdict.HEALTHY,
        requests=requests,
        error_rate=_finite(error_rate, 4),
        latency_p95=_finite(p95, 4),
        prediction_mean=_finite(mean, 4),
        prediction_std=_finite(std, 4),
        drift_method=policy.drift_method,
        drift_score=_finite(overall, 3),
        drift_level=level,
        drift_features=_finite_values(scores, 3),
        missing_rates=_finite_values(missing_rates, 4),
        missing_over_reference=missing_over,
        out_of_range_rate=_finite(out_of_range, 4),
        agreement=_finite(_agreement(window), 4),
        mean_abs_difference=(
            _finite(window.mean_abs_difference(), 4)
            if reference is None or reference.task == "regression"
            else None
        ),
        drift_note=(
            "no reference profile: drift is not measured"
            if reference is None
            else f"{round(rows)} input rows < {MIN_ROWS_FOR_DRIFT} needed to judge drift"
            if not scores
            else ""
        ),
    )

    # 2. Too few requests: hold judgement.
    if requests < policy.min_requests:
        return replace(
            figures,
            verdict=Verdict.INSUFFICIENT_DATA,
            reason=Reason.INSUFFICIENT_DATA,
            message=f"{requests} requests < {policy.min_requests} needed over {span}",
        )

    # 3. SLOs: errors first, then latency.
    breaches = []
    if error_rate is not None and error_rate > policy.max_error_rate:
        breaches.append(
            (
                Reason.ERROR_RATE_HIGH,
                f"error rate {format_percent(error_rate)} > "
                f"{format_percent(policy.max_error_rate)} over {span}",
            )
        )
    if p95 is not None and p95 > policy.max_latency_p95:
        breaches.append(
            (
                Reason.LATENCY_HIGH,
                f"p95 latency {format_seconds(p95)} > "
                f"{format_seconds(policy.max_latency_p95)} over {span}",
            )
        )
    if breaches:
        return replace(
            figures,
            verdict=Verdict.DEGRADED,
            reason=breaches[0][0],
            message="; ".join(text for _, text in breaches) + f" ({requests} requests)",
        )

    # 4. Drift at threshold: name the features that crossed it, worst first.
    if level == "threshold" and overall is not None:
        return replace(
            figures,
            verdict=Verdict.DRIFT_DETECTED,
            reason=Reason.DRIFT_ABOVE_THRESHOLD,
            message=_over_threshold(policy.drift_method, overall, scores, policy),
        )

    # 5. Healthy: the SLO figures beside their thresholds.
    parts = []
    if error_rate is not None:
        parts.append(
            f"error rate {format_percent(error_rate)} <= {format_percent(policy.max_error_rate)}"
        )
    if p95 is not None:
        parts.append(f"p95 {format_seconds(p95)} <= {format_seconds(policy.max_latency_p95)}")
    return replace(
        figures,
        reason=Reason.SLOS_MET,
        message=", ".join(parts) + f" over {span} ({requests} requests)",
    )


def _finite_values(values: Mapping[str, float], digits: int) -> dict[str, float]:
    rounded = {name: _finite(value, digits) for name, value in values.items()}
    return {name: value for name, value in rounded.items() if value is not None}


def _over_threshold(
    method: str, score: float, scores: Mapping[str, float], policy: HealthPolicy
) -> str:
    """'psi 0.31 >= 0.2 over 5m: alcohol 0.31, proline 0.24' (DriftAboveThreshold)."""
    return (
        f"{method} {score:.2f} >= {policy.drift_threshold:g} "
        f"over {format_window(policy.window_seconds)}: "
        f"{_list_features(scores, policy.drift_threshold)}"
    )


def _list_features(scores: Mapping[str, float], at_least: float) -> str:
    """'alcohol 0.35, proline 0.28': the features at or over a level, worst first."""
    listed = sorted(((n, v) for n, v in scores.items() if v >= at_least), key=lambda i: -i[1])
    return ", ".join(f"{name} {score:.2f}" for name, score in listed)


# -- status ------------------------------------------------------------------------

CONDITION_HEALTHY = ConditionType.HEALTHY
CONDITION_DRIFT = ConditionType.DRIFT_DETECTED
CONDITION_METRICS = ConditionType.METRICS_AVAILABLE


def health_conditions(report: HealthReport, policy: HealthPolicy) -> list[ConditionState]:
    """Healthy, DriftDetected and MetricsAvailable for a fresh report.

    For ``MetricsUnavailable`` only MetricsAvailable is returned: the other
    two keep their last value, since missing data changes no verdict.
    """
    if report.verdict == Verdict.METRICS_UNAVAILABLE:
        return [
            ConditionState(CONDITION_METRICS, False, Reason.METRICS_UNAVAILABLE, report.message)
        ]
    metrics = ConditionState(
        CONDITION_METRICS,
        True,
        Reason.METRICS_COLLECTED,
        f"{report.requests} requests over {format_window(policy.window_seconds)}",
    )
    if report.verdict == Verdict.INSUFFICIENT_DATA:
        healthy = ConditionState(CONDITION_HEALTHY, None, Reason.INSUFFICIENT_DATA, report.message)
        drift_state = ConditionState(
            CONDITION_DRIFT, None, Reason.INSUFFICIENT_DATA, report.message
        )
        return [healthy, drift_state, metrics]
    if report.verdict == Verdict.DEGRADED:
        healthy = ConditionState(CONDITION_HEALTHY, False, report.reason, report.message)
    else:
        healthy = ConditionState(
            CONDITION_HEALTHY,
            True,
            Reason.SLOS_MET,
            report.message if report.verdict == Verdict.HEALTHY else _slo_summary(report, policy),
        )
    return [healthy, _drift_condition(report, policy), metrics]


def _slo_summary(report: HealthReport, policy: HealthPolicy) -> str:
    parts = []
    if report.error_rate is not None:
        parts.append(
            f"error rate {format_percent(report.error_rate)} <= "
            f"{format_percent(policy.max_error_rate)}"
        )
    if report.latency_p95 is not None:
        parts.append(
            f"p95 {format_seconds(report.latency_p95)} <= {format_seconds(policy.max_latency_p95)}"
        )
    return ", ".join(parts) + f" over {format_window(policy.window_seconds)}"


def _data_quality(report: HealthReport) -> str:
    """'; missing values over reference: alcohol 12.0%': the other data-science flags."""
    notes = []
    if report.missing_over_reference:
        listed = ", ".join(
            f"{name} {format_percent(report.missing_rates.get(name, 0.0))}"
            for name in report.missing_over_reference
        )
        notes.append(f"missing values over reference: {listed}")
    if report.out_of_range_rate:
        notes.append(f"out of reference range: {format_percent(report.out_of_range_rate)}")
    return "".join(f"; {note}" for note in notes)


def _drift_condition(report: HealthReport, policy: HealthPolicy) -> ConditionState:
    state = _drift_state(report, policy)
    return replace(state, message=state.message + _data_quality(report))


def _drift_state(report: HealthReport, policy: HealthPolicy) -> ConditionState:
    method = report.drift_method
    span = format_window(policy.window_seconds)
    if report.drift_level == "unknown" or report.drift_score is None:
        reason = (
            Reason.NO_REFERENCE
            if report.drift_note.startswith("no reference")
            else (Reason.INSUFFICIENT_DATA)
        )
        return ConditionState(
            CONDITION_DRIFT, None, reason, report.drift_note or "drift is not measured"
        )
    features = dict(report.drift_features)
    if report.drift_level == "threshold":
        return ConditionState(
            CONDITION_DRIFT,
            True,
            Reason.DRIFT_ABOVE_THRESHOLD,
            _over_threshold(method, report.drift_score, features, policy),
        )
    if report.drift_level == "warning":
        return ConditionState(
            CONDITION_DRIFT,
            False,
            Reason.DRIFT_WARNING,
            f"{method} {report.drift_score:.2f} >= warning {policy.drift_warning:g} "
            f"(threshold {policy.drift_threshold:g}) over {span}: "
            f"{_list_features(features, policy.drift_warning)}",
        )
    return ConditionState(
        CONDITION_DRIFT,
        False,
        Reason.NO_DRIFT,
        f"{method} {report.drift_score:.2f} < warning {policy.drift_warning:g} "
        f"on every feature over {span}",
    )


def health_status(report: HealthReport, policy: HealthPolicy, evaluated_at: str) -> dict[str, Any]:
    """``status.health`` as api.md shows it (no None values, nothing non-finite)."""
    health: dict[str, Any] = {
        "evaluatedAt": evaluated_at,
        "window": format_window(policy.window_seconds),
        "verdict": report.verdict,
        "requests": report.requests,
        "errorRate": report.error_rate,
        "latencyP95": report.latency_p95,
        "prediction": {
            k: v
            for k, v in (("mean", report.prediction_mean), ("std", report.prediction_std))
            if v is not None
        }
        or None,
        "drift": {
            "method": report.drift_method,
            "level": report.drift_level,
            "score": report.drift_score,
            "features": dict(report.drift_features) or None,
        },
        "missing": dict(report.missing_rates) or None,
        "outOfRangeRate": report.out_of_range_rate,
        "agreement": report.agreement,
        "meanAbsoluteDifference": report.mean_abs_difference,
    }
    health["drift"] = {k: v for k, v in health["drift"].items() if v is not None}
    return {k: v for k, v in health.items() if v is not None}


# -- what the loop writes ------------------------------------------------------------

#: Keys of status.health that do not make a new figure on their own.
_VOLATILE_KEYS = ("evaluatedAt",)


def same_figures(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether two ``status.health`` values differ only in when they were computed."""
    if not isinstance(previous, Mapping):
        return False
    strip = set(_VOLATILE_KEYS)
    return {k: v for k, v in previous.items() if k not in strip} == {
        k: v for k, v in new.items() if k not in strip
    }


def next_health(
    previous: Mapping[str, Any] | None,
    report: HealthReport,
    policy: HealthPolicy,
    evaluated_at: str,
) -> dict[str, Any]:
    """The ``status.health`` to write after an evaluation.

    - The source failed (``MetricsUnavailable``): the last figures stay,
      marked ``stale: true`` (their ``evaluatedAt`` says how old they are);
      with no figures yet, the verdict alone.
    - Otherwise the fresh figures; when they equal the last ones after
      rounding, the last ``evaluatedAt`` is kept so that nothing is written.
    """
    if report.verdict == Verdict.METRICS_UNAVAILABLE:
        if isinstance(previous, Mapping) and previous.get("evaluatedAt"):
            if previous.get("verdict") == Verdict.METRICS_UNAVAILABLE:
                return dict(previous)  # never had figures: nothing to mark stale
            kept = dict(previous)
            kept["stale"] = True
            return kept
        return {
            "evaluatedAt": evaluated_at,
            "window": format_window(policy.window_seconds),
            "verdict": Verdict.METRICS_UNAVAILABLE,
            "requests": 0,
        }
    fresh = health_status(report, policy, evaluated_at)
    if isinstance(previous, Mapping) and same_figures(previous, fresh):
        fresh["evaluatedAt"] = previous["evaluatedAt"]
    return fresh


def condition_word(value: bool | None) -> str:
    if value is None:
        return "Unknown"
    return "True" if value else "False"


#: The status of each health condition that calls for attention.
_BAD = {CONDITION_HEALTHY: "False", CONDITION_DRIFT: "True", CONDITION_METRICS: "False"}


def transitions(
    previous: Sequence[Mapping[str, Any]] | None, wanted: Sequence[ConditionState]
) -> list[tuple[ConditionState, bool]]:
    """Conditions whose status changes (each with whether it calls for attention).

    A condition appearing for the first time as Unknown is not a transition.
    """
    before = {str(item.get("type")): item.get("status") for item in previous or ()}
    changed = []
    for state in wanted:
        word = condition_word(state.status)
        old = before.get(state.type)
        if old == word or (old is None and word == "Unknown"):
            continue
        changed.append((state, _BAD.get(state.type) == word))
    return changed
