"""Gateway API routing: the HTTPRoute patch, pure; the apply step over a fake API."""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from crd_kit import with_crd_defaults

import yaml_kit
from vigil.core import naming
from vigil.core.desired import Owner, desired_revision_service
from vigil.core.rollout import Traffic
from vigil.kube.cache import ObjectCache
from vigil.kube.client import KubeError
from vigil.routing.base import DiscoveryApi, RoutingError, RoutingTarget
from vigil.routing.gateway_api import (
    BACKEND_REF_DEFAULTS,
    GatewayAPIRouter,
    desired_rules,
    route_patch,
    route_weights,
)
from vigil.routing.kube import RoutingKubeClient

HTTPROUTE_CRD = (
    Path(__file__).parents[3] / "hack/gateway-api/gateway.networking.k8s.io_httproutes.yaml"
)

TARGET = RoutingTarget("wine", "ml", stable="aaaaaaa", candidate="bbbbbbb")


def route(*rules, version="7"):
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "wine", "namespace": "ml", "resourceVersion": version},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [copy.deepcopy(r) for r in rules],
        },
    }


#: No ``<name>-<revision>`` Service besides the target's own: nothing else is claimed.
NO_OTHERS: frozenset[str] = frozenset()
#: After a promotion to bbbbbbb, the old stable's Service is still ours.
OLD_STABLE = frozenset({"wine-aaaaaaa"})

USER_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
    "backendRefs": [{"name": "wine", "port": 80}],
}


def test_user_rule_gets_stable_and_candidate_backends():
    rules = desired_rules(route(USER_RULE), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)
    assert rules[0]["matches"] == USER_RULE["matches"]
    assert rules[0]["backendRefs"] == [
        {"name": "wine-aaaaaaa", "port": 80, "weight": 80},
        {"name": "wine-bbbbbbb", "port": 80, "weight": 20},
    ]


def test_patch_carries_resource_version_and_is_none_when_in_place():
    traffic = Traffic(50, 0, 1, 2)
    patch = route_patch(route(USER_RULE), TARGET, traffic, claimed=NO_OTHERS)
    assert patch is not None
    assert patch["metadata"] == {"resourceVersion": "7"}
    applied = route(*patch["spec"]["rules"])
    assert route_patch(applied, TARGET, traffic, claimed=NO_OTHERS) is None
    assert route_weights(applied, TARGET, claimed=NO_OTHERS) == {
        "wine-aaaaaaa": 50,
        "wine-bbbbbbb": 50,
    }


def test_weights_move_along_and_back():
    current = route(USER_RULE)
    for weight in (0, 20, 50, 100, 0):
        patch = route_patch(current, TARGET, Traffic(weight, 0, 1, 2), claimed=NO_OTHERS)
        if patch is not None:
            current = route(*patch["spec"]["rules"])
        assert route_weights(current, TARGET, claimed=NO_OTHERS) == {
            "wine-aaaaaaa": 100 - weight,
            "wine-bbbbbbb": weight,
        }


def test_without_a_candidate_the_model_service_takes_everything():
    # After a promotion (or a rollback): the Service <name> selects the serving revision
    # and outlives every revision, so the route names no revision Service any more.
    during = route(
        *desired_rules(route(USER_RULE), TARGET, Traffic(50, 0, 1, 2), claimed=NO_OTHERS)
    )
    promoted = RoutingTarget("wine", "ml", stable="bbbbbbb")
    after = route(*desired_rules(during, promoted, Traffic(0, 0, 0, 2), claimed=OLD_STABLE))
    assert after["spec"]["rules"][0]["backendRefs"] == [{"name": "wine", "port": 80, "weight": 100}]
    assert (
        route_patch(route(USER_RULE), promoted, Traffic(0, 0, 0, 2), claimed=OLD_STABLE) is not None
    )
    again = route({"backendRefs": [{"name": "wine", "port": 80, "weight": 100}]})
    assert route_patch(again, promoted, Traffic(0, 0, 0, 2), claimed=OLD_STABLE) is None


