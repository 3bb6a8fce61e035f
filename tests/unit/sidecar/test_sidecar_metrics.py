"""Metrics: one prefix, identity labels everywhere, correct counts per feature and class."""

import asyncio
import json

import numpy as np
import pytest
from sidecar_testkit import (
    FEATURES,
    answer_ok,
    base,
    capture_dispatch,
    fake_client,
    scrape,
    settle,
    until,
    v2_body,
    value,
)

from vigil.core.drift import bin_index
from vigil.profile import load_profile
from vigil.sidecar.metrics import OUTCOMES, outcome_of

BASE = {"model": "m", "version": "1", "revision": "r1", "role": "stable"}


async def test_every_series_has_the_prefix_and_identity_labels(
    model, start_sidecar, http, profile_path
):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])):
        pass
    await settle(sidecar)
    metrics = await scrape(http, sidecar)
    assert metrics
    for name, labels in metrics:
        assert name.startswith("vigil_"), name
        assert set(BASE.items()) <= labels, (name, labels)
        assert not {"id", "request_id", "user"} & {k for k, _ in labels}


async def test_info_series_names_protocol_and_reference_fingerprint(
    model, start_sidecar, http, profile_path
):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    m = await scrape(http, sidecar)
    fp = load_profile(profile_path).fingerprint
    assert value(m, "vigil_model_info", protocol="v2", reference_fingerprint=fp) == 1
    assert value(m, "vigil_drift_monitoring_enabled", reason="ok") == 1


async def test_feature_bins_missing_and_out_of_range_match_the_reference_edges(
    model, start_sidecar, http, profile_path
):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    profile = load_profile(profile_path)
    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.uniform(0, 3, 200), rng.normal(0, 1, 200), rng.normal(5, 2, 200)])
    rows[0, 1] = 1e6  # overflow
    rows[1, 1] = -1e6  # underflow
    for chunk in np.array_split(rows, 10):
        async with http.post(
            f"{base(sidecar)}/v2/models/m/infer", data=v2_body(chunk.tolist())
        ) as resp:
            assert resp.status == 200
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1.0, None, 5.0]}]}
    ).encode()
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body):
        pass
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_input_rows_total") == 201
    for j, name in enumerate(FEATURES):
        edges = profile.feature(name).edges
        expected = np.bincount(bin_index(rows[:, j], edges), minlength=len(edges) + 1)
        got = [
            value(m, "vigil_feature_bin_total", feature=name, bin=str(i))
            for i in range(len(edges) + 1)
        ]
        if name == "b":
            expected[bin_index([1.0], edges)[0]] += 0  # the null row is not binned
        else:
            expected[bin_index([[1.0, None, 5.0][j]], edges)[0]] += 1
        assert got == expected.tolist(), name
    assert value(m, "vigil_feature_missing_total", feature="b") == 1
    assert value(m, "vigil_feature_out_of_range_total", feature="b") >= 2


async def test_prediction_classes_sums_and_window(model, start_sidecar, http, profile_path):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    rows = [[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0], [2.2, 0, 0]]  # classes 0, 1, 2, 2
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(rows)):
        pass
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert [value(m, "vigil_prediction_class_total", **{"class": c}) for c in "012"] == [1, 1, 2]
    assert value(m, "vigil_predictions_total") == 4
    assert value(m, "vigil_prediction_value_sum") == 5
    assert value(m, "vigil_prediction_value_squares_sum") == 9
    assert value(m, "vigil_prediction_value_min") == 0
    assert value(m, "vigil_prediction_value_max") == 2


