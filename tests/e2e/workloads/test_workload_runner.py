"""The workload runner gives kwok pods real processes: the sidecar in front of MLServer.

Plain Deployment here (no operator), so the runner is tested on its own: a
pod's containers run on the pod's IP, its ConfigMap volumes become files that
follow the ConfigMap, and its processes stop when the pod goes away.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vigil.devcluster import ClusterClient
from vigil.devcluster.models import TrainedModel, train_wine

SIDECAR_IMAGE = "ghcr.io/vigil-dev/vigil:0.1.0"
MLSERVER_IMAGE = "seldonio/mlserver:1.7.1-sklearn"


def sidecar_settings(log_level: str = "info") -> str:
    return json.dumps(
        {
            "model": {"name": "wine", "version": "1"},
            "revision": "r1",
            "role": "stable",
            "protocol": "v2",
            "upstream": {"url": "http://127.0.0.1:8080"},
            "monitoring": {"referenceProfile": "/var/lib/vigil/reference/profile.json"},
            "logLevel": log_level,
        }
    )


def manifests(model: TrainedModel, settings: str) -> list[dict[str, Any]]:
    labels = {"vigil.dev/model-deployment": "wine"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "wine-sidecar"},
            "data": {"sidecar.json": settings},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "wine-reference"},
            "data": {"profile.json": model.profile_json()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "wine"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": MLSERVER_IMAGE,
                                "env": [{"name": "STORAGE_URI", "value": model.storage_uri}],
                                "ports": [{"name": "model", "containerPort": 8080}],
                            },
                            {
                                "name": "sidecar",
                                "image": SIDECAR_IMAGE,
                                "command": ["vigil-sidecar", "--config", "/etc/vigil/sidecar.json"],
                                "ports": [
                                    {"name": "http", "containerPort": 8000},
                                    {"name": "metrics", "containerPort": 9090},
                                ],
                                "volumeMounts": [
                                    {"name": "sidecar-config", "mountPath": "/etc/vigil"},
                                    {"name": "reference", "mountPath": "/var/lib/vigil/reference"},
                                ],
                            },
                        ],
                        "volumes": [
                            {"name": "sidecar-config", "configMap": {"name": "wine-sidecar"}},
                            {"name": "reference", "configMap": {"name": "wine-reference"}},
                        ],
                    },
                },
            },
        },
    ]


def http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_for(predicate, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(message)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_pod_processes_serve_on_the_pod_ip_and_follow_the_pod(
    cluster: ClusterClient, namespace: str, workload_runner: Path, tmp_path: Path
) -> None:
    model = train_wine(tmp_path / "wine")
    for manifest in manifests(model, sidecar_settings()):
        cluster.apply(json.dumps(manifest), namespace=namespace)
    cluster.kubectl("rollout", "status", "deployment/wine", "-n", namespace, "--timeout=60s")
    pod = cluster.get_json("pods", "-n", namespace, "-l", "vigil.dev/model-deployment=wine")[
        "items"
    ][0]
    ip = pod["status"]["podIP"]

    wait_for(
        lambda: http(f"http://{ip}:8000/healthz/ready")[0] == 200,
        120,
        f"sidecar+MLServer on {ip} never became ready; see {workload_runner}",
    )
    rows = model.X[:20].tolist()
    request = {"inputs": [{"name": "input-0", "shape": [20, 13], "datatype": "FP64", "data": rows}]}
    status, body = http(f"http://{ip}:8000/v2/models/wine/infer", json.dumps(request).encode())
    assert status == 200, body
    predictions = json.loads(body)["outputs"][0]["data"]
    assert len(predictions) == 20

    def metrics() -> str:
        return http(f"http://{ip}:9090/metrics")[1].decode()

    wait_for(lambda: metric(metrics(), "vigil_input_rows_total") >= 20, 20, "rows not counted")
    text = metrics()
    assert 'revision="r1"' in text
    assert metric(text, "vigil_feature_bin_total") >= 20 * 13

    # The ConfigMap changes; the file in the pod follows and the sidecar reloads it.
    cluster.apply(json.dumps(manifests(model, sidecar_settings("debug"))[0]), namespace=namespace)
    wait_for(
        lambda: metric(metrics(), "vigil_settings_reloads_total", outcome="applied") >= 1,
        30,
        "the sidecar never applied the changed settings",
    )

    # The pod goes away: its processes stop.
    cluster.kubectl("delete", "deployment", "wine", "-n", namespace)
    wait_for(
        lambda: http(f"http://{ip}:8000/healthz/live")[0] == 0,
        60,
        "the pod's processes still answer after the pod was deleted",
    )
