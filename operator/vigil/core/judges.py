"""The rollout gates: each judges its own evidence with confidence.

A gate compares what the candidate did over the step so far
(:class:`~vigil.core.analysis.CandidateFigures`) with its threshold and
says one of three things (:class:`~vigil.core.vocabulary.GateVerdict`):

* ``fail``: the true value is beyond the threshold, with confidence;
* ``pass``: it is within, with confidence;
* ``undecided``: the evidence does not tell yet; the gate says how many more
  samples would, if the estimate held (``needed``).

The confidence is a *sequence* (vigil.core.stats): valid at every check of
the step at once, however often it is looked at. A rollout's error budget,
``1 - analysis.confidence``, is shared equally among its judged steps
(``RolloutPolicy.judged_steps``); within a step, Holm's method over the
gates' anytime p-values decides which fail (the input-drift gate is one
family over its features, Bonferroni within), and the intervals shown are
the simultaneous ones (each gate at the step's budget divided by the
number of gates). So a candidate exactly as good as the stable is rolled
back with probability at most ``1 - confidence``, at any rate of traffic.

The gates, and the evidence each counts (a shadow step judges the copies
the candidate answered, a canary step its live requests):

========================  ===========================================================
``errorRate``             share of failed requests vs ``monitoring.slo.maxErrorRate``
``latencyP95``            p95 vs ``monitoring.slo.maxLatencyP95``: the share of requests
                          slower than the limit, at most 5 % (conservative per bucket)
``latencyVsStable``       P(a candidate request is slower than a stable one over the same
                          span), Mann-Whitney on the histograms, vs 1/2 + ``margins.latency``
``agreement``             (shadow) share of compared predictions that agree vs ``minAgreement``
``predictionShift``       candidate-vs-stable prediction divergence, corrected for sample
                          size, vs ``maxPredictionShift``
``inputDrift``            per shared feature, the candidate's drift vs the stable's
                          + ``margins.inputDrift``
``realizedPerformance``   (canary, with ``analysis.performance``) the candidate's realized
                          accuracy vs ``minAccuracy``, or its MAE vs ``maxMAE``
``performanceVsStable``   (canary) its accuracy vs the stable's x (1 - ``maxDrop``), or
                          its MAE vs the stable's x (1 + ``maxDrop``), same span
========================  ===========================================================

The performance gates count labels that arrived over the step for the
predictions each revision served live (a shadow step's copies get none).
Until ``performance.minLabels`` are in (the stable's too, for the
comparison) a gate waits: undecided, never passing, its ``needed`` the
labels missing.

The golden set (validate step) is replayed once: its exact (Clopper-Pearson)
interval is shown, and with no more evidence to come an undecided replay
is settled by its estimate, as every undecided gate is once its step's
evidence is complete (``within``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from vigil.core.analysis import Answered, CandidateFigures, FeatureDrift
from vigil.core.drift import Divergence
from vigil.core.spec import PerformanceGate, RolloutPolicy, Step
from vigil.core.stats import (
    BetaBinomial,
    Bounds,
    clopper_pearson,
    holm_levels,
    normal_p_values,
    normal_quantile,
    normal_radius,
    rank_effect,
)
from vigil.core.vocabulary import GateVerdict
from vigil.core.window import RealizedPerformance

#: The Beta mixture's prior weight, in observations: the confidence sequences of the
#: proportions are tightest around a few hundred samples, where decisions are made.
PRIOR_TRIALS = 30.0
#: latencyP95 <= the limit means at most this share of requests is slower than it.
P95_TAIL = 0.05
#: Fewest requests on each side before latencyVsStable is judged.
MIN_RANK_REQUESTS = 10
#: An undecided gate's "needed" is searched up to this many times the samples so far.
MAX_GROWTH = 1e4


@dataclass(frozen=True)
class Explanation:
    """What a person reads about a gate: its interval, the text, and for an undecided gate
    how many more samples would decide it if the estimate held (None: decided, or never)."""

    low: float | None
    high: float | None
    text: str
    needed: int | None = None


@dataclass(frozen=True)
class Gate:
    """One gate's verdict: its estimate and threshold, the evidence behind it."""

    name: str
    verdict: GateVerdict
    value: float
    threshold: float
    #: Samples the gate judged (requests, compared predictions, predictions, input rows).
    samples: int = 0
    unit: str = "requests"
    #: The estimate is within the threshold: what settles an undecided gate once the
    #: step's evidence is complete.
    within: bool = True
    #: Computed when first read (status and messages read it; a decision never does).
    explain: Callable[[], Explanation] = field(
        default=lambda: Explanation(None, None, ""), repr=False, compare=False
    )

    @cached_property
    def explanation(self) -> Explanation:
        return self.explain()

    @property
    def passed(self) -> bool:
        """Not failed (``pass`` or ``undecided``): what status has always called passed."""
        return self.verdict != GateVerdict.FAIL

    @property
    def text(self) -> str:
        return self.explanation.text

    @property
    def low(self) -> float | None:
        return self.explanation.low

    @property
    def high(self) -> float | None:
        return self.explanation.high

    @property
    def needed(self) -> int | None:
        return self.explanation.needed


