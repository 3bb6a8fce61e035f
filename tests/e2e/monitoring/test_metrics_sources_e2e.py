"""Both metrics sources measure real sidecars in front of a real MLServer.

Two replicas serve the wine model (real containers on the real node, the
model from the namespace's volume); a known number of requests goes to them;
the direct source (scraping pod IPs) and the prometheus source (PromQL over
a real Prometheus with pod discovery) must both see it, merged per revision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from kit.incluster import RealNamespace
from kit.kube import MD_LABEL, Kube, pod_ip
from kit.modelpods import deployment, reference_configmap, sidecar_configmap, sidecar_settings
from kit.traffic import answers_ready, http, infer_body, sidecar_url
from kit.waits import wait_for

from vigil.devcluster.models import train_wine
from vigil.devcluster.prometheus import LocalPrometheus
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.prometheus import PrometheusSource

SENT = 200


async def test_direct_and_prometheus_sources_count_the_same_traffic(
    kube: Kube, on_real_node: RealNamespace, prometheus: LocalPrometheus
) -> None:
    model = train_wine(on_real_node.folder / "wine")
    kube.apply(
        sidecar_configmap("wine", sidecar_settings()),
        reference_configmap(model),
        deployment("wine", model, replicas=2, revision="r1", space=on_real_node),
    )
    kube.rollout_status("wine", timeout=180)
    ips = [pod_ip(pod) for pod in kube.pods(f"{MD_LABEL}=wine")]
    assert len(ips) == 2
    for ip in ips:
        wait_for(
            lambda ip=ip: answers_ready(ip),
            timeout=120,
            what=f"pod {ip} to be ready",
        )

    pods = tuple(PodTarget(f"pod-{i}", ip) for i, ip in enumerate(ips))
    target = RevisionTarget(kube.namespace, "wine", "r1", 120, pods)
    # The direct source counts a pod from zero only while it started inside the window: an
    # hour, far beyond this test's waits (pods slow to answer fell out of 120 s and their
    # warm-up requests with them: 200 counted of 202).
    since_start = dataclasses.replace(target, window_seconds=3600)
    direct = DirectSource()
    prom = PrometheusSource(prometheus.url)
    try:
        body = infer_body(model.X[:1])
        # One request per pod first, so every counted series exists and Prometheus
        # has scraped it before the counted traffic: increase() cannot see growth
        # from a series' absence to its first sample.
        for ip in ips:
            assert http(sidecar_url(ip, "/v2/models/wine/infer"), body)[0] == 200
        await asyncio.sleep(4.0)
        await direct.collect([since_start], now=time.time())  # the baseline scrape
        # The pods started inside the window: their counts start from zero, the
        # warm-up requests included.
        expected = SENT + len(ips)
        for i in range(SENT):
            status, _ = http(sidecar_url(ips[i % 2], "/v2/models/wine/infer"), body)
            assert status == 200
        # Monitoring parses copies off the hot path: give it a few seconds on a busy machine.
        deadline = time.monotonic() + 15
        while True:
            await asyncio.sleep(1.0)
            window = (await direct.collect([since_start], now=time.time())).windows[target.key]
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
        # Every metric family and the pods in one query, for the one window length.
        assert result.queries == 1
    finally:
        await direct.close()
        await prom.close()
