"""Soak: 100 ModelDeployments evaluated continuously for 30 minutes, traffic on 3 of them.

On a local cluster of its own (real control plane, its real node, kwok nodes):

- namespace ``soak-live``: 3 ModelDeployments (1 replica each) whose pods
  run on the real node: the monitoring sidecar in front of MLServer (the
  images built here) serving a scikit-learn wine model from a local volume
  (``pvc://models/wine``), with the wine reference profile. A load
  generator sends 5 requests/s to each through its Service's ClusterIP (one
  of them with two features shifted by 2 standard deviations, so a drift
  verdict is part of the steady state);
- namespace ``soak-idle``: 97 ModelDeployments whose kwok pods run nothing
  (their scrapes are refused: MetricsUnavailable, written once);
- one `vigil-operator` (its ServiceAccount's token only) watching both, with
  a 10 s health interval (default 30 s: three times the cycles in the same
  time).

Every minute it samples, for the operator and each sidecar: RSS (VmRSS),
open file descriptors, established TCP connections (from /proc: the node's
containers are processes of this machine, found by their pod's cgroup), and
pending asyncio tasks (a read-only probe thread, ``bench/soak/probe/sitecustomize.py``,
put on their PYTHONPATH: the operator's environment, and for the sidecars a
copy of the vigil image with one more layer, see ``probe_image``). After a
warm-up (default 5 min), the baseline is
the median of the next 3 samples and the end value the median of the last
3; pass = RSS grows by at most 10 %, and fds, connections and tasks by at
most 10 % or 2 (small counts).

Usage: .venv/bin/python bench/soak/run.py [--minutes 30] [--warmup 5] [--port-base 26900] [--out F]
(the verdicts need at least warmup + 5 minutes; root, for the real node)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import statistics
import sys
import tarfile
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

from vigil.core.desired import SIDECAR_SCRATCH_DIR
from vigil.devcluster.images import ImageArchive, ensure_images
from vigil.devcluster.incluster import local_volume, real_node_namespace, volume_dir
from vigil.devcluster.models import TrainedModel, train_wine

PORT_BASE = 26900
CLAIM = "models"
#: Kwok pods' server image: never pulled or run.
IDLE_SERVER_IMAGE = "seldonio/mlserver:1.7.1-sklearn"
#: As the e2e tests' real-node servers (kit.modeldeployment.SERVER_RESOURCES).
SERVER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
#: In the probe image: the probe's folder (on PYTHONPATH), and where it writes (the
#: sidecar's scratch volume, the one writable place under a read-only root).
PROBE_IN_IMAGE = "/opt/vigil-bench-probe"
PROBE_OUT_IN_POD = SIDECAR_SCRATCH_DIR
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


def model_deployment(name: str, model: TrainedModel | None, server_image: str) -> dict[str, Any]:
    """A one-replica ModelDeployment; with ``model``, served for real on the real node (from
    the namespace's volume, its model's readiness, a read-only root) and monitored against it."""
    spec: dict[str, Any] = {
        "model": {"name": "wine", "version": "1", "uri": "s3://models/wine/1"},
        "server": {"image": IDLE_SERVER_IMAGE, "protocol": "v2", "port": 8080},
        "replicas": 1,
        "config": {"MLSERVER_PARALLEL_WORKERS": "0"},
        "monitoring": {"window": "60s"},
    }
    if model is not None:
        spec["model"]["uri"] = f"pvc://{CLAIM}/{model.folder.name}"
        spec["server"] |= {
            "image": server_image,
            "readinessPath": "/v2/models/wine/ready",
            "readOnlyRootFilesystem": True,
            "resources": SERVER_RESOURCES,
        }
        spec["monitoring"]["reference"] = {
            "configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}
        }
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def probe_image(vigil: ImageArchive, work: Path) -> ImageArchive:
    """The vigil image plus one layer: the task probe, on PYTHONPATH, writing to the
    sidecar's scratch volume. The sidecar runs unchanged otherwise; its environment
    cannot be set through a ModelDeployment, so the probe comes with the image."""
    source = (PROBE_PATH / "sitecustomize.py").read_bytes()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = PROBE_IN_IMAGE.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            folder = tarfile.TarInfo("/".join(parts[:depth]))
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
        info = tarfile.TarInfo(f"{PROBE_IN_IMAGE.strip('/')}/sitecustomize.py")
        info.size, info.mode = len(source), 0o644
        tar.addfile(info, io.BytesIO(source))
    layer_bytes = layer.getvalue()
    layer_digest = hashlib.sha256(layer_bytes).hexdigest()
    ref = f"vigil.local/vigil-soak-probe:{vigil.tag[:24]}-{layer_digest[:12]}"
    path = work / "vigil-soak-probe.tar"
    with tarfile.open(vigil.path) as original, tarfile.open(path, "w") as derived:
        (entry,) = json.load(original.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(original.extractfile(entry["Config"]))  # type: ignore[arg-type]
        for member in original.getmembers():
            if member.isfile() and member.name not in ("manifest.json", entry["Config"]):
                derived.addfile(member, original.extractfile(member))
            elif not member.isfile() and member.name != "manifest.json":
                derived.addfile(member)
        config["rootfs"]["diff_ids"].append(f"sha256:{layer_digest}")
        config.setdefault("history", []).append({"created_by": "bench/soak: the task probe"})
        settings = config.setdefault("config", {})
        settings["Env"] = [
            *settings.get("Env", []),
            f"PYTHONPATH={PROBE_IN_IMAGE}",
            f"{PROBE_DIR_ENV}={PROBE_OUT_IN_POD}",
        ]
        blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        config_name = f"{hashlib.sha256(blob).hexdigest()}.json"
        layer_name = f"{layer_digest}/layer.tar"
        manifest = [
            {"Config": config_name, "RepoTags": [ref], "Layers": [*entry["Layers"], layer_name]}
        ]
        for name, data in (
            (config_name, blob),
            (layer_name, layer_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            derived.addfile(info, io.BytesIO(data))
    return ImageArchive("vigil-soak-probe", ref, path)


def pod_processes(uid: str, command: str) -> list[int]:
    """Pids of this machine's processes in pod ``uid``'s cgroups whose command line holds
    ``command`` (the real node's containers share the machine's process table)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if f"pod{uid}" not in (entry / "cgroup").read_text():
                continue
            if command.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return sorted(found)