def test_foreign_backends_and_rules_are_untouched():
    other_rule = {"backendRefs": [{"name": "other", "port": 8080}]}
    mixed = {"backendRefs": [{"name": "wine", "port": 80}, {"name": "legacy", "port": 80}]}
    cross_ns = {"backendRefs": [{"name": "wine", "namespace": "elsewhere", "port": 80}]}
    rules = desired_rules(
        route(other_rule, mixed, cross_ns), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS
    )
    assert rules[0] == other_rule
    # Its share kept: 1 to the model's 1 (each absent weight is 1), now 100 to its 100.
    assert rules[1]["backendRefs"][-1] == {"name": "legacy", "port": 80, "weight": 100}
    assert [r["name"] for r in rules[1]["backendRefs"]] == [
        "wine-aaaaaaa",
        "wine-bbbbbbb",
        "legacy",
    ]
    assert rules[2] == cross_ns


def test_filters_are_kept_and_a_ref_without_a_port_gets_the_serving_port():
    filters = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {}}]
    for ref in (
        {"name": "wine", "port": 80, "filters": filters},
        {"name": "wine", "filters": filters},
    ):
        refs = desired_rules(
            route({"backendRefs": [ref]}), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS
        )[0]["backendRefs"]
        assert [(r["name"], r["port"], r["filters"]) for r in refs] == [
            ("wine-aaaaaaa", 80, filters),
            ("wine-bbbbbbb", 80, filters),
        ]


FEEDBACK_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/vigil/v1/feedback"}}],
    "backendRefs": [{"name": "wine", "port": 8001}],
}


@pytest.mark.parametrize("candidate", [True, False], ids=["rollout", "no-rollout"])
def test_a_rule_to_the_feedback_port_stays_on_the_model_service(candidate):
    # Old code: split onto wine-<stable>:8001 / wine-<candidate>:8001, ports the revision
    # Services do not have, so labels posted through the gateway failed for the rollout.
    # Any revision's feedback port joins labels (the sidecars forward them to their peers).
    target = TARGET if candidate else RoutingTarget("wine", "ml", stable="aaaaaaa")
    other_port = {"backendRefs": [{"name": "wine", "port": 9090, "weight": 5}]}
    rules = desired_rules(
        route(USER_RULE, FEEDBACK_RULE, other_port), target, Traffic(20, 0, 1, 2), claimed=NO_OTHERS
    )
    assert rules[1] == FEEDBACK_RULE and rules[2] == other_port
    assert all(r["port"] == 80 for r in rules[0]["backendRefs"])
    service = desired_revision_service(Owner("wine", "ml", "uid-1"), "bbbbbbb", "candidate")
    assert [p["port"] for p in service["spec"]["ports"]] == [80]


def test_feedback_refs_an_older_operator_split_go_back_to_the_model_service():
    # What the old code wrote mid-rollout: healed on the next write, one ref per port, so
    # that no revision Service stays named in the route when it is deleted.
    split = {
        **FEEDBACK_RULE,
        "backendRefs": [
            {"name": "wine-aaaaaaa", "port": 8001, "weight": 80},
            {"name": "wine-bbbbbbb", "port": 8001, "weight": 20},
            {"name": "labels-archive", "port": 8001, "weight": 0},
        ],
    }
    rules = desired_rules(route(USER_RULE, split), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)
    assert rules[1]["backendRefs"] == [
        {"name": "wine", "port": 8001, "weight": 100},
        {"name": "labels-archive", "port": 8001, "weight": 0},
    ]
    assert route_weights(route(*rules), TARGET, claimed=NO_OTHERS) == {
        "wine-aaaaaaa": 80,
        "wine-bbbbbbb": 20,
    }
    assert route_patch(route(*rules), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS) is None


def test_a_route_that_names_the_model_only_on_another_port_is_an_error_naming_the_port():
    with pytest.raises(RoutingError, match=r"of its own on port 80 \(or without a port\): add"):
        desired_rules(route(FEEDBACK_RULE), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)


def test_route_without_our_backend_is_an_error_naming_the_fix():
    with pytest.raises(RoutingError, match="backendRef to Service wine"):
        desired_rules(
            route({"backendRefs": [{"name": "other", "port": 80}]}),
            TARGET,
            Traffic(20, 0, 1, 2),
            claimed=NO_OTHERS,
        )


def test_plan_keeps_the_service_on_the_stable_and_weights_exact():
    plan = GatewayAPIRouter("wine").plan(TARGET, Traffic(20, 0, 1, 2))
    assert plan.service_selector == naming.selector_labels("wine", "aaaaaaa")
    assert plan.effective_weight == 20
    assert plan.replicas == {"aaaaaaa": 2, "bbbbbbb": 1}


