"""Pure HTTP framing helpers: request heads, response heads, incremental chunked scanning."""

import json

import pytest

from vigil.sidecar.wire import (
    BadMessage,
    BodyTooLarge,
    error_response,
    parse_request_head,
    parse_response_head,
    scan_chunked,
)

CHUNKED = b"3\r\nabc\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"


def test_request_head_framing_and_keep_alive():
    h = parse_request_head(
        b"POST /v2/models/m/infer?x=1 HTTP/1.1\r\nContent-Length: 7\r\n"
        b"Content-Type: Application/JSON\r\n\r\n"
    )
    assert (h.method, h.path, h.content_length, h.keep_alive) == (
        "POST",
        "/v2/models/m/infer",
        7,
        True,
    )
    assert h.content_type == "application/json"
    h10 = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
    assert h10.http10 and not h10.keep_alive
    close = parse_request_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert not close.keep_alive


class TestRequestsFramedTwoWaysAreRefused:
    """RFC 9112 6.3 and 5.1: a proxy and the server behind it could frame these
    differently (request smuggling), so the sidecar answers 400 instead of guessing."""

    @pytest.mark.parametrize(
        "headers",
        [
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        ],
    )
    def test_transfer_encoding_with_content_length(self, headers):
        with pytest.raises(BadMessage, match="Transfer-Encoding and Content-Length"):
            parse_request_head(b"POST / HTTP/1.1\r\n" + headers + b"\r\n")

    @pytest.mark.parametrize(
        "line",
        [
            b"Content-Length : 5",
            b"Content-Length\t: 5",
            b"Transfer-Encoding : chunked",
            b" Content-Length: 5",  # obs-fold: a continuation of the line before
            b"\tContent-Length: 5",
        ],
    )
    def test_whitespace_around_a_header_name(self, line):
        with pytest.raises(BadMessage, match="whitespace"):
            parse_request_head(b"POST / HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n")

    def test_blanks_around_a_value_are_still_fine(self):
        h = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: \t5 \r\n\r\n")
        assert h.content_length == 5


class TestLineEndsAndControlCharactersInAHeadAreRefused:
    """RFC 9112 2.2, RFC 9110 5.5: the head goes upstream as received, and a server that
    ends a line at a bare LF would read a request hidden in a header value."""

    @pytest.mark.parametrize(
        "value",
        [
            b"a\n\nGET /hidden HTTP/1.1\r\nHost: a",  # a bare LF ends the head early upstream
            b"a\nX-Injected: 1",
            b"a\rX-Injected: 1",
            b"a\r",  # a CR before the line's own CRLF
            b"a\x00b",
            b"a\x0bb",
            b"a\x1bb",
            b"a\x7fb",
        ],
        ids=["bare-lf-request", "bare-lf", "bare-cr", "cr-before-crlf", "nul", "vt", "esc", "del"],
    )
    def test_in_a_header_value(self, value):
        with pytest.raises(BadMessage):
            parse_request_head(b"POST /x HTTP/1.1\r\nHost: a\r\nX: " + value + b"\r\n\r\n")

    def test_in_the_request_line(self):
        with pytest.raises(BadMessage):
            parse_request_head(b"GET /a\nb HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(BadMessage):
            parse_request_head(b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n")

    def test_a_tab_and_bytes_past_ascii_in_a_value_are_still_fine(self):
        h = parse_request_head(b"GET / HTTP/1.1\r\nX: a\tb\xe9\r\nX-Request-Id: \tid-1\r\n\r\n")
        assert h.request_id == "id-1"


def test_expect_header_is_stripped_from_the_forwarded_head():
    h = parse_request_head(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert h.expect_continue and b"expect" not in h.raw.lower()
    assert h.raw.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
)
def test_malformed_request_heads_are_rejected(head):
    with pytest.raises(BadMessage):
        parse_request_head(head)


def test_response_head():
    r = parse_response_head(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Encoding: GZIP\r\n\r\n"
    )
    assert (r.status, r.content_length, r.keep_alive, r.content_encoding) == (404, 9, True, "gzip")
    r10 = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n")
    assert not r10.keep_alive and r10.content_length is None
    with pytest.raises(BadMessage):
        parse_response_head(b"SPDY/3 200\r\n\r\n")


def test_scan_chunked_finds_the_end_only_when_complete():
    end, body = scan_chunked(CHUNKED + b"NEXT", 0, None)
    assert body == b"abchello" and (CHUNKED + b"NEXT")[end:] == b"NEXT"
    for cut in range(len(CHUNKED)):
        assert scan_chunked(CHUNKED[:cut], 0, None) is None


def test_scan_chunked_limits_and_errors():
    with pytest.raises(BodyTooLarge):
        scan_chunked(CHUNKED, 0, 4)
    with pytest.raises(BadMessage):
        scan_chunked(b"zz\r\nabc\r\n", 0, None)
    with pytest.raises(BadMessage):
        scan_chunked(b"3\r\nabcXY0\r\n\r\n", 0, None)


def test_error_response_is_json_and_names_the_sidecar():
    raw = error_response(503, "upstream_refused", 'say "no"', close=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"X-Vigil-Error: upstream_refused" in head
    assert b"Connection: close" in head and int(
        head.split(b"Content-Length: ")[1].split(b"\r\n")[0]
    ) == len(body)
    assert json.loads(body) == {
        "error": 'say "no"',
        "reason": "upstream_refused",
        "source": "vigil-sidecar",
    }
