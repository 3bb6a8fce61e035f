"""The load generator tells "the Service selects nothing" from "the API could not be read".

A failed kubectl call (API server restarting, overloaded) must neither stop
live traffic nor count as a moment without Ready pods.
"""

from __future__ import annotations

import json
import random
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
    """Answers reads like the API server would, or fails like a down one."""

    def __init__(self) -> None:
        self.down = False
        #: Reads refused while down (the test waits for one instead of sleeping).
        self.refused = 0
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

    def get(self, *args: str) -> dict[str, Any] | None:
        if self.down:
            self.refused += 1
            raise subprocess.CalledProcessError(1, ["get", *args], "", "connection refused")
        return self.service

    def get_json(self, *args: str) -> dict[str, Any]:
        if self.down:
            self.refused += 1
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


def wine_traffic(cluster: Cluster, **options: Any) -> TrafficGenerator:
    """Traffic for the model "wine" in "ml", read through the fake ``cluster``."""
    return TrafficGenerator(cluster, "ml", "wine", "wine", np.zeros((4, 2)), **options)  # type: ignore[arg-type]


def test_traffic_keeps_its_last_routes_while_the_api_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(traffic, "sidecar_ready", lambda ip, timeout=0.5: True)
    cluster = Cluster()
    generator = wine_traffic(cluster, reread_seconds=0.05)
    watcher = threading.Thread(target=generator._watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 5
    while not generator._routes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert generator._routes == [(["127.1.0.5"], 1)]
    cluster.down = True
    deadline = time.monotonic() + 5
    while not cluster.refused and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cluster.refused, "the watcher read nothing more in 5 s"
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
    generator = wine_traffic(cluster, through_service=True)
    assert generator._backends() == [(["10.150.128.7:80"], 1)]
    cluster.service = None  # not created yet: nowhere to send, not a failure
    assert generator._backends() == []
    cluster.down = True
    with pytest.raises(ReadFailed):
        service_address(cluster, "ml", "wine")  # type: ignore[arg-type]


def pod_address() -> str:
    """A loopback address of this test's own, as a pod IP: the sidecar and feedback ports are
    fixed, and two runs at once on one machine must not meet on them (127/8 is all local)."""
    pick = random.SystemRandom().randrange
    return f"127.{pick(1, 255)}.{pick(256)}.{pick(1, 255)}"


def test_labelled_traffic_sends_each_answered_rows_truth_by_its_id() -> None:
    """With ``labels``, a request carries an id of ours and, once answered, its row's true
    value goes to the feedback port of the pod that answered."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host = pod_address()  # the sidecar's port and the feedback port
    seen: dict[str, list[Any]] = {"ids": [], "labels": [], "rows": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.server.server_address[1] == traffic.FEEDBACK_PORT:
                seen["labels"].extend(body["labels"])
            else:
                seen["ids"].append(self.headers.get("X-Request-Id"))
                seen["rows"].append(body["inputs"][0]["data"][0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    servers = [ThreadingHTTPServer((host, port), Handler) for port in (8000, traffic.FEEDBACK_PORT)]
    for server in servers:
        # shutdown() waits out a poll: 0.5 s a server by default.
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        X = np.arange(12, dtype=float).reshape(4, 3)
        y = np.array([0, 1, 2, 1])
        generator = TrafficGenerator(Cluster(), "ml", "wine", "wine", X, labels=y)  # type: ignore[arg-type]
        assert all(generator.send_one(host) for _ in range(5))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert len(set(seen["ids"])) == 5 and all(seen["ids"])
    assert [label["id"] for label in seen["labels"]] == seen["ids"]
    truths = {tuple(X[i]): int(y[i]) for i in range(len(X))}
    assert [label["truth"] for label in seen["labels"]] == [
        [truths[tuple(row)]] for row in seen["rows"]
    ]
    assert generator.stats.labels_sent == 5


@pytest.mark.parametrize(
    ("answers", "sent", "failures"), [((503, 200), 1, {}), ((503, 503), 0, {"label: 503": 1})]
)
def test_a_label_refused_by_a_leaving_sidecar_is_sent_once_more(
    answers: tuple[int, int], sent: int, failures: dict[str, int]
) -> None:
    """A sidecar that is leaving answers 503 with Retry-After (a busy one 429): a label
    pipeline sends the batch again once, and counts it failed only if refused twice."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host = pod_address()
    replies = list(answers)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(replies.pop(0))
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, traffic.FEEDBACK_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        generator = TrafficGenerator(Cluster(), "ml", "wine", "wine", np.zeros((4, 2)))  # type: ignore[arg-type]
        generator._label(f"{host}:8000", [("wine-1", 2)], timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (generator.stats.labels_sent, generator.stats.failures) == (sent, failures)
    assert replies == []
