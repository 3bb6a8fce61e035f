"""What the health loop writes from a verdict: the conditions, ``status.health``, the Events.

:func:`health_conditions` turns a :class:`~vigil.core.health.HealthReport` into
Healthy, DriftDetected and MetricsAvailable; :func:`hold_verdicts` keeps those an
unjudged window leaves Unknown at the verdict they hold (:class:`Holds`);
:func:`next_health` into the ``status.health`` to write (unchanged figures keep their
time, so nothing is written); :func:`transitions` says which conditions flip (each an
Event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vigil.common import readable
from vigil.core.health import (
    HealthReport,
    drift_detected,
    format_window,
    list_features,
    over_threshold,
)
from vigil.core.performance import PerformanceReport, readable_figures
from vigil.core.slo import format_percent
from vigil.core.spec import HealthPolicy
from vigil.core.status import ConditionState, find_condition
from vigil.core.vocabulary import ConditionType, Reason, Verdict


def health_conditions(
    report: HealthReport, policy: HealthPolicy, performance: PerformanceReport | None = None
) -> list[ConditionState]:
    """Healthy, DriftDetected, MetricsAvailable (and PerformanceDegraded) for a fresh report.

    For ``MetricsUnavailable`` only MetricsAvailable is returned: the others
    keep their last value, since missing data changes no verdict.
    """
    found = _health_conditions(report, policy)
    if performance is not None and report.verdict != Verdict.METRICS_UNAVAILABLE:
        found.append(performance.condition)
    return found


def _health_conditions(report: HealthReport, policy: HealthPolicy) -> list[ConditionState]:
    if report.verdict == Verdict.METRICS_UNAVAILABLE:
        return [
            ConditionState(
                ConditionType.METRICS_AVAILABLE, False, Reason.METRICS_UNAVAILABLE, report.message
            )
        ]
    metrics = ConditionState(
        ConditionType.METRICS_AVAILABLE,
        True,
        Reason.METRICS_COLLECTED,
        f"{report.requests} requests over {format_window(policy.window_seconds)}"
        + (f" ({report.unanswered})" if report.unanswered else ""),
    )
    if report.verdict == Verdict.INSUFFICIENT_DATA:
        healthy = ConditionState(
            ConditionType.HEALTHY, None, Reason.INSUFFICIENT_DATA, report.message
        )
        drift_state = ConditionState(
            ConditionType.DRIFT_DETECTED, None, Reason.INSUFFICIENT_DATA, report.message
        )
        return [healthy, drift_state, metrics]
    if report.verdict == Verdict.DEGRADED:
        healthy = ConditionState(ConditionType.HEALTHY, False, report.reason, report.message)
    else:
        healthy = ConditionState(
            ConditionType.HEALTHY,
            True,
            Reason.SLOS_MET,
            report.message if report.verdict == Verdict.HEALTHY else _slo_summary(report, policy),
        )
    return [healthy, _drift_condition(report, policy), metrics]


def _slo_summary(report: HealthReport, policy: HealthPolicy) -> str:
    return f"{report.slos} over {format_window(policy.window_seconds)}"


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
    basis = f"; {report.drift_basis}" if report.drift_basis else ""
    return replace(state, message=state.message + basis + _data_quality(report))


def _drift_state(report: HealthReport, policy: HealthPolicy) -> ConditionState:
    method = report.drift_method
    span = format_window(policy.window_seconds)
    if report.drift_level == "unknown" or report.drift_score is None:
        reason = Reason.NO_REFERENCE if report.no_reference else Reason.INSUFFICIENT_DATA
        return ConditionState(
            ConditionType.DRIFT_DETECTED, None, reason, report.drift_note or "drift is not measured"
        )
    # The features whose drift surely reaches a level, as the verdict names them: an
    # estimate over the threshold on too few rows to be sure of it is not named.
    sure = dict(report.drift_sure) or dict(report.drift_features)
    if report.drift_level == "threshold":
        over = dict(report.drift_over)
        return ConditionState(
            ConditionType.DRIFT_DETECTED,
            True,
            Reason.DRIFT_ABOVE_THRESHOLD,
            drift_detected(method, over, report.drift_held, policy)
            if over
            else over_threshold(method, report.drift_score, over, policy),
        )
    if report.drift_level == "warning":
        return ConditionState(
            ConditionType.DRIFT_DETECTED,
            False,
            Reason.DRIFT_WARNING,
            # "surely" both ways: the estimate may read over the threshold without being sure.
            f"{method} {max(sure.values()):.2f} surely >= warning {policy.drift_warning:g}, "
            f"not surely >= threshold {policy.drift_threshold:g} over {span}: "
            f"{list_features(sure, policy.drift_warning)}",
        )
    if report.drift_score < policy.drift_warning:
        text = f"< warning {policy.drift_warning:g} on every feature"
    else:  # an estimate over the warning on too few rows to be sure of it
        text = f"not surely >= warning {policy.drift_warning:g} on any feature"
    return ConditionState(
        ConditionType.DRIFT_DETECTED,
        False,
        Reason.NO_DRIFT,
        f"{method} {report.drift_score:.2f} {text} over {span}",
    )


def _maybe(formatter: Callable[[float], str], value: float | None) -> str | None:
    return None if value is None else formatter(value)


def health_status(
    report: HealthReport,
    policy: HealthPolicy,
    evaluated_at: str,
    realized: Mapping[str, Any] | None = None,
    *,
    revision: str | None = None,
) -> dict[str, Any]:
    """``status.health`` as api.md shows it (no None values, nothing non-finite).

    ``realized``: ``status.health.performance`` (the labels' figures, see
    :mod:`vigil.core.performance`); ``revision``: the revision measured.
    """
    realized = realized or {}
    health: dict[str, Any] = {
        "evaluatedAt": evaluated_at,
        "revision": revision,
        "window": format_window(policy.window_seconds),
        "verdict": report.verdict,
        "breached": list(report.breached) or None,
        "requests": report.requests,
        "errorRate": report.error_rate,
        "latencyP95": report.latency_p95,
        # The printer columns read these (0.5%, 23ms); tools read the numbers.
        "readable": {
            k: v
            for k, v in (
                ("errorRate", _maybe(readable.percent, report.error_rate)),
                ("latencyP95", _maybe(readable.duration, report.latency_p95)),
                *readable_figures(realized).items(),
            )
            if v is not None
        }
        or None,
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
            "over": sorted(report.drift_over) if report.drift_level == "threshold" else None,
        },
        "missing": dict(report.missing_rates) or None,
        "outOfRangeRate": report.out_of_range_rate,
        "agreement": report.agreement,
        "meanAbsoluteDifference": report.mean_abs_difference,
        "performance": dict(realized) or None,
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


def judged_revision(previous: Mapping[str, Any] | None, revision: str | None) -> bool:
    """Whether ``previous`` (``status.health``) holds figures of ``revision``.

    A ``status.health`` written before it named its revision counts as that revision's.
    """
    if not isinstance(previous, Mapping) or not previous.get("evaluatedAt"):
        return False
    return revision is None or previous.get("revision") in (None, revision)


def next_health(
    previous: Mapping[str, Any] | None,
    report: HealthReport,
    policy: HealthPolicy,
    evaluated_at: str,
    performance: PerformanceReport | None = None,
    *,
    revision: str | None = None,
) -> dict[str, Any]:
    """The ``status.health`` to write after an evaluation of ``revision``.

    - The source failed (``MetricsUnavailable``): the last figures stay,
      marked ``stale: true`` (their ``evaluatedAt`` says how old they are);
      with no figures of this revision yet (none at all, or another
      revision's: a promotion), the verdict alone.
    - Otherwise the fresh figures; when they equal the last ones after
      rounding, the last ``evaluatedAt`` is kept so that nothing is written.
      Without a fresh ``performance`` judgement (held) the last figures of
      this revision stay.
    """
    same = judged_revision(previous, revision)
    if report.verdict == Verdict.METRICS_UNAVAILABLE:
        if same and previous is not None:
            if previous.get("verdict") == Verdict.METRICS_UNAVAILABLE:
                return dict(previous)  # never had figures: nothing to mark stale
            kept = dict(previous)
            kept["stale"] = True
            return kept
        unavailable = {
            "evaluatedAt": evaluated_at,
            "revision": revision,
            "window": format_window(policy.window_seconds),
            "verdict": Verdict.METRICS_UNAVAILABLE,
            "requests": 0,
        }
        return {k: v for k, v in unavailable.items() if v is not None}
    realized = (
        performance.figures
        if performance is not None
        else (previous.get("performance") if same and previous is not None else None)
    )
    fresh = health_status(report, policy, evaluated_at, realized, revision=revision)
    if isinstance(previous, Mapping) and same_figures(previous, fresh):
        fresh["evaluatedAt"] = previous["evaluatedAt"]
    return fresh


def condition_word(value: bool | None) -> str:
    if value is None:
        return "Unknown"
    return "True" if value else "False"


#: The status of each health condition that calls for attention.
_BAD = {
    ConditionType.HEALTHY: "False",
    ConditionType.DRIFT_DETECTED: "True",
    ConditionType.METRICS_AVAILABLE: "False",
    ConditionType.PERFORMANCE_DEGRADED: "True",
}


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


# -- what a judged verdict holds through windows that judge nothing ------------------------

#: Sets off a held condition's judged message from why nothing was judged since.
HELD = " (held: "


@dataclass(frozen=True)
class Holds:
    """What a revision's last judged verdicts hold until a window shows them surely back:
    the SLOs found breached (reasons), the features found over the drift threshold, a
    PerformanceDegraded True."""

    slos: frozenset[str] = frozenset()
    drift: frozenset[str] = frozenset()
    performance: bool = False

    def verdict(self, kind: str) -> ConditionState | None:
        """The condition ``kind`` stays at while nothing is judged (None: it holds nothing),
        with a message for when the last condition does not say it (an older operator's)."""
        if kind == ConditionType.HEALTHY and self.slos:
            slos = sorted(self.slos, key=lambda reason: (reason != Reason.ERROR_RATE_HIGH, reason))
            said = "SLO breached at the last window judged, not surely met since"
            return ConditionState(kind, False, slos[0], f"{said}: {', '.join(slos)}")
        if kind == ConditionType.DRIFT_DETECTED and self.drift:
            said = "over the drift threshold at the last window judged, not surely under it since"
            return ConditionState(
                kind, True, Reason.DRIFT_ABOVE_THRESHOLD, f"{said}: {', '.join(sorted(self.drift))}"
            )
        if kind == ConditionType.PERFORMANCE_DEGRADED and self.performance:
            said = "below the threshold at the last window judged, not surely back since"
            return ConditionState(kind, True, Reason.PERFORMANCE_BELOW_THRESHOLD, said)
        return None


def hold_verdicts(
    conditions: Sequence[ConditionState],
    previous: Sequence[Mapping[str, Any]] | None,
    holds: Holds,
) -> list[ConditionState]:
    """``conditions`` with each Unknown one whose last judged verdict holds (``holds``)
    kept at that verdict: its status and reason as ``previous`` (status.conditions) has
    them, so no flip, no Event, and the phase stays Degraded; its message followed by why
    nothing was judged ("... (held: 12 requests < 50 needed over 5m)"). An Unknown judges
    nothing: a dip in traffic clears no breach, nor reads as a recovery."""
    kept = []
    for state in conditions:
        verdict = holds.verdict(state.type) if state.status is None else None
        if verdict is None:
            kept.append(state)
            continue
        last = find_condition(previous, state.type) or {}
        # The judged words without the last cycle's reason for holding them (said anew).
        said = str(last.get("message") or "").split(HELD, 1)[0]
        if last.get("status") == condition_word(verdict.status) and last.get("reason") and said:
            verdict = replace(verdict, reason=str(last["reason"]), message=said)
        kept.append(replace(verdict, message=f"{verdict.message}{HELD}{state.message})"))
    return kept
