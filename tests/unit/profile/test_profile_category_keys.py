"""One value, one category key, whatever its type: in the profile and in the sidecar alike.

A Decimal or float32 column declared categorical was keyed "11.00" and
"0.10000000149011612" while clients send 11 and 0.1 (keyed "11" and "0.1" by the
sidecar): every live value counted as unseen, drift alarmed on identical data.
"""

import decimal
import json

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from vigil.profile import build_profile, category_key, validation_score
from vigil.profile.model import to_float32
from vigil.sidecar.config import Settings
from vigil.sidecar.monitor import Exchange, Monitor, ReferenceState

D = decimal.Decimal


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ((11, 11.0, D("11"), D("11.00"), D("1.1E+1"), np.int64(11), np.float32(11)), "11"),
        ((2.5, D("2.5"), D("2.50"), np.float32(2.5), np.float16(2.5)), "2.5"),
        ((0.1, D("0.1"), D("0.100"), np.float32(0.1), np.float16(0.1)), "0.1"),
        ((0, -0.0, D("-0"), D("0E-3"), np.uint8(0)), "0"),
        ((True, np.bool_(True)), "true"),
    ],
)
def test_the_same_number_gets_the_same_key_whatever_its_type(values, key):
    assert [category_key(v) for v in values] == [key] * len(values)


def test_a_decimal_or_numpy_nan_is_missing_and_text_stays_text():
    assert category_key(D("NaN")) is None and category_key(D("sNaN")) is None
    assert category_key(np.float32("nan")) is None
    assert category_key(D("Infinity")) == category_key(float("inf")) == "inf"
    assert category_key(np.str_("02134")) == "02134" and category_key("0.10") == "0.10"


@pytest.mark.slow
def test_a_float32_is_keyed_by_its_shortest_decimal_as_numpy_prints_it():
    """The rule: the fewest digits that read back as the float32 (of those, the nearest)."""
    bits = np.random.default_rng(0).integers(0, 2**32, 20_000, dtype=np.uint64)
    singles = bits.astype(np.uint32).view(np.float32)
    powers = np.float32(2.0) ** np.arange(-140, 24, dtype=np.float32)  # uneven gaps
    for single in (*singles, *powers, *np.nextafter(powers, np.float32(1e9))):
        if np.isfinite(single) and not float(single).is_integer():
            assert category_key(single) == repr(float(str(single))), repr(single)


def test_to_float32_reads_a_float64_as_the_float32_it_rounds_to():
    assert to_float32(0.1) == to_float32(0.10000000149011612) == float(np.float32(0.1))
    assert to_float32(2.0) == 2.0 and to_float32(1e300) is None


def _monitor(profile):
    return Monitor(
        Settings(max_features=20),
        base={"model": "m", "version": "1", "revision": "r", "role": "stable"},
        registry=CollectorRegistry(),
        reference=ReferenceState(profile, "ok"),
    )


def _request(rows):
    doc = {"inputs": [{"name": "x", "shape": [len(rows), 2], "datatype": "FP64", "data": rows}]}
    return Exchange(json.dumps(doc).encode(), "application/json", None, "")


def test_decimal_and_float32_categories_count_the_json_numbers_clients_send():
    frame = pd.DataFrame(
        {
            "size": [D("11.00"), D("2.50"), D("11.00"), D("7")] * 10,
            "rate": np.array([0.1, 0.25, 0.1, 3.0] * 10, dtype=np.float32),
        }
    )
    profile = build_profile(frame, categorical=["size", "rate"])
    assert profile.feature("size").allowed == ("11", "2.5", "7")
    assert profile.feature("rate").allowed == ("0.1", "0.25", "3")
    monitor = _monitor(profile)
    # What a client sends: JSON 11 / 0.1; a float32 array's .tolist(): 0.10000000149011612.
    rows = [[11, 0.1], [2.5, 0.25], [11.0, float(np.float32(0.1))], [7, 3]]
    monitor.process([_request(rows)])
    size, rate = monitor.counters["size"], monitor.counters["rate"]
    assert size.counts == {"11": 2, "2.5": 1, "7": 1, "__other__": 0}
    assert rate.counts == {"0.1": 2, "0.25": 1, "3": 1, "__other__": 0}
    assert size.out_of_range == rate.out_of_range == 0


def test_a_float64_category_takes_the_same_number_sent_from_float32_and_back():
    """A profile keyed "0.10000000149011612" (built by an older Vigil from float32 data)
    counts a client's 0.1, and a float64 profile's 0.1 a float32 client's value."""
    old = build_profile(
        pd.DataFrame({"a": [0.10000000149011612, 0.5] * 5, "b": [0.1, 0.5] * 5}),
        categorical=["a", "b"],
    )
    assert old.feature("a").categories == ("0.10000000149011612", "0.5")
    monitor = _monitor(old)
    monitor.process([_request([[0.1, 0.10000000149011612], [0.2, 0.2]])])
    a, b = monitor.counters["a"], monitor.counters["b"]
    assert a.counts == {"0.10000000149011612": 1, "0.5": 0, "__other__": 1}
    assert b.counts == {"0.1": 1, "0.5": 0, "__other__": 1}
    assert a.out_of_range == b.out_of_range == 1  # 0.2 only


