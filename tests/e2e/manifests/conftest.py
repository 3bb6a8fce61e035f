"""Fixtures for the manifests' tests: the third-party CRDs the manifests use.

Server-side dry-run checks an object against the API server's schema for
its kind, so the kinds Vigil's manifests create for other projects
(PodMonitor, ServiceMonitor, PrometheusRule, Argo CD's Application, Flux's
GitRepository and Kustomization) need their CRDs installed: the vendored
copies in hack/ (see the README there), applied once per session
(idempotent), never the projects themselves.
"""

from __future__ import annotations

import pytest
from kit.kube import ROOT

from vigil.devcluster import ClusterClient

# Folder under hack/ -> the CRDs it must hold.
THIRD_PARTY_CRDS: dict[str, list[str]] = {
    "prometheus-operator": [
        "podmonitors.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ],
    "argocd": ["applications.argoproj.io"],
    "flux": [
        "gitrepositories.source.toolkit.fluxcd.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
    ],
}

# Namespaces the GitOps objects live in (Argo CD's and Flux's own): dry-run
# cannot create an object in a namespace that does not exist. Left in place
# (empty) after the session, like the CRDs.
GITOPS_NAMESPACES = ("argocd", "flux-system")


@pytest.fixture(scope="session")
def third_party_crds(cluster: ClusterClient) -> None:
    """The vendored Prometheus Operator, Argo CD and Flux CRDs, Established."""
    args = ["apply", "--server-side", "--force-conflicts"]
    for folder in THIRD_PARTY_CRDS:
        files = sorted((ROOT / "hack" / folder).glob("*.yaml"))
        if not files:
            pytest.fail(f"no vendored CRDs in hack/{folder} (see its README.md)", pytrace=False)
        args += [arg for path in files for arg in ("-f", str(path))]
    # Server-side: Argo CD's Application CRD (400 KB) is too large for the
    # last-applied annotation of a client-side apply.
    with cluster.setup_lock():
        cluster.kubectl(*args)
        cluster.wait_established(*(n for names in THIRD_PARTY_CRDS.values() for n in names))
        for namespace in GITOPS_NAMESPACES:
            cluster.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n")
