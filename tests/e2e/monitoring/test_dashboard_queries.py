"""Every query of the Grafana dashboard runs against a real Prometheus and has data.

A real Prometheus (pod discovery as in manifests/monitoring/prometheus-scrape-config.yaml,
1 s scrapes) scrapes real sidecars at their pod IPs, real containers on the real
node: one in front of a real MLServer serving the wine model (with a shadow copy
of its traffic to its own model server), and one whose model server is missing
(upstream failures), and one whose sidecar judges labels as a regressor's
(the same model's class numbers taken as its outputs). Traffic mixes good rows (their labels
sent to the feedback port), rows the model rejects (wrong shape), rows with
NaN values, rows out of the training range and malformed HTTP, so that every
sidecar series the dashboard reads exists.

The recording rules of manifests/monitoring/rules/vigil-rules.yaml run here
too (as queries, earlier rules inlined, 5m windows shortened to 15s): their
label names must match what the real sidecars and scrape job produce.

Template variables: $namespace is this test's namespace, $model_deployment and
$revision are ".*" (Grafana's "All"), $feature is the first feature, and
$__rate_interval is 15s. Every query also runs with every variable ".*".

Queries over the operator's own gauges (vigil_modeldeployment_*,
vigil_rollouts_total) cannot have data here: no operator runs in this test
(and it does not expose them yet), so for those the test asserts only that the
query runs without error.
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
import threading
import time
import urllib.error
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from kit.incluster import RealNamespace
from kit.kube import MD_LABEL, ROOT, Kube, pod_ip
from kit.metrics import total
from kit.modelpods import deployment, reference_configmap, sidecar_configmap, sidecar_settings
from kit.traffic import answers_ready, feedback_url, http, infer_body, pod_metrics, sidecar_url
from kit.waits import wait_for

from vigil.core.desired import SIDECAR_LIVE_PATH, SIDECAR_PORT
from vigil.devcluster import ClusterError
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.devcluster.prometheus import LocalPrometheus

DASHBOARD = ROOT / "manifests" / "monitoring" / "dashboards" / "vigil.json"
RULES = ROOT / "manifests" / "monitoring" / "rules" / "vigil-rules.yaml"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)
# Series only the operator exposes: no data without a running operator.
OPERATOR_SERIES = re.compile(r"\bvigil_(modeldeployment_\w+|rollouts_total)\b")


# --- the workload: plain Deployments, no operator --------------------------------------------


def metric(ip: str, name: str) -> float:
    """Sum of a sidecar series' samples at its metrics endpoint (0: not exposed)."""
    return total(pod_metrics(ip), name)


def single_pod_ip(kube: Kube, name: str) -> str:
    """The IP of the one pod of Deployment ``name``, once it rolled out."""
    kube.rollout_status(name, timeout=180)
    pods = kube.pods(f"{MD_LABEL}={name}")
    assert len(pods) == 1, pods
    return pod_ip(pods[0])