class FakeApi:
    """The route ``wine`` in namespace ``ml``; ``services``: the Services in ``ml`` (name ->
    object, or a KubeError its read raises), the others do not exist (None, as on a 404)."""

    def __init__(self, obj, conflicts=0, services=None):
        self.obj = obj
        self.conflicts = conflicts
        self.services = dict(services or {})
        self.patches = []
        self.service_reads: list[str] = []

    async def get(self, kind, namespace, name):
        if kind == "Service":
            assert namespace == "ml"
            self.service_reads.append(name)
            found = self.services.get(name)
            if isinstance(found, KubeError):
                raise found
            return copy.deepcopy(found)
        assert (kind, namespace, name) == ("HTTPRoute", "ml", "wine")
        return copy.deepcopy(self.obj)

    async def patch(
        self, kind, namespace, name, patch, *, content_type="application/merge-patch+json"
    ):
        self.patches.append(patch)
        if self.conflicts:
            self.conflicts -= 1
            raise KubeError(409, "conflict")
        self.obj["spec"]["rules"] = patch["spec"]["rules"]
        self.obj["metadata"]["resourceVersion"] = str(
            int(self.obj["metadata"]["resourceVersion"]) + 1
        )
        return self.obj


def test_apply_patches_once_then_not_again():
    api = FakeApi(route(USER_RULE))
    router = GatewayAPIRouter("wine")
    asyncio.run(router.apply(api, TARGET, Traffic(20, 0, 1, 2)))
    asyncio.run(router.apply(api, TARGET, Traffic(20, 0, 1, 2)))
    assert len(api.patches) == 1
    assert route_weights(api.obj, TARGET, claimed=NO_OTHERS) == {
        "wine-aaaaaaa": 80,
        "wine-bbbbbbb": 20,
    }


def test_apply_retries_a_conflict_on_a_fresh_read():
    api = FakeApi(route(USER_RULE), conflicts=2)
    asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(50, 0, 1, 2)))
    assert len(api.patches) == 3
    assert route_weights(api.obj, TARGET, claimed=NO_OTHERS)["wine-bbbbbbb"] == 50


def test_apply_on_a_missing_route_says_so():
    class Missing(FakeApi):
        async def get(self, kind, namespace, name):
            return None

    with pytest.raises(RoutingError, match="does not exist"):
        asyncio.run(GatewayAPIRouter("wine").apply(Missing(None), TARGET, Traffic(20, 0, 1, 2)))


def _parent(gateway: str, accepted: str | None, generation: int = 3) -> dict:
    conditions = [{"type": "ResolvedRefs", "status": "True"}]
    if accepted is not None:
        reason = "Accepted" if accepted == "True" else "NotAllowedByListeners"
        conditions.append(
            {
                "type": "Accepted",
                "status": accepted,
                "reason": reason,
                "observedGeneration": generation,
            }
        )
    return {"parentRef": {"name": gateway}, "controllerName": "x.io/gw", "conditions": conditions}


TRAFFIC = Traffic(20, 0, 1, 2)


def _judged(*parents: dict, names: tuple[str, ...] = ("gw",)) -> dict:
    judged = route(USER_RULE)
    judged["metadata"]["generation"] = 3
    judged["spec"]["parentRefs"] = [{"name": name} for name in names]
    judged["status"] = {"parents": list(parents)}
    return judged


def test_a_parent_is_matched_by_its_namespace_and_section_as_the_route_names_it():
    # The status names the route's own namespace where the spec leaves it out: the same
    # parent. Another section of that Gateway is another parent (no longer named).
    refused = _parent("gw", "False")
    refused["parentRef"]["namespace"] = "ml"
    with pytest.raises(RoutingError, match="accepted by no Gateway"):
        asyncio.run(GatewayAPIRouter("wine").apply(FakeApi(_judged(refused)), TARGET, TRAFFIC))
    other_section = _parent("gw", "False")
    other_section["parentRef"]["sectionName"] = "https"
    asyncio.run(GatewayAPIRouter("wine").apply(FakeApi(_judged(other_section)), TARGET, TRAFFIC))


def test_a_route_no_gateway_accepts_is_written_and_said_not_to_carry_the_traffic():
    """Its Gateway's listeners do not allow it: the weights were written, the status said
    20 %, and the candidate got none of the traffic (a rollout holding on too few requests)."""
    api = FakeApi(_judged(_parent("gw", "False")))
    with pytest.raises(RoutingError, match=r"accepted by no Gateway.*gw \(NotAllowedByListeners"):
        asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(20, 0, 1, 2)))
    assert route_weights(api.obj, TARGET, claimed=NO_OTHERS)["wine-bbbbbbb"] == 20


