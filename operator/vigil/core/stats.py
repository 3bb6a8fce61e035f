"""Confidence bounds and anytime-valid tests: the arithmetic the gates judge with.

Pure Python (the standard library's ``math`` and ``statistics``): the
operator's image carries no SciPy; tests/unit/core/test_stats.py holds every
function to SciPy.

* Fixed samples (a golden set replayed once): exact (Clopper-Pearson) and
  Wilson intervals for a proportion.
* Samples that grow while they are looked at (a rollout step, checked every
  interval): confidence *sequences*, valid at every look at once, from
  mixture martingales (Robbins; mSPRT, Johari et al. 2017). For a
  proportion the conjugate Beta mixture of the binomial likelihood ratio is
  exact; for an asymptotically normal estimate the normal mixture is (Lindon
  et al. 2022 use the same for canaries). By Ville's inequality a true value
  leaves the sequence at *any* look with probability at most ``alpha``.
* Many gates at once: Holm's step-down procedure over anytime-valid p-values.
* Latency candidate vs stable from histogram buckets: the Mann-Whitney
  statistic with ties (the buckets) and DeLong's variance of the probability
  that a candidate request is slower than a stable one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()
#: Bisection steps: 2^-40 of the starting bracket, far below any figure shown.
_STEPS = 40


def normal_quantile(p: float) -> float:
    return _NORMAL.inv_cdf(p)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def bisect_turn(f: Callable[[float], bool], low: float, high: float) -> float:
    """The point in [low, high] where ``f`` turns from False to True (f(high) is True)."""
    for _ in range(_STEPS):
        mid = 0.5 * (low + high)
        if f(mid):
            high = mid
        else:
            low = mid
    return high


# -- the incomplete beta function -----------------------------------------------------------


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz)."""
    # Written out (two terms per m, no abs()): the gates call it ~100 000 times a test run.
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if d > tiny or d < -tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        numerator = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if d > tiny or d < -tiny else tiny)
        c = 1.0 + numerator / c
        if not (c > tiny or c < -tiny):
            c = tiny
        h *= d * c
        numerator = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
        d = 1.0 + numerator * d
        d = 1.0 / (d if d > tiny or d < -tiny else tiny)
        c = 1.0 + numerator / c
        if not (c > tiny or c < -tiny):
            c = tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (scipy.special.betainc)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q (scipy.stats.beta.ppf)."""
    return bisect_turn(lambda x: betainc(a, b, x) >= q, 0.0, 1.0)


# -- proportions on a fixed sample ----------------------------------------------------------


def clopper_pearson(hits: int, trials: int, confidence: float) -> tuple[float, float]:
    """The exact two-sided interval of a binomial proportion."""
    if trials <= 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if hits <= 0 else beta_quantile(tail, hits, trials - hits + 1)
    high = 1.0 if hits >= trials else beta_quantile(1.0 - tail, hits + 1, trials - hits)
    return low, high


def wilson(hits: float, trials: float, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (two-sided)."""
    if trials <= 0:
        return 0.0, 1.0
    z = normal_quantile(0.5 + confidence / 2.0)
    p = hits / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


# -- confidence sequences -------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """A confidence sequence's interval at this look, and the test of one threshold."""

    low: float
    high: float
    #: Anytime-valid p-value that the true value is above the threshold tested ...
    p_above: float = 1.0
    #: ... and that it is below it.
    p_below: float = 1.0


