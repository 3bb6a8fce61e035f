"""Fixtures for the rollout e2e tests: the operator with short intervals and pod addressing.

The Docker-free dev cluster has no Service networking (pods run as local
processes on loopback IPs, no cluster DNS), so the operator runs with
``--pod-addressing``: shadow copies and golden replays go to a candidate
pod's IP instead of its per-revision Service.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from operator_e2e import ROOT, Kube, OperatorProcess

from vigil.devcluster import ClusterClient

HEALTH_INTERVAL = 3


@pytest.fixture(scope="session")
def vigil_installed(cluster: ClusterClient) -> str:
    """The CRD, the operator's namespace, ServiceAccount and RBAC; returns its kubeconfig."""
    cluster.kubectl("apply", "-f", str(ROOT / "crds" / "modeldeployments.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/modeldeployments.vigil.dev", "--timeout=30s"
    )
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / name))
    return cluster.serviceaccount_kubeconfig("vigil-system", "vigil-operator")


@pytest.fixture
def kube(cluster: ClusterClient, namespace: str) -> Kube:
    return Kube(cluster, namespace)


@pytest.fixture
def operator(
    vigil_installed: str, namespace: str, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    log_dir = ROOT / ".vigil" / "e2e-logs"
    process = OperatorProcess(
        vigil_installed,
        [namespace],
        log_dir,
        ("--health-interval", str(HEALTH_INTERVAL), "--pod-addressing"),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- operator log ({process.log_path}) ---\n{process.log()[-20000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
