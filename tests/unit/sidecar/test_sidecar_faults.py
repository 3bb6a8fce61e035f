"""Bad input and faults: clear answers, counted, and the sidecar keeps serving."""

import asyncio
import json

import pytest
from sidecar_testkit import (
    answer_ok,
    base,
    capture_dispatch,
    fake_client,
    scrape,
    settle,
    v2_body,
    value,
)

from vigil.devcluster.common import free_port
from vigil.sidecar import proxy


async def test_body_over_limit_gets_413_and_is_counted(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url, max_body_bytes=1000)
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=b"x" * 5000) as resp:
        assert resp.status == 413
        assert resp.headers["X-Vigil-Error"] == "body_too_large"
    assert model.requests == []
    m = await scrape(http, sidecar)
    assert value(m, "vigil_rejected_requests_total", reason="body_too_large") == 1
    assert value(m, "vigil_requests_total", outcome="rejected", code="413") == 1
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])) as r:
        assert r.status == 200


async def test_malformed_json_gets_the_model_answer_and_is_counted(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    async with http.post(
        f"{base(sidecar)}/v2/models/m/infer",
        data=b"{oops",
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert "bad request" in (await resp.json())["error"]
        assert "X-Vigil-Error" not in resp.headers
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_input_schema_violations_total", kind="malformed_json") == 1
    assert value(m, "vigil_requests_total", outcome="client_error", code="400") == 1


async def test_wrong_content_type_is_counted(model, start_sidecar, http):
    sidecar = await start_sidecar(model.url)
    async with http.post(
        f"{base(sidecar)}/v2/models/m/infer",
        data=v2_body([[1, 2, 3]]),
        headers={"Content-Type": "text/csv"},
    ) as resp:
        assert resp.status == 200
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_input_schema_violations_total", kind="content_type") == 1


async def test_model_server_down_gives_503_counted_as_refused(start_sidecar, http):
    sidecar = await start_sidecar(f"http://127.0.0.1:{free_port()}")
    for _ in range(3):
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=b"{}") as resp:
            assert resp.status == 503
            assert resp.headers["X-Vigil-Error"] == "upstream_refused"
    m = await scrape(http, sidecar)
    assert value(m, "vigil_upstream_failures_total", reason="refused") == 3
    assert value(m, "vigil_requests_total", outcome="upstream_error", code="503") == 3
    async with http.get(f"{base(sidecar)}/healthz/ready") as resp:
        assert resp.status == 503
    async with http.get(f"{base(sidecar)}/healthz/live") as resp:
        assert resp.status == 200


@pytest.mark.slow
async def test_slow_model_server_gives_504(model, start_sidecar, http):
    model.delay = 2.0
    sidecar = await start_sidecar(model.url, upstream_timeout_seconds=0.2)
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])) as r:
        assert r.status == 504
    m = await scrape(http, sidecar)
    assert value(m, "vigil_upstream_failures_total", reason="timeout") == 1


async def _raw_upstream(behaviour):
    async def handle(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            await behaviour(reader, writer)
        except Exception:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_upstream_reset_and_garbage_give_502(start_sidecar, http):
    async def close_midway(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async def garbage(reader, writer):
        writer.write(b"this is not http\r\n\r\n")
        await writer.drain()

    for behaviour, reason in ((close_midway, "reset"), (garbage, "protocol")):
        server, url = await _raw_upstream(behaviour)
        try:
            sidecar = await start_sidecar(url)
            async with http.post(f"{base(sidecar)}/x", data=b"{}") as resp:
                assert resp.status == 502
                assert resp.headers["X-Vigil-Error"] == f"upstream_{reason}"
            m = await scrape(http, sidecar)
            assert value(m, "vigil_upstream_failures_total", reason=reason) == 1
        finally:
            server.close()


async def test_malformed_http_from_client_gets_400_and_sidecar_survives(model, start_sidecar):
    sidecar = await start_sidecar(model.url)
    for junk in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nno-colon-header\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
        writer.write(junk)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.proxy.port)
    writer.write(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()


class TestRefusedRequestHeads:
    """Refused heads get the sidecar's answer, reach no model server and count as rejected."""

    async def test_a_bare_lf_in_a_header_value_gets_400(
        self, model, start_sidecar, http, monkeypatch
    ):
        # A model server that ends a line at a bare LF would read a second, hidden request,
        # and its answer would go to the next client of the pooled connection.
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        client.data_received(
            b"POST /x HTTP/1.1\r\nHost: a\r\nX: a\n\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert transport.answers() == [b"HTTP/1.1 400 Bad Request"] and transport.closing
        assert sent == []
        m = await scrape(http, sidecar)
        assert value(m, "vigil_rejected_requests_total", reason="bad_request") == 1
        assert value(m, "vigil_request_outcomes_total", outcome="rejected") == 1

    @pytest.mark.parametrize(
        "first_read",
        [None, 1000, proxy.MAX_HEADER_BYTES + 1],
        ids=["in-one-read", "its-end-in-a-later-read", "no-end-yet"],
    )
    async def test_a_head_over_64_kib_gets_431(
        self, model, start_sidecar, http, monkeypatch, first_read
    ):
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        big = b"GET /x HTTP/1.1\r\nX: " + b"a" * proxy.MAX_HEADER_BYTES + b"\r\n\r\n"
        client.data_received(big[:first_read])
        if not transport.answers():
            client.data_received(big[first_read:])
        assert transport.answers() == [b"HTTP/1.1 431 Request Header Fields Too Large"]
        assert transport.closing and sent == []
        m = await scrape(http, sidecar)
        assert value(m, "vigil_rejected_requests_total", reason="headers_too_large") == 1
        assert value(m, "vigil_request_outcomes_total", outcome="rejected") == 1
        assert value(m, "vigil_requests_total", outcome="rejected", code="431") == 1

    async def test_a_head_of_exactly_64_kib_is_forwarded(self, model, start_sidecar, monkeypatch):
        sidecar = await start_sidecar(model.url)
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, transport = fake_client(sidecar.proxy)
        start, end = b"GET /x HTTP/1.1\r\nX: ", b"\r\n\r\n"
        client.data_received(start + b"a" * (proxy.MAX_HEADER_BYTES - len(start + end)) + end)
        assert len(sent) == 1
        answer_ok(client, sent[0])
        assert transport.answers() == [b"HTTP/1.1 200 OK"]


async def test_missing_or_invalid_reference_keeps_proxying_and_says_why(
    model, start_sidecar, http, tmp_path, caplog
):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "vigil.dev/reference-profile", "schemaVersion": 7}')
    cases = (
        ("", "no_reference"),
        (str(tmp_path / "nope.json"), "unreadable"),
        (str(bad), "invalid"),
    )
    for path, reason in cases:
        sidecar = await start_sidecar(model.url, reference_profile=path)
        async with http.post(
            f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])
        ) as resp:
            assert resp.status == 200
        m = await scrape(http, sidecar)
        assert value(m, "vigil_drift_monitoring_enabled", reason=reason) == 0
        assert value(m, "vigil_requests_total", outcome="success") == 1
        assert f"drift monitoring is off ({reason})" in caplog.text


