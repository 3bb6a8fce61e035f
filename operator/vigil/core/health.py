"""Judge a revision's health from measured figures: a pure function.

:func:`evaluate` takes what the sidecars counted over the window
(:class:`~vigil.core.window.RevisionWindow`), the training-data reference
and the policy from ``spec.monitoring``, and returns a :class:`HealthReport`:
the figures (rounded, never NaN or Inf) and one verdict, checked in this
order, like a runbook:

1. No figures at all (the source failed)   -> ``MetricsUnavailable``.
2. Fewer requests than ``minRequests``      -> ``InsufficientData`` (never judge on too little).
3. Error rate or p95 latency surely over the SLO (or not surely back within it
   after a ``Degraded``)                     -> ``Degraded``.
4. A feature's drift surely at or over threshold (or not surely back under it
   after a ``DriftDetected``)                -> ``DriftDetected`` (level ``threshold``).
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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from vigil.core import drift
from vigil.core.slo import error_rate_of, judge_slos
from vigil.core.spec import HealthPolicy
from vigil.core.vocabulary import Reason, Verdict
from vigil.core.window import RevisionWindow, quantile_from_buckets
from vigil.profile import OTHER, FeatureProfile, ReferenceProfile

DriftLevel = Literal["none", "warning", "threshold", "unknown"]

#: A feature's live missing rate may exceed its reference null rate by this much.
MISSING_RATE_TOLERANCE = 0.05


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
    #: Drift was not judged for want of a usable reference profile (reason NoReference).
    no_reference: bool = False
    #: The features whose drift surely reaches the warning (or the threshold).
    drift_sure: Mapping[str, float] = field(default_factory=dict)
    #: The features whose drift surely reaches the threshold (the verdict names them), and
    #: those held there: found over it before, not yet surely back under (:attr:`drift_held`).
    drift_over: Mapping[str, float] = field(default_factory=dict)
    #: Of :attr:`drift_over`, the features held by the last ``DriftDetected`` alone.
    drift_held: Mapping[str, float] = field(default_factory=dict)
    #: Each SLO figure beside its limit, judged on its interval ("" before any is judged).
    slos: str = ""
    #: Whose counts drift was judged on, when not every pod's (:class:`DriftBasis`).
    drift_basis: str = ""
    #: With ``Degraded``: the SLOs breached (reasons, the verdict's first).
    breached: tuple[str, ...] = ()
    #: Which running pods' sidecars did not answer, when some did ("": all that were asked).
    unanswered: str = ""


@dataclass(frozen=True)
class DriftBasis:
    """The counts drift is judged on when not all the window's are in the reference's bins.

    A reference profile edited in place: the pods started before count their
    inputs in the previous profile's bins, which scored slot by slot against
    the new one would mean nothing. ``window``: the counts of the pods that
    read the reference (None: drift is not judged); ``note``: said with the
    drift verdict (why it is judged on part of the window, or not at all).
    """

    window: RevisionWindow | None
    note: str


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


def _prediction_moments(window: RevisionWindow) -> tuple[float | None, float | None]:
    if window.predictions <= 0:
        return None, None
    mean = window.prediction_sum / window.predictions
    variance = window.prediction_squares_sum / window.predictions - mean * mean
    if not (math.isfinite(mean) and math.isfinite(variance)):
        return None, None
    # Rounding can make a tiny variance negative.
    return mean, math.sqrt(max(0.0, variance))


def _slot_counts(feature: FeatureProfile, window: RevisionWindow) -> list[float]:
    """Live counts in the reference's slots for one feature."""
    if feature.type == "categorical":
        seen = window.feature_categories.get(feature.name, {})
        labels = [*(feature.categories or ()), OTHER]
        return [seen.get(label, 0.0) for label in labels]
    seen = window.feature_bins.get(feature.name, {})
    return [seen.get(str(slot), 0.0) for slot in range(len(feature.proportions))]


