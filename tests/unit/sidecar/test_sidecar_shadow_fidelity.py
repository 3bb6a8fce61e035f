"""Shadow copies the candidate can read, and answers compared output by output.

A copy carries the live request's end-to-end headers (the binary tensor extension's
``Inference-Header-Content-Length`` among them: without it the body means nothing to
the candidate), not its hop-by-hop ones. The V2 comparison reads, in the candidate's
answer, the output of the stable's that the monitor reads as the prediction, by name.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from sidecar_testkit import (
    SHADOW_LABELS,
    V2Server,
    base,
    scrape,
    settle,
    stable_shadow,
    until,
    v2_body,
    value,
)

from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.payload import parse_response
from vigil.sidecar.shadow import ShadowCopy, _request_bytes, _target_of

INFER = "/v2/models/m/infer"


# ---------------------------------------------------------------- headers of the copy


class BinaryModel(V2Server):
    """A model server speaking the binary tensor extension, as Triton does: the body is
    a JSON header of ``Inference-Header-Content-Length`` bytes, then the tensors' bytes.
    Without the header the body is read as JSON, which a binary tail is not (400)."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []

    async def infer(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        body = await request.read()
        length = request.headers.get("Inference-Header-Content-Length")
        try:
            header = json.loads(body[: int(length)] if length is not None else body)
            tensor = header["inputs"][0]
            rows, width = tensor["shape"]
            tail = body[int(length) :] if length is not None else b""
            values = struct.unpack(f"<{rows * width}f", tail)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        preds = [int(values[r * width]) % 3 for r in range(rows)]
        out = {"name": "predict", "shape": [rows], "datatype": "INT64", "data": preds}
        return web.json_response({"outputs": [out]})


def _binary_body(rows: list[list[float]]) -> tuple[bytes, int]:
    """A binary-extension request body and the length of its JSON header."""
    data = struct.pack(f"<{sum(len(r) for r in rows)}f", *(v for r in rows for v in r))
    tensor = {
        "name": "x",
        "shape": [len(rows), len(rows[0])],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(data)},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + data, len(header)


@pytest.fixture
async def binary_model() -> AsyncIterator[Callable[[], Any]]:
    started: list[BinaryModel] = []

    async def start() -> BinaryModel:
        server = BinaryModel()
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.stop()


async def test_a_binary_tensor_request_is_copied_with_its_header_length(
    binary_model, start_sidecar, http: aiohttp.ClientSession
):
    stable, candidate = await binary_model(), await binary_model()
    sidecar = await start_sidecar(
        stable.url, shadow=ShadowSettings(target=candidate.url, target_revision="c", percent=100)
    )
    body, length = _binary_body([[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0]])
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(length),
        "Authorization": "Bearer live-token",
    }
    async with http.post(f"{base(sidecar)}{INFER}", data=body, headers=headers) as resp:
        assert resp.status == 200
    await settle(sidecar)
    metrics = await scrape(http, sidecar)
    assert value(metrics, "vigil_shadow_requests_total", outcome="compared") == 1
    assert value(metrics, "vigil_shadow_requests_total", outcome="target_error") == 0
    assert value(metrics, "vigil_shadow_agreements_total", target_revision="c") == 3
    [copy] = candidate.headers
    assert copy["Inference-Header-Content-Length"] == str(length)
    assert copy["Authorization"] == "Bearer live-token"
    assert copy["Content-Type"] == "application/octet-stream"
    assert copy["X-Vigil-Shadow"] == "1"


def _copy_head(raw_head: bytes, body: bytes = b"{}") -> list[bytes]:
    """The header lines of the copy of a live request with head ``raw_head``."""
    copy = ShadowCopy(
        "POST", INFER, "application/json", body, b"", "application/json", head=raw_head
    )
    sent = _request_bytes(_target_of("http://cand.ml.svc:80/base"), copy)
    head, _, rest = sent.partition(b"\r\n\r\n")
    assert rest == body
    return head.split(b"\r\n")