@pytest.mark.parametrize(
    "judged",
    [
        _judged(),  # no controller has looked at it yet (or none runs)
        _judged(_parent("internal", "False"), _parent("gw", "True"), names=("internal", "gw")),
        _judged(_parent("gw", None)),  # its controller has not said yet
        _judged(_parent("gw", "False", generation=2)),  # said of the route before an edit
        _judged(_parent("old-gw", "False"), _parent("gw", "True")),  # an entry left behind
        _judged(_parent("old-gw", "False")),  # the same, before gw has said anything
    ],
    ids=["none-yet", "one-of-two", "not-said", "older-generation", "left-behind", "only-left"],
)
def test_a_route_one_gateway_accepts_or_none_has_judged_is_applied(judged):
    asyncio.run(GatewayAPIRouter("wine").apply(FakeApi(judged), TARGET, Traffic(20, 0, 1, 2)))


# -- which <name>-<revision> refs are ours ----------------------------------------------------


def service(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name, "namespace": "ml", "labels": labels}}


#: A Service of this ModelDeployment's, as the reconciler writes it (an older revision's).
OURS = desired_revision_service(Owner("wine", "ml", "uid-1"), "c0ffee1", naming.ROLE_STABLE)
#: Services named like a revision Service of ``wine`` that are someone else's: another
#: team's, one without labels, the Service ``<name>`` of a ModelDeployment ``wine-abcdef1``.
FOREIGN = {
    "team": service("wine-abcdef1", {"app": "wine-reviews", "team": "search"}),
    "unlabelled": {"kind": "Service", "metadata": {"name": "wine-abcdef1", "namespace": "ml"}},
    "model-deployment": service(
        "wine-abcdef1", naming.child_labels("wine-abcdef1", naming.ROLE_SERVING)
    ),
}
UNRELATED = {"name": "wine-abcdef1", "port": 8080, "weight": 3}


@pytest.mark.parametrize("foreign", FOREIGN.values(), ids=FOREIGN.keys())
def test_an_unrelated_service_named_like_a_revision_is_left_in_the_route(foreign):
    # Old code: every <name>-<7 hex> ref was ours, so wine-abcdef1 (someone else's) was
    # rewritten out of the rule. Dangling and labelled revision refs are still taken back.
    rule = {
        "backendRefs": [
            {"name": "wine-0123456", "port": 80, "weight": 60},  # deleted: taken back
            UNRELATED,
            {"name": "wine-c0ffee1", "port": 80, "weight": 40},  # ours (labels): taken back
        ]
    }
    api = FakeApi(route(rule), services={"wine-abcdef1": foreign, "wine-c0ffee1": OURS})
    asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(20, 0, 1, 2)))
    assert api.obj["spec"]["rules"][0]["backendRefs"] == [
        {"name": "wine-aaaaaaa", "port": 80, "weight": 80},
        {"name": "wine-bbbbbbb", "port": 80, "weight": 20},
        UNRELATED,
    ]
    assert sorted(api.service_reads) == ["wine-0123456", "wine-abcdef1", "wine-c0ffee1"]


def test_a_rule_with_only_an_unrelated_revision_named_service_is_not_ours():
    api = FakeApi(route({"backendRefs": [UNRELATED]}), services={"wine-abcdef1": FOREIGN["team"]})
    with pytest.raises(RoutingError, match="no backendRef to Service wine"):
        asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(20, 0, 1, 2)))
    assert api.obj["spec"]["rules"][0]["backendRefs"] == [UNRELATED] and not api.patches


def test_after_a_promotion_the_old_stable_service_is_taken_back():
    # The usual case of the pattern: the old stable's Service still exists (deleted only
    # after the route left it) and is no longer the target's stable or candidate.
    during = route(
        *desired_rules(route(USER_RULE), TARGET, Traffic(50, 0, 1, 2), claimed=NO_OTHERS)
    )
    old = desired_revision_service(Owner("wine", "ml", "uid-1"), "aaaaaaa", naming.ROLE_STABLE)
    api = FakeApi(during, services={"wine-aaaaaaa": old})
    promoted = RoutingTarget("wine", "ml", stable="bbbbbbb")
    asyncio.run(GatewayAPIRouter("wine").apply(api, promoted, Traffic(0, 0, 0, 2)))
    assert api.obj["spec"]["rules"][0]["backendRefs"] == [
        {"name": "wine", "port": 80, "weight": 100}
    ]
    assert api.service_reads == ["wine-aaaaaaa"]


