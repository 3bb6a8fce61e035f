"""helm install, upgrade (a changed value) and uninstall on the local cluster's real node.

The operator runs in-cluster from the chart: the project's image built here
(vigil.local/vigil, imported into the real node's containerd), its own
ServiceAccount, RBAC bound only in the namespace it watches. Between the
steps it reconciles a ModelDeployment: created, then changed after the
upgrade restarted it with the new value.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from helm_chart import CHART, install_values, run
from kit.kube import Kube, fresh_namespace
from kit.status import stable
from kit.waits import wait_for

from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.images import ensure_images

RELEASE = "vigil-e2e"


@pytest.fixture(scope="module")
def operator_image(real_node: LocalCluster) -> str:
    """The project's image in the real node's containerd; its reference."""
    archive = ensure_images(["vigil"], log=lambda line: print(line, flush=True))["vigil"]
    real_node.node().load_images([archive])
    return archive.ref


@pytest.fixture
def models(cluster: ClusterClient) -> Iterator[str]:
    """The namespace the chart's operator watches, where the ModelDeployment lives."""
    with fresh_namespace(cluster, "chart-models") as name:
        yield name


def _cluster_role(namespace: str) -> str:
    """The release's ClusterRole (cluster-wide: named after the test's namespace)."""
    return f"vigil-{namespace}"[:63]


def _model(replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "wine"},
            "spec": {
                "model": {"name": "wine", "version": "1"},
                "server": {"image": "vigil.local/mlserver-sklearn:any"},
                "replicas": replicas,
            },
        }
    )


def _reconciled(cluster: ClusterClient, models: str, replicas: int) -> bool:
    kube = Kube(cluster, models)
    md = kube.get("modeldeployment", "wine") or {}
    current = md.get("status") or {}
    revision = stable(current).get("revision")
    if not md or current.get("observedGeneration") != md["metadata"]["generation"] or not revision:
        return False
    deployment = kube.get("deployment", f"wine-{revision}")
    return deployment is not None and deployment["spec"]["replicas"] == replicas


def _operator_state(cluster: ClusterClient, namespace: str) -> str:
    """The chart's operator pods and their logs: what a failed step leaves to read."""
    pods = cluster.kubectl("-n", namespace, "get", "pods", "-o", "wide", check=False)
    events = cluster.kubectl(
        "-n", namespace, "get", "events", "--sort-by=.lastTimestamp", check=False
    )
    logs = cluster.kubectl(
        "-n", namespace, "logs", "deployment/vigil-operator", "--tail=100", check=False
    )
    return "\n".join((pods.stdout + pods.stderr, events.stdout, logs.stdout[-8000:] + logs.stderr))


def test_install_upgrade_uninstall_with_the_operator_reconciling(
    helm, cluster, namespace, models, operator_image, tmp_path
) -> None:
    config = ("--kubeconfig", cluster.kubeconfig, "--namespace", namespace)
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    values = install_values(
        tmp_path / "values.yaml", operator_image, models, _cluster_role(namespace)
    )
    try:
        run(helm, "install", RELEASE, CHART, *config, "--values", values, "--wait", "--timeout=3m")
        cluster.apply(_model(replicas=1), namespace=models)
        wait_for(lambda: _reconciled(cluster, models, 1), timeout=120, what="the chart's operator")

        run(
            helm,
            "upgrade",
            RELEASE,
            CHART,
            *config,
            "--reuse-values",
            "--set=healthInterval=10",
            "--wait",
            "--timeout=3m",
        )
        deployment = cluster.get_json("-n", namespace, "deployment", "vigil-operator")
        command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
        assert "--health-interval=10" in command and f"--namespace={models}" in command
        cluster.apply(_model(replicas=2), namespace=models)
        wait_for(lambda: _reconciled(cluster, models, 2), timeout=120, what="the upgraded operator")
    except BaseException:
        print(f"--- the chart's operator ---\n{_operator_state(cluster, namespace)}")
        # A failed step leaves the release: its cluster-wide RBAC must not outlive the test.
        subprocess.run([str(helm), "uninstall", RELEASE, *config], capture_output=True, check=False)
        raise

    run(helm, "uninstall", RELEASE, *config, "--wait", "--timeout=3m")
    left = cluster.kubectl(
        "-n", namespace, "get", "deployment,serviceaccount,service", "-o", "name",
        f"--selector=app.kubernetes.io/instance={RELEASE}",
    ).stdout  # fmt: skip
    assert left.strip() == ""
    rbac = cluster.kubectl("get", "clusterrole", _cluster_role(namespace), check=False)
    assert rbac.returncode != 0
    # Helm keeps the CRD (and so every ModelDeployment) on uninstall.
    cluster.kubectl("get", "crd", "modeldeployments.vigil.dev")
