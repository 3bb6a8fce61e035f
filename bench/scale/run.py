"""Benchmark: N ModelDeployments to Ready against N plain Deployments to Available.

For each N (default 100, 500, 1000), on a local cluster of its own (real etcd,
kube-apiserver, kube-controller-manager, kube-scheduler; kwok nodes):

1. **Operator phase.** A fresh `vigil-operator` (its ServiceAccount's token
   only, default 30 s health interval) watches namespace ``md-N``. N
   ModelDeployments (2 replicas each) are created at once (32 concurrent
   POSTs) and the clock runs until every one has ``Ready=True``. Operator
   RSS and CPU come from ``/proc/<pid>`` (sampled every second).
2. **Steady state.** Once every ModelDeployment carries the health loop's
   first verdict, one more interval passes, then the operator's requests
   are counted over a window (default 180 s = 6 health cycles) from the
   API server's **audit log** (Metadata level, the operator's user only:
   attributable to the operator alone, per verb and resource), with
   ``apiserver_request_total`` deltas over the same window as a cross-check
   (those also count kcm, the scheduler and kwok's node leases).
3. **Plain phase.** The operator is stopped and ``md-N`` deleted (its pods
   gone); N plain Deployments with the very pod template the operator built
   (copied from one of its Deployments) are created the same way in
   ``plain-N`` and the clock runs until kube-controller-manager reports
   every one Available with 2 ready replicas.

4. **Plain with Services** (``--with-services``). The same, in
   ``plain-svc-N``, with a ClusterIP Service per Deployment (the operator's
   own Service spec, selecting that Deployment's pods only): what a user
   would apply by hand to serve N models without Vigil.

ratio = operator phase seconds / plain phase seconds, both in the same run
(and, with ``--with-services``, ratio_with_services against phase 4).

No model pod runs a process (kwok pods): the health loop's direct scrapes of
the pod IPs are refused at once, every ModelDeployment gets
``MetricsAvailable=False`` (verdict ``MetricsUnavailable``) in the first
cycle, and later cycles write nothing (see bench/README.md, "Scale").

Usage: .venv/bin/python bench/scale/run.py [--sizes 100,500,1000] [--window 120] [--ramp-only]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kit import (
    MLSERVER_IMAGE,
    Admin,
    BenchCluster,
    LoadWatch,
    OperatorRunner,
    Sampler,
    audit_requests,
    cluster_versions,
    cpu_delta,
    delta,
    describe_requests,
    is_available,
    is_ready,
    machine,
    stages,
    utc_now,
)

PORT_BASE = 26800
REPLICAS = 2
HEALTH_INTERVAL = 30.0
RESULTS = Path(__file__).resolve().parent / "results"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def model_deployment(index: int) -> dict[str, Any]:
    """manifests/examples/new-model.yaml, numbered: what a team would apply (without its
    storage Secret: kwok's pods run no vigil-fetch)."""
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": f"m{index:04d}"},
        "spec": {
            "model": {"name": "wine", "version": "1", "uri": "s3://models/wine/1"},
            "server": {
                "image": MLSERVER_IMAGE,
                "protocol": "v2",
                "port": 8080,
                "resources": {
                    "requests": {"cpu": "250m", "memory": "512Mi"},
                    "limits": {"memory": "1Gi"},
                },
            },
            "replicas": REPLICAS,
            "config": {"MLSERVER_PARALLEL_WORKERS": "0"},
        },
    }


#: The pod label that pairs a plain Deployment with its own Service (phase 4).
BENCH_LABEL = "bench.vigil.dev/index"


