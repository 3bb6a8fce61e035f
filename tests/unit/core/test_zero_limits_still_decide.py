"""A limit of 0 still decides (vigil.core.drift, vigil.core.judges.performance).

The normal mixture's scale was the threshold's, floored at 1e-4 (a variance of
1e-8): with ``maxPredictionShift: 0`` or ``maxMAE: 0`` a candidate plainly
beyond was held undecided to progressDeadline and Failed, never rolled back.
The scale is now floored by a fixed figure in the metric's units (a PSI of
0.01; 0.001 in the metric's units for performance), chosen before any data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from figures_kit import figures, scored

from vigil.core import drift
from vigil.core.judges import gates
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict

STEPS = {"steps": [{"canary": {"weight": 50, "duration": "2m"}}]}
TWEAK = parse_policy({"tweak": STEPS}, "tweak")


def shift_gate(limit: float, rows: int, candidate_share: float = 0.6):
    stable = np.array([rows / 3] * 3)
    rest = (1 - candidate_share) / 2
    candidate = np.array([candidate_share, rest, rest]) * rows
    shift = drift.divergence("psi", stable, candidate)
    policy = replace(TWEAK, max_prediction_shift=limit)
    evidence = replace(figures(requests=rows), prediction_shift=shift)
    return next(g for g in gates(policy.steps[0], policy, evidence) if g.name == "predictionShift")


def test_a_prediction_shift_limit_of_0_fails_a_shifted_candidate() -> None:
    gate = shift_gate(0.0, 1000)  # a PSI of 0.29 on 1000 predictions a side
    assert gate.verdict == GateVerdict.FAIL, gate.text


def test_a_prediction_shift_limit_of_0_never_passes_nor_fails_identical_ones() -> None:
    gate = shift_gate(0.0, 1000, candidate_share=1 / 3)
    assert gate.verdict == GateVerdict.UNDECIDED, gate.text


def test_an_mae_limit_of_0_fails_a_candidate_that_errs() -> None:
    policy = parse_policy({"tweak": STEPS, "analysis": {"performance": {"maxMAE": 0}}}, "tweak")
    evidence = replace(figures(requests=500), realized=scored(10000, 1.0, 0.5))
    gate = next(
        g for g in gates(policy.steps[0], policy, evidence) if g.name == "realizedPerformance"
    )
    assert gate.verdict == GateVerdict.FAIL, gate.text
    assert "sits at the threshold" not in gate.text
