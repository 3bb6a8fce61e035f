"""The v2 binary tensor extension (Triton's clients' default): tensors after a JSON header
of Inference-Header-Content-Length bytes are read as their JSON form would be, not
counted as malformed JSON, and shadow copies of such traffic are compared."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from sidecar_testkit import V2Server, base, scrape, settle, value

from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.payload import SHAPE, parse_request, parse_response

OCTETS = "application/octet-stream"
FEATURES = ("a", "b", "c")


def binary_body(doc: dict[str, Any], *parts: bytes) -> tuple[bytes, int]:
    """A body of the extension and its JSON part's length."""
    header = json.dumps(doc).encode()
    return header + b"".join(parts), len(header)


def binary_input(name: str, shape: list[int], datatype: str, part: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": len(part)},
    }


def fp32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


class TestPayloads:
    def test_one_binary_tensor_maps_its_columns_to_the_features(self) -> None:
        part = fp32(0.5, 1.0, 2.0, 1.5, -1.0, 4.0)
        body, length = binary_body({"inputs": [binary_input("x", [2, 3], "FP32", part)]}, part)
        parsed = parse_request("v2", body, OCTETS, FEATURES, length)
        assert parsed.violations == [] and parsed.rows == 2
        assert parsed.columns == {"a": [0.5, 1.5], "b": [1.0, -1.0], "c": [2.0, 4.0]}

    def test_binary_and_json_tensors_mix_in_the_order_the_header_lists_them(self) -> None:
        first, third = fp32(1.0, 2.0), struct.pack("<2q", 7, 8)
        doc = {
            "inputs": [
                binary_input("a", [2], "FP32", first),
                {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
                binary_input("c", [2], "INT64", third),
            ]
        }
        body, length = binary_body(doc, first, third)
        parsed = parse_request("v2", body, "", FEATURES, length)
        assert parsed.columns == {"a": [1.0, 2.0], "b": [True, False], "c": [7, 8]}

    def test_bytes_and_bool_elements_read_as_their_json_form(self) -> None:
        words = b"".join(
            len(w).to_bytes(4, "little") + w for w in (b"cat", "\u00e9t\u00e9".encode())
        )
        flags = bytes([1, 0])
        doc = {
            "outputs": [
                binary_input("label", [2], "BYTES", words),
                binary_input("flag", [2], "BOOL", flags),
            ]
        }
        body, length = binary_body(doc, words, flags)
        assert parse_response("v2", body, OCTETS, True, json_length=length).values == [
            "cat",
            "\u00e9t\u00e9",
        ]
        flagged = parse_response("v2", body, OCTETS, True, "flag", json_length=length)
        assert flagged.values == [True, False]

    def test_bytes_that_do_not_fit_the_header_are_a_shape_violation(self) -> None:
        part = fp32(1.0, 2.0)
        doc = {"inputs": [binary_input("x", [1, 3], "FP32", part + b"\0" * 4)]}
        body, length = binary_body(doc, part)  # 4 bytes short
        parsed = parse_request("v2", body, OCTETS, FEATURES, length)
        assert parsed.violations == [SHAPE]

    def test_without_the_header_the_same_body_is_malformed_json(self) -> None:
        part = fp32(1.0, 2.0, 3.0)
        body, _ = binary_body({"inputs": [binary_input("x", [1, 3], "FP32", part)]}, part)
        assert parse_request("v2", body, OCTETS, FEATURES).violations == [
            "content_type",
            "malformed_json",
        ]


class BinaryModel(V2Server):
    """A v2 model that reads and answers binary tensors: class ``int(a) % 3``."""

    async def infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        length = int(request.headers["Inference-Header-Content-Length"])
        tensor = json.loads(body[:length])["inputs"][0]
        rows, width = tensor["shape"]
        values = struct.unpack(f"<{rows * width}f", body[length:])
        answer = struct.pack(f"<{rows}q", *(int(values[r * width]) % 3 for r in range(rows)))
        header = json.dumps(
            {"outputs": [binary_input("predict", [rows], "INT64", answer)]}
        ).encode()
        return web.Response(
            body=header + answer,
            content_type=OCTETS,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )


@pytest.fixture
async def binary_models() -> AsyncIterator[tuple[BinaryModel, BinaryModel]]:
    live, candidate = BinaryModel(), BinaryModel()
    await live.start()
    await candidate.start()
    try:
        yield live, candidate
    finally:
        await live.stop()
        await candidate.stop()


async def test_binary_traffic_is_monitored_and_its_shadow_copies_compared(
    binary_models, start_sidecar, http, profile_path
) -> None:
    live, candidate = binary_models
    sidecar = await start_sidecar(
        live.url,
        reference_profile=str(profile_path),
        shadow=ShadowSettings(target=candidate.url, target_revision="cand", percent=100),
    )
    part = fp32(0.5, 0.0, 5.0, 1.5, 0.0, 5.0, 2.5, 0.0, 5.0)
    body, length = binary_body(
        {
            "inputs": [binary_input("x", [3, 3], "FP32", part)],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        },
        part,
    )
    headers = {"Content-Type": OCTETS, "Inference-Header-Content-Length": str(length)}
    for _ in range(2):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body, headers=headers) as r:
            assert r.status == 200
            answer = await r.read()
            assert answer.endswith(struct.pack("<3q", 0, 1, 2))
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_input_rows_total") == 6
    assert value(m, "vigil_input_schema_violations_total") == 0
    assert value(m, "vigil_prediction_schema_violations_total") == 0
    assert value(m, "vigil_prediction_class_total", **{"class": "2"}) == 2
    assert value(m, "vigil_shadow_requests_total", outcome="compared") == 2
    assert value(m, "vigil_shadow_agreements_total", target_revision="cand") == 6
