"""Numeric features with few values, or one value filling many rows, get bins that see drift.

Only the distinct quantiles were kept and the last inner bin holds ``edges[-1]``: a 0/1 flag
got one bin (drift never judged), a 1-5 rating had 4 and 5 in one bin, and a mostly-zero
feature had the zeros and every other value in one bin (PSI 0 on traffic that shifted).
Live values are counted here as the sidecar counts them.
"""

import numpy as np
import pandas as pd
import pytest

from vigil.core.drift import divergence
from vigil.profile import build_profile
from vigil.profile.model import FeatureProfile
from vigil.sidecar.monitor import _NumericCounts

N = 10_000


def _sent(feature: FeatureProfile, values: np.ndarray) -> list[int]:
    """The sidecar's counts of ``values`` as a client sends them (JSON numbers)."""
    counts = _NumericCounts(feature)
    counts.add(values.tolist())
    return counts.bins


def _psi(feature: FeatureProfile, values: np.ndarray) -> float | None:
    judged = divergence("psi", feature.proportions, _sent(feature, values), reference_rows=N)
    return None if judged is None else judged.corrected


def _reference(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "is_member": (rng.random(N) < 0.3).astype(int),
            "rating": rng.choice([1, 2, 3, 4, 5], N, p=[0.1, 0.1, 0.2, 0.3, 0.3]),
            "refund": np.where(rng.random(N) < 0.95, 0.0, rng.exponential(50, N)),
            "capped": np.minimum(rng.normal(85, 15, N), 100.0),
        }
    )


def test_a_flag_gets_a_bin_per_value_and_its_shift_is_judged():
    flag = build_profile(_reference()).feature("is_member")
    assert flag.edges == (0.0, 0.5, 1.0)
    assert flag.proportions[1] == pytest.approx(0.7, abs=0.02)
    shifted = (np.random.default_rng(1).random(N) < 0.9).astype(int)
    assert _psi(flag, shifted) > 1.0


def test_a_rating_gets_a_bin_per_value_so_fours_becoming_fives_is_drift():
    reference = _reference()
    rating = build_profile(reference).feature("rating")
    assert rating.edges == (1.0, 1.5, 2.5, 3.5, 4.5, 5.0)
    live = np.where(reference["rating"] == 4, 5, reference["rating"]).astype(int)
    assert _psi(rating, live) > 1.0


def test_a_mostly_zero_feature_keeps_its_zeros_in_a_bin_of_their_own():
    reference = _reference()
    refund = build_profile(reference).feature("refund")
    smallest_refund = reference["refund"][reference["refund"] > 0].min()
    assert refund.edges[0] == 0.0 and 0.0 < refund.edges[1] < smallest_refund
    assert refund.proportions[1] == pytest.approx((reference["refund"] == 0).mean())
    rng = np.random.default_rng(2)
    live = np.where(rng.random(N) < 0.5, 0.0, rng.uniform(1, 40, N))
    assert _psi(refund, live) > 1.0


def test_a_capped_feature_keeps_the_cap_in_its_last_bin_alone():
    """The last bin holds its upper edge: the cap (a sixth of the rows) shared it."""
    reference = _reference()
    capped = build_profile(reference).feature("capped")
    below_cap = reference["capped"][reference["capped"] < 100].max()
    assert below_cap < capped.edges[-2] < 100.0 == capped.edges[-1]
    assert capped.proportions[-2] == pytest.approx((reference["capped"] == 100).mean())
    assert len(capped.edges) <= 11  # still at most the bins asked for


def test_rows_drawn_from_the_training_data_read_no_drift():
    reference = _reference()
    profile = build_profile(reference)
    for seed in range(3):
        drawn = reference.sample(N, replace=True, random_state=seed)
        for feature in profile.features:
            values = drawn[feature.name].to_numpy()
            assert abs(_psi(feature, values)) < 0.01, feature.name


def test_continuous_features_keep_their_quantile_edges():
    x = np.random.default_rng(3).lognormal(3, 2, 5000)
    edges = build_profile(pd.DataFrame({"x": x})).feature("x").edges
    assert edges == tuple(np.quantile(x, np.linspace(0.0, 1.0, 11)))
