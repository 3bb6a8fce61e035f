"""latencyP95 with a limit that is not a histogram bucket bound (vigil.core.judges).

The requests in the bucket holding the limit are counted by the linear
interpolation the p95 estimate (histogram_quantile) and the health loop's
SLO (vigil.core.slo) use: one count for passing and failing, so a p95 on
either side of a 220 ms limit inside the (200 ms, 250 ms] bucket is decided,
where counting that bucket as slow to pass and fast to fail left every
such candidate undecided until progressDeadline.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from figures_kit import BOUNDS, figures

from vigil.core.analysis import Answered, CandidateFigures
from vigil.core.judges import Gate, gates
from vigil.core.judges.requests import _Tail, latency_p95
from vigil.core.rollout import Observations, RolloutState, decide
from vigil.core.slo import _share_slower
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict

TWEAK = parse_policy({"tweak": {"steps": [{"canary": {"weight": 50, "duration": "2m"}}]}}, "tweak")
LIMIT = 0.22  # inside the sidecar's (0.2, 0.25] bucket
POLICY = replace(TWEAK, max_latency_p95=LIMIT)
CANARY = POLICY.steps[0]


def histogram(**by_bound: float) -> tuple[tuple[float, float], ...]:
    """Cumulative buckets from requests per upper bound ('0.15': 900)."""
    counts = {float(bound): n for bound, n in by_bound.items()}
    return tuple(zip(BOUNDS, np.cumsum([counts.get(b, 0.0) for b in BOUNDS]).tolist(), strict=True))


def seen(buckets: tuple[tuple[float, float], ...]) -> CandidateFigures:
    total = buckets[-1][1]
    live = Answered(total, 0.0, buckets)
    return replace(figures(requests=round(total)), live=live, stable=live)


def p95_gate(buckets: tuple[tuple[float, float], ...], policy=POLICY) -> Gate:
    return next(g for g in gates(CANARY, policy, seen(buckets)) if g.name == "latencyP95")


def spread(total: float, slow_share: float) -> tuple[tuple[float, float], ...]:
    """``total`` requests, ``slow_share`` of them in (200 ms, 250 ms], the rest in (100, 150]."""
    return histogram(**{"0.15": total * (1 - slow_share), "0.25": total * slow_share})


def test_a_p95_over_a_limit_inside_its_bucket_fails() -> None:
    # 10 % in (200, 250]: 6 % of requests slower than 220 ms as histogram_quantile reads it.
    gate = p95_gate(spread(20000, 0.10))
    assert gate.verdict == GateVerdict.FAIL, gate.text
    assert gate.low is not None and gate.low > LIMIT
    assert gate.value == pytest.approx(0.225)


def test_a_p95_under_a_limit_inside_its_bucket_passes() -> None:
    # 5 % in (200, 250]: 3 % slower than 220 ms.
    gate = p95_gate(spread(20000, 0.05))
    assert gate.verdict == GateVerdict.PASS, gate.text
    assert gate.high is not None and gate.high < LIMIT


@pytest.mark.parametrize("limit", [0.22, 0.25, 0.11, 0.9])
@pytest.mark.parametrize("share", [0.02, 0.06, 0.3])
def test_the_slow_requests_are_counted_as_the_slo_counts_them(limit: float, share: float) -> None:
    buckets = spread(1000, share)
    test = latency_p95(Answered(1000.0, 0.0, buckets), limit)
    assert test is not None
    slower, total = _share_slower(buckets, limit) or (0.0, 0.0)
    # One count to pass and to fail: the same evidence either way, the SLO's.
    bounds = test.bounds(0.01, False)
    tail = _Tail(*Answered(1000.0, 0.0, buckets).latency_counts())
    assert total == pytest.approx(tail.total)
    assert tail.slower(limit, passing=True) == pytest.approx(slower)
    assert tail.slower(limit, passing=False) == pytest.approx(slower)
    expected = tail.share(slower, 0.01)
    assert (bounds.p_above, bounds.p_below) == pytest.approx((expected.p_above, expected.p_below))


def test_an_identical_candidate_over_the_limit_is_rolled_back_not_held_to_the_deadline() -> None:
    """The stable itself over the limit: the candidate as bad fails it too (the docs'
    promise), in time, rather than Failed at progressDeadline as undecided."""
    state = RolloutState(step=0, step_started_at=0.0)
    outcomes = []
    for t, n in [(130, 1300), (1000, 10000), (1930, 19300)]:
        obs = Observations(candidate_ready=True, replicas=1, figures=seen(spread(n, 0.10)))
        decision = decide(POLICY, state, obs, float(t))
        outcomes.append(decision.reason)
        state = decision.state
        if decision.action in ("rollback", "fail"):
            break
    assert outcomes[-1] == "AnalysisFailed", outcomes
    assert "sits at the threshold" not in decision.message


def test_the_interval_agrees_with_the_verdict_wherever_the_limit_lies() -> None:
    rng = np.random.default_rng(4)
    for _ in range(150):
        counts = rng.multinomial(int(rng.choice([200, 2000, 20000])), rng.dirichlet(np.ones(6)))
        bounds = rng.choice(BOUNDS[7:13], size=6, replace=False)
        buckets = histogram(**{str(b): float(n) for b, n in zip(bounds, counts, strict=True)})
        limit = float(rng.uniform(0.09, 0.42))
        gate = p95_gate(buckets, replace(TWEAK, max_latency_p95=limit))
        low, high = gate.low, gate.high
        assert low is not None and high is not None
        if gate.verdict == GateVerdict.FAIL:
            assert low >= limit, gate.text
        elif gate.verdict == GateVerdict.PASS:
            assert high <= limit, gate.text
        else:
            assert low <= limit <= high, gate.text


def test_the_text_says_the_estimate_sits_at_the_threshold_only_when_it_does() -> None:
    # A limit past the highest finite bucket (10 s): requests beyond it count as slow to pass,
    # fast to fail, so no number of them decides; the estimate (10 s) is not the limit.
    buckets = histogram(**{"0.15": 900.0, "inf": 100.0})
    gate = p95_gate(buckets, replace(TWEAK, max_latency_p95=20.0))
    assert gate.verdict == GateVerdict.UNDECIDED and gate.within
    assert gate.needed is None and math.isfinite(gate.value) and gate.value != 20.0
    assert "sits at the threshold" not in gate.text
    assert gate.text.endswith("not decidable within 10000 times as many")
