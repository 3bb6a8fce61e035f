"""The gates on labels (a canary step with ``analysis.performance``): the candidate's
realized accuracy or MAE against its limit (realizedPerformance), and against the
stable's over the same span (performanceVsStable). Until both sides have
``minLabels`` a gate waits: undecided, never passing."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vigil.core.judges.evidence import GateTest, apart, describing, mean_test, proportion
from vigil.core.spec import PerformanceGate
from vigil.core.stats import Bounds
from vigil.core.window import RealizedPerformance

#: Labels' worth of the prior an MAE's spread is shrunk towards: a few labels cannot
#: show a spread of 0 (as accuracy is smoothed by (correct + 1) / (scored + 2)).
PRIOR_LABELS = 4.0
#: The smallest scale a performance gate mixes over, in the metric's units (accuracy; the
#: target's for MAE): a limit of 0 still fails a revision that errs.
SCALE_FLOOR = 1e-3


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
            # Counters read at different times can show more correct than scored.
            correct = min(max(correct, 0.0), scored)
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

    def variance(self, scale: float) -> float:
        """The variance of the mean. An MAE's spread is shrunk towards ``scale``² (an
        absolute error whose mean is ``scale`` spreads about that much), worth
        :data:`PRIOR_LABELS`: ``scale`` is the limit (for the comparison, the figure both
        revisions would share at it), never the spread it shrinks."""
        if self.accuracy:
            return self.spread / self.labels
        prior = max(scale, SCALE_FLOOR) ** 2
        shrunk = (self.labels * self.spread + PRIOR_LABELS * prior) / (self.labels + PRIOR_LABELS)
        return shrunk / self.labels

    @property
    def metric(self) -> str:
        return "realized accuracy" if self.accuracy else "realized MAE"

    def fmt(self, value: float, more: int = 0) -> str:
        return f"{value:.{3 + more}f}" if self.accuracy else f"{value:.{4 + more}g}"


def _waiting(
    name: str, mine: _Realized, threshold: float, have: float, need: int, text: str
) -> GateTest:
    """A performance gate before its labels (``have`` of ``need``): undecided, never
    passing, no interval; its value the candidate's figure so far."""
    return GateTest(
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


def _wrong_metric(name: str, mine: _Realized, limit: float, classes: bool, need: int) -> GateTest:
    """A limit in the other task's metric: held with a message saying which to set."""
    task, field, other = ("a classifier", "minAccuracy", "maxMAE")
    if not classes:
        task, field, other = ("a regressor", "maxMAE", "minAccuracy")
    text = (
        f"{mine.metric}: the labels are {task}'s; "
        f"set spec.rollout.analysis.performance.{field}, not {other}"
    )
    return _waiting(name, mine, limit, 0.0, need, text)


def realized_performance(realized: RealizedPerformance, gate: PerformanceGate) -> GateTest | None:
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
    describe = describing(mine.metric, mine.fmt, limit)
    if accuracy:
        return proportion(
            name,
            mine.mean * mine.labels,
            mine.labels,
            limit,
            at_most=False,
            unit="labels",
            describe=describe,
        )
    # The normal mixture tightest around a tenth of the limit: the deviations that matter.
    mixing = max(0.1 * limit, SCALE_FLOOR) ** 2
    return mean_test(
        name,
        mine.mean,
        mine.variance(limit),
        mine.labels,
        limit,
        mixing,
        at_most=True,
        describe=describe,
    )


def performance_vs_stable(
    realized: RealizedPerformance, stable: RealizedPerformance, gate: PerformanceGate
) -> GateTest | None:
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
    # Each side's spread shrunk towards the figure both would share at the threshold, from
    # both sides' labels: a stable reading 0 on a few labels would make it 0 on its own.
    labels = mine.labels + theirs.labels
    shared = (mine.labels * mine.mean + theirs.labels * threshold) / labels
    variance = mine.variance(shared)
    if factor > 0:  # maxDrop 1 on accuracy: the threshold is 0 whatever the stable reads
        variance += factor**2 * theirs.variance(shared / factor)
    sign = "-" if accuracy else "+"

    def describe(value: float, low: float, high: float) -> str:
        more = apart(mine.fmt, (low, high), threshold)
        shown = f"{mine.fmt(value)} [{mine.fmt(low, more)}, {mine.fmt(high, more)}]"
        return (
            f"{mine.metric} {shown} vs "
            f"stable's {mine.fmt(theirs.mean)} x (1 {sign} {gate.max_drop:g}) = "
            f"{mine.fmt(threshold)} ({round(theirs.labels)} stable labels)"
        )

    scale = max(gate.max_drop, 0.02) * abs(theirs.mean)
    return mean_test(
        name,
        mine.mean,
        variance,
        mine.labels,
        threshold,
        max(scale, SCALE_FLOOR) ** 2,
        at_most=not accuracy,
        describe=describe,
        highest=1.0 if accuracy else math.inf,
    )
