"""The entry point's choices on a real cluster: several namespaces, JSON logs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from operator_e2e import ROOT, Kube, OperatorProcess

from vigil.devcluster import ClusterClient

EXAMPLE = (ROOT / "manifests" / "examples" / "new-model.yaml").read_text()


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
            Kube(cluster, ns).apply(EXAMPLE)
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
