"""The monitor counts exactly like vigil.core.drift, for small and large batches alike."""

import asyncio
import gzip
import json
import time
import zlib

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sidecar_testkit import ticks_at_each_batch

from vigil.core.drift import bin_index
from vigil.profile import build_profile
from vigil.sidecar.config import Settings
from vigil.sidecar.monitor import Exchange, Monitor, ReferenceState, decode_body

BASE = {"model": "m", "version": "1", "revision": "r", "role": "stable"}


def _monitor(profile, registry=None, clock=time.monotonic, **settings):
    return Monitor(
        Settings(max_features=20, **settings),
        base=BASE,
        registry=registry or CollectorRegistry(),
        reference=ReferenceState(profile, "ok"),
        clock=clock,
    )


def _v2(rows):
    return json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}
            ]
        }
    ).encode()


@pytest.mark.parametrize("rows_per_request", [1, 7, 500])
def test_small_and_large_batches_bin_like_bin_index(rows_per_request):
    rng = np.random.default_rng(0)
    ref = np.column_stack([rng.normal(size=1000), rng.integers(0, 5, 1000).astype(float)])
    profile = build_profile(ref, feature_names=["x", "k"])
    live = np.column_stack([rng.normal(0.3, 1.2, 1000), rng.integers(-1, 7, 1000).astype(float)])
    live[:5, 0] = profile.feature("x").edges[:5]  # values exactly on edges
    live[5, 0] = profile.feature("x").edges[-1]
    monitor = _monitor(profile)
    batch = [
        Exchange(_v2(live[i : i + rows_per_request].tolist()), "application/json", None, "")
        for i in range(0, 1000, rows_per_request)
    ]
    monitor.process(batch)
    for j, name in enumerate(("x", "k")):
        edges = profile.feature(name).edges
        expected = np.bincount(bin_index(live[:, j], edges), minlength=len(edges) + 1)
        assert monitor.counters[name].bins == expected.tolist()
        assert monitor.counters[name].out_of_range == expected[0] + expected[-1]


def _one_feature_request(values, datatype="BYTES"):
    return json.dumps(
        {"inputs": [{"name": "x", "shape": [len(values), 1], "datatype": datatype, "data": values}]}
    ).encode()


@pytest.mark.parametrize("repeats", [1, 20])  # 5 values: bisect path; 100 values: NumPy path
def test_nulls_strings_and_garbage_are_missing_or_type_violations(repeats):
    profile = build_profile(np.arange(100.0).reshape(-1, 1), feature_names=["x"])
    monitor = _monitor(profile)
    values = [None, "5", "abc", [1], 7.0] * repeats
    monitor.process([Exchange(_one_feature_request(values), "application/json", None, "")])
    c = monitor.counters["x"]
    n = len(values) // 5
    # "5" is a coercion: a type violation, still binned (the server may read it as 5).
    assert c.missing == n and c.type_errors == 3 * n and sum(c.bins) == 2 * n
    assert monitor.violations["type"] == 3 * n


@pytest.mark.parametrize("repeats", [1, 20])
def test_numeric_strings_and_booleans_in_a_numeric_tensor_are_coercions(repeats):
    """An FP64 tensor of strings ("0.038") is answered by MLServer: counted, and binned."""
    profile = build_profile(np.linspace(0.0, 0.1, 100).reshape(-1, 1), feature_names=["x"])
    monitor = _monitor(profile)
    coerced = ["0.038", "0.05", True, "-1e-3"] * repeats
    body = _one_feature_request(coerced, datatype="FP64")
    monitor.process([Exchange(body, "application/json", None, "")])
    c = monitor.counters["x"]
    assert c.type_errors == len(coerced) and monitor.violations["type"] == len(coerced)
    as_numbers = [float(v) for v in coerced]
    expected = np.bincount(bin_index(as_numbers, profile.feature("x").edges), minlength=12)
    assert c.bins == expected.tolist() and c.missing == 0


