"""Seeded generators of bad (and some good) requests for the sidecar fuzz tests.

Why a seeded generator rather than hypothesis here: ten thousand cases must go
through a real process in well under a minute, and hypothesis' per-example
overhead and shrinking do not fit that; a fixed seed still makes every run the
same and a failure reproducible (the case name says which generator and index).

Every case knows what the sidecar must do with it: answer (with one of the
statuses listed) or, when the HTTP framing itself is broken, answer or close
cleanly; and what the monitoring must count for it (violation kinds, missing
values). The expectations follow docs/sidecar.md and vigil/sidecar/payload.py.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

FEATURES = ("f0", "f1", "f2", "f3")
INFER_PATH = "/v2/models/fuzz/infer"
#: Values the sidecar cannot read as numbers (each counts one `type` violation).
NOT_NUMBERS: tuple[object, ...] = (
    "abc",
    "",
    "\u202e12",
    "\U0001f642",
    "1,5",
    "\x00",
    {"a": 1},
    {},
    "0x1G",
    "\ufeff",
)
#: Odd Unicode for names, keys and parameters (JSON-escaped where not encodable).
ODD_TEXT: tuple[str, ...] = (
    "\ud800",  # lone surrogate (only as a JSON escape)
    "\udfff",
    "\u202egnp.exe",
    "\u200b\u200c\u200d",
    "\U0001f4a9" * 50,
    "e\u0301\u0301\u0301",
    "\x00\x01\x1f",
    "\ufffe\uffff",
    "\u0661\u0662",
    "A" * 5000,
)


@dataclass
class Case:
    """One request (or several, pipelined) and what must come of it."""

    name: str
    raw: bytes
    #: Statuses acceptable for each answer expected (in order, for pipelining).
    answers: list[frozenset[int]] = field(default_factory=list)
    #: The framing is broken: an answer from `answers[0]` or a clean close are both fine.
    may_close: bool = False
    #: Send the body in pieces (the first piece, then the rest after a pause).
    split_at: int | None = None
    #: Half-close after sending (the client has nothing more to say).
    half_close: bool = False
    #: What the monitoring must count for this case once the upstream answered.
    violations: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


OK = frozenset({200})
TOO_LARGE = frozenset({413})
BAD = frozenset({400})


def request(
    body: bytes,
    *,
    path: str = INFER_PATH,
    method: str = "POST",
    content_type: str | None = "application/json",
    extra: str = "",
    close: bool = True,
) -> bytes:
    """A well-framed HTTP/1.1 request with Content-Length."""
    head = f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {len(body)}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + extra + "\r\n").encode("latin-1") + body


def chunked(body: bytes, pieces: int, path: str = INFER_PATH) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    size = max(1, math.ceil(len(body) / max(1, pieces)))
    out = bytearray(head)
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def v2(rows: list[list[object]], *, shape: object = None, **extra: object) -> dict[str, object]:
    tensor: dict[str, object] = {
        "name": "input-0",
        "shape": shape if shape is not None else [len(rows), len(rows[0]) if rows else 0],
        "datatype": "FP64",
        "data": rows,
    }
    return {"inputs": [tensor], **extra}


def not_json(body: bytes) -> int:
    """1 when the body is not a JSON document (as the sidecar's parser reads bytes), else 0."""
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 1
    return 0


def dumps(doc: object) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare tokens (what many clients send)."""
    return json.dumps(doc, allow_nan=True).encode()


class Generator:
    """All case families; ``cases(n)`` mixes them with fixed weights."""

    def __init__(self, seed: int, max_body_bytes: int) -> None:
        self.rng = random.Random(seed)
        self.max_body = max_body_bytes

    # -- helpers -------------------------------------------------------------------

    def _row(self) -> list[object]:
        return [round(self.rng.gauss(0, 1), 4) for _ in FEATURES]

    def _rows(self, low: int = 1, high: int = 8) -> list[list[object]]:
        return [self._row() for _ in range(self.rng.randint(low, high))]

    def _path(self) -> str:
        return self.rng.choice(
            (
                INFER_PATH,
                "/v2/models/fuzz/versions/1/infer",
                "/v2/models/%F0%9F%99%82/infer",
                "/v2/models/fuzz/infer?x=%00&y=%ZZ",
            )
        )

    # -- families ------------------------------------------------------------------

    def valid(self, i: int) -> Case:
        return Case(f"valid-{i}", request(dumps(v2(self._rows())), path=self._path()), [OK])

    def malformed_json(self, i: int) -> Case:
        good = dumps(v2(self._rows()))
        kind = i % 6
        if kind == 0:
            body = good[: self.rng.randint(1, len(good) - 1)]  # any strict prefix is invalid
        elif kind == 1:
            body = b"{" + bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 200)))
        elif kind == 2:
            body = b'{"inputs": "\xff\xfe\xc0\xaf"}'  # not UTF-8
        elif kind == 3:
            depth = self.rng.choice((5_000, 50_000, 100_000))
            body = b"[" * depth + b"]" * depth  # deeper than any JSON parser's recursion
        elif kind == 4:
            body = good.replace(b",", b",,", 1)
        else:
            body = b'{"inputs": [1, 2,]}'
        case = Case(f"malformed_json-{i}", request(body), [OK])
        case.violations["malformed_json"] = 1 if kind == 3 else not_json(body)
        return case

    def nan_infinity(self, i: int) -> Case:
        rows = self._rows()
        missing = 0
        specials = (math.nan, math.inf, -math.inf, None)
        for row in rows:
            for j in range(len(row)):
                if self.rng.random() < 0.4:
                    value = self.rng.choice(specials)
                    row[j] = value
                    missing += value is None or (isinstance(value, float) and math.isnan(value))
        case = Case(f"nan_infinity-{i}", request(dumps(v2(rows))), [OK])
        case.missing = missing
        return case

    def wrong_shape(self, i: int) -> Case:
        rows = self._rows(2, 6)
        flat = [v for r in rows for v in r]
        choices: list[dict[str, object]] = [
            v2(rows, shape=[len(rows), 4, 1]),
            v2(rows, shape=[len(rows) + 1, 4]),
            v2(rows, shape=[-len(rows), -4]),
            v2(rows, shape="2x4"),
            v2(rows, shape=[]),
            v2(rows, shape=[len(rows), 4.0]),
            v2(rows, shape=[True, 4]),
            v2(rows, shape=[10**30, 10**30]),
            {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64"}]},
            {"inputs": [{"name": "x", "shape": [len(flat) + 1], "data": flat}]},
            {"inputs": [{"name": n, "shape": [2, 2], "data": [1, 2, 3, 4]} for n in FEATURES]},
        ]
        case = Case(f"wrong_shape-{i}", request(dumps(choices[i % len(choices)])), [OK])
        case.violations["shape"] = 1
        return case

    def feature_count(self, i: int) -> Case:
        width = self.rng.choice((1, 2, 3, 5, 9))
        rows = [[0.1] * width for _ in range(self.rng.randint(1, 4))]
        doc = v2(rows)
        if i % 3 == 0:  # one tensor per feature, one of them missing
            doc = {"inputs": [{"name": n, "shape": [1], "data": [0.1]} for n in FEATURES[:3]]}
        case = Case(f"feature_count-{i}", request(dumps(doc)), [OK])
        case.violations["feature_count"] = 1
        return case

    def unknown_payload(self, i: int) -> Case:
        docs: list[object] = [
            {},
            [],
            "inputs",
            42,
            None,
            {"inputs": []},
            {"inputs": "x"},
            {"inputs": {"f0": 1}},
            {"instances": [[1, 2, 3, 4]]},  # KServe V1 sent to a V2 sidecar
            {"inputs": [1, 2]},
            {"INPUTS": [{"shape": [1, 4], "data": [1, 2, 3, 4]}]},
        ]
        case = Case(f"unknown_payload-{i}", request(dumps(docs[i % len(docs)])), [OK])
        case.violations["unknown_payload"] = 1
        return case

    def wrong_dtype(self, i: int) -> Case:
        rows = self._rows(1, 4)
        bad = 0
        for row in rows:
            for j in range(len(row)):
                if self.rng.random() < 0.5:
                    row[j] = self.rng.choice(NOT_NUMBERS)
                    bad += 1
        if bad == 0:
            rows[0][0] = "abc"
            bad = 1
        case = Case(f"wrong_dtype-{i}", request(dumps(v2(rows))), [OK])
        case.violations["type"] = bad
        return case

    def odd_unicode(self, i: int) -> Case:
        text = self.rng.choice(ODD_TEXT)
        doc = v2(self._rows(), parameters={text: text, "content_type": text}, id=text)
        tensor = doc["inputs"][0]  # type: ignore[index]
        tensor["name"] = text
        tensor["datatype"] = text
        body = json.dumps(doc, ensure_ascii=i % 2 == 0).encode("utf-8", "surrogatepass")
        case = Case(f"odd_unicode-{i}", request(body), [OK])
        case.violations["malformed_json"] = not_json(body)  # raw control characters are not JSON
        return case

    def content_type(self, i: int) -> Case:
        ctype = self.rng.choice(("text/plain", "application/x-www-form-urlencoded", "image/png"))
        body = dumps(v2(self._rows()))
        case = Case(f"content_type-{i}", request(body, content_type=ctype), [OK])
        case.violations["content_type"] = 1
        return case

    def encoding(self, i: int) -> Case:
        body = dumps(v2(self._rows()))
        if i % 2 == 0:
            data, extra = gzip.compress(body), "Content-Encoding: gzip\r\n"
        else:
            data, extra = b"\x1f\x8b" + body, "Content-Encoding: gzip\r\n"
        case = Case(f"encoding-{i}", request(data, extra=extra), [OK])
        if i % 2 == 1:
            case.answers = [OK | {500}]  # the model server cannot inflate it either
            case.violations["content_encoding"] = 1
        return case

    def other_routes(self, i: int) -> Case:
        """Not inference: forwarded, never monitored."""
        method, path = self.rng.choice(
            (
                ("GET", INFER_PATH),
                ("POST", "/v2/models/fuzz/ready"),
                ("PUT", INFER_PATH),
                ("POST", "/v1/models/fuzz:predict"),
                ("POST", "/metrics"),
                ("POST", "/%2e%2e/etc/passwd"),
            )
        )
        body = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 64)))
        return Case(f"other-{i}", request(body, method=method, path=path), [OK])

    def huge(self, i: int) -> Case:
        """Bodies beyond the sidecar's limit: 413 at once, before the body is read."""
        size = self.max_body + 1 + self.rng.randint(0, 3 * self.max_body)
        if i % 3 == 2:
            body = b"[" + b"1," * (size // 2) + b"1]"
            case = Case(f"huge_chunked-{i}", chunked(body, 8), [TOO_LARGE], may_close=True)
        else:
            body = b'{"inputs": [{"data": [' + b"1.0," * (size // 4) + b"1.0]}]}"
            case = Case(f"huge-{i}", request(body), [TOO_LARGE], may_close=True)
        case.rejected["body_too_large"] = 1
        return case

    def framing(self, i: int) -> Case:
        body = dumps(v2(self._rows()))
        n = len(body)
        good_head = (
            f"POST {INFER_PATH} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
        )
        variants: list[tuple[str, bytes, bool]] = [
            ("cl-not-a-number", f"{good_head}Content-Length: ten\r\n\r\n".encode() + body, True),
            ("cl-negative", f"{good_head}Content-Length: -5\r\n\r\n".encode() + body, True),
            ("cl-plus-sign", f"{good_head}Content-Length: +{n}\r\n\r\n".encode() + body, True),
            ("cl-underscore", f"{good_head}Content-Length: 1_0\r\n\r\n".encode() + body, True),
            (
                "cl-conflicting",
                f"{good_head}Content-Length: {n}\r\nContent-Length: {n + 1}\r\n\r\n".encode()
                + body,
                True,
            ),
            ("cl-huge-number", f"{good_head}Content-Length: {'9' * 40}\r\n\r\n".encode(), False),
            (
                "chunk-size-not-hex",
                f"{good_head}Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode()
                + body
                + b"\r\n0\r\n\r\n",
                True,
            ),
            (
                "chunk-size-0x",
                f"{good_head}Transfer-Encoding: chunked\r\n\r\n0x{n:x}\r\n".encode()
                + body
                + b"\r\n0\r\n\r\n",
                True,
            ),
            (
                "chunk-size-negative",
                f"{good_head}Transfer-Encoding: chunked\r\n\r\n-1\r\n".encode() + body,
                True,
            ),
            (
                "chunk-missing-crlf",
                f"{good_head}Transfer-Encoding: chunked\r\n\r\n{n:x}\r\n".encode()
                + body
                + b"XX0\r\n\r\n",
                True,
            ),
            (
                "chunk-size-line-endless",
                f"{good_head}Transfer-Encoding: chunked\r\n\r\n".encode() + b"1" * 8000,
                True,
            ),
            ("te-gzip-only", f"{good_head}Transfer-Encoding: gzip\r\n\r\n".encode() + body, True),
            ("request-line-garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", True),
            ("http-2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", True),
            ("http-0.9", b"GET /\r\n\r\n", True),
            ("header-without-colon", f"{good_head}Oops\r\n\r\n".encode(), True),
            ("headers-too-large", good_head.encode() + b"X-A: " + b"a" * 70_000, True),
            ("bare-lf", f"POST {INFER_PATH} HTTP/1.1\nHost: fuzz\n\n".encode(), True),
            (
                "nul-in-header",
                f"{good_head}X-N: a\x00b\r\nContent-Length: {n}\r\n\r\n".encode() + body,
                True,
            ),
        ]
        label, raw, may_close = variants[i % len(variants)]
        answers = [BAD | frozenset({200, 413, 431})]
        case = Case(f"framing-{label}-{i}", raw, answers, may_close=may_close, half_close=True)
        return case

    def truncated(self, i: int) -> Case:
        """The client promises more body than it sends, then half-closes: a clean close."""
        body = dumps(v2(self._rows()))
        raw = request(body)[: -self.rng.randint(1, len(body))]
        return Case(f"truncated-{i}", raw, [OK | BAD], may_close=True, half_close=True)

    def pipelined(self, i: int) -> Case:
        """Several requests in one write: every one answered, in order."""
        count = self.rng.randint(2, 6)
        parts = []
        case = Case(f"pipelined-{i}", b"")
        for k in range(count):
            last = k == count - 1
            if self.rng.random() < 0.5:
                doc: object = v2(self._rows())
            else:
                doc = {"inputs": "x"}
                case.violations["unknown_payload"] += 1
            parts.append(request(dumps(doc), close=last))
            case.answers.append(OK)
        case.raw = b"".join(parts)
        return case

    def slow_split(self, i: int) -> Case:
        """A valid request whose bytes arrive in two writes (head split, body split)."""
        raw = request(dumps(v2(self._rows())))
        return Case(f"split-{i}", raw, [OK], split_at=self.rng.randint(1, len(raw) - 1))

    def expect_continue(self, i: int) -> Case:
        body = dumps(v2(self._rows()))
        raw = request(body, extra="Expect: 100-continue\r\n")
        return Case(f"expect_continue-{i}", raw, [OK], split_at=raw.index(b"\r\n\r\n") + 4)

    # -- the mix -------------------------------------------------------------------

    FAMILIES: tuple[tuple[str, int], ...] = (
        ("valid", 10),
        ("malformed_json", 12),
        ("nan_infinity", 10),
        ("wrong_shape", 10),
        ("feature_count", 6),
        ("unknown_payload", 8),
        ("wrong_dtype", 10),
        ("odd_unicode", 10),
        ("content_type", 4),
        ("encoding", 4),
        ("other_routes", 4),
        ("framing", 8),
        ("truncated", 2),
        ("pipelined", 4),
        ("slow_split", 2),
        ("expect_continue", 2),
    )

    def cases(self, n: int, huge: int) -> Iterator[Case]:
        """``n`` mixed cases plus ``huge`` oversized bodies."""
        names = [name for name, _ in self.FAMILIES]
        weights = [w for _, w in self.FAMILIES]
        counters: Counter[str] = Counter()
        for _ in range(n):
            name = self.rng.choices(names, weights)[0]
            make: Callable[[int], Case] = getattr(self, name)
            yield make(counters[name])
            counters[name] += 1
        for k in range(huge):
            yield self.huge(k)
