"""Shadow copies: scores compared as numbers, bounded memory and loop time, the reserved header.

A classifier's probabilities are scores, not labels (compared as numbers when a tolerance
is set; by their decisions otherwise: test_sidecar_shadow_outcomes); the copies a slow
target leaves queued are bounded in bytes; answers too large to compare on the event loop
are counted, not compared; and ``X-Vigil-Shadow`` stays between the sidecars.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram
from sidecar_testkit import (
    SHADOW_LABELS,
    SHADOW_ROWS,
    FakeModel,
    answer_ok,
    base,
    capture_dispatch,
    fake_client,
    scrape,
    settle,
    stable_shadow,
    until,
    v2_body,
    value,
)

from vigil.sidecar import shadow as shadow_module
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.shadow import DIFF_BUCKETS, ShadowCopy, compare_predictions

ROWS = SHADOW_ROWS
LABELS = SHADOW_LABELS


def _answer(values: list[Any]) -> bytes:
    return json.dumps(
        {"outputs": [{"name": "p", "shape": [len(values)], "datatype": "FP32", "data": values}]}
    ).encode()


def _copy(body: bytes = b"{}", local: bytes = b"{}") -> ShadowCopy:
    return ShadowCopy("POST", "/v2/models/m/infer", "application/json", body, local, "")


def _dropped(registry: CollectorRegistry) -> float:
    sample = registry.get_sample_value(
        "vigil_shadow_dropped_total", {**LABELS, "target_revision": "c"}
    )
    return sample or 0.0


# ---------------------------------------------------------------- scores


def test_a_classifier_answering_one_score_per_row_agrees_with_itself_within_a_tolerance_set():
    # One probability per row (a binary classifier): float noise is no disagreement.
    stable, candidate = [0.91, 0.12, 0.55], [0.9100001, 0.12003, 0.5501]
    agree, diffs = compare_predictions(stable, candidate, True, 0.0, 0.05, scores_as_numbers=True)
    assert agree == 3
    assert diffs == pytest.approx([1e-7, 3e-5, 1e-4], abs=1e-9)
    # ... and a different score is still a disagreement.
    assert compare_predictions([0.91], [0.5], True, 0.0, 0.05, scores_as_numbers=True)[0] == 0


def test_scores_on_either_side_are_compared_as_numbers_within_a_tolerance_set():
    # The stable answers 1.0/0.0, the candidate probabilities: numbers, with the tolerance.
    agree, _ = compare_predictions(
        [1.0, 0.0], [0.9999, 0.0001], True, 0.001, 0.0, scores_as_numbers=True
    )
    assert agree == 2
    assert (
        compare_predictions([0.99, 0.0001], [1.0, 0.0], True, 0.001, 0.0, scores_as_numbers=True)[0]
        == 1
    )


def test_class_labels_are_still_compared_as_labels():
    assert compare_predictions(["a", 1, 2.0], ["a", 1.0, 3], True, 0.5, 0.5)[0] == 2


# ---------------------------------------------------------------- byte budget


async def test_queued_copies_are_bounded_by_bytes_and_the_overflow_counted_as_dropped():
    registry = CollectorRegistry()
    shadow = stable_shadow("http://127.0.0.1:9", registry)  # not started: nothing leaves the queue
    body = b"x" * (1 << 20)
    for _ in range(300):
        shadow.submit(_copy(body))
    held = sum(len(c.body) + len(c.local_response) for c in shadow.queue._queue)  # type: ignore[attr-defined]
    assert held <= shadow_module.QUEUE_BYTES
    assert shadow.queue.qsize() < 256
    assert _dropped(registry) == 300 - shadow.queue.qsize()


async def test_a_copy_frees_its_bytes_once_compared(model: FakeModel, monkeypatch):
    size = len(v2_body(ROWS)) + 2
    monkeypatch.setattr(shadow_module, "QUEUE_BYTES", 3 * size)
    registry = CollectorRegistry()
    shadow = stable_shadow(model.url, registry)
    shadow.start()
    try:
        for _ in range(3):  # one budget's worth at a time, three times over
            for _ in range(3):
                shadow.submit(_copy(v2_body(ROWS)))
            await until(lambda: not shadow.pending)
            assert shadow.held_bytes == 0
        assert _dropped(registry) == 0
        assert len(model.requests) == 9
    finally:
        await shadow.stop()


async def test_copies_dropped_for_a_smaller_queue_free_their_bytes():
    registry = CollectorRegistry()
    shadow = stable_shadow("http://127.0.0.1:9", registry, queue_size=4)
    for _ in range(3):
        shadow.submit(_copy(b"x" * 100))
    shadow.configure(replace(shadow.settings, queue_size=1))
    assert shadow.held_bytes == 102 and _dropped(registry) == 2


# ---------------------------------------------------------------- too large to compare


@pytest.mark.parametrize(
    ("cap", "size"),
    # The fake model's answer to ROWS is ~110 bytes of 3 rows: over either cap.
    [("MAX_COMPARED_BYTES", 50), ("MAX_COMPARED_ROWS", 2)],
)
async def test_an_answer_over_a_compare_cap_is_counted_too_large_and_not_compared(
    model, start_sidecar, http, monkeypatch, cap, size
):
    monkeypatch.setattr(shadow_module, cap, size, raising=False)
    sidecar = await start_sidecar(
        model.url, shadow=ShadowSettings(target=model.url, target_revision="t", percent=100)
    )
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
        assert r.status == 200
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_shadow_requests_total", target_revision="t", outcome="too_large") == 1
    assert value(m, "vigil_shadow_predictions_total", target_revision="t") == 0


async def test_a_local_answer_over_the_compare_cap_is_too_large_whatever_the_target_says(
    model: FakeModel, monkeypatch
):
    monkeypatch.setattr(shadow_module, "MAX_COMPARED_BYTES", 1000, raising=False)
    registry = CollectorRegistry()
    shadow = stable_shadow(model.url, registry)
    shadow.start()
    try:
        local = _answer([0.5] * 300)  # the target's answer (~110 bytes) is under the cap
        assert len(local) > 1000
        shadow.submit(_copy(v2_body(ROWS), local))
        await until(lambda: not shadow.pending)
    finally:
        await shadow.stop()
    outcome = {**LABELS, "target_revision": "c", "outcome": "too_large"}
    assert registry.get_sample_value("vigil_shadow_requests_total", outcome) == 1
    assert len(model.requests) == 1  # the candidate still had the copy to answer


async def test_a_gzip_answer_over_the_cap_once_decoded_is_too_large(monkeypatch):
    import gzip

    monkeypatch.setattr(shadow_module, "MAX_COMPARED_BYTES", 1000, raising=False)
    inflated = gzip.compress(_answer([0.5] * 2000))  # far under 1000 bytes as sent
    assert len(inflated) < 1000
    decoded = shadow_module._decoded(inflated, "gzip", 1000)
    assert decoded is not None and len(decoded) == 1001  # stopped just past the cap
    assert shadow_module._decoded(b"not gzip", "gzip", 1000) is None
    assert shadow_module._decoded(b"raw", "", 1000) == b"raw"


async def test_the_comparison_lets_the_event_loop_run_between_its_steps(
    model, start_sidecar, http, monkeypatch
):
    """Parsing two answers and comparing them are separate turns of the loop: live requests
    on the same pod are not held up by the whole of it at once."""
    loop = asyncio.get_running_loop()
    ran: list[str] = []
    seen_at_compare: list[list[str]] = []
    real_parse, real_compare = shadow_module.parse_response, shadow_module.compare_predictions

    def parse(*args: Any, **kwargs: Any) -> Any:
        loop.call_soon(ran.append, "parsed")
        return real_parse(*args, **kwargs)

    def compare(*args: Any, **kwargs: Any) -> Any:
        seen_at_compare.append(list(ran))
        return real_compare(*args, **kwargs)

    monkeypatch.setattr(shadow_module, "parse_response", parse)
    monkeypatch.setattr(shadow_module, "compare_predictions", compare)
    other = FakeModel(offset=1)  # a different answer: parsed on its own
    await other.start()
    try:
        sidecar = await start_sidecar(
            model.url, shadow=ShadowSettings(target=other.url, target_revision="t", percent=100)
        )
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(ROWS)):
            pass
        await settle(sidecar)
    finally:
        await other.stop()
    assert seen_at_compare and seen_at_compare[0] == ["parsed", "parsed"]


def _histogram_samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    return {
        (s.name.removeprefix(name), s.labels.get("le")): s.value
        for family in registry.collect()
        if family.name == name
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_differences_observed_in_bulk_fill_the_histogram_as_one_by_one():
    diffs = [0.0, 1e-7, 1e-4, 0.003, 0.05, 0.2, 0.5, 7.0, 100.0, 1e9, float("inf")]
    registry = CollectorRegistry()
    one = Histogram("one", "d", buckets=DIFF_BUCKETS, registry=registry)
    bulk = Histogram("bulk", "d", buckets=DIFF_BUCKETS, registry=registry)
    for d in diffs:
        one.observe(d)
    shadow_module.observe_all(bulk, diffs)
    shadow_module.observe_all(bulk, [])
    assert _histogram_samples(registry, "bulk") == _histogram_samples(registry, "one")


# ---------------------------------------------------------------- the reserved header


async def test_the_shadow_header_is_not_forwarded_to_the_model_server(
    model, start_sidecar, monkeypatch
):
    sidecar = await start_sidecar(model.url)
    sent = capture_dispatch(sidecar.proxy, monkeypatch)
    client, _ = fake_client(sidecar.proxy)
    client.data_received(
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nx-vigil-shadow: 1\r\n"
        b"X-Vigil-Shadow-Target: kept\r\nContent-Length: 2\r\n\r\n{}"
    )
    [request] = sent
    assert request.head.shadow_copy  # still a copy for this sidecar's figures
    assert b"x-vigil-shadow:" not in request.head.raw.lower()
    assert b"X-Vigil-Shadow-Target: kept\r\n" in request.head.raw  # other headers untouched
    assert request.head.raw.endswith(b"\r\n\r\n")
    answer_ok(client, request)  # unanswered, it held the sidecar's drain for 5 s


async def test_a_copy_counts_as_a_copy_at_the_candidate_whose_model_never_sees_the_header(
    model, start_sidecar, http
):
    other = FakeModel()
    await other.start()
    try:
        candidate = await start_sidecar(other.url, revision="cand", role="candidate")
        stable = await start_sidecar(
            model.url,
            shadow=ShadowSettings(target=base(candidate), target_revision="cand", percent=100),
        )
        async with http.post(f"{base(stable)}/v2/models/m/infer", data=v2_body(ROWS)) as r:
            assert r.status == 200
        await settle(stable)
        await settle(candidate)
        m = await scrape(http, candidate)
        assert value(m, "vigil_requests_total", endpoint="infer", origin="shadow") == 1
        assert value(m, "vigil_requests_total", endpoint="infer", origin="live") == 0
        assert other.shadow_marks == [None]
        m = await scrape(http, stable)
        assert value(m, "vigil_shadow_agreements_total", target_revision="cand") == 3
    finally:
        await other.stop()


async def test_the_target_client_stops_reading_an_answer_over_its_limit():
    """A target answer too large to compare is not read whole (it would only take memory)."""
    from vigil.sidecar import target as target_module

    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"x" * 64 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + b"x" * 8,
    ]

    handlers: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answers.pop(0))
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = target_module.TargetClient()
    request = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
    try:
        for _ in range(2):
            with pytest.raises(target_module.AnswerTooLarge):
                await client.request("127.0.0.1", port, request, False, max_body=10)
        resp = await client.request("127.0.0.1", port, request, False, max_body=10)
        assert resp.body == b"x" * 8
    finally:
        client.close()
        server.close()
        async with asyncio.timeout(5):  # each connection closed by the client
            await asyncio.gather(*handlers, return_exceptions=True)
