"""Both metrics sources measure real sidecars in front of a real MLServer.

Two replicas serve the wine model; a known number of requests goes to them;
the direct source (scraping pod IPs) and the prometheus source (PromQL over
a real Prometheus with pod discovery) must both see it, merged per revision.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_pods import http, infer_request, manifests, pod_ips, sidecar_settings, wait_for

from vigil.core.window import FAMILY_LABELS
from vigil.devcluster import ClusterClient
from vigil.devcluster.models import train_wine
from vigil.devcluster.prometheus import LocalPrometheus
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.prometheus import PrometheusSource

SENT = 200


@pytest.fixture
def prometheus(cluster: ClusterClient, tmp_path: Path) -> Iterator[LocalPrometheus]:
    server = LocalPrometheus(cluster, tmp_path / "prometheus", scrape_interval="1s")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_direct_and_prometheus_sources_count_the_same_traffic(
    cluster: ClusterClient,
    namespace: str,
    workload_runner: Path,
    prometheus: LocalPrometheus,
    tmp_path: Path,
) -> None:
    model = train_wine(tmp_path / "wine")
    for manifest in manifests(model, sidecar_settings(), replicas=2):
        cluster.apply(json.dumps(manifest), namespace=namespace)
    cluster.kubectl("rollout", "status", "deployment/wine", "-n", namespace, "--timeout=60s")
    ips = pod_ips(cluster, namespace)
    assert len(ips) == 2
    for ip in ips:
        wait_for(
            lambda ip=ip: http(f"http://{ip}:8000/healthz/ready")[0] == 200,
            120,
            f"pod {ip} never became ready; see {workload_runner}",
        )

    pods = tuple(PodTarget(f"pod-{i}", ip) for i, ip in enumerate(ips))
    target = RevisionTarget(namespace, "wine", "r1", 120, pods)
    direct = DirectSource()
    prom = PrometheusSource(prometheus.url)
    try:
        body = infer_request(model.X[:1].tolist())
        # One request per pod first, so every counted series exists and Prometheus
        # has scraped it before the counted traffic: increase() cannot see growth
        # from a series' absence to its first sample.
        for ip in ips:
            assert http(f"http://{ip}:8000/v2/models/wine/infer", body)[0] == 200
        await asyncio.sleep(4.0)
        await direct.collect([target], now=time.time())  # the baseline scrape
        # The pods started inside the window: their counts start from zero, the
        # warm-up requests included.
        expected = SENT + len(ips)
        for i in range(SENT):
            status, _ = http(f"http://{ips[i % 2]}:8000/v2/models/wine/infer", body)
            assert status == 200
        # Monitoring parses copies off the hot path: give it a few seconds on a busy machine.
        deadline = time.monotonic() + 15
        while True:
            await asyncio.sleep(1.0)
            window = (await direct.collect([target], now=time.time())).windows[target.key]
            counted = sum(window.prediction_classes.values())
            if (
                window.input_rows >= expected and counted >= expected
            ) or time.monotonic() > deadline:
                break
        assert window.requests == expected
        assert window.pods == 2
        assert window.input_rows == expected
        assert sum(window.prediction_classes.values()) == expected

        seen = -1.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = await prom.collect([target], now=time.time())
            found = result.windows.get(target.key)
            seen = found.requests if found else -1.0
            if abs(seen - expected) <= 0.05 * expected:
                break
            await asyncio.sleep(1)
        assert abs(seen - expected) <= 0.05 * expected, f"prometheus saw {seen} of {expected}"
        # One query per metric family and one for the pods, for the one window length.
        assert result.queries == len(FAMILY_LABELS) + 1
    finally:
        await direct.close()
        await prom.close()
