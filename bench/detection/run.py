"""Detection latency: how long until drift, or a bad candidate, shows in the status.

Not a test: it measures and prints (and writes ``last-run.json`` and a copy
under ``results/``). Everything is real: the shared local cluster
(``vigil.devcluster.connect()``, started or reused and left running, with its
real node), the operator as a subprocess with nothing but its own RBAC,
resolving names with the cluster's DNS (as the e2e tests run it: candidates
at their per-revision Services), and the wine model served from a local
volume (``pvc://models/...``) by MLServer behind the real sidecar, real
containers of the images built here on the real node. Live traffic comes
from :class:`vigil.devcluster.traffic.TrafficGenerator` (one training row per
request, at a fixed rate, through the Service's ClusterIP).

(a) Drift: traffic from the training data until the window is normal, then
    two features shifted by one reference standard deviation (``alcohol``
    and ``color_intensity``, as in the e2e test): time from the first
    shifted request to ``DriftDetected=True``; after a whole window of
    shifted traffic, back to normal: time to ``DriftDetected=False``.
(b) Bad candidate: a replacement trained on shuffled labels, rolled out
    with a 100 % shadow step; time from its first shadow copy (seen on the
    stable sidecar's ``vigil_shadow_requests_total``, polled every 0.2 s)
    to ``phase: RolledBack``.

Each is repeated (``--reps``) and stated against the configured window and
interval; the expected bounds (printed next to the figures) follow from how
the health loop and the rollout analysis work (see bench/README.md).

Usage: ``.venv/bin/python bench/detection/run.py [--reps 3] [--window 30]
[--health-interval 5] [--analysis-interval 5] [--rate 20] [--only drift|rollout]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from kit.kube import Kube  # noqa: E402
from kit.modeldeployment import SERVER_RESOURCES, ModelStore, model_store  # noqa: E402
from kit.operator import OperatorProcess, cluster_resolv_conf  # noqa: E402

from vigil.common import kube_yaml  # noqa: E402
from vigil.core.drift import DEFAULT_EPSILON, bin_index, psi  # noqa: E402
from vigil.devcluster import ClusterClient, connect  # noqa: E402
from vigil.devcluster.images import ensure_images  # noqa: E402
from vigil.devcluster.incluster import running_real_node  # noqa: E402
from vigil.devcluster.models import TrainedModel, train_wine  # noqa: E402
from vigil.devcluster.traffic import TrafficGenerator, serving_pod_ips  # noqa: E402
from vigil.profile import parse_profile  # noqa: E402

SHIFTED = ("alcohol", "color_intensity")
SHIFT_STDS = 1.0
DRIFT_THRESHOLD = 0.2
DRIFT_WARNING = 0.1
SHADOW_MIN_REQUESTS = 50
ANALYSIS_MIN_REQUESTS = 20
MIN_AGREEMENT = 0.9
FAILURE_LIMIT = 2
POLL_SECONDS = 0.5


# -- set-up -----------------------------------------------------------------------------


def manifest_path(name: str) -> Path:
    """The operator's install manifests (moved to manifests/base/ by the kustomize layout)."""
    for candidate in (REPO / "manifests" / "base" / name, REPO / "manifests" / name):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"manifests/{name} (or manifests/base/{name}) is missing")


def install_vigil(cluster: ClusterClient) -> str:
    """CRDs, the operator's namespace, ServiceAccount and RBAC (idempotent); its kubeconfig.

    The same as the e2e fixtures: the operator runs with its ServiceAccount's
    token only, so the benchmark measures what a real installation does.
    """
    files = sorted((REPO / "hack" / "gateway-api").glob("gateway.networking.k8s.io_*.yaml"))
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in files:
        args += ["-f", str(path)]
    if files:
        cluster.kubectl(*args)
    cluster.kubectl("apply", "-f", str(REPO / "crds" / "modeldeployments.yaml"))
    cluster.wait_established("modeldeployments.vigil.dev")
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        cluster.kubectl("apply", "-f", str(manifest_path(name)))
    return cluster.serviceaccount_kubeconfig("vigil-system", "vigil-operator")