@dataclass(frozen=True)
class _Test:
    """One gate's evidence before the verdict: how to bound it at any level."""

    name: str
    threshold: float
    estimate: float
    #: True: higher is worse (error rate); False: higher is better (agreement).
    at_most: bool
    samples: float
    unit: str
    #: (alpha, interval too?) -> the interval and the threshold's anytime p-values
    bounds: Callable[[float, bool], Bounds]
    #: factor -> the same estimate on factor times the samples (None: cannot grow)
    grown: Callable[[float], _Test] | None
    within: bool
    #: (estimate, interval low, interval high) -> the gate's text
    describe: Describe
    #: Samples still missing before the gate judges at all (labels below minLabels).
    waiting: int = 0

    def p_fail(self, bounds: Bounds) -> float:
        return bounds.p_above if self.at_most else bounds.p_below

    def p_pass(self, bounds: Bounds) -> float:
        return bounds.p_below if self.at_most else bounds.p_above


# -- formatting ---------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%" if value >= 0.001 or value == 0 else f"{value * 100:.2f}%"


def _ms(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value * 1000:.0f}ms"


def _num(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3f}"


Describe = Callable[[float, float, float], str]


def _text(label: str, fmt: Callable[[float], str], threshold: float, suffix: str = "") -> Describe:
    """'error rate 1.3% [0.4%, 3.1%] vs 1.0%': estimate, interval, threshold."""

    def describe(value: float, low: float, high: float) -> str:
        return f"{label} {fmt(value)} [{fmt(low)}, {fmt(high)}] vs {fmt(threshold)}{suffix}"

    return describe


# -- proportions ---------------------------------------------------------------------------------


def _proportion(
    name: str,
    hits: float,
    trials: float,
    threshold: float,
    *,
    at_most: bool,
    unit: str,
    describe: Describe,
) -> _Test:
    mixture = BetaBinomial(threshold, PRIOR_TRIALS)
    estimate = hits / trials if trials > 0 else 0.0

    def grown(factor: float) -> _Test:
        return _proportion(
            name,
            hits * factor,
            trials * factor,
            threshold,
            at_most=at_most,
            unit=unit,
            describe=describe,
        )

    return _Test(
        name=name,
        threshold=threshold,
        estimate=estimate,
        at_most=at_most,
        samples=trials,
        unit=unit,
        bounds=lambda alpha, interval: mixture.bounds(
            hits, trials, alpha, threshold, interval=interval
        ),
        grown=grown,
        within=estimate <= threshold if at_most else estimate >= threshold,
        describe=describe,
    )


def _error_rate(answered: Answered, limit: float) -> _Test | None:
    if answered.requests <= 0:
        return None
    return _proportion(
        "errorRate",
        answered.failures,
        answered.requests,
        limit,
        at_most=True,
        unit="requests",
        describe=_text("error rate", _pct, limit),
    )


def _agreement(figures: CandidateFigures, need: float) -> _Test | None:
    if figures.compared <= 0:
        return None
    difference = figures.mean_abs_difference
    suffix = f" (mean |difference| {difference:.4g})" if difference is not None else ""
    return _proportion(
        "agreement",
        min(figures.agreed, figures.compared),
        figures.compared,
        need,
        at_most=False,
        unit="compared predictions",
        describe=_text("agreement", lambda v: f"{v:.3f}", need, suffix),
    )


# -- latency ------------------------------------------------------------------------------------


