"""The inputDrift gate: the figures it shows are the ones its verdict used.

Each side's drift is corrected for sample size and may read below 0 (less
than noise alone gives); the test compares the candidate's with the
stable's as corrected, so status and words show them that way too. Of many
features it shows the one that decided the verdict, and it promises only
the live rows that would decide it against references of fixed size.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from figures_kit import figures

from vigil.core import drift
from vigil.core.analysis import CandidateFigures, FeatureDrift
from vigil.core.drift import Divergence
from vigil.core.judges import Gate, gates
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict

POLICY = parse_policy({"replacement": {"steps": [{"canary": {"weight": 50}}]}}, "replacement")
(CANARY,) = POLICY.steps
MARGIN = POLICY.input_drift_margin


def drifting(
    candidate: float, stable: float, method: str = "psi", rows: float = 200_000.0
) -> CandidateFigures:
    """One shared feature whose corrected divergences (JSD: distance squared) are
    ``candidate`` and ``stable`` on ``rows`` rows each."""

    def measured(corrected: float) -> Divergence:
        return Divergence(method, corrected + 9 / rows, corrected, rows, 9, rows)

    feature = FeatureDrift("f", measured(candidate), measured(stable))
    return replace(figures(requests=500), input_drift=(feature,), shared_features=1)


def input_drift(found: CandidateFigures) -> Gate:
    return next(g for g in gates(CANARY, POLICY, found) if g.name == "inputDrift")


def test_a_stable_below_noise_is_shown_as_the_verdict_compared_it() -> None:
    # The stable reads -0.02: the candidate's 0.04 is 0.06 above it, beyond the margin.
    gate = input_drift(drifting(0.04, -0.02))
    assert gate.verdict == GateVerdict.FAIL and not gate.within
    assert gate.value > gate.threshold == -0.02 + MARGIN
    assert gate.low is not None and gate.high is not None
    assert gate.threshold < gate.low <= gate.value <= gate.high
    assert f"vs stable's -0.020 + {MARGIN:g}" in gate.text


@pytest.mark.parametrize("method", ["psi", "jsd"])
@pytest.mark.parametrize(
    ("candidate", "stable"),
    [(0.04, -0.02), (0.02, -0.02), (0.06, 0.0), (0.03, 0.01), (0.001, -0.001), (0.0, -0.01)],
)
def test_the_estimate_is_within_the_threshold_exactly_when_the_test_says_so(
    method: str, candidate: float, stable: float
) -> None:
    gate = input_drift(drifting(candidate, stable, method))
    assert gate.within == (gate.value <= gate.threshold)
    assert gate.low is not None and gate.high is not None
    assert gate.low <= gate.value <= gate.high


def test_without_the_stables_reference_the_gate_says_why_and_holds_no_step() -> None:
    why = "the stable's reference ConfigMap ref-v1 was not found"
    unjudged = replace(figures(requests=500), input_drift_unjudged=why)
    gate = input_drift(unjudged)
    assert gate.verdict == GateVerdict.UNDECIDED and gate.within
    assert (gate.low, gate.high, gate.needed) == (None, None, None)
    assert gate.text == f"input drift not judged: {why}"


# -- a family of features: the one shown is the one that decided ---------------------------------


def of_features(*features: FeatureDrift) -> CandidateFigures:
    return replace(figures(requests=5000), input_drift=features, shared_features=len(features))


def feature(name: str, candidate: float, rows: float, stable: float = 0.0) -> FeatureDrift:
    """Corrected PSIs ``candidate`` and ``stable`` on ``rows`` rows each."""
    return FeatureDrift(
        name,
        Divergence("psi", candidate, candidate, rows, 9, rows),
        Divergence("psi", stable, stable, rows, 9, rows),
    )


def test_a_failed_family_shows_the_feature_whose_evidence_failed_it() -> None:
    # Both exceed by about 4.5 standard errors; only the many rows of big_feature are
    # strong evidence (p 0.0004 against 0.21), and the gate fails on them.
    big, small = feature("big_feature", 0.0705, 10_000), feature("small_feature", 0.575, 60)
    gate = input_drift(of_features(big, small))
    assert gate.verdict == GateVerdict.FAIL
    assert gate.text.startswith("input drift of big_feature 0.070 ")
    assert (gate.value, gate.samples) == (pytest.approx(0.0705), 10_000)
    assert gate.low is not None and gate.low > gate.threshold


def test_a_passed_family_shows_the_feature_with_the_weakest_evidence_of_passing() -> None:
    # many_rows is further below its threshold in standard errors (6.3 against 6.0), yet
    # its evidence is the weaker (p 1.2e-6 against 1.6e-7): it bounds the pass.
    many, few = feature("many_rows", 0.04937, 2e7), feature("few_rows", -0.0126, 2000)
    gate = input_drift(of_features(many, few))
    assert gate.verdict == GateVerdict.PASS
    assert gate.text.startswith("input drift of many_rows 0.049 ")
    assert gate.high is not None and gate.high < gate.threshold


def test_an_undecided_family_shows_the_largest_excess() -> None:
    calm, loud = feature("calm", 0.01, 300), feature("loud", 0.08, 300)
    gate = input_drift(of_features(calm, loud))
    assert gate.verdict == GateVerdict.UNDECIDED
    assert gate.text.startswith("input drift of loud 0.080 ")


# -- more rows against a reference profile of fixed size ------------------------------------------

#: A reference profile's proportions: ten equally likely bins, from REFERENCE_ROWS rows.
PROFILE = np.full(10, 0.1)
REFERENCE_ROWS = 1000.0


def against_reference(rows: float, tilt: float, reference_rows: float = REFERENCE_ROWS) -> Gate:
    """``rows`` live rows on each side; the candidate's proportions tilted by up to ``tilt``."""
    live = (PROFILE + np.linspace(-tilt, tilt, 10)) * rows
    candidate = drift.divergence("psi", PROFILE, live, reference_rows=reference_rows)
    stable = drift.divergence("psi", PROFILE, PROFILE * rows, reference_rows=reference_rows)
    assert candidate is not None and stable is not None
    return input_drift(
        replace(
            figures(requests=round(rows)),
            input_drift=(FeatureDrift("x", candidate, stable),),
            shared_features=1,
        )
    )