@pytest.mark.parametrize("repeats", [1, 20])
def test_json_numbers_are_no_violation(repeats):
    profile = build_profile(np.arange(100.0).reshape(-1, 1), feature_names=["x"])
    monitor = _monitor(profile)
    values = [1, 2.5, 99, 0.0] * repeats
    monitor.process([Exchange(_one_feature_request(values, "FP64"), "application/json", None, "")])
    assert monitor.counters["x"].type_errors == 0 and "type" not in monitor.violations
    assert sum(monitor.counters["x"].bins) == len(values)


def test_gzip_and_deflate_copies_are_decoded_for_monitoring():
    data = b'{"a": 1}'
    assert decode_body(gzip.compress(data), "gzip") == data
    assert decode_body(zlib.compress(data), "deflate") == data
    assert decode_body(b"garbage", "gzip") is None
    assert decode_body(data, "br") is None
    assert decode_body(data, "") == data
    profile = build_profile(np.arange(10.0).reshape(-1, 1), feature_names=["x"])
    monitor = _monitor(profile)
    monitor.process(
        [Exchange(gzip.compress(_v2([[1.0], [2.0]])), "application/json", None, "", "gzip")]
    )
    assert sum(monitor.counters["x"].bins) == 2
    monitor.process([Exchange(b"xx", "application/json", None, "", "br")])
    assert monitor.violations["content_encoding"] == 1


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("br", b"\x8b\x03\x80" + b"{}"), ("zstd", b"(\xb5/\xfd"), ("gzip", b"corrupt")],
    ids=["br", "zstd", "broken-gzip"],
)
def test_an_answer_whose_encoding_is_not_read_is_a_prediction_violation(encoding, body):
    monitor = _classifier_monitor()
    request = _v2([[1.0], [2.0]])
    monitor.process([Exchange(request, "application/json", body, "application/json", "", encoding)])
    assert monitor.prediction_violations == {"content_encoding": 1}
    assert monitor.violations == {} and monitor.rows == 2  # the request is read all the same
    assert sum(monitor.prediction.counts.values()) == 0


def test_regression_predictions_fill_reference_bins_and_window():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 1))
    profile = build_profile(x, predictions=x[:, 0] * 2.5, feature_names=["x"])
    assert profile.task == "regression"
    now = [1000.0]
    monitor = _monitor(profile, prediction_window_seconds=10, clock=lambda: now[0])
    resp = json.dumps(
        {"outputs": [{"name": "y", "shape": [3], "datatype": "FP64", "data": [-1.0, 0.5, 99.0]}]}
    ).encode()
    monitor.process([Exchange(_v2([[0.0], [0.1], [0.2]]), "", resp, "application/json")])
    assert sum(monitor.prediction.bins) == 3 and monitor.prediction.bins[-1] == 1
    assert monitor.window.bounds() == (-1.0, 99.0)
    now[0] += 30
    lo, hi = monitor.window.bounds()
    assert np.isnan(lo) and np.isnan(hi)


def test_predicted_classes_outside_the_reference_are_counted_by_label_up_to_a_cap():
    """Another revision's classes are compared by label: a new label keeps its name."""
    from vigil.sidecar.monitor import MAX_UNLISTED_CLASSES

    x = np.arange(300.0).reshape(-1, 1)
    profile = build_profile(x, predictions=np.arange(300) % 3, feature_names=["x"])
    monitor = _monitor(profile)
    labels = [0, 1, 3, 3, "spam", *range(100, 100 + MAX_UNLISTED_CLASSES + 5)]
    resp = json.dumps(
        {"outputs": [{"name": "y", "shape": [len(labels)], "datatype": "BYTES", "data": labels}]}
    ).encode()
    monitor.process([Exchange(_v2([[1.0]] * len(labels)), "", resp, "application/json")])
    counts = monitor.prediction.counts
    assert (counts["0"], counts["1"], counts["2"], counts["3"], counts["spam"]) == (1, 1, 0, 2, 1)
    assert len(counts) == 3 + MAX_UNLISTED_CLASSES + 1  # the profile's, the unlisted, __other__
    assert counts["__other__"] == 7  # labels past the cap