class BetaBinomial:
    """Confidence sequence of a proportion: Beta mixtures of binomial likelihood ratios.

    ``M(p) = B(a + hits, b + misses) / B(a, b) / (p^hits (1 - p)^misses)`` is a
    martingale with mean 1 under the true p, for every fixed prior. The prior
    is centred on the threshold with the weight of ``prior_trials``
    observations, so the sequence is tightest for the sample sizes a decision
    is expected at. Each verdict is one-sided, so each end of the interval is
    too: the evidence that the true value is above p mixes only over values
    above p (the prior truncated there), a supermartingale under every value at
    or below p; so no prior weight is spent on the side the test cannot reject
    (about 15 % fewer samples to a decision than the two-sided mixture).
    """

    def __init__(self, centre: float, prior_trials: float) -> None:
        self.centre, self.prior_trials = centre, prior_trials
        centre = min(max(centre, 1e-6), 1 - 1e-6)
        self.a = max(centre * prior_trials, 0.05)
        self.b = max((1 - centre) * prior_trials, 0.05)
        self._log_beta_prior = _log_beta(self.a, self.b)

    def log_mixture(self, hits: float, trials: float, p: float) -> float:
        """log M(p), the whole prior: the evidence against the true proportion being p."""
        misses = trials - hits
        if p <= 0.0:
            return math.inf if hits > 0 else self._log_normaliser(hits, misses)
        if p >= 1.0:
            return math.inf if misses > 0 else self._log_normaliser(hits, misses)
        return self._log_normaliser(hits, misses) - hits * math.log(p) - misses * math.log1p(-p)

    def log_one_sided(self, hits: float, trials: float, p: float, *, above: bool) -> float:
        """log of the evidence that the true proportion is above p (``above``), or below it:
        the mixture over the prior's values on that side of p only."""
        misses = trials - hits
        normaliser = self._log_normaliser(hits, misses)
        return self._log_one_sided(hits, trials, misses, p, above, normaliser)

    def _log_one_sided(
        self, hits: float, trials: float, misses: float, p: float, above: bool, normaliser: float
    ) -> float:
        # ``normaliser`` given: a bisection asks at 80 values of p for the same figures.
        if p <= 0.0 or p >= 1.0:
            return -math.inf if (p <= 0.0) != above else self.log_mixture(hits, trials, p)
        posterior = _log_beta_tail(self.a + hits, self.b + misses, p, upper=above)
        prior = _log_beta_tail(self.a, self.b, p, upper=above)
        return normaliser + posterior - prior - hits * math.log(p) - misses * math.log1p(-p)

    def _log_normaliser(self, hits: float, misses: float) -> float:
        return _log_beta(self.a + hits, self.b + misses) - self._log_beta_prior

    def bounds(
        self, hits: float, trials: float, alpha: float, threshold: float, *, interval: bool = True
    ) -> Bounds:
        """The interval at level ``alpha`` (each end a one-sided bound at ``alpha``) and the
        anytime p-values for ``threshold`` (``interval=False``: the p-values alone, the
        interval left at [0, 1])."""
        return _remembered_bounds(
            self.centre, self.prior_trials, hits, trials, alpha, threshold, interval
        )

    def _bounds(
        self, hits: float, trials: float, alpha: float, threshold: float, interval: bool
    ) -> Bounds:
        if trials <= 0:
            return Bounds(0.0, 1.0)
        level = math.log(1.0 / alpha)
        estimate = hits / trials
        misses = trials - hits
        normaliser = self._log_normaliser(hits, misses)

        def evidence(p: float, above: bool) -> float:
            return self._log_one_sided(hits, trials, misses, p, above, normaliser)

        p_above = p_below = 1.0
        if estimate > threshold:
            p_above = _p_value(evidence(threshold, True))
        if estimate < threshold:
            p_below = _p_value(evidence(threshold, False))
        if not interval:
            return Bounds(0.0, 1.0, p_above, p_below)

        def below(p: float) -> bool:  # the true value is above p, with confidence
            return evidence(p, True) >= level

        def above(p: float) -> bool:
            return evidence(p, False) >= level

        low = (
            0.0
            if estimate <= 0.0 or not below(0.0)
            else bisect_turn(lambda p: not below(p), 0.0, estimate)
        )
        high = 1.0 if estimate >= 1.0 or not above(1.0) else bisect_turn(above, estimate, 1.0)
        return Bounds(low, high, p_above, p_below)


# Remembered: a reconcile judges the same figures on every event until new ones come, and
# each end of an interval is a bisection of 80 looks.
@functools.lru_cache(maxsize=4096)
def _remembered_bounds(
    centre: float,
    prior_trials: float,
    hits: float,
    trials: float,
    alpha: float,
    threshold: float,
    interval: bool,
) -> Bounds:
    return BetaBinomial(centre, prior_trials)._bounds(hits, trials, alpha, threshold, interval)


# Remembered: a bisection asks the same tails again (the prior's at each p), and a
# reconcile judges the same figures on every event until new ones come.
@functools.lru_cache(maxsize=16384)
def _log_beta_tail(a: float, b: float, x: float, *, upper: bool) -> float:
    """log P(X > x) (``upper``) or log P(X < x) for X ~ Beta(a, b), accurate in far tails."""
    if upper:
        a, b, x = b, a, 1.0 - x
    if x <= 0.0:
        return -math.inf
    if x >= 1.0:
        return 0.0
    log_front = a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)
    if x < (a + 1.0) / (a + b + 2.0):
        return log_front + math.log(_beta_fraction(a, b, x)) - math.log(a)
    rest = math.exp(log_front + math.log(_beta_fraction(b, a, 1.0 - x)) - math.log(b))
    return math.log1p(-min(rest, 1.0)) if rest < 1.0 else -math.inf


