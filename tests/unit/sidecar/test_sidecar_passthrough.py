"""Requests and responses pass through byte for byte."""

import asyncio
import json

from sidecar_testkit import base, scrape, settle, v2_body, value


async def test_v2_inference_answer_is_identical_to_direct(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    body = v2_body([[1.5, 0.1, 4.0], [2.2, -1.0, 6.0]])
    direct = await (await http.post(f"{model.url}/v2/models/m/infer", data=body)).read()
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body) as resp:
        assert resp.status == 200
        proxied = await resp.read()
    assert proxied == direct
    assert model.requests[-1] == body == model.requests[-2]


async def test_binary_body_and_headers_are_forwarded_unchanged(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    payload = bytes(range(256)) * 1000
    async with http.post(f"{base(sidecar)}/echo?x=1", data=payload) as resp:
        assert resp.status == 200
        assert resp.headers["X-Echo-Len"] == str(len(payload))
        assert await resp.read() == payload


async def test_chunked_request_and_response(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)

    async def gen():
        for part in (b"abc", b"def" * 100, b"g"):
            yield part

    async with http.post(f"{base(sidecar)}/echo", data=gen()) as resp:
        assert await resp.read() == b"abc" + b"def" * 100 + b"g"
    async with http.get(f"{base(sidecar)}/chunked") as resp:
        assert await resp.read() == b"hello chunked world"


async def test_model_status_codes_pass_through(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    for code in (201, 404, 422, 500, 503):
        async with http.get(f"{base(sidecar)}/status/{code}") as resp:
            assert resp.status == code
            assert await resp.json() == {"code": str(code)}
            assert "X-Vigil-Error" not in resp.headers


async def test_keep_alive_connection_serves_many_requests(model, start_sidecar):
    sidecar = await start_sidecar(model.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    try:
        body = v2_body([[1.0, 0.0, 0.0]])
        for _ in range(20):
            writer.write(
                b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            assert json.loads(await reader.readexactly(length))["outputs"][0]["data"] == [1]
    finally:
        writer.close()


async def test_expect_100_continue_is_answered_by_the_sidecar(model, start_sidecar):
    sidecar = await start_sidecar(model.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    try:
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(5) == b"hello"
    finally:
        writer.close()


async def test_numeric_strings_pass_through_unchanged_and_count_as_type_violations(
    model, start_sidecar, http, profile_path
):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": ["1.5", "0.038", "5"]}
            ]
        }
    ).encode()
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body) as resp:
        assert resp.status == 200
    assert model.requests[-1] == body
    await settle(sidecar)
    metrics = await scrape(http, sidecar)
    assert value(metrics, "vigil_input_schema_violations_total", kind="type") == 3
