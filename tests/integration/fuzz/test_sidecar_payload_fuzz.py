"""Sidecar payload fuzzing: >= 10,000 bad requests against a real vigil-sidecar process.

The sidecar sits in front of a real HTTP server (fuzz_upstream.py, aiohttp) and
gets malformed JSON, wrong shapes and dtypes, NaN and Infinity, odd Unicode,
bodies beyond its size limit, broken HTTP framing (bad Content-Length, chunked
errors, pipelining, split writes). What must hold afterwards:

- the process never crashed (same pid) and still answers health and a valid request;
- every client got an HTTP answer, or a clean close where its framing was broken
  (no reset, no hang);
- the monitoring counted every rejected payload: schema violations by kind, missing
  values, oversized bodies; nothing dropped, no internal monitoring error.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from fuzz_kit import SidecarProcess, http_get, http_post, metric, run_all, sidecar_process
from fuzz_kit import upstream_process as start_upstream
from payload_cases import FEATURES, INFER_PATH, Generator, dumps, v2

from vigil.profile import build_profile

SEED = int(os.environ.get("VIGIL_FUZZ_SEED", "20261126"))
CASES = int(os.environ.get("VIGIL_FUZZ_CASES", "10000"))
HUGE = 40
MAX_BODY = 256 * 1024


def _profile(path: Path) -> Path:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, len(FEATURES)))
    profile = build_profile(
        x,
        predictions=x[:, 0] * 0.5,
        feature_names=list(FEATURES),
        model_name="fuzz",
        model_version="1",
    )
    path.write_text(profile.to_json())
    return path


def _settings(upstream: int, profile: Path) -> dict[str, object]:
    return {
        "model": {"name": "fuzz", "version": "1"},
        "revision": "fuzz",
        "protocol": "v2",
        "upstream": {"url": f"http://127.0.0.1:{upstream}", "timeoutSeconds": 5},
        "limits": {"maxBodyBytes": MAX_BODY},
        # Large enough that nothing is dropped: the test checks exact counts.
        "monitoring": {"referenceProfile": str(profile), "queueSize": 200_000},
        "logLevel": "warning",
    }


def _assert_alive(sidecar: SidecarProcess, pid: int) -> None:
    assert sidecar.proc.poll() is None, f"the sidecar exited:\n{sidecar.log.read_text()[-4000:]}"
    assert sidecar.proc.pid == pid
    assert http_get(f"{sidecar.url}/healthz/live")[0] == 200
    assert http_get(f"http://127.0.0.1:{sidecar.metrics_port}/healthz")[0] == 200
    status, body = http_post(f"{sidecar.url}{INFER_PATH}", dumps(v2([[0.1, 0.2, 0.3, 0.4]])))
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == [0.5]


def _wait_monitored(sidecar: SidecarProcess, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = sidecar.metrics()
        if metric(samples, "vigil_monitoring_queue_length") == 0 or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_ten_thousand_bad_payloads_never_crash_the_sidecar_and_are_all_counted(
    tmp_path: Path,
) -> None:
    cases = list(Generator(SEED, MAX_BODY).cases(CASES, HUGE))
    assert len(cases) >= 10_000 or CASES < 10_000
    expected_violations: Counter[str] = Counter()
    expected_missing = 0
    expected_rejected: Counter[str] = Counter()
    for case in cases:
        expected_violations.update(case.violations)
        expected_missing += case.missing
        expected_rejected.update(case.rejected)
    families = Counter(case.name.split("-")[0] for case in cases)

    with (
        start_upstream(tmp_path) as upstream,
        sidecar_process(tmp_path, _settings(upstream, _profile(tmp_path / "p.json"))) as sidecar,
    ):
        pid = sidecar.proc.pid
        _assert_alive(sidecar, pid)
        before = sidecar.metrics()
        started = time.monotonic()
        outcomes = asyncio.run(run_all(sidecar.port, cases, concurrency=16, timeout=20.0))
        elapsed = time.monotonic() - started
        failures = [o.describe() for o in outcomes if not o.ok]
        assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(
            failures[:40]
        )
        _assert_alive(sidecar, pid)
        after = _wait_monitored(sidecar)

        def grew(name: str, **labels: str) -> float:
            return metric(after, name, **labels) - metric(before, name, **labels)

        assert grew("vigil_monitoring_errors_total") == 0, sidecar.log.read_text()[-4000:]
        assert grew("vigil_monitoring_dropped_total") == 0
        counted = {
            kind: grew("vigil_input_schema_violations_total", kind=kind)
            for kind in set(expected_violations) | {"malformed_json", "shape", "type"}
        }
        assert counted == {k: float(expected_violations.get(k, 0)) for k in counted}, (
            counted,
            expected_violations,
        )
        assert grew("vigil_feature_missing_total") == expected_missing
        for reason, count in expected_rejected.items():
            assert grew("vigil_rejected_requests_total", reason=reason) == count, reason
        log = sidecar.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-6000:]
    print(f"{len(cases)} cases in {elapsed:.1f}s; families: {dict(sorted(families.items()))}")