def _p_value(log_evidence: float) -> float:
    return 1.0 if log_evidence <= 0 else math.exp(-log_evidence)


def normal_log_mixture(deviation: float, variance: float, mixing: float) -> float:
    """log of the normal mixture (N(0, mixing)) of Gaussian likelihood ratios (mSPRT).

    ``deviation`` = estimate - tested value, ``variance`` = the estimate's variance.
    """
    if variance <= 0:
        return math.inf if deviation != 0 else 0.0
    total = variance + mixing
    return 0.5 * math.log(variance / total) + mixing * deviation**2 / (2 * variance * total)


def normal_radius(variance: float, mixing: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at level ``alpha``."""
    if variance <= 0:
        return 0.0
    total = variance + mixing
    return math.sqrt(
        2 * variance * total / mixing * (math.log(1 / alpha) + 0.5 * math.log(total / variance))
    )


def normal_p_values(
    estimate: float, tested: float, variance: float, mixing: float
) -> tuple[float, float]:
    """(p above, p below): anytime-valid evidence that the true value is above / below
    ``tested`` (the normal mixture; a deviation the other way is no evidence)."""
    evidence = _p_value(normal_log_mixture(estimate - tested, variance, mixing))
    return (evidence if estimate > tested else 1.0, evidence if estimate < tested else 1.0)


# -- many gates at once ---------------------------------------------------------------------


def holm_levels(p_values: Mapping[str, float], alpha: float) -> dict[str, float]:
    """Holm's step-down: the hypotheses rejected with family-wise error at most ``alpha``,
    each with the level it was rejected at (alpha / m for the first, alpha / (m - 1) for
    the second, ...).

    Valid for any dependence between the tests, and with anytime-valid
    p-values at any look (a true hypothesis is rejected only when its
    p-value falls below alpha / m).
    """
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    m = len(ordered)
    rejected: dict[str, float] = {}
    for rank, (name, p) in enumerate(ordered):
        level = alpha / (m - rank)
        if p > level:
            break
        rejected[name] = level
    return rejected


# -- two histograms: which one is slower ----------------------------------------------------


@dataclass(frozen=True)
class RankEffect:
    """P(candidate > stable) + P(equal) / 2 over pairs of requests, and its variance."""

    theta: float
    variance: float
    candidate: float
    stable: float


def rank_effect(candidate: Sequence[float], stable: Sequence[float]) -> RankEffect | None:
    """The Mann-Whitney effect of two count vectors over the same ordered buckets.

    Requests in one bucket tie. The variance is DeLong's (placement values),
    valid away from the null as well; None when either side is empty.
    """
    if len(candidate) != len(stable):
        raise ValueError(f"bucket count mismatch: {len(candidate)} vs {len(stable)}")
    n_c, n_s = float(sum(candidate)), float(sum(stable))
    if n_c <= 0 or n_s <= 0:
        return None
    below_s = 0.0
    above_c = n_c
    placements_c: list[tuple[float, float]] = []  # (count, share of stable requests faster)
    placements_s: list[tuple[float, float]] = []  # (count, share of candidate requests slower)
    for c, s in zip(candidate, stable, strict=True):
        above_c -= c
        if c:
            placements_c.append((c, (below_s + 0.5 * s) / n_s))
        if s:
            placements_s.append((s, (above_c + 0.5 * c) / n_c))
        below_s += s
    theta = sum(c * v for c, v in placements_c) / n_c
    var_c = sum(c * (v - theta) ** 2 for c, v in placements_c) / max(n_c - 1, 1)
    var_s = sum(s * (v - theta) ** 2 for s, v in placements_s) / max(n_s - 1, 1)
    return RankEffect(theta, var_c / n_c + var_s / n_s, n_c, n_s)


def mann_whitney(candidate: Sequence[float], stable: Sequence[float]) -> tuple[float, float]:
    """(U of the candidate, two-sided p-value): the tie-corrected normal approximation
    with continuity correction (scipy.stats.mannwhitneyu, method='asymptotic')."""
    effect = rank_effect(candidate, stable)
    if effect is None:
        return math.nan, math.nan
    n_c, n_s = effect.candidate, effect.stable
    u = effect.theta * n_c * n_s
    n = n_c + n_s
    ties = sum((c + s) ** 3 - (c + s) for c, s in zip(candidate, stable, strict=True))
    sigma = math.sqrt(n_c * n_s / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return u, 1.0
    z = (abs(u - n_c * n_s / 2) - 0.5) / sigma
    return u, min(1.0, 2 * normal_sf(z))
