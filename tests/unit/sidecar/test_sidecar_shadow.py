"""Shadow copies: agreement per target revision, bounded queue, run-time settings."""

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from sidecar_testkit import FakeModel, base, scrape, settle, until, v2_body, value

from vigil.sidecar.config import ShadowSettings, load_settings
from vigil.sidecar.main import Sidecar
from vigil.sidecar.shadow import compare_predictions

ROWS = [[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0]]


@pytest.fixture
async def other_model():
    server = FakeModel(offset=1)  # disagrees on every row
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_identical_target_agrees_and_different_target_does_not(
    model, other_model, start_sidecar, http, profile_path
):
    same = await start_sidecar(
        model.url,
        reference_profile=str(profile_path),
        shadow=ShadowSettings(target=model.url, target_revision="same", percent=100),
    )
    diff = await start_sidecar(
        model.url,
        reference_profile=str(profile_path),
        shadow=ShadowSettings(target=other_model.url, target_revision="other", percent=100),
    )
    for sidecar in (same, diff):
        for _ in range(5):
            async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
                assert r.status == 200
                assert (await r.json())["outputs"][0]["data"] == [0, 1, 2]  # always local
        await settle(sidecar)
    m_same, m_diff = await scrape(http, same), await scrape(http, diff)
    assert value(m_same, "vigil_shadow_predictions_total", target_revision="same") == 15
    assert value(m_same, "vigil_shadow_agreements_total", target_revision="same") == 15
    assert value(m_same, "vigil_shadow_requests_total", outcome="compared") == 5
    assert value(m_diff, "vigil_shadow_predictions_total", target_revision="other") == 15
    assert value(m_diff, "vigil_shadow_agreements_total", target_revision="other") == 0
    assert value(m_diff, "vigil_shadow_abs_difference_count", target_revision="other") == 15
    assert value(m_diff, "vigil_shadow_abs_difference_sum", target_revision="other") == 5 * (
        1 + 1 + 2
    )


