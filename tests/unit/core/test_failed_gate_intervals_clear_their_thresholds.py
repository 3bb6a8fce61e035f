"""A decided gate's interval reads apart from its threshold (docs/rollouts.md: "a failed
gate's interval always clears its threshold").

An end just past the threshold once printed as the threshold itself ("fail
error rate 3.5% [1.0%, 9.0%] vs 1.0%"), in the text and, rounded to four
significant digits, in status. As vigil.core.slo.interval_text does for the
SLOs, the ends get more decimals while one reads as the threshold it is not.
"""

from __future__ import annotations

from dataclasses import replace

from figures_kit import figures

from vigil.core.analysis import Answered
from vigil.core.judges import Explanation, Gate, gates
from vigil.core.judges.evidence import apart, fixed, ms, pct
from vigil.core.reconcile.report import gates_status
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict

TWEAK = parse_policy({"tweak": {"steps": [{"canary": {"weight": 50, "duration": "2m"}}]}}, "tweak")
SHADOW = parse_policy(
    {
        "replacement": {"steps": [{"shadow": {"duration": "5m"}}]},
        "analysis": {"minAgreement": 0.95},
    },
    "replacement",
)


def error_rate_gate(failures: int, requests: int) -> Gate:
    base = figures(requests=500)
    buckets = tuple((b, n * requests / 500) for b, n in base.live.latency_buckets)
    live = Answered(float(requests), float(failures), buckets)
    found = gates(TWEAK.steps[0], TWEAK, replace(base, live=live))
    return next(g for g in found if g.name == "errorRate")


def test_a_failed_error_rate_just_past_its_limit_reads_past_it() -> None:
    gate = error_rate_gate(13, 368)
    assert gate.verdict == GateVerdict.FAIL and gate.low is not None
    assert pct(gate.low) == "1.0%"  # what the text said
    assert gate.text.startswith("error rate 3.5% [1.002%, ")
    assert gate.text.endswith("] vs 1.0%")


def test_a_passed_agreement_just_past_its_minimum_reads_past_it() -> None:
    found = gates(SHADOW.steps[0], SHADOW, figures(requests=900, compared=900, agreement=878 / 900))
    gate = next(g for g in found if g.name == "agreement")
    assert gate.verdict == GateVerdict.PASS and gate.low is not None
    assert f"{gate.low:.3f}" == "0.950"
    assert gate.text.startswith("agreement 0.976 [0.9502, 0.9908] vs 0.950")


def test_more_decimals_only_while_an_end_reads_as_the_threshold() -> None:
    assert apart(pct, (0.0104, 0.093), 0.01) == 1
    assert apart(pct, (0.012, 0.093), 0.01) == 0
    assert apart(pct, (0.0095, 0.093), 0.01) == 0  # the threshold inside: nothing to part
    assert apart(fixed(3), (0.9, 0.94996), 0.95) == 2
    assert apart(ms, (0.2204, 0.2294), 0.22) == 1
    assert apart(pct, (0.01, 0.03), 0.01) == 0  # an end that is the threshold reads as it


def test_status_keeps_an_end_apart_from_its_threshold() -> None:
    gate = Gate(
        name="errorRate",
        verdict=GateVerdict.FAIL,
        value=0.02,
        threshold=0.01,
        explain=lambda: Explanation(0.0100003, 0.0360004, "error rate"),
    )
    (status,) = gates_status([gate]) or []
    assert status["threshold"] == 0.01
    assert status["low"] != status["threshold"] and status["low"] == 0.0100003
    assert status["high"] == 0.036  # four significant digits where nothing is at stake


def test_a_failed_p95_reads_past_a_limit_inside_its_bucket() -> None:
    # 9000 requests in (100 ms, 150 ms], 1000 in (200 ms, 250 ms]: p95 225 ms vs 220 ms.
    counts = {0.15: 9000.0, 0.25: 1000.0}
    base = figures(requests=10000)
    total, buckets = 0.0, []
    for bound, _ in base.live.latency_buckets:
        total += counts.get(bound, 0.0)
        buckets.append((bound, total))
    live = Answered(total, 0.0, tuple(buckets))
    policy = replace(TWEAK, max_latency_p95=0.22)
    found = gates(policy.steps[0], policy, replace(base, live=live, stable=live))
    gate = next(g for g in found if g.name == "latencyP95")
    assert gate.verdict == GateVerdict.FAIL and gate.low is not None and gate.low > 0.22
    assert ms(gate.low) == "220ms"
    assert gate.text.startswith("p95 225ms [220.") and gate.text.endswith("ms] vs 220ms")
