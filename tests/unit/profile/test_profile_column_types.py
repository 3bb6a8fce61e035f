"""Column types as pandas and pyarrow hand them over: each profiled as what it holds."""

import decimal
import warnings

import numpy as np
import pandas as pd
import pytest

from vigil.profile import ProfileError, ProfileWarning, build_profile


@pytest.mark.parametrize(
    ("dtype", "values", "kind"),
    [
        ("boolean", [True, None, False, True], "categorical"),
        ("bool[pyarrow]", [True, None, False, True], "categorical"),
        ("string", ["a", None, "b", "a"], "categorical"),
        ("string[pyarrow]", ["a", None, "b", "a"], "categorical"),
        ("Int64", [1, None, 2, 3], "numeric"),
        ("Float64", [1.5, None, 2.5, 3.5], "numeric"),
    ],
)
def test_missing_values_of_nullable_dtypes_are_missing_not_a_category(dtype, values, kind):
    """pd.NA of a nullable boolean became the category "<NA>": the profile's own data drifted."""
    frame = pd.DataFrame({"x": pd.array(values, dtype=dtype), "p": pd.array(values, dtype=dtype)})
    profile = build_profile(frame, prediction_column="p", task="classification")
    for block in (profile.feature("x"), profile.prediction):
        assert block.null_rate == pytest.approx(0.25) and block.count == 3
        assert "<NA>" not in (block.categories or ()) and "<NA>" not in (block.allowed or ())
    assert profile.feature("x").type == kind


def test_a_nullable_boolean_column_keeps_the_plain_boolean_categories():
    plain = build_profile(pd.DataFrame({"x": [True, False, True]}))
    nullable = build_profile(pd.DataFrame({"x": pd.array([True, False, True, None], "boolean")}))
    assert nullable.feature("x").categories == plain.feature("x").categories == ("true", "false")
    assert nullable.feature("x").allowed == ("false", "true")


def test_decimal_values_are_numbers():
    """pyarrow's decimal128 reaches pandas as Decimal objects: they were profiled as categories."""
    rng = np.random.default_rng(5)
    prices = [decimal.Decimal(f"{x:.2f}") for x in rng.lognormal(3, 1, 500)]
    prices[3] = None
    profile = build_profile(pd.DataFrame({"price": pd.Series(prices, dtype=object)}))
    price = profile.feature("price")
    assert price.type == "numeric" and price.null_rate == pytest.approx(1 / 500)
    assert len(price.edges) == 11
    assert price.summary.max == pytest.approx(float(max(p for p in prices if p is not None)))


def test_a_numeric_column_with_a_few_words_in_it_is_refused_naming_them():
    """A stray "?" made the whole column categorical: unmonitored as a number, silently."""
    values = [str(v) for v in np.linspace(0.0, 1.0, 50)]
    values[7] = values[20] = "?"
    values[9] = "n/a"
    with pytest.raises(ProfileError) as raised:
        build_profile(pd.DataFrame({"x": values}))
    message = str(raised.value)
    assert "column 'x'" in message and "'?' (2 rows)" in message and "'n/a' (1 row)" in message
    assert "categorical" in message and "missing" in message
    # Declared categorical, it is one; text that is mostly words stays categorical as before.
    assert build_profile(pd.DataFrame({"x": values}), categorical=["x"]).feature("x").allowed
    words = build_profile(pd.DataFrame({"x": ["red", "blue", "3"] * 5}))
    assert words.feature("x").type == "categorical"


def test_strings_that_are_all_numbers_stay_categorical():
    """Typed text (zip codes kept as strings) is the user's choice, not a parsing accident."""
    profile = build_profile(pd.DataFrame({"zip": ["02139", "10001", "02139"]}))
    assert profile.feature("zip").type == "categorical"


def test_an_unnamed_csv_index_column_is_refused_as_a_feature():
    """df.to_csv() writes the index as a first column without a name: read back as
    "Unnamed: 0" it became a feature the model does not take."""
    frame = pd.DataFrame({"Unnamed: 0": range(20), "a": np.arange(20.0), "y": [0, 1] * 10})
    with pytest.raises(ProfileError, match=r"'Unnamed: 0'.*index=False"):
        build_profile(frame, prediction_column="y")
    profile = build_profile(frame.drop(columns="Unnamed: 0"), prediction_column="y")
    assert profile.feature_names == ("a",)


def test_a_range_too_narrow_for_float32_is_warned_about_naming_the_feature():
    """The sidecar compares as float32: edges 1e6 .. 1e6 + 0.01 are one number there."""
    rng = np.random.default_rng(0)
    narrow = 1e6 + rng.random(500) * 0.01
    with pytest.warns(ProfileWarning, match=r"column 'narrow'.*float32") as caught:
        profile = build_profile(pd.DataFrame({"narrow": narrow, "wide": rng.normal(size=500)}))
    assert len(caught) == 1
    # Binning is unchanged: the reference itself falls in a single slot.
    assert profile.feature("narrow").proportions[-2] == 1.0


def test_ordinary_and_constant_features_raise_no_warning():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"x": rng.normal(size=300), "const": np.full(300, 3.7), "k": rng.integers(0, 3, 300)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_profile(frame.astype(np.float32))
        build_profile(frame)


def test_a_sparse_column_is_profiled_as_the_dense_column_it_stands_for():
    """A Sparse float column raised AttributeError (a SparseDtype has no itemsize)."""
    values = [0.0, 0.0, 1.0, 2.5, np.nan, 0.0, 4.0, 0.0]
    sparse = pd.DataFrame(
        {"x": pd.arrays.SparseArray(values), "k": pd.arrays.SparseArray([0, 1] * 4)}
    )
    dense = pd.DataFrame({"x": values, "k": [0, 1] * 4})
    assert build_profile(sparse).features == build_profile(dense).features


#: Parquet's nested types, made by pyarrow (imported by the test).
_NESTED = {
    "list": lambda pa: pa.array([[1, 2], [3], None, [4, 5]]),
    "struct": lambda pa: pa.array([{"a": 1.0}, {"a": 2.0}, None, {"a": 3.0}]),
    "map": lambda pa: pa.array([[("a", 1)], [], None, []], pa.map_(pa.string(), pa.int64())),
}


@pytest.mark.parametrize("kind", sorted(_NESTED))
def test_list_struct_and_map_columns_are_refused_naming_the_column(tmp_path, kind):
    """They were keyed "[1 2]" or "{'a': 1.0}", text no JSON value matches (the sidecar
    counts a JSON list or object as a type violation): a feature always out of range."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"nested": _NESTED[kind](pa), "x": [1.0, 2.0, 3.0, 4.0]}), tmp_path / "d.pq"
    )
    frame = pd.read_parquet(tmp_path / "d.pq")
    with pytest.raises(ProfileError, match=r"column 'nested' holds .*--features"):
        build_profile(frame)
    with pytest.raises(ProfileError, match=r"column 'nested'"):
        build_profile(frame, categorical=["nested"])
    assert build_profile(frame[["x"]]).feature_names == ("x",)