def test_more_live_rows_never_make_a_reference_more_exact() -> None:
    live = PROFILE * 2000.0
    measured = drift.divergence("psi", PROFILE, live, reference_rows=REFERENCE_ROWS)
    assert measured is not None and measured.rows == pytest.approx(2000 * 1000 / 3000)
    assert measured.scaled(1e9).rows == pytest.approx(REFERENCE_ROWS)
    assert measured.scaled(1e9).current_rows == 2e12
    exact = drift.divergence("psi", PROFILE, live, reference_rows=math.inf)
    assert exact is not None and exact.scaled(10).rows == pytest.approx(20_000)
    two_samples = drift.divergence("psi", live, live)
    assert two_samples is not None and two_samples.scaled(10).rows == pytest.approx(10_000)


def test_the_live_rows_said_to_be_needed_decide_the_gate() -> None:
    gate = against_reference(2000.0, 0.052)
    assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is not None
    assert against_reference(2000.0 + gate.needed, 0.052).verdict == GateVerdict.FAIL
    fewer = against_reference(2000.0 + 0.9 * gate.needed, 0.052)
    assert fewer.verdict == GateVerdict.UNDECIDED


@pytest.mark.parametrize("tilt", [0.035, 0.05])
def test_a_reference_too_small_to_decide_says_no_traffic_would(tilt: float) -> None:
    gate = against_reference(2000.0, tilt)
    assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is None
    assert gate.text.endswith(
        "undecided: 2000 input rows, not decidable against a reference of 1000 rows"
    )
    assert against_reference(1e7, tilt).verdict == GateVerdict.UNDECIDED


def test_an_exact_reference_leaves_more_traffic_to_decide() -> None:
    gate = against_reference(2000.0, 0.035, reference_rows=math.inf)
    assert gate.needed is not None and "not decidable" not in gate.text
