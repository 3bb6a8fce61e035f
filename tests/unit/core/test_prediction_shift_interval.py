"""predictionShift's interval is the set of values its test keeps (vigil.core.drift).

Each value is tested with a mixture whose scale grows with it, so the kept
values need not form one stretch: a bisection assuming one turn skipped the
stretch around the threshold and showed "prediction shift 0.643 [0.224,
1.703] vs 0.010, undecided". Searched from the verdict's own mixture first,
the interval holds the threshold exactly when the gate is undecided, and
every kept value (checked on a fine grid of the test itself).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigil.core import drift
from vigil.core.stats import normal_log_mixture

#: The review's case: 200 stable and 200 candidate predictions over 9 classes.
STABLE = [50, 43, 41, 20, 14, 1, 12, 14, 5]
CANDIDATE = [21, 19, 21, 32, 33, 17, 22, 13, 22]


def kept(shift: drift.Divergence, alpha: float, limit: float) -> list[float]:
    """The values the test at ``alpha`` does not reject, on a fine grid (divergence scale)."""
    tested, level = shift.to_divergence(limit), math.log(1 / alpha)
    top = max(3 * max(shift.corrected, 0.0), 3 * tested, 0.05)
    return [
        x
        for x in [*np.linspace(0.0, top, 1500), tested]
        if normal_log_mixture(shift.corrected - x, shift.variance(x), shift._mixing(x, tested))
        < level
    ]


def test_an_undecided_shift_shows_an_interval_holding_its_threshold() -> None:
    shift = drift.divergence("psi", STABLE, CANDIDATE)
    assert shift is not None
    bounds = shift.bounds(0.0025, 0.01)
    assert bounds.p_above > 0.0025 and bounds.p_below > 0.0025  # undecided
    assert bounds.low <= 0.01 <= bounds.high


def random_shifts(count: int, seed: int):
    rng = np.random.default_rng(seed)
    while count:
        k = int(rng.integers(2, 13))
        n1, n2 = (int(rng.choice([20, 60, 200, 1000, 10**4])) for _ in range(2))
        p = rng.dirichlet(np.ones(k))
        q = p if rng.random() < 0.4 else rng.dirichlet(np.ones(k) * rng.choice([1, 5, 50]))
        method = str(rng.choice(["psi", "jsd"]))
        shift = drift.divergence(method, rng.multinomial(n1, p), rng.multinomial(n2, q))
        if shift is None:
            continue
        count -= 1
        yield (
            shift,
            float(rng.choice([0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.5])),
            float(rng.choice([0.0005, 0.0025, 0.01])),
        )


@pytest.mark.slow
def test_the_interval_holds_the_threshold_exactly_when_the_gate_is_undecided() -> None:
    for shift, limit, alpha in random_shifts(1500, seed=1):
        bounds = shift.bounds(alpha, limit)
        undecided = min(bounds.p_above, bounds.p_below) > alpha
        assert undecided == (bounds.low <= limit <= bounds.high), (shift, limit, alpha, bounds)


@pytest.mark.slow
def test_the_interval_holds_every_value_the_test_keeps() -> None:
    for shift, limit, alpha in random_shifts(200, seed=2):
        bounds = shift.bounds(alpha, limit)
        values = kept(shift, alpha, limit)
        low, high = shift.to_divergence(bounds.low), shift.to_divergence(bounds.high)
        slack = 1e-6 * max(values, default=0.0) + 1e-12
        assert not values or (min(values) >= low - slack and max(values) <= high + slack), (
            shift,
            limit,
            alpha,
            (min(values), max(values)),
            (low, high),
        )
