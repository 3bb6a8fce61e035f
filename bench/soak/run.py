"""Soak: 100 ModelDeployments evaluated continuously for 30 minutes, traffic on 3 of them.

On a local cluster of its own (real control plane, kwok nodes):

- namespace ``soak-live``: 3 ModelDeployments (1 replica each) whose pods
  the workload runner runs for real: the monitoring sidecar in front of
  MLServer serving a scikit-learn wine model, with the wine reference
  profile. A load generator sends 5 requests/s to each (one of them with two
  features shifted by 2 standard deviations, so a drift verdict is part of
  the steady state);
- namespace ``soak-idle``: 97 ModelDeployments whose kwok pods run nothing
  (their scrapes are refused: MetricsUnavailable, written once);
- one `vigil-operator` (its ServiceAccount's token only) watching both, with
  a 10 s health interval (default 30 s: three times the cycles in the same
  time).

Every minute it samples, for the operator and each sidecar: RSS (VmRSS),
open file descriptors, established TCP connections (from /proc), and pending
asyncio tasks (a read-only probe thread, ``bench/soak/probe/sitecustomize.py``,
put on their PYTHONPATH). After a warm-up (default 5 min), the baseline is
the median of the next 3 samples and the end value the median of the last
3; pass = RSS grows by at most 10 %, and fds, connections and tasks by at
most 10 % or 2 (small counts).

Usage: .venv/bin/python bench/soak/run.py [--minutes 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scale"))

from kit import (
    MLSERVER_IMAGE,
    Admin,
    BenchCluster,
    LoadWatch,
    OperatorRunner,
    cluster_versions,
    machine,
    proc_sample,
    tcp_connections,
    utc_now,
)

from vigil.core.desired import SIDECAR_CONTAINER
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.devcluster.runner import PodWorkload, WorkloadRunner

PORT_BASE = 26900
LIVE = "soak-live"
IDLE = "soak-idle"
LIVE_COUNT = 3
TOTAL = 100
RATE_PER_MODEL = 5.0
HEALTH_INTERVAL = 10.0
PROBE_DIR_ENV = "VIGIL_BENCH_PROBE_DIR"
PROBE_PATH = Path(__file__).resolve().parent / "probe"
RESULTS = Path(__file__).resolve().parent / "results"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def model_deployment(name: str, model: TrainedModel | None) -> dict[str, Any]:
    """A one-replica ModelDeployment; with ``model``, served for real and monitored against it."""
    uri = model.storage_uri if model is not None else "s3://models/wine/1"
    spec: dict[str, Any] = {
        "model": {"name": "wine", "version": "1", "uri": uri},
        "server": {"image": MLSERVER_IMAGE, "protocol": "v2", "port": 8080},
        "replicas": 1,
        "config": {"MLSERVER_PARALLEL_WORKERS": "0"},
        "monitoring": {"window": "60s"},
    }
    if model is not None:
        spec["monitoring"]["reference"] = {
            "configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}
        }
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


class ProbedRunner(WorkloadRunner):
    """The workload runner, with the task probe on the sidecars' PYTHONPATH."""

    def __init__(self, *args: Any, probe_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe_dir = probe_dir

    def _command_for(
        self, container: dict[str, Any], pod: dict[str, Any], workload: PodWorkload
    ) -> tuple[list[str], dict[str, str]] | None:
        found = super()._command_for(container, pod, workload)
        if found is not None and "vigil" in container["image"]:
            argv, env = found
            env = {**env, "PYTHONPATH": str(PROBE_PATH), PROBE_DIR_ENV: str(self.probe_dir)}
            return argv, env
        return found

    def _pids(self, sidecar: bool) -> dict[str, int]:
        out = {}
        for workload in self.pods.values():
            for name, container in workload.containers.items():
                if (name == SIDECAR_CONTAINER) == sidecar and container.running():
                    assert container.process is not None
                    out[workload.name] = container.process.pid
        return out

    def sidecar_pids(self) -> dict[str, int]:
        return self._pids(sidecar=True)

    def server_pids(self) -> dict[str, int]:
        return self._pids(sidecar=False)


class Traffic:
    """Requests at a fixed rate to one model pod (v2 protocol), in a thread of its own."""

    def __init__(self, ip: str, X: np.ndarray, rate: float, shift: dict[int, float], seed: int):
        self.ip = ip
        self.X = X
        self.rate = rate
        self.shift = shift
        self.rng = np.random.default_rng(seed)
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _body(self) -> bytes:
        row = self.X[self.rng.integers(0, len(self.X))].copy()
        stds = self.X.std(axis=0)
        for column, amount in self.shift.items():
            row[column] += amount * stds[column]
        payload = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, len(row)],
                    "datatype": "FP64",
                    "data": [list(map(float, row))],
                }
            ]
        }
        return json.dumps(payload).encode()

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            request = urllib.request.Request(
                f"http://{self.ip}:8000/v2/models/wine/infer",
                data=self._body(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                    self.ok += 1
            except (urllib.error.URLError, OSError):
                self.failed += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()


def ready_over_http(ip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:8000/healthz/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def probe(folder: Path, pid: int) -> dict[str, Any]:
    try:
        record = json.loads((folder / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(record)


def sample_process(pid: int, folder: Path) -> dict[str, Any]:
    stat = proc_sample(pid)
    if stat is None:
        return {"alive": False}
    found = probe(folder, pid)
    return {
        "rss_mib": round(stat.rss_kib / 1024, 2),
        "cpu_seconds": round(stat.cpu_seconds, 2),
        "fds": stat.fds,
        "connections": tcp_connections(pid),
        "threads": stat.threads,
        "tasks": found.get("tasks"),
        "gc_objects": found.get("gc_objects"),
    }


def growth(samples: list[dict[str, Any]], key: str, warmup: int) -> dict[str, Any]:
    values = [s.get(key) for s in samples]
    if any(v is None for v in values) or len(values) < warmup + 6:
        return {"baseline": None, "end": None, "growth": None, "pass": None}
    baseline_values = values[warmup : warmup + 3]
    baseline = statistics.median(baseline_values)
    end = statistics.median(values[-3:])
    change = (end - baseline) / baseline if baseline else 0.0
    # RSS: at most 10 % growth; small counts: 10 % or 2, whichever is more.
    ok = (
        change <= 0.10
        if key == "rss_mib"
        else end <= max(baseline_values) + max(2, 0.10 * baseline)
    )
    return {
        "baseline": baseline,
        "end": end,
        "growth": round(change, 4),
        "min": min(values[warmup:]),
        "max": max(values[warmup:]),
        "pass": ok,
    }


async def setup(cluster: BenchCluster, work: Path) -> tuple[str, TrainedModel]:
    kubeconfig = cluster.install_vigil()
    log("training the wine model (MLServer folder and reference profile)")
    model = train_wine(work / "model")
    async with Admin(cluster) as admin:
        for namespace in (LIVE, IDLE):
            await admin.create_namespace(namespace)
        await admin.request(
            "POST",
            f"/api/v1/namespaces/{LIVE}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "wine-reference"},
                "data": {"profile.json": model.profile_json()},
            },
        )
    return kubeconfig, model


async def create_models(cluster: BenchCluster, model: TrainedModel) -> None:
    async with Admin(cluster) as admin:
        await admin.create_all(
            f"/apis/vigil.dev/v1alpha1/namespaces/{LIVE}/modeldeployments",
            [model_deployment(f"live-{i}", model) for i in range(LIVE_COUNT)],
        )
        await admin.create_all(
            f"/apis/vigil.dev/v1alpha1/namespaces/{IDLE}/modeldeployments",
            [model_deployment(f"idle-{i:03d}", None) for i in range(TOTAL - LIVE_COUNT)],
        )


async def statuses(cluster: BenchCluster) -> dict[str, Any]:
    out = {}
    async with Admin(cluster) as admin:
        for namespace in (LIVE, IDLE):
            for md in await admin.items(
                f"/apis/vigil.dev/v1alpha1/namespaces/{namespace}/modeldeployments"
            ):
                status = md.get("status") or {}
                out[md["metadata"]["name"]] = {
                    "phase": status.get("phase"),
                    "conditions": {
                        c["type"]: f"{c['status']} ({c.get('reason')})"
                        for c in status.get("conditions") or []
                    },
                    "health": status.get("health"),
                }
    return out


async def pod_ips(cluster: BenchCluster) -> dict[str, str]:
    async with Admin(cluster) as admin:
        pods = await admin.items(f"/api/v1/namespaces/{LIVE}/pods")
    return {
        p["metadata"]["labels"]["vigil.dev/model-deployment"]: p["status"]["podIP"]
        for p in pods
        if (p.get("status") or {}).get("podIP") and not p["metadata"].get("deletionTimestamp")
    }


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="minutes before the baseline")
    parser.add_argument("--port-base", type=int, default=PORT_BASE)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-soak-"))
    probe_dir = work / "probe"
    probe_dir.mkdir()
    cluster = BenchCluster(state_dir=work / "cluster", port_base=args.port_base, nodes=1, log=log)
    stop_runner = threading.Event()
    operator: OperatorRunner | None = None
    traffic: list[Traffic] = []
    runner_thread: threading.Thread | None = None
    try:
        cluster.up()
        kubeconfig, model = asyncio.run(setup(cluster, work))
        runner = ProbedRunner(cluster.client(), work / "workloads", [LIVE], probe_dir=probe_dir)
        runner_thread = threading.Thread(
            target=runner.run, args=(stop_runner, 3.0), name="runner", daemon=True
        )
        runner_thread.start()
        operator = OperatorRunner(
            kubeconfig,
            [LIVE, IDLE],
            work / "operator.log",
            extra_args=("--health-interval", str(HEALTH_INTERVAL)),
            env={"PYTHONPATH": str(PROBE_PATH), PROBE_DIR_ENV: str(probe_dir)},
        )
        operator.start()
        asyncio.run(create_models(cluster, model))
        log(f"created {TOTAL} ModelDeployments; waiting for the live pods' sidecars")
        ips = wait(
            lambda: (found := asyncio.run(pod_ips(cluster))) and len(found) == LIVE_COUNT and found,
            300,
            "the live pods' IPs",
        )
        wait(lambda: all(ready_over_http(ip) for ip in ips.values()), 300, "the sidecars ready")
        for index, (_name, ip) in enumerate(sorted(ips.items())):
            shift = {0: 2.0, 6: 2.0} if index == LIVE_COUNT - 1 else {}
            traffic.append(Traffic(ip, model.X, RATE_PER_MODEL, shift, seed=index).start())
        log(f"traffic: {RATE_PER_MODEL:g} requests/s to each of {sorted(ips)}; soak starts")
        load = LoadWatch().start()
        started = utc_now()
        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()
        for minute in range(args.minutes + 1):
            target = t0 + 60 * minute
            time.sleep(max(0.0, target - time.monotonic()))
            record: dict[str, Any] = {
                "minute": minute,
                "load_1m": round(os.getloadavg()[0], 2),
                "operator": sample_process(operator.pid, probe_dir),
                "sidecars": {
                    name: sample_process(pid, probe_dir)
                    for name, pid in sorted(runner.sidecar_pids().items())
                },
                "servers_rss_mib": {
                    name: round((proc_sample(pid).rss_kib if proc_sample(pid) else 0) / 1024, 1)
                    for name, pid in sorted(runner.server_pids().items())
                },
                "traffic_ok": sum(t.ok for t in traffic),
                "traffic_failed": sum(t.failed for t in traffic),
            }
            samples.append(record)
            op = record["operator"]
            log(
                f"minute {minute:2d}: operator RSS {op.get('rss_mib')} MiB, fds {op.get('fds')}, "
                f"conns {op.get('connections')}, tasks {op.get('tasks')}; sidecars RSS "
                + ", ".join(f"{s.get('rss_mib')}" for s in record["sidecars"].values())
                + f"; traffic ok {record['traffic_ok']} failed {record['traffic_failed']}"
            )
        for item in traffic:
            item.stop()
        final_status = asyncio.run(statuses(cluster))
        load_figures = load.stop()
        verdicts = summarize(samples, args.warmup)
        record = {
            "date": utc_now().isoformat(timespec="seconds"),
            "started": started.isoformat(timespec="seconds"),
            "machine": machine(),
            "versions": cluster_versions(cluster),
            "settings": {
                "minutes": args.minutes,
                "warmup_minutes": args.warmup,
                "health_interval_seconds": HEALTH_INTERVAL,
                "rate_per_live_model": RATE_PER_MODEL,
                "model_deployments": TOTAL,
                "live": LIVE_COUNT,
            },
            "load_average_1m": load_figures,
            "verdicts": verdicts,
            "operator_metrics": [
                line
                for line in operator.metrics_text().splitlines()
                if line.startswith(
                    (
                        "vigil_health_cycle_seconds_count",
                        "vigil_health_cycle_seconds_sum",
                        "vigil_operator_reconciles",
                        "vigil_operator_writes",
                    )
                )
            ],
            "live_status": {k: v for k, v in final_status.items() if k.startswith("live-")},
            "idle_status_sample": final_status.get("idle-000"),
            "samples": samples,
        }
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "last-run.json"
        path.write_text(json.dumps(record, indent=2, default=str))
        log(f"verdicts: {json.dumps(verdicts, indent=1)}")
        log(f"wrote {path}; work folder {work}")
    finally:
        for item in traffic:
            item.stop()
        if operator is not None:
            operator.stop()
        stop_runner.set()
        if runner_thread is not None:
            runner_thread.join(timeout=60)
        cluster.down()


def summarize(samples: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    series = {"operator": [s["operator"] for s in samples]}
    names = sorted({name for s in samples for name in s["sidecars"]})
    for name in names:
        series[f"sidecar {name}"] = [s["sidecars"].get(name, {}) for s in samples]
    for label, values in series.items():
        out[label] = {
            key: growth(values, key, warmup) for key in ("rss_mib", "fds", "connections", "tasks")
        }
    out["pass"] = all(
        figure["pass"] is not False for figures in out.values() for figure in figures.values()
    )
    return out


if __name__ == "__main__":
    main()
