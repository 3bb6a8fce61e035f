"""manifests/base: the operator's Deployment and RBAC as written, and what the RBAC allows.

The server-side dry-run of every kustomization (base included, with the
PodSecurity warnings check) is in tests/e2e/manifests/.
"""

from __future__ import annotations

import pytest
import yaml
from kit.kube import ROOT, can_i

from vigil.devcluster import ClusterClient


def documents(name: str) -> list[dict]:
    path = ROOT / "manifests" / "base" / name
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_operator_deployment_is_single_recreate_probed_non_root_read_only() -> None:
    (deployment,) = documents("deployment.yaml")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert "--standalone" in container["command"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "vigil-operator"


def test_rbac_has_no_wildcards_and_no_secrets() -> None:
    role = next(doc for doc in documents("rbac.yaml") if doc["kind"] == "ClusterRole")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert "secrets" not in rule["resources"]


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "modeldeployments.vigil.dev", True),
        ("patch", "modeldeployments.vigil.dev/status", True),
        # patch: only to clear a person's request annotations (kubectl vigil ...); the
        # managedFields test shows it never writes spec.
        ("patch", "modeldeployments.vigil.dev", True),
        ("delete", "modeldeployments.vigil.dev", False),
        ("patch", "deployments.apps", True),
        ("delete", "deployments.apps", True),
        ("delete", "services", True),  # a rollout's per-revision Services <name>-<revision>
        ("get", "httproutes.gateway.networking.k8s.io", True),  # Gateway API router
        ("patch", "httproutes.gateway.networking.k8s.io", True),
        ("delete", "httproutes.gateway.networking.k8s.io", False),
        # its revisions' sidecar settings feed the object cache (the watch is
        # label-filtered; `list` already shows as much)
        ("watch", "configmaps", True),
        ("get", "secrets", False),
        ("list", "pods", True),  # the health loop watches model pods (their IPs)
        ("watch", "pods", True),
        ("get", "pods", False),
        ("delete", "pods", False),
        ("create", "events", True),
        ("list", "namespaces", False),
    ],
)
def test_service_account_can_do_exactly_what_the_operator_needs(
    cluster: ClusterClient, vigil_installed: str, verb: str, resource: str, allowed: bool
) -> None:
    assert can_i(cluster, verb, resource) is allowed, (verb, resource)