async def test_ops_metrics_count_outcomes_latency_and_bytes(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    body = v2_body([[1, 2, 3]])
    for _ in range(3):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body) as resp:
            answer = await resp.read()
    async with http.get(f"{base(sidecar)}/status/500"):
        pass
    m = await scrape(http, sidecar)
    assert value(m, "vigil_requests_total", endpoint="infer", outcome="success", code="200") == 3
    assert (
        value(m, "vigil_requests_total", endpoint="other", outcome="model_error", code="500") == 1
    )
    assert value(m, "vigil_request_duration_seconds_count", endpoint="infer") == 3
    assert value(m, "vigil_request_bytes_total", endpoint="infer") == 3 * len(body)
    assert value(m, "vigil_response_bytes_total", endpoint="infer") == 3 * len(answer)
    assert value(m, "vigil_requests_in_flight") == 0
    assert value(m, "vigil_sidecar_resident_memory_bytes") > 1e6


async def test_feature_cap_limits_series_and_says_so(
    model, start_sidecar, http, profile_path, caplog
):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path), max_features=2)
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])):
        pass
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_monitored_features") == 2
    assert value(m, "vigil_unmonitored_features") == 1
    assert value(m, "vigil_feature_bin_total", feature="c") == 0
    assert value(m, "vigil_feature_bin_total", feature="a") == 1
    assert "feature cap" in caplog.text and "not monitored: c" in caplog.text


async def test_v1_protocol_is_monitored(model, start_sidecar, http, profile_path):
    sidecar = await start_sidecar(model.url, protocol="v1", reference_profile=str(profile_path))
    async with http.post(
        f"{base(sidecar)}/v1/models/m:predict", json={"instances": [[1.2, 0, 5], [2.7, 1, 4]]}
    ) as resp:
        assert await resp.json() == {"predictions": [1, 2]}
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_input_rows_total") == 2
    assert value(m, "vigil_feature_bin_total", feature="a") == 2
    assert value(m, "vigil_prediction_class_total", **{"class": "2"}) == 1


async def test_full_monitoring_queue_drops_and_counts(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url, queue_size=1)
    await sidecar.monitor.stop()  # nothing drains the queue now
    for _ in range(3):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])):
            pass
    m = await scrape(http, sidecar)
    assert value(m, "vigil_monitoring_dropped_total") == 2


async def test_raw_protocol_counts_operations_only(model, start_sidecar, http, profile_path):
    sidecar = await start_sidecar(model.url, protocol="raw", reference_profile=str(profile_path))
    async with http.post(f"{base(sidecar)}/echo", data=b"not json at all") as resp:
        assert resp.status == 200
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_requests_total", endpoint="infer", outcome="success") == 1
    assert value(m, "vigil_input_schema_violations_total") == 0
    assert value(m, "vigil_input_rows_total") == 0
    assert value(m, "vigil_model_info", protocol="raw") == 1