def feature_divergences(
    reference: ReferenceProfile, window: RevisionWindow, method: drift.DriftMethod
) -> dict[str, drift.Divergence]:
    """Per reference feature with enough live rows: its drift, corrected for sample size.

    The reference counts as a sample of its own rows (``count``): a profile
    built from 150 rows describes the population less exactly than one
    built from 50 000, and live traffic drawn from that population drifts
    from it by chance alone.
    """
    found: dict[str, drift.Divergence] = {}
    for feature in reference.features:
        # A profile without ``count`` (another tool's, hand-written): its non-missing rows
        # from ``rowCount``, never an exact population (traffic drawn from it would drift).
        known = feature.count or reference.row_count * (1.0 - feature.null_rate)
        rows = float(known) if known > 0 else math.inf
        measured = drift.divergence(
            method, feature.proportions, _slot_counts(feature, window), reference_rows=rows
        )
        if measured is not None and math.isfinite(measured.corrected):
            found[feature.name] = measured
    return found


def feature_drift(
    reference: ReferenceProfile, window: RevisionWindow, method: drift.DriftMethod
) -> dict[str, float]:
    """Drift per reference feature with enough live rows, corrected for sample size."""
    return {name: d.estimate for name, d in feature_divergences(reference, window, method).items()}


@dataclass(frozen=True)
class DriftJudgement:
    """Each feature's drift (corrected) and the level it surely reaches."""

    scores: Mapping[str, float]
    levels: Mapping[str, DriftLevel]
    #: Features at ``threshold`` only because the last verdict found them there.
    held: frozenset[str] = frozenset()

    @property
    def overall(self) -> float | None:
        return max(self.scores.values()) if self.scores else None

    @property
    def level(self) -> DriftLevel:
        for level in ("threshold", "warning", "none"):
            if level in self.levels.values():
                return level  # type: ignore[return-value]
        return "unknown"

    @property
    def held_scores(self) -> dict[str, float]:
        return {name: self.scores[name] for name in self.held}

    def at(self, *levels: DriftLevel) -> dict[str, float]:
        """The scores of the features at one of ``levels``."""
        return {name: self.scores[name] for name, lv in self.levels.items() if lv in levels}


def judge_drift(
    reference: ReferenceProfile,
    window: RevisionWindow,
    policy: HealthPolicy,
    drifted: frozenset[str] = frozenset(),
) -> DriftJudgement:
    """Per feature, the highest level (threshold, warning) its drift surely reaches.

    "Surely" at ``drift.confidence`` for all the reference's features at once
    (Bonferroni): a window of traffic drawn from the reference itself raises
    no warning, however few its rows, and drift is judged from 5 rows per bin
    on instead of a fixed row count. A feature of ``drifted`` (over the
    threshold at the last verdict) stays there until surely under it: one
    truly near the threshold would flip ``DriftDetected`` at every window.
    """
    found = feature_divergences(reference, window, policy.drift_method)
    alpha = (1.0 - policy.drift_confidence) / max(1, len(reference.features))
    levels: dict[str, DriftLevel] = {}
    held = set()
    for name, measured in found.items():
        over = measured.bounds(alpha, policy.drift_threshold, interval=False)
        if over.p_above <= alpha:
            levels[name] = "threshold"
        elif name in drifted and over.p_below > alpha and not _clears(measured, alpha, policy):
            levels[name] = "threshold"
            held.add(name)
        elif measured.bounds(alpha, policy.drift_warning, interval=False).p_above <= alpha:
            levels[name] = "warning"
        else:
            levels[name] = "none"
    return DriftJudgement({name: m.estimate for name, m in found.items()}, levels, frozenset(held))


def _clears(measured: drift.Divergence, alpha: float, policy: HealthPolicy) -> bool:
    """Whether a held feature not surely under the threshold clears anyway: where no window
    of these rows could be (an estimate of 0 would not; a small reference caps the rows
    that count), its estimate back under the warning is the best it can show."""
    best = replace(measured, corrected=0.0).bounds(alpha, policy.drift_threshold, interval=False)
    return best.p_below > alpha and measured.estimate < policy.drift_warning


def _rows_needed(reference: ReferenceProfile) -> int:
    """Input rows before any feature's drift can be judged (5 per bin in use)."""
    return round(drift.ROWS_PER_SLOT * min(len(f.proportions) for f in reference.features))


def _agreement(window: RevisionWindow) -> float | None:
    predictions = sum(window.shadow_predictions.values())
    if predictions <= 0:
        return None
    return sum(window.shadow_agreements.values()) / predictions


