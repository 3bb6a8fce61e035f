"""A window that judges nothing keeps what the last judged verdict holds, and says why.

Too few requests (or labels), or no usable reference profile, leave Healthy,
DriftDetected or PerformanceDegraded Unknown. Where the last judged verdict
holds a breach (status.health.breached, drift.over, performance.degraded),
Unknown read as a recovery: the phase went Healthy and the next judged window
posted a fresh Warning Event. :func:`hold_verdicts` keeps the condition at the
judged verdict instead; a reference profile the spec names but the operator
cannot use is said as such, not as "no reference profile".
"""

from __future__ import annotations

import datetime
import math

from vigil.core.health import evaluate
from vigil.core.health_status import HELD, Holds, health_conditions, hold_verdicts, transitions
from vigil.core.spec import HealthPolicy
from vigil.core.status import ConditionState, build_conditions, phase_with_health
from vigil.core.window import RevisionWindow

POLICY = HealthPolicy(window_seconds=300, min_requests=50)
DIP = RevisionWindow(
    requests_by_outcome={"success": 12.0}, latency_buckets=((0.05, 12.0), (math.inf, 12.0))
)
JUDGED = "error rate 3.0% > 1.0% over 5m, 99% interval 1.9%-4.7% (1000 requests)"
LAST = [
    {
        "type": "Healthy",
        "status": "False",
        "reason": "LatencyHigh",
        "message": JUDGED,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
    {
        "type": "DriftDetected",
        "status": "True",
        "reason": "DriftAboveThreshold",
        "message": "psi 0.31 >= 0.2 over 5m: alcohol 0.31",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
    {"type": "MetricsAvailable", "status": "True", "reason": "MetricsCollected"},
]
LATER = datetime.datetime(2026, 1, 1, 1, tzinfo=datetime.UTC)


def dip_conditions() -> list[ConditionState]:
    return health_conditions(evaluate(DIP, None, POLICY), POLICY)


def by_type(conditions: list[ConditionState]) -> dict[str, ConditionState]:
    return {c.type: c for c in conditions}


def test_a_breach_held_through_too_few_requests_stays_the_judged_verdict() -> None:
    holds = Holds(slos=frozenset({"LatencyHigh"}), drift=frozenset({"alcohol"}))
    held = by_type(hold_verdicts(dip_conditions(), LAST, holds))
    assert (held["Healthy"].status, held["Healthy"].reason) == (False, "LatencyHigh")
    assert held["Healthy"].message == f"{JUDGED} (held: 12 requests < 50 needed over 5m)"
    assert (held["DriftDetected"].status, held["DriftDetected"].reason) == (
        True,
        "DriftAboveThreshold",
    )
    assert held["DriftDetected"].message.startswith("psi 0.31 >= 0.2 over 5m: alcohol 0.31" + HELD)
    # No flip: the same lastTransitionTime, no Event, the phase stays Degraded.
    assert transitions(LAST, list(held.values())) == []
    written = build_conditions(held.values(), LAST, generation=1, now=LATER)
    assert [c["lastTransitionTime"] for c in written[:2]] == ["2026-01-01T00:00:00Z"] * 2
    assert phase_with_health("Healthy", written) == "Degraded"


def test_a_held_message_is_said_once_whatever_the_cycles() -> None:
    holds = Holds(slos=frozenset({"LatencyHigh"}))
    first = hold_verdicts(dip_conditions(), LAST, holds)
    written = build_conditions(first, LAST, generation=1, now=LATER)
    again = hold_verdicts(dip_conditions(), written, holds)
    assert again == first
    assert by_type(again)["Healthy"].message.count(HELD) == 1


def test_nothing_held_stays_unknown() -> None:
    held = by_type(hold_verdicts(dip_conditions(), LAST, Holds()))
    assert held["Healthy"].status is None and held["DriftDetected"].status is None


def test_a_judged_window_is_left_as_judged() -> None:
    judged = [ConditionState("Healthy", True, "SLOsMet", "error rate 0.0% <= 1.0% over 5m")]
    assert hold_verdicts(judged, LAST, Holds(slos=frozenset({"ErrorRateHigh"}))) == judged


def test_a_hold_an_older_operator_wrote_beside_an_unknown_is_said_from_the_holds() -> None:
    # An operator before this fix wrote Unknown and carried the breach in status.health.
    older = [{"type": "Healthy", "status": "Unknown", "reason": "InsufficientData"}]
    holds = Holds(slos=frozenset({"LatencyHigh", "ErrorRateHigh"}), performance=True)
    performance = ConditionState("PerformanceDegraded", None, "InsufficientLabels", "5 labels")
    held = by_type(hold_verdicts([*dip_conditions(), performance], older, holds))
    assert (held["Healthy"].status, held["Healthy"].reason) == (False, "ErrorRateHigh")
    assert held["Healthy"].message == (
        "SLO breached at the last window judged, not surely met since: ErrorRateHigh, "
        "LatencyHigh (held: 12 requests < 50 needed over 5m)"
    )
    assert held["PerformanceDegraded"].status is True
    assert held["PerformanceDegraded"].message.endswith("(held: 5 labels)")


def test_a_reference_profile_that_cannot_be_used_is_said_with_its_problem() -> None:
    window = RevisionWindow(
        requests_by_outcome={"success": 300.0}, latency_buckets=((math.inf, 300.0),)
    )
    problem = "reference ConfigMap ref has no key profile.json"
    report = evaluate(window, None, POLICY, reference_problem=problem)
    drift = by_type(health_conditions(report, POLICY))["DriftDetected"]
    assert (drift.status, drift.reason) == (None, "NoReference")
    assert drift.message == f"{problem}; drift is not measured"
    # Without one configured, as before.
    drift = by_type(health_conditions(evaluate(window, None, POLICY), POLICY))["DriftDetected"]
    assert drift.message == "no reference profile: drift is not measured"
