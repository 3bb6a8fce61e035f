"""The entry point's choices on a real cluster: several namespaces, JSON logs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kit.kube import ROOT, Kube, fresh_namespace
from kit.operator import running_operator

from vigil.devcluster import ClusterClient

# A kustomization: the ModelDeployment and its reference profile ConfigMap.
EXAMPLE_DIR = str(ROOT / "manifests" / "examples" / "new-model")


@pytest.fixture
def second_namespace(cluster: ClusterClient) -> Iterator[str]:
    with fresh_namespace(cluster, "second") as name:
        yield name


def test_one_operator_serves_several_namespaces_and_logs_json(
    cluster: ClusterClient,
    vigil_installed: str,
    namespace: str,
    second_namespace: str,
    request: pytest.FixtureRequest,
) -> None:
    with running_operator(
        vigil_installed,
        [namespace, second_namespace],
        ("--log-format", "json"),
        request=request,
    ) as process:
        for ns in (namespace, second_namespace):
            Kube(cluster, ns).run("apply", "-k", EXAMPLE_DIR)
        for ns in (namespace, second_namespace):
            Kube(cluster, ns).wait_ready("md/wine")
        # The whole log: its end (process.log()) may start inside a record.
        log = process.log_path.read_text(errors="replace")
        lines = [line for line in log.splitlines() if line.strip()]
        assert lines, "the operator logged nothing"
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(records) >= len(lines) * 0.9, lines[:5]
        assert any("apply Deployment" in record.get("message", "") for record in records)
        process.wait_total("vigil_operator_model_deployments", 2, phase="Healthy")
        process.assert_no_errors()


def test_peering_mode_with_the_optional_peering_manifest(
    cluster: ClusterClient, vigil_installed: str, namespace: str, request: pytest.FixtureRequest
) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "optional" / "peering.yaml"))
    cluster.wait_established("kopfpeerings.kopf.dev")
    kube = Kube(cluster, namespace)
    kube.apply("apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: vigil}\n")
    # The operator process passes --standalone unless told otherwise: peering replaces it.
    with running_operator(
        vigil_installed, [namespace], ("--peering", "vigil"), request=request, standalone=False
    ) as process:
        kube.run("apply", "-k", EXAMPLE_DIR)
        kube.wait_ready("md/wine")
        peering = kube.get("kopfpeering", "vigil")
        assert peering is not None and peering.get("status"), "the operator did not check in"
        process.assert_no_errors()