def manifest(model: TrainedModel, store: ModelStore, args: argparse.Namespace) -> dict[str, Any]:
    """The ModelDeployment: drift judged by the health loop, a shadow step for replacements;
    served from the store's volume by the image built here, ready once the model is."""
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine"},
        "spec": {
            "model": {"name": "wine", "version": model.version, "uri": store.uri(model)},
            "server": {
                "image": store.server_image,
                "protocol": "v2",
                "readinessPath": "/v2/models/wine/ready",
                "readOnlyRootFilesystem": True,
                "resources": SERVER_RESOURCES,
            },
            "replicas": 1,
            "monitoring": {
                "reference": {"configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}},
                "window": f"{args.window}s",
                # Generous latency: MLServer shares two cores with everything else here.
                "slo": {"maxErrorRate": 0.05, "maxLatencyP95": "5s"},
                "drift": {
                    "method": "psi",
                    "warning": DRIFT_WARNING,
                    "threshold": DRIFT_THRESHOLD,
                },
                "metrics": {"source": "direct"},
            },
            "rollout": {
                "replacement": {
                    "steps": [
                        {
                            "shadow": {
                                "duration": "300s",
                                "percent": 100,
                                "minRequests": SHADOW_MIN_REQUESTS,
                            }
                        },
                        {"canary": {"weight": 50, "duration": "10s"}},
                    ]
                },
                "analysis": {
                    "interval": f"{args.analysis_interval}s",
                    "minRequests": ANALYSIS_MIN_REQUESTS,
                    "failureLimit": FAILURE_LIMIT,
                    "minAgreement": MIN_AGREEMENT,
                    "maxPredictionShift": 1.0,
                },
                "progressDeadline": "300s",
            },
        },
    }


def status(kube: Kube) -> dict[str, Any]:
    return dict((kube.get("md", "wine") or {}).get("status") or {})