def test_each_unknown_service_is_read_once_per_apply_and_no_other():
    # Not read: the Service <name>, the stable's and candidate's, names of another form,
    # refs to another namespace or kind. Conflict retries reuse the answers.
    rule = {
        "backendRefs": [
            {"name": "wine", "port": 80},
            {"name": "wine-aaaaaaa", "port": 80},
            {"name": "wine-bbbbbbb", "port": 80},
            {"name": "wine-peers", "port": 80},
            {"name": "wine-abcdef12", "port": 80},
            {"name": "wine-ABCDEF1", "port": 80},
            {"name": "wine-1234567", "namespace": "elsewhere", "port": 80},
            {"name": "wine-7654321", "kind": "ServiceImport", "group": "x.io", "port": 80},
            {"name": "wine-abcdef1", "port": 80},
        ]
    }
    api = FakeApi(route(rule, {"backendRefs": [{"name": "wine-abcdef1"}]}), conflicts=2)
    asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(20, 0, 1, 2)))
    assert len(api.patches) == 3
    assert api.service_reads == ["wine-abcdef1"]


def test_a_failed_service_read_fails_the_apply_and_writes_nothing():
    # Raised, as a failed route read is: the cycle stops before its deletions and is
    # retried, rather than writing a rule that may keep one of our revisions weighted.
    api = FakeApi(
        route({"backendRefs": [{"name": "wine", "port": 80}, UNRELATED]}),
        services={"wine-abcdef1": KubeError(503, "unavailable")},
    )
    with pytest.raises(KubeError):
        asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(20, 0, 1, 2)))
    assert not api.patches


def test_the_pure_functions_claim_the_revision_names_they_are_given():
    rule = {"backendRefs": [{"name": "wine-0123456", "port": 80}, UNRELATED]}
    traffic = Traffic(20, 0, 1, 2)
    claimed = frozenset({"wine-0123456"})
    refs = desired_rules(route(rule), TARGET, traffic, claimed=claimed)[0]["backendRefs"]
    assert [r["name"] for r in refs] == ["wine-aaaaaaa", "wine-bbbbbbb", "wine-abcdef1"]
    assert route_weights(route(rule), TARGET, claimed=claimed) == {"wine-0123456": 1}
    assert route_weights(route(rule), TARGET, claimed=frozenset()) == {}
    patch = route_patch(route(rule), TARGET, traffic, claimed=claimed)
    assert patch is not None and patch["spec"]["rules"][0]["backendRefs"] == refs


def test_revision_service_selects_one_revision():
    service = desired_revision_service(
        Owner("wine", "ml", "uid-1"), "bbbbbbb", naming.ROLE_CANDIDATE
    )
    assert service["metadata"]["name"] == "wine-bbbbbbb"
    assert service["spec"]["selector"] == naming.selector_labels("wine", "bbbbbbb")
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert naming.ANNOTATION_APPLIED_HASH in service["metadata"]["annotations"]


def test_routing_client_knows_httproutes():
    assert RoutingKubeClient._path("HTTPRoute", "ml", "wine") == (
        "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/wine"
    )
    assert RoutingKubeClient._path("Service", "ml", "wine") == "/api/v1/namespaces/ml/services/wine"


# -- the route as the API server stores it -----------------------------------------------------


@functools.cache
def httproute_schema(version: str = "v1") -> Mapping[str, Any]:
    """The vendored HTTPRoute CRD's schema (hack/gateway-api/, Gateway API v1.3.0)."""
    crd = yaml_kit.load(HTTPROUTE_CRD.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return served["schema"]["openAPIV3Schema"]


def stored(value: Any) -> Any:
    """``value`` with every absent field that has a default in the CRD given it, as the API
    server stores an HTTPRoute."""
    return with_crd_defaults(value, httproute_schema())


class ServerApi(FakeApi):
    """FakeApi that fills in the CRD's defaults on every write, like the API server."""

    async def patch(
        self, kind, namespace, name, patch, *, content_type="application/merge-patch+json"
    ):
        await super().patch(kind, namespace, name, patch, content_type=content_type)
        self.obj = stored(self.obj)
        return self.obj


def test_the_crd_defaults_the_refs_we_write_and_we_know_its_defaults():
    # What the second cycle compared with: the server's copy has group, kind (and weight).
    refs = [{"name": "wine-aaaaaaa", "port": 80, "weight": 80}, {"name": "x", "port": 80}]
    assert stored(route({"backendRefs": refs}))["spec"]["rules"][0]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "wine-aaaaaaa", "port": 80, "weight": 80},
        {"group": "", "kind": "Service", "name": "x", "port": 80, "weight": 1},
    ]
    items = httproute_schema()["properties"]["spec"]["properties"]["rules"]["items"]
    for version in ("v1", "v1beta1"):
        schema = httproute_schema(version)["properties"]["spec"]["properties"]["rules"]
        ref = schema["items"]["properties"]["backendRefs"]["items"]["properties"]
        defaults = {key: field["default"] for key, field in ref.items() if "default" in field}
        assert defaults == BACKEND_REF_DEFAULTS
    assert "default" not in items["properties"]["backendRefs"]