@dataclass(frozen=True)
class _Measured:
    """The figures before rounding (the verdict's messages quote these)."""

    error_rate: float | None
    p95: float | None
    scores: Mapping[str, float]
    overall: float | None
    held: Mapping[str, float]


def evaluate(
    window: RevisionWindow | None,
    reference: ReferenceProfile | None,
    policy: HealthPolicy,
    source_error: str | None = None,
    *,
    degraded_by: Collection[str] = (),
    drift_basis: DriftBasis | None = None,
    drifted: frozenset[str] = frozenset(),
    reference_problem: str | None = None,
) -> HealthReport:
    """The verdict on one revision over one window (see the module docstring). Held from
    its last verdict until surely back: ``degraded_by``, the SLOs found breached (reasons),
    ``drifted``, the features found over the drift threshold. ``drift_basis``: the counts
    drift is judged on when not the whole window's; ``reference_problem``: why no reference."""
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
    figures, measured = _figures(window, reference, policy, drift_basis, drifted, reference_problem)
    requests = figures.requests
    # 2. Too few requests (none, whatever minRequests says): hold judgement.
    needed = max(1, policy.min_requests)
    if requests < needed:
        return replace(
            figures,
            verdict=Verdict.INSUFFICIENT_DATA,
            reason=Reason.INSUFFICIENT_DATA,
            message=f"{requests} requests < {needed} needed over {span}",
        )
    # 3. SLOs: errors first, then latency; each judged on its interval.
    slos = judge_slos(window, policy)
    figures = replace(figures, slos=", ".join(slo.said() for slo in slos))
    breaches = [slo for slo in slos if slo.breached(degraded_by)]
    if breaches:
        said = "; ".join(slo.said(span) for slo in breaches) + f" ({requests} requests)"
        breached = tuple(slo.reason for slo in breaches)
        return replace(
            figures, verdict=Verdict.DEGRADED, reason=breached[0], message=said, breached=breached
        )
    # 4. Drift surely at threshold (or held there): name the features, worst first.
    if figures.drift_level == "threshold" and measured.scores:
        return replace(
            figures,
            verdict=Verdict.DRIFT_DETECTED,
            reason=Reason.DRIFT_ABOVE_THRESHOLD,
            message=drift_detected(policy.drift_method, measured.scores, measured.held, policy),
        )
    # 5. Healthy: the SLO figures beside their thresholds.
    return replace(
        figures,
        reason=Reason.SLOS_MET,
        message=f"{figures.slos} over {span} ({requests} requests)",
    )


def _figures(
    window: RevisionWindow,
    reference: ReferenceProfile | None,
    policy: HealthPolicy,
    basis: DriftBasis | None = None,
    drifted: frozenset[str] = frozenset(),
    problem: str | None = None,
) -> tuple[HealthReport, _Measured]:
    """Every figure of the window, rounded for status (verdict Healthy until judged); the
    input figures (drift, missing, out of range) of ``basis``'s counts, when given
    (``problem``: why the reference profile named could not be used, when it could not)."""
    error_rate = error_rate_of(window)
    p95 = quantile_from_buckets(0.95, window.latency_buckets)
    mean, std = _prediction_moments(window)
    inputs = window if basis is None else basis.window
    if inputs is None:  # drift not judged: no input figures either
        inputs = RevisionWindow()
    judged = (
        judge_drift(reference, inputs, policy, drifted) if reference else DriftJudgement({}, {})
    )
    scores, overall = judged.scores, judged.overall
    rows = inputs.input_rows
    missing_rates = (
        {name: count / rows for name, count in inputs.feature_missing.items()} if rows > 0 else {}
    )
    # A share of the values present in the monitored features (the sidecar exports their
    # counts, zeros too; at most featureCap of them): of rows, 4 features read 400 %.
    values = sum(rows - inputs.feature_missing.get(f, 0.0) for f in inputs.feature_out_of_range)
    out_of_range = sum(inputs.feature_out_of_range.values()) / values if values > 0 else None
    report = HealthReport(
        verdict=Verdict.HEALTHY,
        requests=round(window.requests),
        error_rate=_finite(error_rate, 4),
        latency_p95=_finite(p95, 4),
        prediction_mean=_finite(mean, 4),
        prediction_std=_finite(std, 4),
        drift_method=policy.drift_method,
        drift_score=_finite(overall, 3),
        drift_level=judged.level,
        drift_features=_finite_values(scores, 3),
        missing_rates=_finite_values(missing_rates, 4),
        missing_over_reference=_missing_over(reference, missing_rates),
        out_of_range_rate=_finite(out_of_range, 4),
        agreement=_finite(_agreement(window), 4),
        mean_abs_difference=(
            _finite(window.mean_abs_difference(), 4)
            if reference is None or reference.task == "regression"
            else None
        ),
        drift_note=_drift_note(reference, basis, rows, problem) if not scores else "",
        no_reference=not scores and (reference is None or not reference.features),
        drift_sure=_finite_values(judged.at("threshold", "warning"), 3),
        drift_over=_finite_values(judged.at("threshold"), 3),
        drift_held=_finite_values(judged.held_scores, 3),
        drift_basis=basis.note if basis is not None and scores else "",
    )
    return report, _Measured(error_rate, p95, judged.at("threshold"), overall, judged.held_scores)


