"""Does Kayenta's outlier removal help the latency gates on histogram buckets?

Kayenta drops a metric's samples beyond Q1 - 3 x IQR and Q3 + 3 x IQR before
its Mann-Whitney judge. Vigil's latency gates read the sidecar's histogram,
not samples, so the nearest equivalent is: per revision, Q1 and Q3
interpolated from its buckets (as ``histogram_quantile``), and the requests
of every bucket lying wholly beyond a fence dropped (a bucket straddling a
fence cannot be split, so it stays). This script draws one step's histograms
for both revisions, judges ``latencyVsStable`` (the operator's gate, at one
gate's share of the step's budget) on the raw and on the trimmed histograms,
and counts failed gates per scenario. ``latencyP95`` is reported untrimmed
beside it (an SLO counts every request).

Usage: .venv/bin/python bench/gates/outliers.py [--trials 2000] [--requests 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vigil.core.analysis import Answered
from vigil.core.judges.requests import latency_p95, latency_vs_stable
from vigil.core.window import quantile_from_buckets
from vigil.sidecar.metrics import LATENCY_BUCKETS

BOUNDS = np.asarray((*LATENCY_BUCKETS, math.inf))
#: One gate's share of the default step budget: (1 - 0.99) / 5 gates of a tweak's canary.
ALPHA = 0.01 / 5
MARGIN = 0.1
SLO = 0.25

Draw = Callable[[np.random.Generator, int], np.ndarray]


def lognormal(p95: float = 0.18, sigma: float = 0.4) -> Draw:
    median = p95 / math.exp(1.6449 * sigma)
    return lambda rng, n: rng.lognormal(math.log(median), sigma, n)


def with_tail(base: Draw, share: float, low: float, high: float) -> Draw:
    """``share`` of the requests uniform in [low, high] seconds (GC pauses, cold caches)."""

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        values = base(rng, n)
        slow = rng.random(n) < share
        values[slow] = rng.uniform(low, high, int(slow.sum()))
        return values

    return draw


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate: Draw
    stable: Draw
    #: True: the candidate is worse and a gate should fail.
    worse: bool


def histogram(values: np.ndarray) -> Answered:
    counts = np.bincount(np.searchsorted(BOUNDS, values, side="left"), minlength=len(BOUNDS))
    cumulative = np.cumsum(counts[: len(BOUNDS)])
    buckets = tuple((float(b), float(c)) for b, c in zip(BOUNDS, cumulative, strict=True))
    return Answered(float(len(values)), 0.0, buckets)


def trimmed(answered: Answered, factor: float = 3.0) -> Answered:
    """The histogram without the buckets wholly beyond Q1 - f x IQR or Q3 + f x IQR."""
    q1 = quantile_from_buckets(0.25, answered.latency_buckets) or 0.0
    q3 = quantile_from_buckets(0.75, answered.latency_buckets) or 0.0
    low, high = q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)
    bounds, counts = answered.latency_counts()
    kept, lower = [], 0.0
    for upper, n in zip(bounds, counts, strict=True):
        kept.append(n if upper >= low and lower <= high else 0.0)
        lower = upper
    cumulative = np.cumsum(kept)
    buckets = tuple((b, float(c)) for b, c in zip(bounds, cumulative, strict=True))
    return Answered(float(cumulative[-1]), 0.0, buckets)


def failed(candidate: Answered, stable: Answered) -> bool:
    test = latency_vs_stable(candidate, stable, MARGIN)
    return test is not None and test.p_fail(test.bounds(ALPHA, False)) <= ALPHA


def slo_failed(candidate: Answered) -> bool:
    test = latency_p95(candidate, SLO)
    return test is not None and test.p_fail(test.bounds(ALPHA, False)) <= ALPHA


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300, help="per revision")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    base = lognormal()
    scenarios = [
        Scenario("A/A, log-normal", base, base, False),
        Scenario("A/A, both 1 % at 1-5 s", *[with_tail(base, 0.01, 1.0, 5.0)] * 2, False),
        Scenario("candidate alone 1 % at 1-5 s", with_tail(base, 0.01, 1.0, 5.0), base, False),
        Scenario("candidate alone 3 % at 1-5 s", with_tail(base, 0.03, 1.0, 5.0), base, True),
        Scenario("candidate 25 % at 0.5-1 s", with_tail(base, 0.25, 0.5, 1.0), base, True),
        Scenario("candidate 40 % at 0.5-1 s", with_tail(base, 0.40, 0.5, 1.0), base, True),
        Scenario("candidate 22 % at 2-5 s", with_tail(base, 0.22, 2.0, 5.0), base, True),
        Scenario("candidate 24 % at 2-5 s", with_tail(base, 0.24, 2.0, 5.0), base, True),
        Scenario("candidate x1.5", lambda r, n: 1.5 * base(r, n), base, True),
    ]
    print(
        f"{args.trials} trials per row, {args.requests} requests per revision, one look at "
        f"alpha {ALPHA:g}, margin {MARGIN}, SLO p95 {SLO * 1000:.0f} ms, seed {args.seed}\n"
    )
    print("| scenario | latencyVsStable fails, raw | trimmed (3 x IQR) | latencyP95 fails |")
    print("|---|---|---|---|")
    for index, scenario in enumerate(scenarios):
        rng = np.random.default_rng([args.seed, index])
        raw = cut = slo = 0
        for _ in range(args.trials):
            c = histogram(scenario.candidate(rng, args.requests))
            s = histogram(scenario.stable(rng, args.requests))
            raw += failed(c, s)
            cut += failed(trimmed(c), trimmed(s))
            slo += slo_failed(c)
        share = [f"{100 * k / args.trials:.1f} %" for k in (raw, cut, slo)]
        print(f"| {scenario.name} | {' | '.join(share)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
