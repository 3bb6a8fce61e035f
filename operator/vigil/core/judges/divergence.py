"""The gates on divergences: the candidate's predictions against the stable's
(predictionShift), and its inputs' drift against the stable's, one family over the
shared features (inputDrift)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from vigil.core.analysis import CandidateFigures, FeatureDrift
from vigil.core.drift import Divergence
from vigil.core.judges.evidence import GateTest, apart, describing, num
from vigil.core.stats import Bounds, normal_p_values, normal_quantile, normal_radius
from vigil.core.vocabulary import GateVerdict

#: Live rows times this: more than traffic could ever bring (each reference stays as it is).
_UNLIMITED = 1e12


def prediction_shift(figures: CandidateFigures, limit: float) -> GateTest | None:
    shift = figures.prediction_shift
    if shift is None:
        return None
    basis = f" ({figures.prediction_shift_basis})" if figures.prediction_shift_basis else ""
    return _divergence_test(shift, limit, basis)


def _divergence_test(shift: Divergence, limit: float, basis: str) -> GateTest:
    return GateTest(
        name="predictionShift",
        threshold=limit,
        estimate=shift.estimate,
        at_most=True,
        samples=shift.current_rows,
        unit="predictions",
        bounds=lambda alpha, interval: shift.bounds(alpha, limit, interval=interval),
        grown=lambda f: _divergence_test(shift.scaled(f), limit, basis),
        within=shift.estimate <= limit,
        describe=describing("prediction shift", num, limit, basis),
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
    def boundary(self) -> float:
        """The candidate's drift the test allows: the stable's as corrected (below 0 when
        it reads under noise) plus the allowance, on the divergence scale."""
        return self.feature.stable.corrected + self.allowed

    @property
    def deviation(self) -> float:
        """Candidate minus stable minus the allowance: > 0 is too much drift."""
        return self.feature.candidate.corrected - self.boundary

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
        """The candidate's drift (method's units): the difference's interval around it."""
        radius = normal_radius(self.variance, self.mixing, alpha)
        shift = self.feature.candidate.corrected
        return _units(self._scale, shift - radius), _units(self._scale, shift + radius)

    @property
    def excess(self) -> float:
        """The deviation in standard errors."""
        return self.deviation / math.sqrt(self.variance) if self.variance > 0 else 0.0

    def scaled(self, factor: float) -> _FeatureTest:
        return _FeatureTest(self.feature.scaled(factor), self.margin)


def _units(d: Divergence, value: float) -> float:
    """``value`` (divergence scale) in the method's units, its sign kept: the gate shows a
    corrected drift below 0 as its test uses it, not as 0."""
    return math.copysign(d.from_divergence(abs(value)), value)


def input_drift(figures: CandidateFigures, margin: float) -> GateTest | None:
    features = figures.input_drift
    if figures.input_drift_unjudged:
        return _unjudged(figures.input_drift_unjudged)
    if not features:
        return None
    tests = [_FeatureTest(f, margin) for f in features]
    # The family is every feature both references share, from the first check on: those
    # with enough rows yet are judged at their share of alpha, as they will be later.
    d = max(len(tests), figures.shared_features)
    # Settled at the step's end by the estimates, allowing for the largest of d noises.
    allowance = normal_quantile(1 - 0.5 / d) if d > 1 else 0.0
    within = all(t.excess <= allowance for t in tests)
    return _family_test(tests, _deciding(tests, GateVerdict.UNDECIDED), within, d)


def _deciding(tests: Sequence[_FeatureTest], verdict: GateVerdict) -> int:
    """The feature to show: for a fail the one with the strongest evidence of too much drift
    (the family's p-value is d times its own); for a pass the one with the weakest evidence
    of not (every feature passed at least that); undecided, the largest excess (what settles
    the step at its end)."""
    indices = range(len(tests))
    if verdict == GateVerdict.FAIL:
        return min(indices, key=lambda i: (tests[i].p_values()[0], -tests[i].excess))
    if verdict == GateVerdict.PASS:
        return max(indices, key=lambda i: (tests[i].p_values()[1], tests[i].excess))
    return max(indices, key=lambda i: tests[i].excess)


def _undecidable(tests: Sequence[_FeatureTest], d: int, alpha: float) -> str:
    """Words when no live traffic could decide the family: a feature without enough rows
    yet, or a reference profile of n rows bounding each feature's evidence ('' when more
    traffic would decide it)."""
    if len(tests) < d:
        return f"{d - len(tests)} of {d} shared features not judged yet (too few rows)"
    bounded = [
        rows
        for t in tests
        for rows in (t.feature.candidate.reference_rows, t.feature.stable.reference_rows)
        if rows is not None and math.isfinite(rows)
    ]
    if not bounded:
        return ""
    evidence = [t.scaled(_UNLIMITED).p_values() for t in tests]
    if d * min(p for p, _ in evidence) <= alpha or d * max(p for _, p in evidence) <= alpha:
        return ""
    return f"not decidable against a reference of {min(bounded):.0f} rows"


def _unjudged(why: str) -> GateTest:
    """No evidence to judge (the stable's reference unread): undecided and said, never
    passing, but holding no step: kustomize's configMapGenerator with prune removes the
    stable's old ConfigMap at the very sync that starts the candidate."""
    return GateTest(
        name="inputDrift",
        threshold=math.nan,
        estimate=math.nan,
        at_most=True,
        samples=0.0,
        unit="input rows",
        bounds=lambda alpha, interval: Bounds(math.nan, math.nan),
        grown=None,
        within=True,
        describe=lambda value, low, high: f"input drift not judged: {why}",
    )


def _family_test(tests: Sequence[_FeatureTest], index: int, within: bool, d: int) -> GateTest:
    """One gate over d features, showing feature ``index``: Bonferroni within (the gate's
    p-value is d times the smallest; it passes when every feature passes at its share)."""
    shown = tests[index]
    feature = shown.feature

    def bounds(alpha: float, interval: bool) -> Bounds:
        evidence = [t.p_values() for t in tests]
        p_fail = min(1.0, d * min(p for p, _ in evidence))
        # It passes once every feature it counts passed: one not judged yet holds it.
        p_pass = min(1.0, d * max(p for _, p in evidence)) if len(tests) == d else 1.0
        low, high = shown.interval(alpha / d) if interval else (0.0, math.inf)
        return Bounds(low, high, p_fail, p_pass)

    # Shown as tested: candidate <= stable + margin, with the stable's drift as corrected.
    threshold = _units(feature.candidate, shown.boundary)
    stable = feature.stable.estimate if feature.stable.corrected >= 0 else threshold - shown.margin

    def describe(value: float, low: float, high: float) -> str:
        more = apart(num, (low, high), threshold)
        return (
            f"input drift of {feature.name} {num(value)} [{num(low, more)}, "
            f"{num(high, more)}] vs stable's {stable:.3f} + {shown.margin:g}"
        )

    return GateTest(
        name="inputDrift",
        threshold=threshold,
        estimate=_units(feature.candidate, feature.candidate.corrected),
        at_most=True,
        samples=feature.candidate.current_rows,
        unit="input rows",
        bounds=bounds,
        grown=lambda f: _family_test([t.scaled(f) for t in tests], index, within, d),
        within=within,
        describe=describe,
        undecidable=lambda alpha: _undecidable(tests, d, alpha),
        showing=lambda verdict: _family_test(tests, _deciding(tests, verdict), within, d),
    )