def _latency_p95(answered: Answered, limit: float) -> _Test | None:
    """p95 <= limit, i.e. at most 5 % of requests slower than the limit.

    Requests in the bucket holding the limit may be either side of it: the
    failing test counts them as fast, the passing test as slow.
    """
    bounds_s, counts = answered.latency_counts()
    total = sum(counts)
    estimate = answered.latency_p95
    if total <= 0 or estimate is None:
        return None
    mixture = BetaBinomial(P95_TAIL, PRIOR_TRIALS)

    def above(cut: float, *, surely: bool) -> float:
        """Requests slower than ``cut``: surely (their bucket starts at or above it) or
        possibly (their bucket ends above it)."""
        lower = 0.0
        out = 0.0
        for upper, n in zip(bounds_s, counts, strict=True):
            if (lower >= cut) if surely else (upper > cut):
                out += n
            lower = upper
        return out

    sure, maybe = above(limit, surely=True), above(limit, surely=False)

    def share(slow: float, alpha: float, interval: bool = True) -> Bounds:
        return mixture.bounds(slow, total, alpha, P95_TAIL, interval=interval)

    def bounds(alpha: float, interval: bool) -> Bounds:
        failing, passing = share(sure, alpha, False), share(maybe, alpha, False)
        if not interval:
            return Bounds(0.0, math.inf, failing.p_above, passing.p_below)
        finite = [b for b in bounds_s if math.isfinite(b)]
        # The p95 is above a bucket bound when surely more than 5 % are slower than it,
        # below one when surely fewer are (both monotone in the bound: a binary search).
        slow = _last(finite, lambda b: share(above(b, surely=True), alpha).low > P95_TAIL)
        fast = _last(finite[::-1], lambda b: share(above(b, surely=False), alpha).high < P95_TAIL)
        low = finite[slow] if slow is not None else 0.0
        high = finite[::-1][fast] if fast is not None else math.inf
        return Bounds(low, high, failing.p_above, passing.p_below)

    def grown(factor: float) -> _Test:
        scaled = Answered(
            answered.requests * factor,
            answered.failures * factor,
            tuple((b, n * factor) for b, n in answered.latency_buckets),
        )
        found = _latency_p95(scaled, limit)
        assert found is not None
        return found

    return _Test(
        name="latencyP95",
        threshold=limit,
        estimate=estimate,
        at_most=True,
        samples=total,
        unit="requests",
        bounds=bounds,
        grown=grown,
        within=estimate <= limit,
        describe=_text("p95", _ms, limit),
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


def _latency_vs_stable(candidate: Answered, stable: Answered, margin: float) -> _Test | None:
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
    return _rank_test(effect.theta, variance, effect.candidate, threshold, mixing)


def _rank_test(theta: float, variance: float, n: float, threshold: float, mixing: float) -> _Test:
    def bounds(alpha: float, interval: bool) -> Bounds:
        radius = normal_radius(variance, mixing, alpha) if interval else 1.0
        above, below = normal_p_values(theta, threshold, variance, mixing)
        return Bounds(max(0.0, theta - radius), min(1.0, theta + radius), above, below)

    return _Test(
        name="latencyVsStable",
        threshold=threshold,
        estimate=theta,
        at_most=True,
        samples=n,
        unit="requests",
        bounds=bounds,
        grown=lambda f: _rank_test(theta, variance / f, n * f, threshold, mixing),
        within=theta <= threshold,
        describe=_text("P(slower than the stable)", lambda v: f"{v:.2f}", threshold),
    )


# -- divergences --------------------------------------------------------------------------------


def _prediction_shift(figures: CandidateFigures, limit: float) -> _Test | None:
    shift = figures.prediction_shift
    if shift is None:
        return None
    basis = f" ({figures.prediction_shift_basis})" if figures.prediction_shift_basis else ""
    return _divergence_test(shift, limit, basis)


def _divergence_test(shift: Divergence, limit: float, basis: str) -> _Test:
    return _Test(
        name="predictionShift",
        threshold=limit,
        estimate=shift.estimate,
        at_most=True,
        samples=shift.current_rows,
        unit="predictions",
        bounds=lambda alpha, interval: shift.bounds(alpha, limit, interval=interval),
        grown=lambda f: _divergence_test(shift.scaled(f), limit, basis),
        within=shift.estimate <= limit,
        describe=_text("prediction shift", _num, limit, basis),
    )


@dataclass(frozen=True)
class _FeatureTest:
    """One feature's "the candidate drifts at most ``margin`` more than the stable".

    The difference of the two corrected divergences is tested in a normal
    mixture, its variance the two noncentral chi-square variances at the
    boundary (the stable at its estimate, the candidate that plus the margin).
    """

    feature: FeatureDrift
    margin: float

    @property
    def _scale(self) -> Divergence:
        return self.feature.candidate

    @property
    def stable(self) -> float:
        """The stable's drift, on the divergence scale (at least 0)."""
        return max(self.feature.stable.corrected, 0.0)

    @property
    def allowed(self) -> float:
        """How much more the candidate may drift, on the divergence scale."""
        d = self._scale
        return d.to_divergence(d.from_divergence(self.stable) + self.margin) - self.stable

    @property
    def deviation(self) -> float:
        """Candidate minus stable minus the allowance: > 0 is too much drift."""
        return self.feature.candidate.corrected - self.feature.stable.corrected - self.allowed

    @property
    def variance(self) -> float:
        boundary = self.stable + self.allowed
        return self.feature.candidate.variance(boundary) + self.feature.stable.variance(self.stable)

    @property
    def mixing(self) -> float:
        return max(self.allowed, 1e-3) ** 2

    def p_values(self) -> tuple[float, float]:
        """(p fail, p pass): anytime-valid evidence of too much drift / of not."""
        return normal_p_values(self.deviation, 0.0, self.variance, self.mixing)

    def interval(self, alpha: float) -> tuple[float, float]:
        """The candidate's drift (method's units), as the stable's plus the difference."""
        radius = normal_radius(self.variance, self.mixing, alpha)
        d, shift = self._scale, self.stable + self.allowed + self.deviation
        return d.from_divergence(shift - radius), d.from_divergence(shift + radius)

    @property
    def excess(self) -> float:
        """The deviation in standard errors."""
        return self.deviation / math.sqrt(self.variance) if self.variance > 0 else 0.0

    def scaled(self, factor: float) -> _FeatureTest:
        feature = self.feature
        return _FeatureTest(
            FeatureDrift(
                feature.name, feature.candidate.scaled(factor), feature.stable.scaled(factor)
            ),
            self.margin,
        )


def _input_drift(figures: CandidateFigures, margin: float) -> _Test | None:
    features = figures.input_drift
    if not features:
        return None
    tests = [_FeatureTest(f, margin) for f in features]
    d = len(tests)
    # Settled at the step's end by the estimates, allowing for the largest of d noises.
    allowance = normal_quantile(1 - 0.5 / d) if d > 1 else 0.0
    within = all(t.excess <= allowance for t in tests)
    worst = max(range(d), key=lambda i: tests[i].excess)
    return _family_test(tests, worst, within)


def _family_test(tests: Sequence[_FeatureTest], worst: int, within: bool) -> _Test:
    """One gate over d features: Bonferroni within (the gate's p-value is d times the
    smallest; it passes when every feature passes at its share)."""
    d = len(tests)
    shown = tests[worst]
    feature = shown.feature

    def bounds(alpha: float, interval: bool) -> Bounds:
        evidence = [t.p_values() for t in tests]
        p_fail = min(1.0, d * min(p for p, _ in evidence))
        p_pass = min(1.0, d * max(p for _, p in evidence))
        low, high = shown.interval(alpha / d) if interval else (0.0, math.inf)
        return Bounds(low, high, p_fail, p_pass)

    stable = feature.stable.estimate
    threshold = stable + shown.margin

    def describe(value: float, low: float, high: float) -> str:
        return (
            f"input drift of {feature.name} {value:.3f} [{low:.3f}, {_num(high)}] "
            f"vs stable's {stable:.3f} + {shown.margin:g}"
        )

    return _Test(
        name="inputDrift",
        threshold=threshold,
        estimate=feature.candidate.estimate,
        at_most=True,
        samples=feature.candidate.current_rows,
        unit="input rows",
        bounds=bounds,
        grown=lambda f: _family_test([t.scaled(f) for t in tests], worst, within),
        within=within,
        describe=describe,
    )


# -- realized performance ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Realized:
    """One revision's labels over the step, in the gate's metric."""

    accuracy: bool
    labels: float
    #: Mean of the metric (accuracy or MAE) and the variance of one label's score.
    mean: float
    spread: float

    @classmethod
    def of(cls, realized: RealizedPerformance, accuracy: bool) -> _Realized:
        if accuracy:
            scored = sum(n for label, n in realized.scored_by_class.items() if label != "")
            correct = sum(n for label, n in realized.correct_by_class.items() if label != "")
            mean = correct / scored if scored > 0 else 0.0
            # Smoothed: a revision right on every label still has a binomial spread.
            smoothed = (correct + 1.0) / (scored + 2.0)
            return cls(True, scored, mean, smoothed * (1.0 - smoothed))
        scored = realized.scored_by_class.get("", 0.0)
        if scored <= 0:
            return cls(False, 0.0, 0.0, 0.0)
        mean = realized.absolute_error_sum / scored
        spread = max(0.0, realized.squared_error_sum / scored - mean * mean)
        return cls(False, scored, mean, spread)

    @property
    def metric(self) -> str:
        return "realized accuracy" if self.accuracy else "realized MAE"

    def fmt(self, value: float) -> str:
        return f"{value:.3f}" if self.accuracy else f"{value:.4g}"


def _waiting(
    name: str, mine: _Realized, threshold: float, have: float, need: int, text: str
) -> _Test:
    """A performance gate before its labels (``have`` of ``need``): undecided, never
    passing, no interval; its value the candidate's figure so far."""
    return _Test(
        name=name,
        threshold=threshold,
        estimate=mine.mean,
        at_most=not mine.accuracy,
        samples=have,
        unit="labels",
        bounds=lambda alpha, interval: Bounds(math.nan, math.nan),
        grown=None,
        within=False,
        describe=lambda value, low, high: text,
        waiting=max(1, math.ceil(need - have)),
    )


def _labelled_classes(*sides: RealizedPerformance) -> bool | None:
    """True when the labels are a classifier's, False when a regressor's (scored under
    ""), None before the first scored label."""
    if any(side.classification for side in sides):
        return True
    if any(side.scored > 0 for side in sides):
        return False
    return None


def _wrong_metric(name: str, mine: _Realized, limit: float, classes: bool, need: int) -> _Test:
    """A limit in the other task's metric: held with a message saying which to set."""
    task, field, other = ("a classifier", "minAccuracy", "maxMAE")
    if not classes:
        task, field, other = ("a regressor", "maxMAE", "minAccuracy")
    text = (
        f"{mine.metric}: the labels are {task}'s; "
        f"set spec.rollout.analysis.performance.{field}, not {other}"
    )
    return _waiting(name, mine, limit, 0.0, need, text)


def _realized_performance(realized: RealizedPerformance, gate: PerformanceGate) -> _Test | None:
    accuracy = gate.min_accuracy is not None
    limit = gate.min_accuracy if accuracy else gate.max_mae
    if limit is None:
        return None
    mine = _Realized.of(realized, accuracy)
    name = "realizedPerformance"
    classes = _labelled_classes(realized)
    if classes is not None and classes != accuracy:
        return _wrong_metric(name, mine, limit, classes, gate.min_labels)
    if mine.labels < gate.min_labels:
        text = f"{mine.metric}: {round(mine.labels)} labels < {gate.min_labels} needed"
        return _waiting(name, mine, limit, mine.labels, gate.min_labels, text)
    describe = _text(mine.metric, mine.fmt, limit)
    if accuracy:
        return _proportion(
            name,
            mine.mean * mine.labels,
            mine.labels,
            limit,
            at_most=False,
            unit="labels",
            describe=describe,
        )
    # The normal mixture tightest around a tenth of the limit: the deviations that matter.
    mixing = max(0.1 * limit, 1e-9) ** 2
    return _mean_test(
        name,
        mine.mean,
        mine.spread / mine.labels,
        mine.labels,
        limit,
        mixing,
        at_most=True,
        describe=describe,
    )


def _mean_test(
    name: str,
    estimate: float,
    variance: float,
    samples: float,
    threshold: float,
    mixing: float,
    *,
    at_most: bool,
    describe: Describe,
    highest: float = math.inf,
) -> _Test:
    """A mean (or a difference of two, shifted to the candidate's scale) vs ``threshold``,
    in a normal mixture; ``variance`` is the estimate's, the interval within [0, highest]."""

    def bounds(alpha: float, interval: bool) -> Bounds:
        radius = normal_radius(variance, mixing, alpha) if interval else 0.0
        above, below = normal_p_values(estimate, threshold, variance, mixing)
        return Bounds(max(0.0, estimate - radius), min(highest, estimate + radius), above, below)

    return _Test(
        name=name,
        threshold=threshold,
        estimate=estimate,
        at_most=at_most,
        samples=samples,
        unit="labels",
        bounds=bounds,
        grown=lambda f: _mean_test(
            name,
            estimate,
            variance / f,
            samples * f,
            threshold,
            mixing,
            at_most=at_most,
            describe=describe,
            highest=highest,
        ),
        within=estimate <= threshold if at_most else estimate >= threshold,
        describe=describe,
    )


def _performance_vs_stable(
    realized: RealizedPerformance, stable: RealizedPerformance, gate: PerformanceGate
) -> _Test | None:
    """The candidate vs the stable's figure worsened by ``maxDrop``: their difference is
    tested (both sides' noise), shown on the candidate's scale."""
    if gate.max_drop is None:
        return None
    # maxDrop alone suits either task: the labels say which metric, else the limit set.
    classes = _labelled_classes(realized, stable)
    accuracy = gate.max_mae is None if classes is None else classes
    mine, theirs = _Realized.of(realized, accuracy), _Realized.of(stable, accuracy)
    factor = 1.0 - gate.max_drop if accuracy else 1.0 + gate.max_drop
    threshold = factor * theirs.mean
    name = "performanceVsStable"
    short = [
        f"{who} {round(side.labels)} labels"
        for who, side in (("candidate", mine), ("stable", theirs))
        if side.labels < gate.min_labels
    ]
    if short:
        text = f"{mine.metric} vs stable: {', '.join(short)} < {gate.min_labels} needed"
        have = min(mine.labels, theirs.labels)
        return _waiting(name, mine, threshold, have, gate.min_labels, text)
    variance = mine.spread / mine.labels + factor**2 * theirs.spread / theirs.labels
    sign = "-" if accuracy else "+"

    def describe(value: float, low: float, high: float) -> str:
        return (
            f"{mine.metric} {mine.fmt(value)} [{mine.fmt(low)}, {mine.fmt(high)}] vs "
            f"stable's {mine.fmt(theirs.mean)} x (1 {sign} {gate.max_drop:g}) = "
            f"{mine.fmt(threshold)} ({round(theirs.labels)} stable labels)"
        )

    scale = max(gate.max_drop, 0.02) * abs(theirs.mean)
    return _mean_test(
        name,
        mine.mean,
        variance,
        mine.labels,
        threshold,
        max(scale, 1e-9) ** 2,
        at_most=not accuracy,
        describe=describe,
        highest=1.0 if accuracy else math.inf,
    )


# -- the step's verdict -------------------------------------------------------------------------


def step_alpha(policy: RolloutPolicy) -> float:
    """One judged step's share of the rollout's error budget."""
    return (1.0 - policy.confidence) / policy.judged_steps


def _tests(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> list[_Test]:
    shadow = step.kind == "shadow"
    answered = figures.answered(shadow)
    found = [
        _error_rate(answered, policy.max_error_rate),
        _latency_p95(answered, policy.max_latency_p95),
        _latency_vs_stable(answered, figures.stable, policy.latency_margin),
        _agreement(figures, policy.min_agreement) if shadow else None,
        _prediction_shift(figures, policy.max_prediction_shift),
        _input_drift(figures, policy.input_drift_margin),
    ]
    gate = policy.performance
    if gate is not None and step.kind == "canary":
        found += [
            _realized_performance(figures.realized, gate),
            _performance_vs_stable(figures.realized, figures.stable_realized, gate),
        ]
    return [test for test in found if test is not None]


def _expected(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> int:
    """Gates this step can judge: the multiplicity its budget is shared by, fixed for the
    step whatever arrives first (errorRate, latencyP95, latencyVsStable, predictionShift;
    agreement in shadow; inputDrift with both references; the performance gates in a
    canary step)."""
    performance = policy.performance.gates if policy.performance is not None else 0
    return (
        4
        + (step.kind == "shadow")
        + (figures.shared_features > 0)
        + (performance if step.kind == "canary" else 0)
    )


def gates(
    step: Step, policy: RolloutPolicy, figures: CandidateFigures, *, elapsed: float = 0.0
) -> tuple[Gate, ...]:
    """Every applicable gate of ``step`` on the evidence so far, with its verdict.

    ``elapsed`` (seconds of the step so far) turns ``needed`` into time in the text.
    """
    tests = _tests(step, policy, figures)
    alpha = step_alpha(policy)
    family = max(len(tests), _expected(step, policy, figures))
    each = alpha / family
    evidence = {t.name: t.bounds(each, False) for t in tests}
    p_fail = {t.name: t.p_fail(evidence[t.name]) for t in tests}
    # Gates not judged yet still count in the family (p = 1): the step's multiplicity is
    # fixed. A failed gate's interval is shown at the level Holm rejected it at, so it
    # clears the threshold; the others' at ``each``.
    p_fail.update({f"unjudged {i}": 1.0 for i in range(family - len(tests))})
    failed = holm_levels(p_fail, alpha)
    out = []
    for test in tests:
        level = failed.get(test.name, each)
        if test.name in failed:
            verdict = GateVerdict.FAIL
        elif test.p_pass(evidence[test.name]) <= each:
            verdict = GateVerdict.PASS
        else:
            verdict = GateVerdict.UNDECIDED
        out.append(
            Gate(
                name=test.name,
                verdict=verdict,
                value=test.estimate,
                threshold=test.threshold,
                samples=round(test.samples),
                unit=test.unit,
                within=test.within,
                explain=_explainer(test, verdict, level, elapsed),
            )
        )
    return tuple(out)


def _explainer(
    test: _Test, verdict: GateVerdict, alpha: float, elapsed: float
) -> Callable[[], Explanation]:
    def explain() -> Explanation:
        if test.waiting:
            return Explanation(None, None, test.describe(0.0, 0.0, 0.0), test.waiting)
        bounds = test.bounds(alpha, True)
        text = test.describe(test.estimate, bounds.low, bounds.high)
        if verdict != GateVerdict.UNDECIDED:
            return Explanation(bounds.low, bounds.high, text)
        needed = _needed(test, alpha)
        return Explanation(
            bounds.low, bounds.high, f"{text}, undecided: {_more(test, needed, elapsed)}", needed
        )

    return explain


def _decided(test: _Test, alpha: float) -> bool:
    bounds = test.bounds(alpha, False)
    return min(test.p_fail(bounds), test.p_pass(bounds)) <= alpha


def _needed(test: _Test, alpha: float) -> int | None:
    """More samples that would decide the gate if its estimate held (None: never)."""
    if test.grown is None or test.samples <= 0:
        return None
    grow = test.grown
    high = 2.0
    while not _decided(grow(high), alpha):
        high *= 2.0
        if high > MAX_GROWTH:
            return None
    low = high / 2.0 if high > 2.0 else 1.0
    for _ in range(8):  # within 1/256 of the bracket: "about N more"
        mid = 0.5 * (low + high)
        if _decided(grow(mid), alpha):
            high = mid
        else:
            low = mid
    return max(1, math.ceil(test.samples * (high - 1.0)))


def _more(test: _Test, needed: int | None, elapsed: float) -> str:
    """'180 requests, about 420 more needed (~7m at 1.0/s)'."""
    so_far = f"{round(test.samples)} {test.unit}"
    if needed is None:
        return f"{so_far}, the estimate sits at the threshold"
    rate = test.samples / elapsed if elapsed > 0 else 0.0
    when = f" (~{_duration(needed / rate)} at {rate:.1f}/s)" if rate > 0 else ""
    return f"{so_far}, about {needed} more needed{when}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def golden_gate(agreed: int, total: int, need: float, confidence: float) -> Gate:
    """The validate step's replay: exact interval; a replay cannot grow, so an undecided
    one is settled by its estimate (``within``)."""
    estimate = agreed / total if total else 0.0
    low, high = clopper_pearson(agreed, total, confidence)
    if total > 0 and low >= need:
        verdict = GateVerdict.PASS
    elif total == 0 or high < need:
        verdict = GateVerdict.FAIL
    else:
        verdict = GateVerdict.UNDECIDED
    text = (
        f"golden set agreement {estimate:.3f} [{low:.3f}, {high:.3f}] vs {need:.3f} "
        f"({agreed}/{total} reproduced)"
    )
    return Gate(
        name="goldenSet",
        verdict=verdict,
        value=estimate,
        threshold=need,
        samples=total,
        unit="golden cases",
        within=total > 0 and estimate >= need,
        explain=lambda: Explanation(low, high, text),
    )
