"""The gates on requests: error rate, agreement (shadow), the p95 latency against its
limit, and the latency against the stable's over the same span."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vigil.core.analysis import Answered, CandidateFigures
from vigil.core.judges.evidence import (
    PRIOR_TRIALS,
    GateTest,
    describing,
    mean_test,
    ms,
    pct,
    proportion,
)
from vigil.core.stats import BetaBinomial, Bounds, rank_effect

#: latencyP95 <= the limit means at most this share of requests is slower than it.
P95_TAIL = 0.05
#: Fewest requests on each side before latencyVsStable is judged.
MIN_RANK_REQUESTS = 10


def error_rate(answered: Answered, limit: float, note: str = "") -> GateTest | None:
    """``note``: what the text adds (a shadow step's copies that could not be compared)."""
    if answered.requests <= 0:
        return None
    return proportion(
        "errorRate",
        answered.failures,
        answered.requests,
        limit,
        at_most=True,
        unit="requests",
        describe=describing("error rate", pct, limit, f", {note}" if note else ""),
    )


def agreement(figures: CandidateFigures, need: float) -> GateTest | None:
    if figures.compared <= 0:
        return None
    difference = figures.mean_abs_difference
    suffix = f" (mean |difference| {difference:.4g})" if difference is not None else ""
    return proportion(
        "agreement",
        min(figures.agreed, figures.compared),
        figures.compared,
        need,
        at_most=False,
        unit="compared predictions",
        describe=describing("agreement", lambda v: f"{v:.3f}", need, suffix),
    )


# -- latency ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tail:
    """A latency histogram read as "the share of requests slower than a cut"."""

    bounds_s: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.counts)

    def above(self, cut: float, *, surely: bool) -> float:
        """Requests slower than ``cut``: surely (their bucket starts at or above it) or
        possibly (their bucket ends above it)."""
        lower = 0.0
        out = 0.0
        for upper, n in zip(self.bounds_s, self.counts, strict=True):
            if (lower >= cut) if surely else (upper > cut):
                out += n
            lower = upper
        return out

    def share(self, slow: float, alpha: float, interval: bool = True) -> Bounds:
        mixture = BetaBinomial(P95_TAIL, PRIOR_TRIALS)
        return mixture.bounds(slow, self.total, alpha, P95_TAIL, interval=interval)

    def p95_interval(self, alpha: float) -> tuple[float, float]:
        finite = [b for b in self.bounds_s if math.isfinite(b)]
        # The p95 is above a bucket bound when surely more than 5 % are slower than it,
        # below one when surely fewer are (both monotone in the bound: a binary search).
        slow = _last(finite, lambda b: self.share(self.above(b, surely=True), alpha).low > P95_TAIL)
        fast = _last(
            finite[::-1], lambda b: self.share(self.above(b, surely=False), alpha).high < P95_TAIL
        )
        low = finite[slow] if slow is not None else 0.0
        high = finite[::-1][fast] if fast is not None else math.inf
        return low, high


def latency_p95(answered: Answered, limit: float) -> GateTest | None:
    """p95 <= limit, i.e. at most 5 % of requests slower than the limit.

    Requests in the bucket holding the limit may be either side of it: the
    failing test counts them as fast, the passing test as slow.
    """
    tail = _Tail(*answered.latency_counts())
    estimate = answered.latency_p95
    if tail.total <= 0 or estimate is None:
        return None
    sure, maybe = tail.above(limit, surely=True), tail.above(limit, surely=False)

    def bounds(alpha: float, interval: bool) -> Bounds:
        failing, passing = tail.share(sure, alpha, False), tail.share(maybe, alpha, False)
        low, high = tail.p95_interval(alpha) if interval else (0.0, math.inf)
        return Bounds(low, high, failing.p_above, passing.p_below)

    def grown(factor: float) -> GateTest:
        scaled = Answered(
            answered.requests * factor,
            answered.failures * factor,
            tuple((b, n * factor) for b, n in answered.latency_buckets),
        )
        found = latency_p95(scaled, limit)
        assert found is not None
        return found

    return GateTest(
        name="latencyP95",
        threshold=limit,
        estimate=estimate,
        at_most=True,
        samples=tail.total,
        unit="requests",
        bounds=bounds,
        grown=grown,
        within=estimate <= limit,
        describe=describing("p95", ms, limit),
    )


def _last(items: Sequence[float], holds: Callable[[float], bool]) -> int | None:
    """Index of the last item that ``holds`` (true for a prefix of ``items``), or None."""
    low, high = 0, len(items)
    while low < high:
        mid = (low + high) // 2
        if holds(items[mid]):
            low = mid + 1
        else:
            high = mid
    return low - 1 if low > 0 else None


def _histograms(candidate: Answered, stable: Answered) -> tuple[list[float], list[float]]:
    """Both latency histograms over the union of their bucket bounds."""
    c_bounds, c_counts = candidate.latency_counts()
    s_bounds, s_counts = stable.latency_counts()
    bounds = sorted(set(c_bounds) | set(s_bounds))
    c, s = dict(zip(c_bounds, c_counts, strict=True)), dict(zip(s_bounds, s_counts, strict=True))
    return [c.get(b, 0.0) for b in bounds], [s.get(b, 0.0) for b in bounds]


def latency_vs_stable(candidate: Answered, stable: Answered, margin: float) -> GateTest | None:
    c, s = _histograms(candidate, stable)
    if min(sum(c), sum(s)) < MIN_RANK_REQUESTS:
        return None
    effect = rank_effect(c, s)
    if effect is None:
        return None
    threshold = 0.5 + margin
    mixing = max(margin, 0.05) ** 2
    # All requests of both sides in one bucket: no spread to estimate; the sample's own.
    variance = max(effect.variance, 1.0 / (12.0 * min(effect.candidate, effect.stable)))
    # P(slower), a mean of pairwise comparisons: the normal mixture's mean test on [0, 1].
    return mean_test(
        "latencyVsStable",
        effect.theta,
        variance,
        effect.candidate,
        threshold,
        mixing,
        at_most=True,
        describe=describing("P(slower than the stable)", lambda v: f"{v:.2f}", threshold),
        highest=1.0,
        unit="requests",
    )