def plain_service(template: dict[str, Any], index: int) -> dict[str, Any]:
    """The operator's Service spec for plain Deployment ``index``: its pods only."""
    spec = {
        key: value
        for key, value in copy.deepcopy(template["spec"]).items()
        if key in ("ports", "type", "sessionAffinity")
    }
    spec["selector"] = {BENCH_LABEL: str(index)}
    metadata = {"name": f"d{index:04d}"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def plain_deployment(
    template: dict[str, Any], index: int, own_label: bool = False
) -> dict[str, Any]:
    """A Deployment with the operator's pod template and spec, without an owner."""
    spec = copy.deepcopy(template["spec"])
    if own_label:
        spec["template"]["metadata"].setdefault("labels", {})[BENCH_LABEL] = str(index)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"d{index:04d}",
            "labels": dict(template["metadata"].get("labels") or {}),
        },
        "spec": spec,
    }


async def wait_all(
    admin: Admin, path: str, count: int, done: Any, timeout: float
) -> tuple[float, list[tuple[float, int]]]:
    """Poll the list until ``count`` items satisfy ``done``; returns the moment and progress."""
    progress: list[tuple[float, int]] = [(time.monotonic(), 0)]
    deadline = time.monotonic() + timeout
    # Every list costs the API server as much as the objects weigh: poll less often
    # for larger N (1 s at 100, 2 s at 500, 4 s at 1000), from the watch cache.
    period = max(1.0, count / 250)
    while time.monotonic() < deadline:
        try:
            items = await admin.items(path + "?resourceVersion=0")
        except RuntimeError as error:  # an overloaded API server answers 504: ask again
            log(f"polling {path}: {str(error)[:120]}")
            await asyncio.sleep(period)
            continue
        finished = sum(1 for item in items if done(item))
        now = time.monotonic()
        progress.append((now, finished))
        if finished >= count:
            return now, progress
        await asyncio.sleep(period)
    raise RuntimeError(f"{path}: only {progress[-1][1]}/{count} done after {timeout:.0f}s")


def operator_figures(operator: OperatorRunner) -> list[str]:
    """The operator's own counters (reconciles by outcome, writes, health cycles)."""
    return [
        line
        for line in operator.metrics_text().splitlines()
        if line.startswith(
            (
                "vigil_operator_reconciles_total",
                "vigil_operator_writes_total",
                "vigil_health_cycle_seconds_count",
                "vigil_health_cycle_seconds_sum",
                "vigil_health_scrape_failures_total",
            )
        )
    ]


def cpu_between(sampler: Sampler, start: float, end: float) -> float:
    inside = [s for s in sampler.samples if start <= s.at <= end]
    if len(inside) < 2:
        return 0.0
    return inside[-1].cpu_seconds - inside[0].cpu_seconds


#: apiserver_request_total's verbs that write (server-side apply is counted as APPLY).
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def api_server_work(
    before: Counter[tuple[str, str, str]], after: Counter[tuple[str, str, str]], count: int
) -> dict[str, Any]:
    """What every client asked of the API server during a ramp: writes per object, by kind.

    Why: the two phases share a two-core machine with the control plane, so
    the writes each one causes (the operator's, and kube-controller-manager's
    and kwok's in answer) are what their times are made of.
    """
    requests = delta(after, before)
    writes = {key: value for key, value in requests.items() if key.split()[0] in WRITE_VERBS}
    return {
        "writes": sum(writes.values()),
        "writes_per_object": round(sum(writes.values()) / count, 2),
        "writes_by_kind": writes,
        "reads": sum(v for k, v in requests.items() if k not in writes),
    }


