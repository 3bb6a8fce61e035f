"""The monitor parses on the proxy's event loop: what one exchange or batch may cost it is
bounded, and one exchange it cannot read loses only itself."""

import gzip
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from vigil.profile import build_profile
from vigil.sidecar import monitor as module
from vigil.sidecar.config import Settings
from vigil.sidecar.monitor import BATCH_BYTES, Exchange, Monitor, ReferenceState, decode_body

BASE = {"model": "m", "version": "1", "revision": "r", "role": "stable"}
ROOT = Path(__file__).resolve().parents[3]
JSON = "application/json"
MAX_MONITORED_BYTES = module.MAX_MONITORED_BYTES


def _monitor(registry=None):
    x = np.arange(300.0).reshape(-1, 3) % 7
    profile = build_profile(x, predictions=x[:, 0].astype(int) % 3, feature_names=["a", "b", "c"])
    return Monitor(
        Settings(),
        base=BASE,
        registry=registry or CollectorRegistry(),
        reference=ReferenceState(profile, "ok"),
    )


def _request(rows: int, value: bytes = b"1") -> bytes:
    """A v2 request of ``rows`` rows of three features, built as bytes (fast at megabytes)."""
    data = b",".join([value] * (3 * rows))
    head = b'{"inputs":[{"name":"x","shape":[%d,3],"datatype":"FP64","data":[' % rows
    return head + data + b"]}]}"


def _answer(labels: list[int]) -> bytes:
    doc = {"outputs": [{"name": "p", "shape": [len(labels)], "datatype": "INT64", "data": labels}]}
    return json.dumps(doc).encode()


def _bomb(wbits: int, copies: int = 32) -> bytes:
    """``b"0," * 2**24`` (32 MiB) compressed at level 9, in a gzip (``wbits`` 31) or zlib
    (15) wrapper, for the CPU of compressing one 1 MiB copy (0.35 s became 0.04 s): after a
    full flush the compressor starts afresh, so every further copy compresses alike."""
    chunk = b"0," * 2**19
    squeeze = zlib.compressobj(9, zlib.DEFLATED, wbits)
    first = squeeze.compress(chunk) + squeeze.flush(zlib.Z_FULL_FLUSH)
    again = squeeze.compress(chunk) + squeeze.flush(zlib.Z_FULL_FLUSH)
    assert first.endswith(again)  # the header, then the same block for every copy
    check = 0 if wbits == 31 else 1  # CRC-32 (gzip) or Adler-32 (zlib) of the whole
    for _ in range(copies):
        check = (zlib.crc32 if wbits == 31 else zlib.adler32)(chunk, check)
    size = copies * len(chunk)
    trailer = struct.pack("<II", check, size) if wbits == 31 else struct.pack(">I", check)
    return first + again * (copies - 1) + b"\x03\x00" + trailer  # empty last block, sums


