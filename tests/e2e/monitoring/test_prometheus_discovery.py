"""Prometheus finds model pods the way the project's manifests tell it to.

A real Prometheus, configured from manifests/monitoring/prometheus-scrape-config.yaml
with Kubernetes pod discovery and the documented RBAC, scrapes an exporter
listening on a kwok pod's own (loopback) IP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from vigil.devcluster import ClusterClient
from vigil.devcluster.prometheus import LocalPrometheus

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {labels}
spec:
  containers:
    - name: sidecar
      image: registry.example/sidecar:1
      ports:
        - {{name: http, containerPort: 8000}}
        - {{name: metrics, containerPort: {port}}}
"""


@pytest.fixture
def prometheus(cluster: ClusterClient, tmp_path: Path) -> Iterator[LocalPrometheus]:
    server = LocalPrometheus(cluster, tmp_path / "prometheus", scrape_interval="1s")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pod_ip(cluster: ClusterClient, namespace: str, name: str) -> str:
    cluster.kubectl(
        "wait", f"pod/{name}", "-n", namespace, "--for=condition=Ready", "--timeout=60s"
    )
    return str(cluster.get_json("pod", name, "-n", namespace)["status"]["podIP"])


def test_prometheus_scrapes_vigil_pods_and_ignores_others(
    cluster: ClusterClient, namespace: str, prometheus: LocalPrometheus
) -> None:
    port = 19090
    cluster.apply(
        POD.format(name="model", labels="{vigil.dev/model-deployment: wine}", port=port),
        namespace=namespace,
    )
    cluster.apply(POD.format(name="other", labels="{app: other}", port=port), namespace=namespace)
    ip = pod_ip(cluster, namespace, "model")
    registry = CollectorRegistry()
    Counter("vigil_e2e_probe", "probe", registry=registry).inc(7)
    server, thread = start_http_server(port, addr=ip, registry=registry)
    try:
        deadline = time.monotonic() + 30
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            result = prometheus.query(f'vigil_e2e_probe_total{{namespace="{namespace}"}}')
            time.sleep(0.5)
        assert result, f"no sample scraped; targets: {prometheus.targets()}"
        labels = result[0]["metric"]
        assert labels["model_deployment"] == "wine"
        assert labels["pod"] == "model"
        assert labels["instance"] == f"{ip}:{port}"
        assert float(result[0]["value"][1]) == 7
        pods = {
            t["labels"].get("pod")
            for t in prometheus.targets()
            if t["labels"].get("namespace") == namespace
        }
        assert pods == {"model"}
    finally:
        server.shutdown()
        thread.join(timeout=5)