async def operator_phase(
    cluster: BenchCluster,
    admin: Admin,
    kubeconfig: str,
    count: int,
    window: float,
    logs: Path,
    ramp_only: bool = False,
    steady_state: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    namespace = f"md-{count}"
    md_path = f"/apis/vigil.dev/v1alpha1/namespaces/{namespace}/modeldeployments"
    await admin.create_namespace(namespace)
    operator = OperatorRunner(
        kubeconfig,
        [namespace],
        logs / f"operator-{count}.log",
        extra_args=("--health-interval", str(HEALTH_INTERVAL)),
    )
    operator.start()
    sampler = Sampler(operator.pid).start()
    try:
        await asyncio.sleep(3)  # the watches are listed
        idle = sampler.samples[-1]
        log(f"N={count}: operator idle RSS {idle.rss_kib / 1024:.1f} MiB; creating {count} MDs")
        ramp_totals_before = await admin.request_totals()
        cpu_before = cluster.component_cpu()
        t0, t0_wall = time.monotonic(), utc_now()
        await admin.create_all(md_path, [model_deployment(i) for i in range(count)])
        created = time.monotonic()
        ready_at, progress = await wait_all(admin, md_path, count, is_ready, timeout=3600)
        ready_wall = utc_now()
        control_plane_cpu = cpu_delta(cpu_before, cluster.component_cpu())
        deployments = await admin.items(f"/apis/apps/v1/namespaces/{namespace}/deployments")
        ramp_stages = stages(t0_wall, deployments, await admin.items(md_path))
        ramp_work = api_server_work(ramp_totals_before, await admin.request_totals(), count)
        seconds = ready_at - t0
        await asyncio.sleep(2)  # the audit backend flushes
        ramp_requests = audit_requests(cluster.audit_log, t0_wall, ready_wall)
        log(
            f"N={count}: created in {created - t0:.1f}s, all Ready in {seconds:.1f}s; "
            f"operator CPU {cpu_between(sampler, t0, ready_at):.1f}s, "
            f"peak RSS {sampler.peak_rss_mib():.1f} MiB"
        )
        ramp = {
            "seconds": round(seconds, 2),
            "create_seconds": round(created - t0, 2),
            "progress": [(round(at - t0, 1), done) for at, done in progress],
            "cpu_seconds": round(cpu_between(sampler, t0, ready_at), 2),
            "control_plane_cpu_seconds": control_plane_cpu,
            "stages": ramp_stages,
            "rss_idle_mib": round(idle.rss_kib / 1024, 1),
            "rss_peak_mib_ramp": round(sampler.peak_rss_mib(t0), 1),
            "operator_requests": len(ramp_requests),
            "operator_requests_per_md": round(len(ramp_requests) / count, 2),
            "operator_requests_by_kind": describe_requests(ramp_requests),
            "api_server": ramp_work,
            "operator_metrics": operator_figures(operator),
        }
        log(
            f"N={count}: {len(ramp_requests)} operator requests until all Ready "
            f"({len(ramp_requests) / count:.1f} per MD): {ramp['operator_requests_by_kind']}; "
            f"API server writes (every client) {ramp_work['writes_per_object']} per MD: "
            f"{ramp_work['writes_by_kind']}"
        )
        log(f"N={count}: control-plane CPU {control_plane_cpu}; stages {ramp_stages}")
        if ramp_only:
            return {"ramp": ramp}, {}
        if steady_state:
            steady = await steady_phase(admin, md_path, count, window, cluster, sampler, t0)
            steady["operator_metrics"] = operator_figures(operator)
        services = await admin.items(f"/api/v1/namespaces/{namespace}/services")
        template = {"deployment": deployments[0], "service": services[0]}
    finally:
        sampler.stop()
        operator.stop()
    # The operator is stopped first (no finalizers: nothing waits for it); the plain
    # phase starts on a cluster without these pods and without their deletion running.
    deleted = await admin.delete_namespace(namespace)
    log(f"N={count}: namespace {namespace} deleted in {deleted:.1f}s")
    return {"ramp": ramp, **({"steady": steady} if steady_state else {})}, template


async def steady_phase(
    admin: Admin,
    md_path: str,
    count: int,
    window: float,
    cluster: BenchCluster,
    sampler: Sampler,
    t0: float,
) -> dict[str, Any]:
    """The operator's requests, CPU and memory with nothing changing."""
    # Steady state: every MD carries the first health verdict, then one more interval.
    await wait_all(
        admin,
        md_path,
        count,
        lambda md: bool((md.get("status") or {}).get("health")),
        timeout=600,
    )
    health_written = time.monotonic()
    log(f"N={count}: first health verdicts written {health_written - t0:.1f}s after start")
    await asyncio.sleep(HEALTH_INTERVAL + 15)
    start_wall, start_mono = utc_now(), time.monotonic()
    totals_before = await admin.request_totals()
    await asyncio.sleep(window)
    totals_after = await admin.request_totals()
    end_wall, end_mono = utc_now(), time.monotonic()
    await asyncio.sleep(2)  # the audit backend flushes
    requests = audit_requests(cluster.audit_log, start_wall, end_wall)
    minutes = (end_mono - start_mono) / 60
    steady_cpu = cpu_between(sampler, start_mono, end_mono)
    last = sampler.samples[-1]
    md_sample = (await admin.items(md_path))[0]
    steady = {
        "window_seconds": round(end_mono - start_mono, 1),
        "operator_requests": len(requests),
        "calls_per_md_per_minute": round(len(requests) / count / minutes, 4),
        "operator_requests_by_kind": describe_requests(requests),
        "apiserver_request_total_delta": delta(totals_after, totals_before),
        "cpu_percent": round(100 * steady_cpu / (end_mono - start_mono), 2),
        "rss_mib": round(last.rss_kib / 1024, 1),
        "rss_peak_mib": round(sampler.peak_rss_mib(), 1),
        "open_fds": last.fds,
        "threads": last.threads,
        "health_sample": (md_sample.get("status") or {}).get("health"),
        "conditions_sample": [
            {k: c.get(k) for k in ("type", "status", "reason")}
            for c in (md_sample.get("status") or {}).get("conditions") or []
        ],
    }
    log(
        f"N={count}: steady state over {steady['window_seconds']}s: "
        f"{len(requests)} operator requests = {steady['calls_per_md_per_minute']} per MD per "
        f"minute ({steady['operator_requests_by_kind']}); CPU {steady['cpu_percent']}%, "
        f"RSS {steady['rss_mib']} MiB"
    )
    return steady


async def plain_phase(
    cluster: BenchCluster,
    admin: Admin,
    count: int,
    template: dict[str, Any],
    last: bool,
    with_services: bool = False,
) -> dict[str, Any]:
    namespace = f"plain-svc-{count}" if with_services else f"plain-{count}"
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    await admin.create_namespace(namespace)
    what = "plain Deployments, each with a Service" if with_services else "plain Deployments"
    log(f"N={count}: creating {count} {what}")
    totals_before = await admin.request_totals()
    cpu_before = cluster.component_cpu()
    t0, t0_wall = time.monotonic(), utc_now()
    deployments = [
        plain_deployment(template["deployment"], i, own_label=with_services) for i in range(count)
    ]
    creations = [admin.create_all(path, deployments)]
    if with_services:
        services = [plain_service(template["service"], i) for i in range(count)]
        creations.append(admin.create_all(f"/api/v1/namespaces/{namespace}/services", services))
    await asyncio.gather(*creations)
    created = time.monotonic()
    ready_at, progress = await wait_all(
        admin, path, count, lambda d: is_available(d, REPLICAS), timeout=3600
    )
    control_plane_cpu = cpu_delta(cpu_before, cluster.component_cpu())
    plain_stages = stages(t0_wall, await admin.items(path))
    seconds = ready_at - t0
    work = api_server_work(totals_before, await admin.request_totals(), count)
    log(
        f"N={count}: plain created in {created - t0:.1f}s, all Available in {seconds:.1f}s; "
        f"API server writes {work['writes_per_object']} per Deployment; "
        f"control-plane CPU {control_plane_cpu}; stages {plain_stages}"
    )
    if not last:  # the next size starts on an empty cluster
        deleted = await admin.delete_namespace(namespace)
        log(f"N={count}: namespace {namespace} deleted in {deleted:.1f}s")
    return {
        "seconds": round(seconds, 2),
        "create_seconds": round(created - t0, 2),
        "progress": [(round(at - t0, 1), done) for at, done in progress],
        "api_server": work,
        "control_plane_cpu_seconds": control_plane_cpu,
        "stages": plain_stages,
    }


async def run(
    cluster: BenchCluster,
    sizes: list[int],
    window: float,
    logs: Path,
    ramp_only: bool,
    steady_state: bool = True,
    with_services: bool = False,
) -> dict[str, Any]:
    kubeconfig = cluster.install_vigil()
    results: dict[str, Any] = {}
    async with Admin(cluster) as admin:
        for count in sizes:
            load = LoadWatch().start()
            started = utc_now()
            operator, template = await operator_phase(
                cluster, admin, kubeconfig, count, window, logs, ramp_only, steady_state
            )
            if ramp_only:  # the operator's side only (A/B of an operator change)
                results[str(count)] = {"operator": operator, "load_average_1m": load.stop()}
                continue
            last = count == sizes[-1]
            plain = await plain_phase(cluster, admin, count, template, last and not with_services)
            ratio = operator["ramp"]["seconds"] / plain["seconds"]
            results[str(count)] = {
                "started": started.isoformat(timespec="seconds"),
                "operator": operator,
                "plain": plain,
                "ratio": round(ratio, 3),
            }
            log(
                f"N={count}: ModelDeployments Ready {operator['ramp']['seconds']:.1f}s, "
                f"plain Deployments Available {plain['seconds']:.1f}s: ratio {ratio:.2f}"
            )
            if with_services:
                served = await plain_phase(
                    cluster, admin, count, template, last, with_services=True
                )
                served_ratio = operator["ramp"]["seconds"] / served["seconds"]
                results[str(count)]["plain_with_services"] = served
                results[str(count)]["ratio_with_services"] = round(served_ratio, 3)
                log(
                    f"N={count}: plain Deployments with Services Available "
                    f"{served['seconds']:.1f}s: ratio {served_ratio:.2f}"
                )
            results[str(count)]["load_average_1m"] = load.stop()
            write(results, partial=True)
    return results


def write(results: dict[str, Any], partial: bool = False, name: str | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    record = {"date": utc_now().isoformat(timespec="seconds"), "machine": machine(), **results}
    path = RESULTS / ("partial.json" if partial else (name or "last-run.json"))
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--window", type=float, default=120.0, help="steady-state seconds")
    parser.add_argument("--nodes", type=int, default=4, help="kwok nodes (1100 pods each)")
    parser.add_argument("--keep", action="store_true", help="leave the bench cluster running")
    parser.add_argument(
        "--ramp-only",
        action="store_true",
        help="only time the ModelDeployments to Ready (no steady state, no plain phase)",
    )
    parser.add_argument(
        "--no-steady",
        action="store_true",
        help="skip the steady-state window (ramps and ratio only)",
    )
    parser.add_argument(
        "--with-services",
        action="store_true",
        help="also time plain Deployments each with a ClusterIP Service (phase 4)",
    )
    parser.add_argument("--out", default=None, help="result file name (default last-run.json)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    state = Path(tempfile.mkdtemp(prefix="vigil-bench-scale-"))
    cluster = BenchCluster(
        state_dir=state / "cluster", port_base=PORT_BASE, nodes=args.nodes, log=log
    )
    try:
        cluster.up()
        versions = cluster_versions(cluster)
        results = asyncio.run(
            run(
                cluster,
                sizes,
                args.window,
                state / "logs",
                args.ramp_only,
                steady_state=not args.no_steady,
                with_services=args.with_services,
            )
        )
        results["versions"] = versions
        results["pod_ips"] = cluster.local_pod_range or "127.x (endpoint controllers fail)"
        path = write(results, name=args.out)
        log(f"wrote {path} (operator logs in {state / 'logs'})")
    finally:
        if not args.keep:
            cluster.down()


if __name__ == "__main__":
    main()