def test_the_copy_keeps_end_to_end_headers_and_drops_hop_by_hop_ones():
    live = (
        b"POST /v2/models/m/infer HTTP/1.1\r\n"
        b"Host: wine.ml.svc\r\n"
        b"Content-Type: application/json; charset=UTF-8\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Connection: keep-alive, X-Hop\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"X-Hop: dropped, Connection names it\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Upgrade: h2c\r\n"
        b"Proxy-Authorization: Basic cHJveHk=\r\n"
        b"Accept-Encoding: gzip\r\n"
        b"Inference-Header-Content-Length: 2\r\n"
        b"Authorization: Bearer t\r\n"
        b"Accept: application/json\r\n"
        b"X-Request-Id: abc\r\n"
        b"Ce-Specversion: 1.0\r\n\r\n"
    )
    lines = _copy_head(live)
    names = [line.partition(b":")[0].lower() for line in lines[1:]]
    assert lines[0] == b"POST /base/v2/models/m/infer HTTP/1.1"
    assert b"Host: cand.ml.svc:80" in lines
    assert b"Content-Length: 2" in lines
    assert b"Accept-Encoding: identity" in lines
    assert b"X-Vigil-Shadow: 1" in lines
    for kept in (
        b"Content-Type: application/json; charset=UTF-8",
        b"Inference-Header-Content-Length: 2",
        b"Authorization: Bearer t",
        b"Accept: application/json",
        b"X-Request-Id: abc",
        b"Ce-Specversion: 1.0",
    ):
        assert kept in lines
    for dropped in (
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"x-hop",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
    ):
        assert dropped not in names
    # Each header the sidecar sets once: its own, not the client's.
    for own in (b"host", b"content-length", b"accept-encoding", b"x-vigil-shadow"):
        assert names.count(own) == 1


def test_a_copy_without_content_type_says_json_as_before():
    lines = _copy_head(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Content-Type: application/json" in lines
    assert not any(line.lower().startswith(b"authorization") for line in lines)


def test_a_copy_made_without_the_live_head_sends_its_content_type_and_encoding():
    copy = ShadowCopy("POST", INFER, "application/json", b"x", b"", "", "gzip")
    head = _request_bytes(_target_of("http://t:80"), copy).split(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"Content-Type: application/json" in head
    assert b"Content-Encoding: gzip" in head


# ---------------------------------------------------------------- outputs by name


def _outputs(*outputs: dict[str, Any]) -> bytes:
    return json.dumps({"outputs": list(outputs)}).encode()


PREDICT = {"name": "predict", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "a"]}
PROBA = {
    "name": "predict_proba",
    "shape": [3, 2],
    "datatype": "FP64",
    "data": [0.9, 0.1, 0.2, 0.8, 0.7, 0.3],
}


async def _compare_one(answering, local: bytes, target: bytes) -> CollectorRegistry:
    registry = CollectorRegistry()
    shadow = stable_shadow(await answering(target), registry)
    shadow.start()
    try:
        shadow.submit(
            ShadowCopy("POST", INFER, "application/json", v2_body([[1]]), local, "application/json")
        )
        await until(lambda: not shadow.pending)
    finally:
        await shadow.stop()
    return registry


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**SHADOW_LABELS, "target_revision": "c", **labels})


async def test_outputs_in_another_order_are_matched_by_name(answering):
    registry = await _compare_one(answering, _outputs(PREDICT, PROBA), _outputs(PROBA, PREDICT))
    assert _sample(registry, "vigil_shadow_requests_total", outcome="compared") == 1
    assert _sample(registry, "vigil_shadow_predictions_total") == 3
    assert _sample(registry, "vigil_shadow_agreements_total") == 3


async def test_a_candidate_without_the_stables_prediction_output_is_unparseable(answering):
    registry = await _compare_one(answering, _outputs(PREDICT, PROBA), _outputs(PROBA))
    assert _sample(registry, "vigil_shadow_requests_total", outcome="unparseable") == 1
    assert _sample(registry, "vigil_shadow_requests_total", outcome="compared") == 0


async def test_unnamed_outputs_are_compared_by_position(answering):
    unnamed = {k: v for k, v in PREDICT.items() if k != "name"}
    registry = await _compare_one(answering, _outputs(PREDICT, PROBA), _outputs(unnamed))
    assert _sample(registry, "vigil_shadow_agreements_total") == 3
    registry = await _compare_one(answering, _outputs(unnamed), _outputs(PREDICT, PROBA))
    assert _sample(registry, "vigil_shadow_agreements_total") == 3


def test_the_monitor_and_the_comparison_read_the_same_output():
    from vigil.sidecar.payload import prediction_output  # new: one rule for both

    body = _outputs(PREDICT, PROBA)
    monitored = parse_response("v2", body, "application/json", True)
    assert monitored.values == ["a", "b", "a"]
    assert monitored.output == "predict"
    # The candidate's answer, read for the output the stable's prediction came from.
    swapped = parse_response("v2", _outputs(PROBA, PREDICT), "application/json", True, "predict")
    assert swapped.values == monitored.values
    assert prediction_output([PROBA, PREDICT]) is PROBA
    assert prediction_output([PROBA, PREDICT], "predict") is PREDICT
    assert prediction_output([{"data": [1]}], "predict") == {"data": [1]}
    assert prediction_output([PROBA], "predict") is None
