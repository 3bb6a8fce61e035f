"""A load generator for the demo and tests: rows from the training data, sent to pods.

With ``through_service`` requests go where a user's client sends them: the
ModelDeployment's Service (its ClusterIP, kube-proxy picks a pod; the real
node's pods). Otherwise, for kwok pods whose Services cannot route to their
loopback IPs, the generator does what a Service would: it spreads requests
over the Ready pods that the ModelDeployment's Service selects (re-reading
them every second, so a blue/green switch or a canary is followed). Either
way at a fixed rate, over the v2 protocol. It can shift features by a number of reference
standard deviations (drift) or send malformed requests (errors).

With ``http_route`` it plays the gateway instead: each request picks one of
the HTTPRoute's backend Services by its weight (as a Gateway API
implementation does) and goes to that Service's ClusterIP
(``through_service``) or to a Ready pod behind it.
"""

from __future__ import annotations

import collections
import itertools
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.desired import FEEDBACK_PORT
from vigil.devcluster.cluster import ClusterClient

#: A delayed label batch's client timeout: a sidecar asks the peers that may hold a
#: prediction one after another, feedback.peerTimeoutSeconds (5 s) per silent one, after up
#: to 2 s resolving them; a rollback takes one or two pods away at once.
LABEL_TIMEOUT_SECONDS = 15.0
#: A label sent with its request (no delay) waits as long as the request did.
INLINE_LABEL_TIMEOUT_SECONDS = 5.0


@dataclass
class TrafficStats:
    ok: int = 0
    failed: int = 0
    by_pod: dict[str, int] = field(default_factory=dict)
    #: Answers by the revision that served them (the sidecar's ``X-Vigil-Revision``).
    by_revision: dict[str, int] = field(default_factory=dict)
    #: Why requests failed (status or error words), counted.
    failures: dict[str, int] = field(default_factory=dict)
    #: Labels the feedback port took (``labels`` given).
    labels_sent: int = 0

    @property
    def sent(self) -> int:
        """Every request sent ends ok or failed."""
        return self.ok + self.failed


