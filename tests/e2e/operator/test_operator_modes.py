"""The entry point's choices on a real cluster: several namespaces, JSON logs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from operator_e2e import ROOT, Kube, OperatorProcess

from vigil.devcluster import ClusterClient

# A kustomization: the ModelDeployment and its reference profile ConfigMap.
EXAMPLE_DIR = str(ROOT / "manifests" / "examples" / "new-model")


@pytest.fixture
def second_namespace(cluster: ClusterClient) -> Iterator[str]:
    name = f"e2e-second-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_one_operator_serves_several_namespaces_and_logs_json(
    cluster: ClusterClient, vigil_installed: str, namespace: str, second_namespace: str
) -> None:
    process = OperatorProcess(
        vigil_installed,
        [namespace, second_namespace],
        ROOT / ".vigil" / "e2e-logs",
        extra_args=("--log-format", "json"),
    )
    process.start()
    try:
        for ns in (namespace, second_namespace):
            Kube(cluster, ns).run("apply", "-k", EXAMPLE_DIR)
        for ns in (namespace, second_namespace):
            Kube(cluster, ns).run("wait", "--for=condition=Ready", "md/wine", "--timeout=60s")
        lines = [line for line in process.log().splitlines() if line.strip()]
        assert lines, "the operator logged nothing"
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(records) >= len(lines) * 0.9, lines[:5]
        assert any("apply Deployment" in record.get("message", "") for record in records)
        metrics = process.metrics()
        assert metrics['vigil_operator_model_deployments{phase="Healthy"}'] == 2
        process.assert_no_errors()
    finally:
        process.stop()


def test_peering_mode_with_the_optional_peering_manifest(
    cluster: ClusterClient, vigil_installed: str, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "optional" / "peering.yaml"))
    cluster.wait_established("kopfpeerings.kopf.dev")
    kube = Kube(cluster, namespace)
    kube.apply("apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: vigil}\n")
    process = OperatorProcess(
        vigil_installed,
        [namespace],
        ROOT / ".vigil" / "e2e-logs",
        extra_args=("--peering", "vigil"),
    )
    # OperatorProcess passes --standalone unless told otherwise: peering replaces it.
    process.standalone = False
    process.start()
    try:
        kube.run("apply", "-k", EXAMPLE_DIR)
        kube.run("wait", "--for=condition=Ready", "md/wine", "--timeout=60s")
        peering = kube.get("kopfpeering", "vigil")
        assert peering is not None and peering.get("status"), "the operator did not check in"
        process.assert_no_errors()
    finally:
        process.stop()
