"""What every gate is made of: its evidence (:class:`GateTest`), the verdict a person
reads (:class:`Gate`), and the two anytime tests most gates are built from: a
proportion in a Beta mixture and a mean in a normal mixture (vigil.core.stats).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from vigil.common.readable import milliseconds
from vigil.core.slo import format_percent
from vigil.core.stats import BetaBinomial, Bounds, normal_p_values, normal_radius
from vigil.core.vocabulary import GateVerdict

#: The Beta mixture's prior weight, in observations: the confidence sequences of the
#: proportions are tightest around a few hundred samples, where decisions are made.
PRIOR_TRIALS = 30.0


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
class GateTest:
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
    grown: Callable[[float], GateTest] | None
    within: bool
    #: (estimate, interval low, interval high) -> the gate's text
    describe: Describe
    #: Samples still missing before the gate judges at all (labels below minLabels).
    waiting: int = 0
    #: alpha -> why no number of samples more would decide the gate ('' when some would).
    undecidable: Callable[[float], str] | None = None
    #: verdict -> the evidence to show with it (a family shows the member that decided it).
    showing: Callable[[GateVerdict], GateTest] | None = None

    def p_fail(self, bounds: Bounds) -> float:
        return bounds.p_above if self.at_most else bounds.p_below

    def p_pass(self, bounds: Bounds) -> float:
        return bounds.p_below if self.at_most else bounds.p_above


# -- formatting ---------------------------------------------------------------------------------


class Format(Protocol):
    """A figure in words, with ``more`` decimals when an end must read apart."""

    def __call__(self, value: float, more: int = 0) -> str: ...


#: Decimals a shown interval end may gain before it reads apart from its threshold.
_MORE_DECIMALS = 6


def pct(value: float, more: int = 0) -> str:
    return format_percent(value, more)


def ms(value: float, more: int = 0) -> str:
    return "inf" if math.isinf(value) else milliseconds(value, more)


def fixed(decimals: int) -> Format:
    """A figure with ``decimals`` decimals ('inf' for an unbounded end)."""

    def fmt(value: float, more: int = 0) -> str:
        return "inf" if math.isinf(value) else f"{value:.{decimals + more}f}"

    return fmt


num = fixed(3)


def apart(fmt: Format, ends: tuple[float, float], threshold: float) -> int:
    """More decimals for an interval wholly on one side of ``threshold`` while an end reads
    as the threshold without being it (vigil.core.slo.interval_text's rule): a failed
    gate's interval is read as clearing its threshold."""
    low, high = ends
    if low <= threshold <= high or not math.isfinite(threshold):
        return 0
    for more in range(_MORE_DECIMALS):
        if all(fmt(end, more) != fmt(threshold, more) or end == threshold for end in ends):
            return more
    return _MORE_DECIMALS


Describe = Callable[[float, float, float], str]


def describing(label: str, fmt: Format, threshold: float, suffix: str = "") -> Describe:
    """'error rate 1.3% [0.4%, 3.1%] vs 1.0%': estimate, interval, threshold."""

    def describe(value: float, low: float, high: float) -> str:
        more = apart(fmt, (low, high), threshold)
        shown = f"{fmt(value)} [{fmt(low, more)}, {fmt(high, more)}]"
        return f"{label} {shown} vs {fmt(threshold)}{suffix}"

    return describe


# -- the two tests ------------------------------------------------------------------------------


def proportion(
    name: str,
    hits: float,
    trials: float,
    threshold: float,
    *,
    at_most: bool,
    unit: str,
    describe: Describe,
) -> GateTest:
    mixture = BetaBinomial(threshold, PRIOR_TRIALS)
    estimate = hits / trials if trials > 0 else 0.0

    def grown(factor: float) -> GateTest:
        return proportion(
            name,
            hits * factor,
            trials * factor,
            threshold,
            at_most=at_most,
            unit=unit,
            describe=describe,
        )

    return GateTest(
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


def mean_test(
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
    unit: str = "labels",
) -> GateTest:
    """A mean (or a difference of two, shifted to the candidate's scale) vs ``threshold``,
    in a normal mixture; ``variance`` is the estimate's, the interval within [0, highest]."""

    def bounds(alpha: float, interval: bool) -> Bounds:
        radius = normal_radius(variance, mixing, alpha) if interval else 0.0
        above, below = normal_p_values(estimate, threshold, variance, mixing)
        return Bounds(max(0.0, estimate - radius), min(highest, estimate + radius), above, below)

    def grown(factor: float) -> GateTest:
        return mean_test(
            name,
            estimate,
            variance / factor,
            samples * factor,
            threshold,
            mixing,
            at_most=at_most,
            describe=describe,
            highest=highest,
            unit=unit,
        )

    return GateTest(
        name=name,
        threshold=threshold,
        estimate=estimate,
        at_most=at_most,
        samples=samples,
        unit=unit,
        bounds=bounds,
        grown=grown,
        within=estimate <= threshold if at_most else estimate >= threshold,
        describe=describe,
    )
