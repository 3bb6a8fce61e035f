"""A step's verdict: every applicable gate judged at the step's share of the rollout's
error budget, Holm across the gates; and for an undecided gate, how many more samples
would decide it. The golden set's replay is judged here too, once, exactly."""

from __future__ import annotations

import math
from collections.abc import Callable

from vigil.core.analysis import CandidateFigures
from vigil.core.judges.divergence import input_drift, prediction_shift
from vigil.core.judges.evidence import Explanation, Gate, GateTest, describing, fixed
from vigil.core.judges.performance import performance_vs_stable, realized_performance
from vigil.core.judges.requests import agreement, error_rate, latency_p95, latency_vs_stable
from vigil.core.spec import RolloutPolicy, Step
from vigil.core.stats import clopper_pearson, holm_levels
from vigil.core.vocabulary import GateVerdict

#: An undecided gate's "needed" is searched up to this many times the samples so far.
MAX_GROWTH = 1e4
#: Said of an undecided gate that growth does not decide, its estimate off the threshold.
_BEYOND_GROWTH = f"not decidable within {MAX_GROWTH:.0f} times as many"


def step_alpha(policy: RolloutPolicy) -> float:
    """One judged step's share of the rollout's error budget."""
    return (1.0 - policy.confidence) / policy.judged_steps