def test_text_categories_are_never_matched_as_numbers():
    profile = build_profile(
        pd.DataFrame({"c": ["0.10", "x", "0.5"] * 4, "d": ["a", "b", "c"] * 4}),
        categorical=["c"],
    )
    monitor = _monitor(profile)
    monitor.process([_request([[0.1, "a"], [0.5, "b"]])])
    assert monitor.counters["c"].counts == {"0.10": 0, "0.5": 1, "x": 0, "__other__": 1}


def test_validation_compares_a_decimal_label_with_a_number_as_one_class():
    score = validation_score([11, 2], [D("11.00"), D("2.0")], "classification", "holdout")
    assert score.accuracy == 1.0


def test_validation_compares_a_boolean_prediction_with_a_zero_or_one_label_as_one_class():
    # pandas wrote True/False predictions beside 0/1 labels: accuracy 0, a baseline of 0
    # that no realized accuracy could fall below (maxDrop never fired).
    score = validation_score([True, False, True], [1, 0, 0], "classification", "holdout")
    assert score.accuracy == pytest.approx(2 / 3, abs=1e-6)


def test_64_bit_integer_ids_keep_every_digit_as_categories(tmp_path):
    """int64 columns became float64: ids collapsed into two keys no client sends."""
    from vigil.cli import main
    from vigil.profile import OTHER, load_profile
    from vigil.profile.build import frame_column
    from vigil.sidecar.monitor import _CategoryCounts

    ids = [1234567890123456789, 1234567890123456790, 1234567890123456791, 987654321987654321]
    frame = pd.DataFrame({"merchant": ids * 25, "amount": np.arange(100.0)})
    assert frame_column(frame["merchant"]).tolist() == ids * 25
    frame.to_csv(tmp_path / "ids.csv", index=False)
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "ids.csv"), "--categorical", "merchant"]
    assert main([*argv, "-o", str(out)]) == 0
    merchant = load_profile(out).feature("merchant")
    assert merchant.categories == tuple(str(i) for i in sorted(ids, key=str))
    counts = _CategoryCounts(merchant)
    counts.add(ids * 25)  # the training rows as a client sends them (JSON integers)
    assert counts.out_of_range == 0 and counts.counts[OTHER] == 0


#: Snowflake-style ids: past 2**53 a float64 holds them only to the nearest 256.
_SNOWFLAKES = [1700000000000000001 + 2 * k for k in range(4)]


def test_integer_ids_with_a_missing_value_keep_every_digit_as_categories():
    """One missing id made the Int64 column float64: all ids merged into one key no client
    sends, and data drawn from the reference itself alarmed as drift."""
    from vigil.profile import OTHER
    from vigil.sidecar.monitor import _CategoryCounts

    frame = pd.DataFrame({"store": pd.array([*_SNOWFLAKES * 10, None], dtype="Int64")})
    store = build_profile(frame, categorical=["store"]).feature("store")
    assert store.allowed == tuple(str(i) for i in _SNOWFLAKES)
    assert store.null_rate == pytest.approx(1 / 41)
    counts = _CategoryCounts(store)
    counts.add(_SNOWFLAKES * 5)  # as clients send them: JSON integers
    assert counts.out_of_range == 0 and counts.counts[OTHER] == 0


def test_parquet_integer_ids_with_nulls_keep_every_digit_as_categories(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vigil.cli import main
    from vigil.profile import load_profile

    ids = pa.array([*_SNOWFLAKES * 5, None], pa.int64())
    pq.write_table(pa.table({"store": ids, "x": np.arange(21.0)}), tmp_path / "ids.parquet")
    out = tmp_path / "p.json"
    argv = ["profile", "build", str(tmp_path / "ids.parquet"), "--categorical", "store"]
    assert main([*argv, "-o", str(out)]) == 0
    assert load_profile(out).feature("store").allowed == tuple(str(i) for i in _SNOWFLAKES)


@pytest.mark.parametrize("dtype", ["Int64", "UInt64", "int64[pyarrow]"])
def test_a_numeric_integer_column_with_missing_values_bins_as_its_floats(dtype):
    """Kept exact for categories, such a column is still binned as the floats it was."""
    values = [*_SNOWFLAKES, *range(20), None]
    exact = build_profile(pd.DataFrame({"x": pd.array(values, dtype=dtype)})).feature("x")
    floats = [np.nan if v is None else float(v) for v in values]
    assert exact == build_profile(pd.DataFrame({"x": floats})).feature("x")


def test_timestamps_are_keyed_as_the_iso_text_json_clients_send(tmp_path):
    """A Parquet timestamp was keyed "2024-01-01 00:00:00"; clients send ISO "T" text."""
    from vigil.sidecar.monitor import _CategoryCounts

    days = pd.date_range("2024-01-01", periods=3, freq="D")
    frame = pd.DataFrame({"day": days.repeat(4), "at": days.tz_localize("UTC").repeat(4)})
    frame.to_parquet(tmp_path / "t.parquet")
    profile = build_profile(pd.read_parquet(tmp_path / "t.parquet"))
    assert profile.feature("day").allowed == (
        "2024-01-01T00:00:00",
        "2024-01-02T00:00:00",
        "2024-01-03T00:00:00",
    )
    assert profile.feature("at").allowed[0] == "2024-01-01T00:00:00+00:00"
    counts = _CategoryCounts(profile.feature("day"))
    counts.add([d.isoformat() for d in days])
    assert counts.out_of_range == 0
    # A date is keyed as before: its text is ISO already.
    assert category_key(days[0].date()) == "2024-01-01"