def test_a_boolean_feature_counts_the_numbers_0_and_1_as_false_and_true():
    """An FP32 tensor (or get_dummies' bool columns) carries booleans as 0/1: keyed "0"/"1"
    they never matched the reference's true/false, every value out of range."""
    import pandas as pd

    flags = np.arange(200) % 5 == 0
    profile = build_profile(
        pd.DataFrame({"flag": flags, "code": np.arange(200) % 2}), categorical=["code"]
    )
    monitor = _monitor(profile)
    rows = [[1.0, 1.0], [0.0, 0.0], [0, 1], [True, 1.0], [1, 0], ["1", 0]]
    monitor.process([Exchange(_v2(rows), "application/json", None, "")])
    flag, code = monitor.counters["flag"], monitor.counters["code"]
    assert flag.counts == {"true": 3, "false": 2, "__other__": 1}
    assert flag.out_of_range == 1  # the string "1" is no number
    assert code.counts == {"1": 3, "0": 3, "__other__": 0} and code.out_of_range == 0


@pytest.mark.parametrize(
    ("datatype", "answers"), [("INT64", [1, 0, 0, 1]), ("FP32", [1.0, 0.0, 0.0, 1.0])]
)
def test_a_boolean_classifiers_0_and_1_count_as_the_references_false_and_true(datatype, answers):
    """A model trained on a True/False column answering 0/1: its classes were counted "0"
    and "1", every prediction out of the reference's set."""
    x = np.arange(300.0).reshape(-1, 1)
    profile = build_profile(x, predictions=np.arange(300) % 3 == 0, feature_names=["x"])
    monitor = _monitor(profile)
    resp = json.dumps(
        {"outputs": [{"name": "y", "shape": [4], "datatype": datatype, "data": answers}]}
    ).encode()
    monitor.process([Exchange(_v2([[1.0]] * 4), "", resp, "application/json")])
    assert monitor.prediction.counts == {"false": 2, "true": 2, "__other__": 0}
    assert monitor.prediction.out_of_range == 0


def test_a_label_that_is_not_utf8_text_never_breaks_the_metrics():
    # JSON allows a lone surrogate ("\ud800"); written as a label it made every scrape fail.
    from prometheus_client import generate_latest

    x = np.arange(300.0).reshape(-1, 1)
    profile = build_profile(x, predictions=np.arange(300) % 3, feature_names=["x"])
    registry = CollectorRegistry()
    monitor = _monitor(profile, registry)
    resp = b'{"outputs": [{"name": "y", "shape": [1], "datatype": "BYTES", "data": ["a\\ud800"]}]}'
    monitor.process([Exchange(_v2([[1.0]]), "application/json", resp, "application/json")])
    assert b'class="a?"' in generate_latest(registry)


@pytest.mark.parametrize("repeats", [1, 20])
def test_a_huge_integer_is_out_of_range_and_the_batch_is_still_counted(repeats):
    # float() of an integer past 1e308 raises: one such value dropped a whole batch.
    profile = build_profile(np.arange(100.0).reshape(-1, 1), feature_names=["x"])
    monitor = _monitor(profile)
    huge = 10**400
    body = _one_feature_request([huge, 5, -huge, 7] * repeats, "FP64")
    good = _one_feature_request([1.0] * 4, "FP64")
    monitor.process([Exchange(good, "application/json", None, ""), Exchange(body, "", None, "")])
    c = monitor.counters["x"]
    assert monitor.errors == 0
    assert sum(c.bins) == 4 + 4 * repeats and c.out_of_range == 2 * repeats