@pytest.mark.slow
def test_a_compressed_body_is_inflated_only_up_to_the_cap():
    # 58 KB of gzip held 60 MB of JSON: inflated whole, it took seconds and ~850 MB.
    bomb = _bomb(31)
    assert len(bomb) < 100_000
    for encoding, body in (("gzip", bomb), ("deflate", _bomb(15))):
        decoded = decode_body(body, encoding)
        assert decoded is not None and len(decoded) == MAX_MONITORED_BYTES + 1


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_an_exchange_over_the_cap_is_skipped_and_counted_not_parsed(encoding):
    registry = CollectorRegistry()
    monitor = _monitor(registry)
    kept: dict[str, list | None] = {}
    monitor.recorder = lambda rid, _at, values: kept.update({rid: values})
    big = _request(MAX_MONITORED_BYTES // 6)
    assert len(big) > MAX_MONITORED_BYTES
    body = gzip.compress(big) if encoding else big
    monitor.process(
        [
            Exchange(body, JSON, _answer([1]), JSON, encoding, request_id="big"),
            Exchange(_request(2), JSON, _answer([2, 2]), JSON, request_id="small"),
        ]
    )
    assert monitor.too_large == 1 and monitor.rows == 2 and monitor.errors == 0
    assert sum(monitor.counters["a"].bins) == 2
    assert monitor.prediction.counts["2"] == 2 and monitor.prediction.counts["1"] == 0
    # The prediction itself is small: still kept for the labels to come.
    assert kept == {"big": [1], "small": [2, 2]}
    text = generate_latest(registry).decode()
    assert re.search(r"^vigil_monitoring_too_large_total\{[^}]*\} 1\.0$", text, re.M)


def test_an_answer_over_the_cap_is_skipped_and_kept_without_a_prediction():
    monitor = _monitor()
    kept: dict[str, list | None] = {}
    monitor.recorder = lambda rid, _at, values: kept.update({rid: values})
    huge = _answer([1] * (MAX_MONITORED_BYTES // 2))
    monitor.process([Exchange(_request(1), JSON, huge, JSON, request_id="r")])
    assert monitor.too_large == 1 and monitor.rows == 0 and kept == {"r": None}
    assert monitor.prediction.counts["1"] == 0


def test_a_flush_stops_at_the_batch_budget_in_decoded_bytes():
    # Counted as sent, 18 gzip bodies of 58 KB each (~1 MiB) made one batch that
    # decoded to megabytes each, all parsed before the loop served another request.
    monitor = _monitor()
    body = _request(BATCH_BYTES // 12)  # ~0.5 MiB decoded, a few KB sent
    packed = gzip.compress(body)
    assert len(packed) * 10 < BATCH_BYTES
    for _ in range(10):
        monitor.submit(Exchange(packed, JSON, None, "", "gzip"))
    taken = monitor.flush()
    assert taken == -(-BATCH_BYTES // len(body)) == 2  # whole exchanges up to the budget
    assert monitor.rows == taken * (BATCH_BYTES // 12) and monitor.pending == 8


def test_one_exchange_that_cannot_be_read_loses_only_itself(monkeypatch):
    # An error used to lose the batch (up to 256 exchanges): no bins, no predictions,
    # and the predictions not yet kept never reached the labels (counted unknown).
    monitor = _monitor()
    kept: dict[str, list | None] = {}
    monitor.recorder = lambda rid, _at, values: kept.update({rid: values})
    poison = _answer([7, 7, 7])
    real = module.parse_response

    def parse_response(protocol, body, *args, **kwargs):
        if body == poison:
            raise RuntimeError("a bug in a parser")
        return real(protocol, body, *args, **kwargs)

    monkeypatch.setattr(module, "parse_response", parse_response)
    monitor.process(
        [
            Exchange(_request(1), JSON, _answer([1]), JSON, request_id="r0"),
            Exchange(_request(3), JSON, poison, JSON, request_id="r1"),
            Exchange(_request(1), JSON, _answer([2]), JSON, request_id="r2"),
        ]
    )
    assert monitor.errors == 1
    # Both parsed first: the bad exchange's request counts no more than its answer.
    assert monitor.rows == 2 and sum(monitor.counters["a"].bins) == 2
    assert monitor.prediction.counts["1"] == 1 and monitor.prediction.counts["2"] == 1
    assert kept == {"r0": [1], "r1": None, "r2": [2]}


def test_an_answer_of_zero_width_rows_is_a_shape_violation_and_the_batch_counts():
    monitor = _monitor()
    kept: dict[str, list | None] = {}
    monitor.recorder = lambda rid, _at, values: kept.update({rid: values})
    empty = json.dumps({"outputs": [{"name": "p", "shape": [2, 0], "data": []}]}).encode()
    batch = [Exchange(_request(1), JSON, _answer([1]), JSON, request_id=f"r{i}") for i in range(5)]
    batch[2] = Exchange(_request(2), JSON, empty, JSON, request_id="r2")
    monitor.process(batch)
    assert monitor.errors == 0 and monitor.prediction_violations == {"shape": 1}
    assert monitor.rows == 6 and monitor.prediction.counts["1"] == 4
    assert len(kept) == 5 and kept["r2"] is None


def test_the_docs_give_the_monitoring_caps_of_the_code():
    text = " ".join((ROOT / "docs" / "sidecar.md").read_text().split())
    assert f"A request or answer over {MAX_MONITORED_BYTES // 2**20} MiB, decoded" in text
    assert f"a batch stops at {BATCH_BYTES // 2**20} MiB of decoded bodies" in text
    assert "`vigil_monitoring_too_large_total`" in text
