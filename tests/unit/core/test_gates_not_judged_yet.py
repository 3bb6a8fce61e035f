"""Gates a step counts but has no evidence for yet (vigil.core.judges, vigil.core.rollout).

A step's family is every gate it can judge, counted before the data
arrives. One without a test yet (too few predictions for predictionShift,
an input feature with too few rows) is no pass: the step does not end
early on the others, and inputDrift passes only once every shared feature
it counts has been judged. At the step's end a gate or feature that never
got its data does not hold the step (docs/rollouts.md, "Holding on missing
data").
"""

from __future__ import annotations

from dataclasses import replace

from figures_kit import divergence, figures

from vigil.core.analysis import CandidateFigures, FeatureDrift
from vigil.core.judges import gates, not_judged
from vigil.core.rollout import Observations, RolloutState, decide
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict

POLICY = parse_policy({"tweak": {"steps": [{"canary": {"weight": 50, "duration": "5m"}}]}}, "tweak")
CANARY = POLICY.steps[0]
QUIET = FeatureDrift("a", divergence(0.0, 20000), divergence(0.0, 20000))
DRIFTED = FeatureDrift("a", divergence(0.5, 20000), divergence(0.0, 20000))


def seen(*features: FeatureDrift, shared: int, shift: float | None = 0.0) -> CandidateFigures:
    base = figures(requests=20000, prediction_shift=shift)
    return replace(base, input_drift=features, shared_features=shared)


def decided_at(figures_: CandidateFigures, seconds: float):
    state = RolloutState(step=0, step_started_at=0.0)
    return decide(POLICY, state, Observations(True, 1, figures=figures_), seconds)


def input_drift(figures_: CandidateFigures):
    return next(g for g in gates(CANARY, POLICY, figures_) if g.name == "inputDrift")


def test_every_gate_judged_and_passing_ends_the_step_early() -> None:
    decision = decided_at(seen(QUIET, shared=1), 60.0)
    assert decision.action == "promote", decision.message


def test_a_step_does_not_end_early_while_a_gate_has_no_evidence_yet() -> None:
    waiting = seen(QUIET, shared=1, shift=None)
    assert not_judged(CANARY, POLICY, waiting) == ("predictionShift",)
    decision = decided_at(waiting, 60.0)
    assert decision.action == "wait" and decision.reason == "StepInProgress"
    assert "predictionShift not judged yet" in decision.message
    assert all(g.verdict == GateVerdict.PASS for g in decision.gates)


def test_input_drift_does_not_pass_until_every_shared_feature_is_judged() -> None:
    for shared in (2, 13):
        gate = input_drift(seen(QUIET, shared=shared))
        assert gate.verdict == GateVerdict.UNDECIDED, gate.text
        missing = f"{shared - 1} of {shared} shared features not judged yet (too few rows)"
        assert gate.text.endswith(missing) and gate.needed is None
        assert gate.within  # judged features within: nothing beyond holds the step's end
    assert input_drift(seen(QUIET, shared=1)).verdict == GateVerdict.PASS


def test_input_drift_fails_on_the_features_judged_so_far() -> None:
    assert input_drift(seen(DRIFTED, shared=2)).verdict == GateVerdict.FAIL


def test_a_step_with_a_feature_never_judged_does_not_end_early() -> None:
    decision = decided_at(seen(QUIET, shared=2), 60.0)
    assert decision.action == "wait" and "inputDrift" in decision.message


def test_at_the_steps_end_a_feature_never_judged_does_not_hold_the_step() -> None:
    decision = decided_at(seen(QUIET, shared=2), 300.0)
    assert decision.action == "promote", decision.message
    decision = decided_at(seen(QUIET, shared=1, shift=None), 300.0)
    assert decision.action == "promote", decision.message


def test_a_gate_turned_off_is_not_expected() -> None:
    shadow = parse_policy(
        {
            "replacement": {"steps": [{"shadow": {"duration": "5m"}}]},
            "analysis": {"minAgreement": 0},
        },
        "replacement",
    )
    step = shadow.steps[0]
    assert "agreement" not in not_judged(step, shadow, figures(requests=500, compared=0))
