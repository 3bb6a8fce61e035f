"""The load generator tells "the Service selects nothing" from "the API could not be read".

A failed kubectl call (API server restarting, overloaded) must neither stop
live traffic nor count as a moment without Ready pods.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import numpy as np
import pytest

from vigil.devcluster import traffic
from vigil.devcluster.traffic import (
    ReadFailed,
    TrafficGenerator,
    service_address,
    serving_pod_ips,
)


class Cluster:
    """Answers kubectl like the API server would, or fails like a down one."""

    def __init__(self) -> None:
        self.down = False
        self.service: dict[str, Any] | None = {"spec": {"selector": {"app": "wine"}}}
        self.pods = [
            {
                "metadata": {},
                "status": {
                    "podIP": "127.1.0.5",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        ]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.down:
            return subprocess.CompletedProcess(args, 1, "", "The connection was refused")
        if self.service is None:
            return subprocess.CompletedProcess(args, 1, "", 'Error (NotFound): "wine" not found')
        return subprocess.CompletedProcess(args, 0, json.dumps(self.service), "")

    def get_json(self, *args: str) -> dict[str, Any]:
        if self.down:
            raise subprocess.CalledProcessError(1, ["kubectl", *args], "", "refused")
        return {"items": self.pods}


def test_a_missing_service_selects_no_pod() -> None:
    cluster = Cluster()
    cluster.service = None
    assert serving_pod_ips(cluster, "ml", "wine") == []  # type: ignore[arg-type]


def test_a_failed_read_is_not_an_empty_service() -> None:
    cluster = Cluster()
    assert serving_pod_ips(cluster, "ml", "wine") == ["127.1.0.5"]  # type: ignore[arg-type]
    cluster.down = True
    with pytest.raises(ReadFailed):
        serving_pod_ips(cluster, "ml", "wine")  # type: ignore[arg-type]


def test_traffic_keeps_its_last_routes_while_the_api_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(traffic, "sidecar_ready", lambda ip, timeout=0.5: True)
    cluster = Cluster()
    generator = TrafficGenerator(cluster, "ml", "wine", "wine", np.zeros((4, 2)))  # type: ignore[arg-type]
    watcher = threading.Thread(target=generator._watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 5
    while not generator._routes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert generator._routes == [(["127.1.0.5"], 1)]
    cluster.down = True
    time.sleep(1.5)  # at least one more read, which fails
    assert watcher.is_alive()
    assert generator._routes == [(["127.1.0.5"], 1)]
    generator._stop.set()
    watcher.join(timeout=5)


def test_a_selector_switched_while_the_pods_were_read_is_no_observation() -> None:
    """A promotion switches the Service and deletes the old pods 50 ms apart: the old
    selector with the new (terminating) pods would be a moment without Ready pods
    that never existed."""
    cluster = Cluster()
    original = cluster.get_json

    def switched_meanwhile(*args: str) -> dict[str, Any]:
        cluster.service = {"spec": {"selector": {"app": "wine", "revision": "new"}}}
        return original(*args)

    cluster.get_json = switched_meanwhile  # type: ignore[method-assign]
    with pytest.raises(ReadFailed, match="changed while its pods were read"):
        serving_pod_ips(cluster, "ml", "wine")  # type: ignore[arg-type]


def test_through_the_service_traffic_goes_to_its_cluster_ip_and_port() -> None:
    cluster = Cluster()
    cluster.service = {"spec": {"clusterIP": "10.150.128.7", "ports": [{"port": 80}]}}
    generator = TrafficGenerator(
        cluster,  # type: ignore[arg-type]
        "ml",
        "wine",
        "wine",
        np.zeros((4, 2)),
        through_service=True,
    )
    assert generator._backends() == [(["10.150.128.7:80"], 1)]
    cluster.service = None  # not created yet: nowhere to send, not a failure
    assert generator._backends() == []
    cluster.down = True
    with pytest.raises(ReadFailed):
        service_address(cluster, "ml", "wine")  # type: ignore[arg-type]
