"""The operator's RBAC is least privilege, read from the manifests a user installs.

No Secrets, no wildcards, no verbs that grant more rights (escalate, bind,
impersonate); write verbs only on the kinds the operator creates (what the
pure desired-object builders produce) and the few objects it must touch; on
ModelDeployments themselves: status, plus one documented annotation patch.
"""

from __future__ import annotations

import pytest
from operator_rbac import (
    ESCALATING_VERBS,
    WRITE_VERBS,
    Rule,
    operator_bindings,
    operator_rules,
    raw_operator_rules,
    rendered_manifests,
)

from vigil.core import naming
from vigil.core.desired import (
    Owner,
    RevisionInfo,
    desired_configmap,
    desired_deployment,
    desired_revision_service,
    desired_service,
)
from vigil.core.spec import parse_spec

#: Kind -> (apiGroup, resource) as RBAC names it.
RESOURCE_OF_KIND = {
    "Deployment": ("apps", "deployments"),
    "ConfigMap": ("", "configmaps"),
    "Service": ("", "services"),
}
#: Writes on objects the operator does not create, each with the reason it needs them
#: (docs/security.md repeats these).
EXTRA_WRITES: dict[tuple[str, str], frozenset[str]] = {
    ("", "events"): frozenset({"create"}),  # Events on ModelDeployments
    ("vigil.dev", "modeldeployments/status"): frozenset({"patch"}),  # its only output
    # Clears a person's request annotation (kubectl vigil promote/abort ...) with a JSON
    # patch that tests the request id first; never spec.
    ("vigil.dev", "modeldeployments"): frozenset({"patch"}),
    # blockOwnerDeletion in owner references (OwnerReferencesPermissionEnforcement).
    ("vigil.dev", "modeldeployments/finalizers"): frozenset({"update"}),
    # Gateway API router: the weights of the user's HTTPRoute.
    ("gateway.networking.k8s.io", "httproutes"): frozenset({"patch"}),
}


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    found = operator_rules()
    assert found, "no RBAC rules bound to the vigil-operator ServiceAccount in the manifests"
    return found


def _created_kinds() -> set[str]:
    spec = parse_spec(
        "wine",
        {
            "model": {"version": "1"},
            "server": {"image": "mlserver"},
            "monitoring": {"reference": {"configMapKeyRef": {"name": "r", "key": "p.json"}}},
        },
    )
    owner = Owner("wine", "ml", "uid")
    info = RevisionInfo("abc1234", "identity", naming.ROLE_STABLE)
    objects = [
        desired_deployment(owner, spec, info, sidecar_image="vigil:test", replicas=1),
        desired_configmap(owner, spec, info),
        desired_service(owner, "abc1234"),
        desired_revision_service(owner, "abc1234", naming.ROLE_STABLE),
    ]
    return {str(o["kind"]) for o in objects}


def test_rbac_has_no_wildcards(rules: list[Rule]) -> None:
    for raw in raw_operator_rules():
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (raw.get(key) or ()), f"wildcard in {key}: {raw}"
        assert not raw.get("nonResourceURLs"), raw


def test_rbac_grants_nothing_on_secrets_or_pod_internals(rules: list[Rule]) -> None:
    resources = {r.resource for r in rules}
    assert "secrets" not in resources
    for forbidden in ("pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "nodes/proxy"):
        assert forbidden not in resources, forbidden
    assert not {r.resource for r in rules if r.group == "rbac.authorization.k8s.io"}
    assert "serviceaccounts/token" not in resources


def test_rbac_has_no_privilege_escalating_verbs(rules: list[Rule]) -> None:
    for rule in rules:
        assert not rule.verbs & ESCALATING_VERBS, rule


def test_rbac_writes_only_what_the_operator_creates_or_must_touch(rules: list[Rule]) -> None:
    created = {RESOURCE_OF_KIND[kind] for kind in _created_kinds()}
    assert created == {("apps", "deployments"), ("", "configmaps"), ("", "services")}
    for rule in rules:
        writes = rule.verbs & WRITE_VERBS
        if not writes:
            continue
        key = (rule.group, rule.resource)
        allowed = EXTRA_WRITES.get(key, frozenset())
        if key in created:
            allowed = allowed | {"create", "patch", "delete"}
        assert writes <= allowed, f"{key} may {sorted(writes - allowed)}, not needed"
        assert "update" not in writes or key == ("vigil.dev", "modeldeployments/finalizers")
        assert "deletecollection" not in writes, rule


def test_rbac_never_creates_updates_or_deletes_modeldeployments(rules: list[Rule]) -> None:
    md = [r for r in rules if r.group == "vigil.dev" and r.resource == "modeldeployments"]
    for rule in md:
        assert not rule.verbs & {"create", "update", "delete", "deletecollection"}, rule
    status = [r for r in rules if r.resource == "modeldeployments/status"]
    assert status and all(r.verbs == {"patch"} for r in status)


def test_pods_are_read_only_for_the_operator(rules: list[Rule]) -> None:
    pods = [r for r in rules if r.group == "" and r.resource == "pods"]
    assert pods, "the health loop lists pods"
    for rule in pods:
        assert rule.verbs <= {"get", "list", "watch"}, rule


def test_operator_binding_names_only_its_own_service_account() -> None:
    bindings = operator_bindings(rendered_manifests())
    assert bindings
    for binding in bindings:
        assert binding["roleRef"]["kind"] in ("ClusterRole", "Role")
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")
        subjects = binding["subjects"]
        assert [(s["kind"], s["name"]) for s in subjects] == [
            ("ServiceAccount", "vigil-operator")
        ], subjects
