"""Payload fuzzing against the sidecar in front of a real MLServer 1.7.1.

The same case families as the 10,000-case run (payload_cases.py), a few hundred
of them, with MLServer (mlserver-sklearn, a model trained here on four numeric
features) as the model server. MLServer answers the bad payloads itself (4xx,
5xx); the sidecar must forward those answers, stay up, and count every rejected
payload exactly as with the trivial upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fuzz_kit import REPO, free_port, http_post, metric, run_all, sidecar_process, stop, wait_ok
from payload_cases import FEATURES, Generator, dumps, v2
from sklearn.linear_model import LinearRegression
from test_sidecar_payload_fuzz import MAX_BODY, _profile, _wait_monitored

from vigil.devcluster.models import write_mlserver_folder, write_mlserver_settings

MLSERVER_BIN = REPO / ".venv-mlserver" / "bin" / "mlserver"
CASES = 400
ANY_ANSWER = frozenset(range(200, 600))


@contextlib.contextmanager
def mlserver(work: Path) -> Iterator[int]:
    """MLServer serving a linear model on FEATURES as model "fuzz"; yields its port."""
    if not MLSERVER_BIN.exists():
        pytest.fail(f"MLServer missing: {MLSERVER_BIN} not found; run `make install`")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, len(FEATURES)))
    model = LinearRegression().fit(x, x @ np.arange(1.0, len(FEATURES) + 1))
    write_mlserver_folder(work / "fuzz", "fuzz", "v1", model)
    port = free_port()
    write_mlserver_settings(work, http_port=port, grpc_port=free_port(), metrics_port=free_port())
    log = work / "mlserver.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MLSERVER_BIN), "start", str(work)],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_ok(f"http://127.0.0.1:{port}/v2/models/fuzz/ready", proc, log, timeout=120)
        yield port
    finally:
        stop(proc)


def test_bad_payloads_through_the_sidecar_to_mlserver_are_answered_and_counted(
    tmp_path: Path,
) -> None:
    cases = list(Generator(20261127, MAX_BODY).cases(CASES, 6))
    for case in cases:  # MLServer decides the status of what reaches it
        case.answers = [ANY_ANSWER if a & {200} else a for a in case.answers]
    expected: Counter[str] = Counter()
    for case in cases:
        expected.update(case.violations)
    settings = {
        "model": {"name": "fuzz", "version": "1"},
        "protocol": "v2",
        "limits": {"maxBodyBytes": MAX_BODY},
        "monitoring": {
            "referenceProfile": str(_profile(tmp_path / "p.json")),
            "queueSize": 100_000,
        },
        "logLevel": "warning",
    }
    with mlserver(tmp_path / "mlserver") as port:
        settings["upstream"] = {"url": f"http://127.0.0.1:{port}", "timeoutSeconds": 10}
        with sidecar_process(tmp_path, settings) as sidecar:
            pid = sidecar.proc.pid
            before = sidecar.metrics()
            outcomes = asyncio.run(run_all(sidecar.port, cases, concurrency=4, timeout=30.0))
            failures = [o.describe() for o in outcomes if not o.ok]
            assert not failures, "\n".join(failures[:30])
            statuses = Counter(s for o in outcomes for s in o.statuses)
            after = _wait_monitored(sidecar)
            assert sidecar.proc.poll() is None and sidecar.proc.pid == pid
            status, body = http_post(
                f"{sidecar.url}/v2/models/fuzz/infer", dumps(v2([[0.1, 0.2, 0.3, 0.4]]))
            )
            assert status == 200, body  # a valid request still gets MLServer's prediction
            assert len(json.loads(body)["outputs"][0]["data"]) == 1
            assert metric(after, "vigil_monitoring_errors_total") == 0
            assert metric(after, "vigil_monitoring_dropped_total") == 0
            for kind in set(expected) | {"malformed_json", "shape"}:
                got = metric(after, "vigil_input_schema_violations_total", kind=kind) - metric(
                    before, "vigil_input_schema_violations_total", kind=kind
                )
                assert got == expected.get(kind, 0), (kind, got, expected)
            assert "Traceback" not in sidecar.log.read_text(errors="replace")
    print(
        f"{len(cases)} cases through MLServer; answers by status: {dict(sorted(statuses.items()))}"
    )
