"""A model pod without the operator: MLServer behind the real sidecar, as plain objects.

Used by e2e tests that exercise the workload runner, the metrics sources and
Prometheus on their own. The workload runner (fixture ``workload_runner``)
runs the containers as local processes on the pod's IP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vigil.devcluster.models import TrainedModel

SIDECAR_IMAGE = "ghcr.io/vigil-dev/vigil:0.1.0"
MLSERVER_IMAGE = "seldonio/mlserver:1.7.1-sklearn"


def sidecar_settings(log_level: str = "info", revision: str = "r1") -> str:
    return json.dumps(
        {
            "model": {"name": "wine", "version": "1"},
            "revision": revision,
            "role": "stable",
            "protocol": "v2",
            "upstream": {"url": "http://127.0.0.1:8080"},
            "monitoring": {"referenceProfile": "/var/lib/vigil/reference/profile.json"},
            "logLevel": log_level,
        }
    )


def manifests(
    model: TrainedModel, settings: str, replicas: int = 1, revision: str = "r1"
) -> list[dict[str, Any]]:
    labels = {"vigil.dev/model-deployment": "wine", "vigil.dev/revision": revision}
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
                "replicas": replicas,
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


def pod_ips(cluster: Any, namespace: str) -> list[str]:
    pods = cluster.get_json("pods", "-n", namespace, "-l", "vigil.dev/model-deployment=wine")
    return [p["status"]["podIP"] for p in pods["items"]]


def infer_request(rows: list[list[float]]) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(rows), len(rows[0])],
                    "datatype": "FP64",
                    "data": rows,
                }
            ]
        }
    ).encode()