@pytest.mark.parametrize("candidate", ["bbbbbbb", None], ids=["rollout", "no-candidate"])
def test_a_route_as_the_server_stores_it_is_written_once(candidate):
    # Old code: the server's group/kind made the route differ from ours on every cycle,
    # a GET and a PATCH each reconcile (and 409s to lose).
    api = ServerApi(stored(route(USER_RULE)))
    router = GatewayAPIRouter("wine")
    target = RoutingTarget("wine", "ml", stable="aaaaaaa", candidate=candidate)
    for _ in range(3):
        asyncio.run(router.apply(api, target, Traffic(20, 0, 1, 2)))
    assert len(api.patches) == 1
    assert api.obj["spec"]["rules"][0]["backendRefs"][0]["kind"] == "Service"
    asyncio.run(router.apply(api, target, Traffic(50, 0, 1, 2)))
    assert len(api.patches) == (2 if candidate else 1)


def test_the_patch_writes_no_defaults_and_keeps_the_other_refs_as_stored():
    other = {"group": "", "kind": "Service", "name": "legacy", "port": 80, "weight": 1}
    rule = {"backendRefs": [{"group": "", "kind": "Service", "name": "wine", "port": 80}, other]}
    patch = route_patch(stored(route(rule)), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)
    assert patch is not None
    assert patch["spec"]["rules"][0]["backendRefs"] == [
        {"name": "wine-aaaaaaa", "port": 80, "weight": 80},
        {"name": "wine-bbbbbbb", "port": 80, "weight": 20},
        {**other, "weight": 100},  # its share of the rule kept (1 to the model's 1)
    ]


def shares(rule: Mapping[str, Any]) -> dict[str, float]:
    """Each backend's share of a rule's traffic, as the Gateway API divides it."""
    refs = rule["backendRefs"]
    total = sum(r.get("weight", 1) for r in refs)
    return {r["name"]: round(100 * r.get("weight", 1) / total, 1) for r in refs}


def test_a_model_weighted_out_of_every_rule_is_a_routing_failure_not_a_share():
    # Left as it is, the route sent the candidate nothing while status said 20 %.
    out = {"backendRefs": [{"name": "wine", "port": 80, "weight": 0}, {"name": "down"}]}
    with pytest.raises(RoutingError, match="weights Service wine 0 in every rule naming it"):
        desired_rules(route(out), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)
    stable_alone = RoutingTarget("wine", "ml", stable="aaaaaaa")
    assert desired_rules(route(out), stable_alone, Traffic(0, 0, 0, 2), claimed=NO_OTHERS) == [out]


def test_without_a_candidate_no_other_weight_is_multiplied():
    # Scaling gives a split its percent steps; with the stable alone, wine 1 beside
    # legacy 20 000 needs no write, and refused every Route action past 1 000 000.
    rule = {"backendRefs": [{"name": "wine", "port": 80}, {"name": "legacy", "weight": 20000}]}
    stable_alone = RoutingTarget("wine", "ml", stable="aaaaaaa")
    (kept,) = desired_rules(route(rule), stable_alone, Traffic(0, 0, 0, 2), claimed=NO_OTHERS)
    assert shares(kept) == shares(rule)


