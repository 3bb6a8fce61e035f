"""Prometheus finds model pods the way the project's manifests tell it to.

A real Prometheus, configured from manifests/monitoring/prometheus-scrape-config.yaml
with Kubernetes pod discovery and the documented RBAC, scrapes an exporter
listening on a kwok pod's own (loopback) IP.
"""

from __future__ import annotations

from kit.kube import Kube
from kit.waits import wait_for
from prometheus_client import CollectorRegistry, Counter, start_http_server

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


def test_prometheus_scrapes_vigil_pods_and_ignores_others(
    kube: Kube, prometheus: LocalPrometheus
) -> None:
    port = 19090
    namespace = kube.namespace
    kube.apply(
        POD.format(name="model", labels="{vigil.dev/model-deployment: wine}", port=port),
        POD.format(name="other", labels="{app: other}", port=port),
    )
    kube.wait_ready("pod/model")
    ip = str((kube.get("pod", "model") or {})["status"]["podIP"])
    registry = CollectorRegistry()
    Counter("vigil_e2e_probe", "probe", registry=registry).inc(7)
    server, thread = start_http_server(port, addr=ip, registry=registry)
    try:
        result = wait_for(
            lambda: prometheus.query(f'vigil_e2e_probe_total{{namespace="{namespace}"}}'),
            timeout=30,
            what=lambda: f"a scraped sample; targets: {prometheus.targets()}",
        )
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
