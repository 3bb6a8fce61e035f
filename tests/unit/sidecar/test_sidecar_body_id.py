"""The body's top-level ``id``: found by a shallow scan, the same one a whole parse finds."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.sidecar import identity
from vigil.sidecar.identity import body_id, clean_id


def parsed_id(body: bytes) -> str | None:
    """What the id was when the whole body was parsed: the reference."""
    if b'"id"' not in body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return clean_id(doc.get("id")) if isinstance(doc, dict) else None


# Keys and strings that make the scan's life hard: "id" at every depth, brackets,
# quotes and backslashes inside strings, escapes, non-ASCII.
_TEXT = st.sampled_from(["id", "ID", "x", "[", "]}", '"id"', "{", "a\\b", 'q"', "é", "", "inputs"])
_STRINGS = st.one_of(_TEXT, st.text(max_size=6))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _STRINGS,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_STRINGS, inner, max_size=4)
    ),
    max_leaves=30,
)
_IDS = st.one_of(
    _SCALARS,
    st.text(alphabet="abc-_.:/0123456789", min_size=1, max_size=20),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def documents(draw: Any) -> bytes:
    """A JSON object, dumped in one of several styles, often with a top-level id."""
    doc = draw(st.dictionaries(_STRINGS, _VALUES, max_size=5))
    if draw(st.booleans()):
        # Anywhere among the keys: first, between the tensors, last.
        items = list(doc.items())
        items.insert(draw(st.integers(0, len(items))), ("id", draw(_IDS)))
        doc = dict(items)
    style = draw(st.sampled_from(["compact", "spaced", "indented", "ascii"]))
    if style == "compact":
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    elif style == "spaced":
        text = json.dumps(doc, ensure_ascii=False)
    elif style == "indented":
        text = json.dumps(doc, indent=draw(st.sampled_from([1, "\t", "\r\n "])))
    else:
        text = json.dumps(doc, ensure_ascii=True)  # "é" -> "\u00e9", also in keys
    return text.encode()


#: The scan as it runs, and with limits so low that small documents go through the paths
#: large ones take: brackets counted past a chunk, nesting deeper than the regex.
#: Name -> (identity._CHUNK, identity._BALANCED), None: as they are.
SCAN_LIMITS: dict[str, tuple[int, re.Pattern[bytes]] | None] = {
    "default": None,
    "tiny chunks": (7, re.compile(identity._balanced(1), re.DOTALL)),
    "no nesting in the regex": (1, re.compile(identity._balanced(0), re.DOTALL)),
}


def set_scan_limits(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    limits = SCAN_LIMITS[name]
    if limits is not None:
        monkeypatch.setattr(identity, "_CHUNK", limits[0])
        monkeypatch.setattr(identity, "_BALANCED", limits[1])


@pytest.fixture(params=list(SCAN_LIMITS))
def scan_limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    set_scan_limits(request.param, monkeypatch)


def ids_under_each_limit(body: bytes) -> dict[str, str | None]:
    """body_id(body) under each of SCAN_LIMITS: the property tests check every example
    under all three (as a fixture, each generated the same examples again, 2/3 of their
    CPU)."""
    found = {}
    for name in SCAN_LIMITS:
        with pytest.MonkeyPatch.context() as monkeypatch:
            set_scan_limits(name, monkeypatch)
            found[name] = body_id(body)
    return found


def seeded(max_examples: int) -> settings:
    """The same examples every run."""
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None)


@pytest.mark.slow  # property checks over generated bodies: make test runs them
class TestSameIdAsAParse:
    @seeded(max_examples=100)
    @given(body=documents())
    def test_on_generated_documents(self, body):
        expected = parsed_id(body)
        assert ids_under_each_limit(body) == dict.fromkeys(SCAN_LIMITS, expected)

    @seeded(max_examples=60)
    @given(body=documents(), cut=st.integers(min_value=0), junk=st.sampled_from([b"", b"]", b'"']))
    def test_an_id_a_parse_finds_in_a_damaged_body_is_found(self, body, cut, junk):
        # A body that is no longer JSON gets no id from a parse; where it still gets one
        # (the damage is elsewhere), the scan finds that one.
        damaged = body[: cut % (len(body) + 1)] + junk + body[cut % (len(body) + 1) :]
        expected = parsed_id(damaged)
        if expected is not None:
            assert ids_under_each_limit(damaged) == dict.fromkeys(SCAN_LIMITS, expected)

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'{"id": "q-1", "inputs": []}', "q-1"),
            (b' \r\n{ "inputs" : [[1, [2]], {"id": "no"}] ,\t"id" : 17 } ', "17"),
            (b'{"a": "x\\"], \\"id\\": \\"no", "id": "yes"}', "yes"),
            (b'{"\\u0069d": "escaped-key"}', None),  # no '"id"' in the bytes: not looked for
            (b'{"\\u0069d": "escaped-key", "x": "id"}', "escaped-key"),
            (b'{"\\u0069d": "escaped-key", "x": ["id"]}', "escaped-key"),
            (b'{"id": "\\u00e9t\\u00e9"}', None),  # not visible ASCII: no id taken
            (b'{"id": 18446744073709551616}', None),  # a float to a parser
            (b'{"id": -3}', "-3"),
            (b'{"id": [1]}', None),
            (b'{"id": {"id": "x"}}', None),
            (b'{"id": true}', None),
            (b'{"inputs": [], "id": "last"}', "last"),
            (b'[{"id": 1}]', None),
            (b'{"a": [[[[[[[[[[[[["id"]]]]]]]]]]]]], "id": "deep"}', "deep"),
            (
                b'{"a": "' + b"x" * 100_000 + b'", "id": "after-a-long-string"}',
                "after-a-long-string",
            ),
        ],
    )
    def test_cases(self, body, expected, scan_limits):
        assert body_id(body) == expected
        assert parsed_id(body) == expected


class TestTheBodyIsNotParsed:
    """Before forwarding, only the id's own value is decoded: parsing a 7.8 MiB tensor
    whole on the event loop holds every connection up for ~200 ms."""

    @pytest.mark.parametrize(
        "body",
        [
            # KServe v1 rows carrying an id each, no top-level id.
            json.dumps({"instances": [{"id": n, "x": [n, 0.5]} for n in range(2000)]}).encode(),
            # A tensor named "id", and the request's id after it.
            json.dumps(
                {
                    "inputs": [
                        {"name": "id", "shape": [2000, 2], "data": [[n, 1.5] for n in range(2000)]}
                    ],
                    "id": "req-7",
                }
            ).encode(),
        ],
        ids=["KServe v1 rows with ids", "a tensor named id"],
    )
    def test_only_the_ids_value_is_decoded(self, body, monkeypatch):
        counting = CountingOrjson()
        monkeypatch.setattr(identity, "orjson", counting)
        assert body_id(body) == parsed_id(body)
        assert counting.decoded <= len(b'"req-7"'), f"decoded {counting.decoded} of {len(body)}"


class CountingOrjson:
    """orjson, counting the bytes decoded."""

    JSONDecodeError = orjson.JSONDecodeError

    def __init__(self) -> None:
        self.decoded = 0

    def loads(self, data: bytes) -> Any:
        self.decoded += len(data)
        return orjson.loads(data)


class TestTheScanIsBounded:
    """The scan runs on the event loop before forwarding: past MAX_STRING_WORK bytes of
    strings crossed (a regex step each) or MAX_SCAN_BYTES into the body it stops, and the
    request takes the header's id or a new one. 10 MiB of short strings took ~380 ms."""

    @pytest.mark.parametrize(
        "body",
        [
            json.dumps(
                {
                    "instances": [
                        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "w": n}
                        for n in range(1000)
                    ],
                    "id": "q-iris",
                }
            ).encode(),
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "text",
                            "shape": [5000],
                            "datatype": "BYTES",
                            "data": [f"a short sentence {n}" for n in range(5000)],
                        }
                    ],
                    "id": "q-iris",
                }
            ).encode(),
        ],
        ids=["KServe v1 object rows", "a v2 BYTES tensor"],
    )
    def test_an_ordinary_batch_of_strings_keeps_its_id(self, body):
        assert len(body) > 64 * 1024
        assert body_id(body) == "q-iris"

    @staticmethod
    def _after_strings(count: int) -> bytes:
        return b'{"instances": [' + b", ".join([b'"ab"'] * count) + b'], "id": "q"}'

    def test_an_id_after_more_strings_than_the_bound_is_not_looked_for(self):
        within = identity.MAX_STRING_WORK // 8  # '"ab", ' is 6 bytes, 4 of them string
        assert body_id(self._after_strings(within)) == "q"
        assert body_id(self._after_strings(4 * within)) is None

    def test_an_id_past_the_bytes_the_scan_reads_is_not_looked_for(self):
        numbers = b", ".join([b"0.5"] * (identity.MAX_SCAN_BYTES // 5))
        assert body_id(b'{"id": "q", "x": [' + numbers + b"]}") == "q"
        assert body_id(b'{"x": [' + numbers + b'], "id": "q"}') is None

    @pytest.mark.parametrize(
        "body",
        [
            b"{" + b", ".join(b'"k%d": %d' % (n, n) for n in range(5000)) + b', "id": "q"}',
            b'{"a": "' + b'\\"' * 40_000 + b'", "id": "q"}',
        ],
        ids=["top-level keys", "escapes"],
    )
    def test_keys_and_escapes_count_as_the_regex_steps_they_cost(self, body):
        assert body_id(body) is None

    async def test_past_the_bound_the_request_takes_the_header_id(
        self, model, start_sidecar, monkeypatch
    ):
        from sidecar_testkit import answer_ok, capture_dispatch, fake_client

        sidecar = await start_sidecar(model.url, protocol="v1")
        sent = capture_dispatch(sidecar.proxy, monkeypatch)
        client, _ = fake_client(sidecar.proxy)
        body = self._after_strings(identity.MAX_STRING_WORK // 2)
        client.data_received(
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: hdr-1\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        assert sent[0].request_id == "hdr-1"
        answer_ok(client, sent[0])
