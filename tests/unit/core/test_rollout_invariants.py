"""Invariants of the rollout state machine, over random policies and histories.

Hypothesis builds a policy (1-5 steps of every kind) and a run of cycles
(time passes, data comes and goes, gates pass or fail, people act); each
cycle's decision feeds the next, as status does in the operator.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from figures_kit import figures as seen
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.core.rollout import (
    Decision,
    GoldenResult,
    Observations,
    RolloutPolicy,
    RolloutState,
    Step,
    decide,
)

#: Histories, each judged by every invariant: 200 in `make test`;
#: VIGIL_HYPOTHESIS_EXAMPLES=2000 for a deep run.
EXAMPLES = int(os.environ.get("VIGIL_HYPOTHESIS_EXAMPLES", "200"))

steps = st.one_of(
    st.builds(lambda a: Step("validate", min_agreement=a), st.sampled_from([0.9, 0.99])),
    st.builds(
        lambda d, p, m: Step("shadow", d, percent=p, min_requests=m),
        st.sampled_from([0.0, 60.0, 300.0]),
        st.integers(1, 100),
        st.integers(0, 300),
    ),
    st.builds(
        lambda d, w: Step("canary", d, weight=w),
        st.sampled_from([0.0, 60.0, 300.0]),
        st.integers(1, 99),
    ),
    st.builds(lambda d: Step("pause", d), st.sampled_from([None, 0.0, 60.0])),
)
policies = st.builds(
    RolloutPolicy,
    steps=st.lists(steps, min_size=1, max_size=5).map(tuple),
    interval_seconds=st.sampled_from([10.0, 30.0]),
    min_requests=st.integers(1, 100),
    failure_limit=st.integers(1, 3),
    progress_deadline_seconds=st.sampled_from([120.0, 600.0]),
    confidence=st.sampled_from([0.9, 0.99]),
    early_advance=st.booleans(),
)
figures = st.builds(
    seen,
    requests=st.integers(0, 1000),
    error_rate=st.floats(0, 0.1),
    latency_p95=st.floats(0.001, 1),
    compared=st.integers(0, 1000),
    agreement=st.one_of(st.none(), st.floats(0.5, 1)),
    prediction_shift=st.one_of(st.none(), st.floats(0, 0.5)),
)
cycles = st.lists(
    st.fixed_dictionaries(
        {
            "advance": st.sampled_from([5.0, 30.0, 120.0]),
            "ready": st.booleans(),
            "metrics": st.booleans(),
            "figures": st.one_of(st.none(), figures),
            "golden": st.one_of(
                st.none(),
                st.builds(
                    lambda t, a: GoldenResult(t, min(a, t)), st.integers(0, 50), st.integers(0, 50)
                ),
            ),
            "person": st.sampled_from(["", "", "", "", "pause", "resume"]),
            "replicas": st.integers(1, 6),
        }
    ),
    min_size=1,
    max_size=40,
)


Runs = list[tuple[Observations, Decision]]


def run(policy: RolloutPolicy, history: list[dict]) -> Runs:
    state, now, seen = RolloutState(), 1_000.0, []
    for cycle in history:
        now += cycle["advance"]
        obs = Observations(
            candidate_ready=cycle["ready"],
            replicas=cycle["replicas"],
            metrics_available=cycle["metrics"],
            figures=cycle["figures"],
            golden=cycle["golden"],
        )
        if cycle["person"]:
            state = replace(state, requested=cycle["person"])
        decision = decide(policy, state, obs, now)
        seen.append((obs, decision))
        if decision.action in ("promote", "rollback", "fail"):
            break
        state = decision.state
    return seen


def judged_with_enough_data(policy: RolloutPolicy, obs: Observations, d: Decision) -> bool:
    """The promotion evidence: the final step's own check passed on enough data."""
    last = policy.steps[-1]
    if last.kind == "validate":
        return obs.golden is not None and obs.golden.total > 0 and all(g.passed for g in d.gates)
    f = obs.figures
    if f is None or not obs.metrics_available or not obs.candidate_ready:
        return False
    judged = last
    if last.kind == "pause":
        judged = next((s for s in reversed(policy.steps) if s.kind in ("shadow", "canary")), last)
    have = f.compared if judged.kind == "shadow" else f.requests
    return have >= policy.min_requests and all(g.passed for g in d.gates)


def never_promotes_without_a_passing_check_on_enough_data(
    policy: RolloutPolicy, runs: Runs
) -> None:
    for obs, decision in runs:
        if decision.action == "promote":
            assert decision.reason == "AnalysisPassed"
            assert decision.state.step == len(policy.steps) - 1
            assert judged_with_enough_data(policy, obs, decision)


def missing_data_never_counts_as_a_failed_check(policy: RolloutPolicy, runs: Runs) -> None:
    previous = RolloutState()
    for obs, decision in runs:
        no_data = not obs.metrics_available or obs.figures is None or not obs.candidate_ready
        if no_data:
            assert decision.state.failed_checks <= previous.failed_checks or (
                decision.action == "advance" and decision.state.failed_checks == 0
            )
            assert decision.reason != "AnalysisFailed"
        previous = decision.state


def the_stable_keeps_full_capacity_until_promotion(policy: RolloutPolicy, runs: Runs) -> None:
    for obs, decision in runs:
        assert decision.traffic.stable_replicas == obs.replicas
        if decision.traffic.candidate_weight > 0:
            assert decision.traffic.candidate_replicas >= 1
        assert 0 <= decision.traffic.candidate_weight < 100


def rollback_and_failure_leave_the_candidate_without_traffic(
    policy: RolloutPolicy, runs: Runs
) -> None:
    for _, decision in runs:
        if decision.action in ("rollback", "fail"):
            traffic = decision.traffic
            assert (traffic.candidate_weight, traffic.shadow_percent) == (0, 0)
            assert traffic.candidate_replicas == 0


def steps_only_move_forward_one_at_a_time(policy: RolloutPolicy, runs: Runs) -> None:
    step = 0
    for _, decision in runs:
        assert decision.state.step in (step, step + 1)
        assert decision.state.step < len(policy.steps)
        step = decision.state.step


INVARIANTS = (
    never_promotes_without_a_passing_check_on_enough_data,
    missing_data_never_counts_as_a_failed_check,
    the_stable_keeps_full_capacity_until_promotion,
    rollback_and_failure_leave_the_candidate_without_traffic,
    steps_only_move_forward_one_at_a_time,
)


# Every invariant judges every history: drawing and running a history costs far more
# than checking it, so one run serves all five.
@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None)
@given(policies, cycles)
def test_every_history_keeps_every_invariant(policy, history) -> None:
    runs = run(policy, history)
    for invariant in INVARIANTS:
        invariant(policy, runs)