def _tests(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> list[GateTest]:
    shadow = step.kind == "shadow"
    answered = figures.answered(shadow)
    found = [
        error_rate(answered, policy.max_error_rate, figures.not_compared_text if shadow else ""),
        latency_p95(answered, policy.max_latency_p95),
        latency_vs_stable(answered, figures.stable, policy.latency_margin),
        agreement(figures, policy.min_agreement) if _agreement_judged(step, policy) else None,
        prediction_shift(figures, policy.max_prediction_shift),
        input_drift(figures, policy.input_drift_margin),
    ]
    gate = policy.performance
    if gate is not None and step.kind == "canary":
        found += [
            realized_performance(figures.realized, gate),
            performance_vs_stable(figures.realized, figures.stable_realized, gate),
        ]
    return [test for test in found if test is not None]


def _agreement_judged(step: Step, policy: RolloutPolicy) -> bool:
    """Shadow steps compare predictions; ``minAgreement: 0`` turns the gate off."""
    return step.kind == "shadow" and policy.min_agreement > 0


def _expected(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> list[str]:
    """Gates this step can judge: the multiplicity its budget is shared by, fixed for the
    step whatever arrives first (errorRate, latencyP95, latencyVsStable, predictionShift;
    agreement in shadow; inputDrift with both references; the performance gates in a
    canary step)."""
    names = ["errorRate", "latencyP95", "latencyVsStable", "predictionShift"]
    names += ["agreement"] if _agreement_judged(step, policy) else []
    names += ["inputDrift"] if figures.shared_features > 0 else []
    gate = policy.performance
    if gate is not None and step.kind == "canary":
        limit = gate.min_accuracy is not None or gate.max_mae is not None
        names += ["realizedPerformance"] if limit else []
        names += ["performanceVsStable"] if gate.max_drop is not None else []
    return names


def not_judged(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> tuple[str, ...]:
    """Gates the step expects that have no evidence to judge yet (too few requests or
    predictions on a side): no step ends early while one has not been judged."""
    judged = {test.name for test in _tests(step, policy, figures)}
    return tuple(name for name in _expected(step, policy, figures) if name not in judged)


def gates(
    step: Step, policy: RolloutPolicy, figures: CandidateFigures, *, elapsed: float = 0.0
) -> tuple[Gate, ...]:
    """Every applicable gate of ``step`` on the evidence so far, with its verdict.

    ``elapsed`` (seconds of the step so far) turns ``needed`` into time in the text.
    """
    tests = _tests(step, policy, figures)
    alpha = step_alpha(policy)
    family = max(len(tests), len(_expected(step, policy, figures)))
    each = alpha / family
    evidence = {t.name: t.bounds(each, False) for t in tests}
    p_fail = {t.name: t.p_fail(evidence[t.name]) for t in tests}
    # Gates not judged yet still count in the family (p = 1): the step's multiplicity is
    # fixed. A failed gate's interval is shown at the level Holm rejected it at, so it
    # clears the threshold; the others' at ``each``.
    p_fail.update({f"unjudged {i}": 1.0 for i in range(family - len(tests))})
    failed = holm_levels(p_fail, alpha)
    out = []
    for test in tests:
        level = failed.get(test.name, each)
        if test.name in failed:
            verdict = GateVerdict.FAIL
        elif test.p_pass(evidence[test.name]) <= each:
            verdict = GateVerdict.PASS
        else:
            verdict = GateVerdict.UNDECIDED
        shown = test.showing(verdict) if test.showing is not None else test
        out.append(
            Gate(
                name=test.name,
                verdict=verdict,
                value=shown.estimate,
                threshold=shown.threshold,
                samples=round(shown.samples),
                unit=test.unit,
                within=test.within,
                explain=_explainer(shown, verdict, level, elapsed),
            )
        )
    return tuple(out)


def _explainer(
    test: GateTest, verdict: GateVerdict, alpha: float, elapsed: float
) -> Callable[[], Explanation]:
    def explain() -> Explanation:
        if test.waiting:
            return Explanation(None, None, test.describe(0.0, 0.0, 0.0), test.waiting)
        bounds = test.bounds(alpha, True)
        if math.isnan(bounds.low):  # nothing measured (a reference unread): the words alone
            return Explanation(None, None, test.describe(test.estimate, 0.0, 0.0))
        text = test.describe(test.estimate, bounds.low, bounds.high)
        if verdict != GateVerdict.UNDECIDED:
            return Explanation(bounds.low, bounds.high, text)
        why = test.undecidable(alpha) if test.undecidable is not None else ""
        needed = None if why else _needed(test, alpha)
        more = _more(test, needed, elapsed, why)
        return Explanation(bounds.low, bounds.high, f"{text}, undecided: {more}", needed)

    return explain


def _decided(test: GateTest, alpha: float) -> bool:
    bounds = test.bounds(alpha, False)
    return min(test.p_fail(bounds), test.p_pass(bounds)) <= alpha


def _needed(test: GateTest, alpha: float) -> int | None:
    """More samples that would decide the gate if its estimate held (None: never)."""
    if test.grown is None or test.samples <= 0:
        return None
    grow = test.grown
    high = 2.0
    while not _decided(grow(high), alpha):
        high *= 2.0
        if high > MAX_GROWTH:
            return None
    low = high / 2.0 if high > 2.0 else 1.0
    for _ in range(8):  # within 1/256 of the bracket: "about N more"
        mid = 0.5 * (low + high)
        if _decided(grow(mid), alpha):
            high = mid
        else:
            low = mid
    return max(1, math.ceil(test.samples * (high - 1.0)))


def _more(test: GateTest, needed: int | None, elapsed: float, why: str = "") -> str:
    """'180 requests, about 420 more needed (~7m at 1.0/s)'; ``why`` none would do."""
    so_far = f"{round(test.samples)} {test.unit}"
    if needed is None:
        if not why:
            at = test.estimate == test.threshold
            why = "the estimate sits at the threshold" if at else _BEYOND_GROWTH
        return f"{so_far}, {why}"
    rate = test.samples / elapsed if elapsed > 0 else 0.0
    when = f" ({_duration(needed / rate)} at {_rate(rate)}/s)" if rate > 0 else ""
    return f"{so_far}, about {needed} more needed{when}"


def _rate(per_second: float) -> str:
    """'9.1', '16666.7'; under one a second by two significant digits: '0.0083'."""
    return f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2g}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "<1s"
    if seconds < 90:
        return f"~{seconds:.0f}s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f}m"
    return f"~{seconds / 3600:.1f}h"


def golden_gate(agreed: int, total: int, need: float, confidence: float, cause: str = "") -> Gate:
    """The validate step's replay: exact interval; a replay cannot grow, so an undecided
    one is settled by its estimate (``within``). ``cause``: why the set could not be used
    or the replay's first mismatches, shown with the verdict (else only in the log)."""
    estimate = agreed / total if total else 0.0
    low, high = clopper_pearson(agreed, total, confidence)
    if total > 0 and low >= need:
        verdict = GateVerdict.PASS
    elif total == 0 or high < need:
        verdict = GateVerdict.FAIL
    else:
        verdict = GateVerdict.UNDECIDED
    describe = describing("golden set agreement", fixed(3), need, f" ({agreed}/{total} reproduced)")
    text = describe(estimate, low, high) + (f": {cause}" if cause else "")
    return Gate(
        name="goldenSet",
        verdict=verdict,
        value=estimate,
        threshold=need,
        samples=total,
        unit="golden cases",
        within=total > 0 and estimate >= need,
        explain=lambda: Explanation(low, high, text),
    )