def _missing_over(
    reference: ReferenceProfile | None, missing_rates: Mapping[str, float]
) -> tuple[str, ...]:
    """The features missing more often than in the reference (beyond the tolerance)."""
    return tuple(
        sorted(
            f.name
            for f in (reference.features if reference else ())
            if missing_rates.get(f.name, 0.0) > f.null_rate + MISSING_RATE_TOLERANCE
        )
    )


def _drift_note(
    reference: ReferenceProfile | None,
    basis: DriftBasis | None,
    rows: float,
    problem: str | None = None,
) -> str:
    """Why drift was not judged."""
    if reference is None and problem:
        # The spec names one: "no reference profile" would send the user to create one.
        return f"{problem}; drift is not measured"
    if reference is None:
        return "no reference profile: drift is not measured"
    if not reference.features:
        return "no reference features: the profile lists no inputs, drift is not measured"
    if basis is not None and basis.window is None:
        return basis.note
    needed = _rows_needed(reference)
    note = f"{round(rows)} input rows < {needed} needed to judge drift"
    if rows >= needed:  # the rows came, their features did not (missing, other names)
        note = f"no input feature has {needed} values to judge drift in {round(rows)} rows"
    return f"{note}; {basis.note}" if basis is not None else note


def _finite_values(values: Mapping[str, float], digits: int) -> dict[str, float]:
    rounded = {name: _finite(value, digits) for name, value in values.items()}
    return {name: value for name, value in rounded.items() if value is not None}


def over_threshold(
    method: str, score: float, scores: Mapping[str, float], policy: HealthPolicy
) -> str:
    """'psi 0.31 >= 0.2 over 5m: alcohol 0.31, proline 0.24' (DriftAboveThreshold)."""
    return (
        f"{method} {score:.2f} >= {policy.drift_threshold:g} "
        f"over {format_window(policy.window_seconds)}: "
        f"{list_features(scores, policy.drift_threshold)}"
    )


def drift_detected(
    method: str, over: Mapping[str, float], held: Mapping[str, float], policy: HealthPolicy
) -> str:
    """DriftAboveThreshold's message: the features surely over the threshold, then those
    held ("psi 0.19 not surely < 0.2 over 5m, held until it is: alcohol 0.19")."""
    sure = {name: score for name, score in over.items() if name not in held}
    said = [over_threshold(method, max(sure.values()), sure, policy)] if sure else []
    if held:
        said.append(
            f"{method} {max(held.values()):.2f} not surely < {policy.drift_threshold:g} "
            f"over {format_window(policy.window_seconds)}, held until it is: "
            f"{list_features(held, -math.inf)}"
        )
    return "; ".join(said)


def list_features(scores: Mapping[str, float], at_least: float) -> str:
    """'alcohol 0.35, proline 0.28': the features at or over a level, worst first."""
    listed = sorted(((n, v) for n, v in scores.items() if v >= at_least), key=lambda i: -i[1])
    return ", ".join(f"{name} {score:.2f}" for name, score in listed)