def condition(current: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in current.get("conditions") or ():
        if item.get("type") == kind:
            return dict(item)
    return {}


def wait_until(
    probe: Callable[[], Any], timeout: float, what: str, interval: float = POLL_SECONDS
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def sidecar_counts(ip: str) -> dict[str, float]:
    """The pod's sidecar shadow counters so far: copies (every outcome) and compared rows."""
    try:
        with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counts = {"copies": 0.0, "compared": 0.0}
    for line in text.splitlines():
        if line.startswith("vigil_shadow_requests_total{"):
            counts["copies"] += float(line.rpartition(" ")[2])
        elif line.startswith("vigil_shadow_predictions_total{"):
            counts["compared"] += float(line.rpartition(" ")[2])
    return counts


def shadow_requests(ip: str) -> float:
    """Shadow copies the pod's sidecar has made so far (every outcome), or -1."""
    return sidecar_counts(ip).get("copies", -1.0)


# -- expected bounds ----------------------------------------------------------------------


def drift_fraction(model: TrainedModel) -> dict[str, Any]:
    """The share of shifted rows in the window at which PSI reaches the threshold.

    The live rows are training rows (the reference's own distribution); the
    shifted ones move two features by one standard deviation. A window
    holding a share ``f`` of shifted rows has, per feature, the bin
    proportions ``(1 - f) * reference + f * shifted``; the health loop's
    overall drift is the largest per-feature PSI, so the flag rises at the
    smallest ``f`` where that crosses the threshold (no sampling noise: a
    few hundred rows per window add a positive PSI bias of about
    ``(bins - 1) / rows``, which lowers the share a little).
    """
    profile = parse_profile(model.profile_json())
    by_name = {feature.name: feature for feature in profile.features}
    shifted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in SHIFTED:
        feature = by_name[name]
        column = model.X[:, model.features.index(name)]
        slots = len(feature.proportions)
        edges = np.asarray(feature.edges)
        base = np.bincount(bin_index(column, edges), minlength=slots) / len(column)
        moved = column + SHIFT_STDS * column.std()
        after = np.bincount(bin_index(moved, edges), minlength=slots) / len(column)
        shifted[name] = (base, after)

    def score(share: float) -> float:
        return max(
            psi(np.asarray(by_name[name].proportions), (1 - share) * base + share * after)
            for name, (base, after) in shifted.items()
        )

    full = score(1.0)
    share = next((f for f in np.linspace(0, 1, 1001) if score(f) >= DRIFT_THRESHOLD), 1.0)
    return {"share": float(share), "psi_all_shifted": full, "bins": len(shifted[SHIFTED[0]][0])}


def simulate_shares(
    model: TrainedModel, rows: int, trials: int = 100, seed: int = 1
) -> dict[str, list[float]]:
    """With sampling noise: the share of shifted rows at which the flag rises, and clears.

    A window of ``rows`` training rows (drawn as the traffic draws them)
    slides over shifted rows: the share at which the largest per-feature
    PSI over all 13 features first reaches the threshold (detection); then
    over normal rows again: the share of normal rows at which it first
    falls below (clearing). ``trials`` such windows give the 5th, 50th and
    95th percentiles. Noise raises PSI (about (bins - 1) / rows per feature,
    and the largest of 13 noisy features is taken), so detection comes a
    little earlier and clearing a little later than without it.
    """
    profile = parse_profile(model.profile_json())
    rng = np.random.default_rng(seed)
    features = [f for f in profile.features if f.type == "numeric" and f.edges]
    refs = [np.maximum(np.asarray(f.proportions), DEFAULT_EPSILON) for f in features]
    normal_idx = []
    shifted_idx = []
    for feature in features:
        column = model.X[:, model.features.index(feature.name)]
        edges = np.asarray(feature.edges)
        normal_idx.append(bin_index(column, edges))
        moved = column + SHIFT_STDS * column.std() if feature.name in SHIFTED else column
        shifted_idx.append(bin_index(moved, edges))

    def score(normal: np.ndarray, shifted: np.ndarray) -> float:
        worst = 0.0
        for j, ref in enumerate(refs):
            counts = np.bincount(normal_idx[j][normal], minlength=ref.size) + np.bincount(
                shifted_idx[j][shifted], minlength=ref.size
            )
            cur = np.maximum(counts / counts.sum(), DEFAULT_EPSILON)
            worst = max(worst, float(np.sum((cur - ref) * np.log(cur / ref))))
        return worst

    step = max(1, rows // 50)
    detect: list[float] = []
    clear: list[float] = []
    n = len(model.X)
    for _ in range(trials):
        before, drifted, after = (rng.integers(0, n, rows) for _ in range(3))
        for k in range(0, rows + 1, step):
            if score(before[k:], drifted[:k]) >= DRIFT_THRESHOLD:
                detect.append(k / rows)
                break
        for k in range(0, rows + 1, step):
            if score(after[:k], drifted[k:]) < DRIFT_THRESHOLD:
                clear.append(k / rows)
                break
    q = (5, 50, 95)
    return {
        "rows": [rows],
        "detect_share_p5_p50_p95": [round(float(x), 3) for x in np.percentile(detect, q)],
        "clear_share_p5_p50_p95": [round(float(x), 3) for x in np.percentile(clear, q)],
    }


# -- (a) drift ----------------------------------------------------------------------------


def watch_condition(
    kube: Kube, want: str, started: float, timeout: float, trace: list[Any]
) -> tuple[float, dict[str, Any]]:
    """Poll until DriftDetected has status ``want``; seconds since ``started`` and status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(kube)
        seen = time.monotonic() - started
        drift = condition(current, "DriftDetected")
        score = ((current.get("health") or {}).get("drift") or {}).get("score")
        if not trace or trace[-1][1:] != [drift.get("status"), score]:
            trace.append([round(seen, 2), drift.get("status"), score])
        if drift.get("status") == want:
            return seen, current
        time.sleep(POLL_SECONDS)
    raise SystemExit(
        f"DriftDetected={want} not seen within {timeout:.0f}s; last: {json.dumps(trace[-5:])}"
    )


def drift_runs(
    kube: Kube,
    traffic: TrafficGenerator,
    traffic_started: float,
    model: TrainedModel,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    window, interval = float(args.window), float(args.health_interval)
    full = window + interval + 1.0  # the window's baseline scrape may be up to one interval older
    shifts = {model.features.index(name): SHIFT_STDS for name in SHIFTED}
    print("drift: waiting for a whole window of normal traffic judged NoDrift", flush=True)
    # NoDrift alone is not enough: it comes from 200 rows, possibly before the
    # operator has a whole window of scrapes, and a shorter history makes the
    # first repetition's window shorter (an early detection, seen once).
    wait_until(
        lambda: (
            time.monotonic() - traffic_started >= full
            and condition(status(kube), "DriftDetected").get("reason") == "NoDrift"
        ),
        4 * window + 60,
        "DriftDetected reason NoDrift after a whole window of normal traffic",
    )
    runs = []
    for rep in range(args.reps):
        trace: list[Any] = []
        sent_before = traffic.stats.sent
        traffic.set_shifts(shifts)
        started = time.monotonic()
        detect, current = watch_condition(kube, "True", started, 3 * window + 30, trace)
        drift = condition(current, "DriftDetected")
        # A whole window of shifted traffic before going back to normal.
        time.sleep(max(0.0, full - (time.monotonic() - started)))
        back = time.monotonic()
        traffic.set_shifts({})
        clear_trace: list[Any] = []
        clear, cleared = watch_condition(kube, "False", back, 3 * window + 30, clear_trace)
        # Then a whole window of normal traffic before the next repetition.
        normal_again = back
        wait_until(
            lambda: (
                time.monotonic() - normal_again >= full  # noqa: B023 (called in this iteration)
                and condition(status(kube), "DriftDetected").get("reason") == "NoDrift"
            ),
            3 * window + 60,
            "NoDrift once the shifted rows left the window",
        )
        run = {
            "rep": rep + 1,
            "seconds_to_detect": round(detect, 2),
            "seconds_to_clear": round(clear, 2),
            "windows_to_detect": round(detect / window, 3),
            "windows_to_clear": round(clear / window, 3),
            "message": drift.get("message"),
            "cleared_reason": condition(cleared, "DriftDetected").get("reason"),
            "trace_detect": trace,
            "trace_clear": clear_trace,
            "achieved_rps": round(
                (traffic.stats.sent - sent_before) / (time.monotonic() - started), 1
            ),
            "traffic": {"sent": traffic.stats.sent, "failed": traffic.stats.failed},
        }
        runs.append(run)
        print(json.dumps({k: v for k, v in run.items() if not k.startswith("trace")}), flush=True)
    return runs


# -- (b) bad candidate ----------------------------------------------------------------


class ShadowWatch:
    """Polls the stable sidecar's shadow counters every 0.2 s.

    Notes the first copy, and when the compared predictions since then reach
    the shadow step's ``need`` (the earliest moment the analysis can judge).
    """

    def __init__(self, ip: str, need: int) -> None:
        self.ip = ip
        self.need = need
        self.baseline = sidecar_counts(ip)
        self.first: float | None = None
        self.filled: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.filled is None:
            counts = sidecar_counts(self.ip)
            now = time.monotonic()
            if counts:
                if self.first is None and counts["copies"] > self.baseline.get("copies", 0):
                    self.first = now
                grown = counts["compared"] - self.baseline.get("compared", 0)
                if self.first is not None and grown >= self.need:
                    self.filled = now
            self._stop.wait(0.2)

    def __enter__(self) -> ShadowWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def rollout_runs(
    kube: Kube, stable: TrainedModel, store: ModelStore, args: argparse.Namespace
) -> list[dict[str, Any]]:
    current = status(kube)
    stable_revision = current["stable"]["revision"]
    (stable_ip,) = [
        p["status"]["podIP"] for p in kube.items("pods", f"vigil.dev/revision={stable_revision}")
    ]
    runs = []
    tried: set[str] = set()
    for rep in range(args.reps):
        bad = store.train(f"wine-bad-{rep}", version=str(rep + 2), shuffled_labels=True, seed=rep)
        marks: dict[str, float] = {}
        last: dict[str, Any] = {}
        revision = ""
        with ShadowWatch(stable_ip, SHADOW_MIN_REQUESTS) as copies:
            applied = time.monotonic()
            kube.apply(kube_yaml.dump(manifest(bad, store, args)))
            deadline = applied + 300
            while time.monotonic() < deadline:
                last = status(kube)
                now = time.monotonic()
                candidate = last.get("candidate") or {}
                if candidate.get("revision") and candidate["revision"] not in tried:
                    revision = str(candidate["revision"])
                    marks.setdefault("candidate", now)
                    if candidate.get("shadowPercent"):
                        marks.setdefault("shadow_set", now)
                    if candidate.get("outcome") == "RolledBack":
                        marks["rolled_back"] = now
                        break
                time.sleep(POLL_SECONDS)
            else:
                raise SystemExit(f"no RolledBack within 300s; last status: {json.dumps(last)}")
        tried.add(revision)
        if copies.first is None:
            raise SystemExit("RolledBack without any shadow copy seen on the stable sidecar")
        ready = condition(last, "Ready")
        gates = (last.get("candidate") or {}).get("gates") or []
        since_copy = marks["rolled_back"] - copies.first
        run = {
            "rep": rep + 1,
            "seconds_first_copy_to_rolled_back": round(since_copy, 2),
            "intervals_first_copy_to_rolled_back": round(since_copy / args.analysis_interval, 2),
            "windows_first_copy_to_rolled_back": round(since_copy / args.window, 3),
            "seconds_first_copy_to_enough_compared": (
                round(copies.filled - copies.first, 2) if copies.filled else None
            ),
            "seconds_enough_compared_to_rolled_back": (
                round(marks["rolled_back"] - copies.filled, 2) if copies.filled else None
            ),
            "seconds_shadow_set_to_rolled_back": round(
                marks["rolled_back"] - marks.get("shadow_set", copies.first), 2
            ),
            "seconds_apply_to_first_copy": round(copies.first - applied, 2),
            "seconds_apply_to_rolled_back": round(marks["rolled_back"] - applied, 2),
            "message": ready.get("message"),
            "gates": gates,
        }
        runs.append(run)
        print(json.dumps(run), flush=True)
        # The candidate gone and the stable's copies off before the next one.
        wait_until(
            lambda: (
                sorted(d["metadata"]["name"] for d in kube.items("deployments"))
                == [f"wine-{stable_revision}"]
            ),
            120,
            "the rolled-back candidate's Deployment to go",
        )
        # Copies may still be queued or the settings file not yet re-read: wait
        # until the stable sidecar's counter stands still, so the next
        # repetition's "first copy" is its own.
        wait_quiet(stable_ip, 60)
    return runs


def wait_quiet(ip: str, timeout: float) -> None:
    """Until the pod's shadow counter stands still for 3 s (copies off and drained)."""
    deadline = time.monotonic() + timeout
    before = shadow_requests(ip)
    while time.monotonic() < deadline:
        time.sleep(3)
        now = shadow_requests(ip)
        if now == before:
            return
        before = now
    raise SystemExit(f"the sidecar on {ip} still makes shadow copies after {timeout:.0f}s")


# -- the run ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "loadavg_at_start": os.getloadavg(),
    }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 2),
        "median": round(float(np.median(values)), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--window", type=int, default=30, help="spec.monitoring.window, seconds")
    parser.add_argument("--health-interval", type=int, default=5, help="operator flag, seconds")
    parser.add_argument("--analysis-interval", type=int, default=5, help="seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s, one row each")
    parser.add_argument("--only", choices=("drift", "rollout"), default=None)
    parser.add_argument("--keep", action="store_true", help="keep the namespace afterwards")
    parser.add_argument("--out", default=str(HERE / "last-run.json"))
    parser.add_argument(
        "--summarize", metavar="JSON", help="only recompute the summary of an earlier run"
    )
    args = parser.parse_args()
    if args.summarize:
        report = json.loads(Path(args.summarize).read_text())
        settings = report["settings"]
        args.window = settings["window_seconds"]
        args.health_interval = settings["health_interval_seconds"]
        args.analysis_interval = settings["analysis_interval_seconds"]
        args.rate = settings["rate_rps"]
        summarize(report, args)
        Path(args.summarize).write_text(json.dumps(report, indent=2) + "\n")
        return
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "window_seconds": args.window,
            "health_interval_seconds": args.health_interval,
            "analysis_interval_seconds": args.analysis_interval,
            "rate_rps": args.rate,
            "rows_per_request": 1,
            "drift": {
                "method": "psi",
                "threshold": DRIFT_THRESHOLD,
                "shifted": list(SHIFTED),
                "shift_stds": SHIFT_STDS,
            },
            "shadow_min_requests": SHADOW_MIN_REQUESTS,
            "analysis_min_requests": ANALYSIS_MIN_REQUESTS,
            "failure_limit": FAILURE_LIMIT,
            "min_agreement": MIN_AGREEMENT,
        },
    }
    print(json.dumps(report), flush=True)
    loads: list[tuple[float, ...]] = []
    sampling = threading.Event()

    def sample_load() -> None:
        while not sampling.wait(10):
            loads.append(os.getloadavg())

    threading.Thread(target=sample_load, daemon=True).start()
    cluster = connect(log=lambda line: print(line, flush=True))
    local = running_real_node()
    kubeconfig = install_vigil(cluster)
    images = ensure_images(["vigil", "mlserver-sklearn"], local.log)
    local.node().load_images(list(images.values()))
    namespace = f"bench-detection-{secrets.token_hex(3)}"
    kube = Kube(cluster, namespace)
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-detection-"))
    log_dir = REPO / ".vigil" / "bench-logs"
    operator = OperatorProcess(
        kubeconfig,
        [namespace],
        log_dir,
        ("--health-interval", str(args.health_interval)),
        resolv_conf=cluster_resolv_conf(local, tmp),
        sidecar_image=images["vigil"].ref,
    )
    traffic: TrafficGenerator | None = None
    try:
        with model_store(cluster, local, namespace, images["mlserver-sklearn"].ref) as store:
            operator.start()
            stable = store.train("wine-1", version="1", seed=0)
            report["expected_drift_share"] = drift_fraction(stable)
            kube.apply(
                kube_yaml.dump(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "wine-reference"},
                        "data": {"profile.json": stable.profile_json()},
                    }
                )
            )
            kube.apply(kube_yaml.dump(manifest(stable, store, args)))
            kube.run("wait", "--for=condition=Ready", "md/wine", "--timeout=180s")
            wait_until(
                lambda: all(
                    http_status(f"http://{ip}:8000/v2/models/wine/ready") == 200
                    for ip in serving_pod_ips(cluster, namespace, "wine") or ["-"]
                ),
                240,
                f"MLServer behind the sidecar to serve (kubectl get pods -n {namespace})",
            )
            traffic = TrafficGenerator(
                cluster, namespace, "wine", "wine", stable.X, rate=args.rate, seed=3,
                through_service=True,
            ).start()  # fmt: skip
            traffic_started = time.monotonic()
            if args.only in (None, "drift"):
                report["drift"] = drift_runs(kube, traffic, traffic_started, stable, args)
            if args.only in (None, "rollout"):
                report["rollout"] = rollout_runs(kube, stable, store, args)
            report["traffic"] = {"sent": traffic.stats.sent, "failed": traffic.stats.failed}
            traffic.stop()
            traffic = None
            operator.assert_no_errors()
    finally:
        if traffic is not None:
            traffic.stop()
        operator.stop()
        sampling.set()
        if not args.keep:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["machine"]["loadavg_1min_samples"] = [round(x[0], 2) for x in loads]
    report["operator_log"] = str(operator.log_path)
    summarize(report, args)
    text = json.dumps(report, indent=2) + "\n"
    Path(args.out).write_text(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M")
    (results / f"{stamp}.json").write_text(text)


def reconcile_gaps(log_path: str) -> list[float]:
    """Seconds between the operator's consecutive rollout log lines for one candidate.

    Each line is one rollout reconcile; the gap is the re-check timer
    (``min(analysis.interval, 10s)``) plus the reconcile's own duration (a
    scrape, a decision, a status patch), which is what stretches the judging
    on a busy machine.
    """
    import re

    pattern = re.compile(r"^\[(\S+ \S+)\] vigil\.operator\.rollo.* rollout of (\w+): (\w+)")
    last: dict[str, float] = {}
    gaps: list[float] = []
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return gaps
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        at = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        revision = match.group(2)
        if revision in last and match.group(3) in ("CheckFailed", "AnalysisFailed"):
            gaps.append(round(at - last[revision], 2))
        last[revision] = at
    return gaps


def summarize(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Figures against the window and interval, next to the bounds the design implies."""
    window, interval = float(args.window), float(args.health_interval)
    share = report["expected_drift_share"]["share"]
    full_psi = report["expected_drift_share"]["psi_all_shifted"]
    lines = [f"\nwindow W = {window:.0f} s, health interval I = {interval:.0f} s"]
    if report.get("drift"):
        runs = report["drift"]
        detect = [r["seconds_to_detect"] for r in runs]
        clear = [r["seconds_to_clear"] for r in runs]
        rps = float(np.median([r.get("achieved_rps", args.rate) for r in runs]))
        rows = round(rps * window)
        model = train_wine(Path(tempfile.mkdtemp(prefix="vigil-bench-sim-")) / "wine", seed=0)
        noisy = simulate_shares(model, rows)
        d5, _, d95 = noisy["detect_share_p5_p50_p95"]
        c5, _, c95 = noisy["clear_share_p5_p50_p95"]
        report["drift_summary"] = {
            "detect_seconds": summary(detect),
            "clear_seconds": summary(clear),
            "noise_free_detect_bound_seconds": [
                share * window,
                share * (window + interval) + interval,
            ],
            "noise_free_clear_bound_seconds": [
                (1 - share) * window,
                (1 - share) * (window + interval) + interval,
            ],
            "rows_per_window": rows,
            "simulated_shares": noisy,
            "detect_bound_seconds": [d5 * window, d95 * (window + interval) + interval],
            "clear_bound_seconds": [c5 * window, c95 * (window + interval) + interval],
        }
        s = report["drift_summary"]
        lines += [
            f"drift: PSI reaches {DRIFT_THRESHOLD} when {share:.1%} of the window's rows are "
            f"shifted (no sampling noise; PSI with all rows shifted: {full_psi:.2f}); with "
            f"{rows} rows per window ({rps:.1f} rps measured) the share is {d5:.2f}-{d95:.2f} "
            f"to raise and {c5:.2f}-{c95:.2f} of normal rows to clear (5-95 %, simulated)",
            "detect: "
            + ", ".join(f"{x:.1f} s ({x / window:.2f} W)" for x in detect)
            + f"; expected {s['detect_bound_seconds'][0]:.1f}-{s['detect_bound_seconds'][1]:.1f} s"
            " (+ cycle duration, status write and 0.5 s polling)",
            "clear:  "
            + ", ".join(f"{x:.1f} s ({x / window:.2f} W)" for x in clear)
            + f"; expected {s['clear_bound_seconds'][0]:.1f}-{s['clear_bound_seconds'][1]:.1f} s",
        ]
    if report.get("rollout"):
        ia = float(args.analysis_interval)
        runs = report["rollout"]
        took = [r["seconds_first_copy_to_rolled_back"] for r in runs]
        fill = [r["seconds_first_copy_to_enough_compared"] for r in runs]
        judged = [r["seconds_enough_compared_to_rolled_back"] for r in runs]
        gaps = reconcile_gaps(str(report.get("operator_log", "")))
        gap = max(gaps) if gaps else max(1.0, min(ia, 10.0))
        low = (FAILURE_LIMIT - 1) * ia
        high = FAILURE_LIMIT * gap
        report["rollout_summary"] = {
            "first_copy_to_rolled_back_seconds": summary(took),
            "first_copy_to_enough_compared_seconds": summary([x for x in fill if x is not None]),
            "enough_compared_to_rolled_back_seconds": summary([x for x in judged if x is not None]),
            "reconcile_gaps_seconds": gaps,
            "enough_compared_to_rolled_back_bound_seconds": [low, high],
        }
        lines += [
            f"bad candidate (analysis interval {ia:.0f} s, failureLimit {FAILURE_LIMIT}, "
            f"{SHADOW_MIN_REQUESTS} compared predictions needed): first copy -> RolledBack "
            + ", ".join(f"{x:.1f} s ({x / ia:.1f} intervals)" for x in took),
            "  of which filling the sample: "
            + ", ".join(f"{x:.1f} s" if x is not None else "-" for x in fill)
            + "; judging (enough compared -> RolledBack): "
            + ", ".join(f"{x:.1f} s" if x is not None else "-" for x in judged)
            + f" (expected {low:.1f}-{high:.1f} s: {FAILURE_LIMIT - 1} interval(s) at least, "
            f"at most {FAILURE_LIMIT} reconcile gaps; gaps measured "
            + (f"{min(gaps):.1f}-{max(gaps):.1f} s)" if gaps else "-)"),
        ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
