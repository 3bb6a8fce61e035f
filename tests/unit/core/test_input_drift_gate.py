"""The inputDrift gate: the figures it shows are the ones its verdict used.

Each side's drift is corrected for sample size and may read below 0 (less
than noise alone gives); the test compares the candidate's with the
stable's as corrected, so status and words show them that way too.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from figures_kit import figures

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
