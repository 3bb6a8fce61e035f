"""Profiles built from arrays and DataFrames hold what monitoring needs."""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from vigil.core.drift import bin_index
from vigil.profile import OTHER, ProfileError, build_profile, parse_profile


def _frame(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(10, 2, n),
            "k": rng.integers(0, 5, n),
            "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "y": rng.integers(0, 3, n),
        }
    )


def test_numeric_feature_has_quantile_bins_stats_and_empty_outer_slots():
    frame = _frame()
    profile = build_profile(frame, prediction_column="y", model_name="m", model_version="2")
    x = profile.feature("x")
    assert x.type == "numeric"
    assert x.edges is not None and len(x.edges) == 11
    assert len(x.proportions) == 12
    assert x.proportions[0] == 0 and x.proportions[-1] == 0
    assert all(abs(p - 0.1) < 0.01 for p in x.proportions[1:-1])
    assert x.summary.mean == pytest.approx(frame["x"].mean())
    assert x.summary.std == pytest.approx(frame["x"].std(ddof=0))
    assert x.summary.median == pytest.approx(frame["x"].median())
    assert x.range == (frame["x"].min(), frame["x"].max())
    # The proportions are exactly what bin_index gives on the data.
    counts = np.bincount(bin_index(frame["x"].to_numpy(), x.edges), minlength=12)
    assert np.allclose(counts / len(frame), x.proportions)


def test_string_feature_is_categorical_with_top_k_and_other():
    profile = build_profile(_frame(), prediction_column="y", top_k=2)
    color = profile.feature("color")
    assert color.type == "categorical"
    assert color.categories == ("red", "green")
    assert color.slot_labels == ("red", "green", OTHER)
    assert sum(color.proportions) == pytest.approx(1.0)
    assert color.proportions[-1] == pytest.approx(0.2, abs=0.05)
    assert color.allowed == ("blue", "green", "red")


def test_feature_order_and_prediction_block_follow_the_input():
    profile = build_profile(_frame(), prediction_column="y")
    assert profile.feature_names == ("x", "k", "color")
    assert [f.index for f in profile.features] == [0, 1, 2]
    assert profile.task == "classification"
    assert profile.prediction is not None
    assert profile.prediction.categories is not None
    assert set(profile.prediction.categories) == {"0", "1", "2"}


def test_regression_prediction_gets_numeric_bins():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    profile = build_profile(x, predictions=x @ [1.0, 2.0, 3.0], feature_names=["a", "b", "c"])
    assert profile.task == "regression"
    assert profile.prediction.type == "numeric"
    assert len(profile.prediction.proportions) == 12


def test_nulls_are_counted_apart_from_bins():
    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0, None], "c": ["a", None, "b", "a", "a"]})
    profile = build_profile(frame)
    x, c = profile.feature("x"), profile.feature("c")
    assert x.null_rate == pytest.approx(0.4) and x.nullable and x.count == 3
    assert c.null_rate == pytest.approx(0.2) and c.categories[0] == "a"
    assert sum(x.proportions) == pytest.approx(1.0)


def test_constant_and_discrete_features_get_valid_edges():
    frame = pd.DataFrame({"const": [3.0] * 50, "few": [1, 2] * 25})
    profile = build_profile(frame, categorical=[])
    const = profile.feature("const")
    assert const.edges == (3.0, 3.0)
    assert const.proportions == (0.0, 1.0, 0.0)
    few = profile.feature("few")
    assert few.edges == (1.0, 1.5, 2.0) or len(few.edges) >= 2
    parse_profile(profile.to_json())  # still valid


def test_numpy_array_input_names_features_f0_fn():
    profile = build_profile(np.zeros((10, 2)) + np.arange(10).reshape(-1, 1))
    assert profile.feature_names == ("f0", "f1")
    assert profile.prediction is None


def test_bad_input_raises_profile_error():
    with pytest.raises(ProfileError, match="2-D"):
        build_profile(np.zeros((2, 2, 2)))
    with pytest.raises(ProfileError, match="names"):
        build_profile(np.zeros((3, 2)), feature_names=["a"])
    with pytest.raises(ProfileError, match="predictions"):
        build_profile(np.zeros((3, 2)), predictions=[1, 2])
    with pytest.raises(ProfileError, match="all missing"):
        build_profile(pd.DataFrame({"x": [math.nan, math.nan]}))


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([1.0, 2.0, math.inf], r"column 'x': data row 3 holds inf \(not a finite number\)"),
        ([-math.inf, 1.0, 2.0], r"column 'x': data row 1 holds -inf"),
        ([1.0, 2.0, 1e200], r"column 'x': its std does not fit a float"),
    ],
)
def test_non_finite_feature_values_are_refused_naming_the_column(values, says):
    """Infinite bin edges and means made the profile unwritable as JSON (a traceback)."""
    with pytest.raises(ProfileError, match=says):
        build_profile(pd.DataFrame({"x": values, "y": [1.0, 2.0, 3.0]}))
    with pytest.raises(ProfileError, match=says.replace("'x'", "'p'")):
        build_profile(pd.DataFrame({"y": [1.0, 2.0, 3.0], "p": values}), prediction_column="p")


def test_created_at_is_utc_iso():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    profile = build_profile(np.ones((3, 1)), created_at=when)
    assert profile.created_at == "2026-01-02T03:04:05Z"


def test_row_order_does_not_change_the_fingerprint():
    """The mean and std were summed in row order: shuffled rows gave another fingerprint."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=1000) * 1.1, "c": rng.choice(list("abc"), 1000)})
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    shuffled = frame.sample(frac=1, random_state=1).reset_index(drop=True)
    assert (
        build_profile(frame, created_at=when).fingerprint
        == build_profile(shuffled, created_at=when).fingerprint
    )


@pytest.mark.parametrize("prediction_column", [None, "a", "y"])
def test_a_frame_with_a_column_name_twice_is_refused_naming_it(prediction_column):
    """Selecting the name gave two columns: a traceback ('DataFrame' has no 'dtype')."""
    frame = pd.DataFrame([[1.0, 2.0, 0], [3.0, 4.0, 1]], columns=["a", "a", "y"])
    with pytest.raises(ProfileError, match=r"^column 'a' appears twice in the data"):
        build_profile(frame, prediction_column=prediction_column)


def test_an_empty_feature_name_is_refused():
    """The profile was written, and the sidecar and the operator rejected it."""
    with pytest.raises(ProfileError, match="feature 0 has an empty name"):
        build_profile(pd.DataFrame({"": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}))
    with pytest.raises(ProfileError, match="feature 1 has an empty name"):
        build_profile(np.ones((3, 2)), feature_names=["a", ""])