async def test_large_requests_are_monitored_a_bounded_number_of_bytes_at_a_time(monkeypatch):
    # Counted by exchanges alone, 256 batch-scoring requests of megabytes each were parsed
    # in one go on the proxy's event loop (seconds of stall, hundreds of MB).
    from vigil.sidecar import monitor as module

    monkeypatch.setattr(module, "BATCH_BYTES", 1000)
    monkeypatch.setattr(module, "QUEUE_BYTES", 3000)
    profile = build_profile(np.arange(100.0).reshape(-1, 1), feature_names=["x"])
    monitor = _monitor(profile)
    body = _one_feature_request([1.0] * 80, "FP64")  # about 400 bytes
    for _ in range(10):
        monitor.submit(Exchange(body, "application/json", None, ""))
    assert monitor.pending == 3000 // len(body) and monitor.dropped == 10 - monitor.pending
    assert monitor.flush() == -(-1000 // len(body))  # whole exchanges up to the budget
    await monitor.drain()
    assert monitor.pending == 0 and monitor.queued_bytes == 0


def _kept_requests(monkeypatch, n: int) -> tuple[Monitor, list[str]]:
    """A monitor holding ``n`` queued exchanges kept for labels, one per batch; the ids
    recorded so far."""
    from vigil.sidecar import monitor as module

    monkeypatch.setattr(module, "BATCH_BYTES", 1)
    monitor = _monitor(build_profile(np.arange(100.0).reshape(-1, 1), feature_names=["x"]))
    kept: list[str] = []
    monitor.recorder = lambda request_id, _at, _values: kept.append(request_id)
    body = _one_feature_request([1.0] * 8, "FP64")
    for i in range(n):
        monitor.submit(Exchange(body, "application/json", None, "", request_id=f"r{i}"))
    return monitor, kept


async def test_a_drain_lets_other_tasks_run_between_batches(monkeypatch):
    # A label drains the queue before it joins: in one go, a backlog of batch-scoring
    # requests held the event loop (every live inference on the pod) for seconds.
    monitor, kept = _kept_requests(monkeypatch, 6)
    async with ticks_at_each_batch(monitor, monkeypatch) as at_batch:
        await monitor.drain()
    assert kept == [f"r{i}" for i in range(6)]
    assert len(at_batch) == 6
    # The ticker ran between every two batches.
    assert at_batch == sorted(set(at_batch)), at_batch


async def test_a_drain_under_steady_load_ends_once_what_was_queued_is_done(monkeypatch):
    # What is queued after the drain began is the background task's: a drain waiting for
    # an empty queue would never end while requests keep coming.
    monitor, kept = _kept_requests(monkeypatch, 4)
    body = _one_feature_request([1.0] * 8, "FP64")

    async def traffic() -> None:
        for i in range(4, 10_000):
            monitor.submit(Exchange(body, "application/json", None, "", request_id=f"r{i}"))
            await asyncio.sleep(0)

    task = asyncio.create_task(traffic())
    try:
        await asyncio.wait_for(monitor.drain(), 30)
    finally:
        task.cancel()
    assert kept[:4] == ["r0", "r1", "r2", "r3"] and len(kept) < 100


@pytest.mark.parametrize("repeats", [1, 20])  # the bisect path and the NumPy path
def test_float32_training_data_and_float64_requests_bin_alike(repeats):
    # Ratings stored as float32 for training, sent as JSON numbers: the same values.
    ref = np.repeat(np.array([0.1, 0.3, 0.7, 1.1], dtype=np.float32), 50).reshape(-1, 1)
    profile = build_profile(ref, feature_names=["x"])
    monitor = _monitor(profile)
    live = [0.1, 0.3, 0.7, 1.1] * repeats
    monitor.process([Exchange(_one_feature_request(live, "FP64"), "application/json", None, "")])
    counts = monitor.counters["x"]
    assert counts.out_of_range == 0
    expected = np.bincount(bin_index(ref[:, 0], profile.feature("x").edges), minlength=12)
    assert [b for b in counts.bins if b] == [b * repeats // 50 for b in expected if b]


def test_both_paths_put_a_last_edge_half_way_between_float32_values_inside():
    ref = np.array([20231201.0, 20240101.0] * 50).reshape(-1, 1)
    profile = build_profile(ref, feature_names=["x"])
    for repeats in (1, 60):
        monitor = _monitor(profile)
        values = [20240101.0] * repeats
        monitor.process(
            [Exchange(_one_feature_request(values, "FP64"), "application/json", None, "")]
        )
        assert monitor.counters["x"].out_of_range == 0


def _classifier_monitor(registry=None):
    x = np.arange(300.0).reshape(-1, 1)
    profile = build_profile(x, predictions=np.arange(300) % 2, feature_names=["x"])
    assert profile.task == "classification"
    return _monitor(profile, registry)


def _output(shape, data, datatype="FP64"):
    return json.dumps(
        {"outputs": [{"name": "y", "shape": shape, "datatype": datatype, "data": data}]}
    ).encode()


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        pytest.param([3], [0.13, 0.87, 1.0], id="one-probability-per-row"),
        pytest.param([3, 1], [[0.13], [0.87], [1.0]], id="one-column"),
    ],
)
def test_a_classifier_answering_probabilities_counts_numbers_not_classes(shape, data):
    # Each distinct probability used to become a class label of its own (up to the cap).
    monitor = _classifier_monitor()
    resp = _output(shape, data)
    monitor.process([Exchange(_v2([[1.0]] * 3), "", resp, "application/json")])
    assert monitor.prediction.counts == {"0": 0, "1": 0, "__other__": 0}
    assert monitor.pred_count == 3 and monitor.pred_sum == pytest.approx(2.0)
    assert monitor.window.bounds() == (0.13, 1.0)


