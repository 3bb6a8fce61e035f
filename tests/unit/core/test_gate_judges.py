"""The rollout gates' judges (vigil.core.judges): verdicts with confidence.

Checked against scipy where a textbook answer exists (the golden set's exact
interval), by properties where it does not (more good evidence never turns a
pass into a fail; an interval beyond its threshold is a failed gate), and on
simulated streams looked at every interval (a candidate at its threshold
fails at most the stated share of the time, however often it is checked).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest
from figures_kit import figures
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vigil.core.analysis import Answered, CandidateFigures
from vigil.core.judges import Gate, gates, golden_gate, step_alpha
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict

SHADOW_AND_CANARY = {
    "replacement": {
        "steps": [
            {"shadow": {"duration": "5m", "percent": 100}},
            {"canary": {"weight": 50, "duration": "5m"}},
        ]
    },
    "analysis": {"minAgreement": 0.95},
}
POLICY = parse_policy(SHADOW_AND_CANARY, "replacement")
SHADOW, CANARY = POLICY.steps
#: Worse to better, for "never worse" properties.
RANK = {GateVerdict.FAIL: 0, GateVerdict.UNDECIDED: 1, GateVerdict.PASS: 2}


def verdicts(found: tuple[Gate, ...]) -> dict[str, GateVerdict]:
    return {g.name: g.verdict for g in found}


def with_errors(base: CandidateFigures, failures: int, requests: int) -> CandidateFigures:
    """``base`` with the canary's live requests replaced (latency kept in one fast bucket)."""
    live = Answered(float(requests), float(failures), base.live.latency_buckets)
    scale = requests / base.live.requests if base.live.requests else 0.0
    live = replace(live, latency_buckets=tuple((b, n * scale) for b, n in live.latency_buckets))
    return replace(base, live=live)


class TestGoldenSet:
    @pytest.mark.parametrize(("agreed", "total"), [(0, 10), (7, 10), (198, 200), (200, 200)])
    @pytest.mark.parametrize("confidence", [0.95, 0.99])
    def test_the_interval_is_scipys_exact_one(self, agreed: int, total: int, confidence) -> None:
        gate = golden_gate(agreed, total, 0.99, confidence)
        exact = stats.binomtest(agreed, total).proportion_ci(confidence, method="exact")
        assert (gate.low, gate.high) == pytest.approx((exact.low, exact.high), abs=1e-9)

    def test_pass_fail_undecided_by_where_the_interval_lies(self) -> None:
        assert golden_gate(200, 200, 0.9, 0.99).verdict == GateVerdict.PASS
        assert golden_gate(100, 200, 0.9, 0.99).verdict == GateVerdict.FAIL
        undecided = golden_gate(198, 200, 0.99, 0.99)
        assert undecided.verdict == GateVerdict.UNDECIDED and undecided.within
        assert golden_gate(0, 0, 0.9, 0.99).verdict == GateVerdict.FAIL
        assert "(198/200 reproduced)" in undecided.text

    def test_an_unusable_set_says_why_where_its_verdict_is_read(self) -> None:
        cause = "golden set unusable: ConfigMap g has no key 'golden.json' (golden set)"
        gate = golden_gate(0, 0, 0.9, 0.99, cause=cause)
        assert gate.verdict == GateVerdict.FAIL
        assert gate.text.endswith(f"(0/0 reproduced): {cause}")
        assert golden_gate(0, 0, 0.9, 0.99).text.endswith("(0/0 reproduced)")


class TestVerdictsAgreeWithTheIntervals:
    """The interval shown is the one judged: beyond the threshold fails, within it passes."""

    @pytest.mark.slow
    @settings(max_examples=150, deadline=None)
    @given(requests=st.integers(1, 5000), share=st.floats(0.0, 0.2))
    def test_error_rate(self, requests: int, share: float) -> None:
        failures = round(share * requests)
        found = gates(CANARY, POLICY, with_errors(figures(requests=500), failures, requests))
        gate = next(g for g in found if g.name == "errorRate")
        if gate.low > POLICY.max_error_rate:
            assert gate.verdict == GateVerdict.FAIL, gate.text
        elif gate.high < POLICY.max_error_rate:
            assert gate.verdict == GateVerdict.PASS, gate.text
        else:
            assert gate.verdict == GateVerdict.UNDECIDED, gate.text
        assert gate.low <= failures / requests <= gate.high


class TestMoreGoodEvidence:
    """Evidence in a gate's favour never makes its verdict worse (other gates unchanged)."""

    @pytest.mark.slow
    @settings(max_examples=200, deadline=None)
    @given(
        compared=st.integers(1, 3000),
        share=st.floats(0.5, 1.0),
        more=st.integers(1, 3000),
    )
    def test_more_agreeing_comparisons_never_turn_a_pass_into_a_fail(
        self, compared: int, share: float, more: int
    ) -> None:
        agreed = round(share * compared)
        base = figures(requests=1000, compared=compared)
        before = gates(SHADOW, POLICY, replace(base, agreed=agreed))
        after = gates(SHADOW, POLICY, replace(base, compared=compared + more, agreed=agreed + more))
        was, now = verdicts(before)["agreement"], verdicts(after)["agreement"]
        assert RANK[now] >= RANK[was], (agreed, compared, more, was, now)

    @pytest.mark.slow
    @settings(max_examples=200, deadline=None)
    @given(requests=st.integers(1, 5000), share=st.floats(0.0, 0.1), more=st.integers(1, 5000))
    def test_more_successful_requests_never_turn_a_pass_into_a_fail(
        self, requests: int, share: float, more: int
    ) -> None:
        failures = round(share * requests)
        base = figures(requests=500)
        before = verdicts(gates(CANARY, POLICY, with_errors(base, failures, requests)))
        after = verdicts(gates(CANARY, POLICY, with_errors(base, failures, requests + more)))
        assert RANK[after["errorRate"]] >= RANK[before["errorRate"]]


