"""Security checks against the live API server, with the operator's own identity.

- RBAC: what ``kubectl auth can-i --as=system:serviceaccount:vigil-system:vigil-operator``
  answers matches the rules read from the manifests (tests/unit/security/operator_rbac.py)
  and is least privilege: no Secrets, nothing cluster-wide beyond what it reads, no
  escalation, writes only where it must.
- PodSecurity: in a namespace that enforces `restricted`, a ModelDeployment created with
  the operator running gets its pods admitted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit.kube import MD_LABEL, Kube, can_i, enforce_restricted
from kit.modeldeployment import MLSERVER_IMAGE
from kit.operator import OperatorProcess
from kit.waits import wait_for

# operator_rbac lives with the unit tests (the yaml_kit it imports is in tests/).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "security"))
from operator_rbac import WRITE_VERBS, operator_rules

from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient

#: (verb, resource) pairs that must be denied everywhere, whatever the manifests say.
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("create", "serviceaccounts/token"),
    ("create", "modeldeployments.vigil.dev"),
    ("update", "modeldeployments.vigil.dev"),
    ("delete", "modeldeployments.vigil.dev"),
    ("deletecollection", "modeldeployments.vigil.dev"),
    ("update", "modeldeployments.vigil.dev/status"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "users"),
    ("impersonate", "serviceaccounts"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("delete", "deployments.apps/scale"),
    ("update", "nodes"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("*", "*"),
]


def _rbac_resource(group: str, resource: str) -> str:
    if not group:
        return resource
    base, _, sub = resource.partition("/")
    return f"{base}.{group}" + (f"/{sub}" if sub else "")


def test_operator_identity_is_denied_secrets_escalation_and_wildcards(
    cluster: ClusterClient, vigil_installed: str, namespace: str
) -> None:
    allowed = [
        (verb, resource)
        for verb, resource in DENIED
        if can_i(cluster, verb, resource, namespace) or can_i(cluster, verb, resource, "default")
    ]
    assert not allowed, f"the operator's ServiceAccount may: {allowed}"


def test_live_api_server_grants_the_operator_exactly_the_manifest_rules(
    cluster: ClusterClient, vigil_installed: str, namespace: str
) -> None:
    rules = operator_rules()
    assert rules
    verbs = ["get", "list", "watch", *sorted(WRITE_VERBS)]
    mismatches = []
    for rule in rules:
        resource = _rbac_resource(rule.group, rule.resource)
        for verb in verbs:
            expected = verb in rule.verbs
            if can_i(cluster, verb, resource, namespace) != expected:
                mismatches.append((verb, resource, expected))
    assert not mismatches, (
        f"can-i differs from the manifests (verb, resource, expected): {mismatches}"
    )


def test_restricted_pod_security_admits_a_plain_pod_that_breaks_it_not(
    cluster: ClusterClient, kube: Kube, namespace: str
) -> None:
    """The namespace label really enforces (else the next test proves nothing)."""
    enforce_restricted(cluster, namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    result = kube.run("apply", "-f", "-", input=kube_yaml.dump(pod), check=False)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr, result.stderr


def test_model_pods_are_admitted_where_pod_security_restricted_is_enforced(
    cluster: ClusterClient, kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    enforce_restricted(cluster, namespace)
    manifest = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine"},
        "spec": {
            "model": {"version": "1", "uri": "s3://models/wine"},
            "server": {
                "image": MLSERVER_IMAGE,
                "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
            },
            "replicas": 2,
        },
    }
    kube.apply(manifest)
    pods = wait_for(
        lambda: (found := kube.pods(f"{MD_LABEL}=wine")) and len(found) >= 2 and found,
        timeout=90,
        what="two model pods admitted under PodSecurity restricted",
    )
    for pod in pods:
        names = {c["name"] for c in pod["spec"]["containers"]}
        assert {"server", "sidecar"} <= names
    warnings = [
        e
        for e in kube.items("events")
        if e.get("reason") == "FailedCreate" and "PodSecurity" in e.get("message", "")
    ]
    assert not warnings, warnings
    operator.assert_no_errors()
