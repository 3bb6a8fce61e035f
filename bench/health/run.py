"""Benchmark: one health evaluation cycle for 10, 100 and 500 ModelDeployments.

Measures, in one run, for each N (one pod per ModelDeployment):

- direct source: wall time of one scrape cycle over N pods (real HTTP to N
  loopback addresses, each serving a wine-sized sidecar exposition of ~300
  series) plus the pure evaluation of every revision; target: at most a
  third of the default 30 s interval at N = 500;
- prometheus source: the number of queries per cycle (must not grow with N)
  and the cycle's wall time, against a real Prometheus scraping the same N
  endpoints.

The series are synthetic (the issue allows it for the scale part): the
exposition is produced by prometheus_client with the sidecar's metric
names, labels and a wine-like reference (13 features x 12 slots, 3 classes).

Usage: .venv/bin/python bench/health/run.py [--sizes 10,100,500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import multiprocessing.synchronize
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from vigil.common import kube_yaml
from vigil.core.health import HealthPolicy, evaluate
from vigil.core.window import FAMILY_LABELS, SERVED_REVISION_FAMILIES
from vigil.devcluster.cluster import build_binaries
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.prometheus import PrometheusSource, family_query, pods_query
from vigil.profile import build_profile
from vigil.sidecar.metrics import BASE_LABELS, LATENCY_BUCKETS

FEATURES = [f"feature_{i}" for i in range(13)]
INTERVAL_SECONDS = 30.0
BASE = list(BASE_LABELS)


def exposition(revision: str, scale: float) -> bytes:
    """A sidecar-like exposition for one pod (counts grow with ``scale``)."""
    registry = CollectorRegistry()
    labels = ["wine", "1", revision, "stable"]
    requests = Counter(
        "vigil_requests", "", [*BASE, "endpoint", "outcome", "code"], registry=registry
    )
    requests.labels(*labels, "infer", "success", "200").inc(1000 * scale)
    requests.labels(*labels, "infer", "model_error", "500").inc(2 * scale)
    histogram = Histogram(
        "vigil_request_duration_seconds",
        "",
        [*BASE, "endpoint"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    for value in (0.004, 0.02, 0.04, 0.09):
        histogram.labels(*labels, "infer").observe(value)
    bins = Counter("vigil_feature_bin", "", [*BASE, "feature", "bin"], registry=registry)
    missing = Counter("vigil_feature_missing", "", [*BASE, "feature"], registry=registry)
    out = Counter("vigil_feature_out_of_range", "", [*BASE, "feature"], registry=registry)
    for feature in FEATURES:
        for slot in range(12):
            bins.labels(*labels, feature, str(slot)).inc(scale * (10 + slot))
        missing.labels(*labels, feature).inc(0)
        out.labels(*labels, feature).inc(scale)
    classes = Counter("vigil_prediction_class", "", [*BASE, "class"], registry=registry)
    for label in ("0", "1", "2", "__other__"):
        classes.labels(*labels, label).inc(300 * scale)
    Counter("vigil_input_rows", "", BASE, registry=registry).labels(*labels).inc(1002 * scale)
    Counter("vigil_predictions", "", BASE, registry=registry).labels(*labels).inc(1002 * scale)
    Gauge("vigil_prediction_value_sum", "", BASE, registry=registry).labels(*labels).set(900)
    Gauge("vigil_prediction_value_squares_sum", "", BASE, registry=registry).labels(*labels).set(
        1500
    )
    Gauge("vigil_sidecar_start_time_seconds", "", BASE, registry=registry).labels(*labels).set(1)
    Gauge("vigil_model_info", "", [*BASE, "protocol"], registry=registry).labels(*labels, "v2").set(
        1
    )
    return generate_latest(registry)


def pod_ip(index: int) -> str:
    return f"127.101.{index // 250}.{index % 250 + 1}"


def _serve_forever(count: int, port: int, ready: multiprocessing.synchronize.Event) -> None:
    """The fake pods, in a process of their own so they do not load the measured one.

    Each body is rendered once into (line prefix, value) pairs; counters are
    scaled by the time since start at every scrape, so they keep growing.
    """
    templates = []
    for i in range(count):
        lines = []
        for line in exposition(f"rev{i}", 1.0).decode().splitlines():
            if line.startswith("#") or "start_time" in line or "_info" in line:
                lines.append((line, None))
            else:
                prefix, value = line.rsplit(" ", 1)
                lines.append((prefix, float(value)))
        templates.append(lines)
    started = time.monotonic()

    async def metrics(request: web.Request) -> web.Response:
        host = request.transport.get_extra_info("sockname")[0]  # type: ignore[union-attr]
        octets = host.split(".")
        index = int(octets[2]) * 250 + int(octets[3]) - 1
        scale = 1.0 + (time.monotonic() - started) / 10.0
        body = "\n".join(
            prefix if value is None else f"{prefix} {value * scale}"
            for prefix, value in templates[index]
        )
        return web.Response(text=body + "\n", content_type="text/plain")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for index in range(count):
            await web.TCPSite(runner, pod_ip(index), port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_pods(count: int) -> tuple[multiprocessing.Process, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=_serve_forever, args=(count, port, ready), daemon=True)
    process.start()
    if not ready.wait(timeout=120):
        raise RuntimeError("the fake pods did not start")
    return process, port


def targets(count: int, port: int) -> list[RevisionTarget]:
    return [
        RevisionTarget(
            f"ns{i % 10}", f"md{i}", f"rev{i}", 300.0, (PodTarget(f"md{i}-pod", pod_ip(i), port),)
        )
        for i in range(count)
    ]


async def direct_cycle(count: int, port: int, reference) -> dict[str, float]:
    source = DirectSource()
    wanted = targets(count, port)
    policy = HealthPolicy()
    try:
        await source.collect(wanted, now=time.time())  # baseline scrapes
        await asyncio.sleep(5.0)  # past the fake pods' switch to larger counts
        t0 = time.perf_counter()
        result = await source.collect(wanted, now=time.time())
        t1 = time.perf_counter()
        reports = [evaluate(result.windows.get(t.key), reference, policy) for t in wanted]
        t2 = time.perf_counter()
    finally:
        await source.close()
    assert not result.errors, list(result.errors.items())[:3]
    assert all(r.requests > 0 for r in reports)
    return {
        "scrape_seconds": t1 - t0,
        "evaluate_seconds": t2 - t1,
        "cycle_seconds": t2 - t0,
        "pods": float(count),
        "share_of_interval": (t2 - t0) / INTERVAL_SECONDS,
        "failures": float(result.scrape_failures),
    }


def start_prometheus(count: int, port: int, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = build_binaries() / "prometheus"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        prom_port = sock.getsockname()[1]
    config = {
        "global": {"scrape_interval": "2s"},
        "scrape_configs": [
            {
                "job_name": "vigil-sidecars",
                "static_configs": [
                    {
                        "targets": [f"{pod_ip(i)}:{port}"],
                        "labels": {"namespace": f"ns{i % 10}", "model_deployment": f"md{i}"},
                    }
                    for i in range(count)
                ],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(kube_yaml.dump(config))
    process = subprocess.Popen(
        [
            str(binary),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
    )
    return process, f"http://127.0.0.1:{prom_port}"


async def prometheus_cycle(count: int, port: int, url: str) -> dict[str, float]:
    source = PrometheusSource(url)
    wanted = targets(count, port)
    try:
        deadline = time.monotonic() + 90
        while True:  # wait until every target has been scraped at least twice
            result = await source.collect(wanted, now=time.time())
            if len(result.windows) == count and all(
                w.requests > 0 for w in result.windows.values()
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus has {len(result.windows)}/{count} revisions")
            await asyncio.sleep(2)
        # Alternated, three each: the source's one query against the baseline, a query per
        # family sent at once (the source before stop 53), on the same Prometheus.
        ones, per_family = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            result = await source.collect(wanted, now=time.time())
            ones.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await per_family_read(source, wanted[0], time.time())
            per_family.append(time.perf_counter() - t0)
    finally:
        await source.close()
    return {
        "queries": float(result.queries),
        "cycle_seconds": float(np.median(ones)),
        "per_family_cycle_seconds": float(np.median(per_family)),
        "revisions": float(len(result.windows)),
    }


async def per_family_read(source: PrometheusSource, target: RevisionTarget, now: float) -> None:
    """The baseline: every family's query and the pods', sent at once."""
    queries = [
        family_query(
            family,
            target.labels_window if family in SERVED_REVISION_FAMILIES else target.window_seconds,
        )
        for family in FAMILY_LABELS
    ] + [pods_query()]
    await asyncio.gather(*(source.query(query, now) for query in queries))


async def main_async(sizes: list[int]) -> dict[str, object]:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2000, len(FEATURES)))
    reference = build_profile(data, feature_names=FEATURES, predictions=rng.integers(0, 3, 2000))
    results: dict[str, object] = {}
    for count in sizes:
        server, port = serve_pods(count)
        try:
            direct = await direct_cycle(count, port, reference)
            with tempfile.TemporaryDirectory() as folder:
                process, url = start_prometheus(count, port, Path(folder))
                try:
                    prom = await prometheus_cycle(count, port, url)
                finally:
                    process.terminate()
                    process.wait(timeout=20)
        finally:
            server.terminate()
            server.join(timeout=10)
        results[str(count)] = {"direct": direct, "prometheus": prom}
        print(
            f"N={count:4d}  direct: cycle {direct['cycle_seconds']:.3f}s "
            f"(scrape {direct['scrape_seconds']:.3f}s, evaluate {direct['evaluate_seconds']:.3f}s,"
            f" {direct['share_of_interval']:.1%} of 30s)  prometheus: "
            f"{prom['queries']:.0f} queries, {prom['cycle_seconds']:.3f}s "
            f"(a query per family: {prom['per_family_cycle_seconds']:.3f}s)",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,500")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = asyncio.run(main_async(sizes))
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {shutil.os.cpu_count()} cores",  # type: ignore[attr-defined]
        "python": platform.python_version(),
        "results": results,
    }
    out = Path(__file__).with_name("last-run.json")
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    assert all(
        math.isfinite(v)
        for r in results.values()
        for s in r.values()  # type: ignore[union-attr]
        for v in s.values()
    )


if __name__ == "__main__":
    main()