def sidecar_ready(ip: str, timeout: float = 0.5) -> bool:
    """The pod's sidecar answers ready (its model server is ready behind it)."""
    try:
        with urllib.request.urlopen(f"http://{ip}:8000/healthz/ready", timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class ReadFailed(RuntimeError):
    """The API server could not be read (down, restarting, overloaded): nothing is known.

    Distinct from "no pods": a watcher counting moments without Ready pods,
    or a load generator deciding where to send, must not take one failed
    kubectl call for an empty Service.
    """


def _service_spec(cluster: ClusterClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The Service ``name``'s spec (None while it does not exist); a failed read raises
    :class:`ReadFailed`."""
    try:
        service = cluster.get("service", name, "-n", namespace)
    except subprocess.CalledProcessError as error:
        raise ReadFailed(f"get service {name}: {error.stderr.strip()}") from error
    return None if service is None else dict(service["spec"])


def serving_pod_ips(
    cluster: ClusterClient, namespace: str, name: str, *, answering: bool = False
) -> list[str]:
    """IPs of the Ready pods the Service ``name`` selects (what a Service would route to).

    A pod's readiness may be its server's, not its model's; ``answering``
    keeps only pods whose sidecar answers its readiness probe. A missing Service selects
    nothing; a failed read raises :class:`ReadFailed`, and so does a selector
    that changed while the pods were read (a promotion switches the Service
    and deletes the old revision 50 ms apart: the old selector read before the
    switch and its pods read after the deletion showed only terminating pods,
    a moment that never existed).
    """

    def read_selector() -> dict[str, str] | None:
        spec = _service_spec(cluster, namespace, name)
        return None if spec is None else dict(spec.get("selector") or {})

    selector = read_selector()
    if not selector:
        return []
    label = ",".join(f"{k}={v}" for k, v in selector.items())
    try:
        pods = cluster.get_json("pods", "-n", namespace, "-l", label)["items"]
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError) as error:
        raise ReadFailed(f"list pods {label}: {error}") from error
    if read_selector() != selector:
        raise ReadFailed(f"the selector of service {name} changed while its pods were read")
    ips = [
        p["status"]["podIP"]
        for p in pods
        if p["status"].get("podIP")
        and not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]
    return [ip for ip in ips if sidecar_ready(ip)] if answering else ips


def service_address(cluster: ClusterClient, namespace: str, name: str) -> str | None:
    """``clusterIP:port`` of the Service ``name`` (None while it does not exist)."""
    spec = _service_spec(cluster, namespace, name)
    return None if spec is None else f"{spec['clusterIP']}:{spec['ports'][0]['port']}"


def route_backends(
    cluster: ClusterClient, namespace: str, route: str, *, through_service: bool = False
) -> list[tuple[list[str], int]]:
    """(answering pod IPs, weight) for each backend Service of the HTTPRoute's first rule;
    ``through_service``: ([its ``clusterIP:port``], weight)."""
    try:
        found = cluster.get("httproute", route, "-n", namespace)
    except subprocess.CalledProcessError as error:
        raise ReadFailed(f"get httproute {route}: {error.stderr.strip()}") from error
    if found is None:
        return []
    rules = found["spec"].get("rules") or [{}]
    backends = []
    for ref in rules[0].get("backendRefs") or ():
        weight = int(ref.get("weight", 1))
        if through_service:
            address = service_address(cluster, namespace, str(ref["name"]))
            targets = [address] if address else []
        else:
            targets = serving_pod_ips(cluster, namespace, str(ref["name"]), answering=True)
        if weight > 0 and targets:
            backends.append((targets, weight))
    return backends


def shifted_rows(
    X: npt.NDArray[np.float64],
    shifts: Mapping[int, float],
    rng: np.random.Generator,
    batch: int,
) -> list[list[float]]:
    """``batch`` training rows, with column ``i`` moved by ``shifts[i]`` standard deviations."""
    return rows_at(X, rng.integers(0, len(X), batch), shifts)


def rows_at(
    X: npt.NDArray[np.float64], picks: npt.NDArray[np.int64], shifts: Mapping[int, float]
) -> list[list[float]]:
    """The rows of ``X`` at ``picks``, shifted as :func:`shifted_rows` says."""
    rows = X[picks].copy()
    stds = X.std(axis=0)
    for column, amount in shifts.items():
        rows[:, column] += amount * stds[column]
    return [list(map(float, row)) for row in rows]


def v2_body(rows: Sequence[Sequence[float]]) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(rows), len(rows[0])],
                    "datatype": "FP64",
                    "data": [list(r) for r in rows],
                }
            ]
        }
    ).encode()


@dataclass(frozen=True)
class TrafficTarget:
    """Where a generator's requests go: the Ready pods the Service ``name`` selects, or
    its ClusterIP (``through_service``); with ``http_route``, the route's backend Services
    instead, each with its weight."""

    cluster: ClusterClient
    namespace: str
    name: str
    http_route: str | None = None
    through_service: bool = False

    def backends(self) -> list[tuple[list[str], int]]:
        """(addresses, weight) of each backend as the API server says now; a failed read
        raises :class:`ReadFailed`."""
        if self.http_route is not None:
            return route_backends(
                self.cluster, self.namespace, self.http_route, through_service=self.through_service
            )
        if self.through_service:
            address = service_address(self.cluster, self.namespace, self.name)
            return [([address], 1)] if address else []
        ips = serving_pod_ips(self.cluster, self.namespace, self.name, answering=True)
        return [(ips, 1)] if ips else []


class TrafficGenerator:
    """Sends requests at ``rate`` per second until stopped (a thread of its own)."""

    def __init__(
        self,
        cluster: ClusterClient,
        namespace: str,
        name: str,
        model_name: str,
        X: npt.NDArray[np.float64],
        rate: float = 20.0,
        shifts: Mapping[int, float] | None = None,
        error_share: float = 0.0,
        seed: int = 0,
        http_route: str | None = None,
        through_service: bool = False,
        labels: npt.NDArray[Any] | None = None,
        reread_seconds: float = 1.0,
    ) -> None:
        self.target = TrafficTarget(cluster, namespace, name, http_route, through_service)
        #: How often the watcher re-reads where traffic goes.
        self.reread_seconds = reread_seconds
        self.model_name = model_name
        self.X = X
        self.rate = rate
        self.shifts = dict(shifts or {})
        self.error_share = error_share
        self.rng = np.random.default_rng(seed)
        #: The true value of each row of ``X``: every request then carries an id of ours and,
        #: once answered, its row's label goes to the feedback port of the pod that answered.
        self.labels = labels
        #: Seconds between an answer and its label (0: at once, to the pod that answered).
        #: Later labels go in batches, as a label pipeline sends them.
        self.label_delay = 0.0
        self._due: collections.deque[tuple[float, str, str, Any]] = collections.deque()
        self._labeller: threading.Thread | None = None
        self._ids = itertools.count()
        self._run_id = f"{int(time.time() * 1000):x}"
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._routes: list[tuple[list[str], int]] = []
        self._lock = threading.Lock()

    def set_shifts(self, shifts: Mapping[int, float]) -> None:
        with self._lock:
            self.shifts = dict(shifts)

    def set_error_share(self, share: float) -> None:
        with self._lock:
            self.error_share = share

    def set_labels(self, labels: npt.NDArray[Any] | None, delay: float = 0.0) -> None:
        """From now on each answered request's label is ``labels[row]``, sent ``delay`` seconds
        after the answer (a changed ``labels`` is a changed world: same inputs, other truths)."""
        with self._lock:
            self.labels, self.label_delay = labels, delay
        if delay > 0 and self._labeller is None:
            self._labeller = threading.Thread(target=self._send_due, name="labels", daemon=True)
            self._labeller.start()

    def start(self) -> TrafficGenerator:
        self._watcher = threading.Thread(target=self._watch, name="traffic-routes", daemon=True)
        self._watcher.start()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> TrafficStats:
        self._stop.set()
        for thread in (self._thread, self._watcher, self._labeller):
            if thread is not None:
                # The label thread may be inside one batch's request.
                thread.join(timeout=max(10.0, LABEL_TIMEOUT_SECONDS + 2))
        return self.stats

    def _watch(self) -> None:
        """Re-reads where traffic goes every ``reread_seconds``, off the sending thread.

        Reading it takes several kubectl calls; done between requests, on a
        busy machine it would set the request rate instead of ``rate``.
        """
        while not self._stop.is_set():
            try:
                backends = self._backends()
            except ReadFailed:
                pass  # keep sending where the last good read said (as kube-proxy would)
            else:
                with self._lock:
                    self._routes = backends
            self._stop.wait(self.reread_seconds)

    def send_one(self, target: str) -> bool:
        """One request to ``target``: a pod IP (its sidecar's port) or ``host:port``."""
        with self._lock:
            shifts, error_share = dict(self.shifts), self.error_share
            labels, delay = self.labels, self.label_delay
        headers = {"Content-Type": "application/json"}
        truth = None
        if error_share and self.rng.random() < error_share:
            body = json.dumps(
                {
                    "inputs": [
                        {"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}
                    ]
                }
            ).encode()
        else:
            picks = self.rng.integers(0, len(self.X), 1)
            body = v2_body(rows_at(self.X, picks, shifts))
            if labels is not None:
                truth = labels[int(picks[0])]
                headers["X-Request-Id"] = f"{self.target.name}-{self._run_id}-{next(self._ids)}"
        request = urllib.request.Request(
            f"http://{target if ':' in target else f'{target}:8000'}"
            f"/v2/models/{self.model_name}/infer",
            data=body,
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
                ok = 200 <= response.status < 300
                revision = response.headers.get("X-Vigil-Revision")
        except urllib.error.HTTPError as error:
            error.read()
            self._failed(f"HTTP {error.code}")
            return False
        except OSError as error:
            self._failed(str(getattr(error, "reason", None) or error))
            return False
        if ok and revision:
            self.stats.by_revision[revision] = self.stats.by_revision.get(revision, 0) + 1
        if ok and truth is not None:
            if delay > 0:
                with self._lock:
                    self._due.append(
                        (time.monotonic() + delay, target, headers["X-Request-Id"], truth)
                    )
            else:
                label = [(headers["X-Request-Id"], truth)]
                self._label(target, label, timeout=INLINE_LABEL_TIMEOUT_SECONDS)
        return ok

    def _send_due(self) -> None:
        """Every second, the labels now due, in one batch per target (a label pipeline)."""
        while not self._stop.wait(1.0):
            now, due = time.monotonic(), collections.defaultdict(list)
            with self._lock:
                while self._due and self._due[0][0] <= now:
                    _, target, request_id, truth = self._due.popleft()
                    due[target].append((request_id, truth))
            for target, labels in due.items():
                self._label(target, labels, timeout=LABEL_TIMEOUT_SECONDS)

    def _label(self, target: str, labels: Sequence[tuple[str, Any]], *, timeout: float) -> None:
        """The rows' true values to the feedback port of the pod (or Service) that answered;
        sent again once after a sidecar's 429 (busy) or 503 (leaving), as a pipeline would."""
        host = target.rsplit(":", 1)[0] if ":" in target else target
        label = {
            "labels": [
                {"id": request_id, "truth": [truth.item() if hasattr(truth, "item") else truth]}
                for request_id, truth in labels
            ]
        }
        request = urllib.request.Request(
            f"http://{host}:{FEEDBACK_PORT}/vigil/v1/feedback",
            data=json.dumps(label).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        for attempt in (1, 2):
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    response.read()
                with self._lock:
                    self.stats.labels_sent += len(labels)
                return
            except urllib.error.HTTPError as error:
                error.read()
                if attempt == 1 and error.code in (429, 503):
                    retry_after = error.headers.get("Retry-After") or "1"
                    time.sleep(min(float(retry_after) if retry_after.isdigit() else 1.0, 5.0))
                    continue
                self._failed(f"label: {error.code}")
                return
            except OSError as error:  # counted, the traffic goes on
                self._failed(f"label: {error}")
                return

    def _failed(self, why: str) -> None:
        # The label thread and the request thread both count.
        with self._lock:
            self.stats.failures[why] = self.stats.failures.get(why, 0) + 1

    def _backends(self) -> list[tuple[list[str], int]]:
        return self.target.backends()

    def _pick(self, backends: list[tuple[list[str], int]]) -> list[str]:
        """One backend's pods, chosen in proportion to the backend weights."""
        if len(backends) == 1:
            return backends[0][0]
        weights = np.array([weight for _, weight in backends], dtype=float)
        return backends[int(self.rng.choice(len(backends), p=weights / weights.sum()))][0]

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        turn = 0
        while not self._stop.is_set():
            with self._lock:
                backends = self._routes
            if not backends:
                self._stop.wait(0.2)
                next_at = time.monotonic()
                continue
            ips = self._pick(backends)
            ip = ips[turn % len(ips)]
            turn += 1
            ok = self.send_one(ip)
            self.stats.by_pod[ip] = self.stats.by_pod.get(ip, 0) + 1
            if ok:
                self.stats.ok += 1
            else:
                self.stats.failed += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind schedule: do not burst


def describe(stats: TrafficStats) -> dict[str, Any]:
    return {"sent": stats.sent, "ok": stats.ok, "failed": stats.failed, "pods": len(stats.by_pod)}
