"""The gates on requests: error rate, agreement (shadow), the p95 latency against its
limit, and the latency against the stable's over the same span."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from vigil.core.analysis import Answered, CandidateFigures
from vigil.core.judges.evidence import (
    PRIOR_TRIALS,
    GateTest,
    describing,
    fixed,
    mean_test,
    ms,
    pct,
    proportion,
)
from vigil.core.stats import BetaBinomial, Bounds, bisect_turn, rank_effect

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
        describe=describing("agreement", fixed(3), need, suffix),
    )


# -- latency ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tail:
    """A latency histogram read as "the share of requests slower than a cut", counted as
    ``histogram_quantile`` and the health loop's SLO (vigil.core.slo) read it: spread
    evenly within the bucket holding the cut."""

    bounds_s: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.counts)

    @cached_property
    def finite_buckets(self) -> list[tuple[float, float, float]]:
        """(lower bound, upper bound, requests) of each finite bucket, the first from 0."""
        lowers = (0.0, *self.bounds_s[:-1])
        return [
            (low, up, n)
            for low, up, n in zip(lowers, self.bounds_s, self.counts, strict=True)
            if math.isfinite(up)
        ]

    def slower(self, cut: float, *, passing: bool) -> float:
        """Requests slower than ``cut``. Past the highest finite bound a bucket has no width
        to spread over: its requests count as slow to pass, as fast to fail (no p95 reads
        above that bound)."""
        below = 0.0
        for low, up, n in self.finite_buckets:
            if cut >= up:
                below += n
            elif cut > low:
                below += n * (cut - low) / (up - low)
        slow = self.total - below
        beyond = self.finite_buckets[-1][1] if self.finite_buckets else 0.0
        return slow if cut <= beyond or passing else 0.0

    def cut(self, slow: float, *, highest: bool) -> float:
        """Where the requests slower than the cut fall to ``slow``: the highest such cut
        (``highest``), else the lowest (inf when no finite cut gets there)."""
        target, below = max(0.0, self.total - slow), 0.0
        for low, up, n in self.finite_buckets:
            reached = below + n > target if highest else n > 0 and below + n >= target
            if reached:
                return low + (up - low) * max(0.0, target - below) / n
            below += n
        return self.finite_buckets[-1][1] if highest and self.finite_buckets else math.inf

    def share(self, slow: float, alpha: float) -> Bounds:
        mixture = BetaBinomial(P95_TAIL, PRIOR_TRIALS)
        return mixture.bounds(slow, self.total, alpha, P95_TAIL, interval=False)

    def p95_interval(self, alpha: float) -> tuple[float, float]:
        """The p95 is above a cut while surely more than 5 % are slower than it, below one
        while surely fewer are: the cuts where the slow requests reach those counts."""
        n = self.total
        low, high = 0.0, math.inf
        if self.share(n, alpha).p_above <= alpha:  # some count of slow requests is surely over
            fewest = bisect_turn(lambda h: self.share(h, alpha).p_above <= alpha, 0.0, n)
            low = self.cut(fewest, highest=True)
        if self.share(0.0, alpha).p_below <= alpha:
            most = bisect_turn(lambda h: self.share(h, alpha).p_below > alpha, 0.0, n)
            high = self.cut(most, highest=False)
        return low, high


def latency_p95(answered: Answered, limit: float) -> GateTest | None:
    """p95 <= limit, i.e. at most 5 % of requests slower than the limit; those in the
    bucket holding it counted by interpolation (one count to pass and to fail)."""
    tail = _Tail(*answered.latency_counts())
    estimate = answered.latency_p95
    # Only a +Inf bucket: no cut has a width to read a p95 from.
    if tail.total <= 0 or estimate is None or not tail.finite_buckets:
        return None
    failing = tail.slower(limit, passing=False)
    passing = tail.slower(limit, passing=True)

    def bounds(alpha: float, interval: bool) -> Bounds:
        low, high = tail.p95_interval(alpha) if interval else (0.0, math.inf)
        above, below = tail.share(failing, alpha).p_above, tail.share(passing, alpha).p_below
        return Bounds(low, high, above, below)

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


#: Finite bucket bounds both histograms must share for latencyVsStable to compare them.
MIN_SHARED_BOUNDS = 2


def _histograms(candidate: Answered, stable: Answered) -> tuple[list[float], list[float]]:
    """Both latency histograms over the bucket bounds they share. Over the union, a bound
    one side lacks put its requests below it while the other's sat in a wider bucket above:
    identical latencies read as slower (sidecars of two versions with other buckets)."""
    c_bounds, c_counts = candidate.latency_counts()
    s_bounds, s_counts = stable.latency_counts()
    shared = sorted(set(c_bounds) & set(s_bounds))
    if sum(1 for bound in shared if math.isfinite(bound)) < MIN_SHARED_BOUNDS:
        return [], []  # all in one or two buckets: any latencies would read alike
    return _merged(c_bounds, c_counts, shared), _merged(s_bounds, s_counts, shared)


def _merged(bounds: Sequence[float], counts: Sequence[float], shared: list[float]) -> list[float]:
    """Each bucket's requests in the first shared bound at or above its own."""
    merged = [0.0] * len(shared)
    for bound, n in zip(bounds, counts, strict=True):
        at = bisect.bisect_left(shared, bound)
        if at < len(shared):
            merged[at] += n
    return merged


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
        describe=describing("P(slower than the stable)", fixed(2), threshold),
        highest=1.0,
        unit="requests",
    )
