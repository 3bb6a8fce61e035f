"""The sidecar in front of a real MLServer (v2) and a KServe-V1 server: drift and agreement."""

import json
import time

import numpy as np
import pytest
from integration_kit import http, scrape, v2_request, value

from vigil.core.drift import psi
from vigil.devcluster.common import free_port
from vigil.profile import load_profile

pytestmark = pytest.mark.integration

SHIFTED = ("alcohol", "color_intensity")


def _settings(upstream, profile, **extra):
    return {
        "model": {"name": "wine", "version": "1"},
        "revision": "rev-stable",
        "role": "stable",
        "protocol": "v2",
        "upstream": {"url": upstream},
        "monitoring": {"referenceProfile": str(profile)},
        **extra,
    }


def _settle(sc, name, want, timeout=30.0):
    """Wait (bounded) until a counter reaches ``want``; returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(sc.metrics_port)
        if value(m, name) >= want or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


def test_answers_through_the_sidecar_equal_direct_answers(mlserver, wine, sidecar):
    sc = sidecar(_settings(mlserver.url, wine.profile_path))
    body = json.dumps({"id": "fixed", "inputs": json.loads(v2_request(wine.x[:5]))["inputs"]})
    s1, direct = http("POST", f"{mlserver.url}/v2/models/wine/infer", body.encode())
    s2, proxied = http("POST", f"{sc.url}/v2/models/wine/infer", body.encode())
    assert s1 == s2 == 200
    assert json.loads(proxied)["outputs"] == json.loads(direct)["outputs"]
    status, err = http("POST", f"{sc.url}/v2/models/wine/infer", b'{"inputs": 5}')
    assert 400 <= status < 500 and b"vigil-sidecar" not in err  # MLServer's own answer
    m = _settle(sc, "vigil_input_schema_violations_total", 1)
    assert value(m, "vigil_input_schema_violations_total", kind="unknown_payload") == 1
    assert value(m, "vigil_requests_total", outcome="client_error") == 1


def test_two_shifted_features_show_psi_above_0_2_and_the_rest_below_0_1(mlserver, wine, sidecar):
    sc = sidecar(_settings(mlserver.url, wine.profile_path))
    profile = load_profile(wine.profile_path)
    rng = np.random.default_rng(7)
    rows = wine.x[rng.integers(0, len(wine.x), 4000)].copy()
    for name in SHIFTED:
        j = wine.names.index(name)
        rows[:, j] += profile.feature(name).summary.std
    for chunk in np.array_split(rows, 100):
        status, _ = http("POST", f"{sc.url}/v2/models/wine/infer", v2_request(chunk))
        assert status == 200
    m = _settle(sc, "vigil_input_rows_total", len(rows))
    assert value(m, "vigil_input_rows_total") == len(rows)
    scores = {}
    for feature in profile.features:
        counts = [
            value(m, "vigil_feature_bin_total", feature=feature.name, bin=str(i))
            for i in range(len(feature.proportions))
        ]
        assert sum(counts) == len(rows), feature.name
        scores[feature.name] = psi(feature.proportions, counts)
    print("PSI per feature:", {k: round(v, 3) for k, v in scores.items()})
    for name, score in scores.items():
        if name in SHIFTED:
            assert score > 0.2, (name, score)
        else:
            assert score < 0.1, (name, score)
    classes = sum(value(m, "vigil_prediction_class_total", **{"class": c}) for c in "012")
    assert classes == len(rows)


def test_agreement_is_near_one_for_the_same_model_and_low_for_shuffled_labels(
    mlserver, mlserver_shuffled, wine, sidecar
):
    same = sidecar(
        _settings(
            mlserver.url,
            wine.profile_path,
            shadow={"target": mlserver.url, "targetRevision": "rev-same", "percent": 100},
        ),
        "same",
    )
    bad = sidecar(
        _settings(
            mlserver.url,
            wine.profile_path,
            shadow={
                "target": mlserver_shuffled.url,
                "targetRevision": "rev-shuffled",
                "percent": 100,
            },
        ),
        "shuffled",
    )
    rng = np.random.default_rng(3)
    for chunk in np.array_split(wine.x[rng.permutation(len(wine.x))], 40):
        for sc in (same, bad):
            status, _ = http("POST", f"{sc.url}/v2/models/wine/infer", v2_request(chunk))
            assert status == 200
    results = {}
    for sc, rev in ((same, "rev-same"), (bad, "rev-shuffled")):
        m = _settle(sc, "vigil_shadow_predictions_total", len(wine.x))
        n = value(m, "vigil_shadow_predictions_total", target_revision=rev)
        assert n == len(wine.x), (rev, n, value(m, "vigil_shadow_requests_total"))
        results[rev] = value(m, "vigil_shadow_agreements_total", target_revision=rev) / n
    print("agreement:", results)
    assert results["rev-same"] >= 0.99
    assert results["rev-shuffled"] < 0.7


def test_shadow_target_changes_at_run_time_from_the_settings_file(
    mlserver, mlserver_shuffled, wine, sidecar
):
    sc = sidecar({**_settings(mlserver.url, wine.profile_path), "reloadIntervalSeconds": 0.2})
    doc = json.loads(sc.config.read_text())
    doc["shadow"] = {"target": mlserver_shuffled.url, "targetRevision": "late", "percent": 100}
    sc.config.write_text(json.dumps(doc))
    deadline = time.monotonic() + 20
    while value(scrape(sc.metrics_port), "vigil_shadow_percent", target_revision="late") != 100:
        assert time.monotonic() < deadline, "shadow settings were not reloaded"
        time.sleep(0.2)
    status, _ = http("POST", f"{sc.url}/v2/models/wine/infer", v2_request(wine.x[:10]))
    assert status == 200
    m = _settle(sc, "vigil_shadow_predictions_total", 10)
    assert value(m, "vigil_shadow_predictions_total", target_revision="late") == 10


def test_kserve_v1_path_is_proxied_and_monitored(kserve_v1, wine, sidecar):
    sc = sidecar({**_settings(kserve_v1.url, wine.profile_path), "protocol": "v1"})
    body = json.dumps({"instances": wine.x[:20].tolist()}).encode()
    s1, direct = http("POST", f"{kserve_v1.url}/v1/models/wine:predict", body)
    s2, proxied = http("POST", f"{sc.url}/v1/models/wine:predict", body)
    assert s1 == s2 == 200 and proxied == direct
    m = _settle(sc, "vigil_input_rows_total", 20)
    assert value(m, "vigil_input_rows_total") == 20
    assert value(m, "vigil_feature_bin_total", feature="alcohol") == 20
    preds = json.loads(direct)["predictions"]
    for c in "012":
        assert value(m, "vigil_prediction_class_total", **{"class": c}) == preds.count(int(c))
    assert value(m, "vigil_model_info", protocol="v1") == 1


def test_model_server_down_gives_503_and_the_sidecar_survives(wine, sidecar):
    runner = sidecar(
        _settings(f"http://127.0.0.1:{free_port()}", wine.profile_path),
        "down",
        wait="/healthz/live",
    )
    status, body = http("POST", f"{runner.url}/v2/models/wine/infer", v2_request(wine.x[:1]))
    assert status == 503 and b"upstream_refused" in body
    status, _ = http("GET", f"{runner.url}/healthz/ready")
    assert status == 503
    m = scrape(runner.metrics_port)
    assert value(m, "vigil_upstream_failures_total", reason="refused") == 1
    assert runner.proc.poll() is None