def container_pid(pid: int) -> int:
    """The pid ``pid`` has in its container's pid namespace (the probe names files by it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return pid


class Traffic:
    """Requests at a fixed rate to one model's Service (v2 protocol), in a thread of its own."""

    def __init__(self, url: str, X: np.ndarray, rate: float, shift: dict[int, float], seed: int):
        self.url = url
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
                f"{self.url}/v2/models/wine/infer",
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


def ready_over_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/models/wine/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def probe(folder: Path, pid: int) -> dict[str, Any]:
    try:
        record = json.loads((folder / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(record)


def sample_process(pid: int | None, folder: Path | None = None) -> dict[str, Any]:
    """``folder``: where the probe writes, seen from here (None: a container's own)."""
    stat = proc_sample(pid) if pid is not None else None
    if pid is None or stat is None:
        return {"alive": False}
    if folder is None:
        found = probe(Path(f"/proc/{pid}/root{PROBE_OUT_IN_POD}"), container_pid(pid))
    else:
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
    async with Admin(cluster) as admin:
        await admin.create_namespace(IDLE)
    client = cluster.client()
    # The live pods on the real node (PodSecurity restricted), their models on a volume.
    client.apply(real_node_namespace(LIVE))
    folder = volume_dir(cluster, LIVE)
    client.apply(local_volume(CLAIM, folder, namespace=LIVE))
    log("training the wine model (MLServer folder and reference profile) into the volume")
    model = train_wine(folder / "wine")
    async with Admin(cluster) as admin:
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


async def create_models(cluster: BenchCluster, model: TrainedModel, server_image: str) -> None:
    async with Admin(cluster) as admin:
        await admin.create_all(
            f"/apis/vigil.dev/v1alpha1/namespaces/{LIVE}/modeldeployments",
            [model_deployment(f"live-{i}", model, server_image) for i in range(LIVE_COUNT)],
        )
        await admin.create_all(
            f"/apis/vigil.dev/v1alpha1/namespaces/{IDLE}/modeldeployments",
            [
                model_deployment(f"idle-{i:03d}", None, server_image)
                for i in range(TOTAL - LIVE_COUNT)
            ],
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


async def service_urls(cluster: BenchCluster) -> dict[str, str]:
    """The live models' Services: name -> ``http://<clusterIP>:<port>``."""
    async with Admin(cluster) as admin:
        services = await admin.items(f"/api/v1/namespaces/{LIVE}/services")
    return {
        s["metadata"]["name"]: f"http://{s['spec']['clusterIP']}:{s['spec']['ports'][0]['port']}"
        for s in services
        if s["metadata"]["name"].startswith("live-") and s["spec"].get("clusterIP")
    }


async def live_pods(cluster: BenchCluster) -> dict[str, str]:
    """The live models' running pods: ModelDeployment name -> pod uid."""
    async with Admin(cluster) as admin:
        pods = await admin.items(f"/api/v1/namespaces/{LIVE}/pods")
    return {
        p["metadata"]["labels"]["vigil.dev/model-deployment"]: p["metadata"]["uid"]
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    }


def pids(pods: dict[str, str], command: str) -> dict[str, int | None]:
    """Per ModelDeployment, the first (lowest) pid running ``command`` in its pod."""
    return {name: next(iter(pod_processes(uid, command)), None) for name, uid in pods.items()}


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
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "last-run.json", help="where the record goes"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-soak-"))
    work.chmod(0o755)  # the pods' non-root users read the model volume below it
    probe_dir = work / "probe"
    probe_dir.mkdir()
    cluster = BenchCluster(
        state_dir=work / "cluster", port_base=args.port_base, nodes=1, log=log, real_node=True
    )
    operator: OperatorRunner | None = None
    traffic: list[Traffic] = []
    try:
        cluster.up()
        images = ensure_images(["vigil", "mlserver-sklearn"], log)
        sidecar = probe_image(images["vigil"], work)
        server_image = images["mlserver-sklearn"].ref
        cluster.node().load_images([sidecar, images["mlserver-sklearn"]])
        kubeconfig, model = asyncio.run(setup(cluster, work))
        operator = OperatorRunner(
            kubeconfig,
            [LIVE, IDLE],
            work / "operator.log",
            extra_args=("--health-interval", str(HEALTH_INTERVAL)),
            env={"PYTHONPATH": str(PROBE_PATH), PROBE_DIR_ENV: str(probe_dir)},
            sidecar_image=sidecar.ref,
        )
        operator.start()
        asyncio.run(create_models(cluster, model, server_image))
        log(f"created {TOTAL} ModelDeployments; waiting for the live models behind their Services")
        urls = wait(
            lambda: (
                (found := asyncio.run(service_urls(cluster))) and len(found) == LIVE_COUNT and found
            ),
            300,
            "the live models' Services",
        )
        wait(lambda: all(ready_over_http(url) for url in urls.values()), 300, "the models ready")
        pods = wait(
            lambda: (
                (found := asyncio.run(live_pods(cluster))) and len(found) == LIVE_COUNT and found
            ),
            60,
            "the live pods running",
        )
        for index, (_name, url) in enumerate(sorted(urls.items())):
            shift = {0: 2.0, 6: 2.0} if index == LIVE_COUNT - 1 else {}
            traffic.append(Traffic(url, model.X, RATE_PER_MODEL, shift, seed=index).start())
        log(f"traffic: {RATE_PER_MODEL:g} requests/s to each of {sorted(urls)}; soak starts")
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
                    name: sample_process(pid)
                    for name, pid in sorted(pids(pods, "vigil-sidecar").items())
                },
                "servers_rss_mib": {
                    name: round((sample.rss_kib if sample else 0) / 1024, 1)
                    for name, pid in sorted(pids(pods, "mlserver").items())
                    for sample in [proc_sample(pid) if pid is not None else None]
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
                "live_pods": "real node (containerd), traffic through each Service's ClusterIP",
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
        path = args.out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str))
        log(f"verdicts: {json.dumps(verdicts, indent=1)}")
        log(f"wrote {path}; work folder {work}")
    finally:
        for item in traffic:
            item.stop()
        if operator is not None:
            operator.stop()
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