def test_a_rule_shared_with_other_backends_keeps_each_ones_share():
    # Old code: the model's refs always added up to 100, whatever it had: 10/90 with
    # legacy became 53/47 once trafficRouting was set, and a rule weighting the model out
    # (0, a maintenance backend at 100) sent it 99 %.
    split = {
        "backendRefs": [{"name": "wine", "port": 80, "weight": 1}, {"name": "legacy", "weight": 9}]
    }
    out = {
        "backendRefs": [{"name": "wine", "port": 80, "weight": 0}, {"name": "down", "weight": 1}]
    }
    current = route(split, out)
    for weight in (20, 50, 100, 0):
        patch = route_patch(current, TARGET, Traffic(weight, 0, 1, 2), claimed=NO_OTHERS)
        if patch is not None:
            current = route(*patch["spec"]["rules"])
        first, second = current["spec"]["rules"]
        assert shares(first) == {
            "wine-aaaaaaa": 10.0 * (100 - weight) / 100,
            "wine-bbbbbbb": 10.0 * weight / 100,
            "legacy": 90.0,
        }
        assert second == out  # weighted out of it: left as it is
        assert route_patch(current, TARGET, Traffic(weight, 0, 1, 2), claimed=NO_OTHERS) is None
    promoted = RoutingTarget("wine", "ml", stable="bbbbbbb")
    after = route(*desired_rules(current, promoted, Traffic(0, 0, 0, 2), claimed=OLD_STABLE))
    assert shares(after["spec"]["rules"][0]) == {"wine": 10.0, "legacy": 90.0}


# -- a missing route: which of three causes ------------------------------------------------------

HTTPROUTES = frozenset({"httproutes", "httproutes/status", "gateways"})


class Discovering(FakeApi):
    """No route; API discovery answers from ``served`` (group version -> resources)."""

    def __init__(self, served: Mapping[str, frozenset[str] | None] | None = None) -> None:
        super().__init__(None)
        self.served = served
        self.asked: list[str] = []

    async def get(self, kind, namespace, name):
        return None

    async def served_resources(self, group_version: str) -> frozenset[str] | None:
        self.asked.append(group_version)
        if self.served is None:
            raise KubeError(503, "discovery unavailable")
        return self.served.get(group_version)


def missing(api: FakeApi) -> str:
    with pytest.raises(RoutingError) as raised:
        asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(20, 0, 1, 2)))
    return str(raised.value)


def test_a_missing_route_in_a_cluster_serving_httproutes_v1_says_create_it():
    # Old code: "does not exist" for all three causes, no fix named.
    api = Discovering({"gateway.networking.k8s.io/v1": HTTPROUTES})
    message = missing(api)
    assert message.startswith("HTTPRoute ml/wine does not exist: create the HTTPRoute wine in ")
    assert "namespace ml" in message and "install" not in message
    assert api.asked == ["gateway.networking.k8s.io/v1"]


