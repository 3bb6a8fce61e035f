"""Regression tests for what the payload fuzzing found in the sidecar.

- JSON nested deeper than the parser's stack raised RecursionError inside the
  monitoring batch: the whole batch went uncounted (vigil_monitoring_errors).
- A JSON ``null`` body was taken for "could not decode" and counted nowhere.
- A body over the limit got its 413 and an immediate close while the client was
  still uploading: the kernel reset the connection and the client lost the 413.
- Content-Length and chunk sizes were read with Python's int(), which also takes
  "+5", "1_0" and "0x10": the proxy and the server behind it could frame the same
  bytes differently (request smuggling).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from fuzz_kit import sidecar_process
from fuzz_kit import upstream_process as start_upstream

from vigil.sidecar.payload import parse_request, parse_response
from vigil.sidecar.wire import BadMessage, parse_request_head, scan_chunked


def test_json_nested_beyond_the_parser_stack_is_counted_as_malformed() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    parsed = parse_request("v2", body, "application/json", ("a",))
    assert parsed.violations == ["malformed_json"]
    assert parse_response("v2", body, "application/json", False).violations == ["malformed_json"]


def test_json_null_body_is_an_unknown_payload_not_nothing() -> None:
    assert parse_request("v2", b"null", "application/json", ("a",)).violations == [
        "unknown_payload"
    ]
    assert parse_request("v1", b"null", "", ("a",)).violations == ["unknown_payload"]
    assert parse_response("v2", b"null", "", False).violations == ["unknown_payload"]


@pytest.mark.parametrize("value", [b"+5", b"1_0", b"0x5", b" -5", b"5 5", b"\xd9\xa5", b""])
def test_content_length_outside_the_http_grammar_is_a_bad_request(value: bytes) -> None:
    head = b"POST /x HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\n"
    with pytest.raises(BadMessage):
        parse_request_head(head)


def test_content_length_with_surrounding_blanks_is_still_read() -> None:
    assert (
        parse_request_head(b"POST /x HTTP/1.1\r\nContent-Length:  12 \r\n\r\n").content_length == 12
    )


@pytest.mark.parametrize("size", [b"0x5", b"+5", b"5_0", b"-1", b"", b"1" * 16])
def test_chunk_size_outside_the_http_grammar_is_a_bad_request(size: bytes) -> None:
    with pytest.raises(BadMessage):
        scan_chunked(size + b"\r\nhello\r\n0\r\n\r\n", 0, None)


def test_chunk_size_with_extension_is_still_read() -> None:
    assert scan_chunked(b"5;ext=1\r\nhello\r\n0\r\n\r\n", 0, None) == (21, b"hello")


async def _upload_then_read(port: int, head: bytes, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    with contextlib.suppress(ConnectionError):
        for i in range(0, len(body), 65536):
            writer.write(body[i : i + 65536])
            await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def test_client_still_uploading_a_body_over_the_limit_receives_the_413(tmp_path: Path) -> None:
    body = b"1" * (4 * 1024 * 1024)
    heads = {
        "content-length": (
            f"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        ),
        "chunked": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    }
    chunked_body = b"".join(
        b"%x\r\n" % len(body[i : i + 65536]) + body[i : i + 65536] + b"\r\n"
        for i in range(0, len(body), 65536)
    )
    with start_upstream(tmp_path) as upstream:
        settings = {
            "upstream": {"url": f"http://127.0.0.1:{upstream}"},
            "limits": {"maxBodyBytes": 65536},
        }
        with sidecar_process(tmp_path, settings) as sidecar:
            for name, head in heads.items():
                payload = chunked_body if name == "chunked" else body
                answer = asyncio.run(_upload_then_read(sidecar.port, head, payload))
                assert answer.startswith(b"HTTP/1.1 413 "), (name, answer[:200])
