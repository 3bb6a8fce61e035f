"""Payload fuzzing of the sidecar's other protocols: KServe V1 and raw.

The same case families as the V2 run (payload_cases.py) with their inference
paths rewritten for V1 (``/v1/models/<m>:predict``), plus V1 bodies with bad
instances. Protocol-independent violations (malformed JSON, content type,
content encoding) must be counted exactly under V1; under raw the sidecar
parses nothing, so nothing may be counted, and everything must still be
answered.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from fuzz_kit import http_post, metric, run_all, sidecar_process
from fuzz_kit import upstream_process as start_upstream
from payload_cases import OK, Case, Generator, dumps, not_json, request
from test_sidecar_payload_fuzz import MAX_BODY, _profile, _wait_monitored

CASES = 1500
SEEDS = {"v1": 11, "raw": 12}
V1_PATHS = {
    b"/v2/models/fuzz/infer": b"/v1/models/fuzz:predict",
    b"/v2/models/fuzz/versions/1/infer": b"/v1/models/fuzz:predict",
    b"/v2/models/%F0%9F%99%82/infer": b"/v1/models/%F0%9F%99%82:predict",
}
PROTOCOL_INDEPENDENT = ("malformed_json", "content_type", "content_encoding")


def _for_v1(case: Case) -> Case:
    raw = case.raw
    for old, new in V1_PATHS.items():
        raw = raw.replace(old, new)
    case.raw = raw
    if case.name.startswith("other-") and raw.startswith(b"POST /v1/models/fuzz:predict "):
        # A route that is "other" under V2 is V1's inference route: its random body is parsed.
        case.violations["malformed_json"] = not_json(raw.split(b"\r\n\r\n", 1)[1])
    return case


def _v1_cases(n: int) -> list[Case]:
    """V1 bodies: good rows, rows of the wrong width, objects with a missing feature."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            doc: object = {"instances": [[0.1, 0.2, 0.3, 0.4]] * (1 + i % 5)}
        elif i % 3 == 1:
            doc = {"instances": [[0.1, 0.2]], "x": "\U0001f642"}
        else:
            doc = {"inputs": [{"f0": 1, "f1": 2, "f2": None}]}
        out.append(Case(f"v1-{i}", request(dumps(doc), path="/v1/models/fuzz:predict"), [OK]))
    return out


@pytest.mark.parametrize("protocol", ["v1", "raw"])
def test_v1_and_raw_sidecars_survive_the_fuzz_and_count_only_what_they_parse(
    tmp_path: Path, protocol: str
) -> None:
    cases = [_for_v1(c) for c in Generator(SEEDS[protocol], MAX_BODY).cases(CASES, 4)]
    cases += _v1_cases(150)
    expected: Counter[str] = Counter()
    for case in cases:
        expected.update({k: v for k, v in case.violations.items() if k in PROTOCOL_INDEPENDENT})
    with start_upstream(tmp_path) as upstream:
        settings = {
            "model": {"name": "fuzz", "version": "1"},
            "protocol": protocol,
            "upstream": {
                "url": f"http://127.0.0.1:{upstream}",
                "readinessPath": "/v2/health/ready",
                "timeoutSeconds": 5,
            },
            "limits": {"maxBodyBytes": MAX_BODY},
            "monitoring": {
                "referenceProfile": str(_profile(tmp_path / "p.json")),
                "queueSize": 100_000,
            },
            "logLevel": "warning",
        }
        with sidecar_process(tmp_path, settings) as sidecar:
            pid = sidecar.proc.pid
            outcomes = asyncio.run(run_all(sidecar.port, cases, concurrency=16, timeout=20.0))
            failures = [o.describe() for o in outcomes if not o.ok]
            assert not failures, "\n".join(failures[:30])
            assert sidecar.proc.poll() is None and sidecar.proc.pid == pid
            status, body = http_post(
                f"{sidecar.url}/v1/models/fuzz:predict", dumps({"instances": [[1, 2, 3, 4]]})
            )
            assert status == 200 and json.loads(body)["outputs"], body
            after = _wait_monitored(sidecar)
            assert metric(after, "vigil_monitoring_errors_total") == 0
            assert metric(after, "vigil_monitoring_dropped_total") == 0
            if protocol == "raw":
                assert metric(after, "vigil_input_schema_violations_total") == 0
                assert metric(after, "vigil_input_rows_total") == 0
            else:
                for kind in PROTOCOL_INDEPENDENT:
                    got = metric(after, "vigil_input_schema_violations_total", kind=kind)
                    assert got == expected.get(kind, 0), (kind, got, expected)
                assert metric(after, "vigil_input_schema_violations_total", kind="feature_count")
                assert metric(after, "vigil_input_rows_total") > 0
            assert "Traceback" not in sidecar.log.read_text(errors="replace")
