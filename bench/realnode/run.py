"""The real node's times: a cluster with it up, its node Ready, pods applied to Ready.

Runs its own local cluster (ports 27000-27005, addresses 10.170.0.0/16) so
the session's is untouched, and removes it afterwards (down timed too).
Pods are the node tests' busybox httpd under PodSecurity ``restricted``.

    .venv/bin/python bench/realnode/run.py [--pods 5] [--replicas 10]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "e2e" / "cluster"))

from test_real_node import web_pod

from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.node_images import busybox_image

PORT_BASE = 27000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5, help="single pods applied one by one")
    parser.add_argument("--replicas", type=int, default=10, help="Deployment scaled 0 -> N")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rn-bench-") as work:
        cluster = LocalCluster(
            state_dir=Path(work) / "cluster",
            port_base=PORT_BASE,
            nodes=1,
            real_node=True,
            log=lines.append,
        )
        started = time.monotonic()
        try:
            cluster.up()
            up_seconds = time.monotonic() - started
            node_line = next(line for line in lines if "real node" in line)
            node_seconds = float(re.search(r"Ready in ([\d.]+)s", node_line).group(1))  # type: ignore[union-attr]
            client = cluster.client()
            archive = busybox_image()
            started = time.monotonic()
            cluster.node().load_images([archive])
            import_seconds = time.monotonic() - started
            client.kubectl("create", "namespace", "bench")
            singles = []
            for index in range(args.pods):
                manifest = json.loads(web_pod(archive.ref))
                manifest["metadata"]["name"] = f"web-{index}"
                started = time.monotonic()
                client.apply(json.dumps(manifest), namespace="bench")
                client.kubectl(
                    "wait", f"pod/web-{index}", "-n", "bench", "--for=condition=Ready",
                    "--timeout=120s",
                )  # fmt: skip
                singles.append(time.monotonic() - started)
            pod = json.loads(web_pod(archive.ref))
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "many"},
                "spec": {
                    "replicas": args.replicas,
                    "selector": {"matchLabels": {"app": "many"}},
                    "template": {"metadata": {"labels": {"app": "many"}}, "spec": pod["spec"]},
                },
            }
            started = time.monotonic()
            client.apply(json.dumps(deployment), namespace="bench")
            client.kubectl("rollout", "status", "deployment/many", "-n", "bench", "--timeout=300s")
            many_seconds = time.monotonic() - started
        finally:
            started = time.monotonic()
            cluster.down()
            down_seconds = time.monotonic() - started
    print(f"cluster up (control plane + real node): {up_seconds:.1f} s")
    print(f"real node start to Ready: {node_seconds:.1f} s")
    print(f"busybox image import: {import_seconds:.2f} s")
    print(
        f"pod apply to Ready, {args.pods} single pods: median {statistics.median(singles):.2f} s"
        f" (min {min(singles):.2f}, max {max(singles):.2f})"
    )
    print(f"Deployment of {args.replicas} replicas apply to all Ready: {many_seconds:.1f} s")
    print(f"cluster down (nothing left): {down_seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