class TestUndecided:
    def test_says_how_many_more_samples_would_decide_it(self) -> None:
        # 0.4 % failed of 500: below 1 %, but not surely yet.
        base = with_errors(figures(requests=500), 2, 500)
        gate = next(g for g in gates(CANARY, POLICY, base, elapsed=100) if g.name == "errorRate")
        assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is not None
        assert f"500 requests, about {gate.needed} more needed (~" in gate.text
        assert "at 5.0/s)" in gate.text

        def verdict_with(more: float) -> GateVerdict:
            total = 500 + more
            grown = with_errors(base, round(0.004 * total), round(total))
            return verdicts(gates(CANARY, POLICY, grown))["errorRate"]

        assert verdict_with(gate.needed * 1.05) == GateVerdict.PASS
        assert verdict_with(gate.needed * 0.5) == GateVerdict.UNDECIDED

    def test_an_estimate_at_the_threshold_is_never_decided(self) -> None:
        base = with_errors(figures(requests=500), 5, 500)  # exactly 1 %
        gate = next(g for g in gates(CANARY, POLICY, base) if g.name == "errorRate")
        assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is None
        assert gate.text.endswith("the estimate sits at the threshold")

    def test_the_time_needed_reads_at_any_rate(self) -> None:
        # One request in 100 s, then a flood: neither "at 0.0/s" nor "~0s".
        slow = with_errors(figures(requests=500), 0, 1)
        gate = next(g for g in gates(CANARY, POLICY, slow, elapsed=100) if g.name == "errorRate")
        assert gate.text.endswith("at 0.01/s)"), gate.text
        flood = with_errors(figures(requests=500), 860, 100_000)
        gate = next(g for g in gates(CANARY, POLICY, flood, elapsed=6) if g.name == "errorRate")
        assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is not None
        assert gate.text.endswith(f"about {gate.needed} more needed (<1s at 16666.7/s)"), gate.text

    def test_an_estimate_off_the_threshold_never_reads_as_sitting_at_it(self) -> None:
        # 1.0001 % of a million: off the threshold, though no growth decides it.
        near = with_errors(figures(requests=500), 10_001, 1_000_000)
        gate = next(g for g in gates(CANARY, POLICY, near) if g.name == "errorRate")
        assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is None
        assert gate.text.endswith("not decidable within 10000 times as many")


class TestMultipleTesting:
    def test_the_step_budget_is_shared_by_the_judged_steps(self) -> None:
        assert step_alpha(POLICY) == pytest.approx((1 - POLICY.confidence) / 2)

    def test_min_agreement_0_turns_the_gate_off_and_out_of_the_family(self) -> None:
        off = replace(POLICY, min_agreement=0.0)
        disagreeing = replace(figures(requests=2000, compared=2000), agreed=0.0)
        found = gates(SHADOW, off, disagreeing)
        assert "agreement" not in verdicts(found)
        # The family is the shadow step's other four gates: each judged at the budget / 4.
        alone = with_errors(figures(requests=2000, compared=2000), 40, 2000)
        alone = replace(alone, copies=alone.live)  # a shadow step judges the copies
        shared = next(g for g in gates(SHADOW, off, alone) if g.name == "errorRate")
        four = next(g for g in gates(CANARY, POLICY, alone) if g.name == "errorRate")
        assert (shared.low, shared.high) == pytest.approx((four.low, four.high))

    def test_gates_fail_at_the_steps_budget_divided_among_them(self) -> None:
        """A failing p-value must clear the step's budget over the number of gates (Holm's
        first step), so a marginal error rate fails alone less easily than a clear one."""
        clear = verdicts(gates(CANARY, POLICY, with_errors(figures(), 40, 500)))
        assert clear["errorRate"] == GateVerdict.FAIL
        # 2 % of 500: beyond the threshold, not far enough for 1 - 0.99 shared this way.
        marginal = verdicts(gates(CANARY, POLICY, with_errors(figures(), 10, 500)))
        assert marginal["errorRate"] == GateVerdict.UNDECIDED


class TestAnytimeValidity:
    """A candidate exactly at its threshold, checked after every batch of requests."""

    @pytest.mark.parametrize("confidence", [0.9, 0.99])
    def test_fails_at_most_the_gates_share_of_the_budget_however_often_checked(
        self, confidence: float
    ) -> None:
        policy = replace(POLICY, confidence=confidence)
        rng = np.random.default_rng(16)
        streams, looks, batch = 300, 40, 50
        p = policy.max_error_rate
        failures = rng.binomial(batch, p, size=(streams, looks)).cumsum(axis=1)
        base = figures(requests=batch)

        # Streams meet the same (errors, requests) often, and gates() is pure: judged once.
        @functools.cache
        def fails(errors: int, requests: int) -> bool:
            found = gates(CANARY, policy, with_errors(base, errors, requests))
            return verdicts(found)["errorRate"] == GateVerdict.FAIL

        failed = sum(
            any(fails(int(errors), batch * look) for look, errors in enumerate(stream, start=1))
            for stream in failures
        )
        # Holm's first step: the errorRate gate alone fails at most alpha / gates.
        share = step_alpha(policy) / len(gates(CANARY, policy, base))
        bound = stats.binom.ppf(0.999, streams, share)
        assert failed <= bound, (failed, streams, share)
        # Looking 40 times at a point estimate would have failed far more often.
        naive = int((failures / (batch * np.arange(1, looks + 1)) > p).any(axis=1).sum())
        assert naive > 10 * max(failed, 1)
        assert math.isfinite(share)