def test_a_classifier_answering_probabilities_in_v1_counts_numbers_not_classes():
    monitor = _classifier_monitor()
    monitor.protocol = "v1"
    request = b'{"instances": [[1.0], [2.0]]}'
    monitor.process([Exchange(request, "", b'{"predictions": [0.25, [0.5]]}', "")])
    assert monitor.prediction.counts == {"0": 0, "1": 0, "__other__": 0}
    assert monitor.pred_count == 2


def test_a_classifier_answering_labels_as_whole_floats_still_counts_classes():
    monitor = _classifier_monitor()
    resp = _output([3], [1.0, 0.0, 1.0])
    monitor.process([Exchange(_v2([[1.0]] * 3), "", resp, "application/json")])
    assert monitor.prediction.counts == {"0": 1, "1": 2, "__other__": 0}


def test_prediction_missing_values_and_type_violations_are_exported():
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 1))
    profile = build_profile(x, predictions=x[:, 0], feature_names=["x"])
    monitor = _monitor(profile, registry)
    resp = _output([4], [0.5, None, "abc", [1.0]], datatype="BYTES")
    monitor.process([Exchange(_v2([[1.0]] * 4), "", resp, "application/json")])
    samples = {
        (s.name, s.labels.get("kind")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("vigil_prediction_missing_total", None)] == 1
    assert samples[("vigil_prediction_schema_violations_total", "type")] == 2
    assert ("vigil_input_schema_violations_total", "type") not in samples  # inputs are fine


def test_an_empty_v2_batch_counts_nothing():
    monitor = _classifier_monitor()
    request = json.dumps(
        {"inputs": [{"name": "x", "shape": [0, 1], "datatype": "FP64", "data": []}]}
    ).encode()
    monitor.process([Exchange(request, "", _output([0, 1], []), "application/json")])
    assert monitor.violations == {} and monitor.prediction_violations == {}
    assert monitor.rows == 0 and sum(monitor.counters["x"].bins) == 0
    assert sum(monitor.prediction.counts.values()) == 0 and monitor.pred_count == 0


def test_a_ragged_request_is_counted_as_a_shape_violation_and_bins_nothing():
    profile = build_profile(np.arange(300.0).reshape(-1, 3), feature_names=["a", "b", "c"])
    monitor = _monitor(profile)
    request = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2], [3, 4, 5, 6]]}
            ]
        }
    ).encode()
    monitor.process([Exchange(request, "application/json", None, "")])
    assert monitor.violations == {"shape": 1}
    assert all(sum(c.bins) == 0 for c in monitor.counters.values())