async def test_shadow_copies_are_counted_apart_from_live_requests(
    model, start_sidecar, http, profile_path
):
    # A canary's gates judge the live requests alone; copies still count for shadow steps.
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    url = f"{base(sidecar)}/v2/models/m/infer"
    for headers in ({}, {}, {"X-Vigil-Shadow": "1"}):
        async with http.post(url, data=v2_body([[1, 2, 3]]), headers=headers) as resp:
            assert resp.status == 200
    await settle(sidecar)
    m = await scrape(http, sidecar)
    ok = {"endpoint": "infer", "outcome": "success", "code": "200"}
    assert value(m, "vigil_requests_total", origin="live", **ok) == 2
    assert value(m, "vigil_requests_total", origin="shadow", **ok) == 1
    shadow_latency = {"endpoint": "infer", "origin": "shadow", "le": "+Inf"}
    assert value(m, "vigil_request_duration_seconds_bucket", **shadow_latency) == 1


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        pytest.param(b"Content-Length: 5000\r\n\r\n", "413", id="body-too-large"),
        pytest.param(b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "400", id="bad-body"),
        pytest.param(b"Content-Length: 10\r\n\r\nslow", "408", id="body-timed-out"),
    ],
)
async def test_shadow_copies_the_sidecar_rejects_are_counted_as_shadow(
    model, start_sidecar, http, request_bytes, code
):
    # Else a candidate's error rate counts the copies it refused as live traffic. The body
    # timeout (body-timed-out) is short: nothing here has to beat it.
    sidecar = await start_sidecar(model.url, max_body_bytes=1000, upstream_timeout_seconds=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    try:
        writer.write(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nX-Vigil-Shadow: 1\r\n" + request_bytes
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.split(b" ")[1].decode() == code
    finally:
        writer.close()
    m = await scrape(http, sidecar)
    rejected = {"outcome": "rejected", "code": code}
    assert value(m, "vigil_requests_total", origin="shadow", **rejected) == 1
    assert value(m, "vigil_requests_total", origin="live", **rejected) == 0


async def test_the_request_series_the_operator_reads_exist_before_the_first_request(
    model, start_sidecar, http
):
    # Prometheus' increase() cannot count a series' first sample: a series born at its first
    # request (value 1) would hide a fresh candidate's first error of each kind.
    sidecar = await start_sidecar(model.url)
    m = await scrape(http, sidecar)
    for origin in ("live", "shadow"):
        for outcome in OUTCOMES:
            labels = {"endpoint": "infer", "origin": origin, "outcome": outcome}
            assert (("vigil_request_outcomes_total", frozenset({**BASE, **labels}.items()))) in m
            assert value(m, "vigil_request_outcomes_total", **labels) == 0
        infer = {**BASE, "endpoint": "infer", "origin": origin, "le": "+Inf"}
        assert m[("vigil_request_duration_seconds_bucket", frozenset(infer.items()))] == 0
    assert {outcome_of(status) for status in (200, 302, 404, 500)} <= set(OUTCOMES)


async def test_request_outcomes_add_up_every_status_code(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    for _ in range(2):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])):
            pass
    for path in ("/status/500", "/status/503"):
        async with http.get(f"{base(sidecar)}{path}"):
            pass
    m = await scrape(http, sidecar)
    success = {"endpoint": "infer", "origin": "live", "outcome": "success"}
    assert value(m, "vigil_request_outcomes_total", **success) == 2
    errors = {"endpoint": "other", "origin": "live", "outcome": "model_error"}
    assert value(m, "vigil_request_outcomes_total", **errors) == 2
    assert value(m, "vigil_requests_total", **errors, code="503") == 1


class TestRequestDurationRunsFromTheCompleteRequest:
    """The time a client takes to send its request is not the model's latency."""

    async def test_a_slow_upload_is_not_counted(self, model, start_sidecar, http, monkeypatch):
        sidecar = await start_sidecar(model.url)
        now = [100.0]
        monkeypatch.setattr(sidecar.proxy, "clock", lambda: now[0])
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, _ = fake_client(sidecar.proxy)
        client.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        now[0] += 30.0  # the rest of the body comes late
        client.data_received(b"cd")
        now[0] += 0.25
        answer_ok(client, sent[0])
        m = await scrape(http, sidecar)
        assert value(m, "vigil_request_duration_seconds_sum", endpoint="other") == 0.25

    async def test_a_body_that_never_completes_adds_no_duration(
        self, model, start_sidecar, http, monkeypatch
    ):
        # The body timeout firing is what is tested: short, as nothing here has to beat it.
        sidecar = await start_sidecar(model.url, upstream_timeout_seconds=0.05)
        now = [100.0]
        monkeypatch.setattr(sidecar.proxy, "clock", lambda: now[0])
        client, transport = fake_client(sidecar.proxy)
        client.data_received(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        now[0] += 30.0
        await until(lambda: transport.closing)
        assert transport.answers() == [b"HTTP/1.1 408 Request Timeout"]
        m = await scrape(http, sidecar)
        assert value(m, "vigil_requests_total", outcome="rejected", code="408") == 1
        assert value(m, "vigil_rejected_requests_total", reason="body_timeout") == 1
        assert value(m, "vigil_request_duration_seconds_sum", endpoint="other") == 0
