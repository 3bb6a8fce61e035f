"""Drift statistics from bin counts agree with scipy/numpy on random data."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from vigil.core import drift


def _random_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    counts = rng.integers(0, 500, size=n).astype(float)
    counts[rng.integers(0, n)] += 1  # never all zero
    return counts


@pytest.mark.parametrize("seed", range(20))
def test_js_distance_matches_scipy_base2(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    p, q = _random_counts(rng, n), _random_counts(rng, n)
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)


def test_js_distance_is_bounded_zero_to_one():
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert drift.js_distance([3, 4, 5], [3, 4, 5]) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(20))
def test_psi_matches_numpy_formula_with_epsilon(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 30))
    ref, cur = _random_counts(rng, n), _random_counts(rng, n)
    ref[0] = 0  # an empty bin exercises the epsilon floor
    r = np.maximum(ref / ref.sum(), 1e-4)
    c = np.maximum(cur / cur.sum(), 1e-4)
    expected = np.sum((c - r) * np.log(c / r))
    assert drift.psi(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_psi_is_zero_for_identical_and_symmetric():
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert drift.psi([1, 2, 3], [3, 2, 1]) == pytest.approx(drift.psi([3, 2, 1], [1, 2, 3]))


def test_psi_reads_significant_for_one_std_shift_of_a_normal():
    rng = np.random.default_rng(7)
    ref = rng.normal(size=20_000)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
    r = np.bincount(drift.bin_index(ref, edges), minlength=edges.size + 1)
    same = np.bincount(drift.bin_index(rng.normal(size=5000), edges), minlength=edges.size + 1)
    shifted = np.bincount(
        drift.bin_index(rng.normal(loc=1.0, size=5000), edges), minlength=edges.size + 1
    )
    assert drift.psi(r, same) < 0.1
    assert drift.psi(r, shifted) > 0.2


@pytest.mark.parametrize("seed", range(10))
def test_ks_from_bins_is_a_lower_bound_of_exact_ks_and_exact_at_edges(seed):
    rng = np.random.default_rng(200 + seed)
    a = rng.normal(size=3000)
    b = rng.normal(loc=rng.uniform(-0.5, 0.5), scale=rng.uniform(0.7, 1.5), size=3000)
    edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)))
    ca = np.bincount(drift.bin_index(a, edges), minlength=edges.size + 1)
    cb = np.bincount(drift.bin_index(b, edges), minlength=edges.size + 1)
    approx = drift.ks_from_bins(ca, cb)
    exact = ks_2samp(a, b).statistic
    assert approx <= exact + 1e-12
    # At the edges themselves the gap is exact: compare with the empirical CDFs there.
    fa = np.array([np.mean(a < e) for e in edges])
    fb = np.array([np.mean(b < e) for e in edges])
    at_edges = max(np.max(np.abs(fa - fb)), abs(np.mean(a <= edges[-1]) - np.mean(b <= edges[-1])))
    assert approx == pytest.approx(at_edges, abs=1e-9)


def test_wasserstein_from_bins_equals_scipy_on_bin_centres():
    rng = np.random.default_rng(3)
    edges = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
    ref, cur = _random_counts(rng, 6), _random_counts(rng, 6)
    points = np.array([0.0, 0.5, 1.5, 3.0, 6.0, 8.0])
    expected = wasserstein_distance(points, points, ref, cur)
    assert drift.wasserstein_from_bins(ref, cur, edges) == pytest.approx(expected)
    assert drift.wasserstein_from_bins(ref, cur, edges, scale=2.0) == pytest.approx(expected / 2)


def test_drift_score_dispatches_by_method_name():
    ref, cur = [5, 10, 5], [10, 5, 5]
    assert drift.drift_score("psi", ref, cur) == drift.psi(ref, cur)
    assert drift.drift_score("jsd", ref, cur) == drift.js_distance(ref, cur)
    assert drift.drift_score("ks", ref, cur) == drift.ks_from_bins(ref, cur)
    with pytest.raises(ValueError, match="unknown drift method"):
        drift.drift_score("mmd", ref, cur)  # type: ignore[arg-type]


def test_statistics_reject_empty_windows_and_mismatched_bins():
    with pytest.raises(ValueError, match="no data"):
        drift.psi([1, 2], [0, 0])
    with pytest.raises(ValueError, match="mismatch"):
        drift.js_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        drift.psi([1, -1], [1, 1])
