"""Fresh pods against warm ones: does a candidate identical to the stable answer slower?

On the demo's cluster (``make demo``'s setup, reused or started): the demo's
model v1 with 2 replicas and traffic at ``--rate``/s through the Service.
Once warm for ``--warm`` seconds, a tweak (a config change, the same model)
rolls out with one long canary step at 50 % and the default analysis margins.
Every ``--sample`` seconds it scrapes every pod's sidecar latency histogram
(live requests) and reads the step's ``latencyVsStable`` gate from status. It
reports, per sample, P(a new pod's request is slower than an old pod's) on
that interval's requests alone (how it changes with the new pods' age) and
on everything since the step began (what the gate judges), with each side's
median bucket.

    .venv/bin/python bench/realnode/latency_by_age.py [--rate 10] [--warm 60]
        [--canary 300] [--sample 15] [--json out.json]

Leaves the demo's cluster running (``make demo-down`` removes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from vigil.core import metric_names
from vigil.core.stats import rank_effect
from vigil.devcluster import demo
from vigil.devcluster.models import train_wine
from vigil.devcluster.traffic import TrafficGenerator

Histogram = dict[float, float]


def pod_histograms(cluster: Any) -> dict[str, tuple[str, Histogram]]:
    """Pod name -> (revision, cumulative live latency counts by bucket bound)."""
    pods = cluster.get_json(
        "pods", "-n", demo.NAMESPACE, "-l", f"vigil.dev/model-deployment={demo.NAME}"
    )
    found: dict[str, tuple[str, Histogram]] = {}
    for pod in pods.get("items", []):
        ip = pod.get("status", {}).get("podIP")
        if not ip or pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        try:
            with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            continue
        counts: Histogram = {}
        for family in text_string_to_metric_families(text):
            if family.name != metric_names.REQUEST_DURATION:
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("origin") == "live":
                    bound = float(sample.labels["le"])
                    counts[bound] = counts.get(bound, 0.0) + sample.value
        revision = pod["metadata"]["labels"].get("vigil.dev/revision", "")
        found[pod["metadata"]["name"]] = (revision, counts)
    return found


def by_revision(hists: dict[str, tuple[str, Histogram]]) -> dict[str, Histogram]:
    summed: dict[str, Histogram] = {}
    for revision, counts in hists.values():
        into = summed.setdefault(revision, {})
        for bound, value in counts.items():
            into[bound] = into.get(bound, 0.0) + value
    return summed


def per_bucket(cumulative: Histogram) -> list[tuple[float, float]]:
    """(bound, count in that bucket) in bound order, from cumulative counts."""
    out, before = [], 0.0
    for bound in sorted(cumulative):
        out.append((bound, cumulative[bound] - before))
        before = cumulative[bound]
    return out


def minus(now: Histogram, then: Histogram) -> Histogram:
    return {bound: value - then.get(bound, 0.0) for bound, value in now.items()}


def p_slower(candidate: Histogram, stable: Histogram) -> tuple[float | None, float, float]:
    """(P(candidate slower), candidate requests, stable requests) of two cumulative histograms."""
    bounds = sorted(set(candidate) | set(stable))
    c = dict(per_bucket(candidate))
    s = dict(per_bucket(stable))
    effect = rank_effect([c.get(b, 0.0) for b in bounds], [s.get(b, 0.0) for b in bounds])
    if effect is None:
        return None, sum(c.values()), sum(s.values())
    return effect.theta, effect.candidate, effect.stable


def median_bound(cumulative: Histogram) -> float | None:
    buckets = per_bucket(cumulative)
    total = sum(n for _, n in buckets)
    if total <= 0:
        return None
    seen = 0.0
    for bound, n in buckets:
        seen += n
        if seen >= total / 2:
            return bound
    return None


def gate(status: dict[str, Any]) -> dict[str, Any]:
    for item in (status.get("candidate") or {}).get("gates") or []:
        if item.get("name") == "latencyVsStable":
            return dict(item)
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--warm", type=float, default=60.0)
    parser.add_argument("--canary", type=float, default=300.0)
    parser.add_argument("--sample", type=float, default=15.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    play = demo.Demo()
    cluster = play.setup()
    v1 = train_wine(play.dir / "models" / "wine-1", version="1", seed=0)
    play.start_store(cluster)
    play.upload(v1)
    cluster.apply(demo.reference_configmap(v1))

    def deployment(config: dict[str, str]) -> str:
        body = yaml.safe_load(demo.model_deployment(v1, server_image=play.server_image))
        body["spec"]["config"] = config
        rollout = body["spec"]["rollout"]
        rollout["tweak"] = {"steps": [{"canary": {"weight": 50, "duration": f"{args.canary}s"}}]}
        rollout["analysis"] = {"interval": "10s"}  # every other setting its default
        rollout["progressDeadline"] = f"{args.canary + 300}s"
        return str(demo.kube_yaml.dump(body, sort_keys=False))

    cluster.apply(deployment({}))
    play.wait_condition("Ready", "True", 240)
    play._wait(lambda: len(demo.answering_pods(cluster)) == 2, 120, "both pods answering")
    traffic = TrafficGenerator(
        cluster, demo.NAMESPACE, demo.NAME, "wine", v1.X, rate=args.rate, through_service=True
    ).start()
    print(f"warming the stable for {args.warm:.0f}s at {args.rate:g}/s", flush=True)
    time.sleep(args.warm)
    stable = str(play.md()["status"]["stable"]["revision"])
    cluster.apply(deployment({"MLSERVER_LOG_LEVEL": "info"}))
    print(f"tweak applied; stable {stable}", flush=True)

    rows: list[dict[str, Any]] = []
    began: dict[str, Histogram] | None = None
    last: dict[str, Histogram] | None = None
    step_started = None
    deadline = time.monotonic() + args.canary + 240
    while time.monotonic() < deadline:
        status = play.md().get("status", {})
        history = (status.get("history") or [{}])[0]
        candidate = status.get("candidate") or {}
        revision = str(candidate.get("revision") or "")
        if history.get("outcome") in ("Promoted", "RolledBack", "Failed") and history.get(
            "revision"
        ) not in (None, stable):
            print(f"outcome: {history.get('outcome')} {history.get('reason', '')}", flush=True)
            break
        summed = by_revision(pod_histograms(cluster))
        if revision and revision in summed and candidate.get("weight", 0) > 0:
            if began is None:
                began, last, step_started = summed, summed, time.monotonic()
            assert last is not None and step_started is not None
            interval = p_slower(
                minus(summed[revision], last.get(revision, {})),
                minus(summed[stable], last.get(stable, {})),
            )
            since = p_slower(
                minus(summed[revision], began.get(revision, {})),
                minus(summed[stable], began.get(stable, {})),
            )
            found = gate(status)
            row = {
                "t": round(time.monotonic() - step_started, 1),
                "interval_p_slower": interval[0],
                "interval_requests": [interval[1], interval[2]],
                "since_p_slower": since[0],
                "since_requests": [since[1], since[2]],
                "median_bucket": [
                    median_bound(minus(summed[revision], began.get(revision, {}))),
                    median_bound(minus(summed[stable], began.get(stable, {}))),
                ],
                "gate": {k: found.get(k) for k in ("value", "low", "high", "verdict", "samples")},
            }
            rows.append(row)
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            print(
                f"t={row['t']:6.1f}s interval P(slower)={fmt(interval[0])} "
                f"({interval[1]:.0f} vs {interval[2]:.0f}) since step={fmt(since[0])} "
                f"({since[1]:.0f} vs {since[2]:.0f}) medians={row['median_bucket']} "
                f"gate={found.get('verdict')} {found.get('value')} [{found.get('low')}, "
                f"{found.get('high')}]",
                flush=True,
            )
            last = summed
        time.sleep(args.sample)
    stats = traffic.stop()
    print(f"traffic: {stats.sent} sent, {stats.ok} ok, {stats.failed} failed", flush=True)
    if args.json:
        settings = {**vars(args), "json": str(args.json)}
        args.json.write_text(json.dumps({"args": settings, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