def test_without_the_gateway_api_crds_it_says_install_them():
    api = Discovering({})
    message = missing(api)
    assert "does not exist" not in message
    assert message.startswith("the cluster does not serve HTTPRoute (the Gateway API CRDs are ")
    assert "not installed): install the Gateway API CRDs, v1.0 or later" in message
    assert api.asked == ["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]


def test_with_only_v1beta1_served_it_says_v1_is_needed():
    older = {
        "gateway.networking.k8s.io/v1": frozenset({"gateways"}),
        "gateway.networking.k8s.io/v1beta1": HTTPROUTES,
    }
    message = missing(Discovering(older))
    assert "only as gateway.networking.k8s.io/v1beta1" in message
    assert "upgrade the Gateway API CRDs to v1.0 or later" in message


@pytest.mark.parametrize("api", [Discovering(None), FakeApi(None)], ids=["failed", "none"])
def test_without_discovery_every_cause_and_its_fix_is_named(api):
    # Discovery failed (503), or the API has none (FakeApi): no route, cause unknown.
    message = missing(api)
    assert "does not exist: create the HTTPRoute wine in namespace ml" in message
    assert "or install the Gateway API CRDs, v1.0 or later" in message


def test_the_routing_client_reads_discovery():
    class Answering(RoutingKubeClient):
        def __init__(self, answers: dict[str, dict[str, Any] | None]) -> None:
            self.answers = answers

        async def _request(self, method, path, **_):
            assert method == "GET"
            return self.answers.get(path)

    resources = {"resources": [{"name": "httproutes"}, {"name": "httproutes/status"}]}
    client = Answering({"/apis/gateway.networking.k8s.io/v1": resources})
    assert isinstance(client, DiscoveryApi)
    assert asyncio.run(client.served_resources("gateway.networking.k8s.io/v1")) == {
        "httproutes",
        "httproutes/status",
    }
    assert asyncio.run(client.served_resources("gateway.networking.k8s.io/v1beta1")) is None


def test_a_patched_watched_object_is_cached_as_answered():
    # A request annotation cleared by a JSON patch: the reconcile nudged right after read
    # the cached copy that still had it, and sent the patch again (422, logged).
    class Answering(RoutingKubeClient):
        def __init__(self, cache: ObjectCache) -> None:
            self.cache = cache

        async def _request(self, method, path, **_):
            assert method == "PATCH"
            return {"kind": "ModelDeployment", "metadata": meta(resourceVersion="8")}

    def meta(**more: str) -> dict[str, Any]:
        return {"namespace": "ml", "name": "wine", **more}

    cache = ObjectCache({"ModelDeployment": None})
    annotated = {"metadata": meta(resourceVersion="7", annotations={"vigil.dev/request": "x"})}
    cache.store("ModelDeployment", {"kind": "ModelDeployment", **annotated})
    client = Answering(cache)
    asyncio.run(client.patch("ModelDeployment", "ml", "wine", [], content_type="x"))
    cached = cache.get("ModelDeployment", "ml", "wine")
    assert cached is not None and "annotations" not in cached["metadata"]


# ---------------------------------------------------------------- refs of ours that differ

HEADER_B = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x"}]}}]


@pytest.mark.parametrize("candidate", [True, False], ids=["rollout", "no-rollout"])
def test_two_refs_to_the_model_with_other_filters_are_refused_naming_the_rule(candidate):
    # Old code: merged into one backend with the first's filters, which then applied to
    # all of the model's traffic in that rule (the other ref's half had none).
    target = TARGET if candidate else RoutingTarget("wine", "ml", stable="aaaaaaa")
    rule = {
        "name": "variants",
        "backendRefs": [
            {"name": "wine", "port": 80, "weight": 50, "filters": HEADER_B},
            {"name": "wine", "port": 80, "weight": 50},
        ],
    }
    with pytest.raises(RoutingError, match=r"spec.rules\[1\] \(variants\) has 2 .* in filters"):
        desired_rules(route(USER_RULE, rule), target, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)


def test_refs_to_the_model_differing_only_in_weight_and_defaults_are_one_backend():
    # No port and port 80, kind written or not, the namespace the route's own: the same.
    rule = {
        "backendRefs": [
            {"name": "wine", "port": 80, "weight": 30, "filters": HEADER_B},
            {"name": "wine", "kind": "Service", "namespace": "ml", "filters": HEADER_B},
        ]
    }
    refs = desired_rules(route(rule), TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS)[0][
        "backendRefs"
    ]
    assert [(r["name"], r["weight"], r["filters"]) for r in refs] == [
        ("wine-aaaaaaa", 80, HEADER_B),
        ("wine-bbbbbbb", 20, HEADER_B),
    ]
    # Its own split, written back, is read as one backend again.
    again = route({"backendRefs": refs})
    assert route_patch(again, TARGET, Traffic(20, 0, 1, 2), claimed=NO_OTHERS) is None


def test_a_refused_route_names_the_revision_services_it_still_sends_traffic_to():
    # The operator keeps what they serve until the route is fixed (a rollback deleted the
    # candidate's Service while the refused route still sent it 20 %).
    theirs = {"metadata": {"name": "wine-ccccccc", "labels": {}}}
    rule = {
        "backendRefs": [
            {"name": "wine-aaaaaaa", "port": 80, "weight": 80},
            {"name": "wine-bbbbbbb", "port": 80, "weight": 20, "filters": HEADER_B},
            {"name": "wine-ddddddd", "port": 8001, "weight": 0},  # ours, weighted out
            {"name": "wine-ccccccc", "port": 80, "weight": 5},  # another team's Service
        ]
    }
    api = FakeApi(route(USER_RULE, rule), services={"wine-ccccccc": theirs})
    back = RoutingTarget("wine", "ml", stable="aaaaaaa")
    with pytest.raises(RoutingError, match=r"spec.rules\[1\]") as refused:
        asyncio.run(GatewayAPIRouter("wine").apply(api, back, Traffic(0, 0, 0, 2)))
    assert refused.value.weighted == ("wine-aaaaaaa", "wine-bbbbbbb")
    assert api.patches == []
    api.obj = None
    with pytest.raises(RoutingError) as missing:
        asyncio.run(GatewayAPIRouter("wine").apply(api, back, Traffic(0, 0, 0, 2)))
    assert missing.value.weighted == ()
