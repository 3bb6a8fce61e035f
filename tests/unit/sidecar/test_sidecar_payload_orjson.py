"""Payload parsing through orjson gives json's values and json's verdicts, byte for byte.

``payload._loads`` reads bodies with orjson and falls back to the standard
library where orjson refuses (NaN, Infinity, floats beyond range, lone
surrogates, BOM, UTF-16/32, deep nesting) or could differ (integers beyond 64
bits, which orjson reads as floats; nesting where json hits its recursion
limit first). These tests compare against ``json.loads`` directly: the same
value (types included: int stays int, ``-0.0`` stays negative) or both refuse.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from vigil.sidecar import payload
from vigil.sidecar.payload import _loads, parse_request, parse_response

F = ("a", "b", "c")


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (NaN equals NaN, -0.0 is not 0.0).

    Iterative: the edge cases nest deeper than Python's recursion limit.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if not (math.isnan(x) and math.isnan(y)) and (
                x != y or math.copysign(1, x) != math.copysign(1, y)
            ):
                return False
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def _outcome(loads: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "ok", loads(body)
    except RecursionError:
        return "recursion", None
    except (ValueError, UnicodeDecodeError):
        return "refused", None


def assert_like_json(body: bytes) -> None:
    got, want = _outcome(_loads, body), _outcome(json.loads, body)
    assert got[0] == want[0], body[:80]
    assert _same(got[1], want[1]), body[:80]


EDGE_CASES = [
    b"NaN",
    b"[NaN, Infinity, -Infinity]",
    b'{"inputs": [{"shape": [1, 3], "data": [NaN, 1, Infinity]}]}',
    b"1e400",
    b"[-1e400, 1e-400]",
    b"[4.9e-324, 2.2250738585072011e-308, 1.7976931348623157e308]",
    b"-0",
    b"-0.0",
    b"[0.1, 0.30000000000000004, 1E5, 1e+5, 1.0]",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"123456789012345678901234567890",
    b"[0.00012345678901234567890123]",
    b'{"a": 1, "a": 2}',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude42"',
    b'"\\u0000"',
    b"\xef\xbb\xbf[1]",
    "[1, 2]".encode("utf-16"),
    "[1, 2]".encode("utf-16-le"),
    "[1, 2]".encode("utf-32"),
    b"\xff",
    b'{"inputs": "\xff\xfe\xc0\xaf"}',
    b'"\xc3\xa9\xe2\x80\xae"',
    b"",
    b" ",
    b"null",
    b"true",
    b"[1,]",
    b"[1] x",
    b"[01]",
    b"[.5]",
    b"[5.]",
    b"[+1]",
    b'["\x01"]',
    b"[1]\x00",
    b"\n[1]\r\n\t",
    b"[" * 500 + b"]" * 500,
    b"[" * 900 + b"]" * 900,
    b"[" * 1000 + b"]" * 1000,
    b"[" * 1030 + b"]" * 1030,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 600 + b"1" + b"}" * 600,
]


@pytest.mark.parametrize("body", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_read_as_json_reads_them(body: bytes) -> None:
    assert_like_json(body)


def test_str_bodies_still_go_to_json() -> None:
    assert _loads('{"a": [1, NaN]}')["a"][0] == 1  # type: ignore[arg-type]


def _doc(rng: random.Random) -> bytes:
    rows = [
        [
            rng.choice(
                (
                    rng.gauss(0, 1),
                    rng.randint(-(2**70), 2**70),
                    rng.random() * 10.0 ** rng.randint(-320, 308),
                    math.nan,
                    math.inf,
                    None,
                    "x\u202e",
                    True,
                )
            )
            for _ in range(3)
        ]
        for _ in range(rng.randint(1, 4))
    ]
    doc = {"inputs": [{"name": "x", "shape": [len(rows), 3], "datatype": "FP64", "data": rows}]}
    return json.dumps(doc, allow_nan=True).encode()


def _mutate(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        at = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            del b[at]
        elif op == 1:
            b.insert(at, rng.choice(b'0123456789[]{},:."\\eE-+ nNIu\x00\xff'))
        elif op == 2 and b:
            b[at] = rng.randrange(256)
        else:
            b[at:at] = rng.choice((b"NaN", b"1e999", b"99999999999999999999", b'"\\ud800"', b"[[["))
    return bytes(b)


@pytest.mark.slow
def test_seeded_documents_and_mutations_read_as_json_reads_them() -> None:
    rng = random.Random(20261126)
    for _ in range(3000):
        body = _doc(rng)
        assert_like_json(body)
        assert_like_json(_mutate(rng, body))


def _json_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payload, "_loads", json.loads)


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_parse_results_equal_the_json_only_parser(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    bodies = [*EDGE_CASES[:-5]]
    for _ in range(500):
        body = _doc(rng)
        bodies += [body, _mutate(rng, body)]
        bodies.append(
            json.dumps(
                {"predictions": [rng.choice((1, 2.5, [0.2, 0.8], "cat", 2**65))]}, allow_nan=True
            ).encode()
        )
    fast = [
        (parse_request(protocol, b, "application/json", F), parse_response(protocol, b, "", True))
        for b in bodies
    ]
    _json_only(monkeypatch)
    for body, (req, resp) in zip(bodies, fast, strict=True):
        want_req = parse_request(protocol, body, "application/json", F)
        want_resp = parse_response(protocol, body, "", True)
        assert req.violations == want_req.violations, body[:80]
        assert req.rows == want_req.rows
        assert _same(req.columns, want_req.columns), body[:80]
        assert resp.violations == want_resp.violations, body[:80]
        assert _same(resp.values, want_resp.values), body[:80]
