"""Prediction shift from each side's mean and standard deviation.

Without bins both revisions share, the shift is the divergence between the two
normals the sidecars' sums describe. Those are not counted samples: the
estimate's noise is that of the means and standard deviations, so a shift reads
what it is at a few hundred predictions as at a hundred thousand.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from figures_kit import figures

from vigil.core.analysis import MOMENTS, prediction_shift
from vigil.core.drift import Divergence
from vigil.core.judges import Gate, gates
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict
from vigil.core.window import RevisionWindow

POLICY = parse_policy({"replacement": {"steps": [{"canary": {"weight": 50}}]}}, "replacement")
(CANARY,) = POLICY.steps
LIMIT = POLICY.max_prediction_shift
#: PSI between N(0, 1) and N(0.5, 1) over the deciles of N(0, 1).
HALF_SD_PSI = 0.2377


def exact(n: float, mean: float, std: float = 1.0) -> RevisionWindow:
    """A window whose sums have exactly these moments (no sampling noise)."""
    return RevisionWindow(
        predictions=n, prediction_sum=n * mean, prediction_squares_sum=n * (std * std + mean * mean)
    )


def drawn(values: np.ndarray) -> RevisionWindow:
    return RevisionWindow(
        predictions=float(values.size),
        prediction_sum=float(values.sum()),
        prediction_squares_sum=float((values * values).sum()),
    )


def shift_of(candidate: RevisionWindow, stable: RevisionWindow, method: str = "psi") -> Divergence:
    found = prediction_shift(candidate, stable, method)  # type: ignore[arg-type]
    assert found is not None and found.basis == MOMENTS and found.divergence is not None
    return found.divergence


def gate_of(shift: Divergence) -> Gate:
    seen = replace(figures(requests=500), prediction_shift=shift, prediction_shift_basis=MOMENTS)
    return next(g for g in gates(CANARY, POLICY, seen) if g.name == "predictionShift")


def draws(n: int, mean: float, std: float, seed: int, times: int) -> list[Divergence]:
    rng = np.random.default_rng(seed)
    return [
        shift_of(drawn(rng.normal(mean, std, n)), drawn(rng.normal(0.0, 1.0, n)))
        for _ in range(times)
    ]


# -- the estimate -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [200.0, 500.0, 100_000.0])
def test_exact_moments_read_the_true_divergence_at_any_number_of_predictions(n: float) -> None:
    shift = shift_of(exact(n, 0.5), exact(n, 0.0))
    assert shift.raw == pytest.approx(HALF_SD_PSI, abs=1e-4)
    # Only the noise the moments of n predictions would carry is taken off, never 9 / rows.
    assert shift.estimate == pytest.approx(HALF_SD_PSI, abs=0.02)


@pytest.mark.parametrize(("mean", "true"), [(0.0, 0.0), (0.5, HALF_SD_PSI)])
def test_the_estimate_is_unbiased_over_draws_of_a_hundred_predictions(
    mean: float, true: float
) -> None:
    found = [d.corrected for d in draws(100, mean, 1.0, seed=11, times=400)]
    assert np.mean(found) == pytest.approx(true, abs=0.02)


@pytest.mark.parametrize("method", ["psi", "jsd"])
def test_a_wider_candidate_shifts_as_far_as_a_narrower_one_reads(method: str) -> None:
    wider = shift_of(exact(300.0, 0.0, 1.5), exact(300.0, 0.0), method)
    narrower = shift_of(exact(300.0, 0.0, 0.5), exact(300.0, 0.0), method)
    assert wider.estimate > 0 and narrower.estimate > 0
    assert math.isfinite(wider.bounds(0.01, LIMIT).high)


# -- the verdicts -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [50, 200])
def test_no_shift_is_never_failed_at_the_gates_level(n: int) -> None:
    verdicts = [gate_of(d).verdict for d in draws(n, 0.0, 1.0, seed=n, times=300)]
    assert GateVerdict.FAIL not in verdicts


@pytest.mark.parametrize("n", [50, 300])
def test_a_shift_at_the_threshold_is_claimed_beyond_it_at_most_alpha_of_the_time(n: int) -> None:
    alpha = 0.1
    found = draws(n, 0.5, 1.0, seed=3 + n, times=400)
    beyond = [d.bounds(alpha, HALF_SD_PSI, interval=False).p_above <= alpha for d in found]
    assert np.mean(beyond) <= alpha


@pytest.mark.parametrize("n", [200.0, 300.0, 500.0])
def test_a_half_sd_shift_at_a_few_hundred_predictions_is_not_within(n: float) -> None:
    gate = gate_of(shift_of(exact(n, 0.5), exact(n, 0.0)))
    assert not gate.within and gate.value > LIMIT
    assert gate.verdict != GateVerdict.PASS


def test_a_half_sd_shift_is_never_passed_over_draws_of_three_hundred_predictions() -> None:
    verdicts = [gate_of(d).verdict for d in draws(300, 0.5, 1.0, seed=5, times=200)]
    assert GateVerdict.PASS not in verdicts


def test_the_predictions_said_to_be_needed_decide_a_half_sd_shift() -> None:
    gate = gate_of(shift_of(exact(300.0, 0.5), exact(300.0, 0.0)))
    assert gate.verdict == GateVerdict.UNDECIDED and gate.needed is not None
    more = 300.0 + gate.needed
    assert gate_of(shift_of(exact(more, 0.5), exact(more, 0.0))).verdict == GateVerdict.FAIL
