"""Latency judged when the two sides' histograms do not share every bucket bound.

Sidecars of two Vigil versions may bucket latencies differently; a comparison
over the union of bounds read identical latencies as slower, and a histogram
with no finite bucket gave a p95 interval above its own estimate.
"""

from __future__ import annotations

import numpy as np

from vigil.core.analysis import Answered
from vigil.core.judges.requests import latency_p95, latency_vs_stable

INF = float("inf")


def answered(samples: np.ndarray, bounds: tuple[float, ...]) -> Answered:
    cumulative = tuple((b, float(np.sum(samples <= b))) for b in bounds)
    return Answered(float(len(samples)), 0.0, cumulative)


def test_identical_latencies_bucketed_apart_are_not_slower() -> None:
    rng = np.random.default_rng(3)
    candidate = answered(rng.lognormal(-2.0, 0.8, 3000), (0.1, 0.5, 1.0, INF))
    stable = answered(rng.lognormal(-2.0, 0.8, 3000), (0.05, 0.1, 0.25, 0.5, 1.0, INF))
    test = latency_vs_stable(candidate, stable, margin=0.1)
    assert test is not None
    assert abs(test.estimate - 0.5) < 0.03, test.estimate  # it read 0.646 and failed


def test_a_histogram_of_only_the_infinite_bucket_has_no_p95_to_judge() -> None:
    assert latency_p95(Answered(100.0, 0.0, ((INF, 100.0),)), 0.25) is None


def test_histograms_sharing_almost_no_bound_are_not_compared() -> None:
    # Merged into the +Inf bucket alone, a candidate ten times slower read 0.5 and passed.
    rng = np.random.default_rng(5)
    slow = answered(rng.lognormal(0.0, 0.3, 3000), (0.2, 0.6, 1.5, INF))
    fast = answered(rng.lognormal(-2.3, 0.3, 3000), (0.1, 0.25, 0.5, 1.0, INF))
    assert latency_vs_stable(slow, fast, margin=0.1) is None
