"""``helm template`` piped to the API server's server-side dry run, every optional object on.

The API server checks each object against its schema (Vigil's CRD, the
built-in kinds, the Prometheus Operator's vendored CRDs) and the admission
chain, PodSecurity "restricted" included, in a namespace of this test's own.
"""

from __future__ import annotations

import pytest
from helm_chart import CHART, EVERYTHING, KUBE_VERSION, documents, run
from kit.kube import ROOT

from vigil.devcluster import ClusterClient

PROMETHEUS_OPERATOR_CRDS = ("podmonitors", "servicemonitors", "prometheusrules")


@pytest.fixture
def monitoring_crds(cluster: ClusterClient) -> None:
    folder = ROOT / "hack" / "prometheus-operator"
    files = [folder / f"monitoring.coreos.com_{name}.yaml" for name in PROMETHEUS_OPERATOR_CRDS]
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", *(f"--filename={f}" for f in files)
    )
    cluster.wait_established(
        *(f"{name}.monitoring.coreos.com" for name in PROMETHEUS_OPERATOR_CRDS)
    )


def test_rendered_chart_passes_server_side_dry_run(
    helm, cluster, namespace, monitoring_crds
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    text = run(
        helm, "template", "vigil", CHART, "--namespace", namespace, "--include-crds",
        KUBE_VERSION, *EVERYTHING,
    )  # fmt: skip
    result = cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
        input=text, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # PodSecurity and deprecations warn; kubectl's own bookkeeping on the shared CRD
    # (however another test applied it) is no finding about the chart.
    warnings = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("Warning") and "last-applied-configuration" not in line
    ]
    assert warnings == [], result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(documents(text)), result.stdout
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout
