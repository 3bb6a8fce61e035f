"""Binning follows one documented edge rule and counts merge across replicas."""

import numpy as np
import pytest

from vigil.core import drift


def test_bin_index_uses_lower_inclusive_bins_with_closed_last_bin():
    edges = [0.0, 1.0, 2.0, 3.0]
    values = [-0.5, 0.0, 0.5, 1.0, 2.999, 3.0, 3.5, float("nan")]
    assert drift.bin_index(values, edges).tolist() == [0, 1, 1, 2, 3, 3, 4, -1]


def test_bin_index_matches_numpy_histogram_inside_the_range():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000)
    edges = np.quantile(x[:1000], np.linspace(0, 1, 11))
    idx = drift.bin_index(x, edges)
    inside = (x >= edges[0]) & (x <= edges[-1])
    hist, _ = np.histogram(x[inside], bins=edges)
    counts = np.bincount(idx, minlength=edges.size + 1)
    assert counts[1:-1].tolist() == hist.tolist()
    assert counts[0] == np.sum(x < edges[0])
    assert counts[-1] == np.sum(x > edges[-1])


def test_bin_index_constant_feature_has_one_inner_bin():
    assert drift.bin_index([4.0, 5.0, 5.0, 6.0], [5.0, 5.0]).tolist() == [0, 1, 1, 2]


def test_merge_counts_sums_replicas_slot_by_slot():
    merged = drift.merge_counts([[1, 2, 3], [0, 5, 1], np.array([2.0, 0.0, 0.0])])
    assert merged.tolist() == [3.0, 7.0, 4.0]


def test_merge_counts_equals_binning_the_union():
    rng = np.random.default_rng(5)
    edges = np.linspace(-2, 2, 9)
    parts = [rng.normal(size=n) for n in (100, 250, 17)]
    per_replica = [np.bincount(drift.bin_index(p, edges), minlength=10) for p in parts]
    union = np.bincount(drift.bin_index(np.concatenate(parts), edges), minlength=10)
    assert drift.merge_counts(per_replica).tolist() == union.tolist()


def test_merge_counts_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="mismatch"):
        drift.merge_counts([[1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match="nothing"):
        drift.merge_counts([])


def test_merge_category_counts_folds_unknown_labels_into_other():
    merged = drift.merge_category_counts(
        [{"a": 3, "b": 1}, {"a": 1, "z": 2, "__other__": 1}], categories=["a", "b", "c"]
    )
    assert merged == {"a": 4.0, "b": 1.0, "c": 0.0, "__other__": 3.0}
    assert list(merged) == ["a", "b", "c", "__other__"]


def test_proportions_sum_to_one():
    assert drift.proportions([1, 1, 2]).tolist() == [0.25, 0.25, 0.5]


def test_bin_index_accepts_a_single_value():
    assert drift.bin_index(5.0, [1.0, 2.0, 5.0]).tolist() == [2]


class TestRebin:
    """Counts in one profile's bins moved onto another's: the rollout's common basis."""

    def test_the_same_edges_give_the_same_counts(self):
        counts = [3.0, 10.0, 20.0, 5.0, 1.0]
        assert drift.rebin(counts, [0, 1, 2, 3], [0, 1, 2, 3]).tolist() == counts

    def test_quantile_bins_of_another_sample_match_direct_counting_closely(self):
        rng = np.random.default_rng(0)
        x = rng.normal(150, 55, 30_000)
        own = np.quantile(x[:5000], np.linspace(0, 1, 11))
        other = np.quantile(x[5000:10_000], np.linspace(0, 1, 11))
        live = x[10_000:]
        counts = np.bincount(drift.bin_index(live, own), minlength=12)
        moved = drift.rebin(counts, own, other)
        direct = np.bincount(drift.bin_index(live, other), minlength=12)
        assert moved.sum() == pytest.approx(live.size)
        # Inner bins within 2 % of their share; the outer tails are guesses (see analysis).
        assert np.abs(moved[2:-2] - direct[2:-2]).max() < 0.02 * live.size

    def test_a_constant_profiles_single_bin_is_a_point_mass(self):
        edges = [0.0, 1.0, 2.0, 3.0]
        assert drift.rebin([0, 50, 0], [1.5, 1.5], edges).tolist() == [0, 0, 50, 0, 0]
        assert drift.rebin([0, 50, 0], [3.0, 3.0], edges).tolist() == [0, 0, 0, 50, 0]
        assert drift.rebin([0, 50, 0], [9.0, 9.0], edges).tolist() == [0, 0, 0, 0, 50]

    def test_out_of_range_counts_sit_at_the_nearest_edge(self):
        # underflow just below 0, overflow just above 2
        moved = drift.rebin([10, 0, 0, 5], [0, 1, 2], [-1, 0.5, 3])
        assert moved.tolist() == [0, 10, 5, 0]
        assert drift.rebin([10, 0, 0, 5], [0, 1, 2], [0.5, 1, 1.5]).tolist() == [10, 0, 0, 5]

    def test_mismatched_slots_are_refused(self):
        with pytest.raises(ValueError, match="slots need"):
            drift.rebin([1, 2, 3], [0, 1, 2], [0, 1])


def test_a_value_and_an_edge_equal_in_float32_share_a_bin():
    # A float32 training column widened to float64 has an edge at 0.30000001192092896; a
    # JSON client sends 0.3 (and an FP32 tensor, 0.3f, against a float64 edge of 0.3).
    # Compared exactly, every such value fell a bin low: false drift, out of range.
    f32 = float(np.float32(0.3))
    assert drift.bin_index([0.3, f32, 0.2999], [0.1, f32, 0.5]).tolist() == [2, 2, 1]
    assert drift.bin_index([0.3, f32, 0.3001], [0.1, 0.3, 0.5]).tolist() == [2, 2, 2]
    # The last edge is inside: so is a value equal to it in float32.
    assert drift.bin_index([0.5, float(np.float32(0.5)), 0.5001], [0.1, 0.5]).tolist() == [1, 1, 2]
    top = float(np.float32(0.7))
    assert drift.bin_index([0.7, 0.69], [0.1, top]).tolist() == [1, 1]


def test_a_last_edge_half_way_between_two_float32_values_is_inside():
    # 20240101 (a YYYYMMDD feature) lies half-way between two float32 values.
    assert drift.bin_index([20240101.0], [20231201.0, 20240101.0]).tolist() == [1]
    assert drift.bin_index([16777217.0], [16777217.0, 16777217.0]).tolist() == [1]
