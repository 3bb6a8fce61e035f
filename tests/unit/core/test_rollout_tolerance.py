"""Shadow tolerance: analysis default, a shadow step's own keys, carried in the traffic."""

from __future__ import annotations

from vigil.core.rollout import CandidateFigures, gates, traffic_at
from vigil.core.spec import DEFAULT_RELATIVE_TOLERANCE, Step, Tolerance, parse_policy

STEPS = [
    {"shadow": {"duration": "10s"}},
    {"shadow": {"duration": "10s", "tolerance": {"relative": 0.2}}},
    {"pause": {"duration": "5s"}},
    {"canary": {"weight": 20}},
]


def test_without_settings_numbers_agree_within_five_percent_and_the_sidecars_absolute():
    policy = parse_policy({"replacement": {"steps": STEPS[:1]}}, "replacement")
    assert policy.steps[0].tolerance == Tolerance(absolute=None, relative=0.05)
    assert DEFAULT_RELATIVE_TOLERANCE == 0.05
    # Absent absolute: the sidecar derives it from its reference (docs/sidecar.md).
    assert Tolerance().sidecar_settings() == {"relativeTolerance": 0.05}


def test_a_shadow_steps_tolerance_overrides_the_analysis_one_key_by_key():
    rollout = {
        "replacement": {"steps": STEPS},
        "analysis": {"tolerance": {"absolute": 2.5, "relative": 0.01}},
    }
    policy = parse_policy(rollout, "replacement")
    assert policy.steps[0].tolerance == Tolerance(absolute=2.5, relative=0.01)
    assert policy.steps[1].tolerance == Tolerance(absolute=2.5, relative=0.2)
    assert policy.steps[3].tolerance is None  # a canary compares no pairs
    assert policy.steps[1].tolerance.sidecar_settings() == {
        "tolerance": 2.5,
        "relativeTolerance": 0.2,
    }


def test_the_traffic_of_a_shadow_step_and_of_a_pause_after_it_carries_the_tolerance():
    policy = parse_policy({"replacement": {"steps": STEPS}}, "replacement")
    steps = policy.steps
    assert traffic_at(steps, 1, 2).shadow_tolerance == Tolerance(relative=0.2)
    assert traffic_at(steps, 2, 2).shadow_tolerance == Tolerance(relative=0.2)  # pause: as before
    assert traffic_at(steps, 3, 2).shadow_tolerance is None


def test_the_agreement_gate_names_the_mean_absolute_difference():
    policy = parse_policy({"replacement": {"steps": STEPS}}, "replacement")
    figures = CandidateFigures(compared=100, agreed=12, mean_abs_difference=37.25)
    (gate,) = [g for g in gates(Step("shadow"), policy, figures) if g.name == "agreement"]
    assert not gate.passed
    assert gate.text.startswith("agreement 0.120 [")
    assert gate.text.endswith("] vs 0.950 (mean |difference| 37.25)")
    plain = CandidateFigures(compared=100, agreed=99)
    (gate,) = [g for g in gates(Step("shadow"), policy, plain) if g.name == "agreement"]
    assert gate.passed and gate.text.startswith("agreement 0.990 [")
    assert "] vs 0.950, undecided: 100 compared predictions, about" in gate.text
