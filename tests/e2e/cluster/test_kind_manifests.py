"""The kind path's manifests pass server-side dry-run on a real API server.

kind itself cannot run here (no Docker engine): what can be checked is that
everything hack/kind/up.sh applies is accepted by an API server (the
in-cluster Prometheus, its discovery RBAC, the kind overlay of the
operator), and that e2e.sh keeps the installed operator out of the suite's
way (tests/unit/packaging checks that the scripts parse).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient

ROOT = Path(__file__).resolve().parents[3]
KIND = ROOT / "hack" / "kind"


def test_kind_prometheus_manifests_pass_server_side_dry_run(cluster: ClusterClient) -> None:
    documents = list(yaml.safe_load_all((KIND / "prometheus.yaml").read_text()))
    namespace = next(d for d in documents if d["kind"] == "Namespace")
    cluster.apply(kube_yaml.dump(namespace))  # dry-run cannot create into a missing namespace
    rest = kube_yaml.dump_all([d for d in documents if d["kind"] != "Namespace"])
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rest)
    assert "deployment.apps/prometheus created (server dry run)" in result.stdout
    assert "Warning" not in result.stderr, result.stderr
    rbac = (ROOT / "manifests/monitoring/prometheus-rbac.yaml").read_text()
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rbac)


def test_kind_overlay_passes_server_side_dry_run_without_prometheus_operator_crds(
    cluster: ClusterClient, vigil_installed: str
) -> None:
    """What up.sh applies: no kind the cluster lacks (no PodMonitor), no PodSecurity warning."""
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-k", str(ROOT / "manifests" / "overlays" / "kind")
    )
    assert "Warning" not in result.stderr, result.stderr
    assert "deployment.apps/vigil-operator" in result.stdout
    assert "podmonitor" not in result.stdout.lower()


def test_kind_e2e_keeps_the_installed_operator_out_of_the_suite() -> None:
    """The suite starts its own operator per test namespace; a second one must not act there."""
    text = (KIND / "e2e.sh").read_text()
    assert re.search(r"kubectl .*scale .*deployment/vigil-operator --replicas=0", text)
    assert re.search(r"trap .*EXIT", text), "the installed operator must be restored on exit"


def test_kind_cluster_config_has_workers_and_port_mappings() -> None:
    config = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2
    (control_plane,) = [n for n in config["nodes"] if n["role"] == "control-plane"]
    mappings = {m["containerPort"]: m["hostPort"] for m in control_plane["extraPortMappings"]}
    prometheus = yaml.safe_load_all((KIND / "prometheus.yaml").read_text())
    service = next(d for d in prometheus if d["kind"] == "Service")
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert port["nodePort"] in mappings
