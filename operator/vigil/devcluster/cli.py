"""``vigil-devcluster up|down|status|kubeconfig|demo``: the local cluster from a shell.

``make cluster-up`` and ``make cluster-down`` call this.
"""

from __future__ import annotations

import argparse
import sys

from vigil.devcluster.cluster import LocalCluster, real_node_wanted
from vigil.devcluster.failures import reporting_failures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from vigil.devcluster.demo import main as demo

        return demo(argv[1:])  # which reports its failures as below
    parser = argparse.ArgumentParser(
        prog="vigil-devcluster",
        description="A real Kubernetes control plane on 127.0.0.1 with kwok nodes and a real "
        "node (containerd; needs root) (no Docker).",
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "kubeconfig", "demo"],
    )
    parser.add_argument("--nodes", type=int, default=2, help="kwok nodes to create (default 2)")
    parser.add_argument(
        "--real-node",
        action=argparse.BooleanOptionalAction,
        default=real_node_wanted(),
        help="also a real node: containerd, kubelet, kube-proxy, CoreDNS "
        "(default: VIGIL_REAL_NODE)",
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(
        nodes=args.nodes, log=lambda line: print(line, flush=True), real_node=args.real_node
    )

    def run() -> int:
        # up and down hold the cluster's lock (LocalCluster.locked), as the tests' and the
        # demo's start do: a cluster-down waits for a cluster-up in progress.
        if args.command == "up":
            kubeconfig = cluster.up()
            print(
                f"\nThe cluster is up. Use it with:\n"
                f"  export KUBECONFIG={kubeconfig}\n"
                f"  {cluster.bin_dir / 'kubectl'} get nodes\n"
                f"Logs: {cluster.logs_dir}\nStop it with: make cluster-down"
            )
        elif args.command == "down":
            cluster.down()
        elif args.command == "status":
            healthy = cluster.is_healthy()
            print(f"{'healthy' if healthy else 'not running'}: {cluster.server}")
            return 0 if healthy else 1
        else:
            print(cluster.kubeconfig)
        return 0

    return reporting_failures("vigil-devcluster", run)


if __name__ == "__main__":
    sys.exit(main())
