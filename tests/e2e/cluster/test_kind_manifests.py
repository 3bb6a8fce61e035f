"""The kind path's in-cluster Prometheus passes server-side dry-run on a real API server."""

from __future__ import annotations

from pathlib import Path

import yaml

from vigil.devcluster import ClusterClient

ROOT = Path(__file__).resolve().parents[3]


def test_kind_prometheus_manifests_pass_server_side_dry_run(cluster: ClusterClient) -> None:
    documents = list(yaml.safe_load_all((ROOT / "hack/kind/prometheus.yaml").read_text()))
    namespace = next(d for d in documents if d["kind"] == "Namespace")
    cluster.apply(yaml.safe_dump(namespace))  # dry-run cannot create into a missing namespace
    rest = yaml.safe_dump_all([d for d in documents if d["kind"] != "Namespace"])
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rest)
    assert "deployment.apps/prometheus created (server dry run)" in result.stdout
    rbac = (ROOT / "manifests/monitoring/prometheus-rbac.yaml").read_text()
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rbac)
