"""The gate simulator's rollouts: today's decide() driven faithfully and reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
from gatesim.judges import JudgeChoice, OperatorJudge, Setup
from gatesim.report import cell_stats, clopper_pearson
from gatesim.simulate import Task, run_rollout, run_task, spec_for
from gatesim.world import CASES, Baseline, build_world
from scipy.stats import binomtest

CASE = {c.name: c for c in CASES}


def rollout(case: str, policy: str, rate: float, seed: int, lazy: bool = True):
    world = build_world(CASE[case], Baseline())
    choice = JudgeChoice("operator", OperatorJudge(lazy=lazy), {})
    return run_rollout(world, choice, policy, rate, np.random.default_rng(seed))


class TestTodaysPolicies:
    @pytest.mark.slow
    def test_an_identical_candidate_walks_the_replacement_steps_then_promotes(self) -> None:
        outcome = rollout("A/A", "replacement", 10, seed=3)
        assert (outcome.result, outcome.reason) == ("promoted", "AnalysisPassed")
        # validate, shadow 5m, canary 20 5m, canary 50 5m: three step durations and cycles.
        assert 900 <= outcome.seconds <= 960
        assert outcome.live_requests == pytest.approx(10 * outcome.seconds, rel=0.1)

    def test_a_candidate_failing_five_points_more_is_rolled_back_by_the_error_gate(self) -> None:
        outcome = rollout("error +5 pt", "tweak", 100, seed=1)
        assert (outcome.result, outcome.gates) == ("rolled back", ("errorRate",))

    def test_judge_overrides_reach_the_policy_the_reconciler_builds(self) -> None:
        choice = JudgeChoice.parse("operator:failureLimit=3,minAgreement=0.9")
        world = build_world(CASE["A/A"], Baseline())
        setup = Setup(
            spec=spec_for("replacement", choice.analysis),
            change="replacement",
            replicas=1,
            candidate_revision="c",
            reference=world.candidate_reference,
            stable_reference=world.stable_reference,
        )
        policy = setup.policy()
        assert (policy.failure_limit, policy.min_agreement, policy.min_requests) == (3, 0.9, 50)
        assert [s.kind for s in policy.steps] == ["validate", "shadow", "canary", "canary"]
        nested = JudgeChoice.parse("operator:margins.inputDrift=0.1,earlyAdvance=false")
        assert nested.analysis == {"margins": {"inputDrift": 0.1}, "earlyAdvance": False}

    def test_an_unknown_judge_or_override_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown judge"):
            JudgeChoice.parse("tomorrow")
        with pytest.raises(ValueError, match="analysisField=value"):
            JudgeChoice.parse("operator:failureLimit")


class TestFaithfulAndReproducible:
    @pytest.mark.slow
    @pytest.mark.parametrize(
        ("case", "policy", "rate", "seeds"),
        [
            ("A/A", "tweak", 1, 3),
            ("A/A regressor", "tweak", 10, 3),
            ("drift 3 features", "tweak", 100, 3),
            # One rollout of 2 100 s to its deadline: a check every 10 s, each step's end.
            ("error +1 pt", "replacement", 10, 1),
            ("agreement 0.93", "replacement", 10, 3),
        ],
    )
    def test_lazy_figures_decide_exactly_as_eager_ones(self, case, policy, rate, seeds) -> None:
        for seed in range(seeds):
            lazy = rollout(case, policy, rate, seed)
            assert rollout(case, policy, rate, seed, lazy=False) == lazy

    @pytest.mark.slow
    def test_a_run_is_the_same_whatever_its_chunks(self) -> None:
        whole = run_task(Task("operator", "tweak", "A/A", 1.0, 0, 6, seed=5))
        parts = [run_task(Task("operator", "tweak", "A/A", 1.0, i, 2, seed=5)) for i in (0, 2, 4)]
        assert whole == [o for part in parts for o in part]
        assert run_task(Task("operator", "tweak", "A/A", 1.0, 0, 6, seed=6)) != whole


class TestReport:
    @pytest.mark.parametrize(("k", "n"), [(0, 2000), (3, 2000), (17, 500), (500, 500)])
    def test_clopper_pearson_is_scipy_s_exact_interval(self, k: int, n: int) -> None:
        exact = binomtest(k, n).proportion_ci(method="exact")
        assert clopper_pearson(k, n) == pytest.approx((exact.low, exact.high))

    @pytest.mark.slow
    def test_a_wrong_outcome_is_a_rollback_when_acceptable_and_a_promotion_for_a_b(
        self,
    ) -> None:
        outcomes = run_task(Task("operator", "tweak", "A/A", 1.0, 0, 10, seed=5))
        aa = cell_stats("tweak", CASE["A/A"], 1.0, "operator", outcomes)
        within = cell_stats("tweak", CASE["error +0.6 pt (under the limit)"], 1.0, "x", outcomes)
        ab = cell_stats("tweak", CASE["error +1 pt"], 1.0, "operator", outcomes)
        assert aa.wrong == within.wrong == aa.rolled_back + aa.failed
        assert ab.wrong == ab.promoted == aa.promoted