async def test_client_never_waits_on_a_slow_target(model, other_model, start_sidecar, http):
    other_model.delay = 1.0
    sidecar = await start_sidecar(
        model.url,
        shadow=ShadowSettings(
            target=other_model.url, target_revision="slow", percent=100, timeout_seconds=5
        ),
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
        assert r.status == 200
    assert loop.time() - start < 0.5


async def test_full_shadow_queue_drops_and_counts(model, start_sidecar, http):
    sidecar = await start_sidecar(
        model.url,
        shadow=ShadowSettings(target=model.url, target_revision="t", percent=100, queue_size=1),
    )
    await sidecar.shadow.stop()  # no workers: the queue fills
    for _ in range(4):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
            pass
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_dropped_total", target_revision="t") == 3


async def test_a_new_queue_size_at_run_time_keeps_copies_compared(model, start_sidecar, http):
    """The workers move to the resized queue; copies beyond its size are counted as dropped."""
    settings = ShadowSettings(target=model.url, target_revision="t", percent=100, queue_size=4)
    sidecar = await start_sidecar(model.url, shadow=settings)
    for size in (4, 8):  # the workers wait on the first queue, then on the resized one
        sidecar.shadow.configure(replace(settings, queue_size=size))
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
            assert r.status == 200
        await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_requests_total", target_revision="t", outcome="compared") == 2
    await sidecar.shadow.stop()  # no workers: the queue keeps what comes
    for _ in range(3):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
            pass
    sidecar.shadow.configure(replace(settings, queue_size=1))
    assert sidecar.shadow.pending == 1
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_dropped_total", target_revision="t") == 2


async def test_a_copy_being_compared_is_not_abandoned_for_a_new_queue_size(
    model, other_model, start_sidecar, http
):
    other_model.hold = asyncio.Event()  # the target answers once released below
    settings = ShadowSettings(target=other_model.url, target_revision="t", percent=100)
    sidecar = await start_sidecar(model.url, shadow=settings)
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
        assert r.status == 200
    # Taken by a worker, its target still answering.
    await until(lambda: other_model.requests)
    assert sidecar.shadow.queue.qsize() == 0 and sidecar.shadow.pending
    sidecar.shadow.configure(replace(settings, queue_size=8, concurrency=2))
    other_model.hold.set()
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_requests_total", target_revision="t", outcome="compared") == 1
    assert len(sidecar.shadow._workers) == 2


async def test_unreachable_target_is_counted(model, start_sidecar, http):
    sidecar = await start_sidecar(
        model.url,
        shadow=ShadowSettings(target="http://127.0.0.1:9", target_revision="gone", percent=100),
    )
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
        assert r.status == 200
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert (
        value(m, "vigil_shadow_requests_total", target_revision="gone", outcome="unreachable") == 1
    )


@pytest.mark.slow
async def test_settings_file_changes_shadow_at_run_time(model, other_model, http, tmp_path):
    path = tmp_path / "sidecar.json"
    doc = {
        "model": {"name": "m", "version": "1"},
        "revision": "r1",
        "upstream": {"url": model.url},
        "listen": {"host": "127.0.0.1", "port": 0},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "reloadIntervalSeconds": 0.1,
    }
    path.write_text(json.dumps(doc))
    sidecar = Sidecar.create(load_settings(str(path), {}, {}))
    await sidecar.start()
    try:
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
            pass
        doc["shadow"] = {"target": other_model.url, "targetRevision": "cand", "percent": 100}
        path.write_text(json.dumps(doc))
        await until(lambda: sidecar.shadow.settings.enabled)
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
            pass
        await settle(sidecar)
        m = await scrape(http, sidecar)
        assert value(m, "vigil_shadow_percent", target_revision="cand") == 100
        assert value(m, "vigil_shadow_predictions_total", target_revision="cand") == 3
        assert value(m, "vigil_settings_reloads_total", outcome="applied") == 1
        doc["shadow"] = None
        path.write_text(json.dumps(doc))
        await until(lambda: not sidecar.shadow.settings.enabled)
    finally:
        await sidecar.stop()


def test_compare_predictions_classification_and_regression():
    assert compare_predictions([1, 2, "a"], [1.0, 3, "a"], True, 0) == (2, [0.0, 1.0])
    agree, diffs = compare_predictions([1.0, 2.0], [1.05, 2.5], False, 0.1)
    assert agree == 1 and diffs == pytest.approx([0.05, 0.5])


def test_a_score_of_one_half_is_the_negative_class_as_arg_max_decides_a_tie():
    # One revision answering its probability of the positive class, the other its label
    # (scikit-learn's predict, an arg-max over [0.5, 0.5]): a tie read as 1 disagreed.
    agree, diffs = compare_predictions([0.5, 0.7, 0.25], [0, 1, 0], True, 0)
    assert agree == 3 and diffs == pytest.approx([0.5, 0.3, 0.25])


def test_regression_agrees_within_absolute_plus_relative_share_of_the_local_answer():
    local, target = [100.0, 100.0, 0.0, -200.0], [104.0, 106.0, 0.5, -211.0]
    # |d| <= 1 + 0.05 x |local|: 4 <= 6, 6 <= 6, 0.5 <= 1, 11 <= 11
    agree, diffs = compare_predictions(local, target, False, 1.0, 0.05)
    assert agree == 4 and diffs == pytest.approx([4.0, 6.0, 0.5, 11.0])
    assert compare_predictions(local, target, False, 0.0, 0.05)[0] == 1
    assert compare_predictions(local, target, False, 0.0, 0.0)[0] == 0


async def test_without_an_absolute_tolerance_the_sidecar_takes_5_percent_of_the_reference_std(
    tmp_path, model, start_sidecar
):
    from vigil.profile import build_profile

    x = np.random.default_rng(0).normal(size=(500, 3))
    predictions = 150 + 40 * x[:, 0]
    profile = build_profile(x, predictions=predictions, feature_names=["a", "b", "c"])
    path = tmp_path / "regression.json"
    path.write_text(profile.to_json())
    sidecar = await start_sidecar(model.url, reference_profile=str(path))
    assert sidecar.shadow.default_tolerance == pytest.approx(0.05 * predictions.std())
    classifier = await start_sidecar(model.url)
    assert classifier.shadow.default_tolerance == 0.0  # no reference: no scale