async def test_a_ragged_request_is_forwarded_and_counted_as_a_shape_violation(
    model, start_sidecar, http, profile_path
):
    sidecar = await start_sidecar(model.url, reference_profile=str(profile_path))
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2], [3, 4, 5, 6]]}
            ]
        }
    ).encode()
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=body) as resp:
        assert "X-Vigil-Error" not in resp.headers  # the model server's own answer
    assert model.requests == [body]
    await settle(sidecar)
    m = await scrape(http, sidecar)
    assert value(m, "vigil_input_schema_violations_total", kind="shape") == 1
    assert value(m, "vigil_feature_bin_total") == 0


async def test_an_endless_chunked_answer_gets_502_once_past_the_answer_limit(
    start_sidecar, http, monkeypatch
):
    monkeypatch.setattr(proxy, "MAX_ANSWER_BYTES", 64 * 1024)
    sent = [0]

    async def endless(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
        while sent[0] < 64 * 1024 * 1024:  # stops on its own should the sidecar never cut it
            writer.write(chunk)
            sent[0] += len(chunk)
            await writer.drain()

    server, url = await _raw_upstream(endless)
    try:
        sidecar = await start_sidecar(url, max_body_bytes=1024, upstream_timeout_seconds=5)
        async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1, 2, 3]])) as r:
            assert r.status == 502
            assert r.headers["X-Vigil-Error"] == "upstream_body_too_large"
        m = await scrape(http, sidecar)
        assert value(m, "vigil_upstream_failures_total", reason="body_too_large") == 1
        assert value(m, "vigil_requests_total", outcome="upstream_error", code="502") == 1
        assert sent[0] < 64 * 1024 * 1024
    finally:
        server.close()


async def test_a_chunked_answer_within_the_body_limit_is_forwarded(start_sidecar, http):
    async def chunked(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n")
        await writer.drain()

    server, url = await _raw_upstream(chunked)
    try:
        sidecar = await start_sidecar(url, max_body_bytes=1024)
        async with http.get(f"{base(sidecar)}/x") as resp:
            assert resp.status == 200 and await resp.read() == b"x" * 1024
    finally:
        server.close()


@pytest.mark.parametrize("framing", ["content-length", "until-close"])
async def test_an_answer_past_the_answer_limit_gets_502(start_sidecar, http, monkeypatch, framing):
    monkeypatch.setattr(proxy, "MAX_ANSWER_BYTES", 64 * 1024)
    size = 1024 * 1024

    async def large(reader, writer):
        length = f"Content-Length: {size}\r\n" if framing == "content-length" else ""
        writer.write(f"HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n".encode())
        for _ in range(size // 4096):
            writer.write(b"x" * 4096)
            await writer.drain()
        writer.close()

    server, url = await _raw_upstream(large)
    try:
        sidecar = await start_sidecar(url, max_body_bytes=1024, upstream_timeout_seconds=5)
        async with http.get(f"{base(sidecar)}/x") as resp:
            assert resp.status == 502
            assert resp.headers["X-Vigil-Error"] == "upstream_body_too_large"
    finally:
        server.close()