def malformed_http(ip: str) -> None:
    """A request the sidecar rejects itself (400 bad_request)."""
    try:
        with socket.create_connection((ip, SIDECAR_PORT), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            sock.recv(4096)
    except OSError:
        pass


class Traffic:
    """Sends the mixed load from a thread until stopped; counts answers by kind and status."""

    def __init__(self, model: TrainedModel, wine_ip: str, down_ip: str, regression_ip: str) -> None:
        self.model = model
        self.wine = sidecar_url(wine_ip, "/v2/models/wine/infer")
        self.down = sidecar_url(down_ip, "/v2/models/wine/infer")
        self.regression = sidecar_url(regression_ip, "/v2/models/wine/infer")
        self.feedback = {
            self.wine: feedback_url(wine_ip),
            self.regression: feedback_url(regression_ip),
        }
        self.wine_ip = wine_ip
        self.answers: Counter[tuple[str, int]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pool = ThreadPoolExecutor(max_workers=8)
        self._random = random.Random(7)

    def rows(self, n: int) -> list[list[float]]:
        return [list(map(float, self.model.X[i])) for i in self.picks(n)]

    def picks(self, n: int) -> list[int]:
        return self._random.sample(range(len(self.model.X)), n)

    def send(self, kind: str, url: str, body: bytes) -> None:
        status, _ = http(url, body)
        self.answers[(kind, status)] += 1

    def send_labelled(self, url: str, round_: int) -> None:
        """Good rows under an id of ours, then their true classes to the feedback port."""
        picks = self.picks(5)
        request_id = f"round-{round_}"
        rows = [list(map(float, self.model.X[i])) for i in picks]
        status, _ = http(url, infer_body(rows), request_id=request_id)
        self.answers[("good", status)] += 1
        truth = [int(self.model.y[i]) for i in picks]
        label = json.dumps({"labels": [{"id": request_id, "truth": truth}]}).encode()
        status, _ = http(self.feedback[url], label)
        self.answers[("label", status)] += 1

    def _run(self) -> None:
        round_ = 0
        while not self._stop.is_set():
            self.send_labelled(self.wine, round_)
            self.send_labelled(self.regression, round_)
            wrong_shape = [row[:12] for row in self.rows(2)]
            self.send("wrong_shape", self.wine, infer_body(wrong_shape))
            with_nan = self.rows(2)
            with_nan[0][3] = float("nan")
            self.send("nan", self.wine, infer_body(with_nan))
            out_of_range = [[value * 100 for value in row] for row in self.rows(1)]
            self.send("out_of_range", self.wine, infer_body(out_of_range))
            self.send("down", self.down, infer_body(self.rows(1)))
            malformed_http(self.wine_ip)
            if round_ % 5 == 0:  # a burst: more shadow copies than the queue holds
                bodies = [infer_body(self.rows(1)) for _ in range(16)]
                list(self._pool.map(lambda b: self.send("burst", self.wine, b), bodies))
            round_ += 1
            self._stop.wait(0.2)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)


# --- the dashboard ----------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL with Grafana variables) for every panel target and variable query."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["definition"])
            assert match, variable["definition"]
            queries.append((f"variable {variable['name']}", f"count by ({match[2]}) ({match[1]})"))
    return queries


def recording_rule_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every recording rule: earlier rules inlined, 15s windows."""
    expanded: dict[str, str] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" not in rule:
                continue
            expr = rule["expr"]
            for name, body in expanded.items():
                expr = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", f"({body})", expr)
            expanded[rule["record"]] = expr.replace("[5m]", "[15s]")
    assert expanded, f"no recording rule in {RULES}"
    # Only this test's series: the rules themselves cover every namespace.
    return [
        (
            f"recording rule {name}",
            f'({expr}) and on (namespace) vigil_model_info{{namespace=~"$namespace"}}',
        )
        for name, expr in expanded.items()
    ]


def run_query(prometheus: LocalPrometheus, where: str, promql: str) -> list[dict[str, Any]]:
    """An instant query; a Prometheus error fails the test naming the query and the error."""
    try:
        return prometheus.query(promql)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        pytest.fail(f"{where}: Prometheus rejected\n  {promql}\n  {detail}", pytrace=False)
    except ClusterError as error:
        pytest.fail(f"{where}: {error}", pytrace=False)


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def substitute(expr: str, values: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def test_every_dashboard_query_runs_and_sidecar_queries_have_data(
    kube: Kube, on_real_node: RealNamespace, prometheus: LocalPrometheus
) -> None:
    model = train_wine(on_real_node.folder / "wine")
    # Shadow every request to the pod's own model server: a one-slot queue and one copy
    # at a time, so that bursts drop copies.
    shadow = {
        "target": "http://127.0.0.1:8080",
        "targetRevision": "r1-mirror",
        "percent": 100,
        "queueSize": 1,
        "concurrency": 1,
    }
    kube.apply(
        reference_configmap(model),
        sidecar_configmap("wine", sidecar_settings("r1", shadow=shadow, feedback_task="")),
        sidecar_configmap("wine-down", sidecar_settings("d1", feedback_task="")),
        deployment("wine", model, space=on_real_node),
        # No model server behind this sidecar: every request is an upstream failure.
        deployment("wine-down", model, with_server=False, space=on_real_node),
    )
    wine_ip = single_pod_ip(kube, "wine")
    down_ip = single_pod_ip(kube, "wine-down")
    # The realized MAE/RMSE panels read a regressor's labels: a sidecar that
    # scores its server's class numbers as a regressor's outputs.
    kube.apply(
        sidecar_configmap("wine-regression", sidecar_settings("g1", feedback_task="regression")),
        deployment("wine-regression", model, space=on_real_node),
    )
    regression_ip = single_pod_ip(kube, "wine-regression")
    wait_for(
        lambda: answers_ready(wine_ip),
        timeout=180,
        what=f"sidecar+MLServer on {wine_ip} to be ready",
    )
    wait_for(
        lambda: http(sidecar_url(down_ip, SIDECAR_LIVE_PATH))[0] == 200,
        timeout=60,
        what=f"the sidecar on {down_ip} to start",
    )
    wait_for(
        lambda: metric(wine_ip, "vigil_shadow_percent") == 100,
        timeout=30,
        what=f"the sidecar on {wine_ip} to shadow every request",
    )

    wait_for(
        lambda: answers_ready(regression_ip),
        timeout=180,
        what=f"the regression-task sidecar on {regression_ip} to be ready",
    )
    traffic = Traffic(model, wine_ip, down_ip, regression_ip)
    traffic.start()
    try:
        # Every kind of traffic reached the sidecars' counters.
        wait_for(
            lambda: metric(wine_ip, "vigil_shadow_dropped_total") > 0,
            timeout=90,
            what=lambda: f"a dropped shadow copy; answers so far: {dict(traffic.answers)}",
        )
        wait_for(
            lambda: metric(down_ip, "vigil_upstream_failures_total") > 0,
            timeout=30,
            what="the sidecar without a model server to count an upstream failure",
        )
        answers = dict(traffic.answers)
        assert answers.get(("good", 200), 0) > 0, answers
        assert answers.get(("label", 200), 0) > 0, answers
        assert not any(status == 200 for (kind, status) in answers if kind == "wrong_shape"), (
            answers
        )
        assert all(status == 503 for (kind, status) in answers if kind == "down"), answers

        values = {
            "namespace": kube.namespace,
            "model_deployment": ".*",
            "revision": ".*",
            "feature": model.features[0],
            "__rate_interval": "15s",
        }
        everything = {**values, "namespace": ".*", "feature": ".*"}
        queries = dashboard_queries() + recording_rule_queries()
        missing: dict[str, str] = {}
        deadline = time.monotonic() + 90
        pending = list(queries)
        while pending:
            still: list[tuple[str, str]] = []
            for where, expr in pending:
                # Errors fail at once, with every variable "All" and with real values.
                run_query(prometheus, where, substitute(expr, everything))
                concrete = substitute(expr, values)
                result = run_query(prometheus, where, concrete)
                if OPERATOR_SERIES.search(expr):
                    continue  # no operator here: "runs without error" is all we can check
                if not has_finite_value(result):
                    still.append((where, expr))
                    missing[where] = concrete
            pending = still
            if pending and time.monotonic() > deadline:
                break
            if pending:
                time.sleep(2)
        assert not pending, "queries without data (no finite sample):\n" + "\n".join(
            f"- {where}: {missing[where]}" for where, _ in pending
        )
        assert len(queries) >= 30
    finally:
        traffic.stop()
