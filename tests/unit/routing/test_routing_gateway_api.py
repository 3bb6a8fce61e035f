"""Gateway API routing: the HTTPRoute patch, pure; the apply step over a fake API."""

from __future__ import annotations

import asyncio
import copy

import pytest

from vigil.core import naming
from vigil.core.desired import Owner, desired_revision_service
from vigil.core.rollout import Traffic
from vigil.kube.client import KubeError
from vigil.routing.base import RoutingError, RoutingTarget
from vigil.routing.gateway_api import (
    GatewayAPIRouter,
    desired_rules,
    route_patch,
    route_weights,
)
from vigil.routing.kube import RoutingKubeClient

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


USER_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
    "backendRefs": [{"name": "wine", "port": 80}],
}


def test_user_rule_gets_stable_and_candidate_backends():
    rules = desired_rules(route(USER_RULE), TARGET, Traffic(20, 0, 1, 2))
    assert rules[0]["matches"] == USER_RULE["matches"]
    assert rules[0]["backendRefs"] == [
        {"name": "wine-aaaaaaa", "port": 80, "weight": 80},
        {"name": "wine-bbbbbbb", "port": 80, "weight": 20},
    ]


def test_patch_carries_resource_version_and_is_none_when_in_place():
    traffic = Traffic(50, 0, 1, 2)
    patch = route_patch(route(USER_RULE), TARGET, traffic)
    assert patch is not None
    assert patch["metadata"] == {"resourceVersion": "7"}
    applied = route(*patch["spec"]["rules"])
    assert route_patch(applied, TARGET, traffic) is None
    assert route_weights(applied, TARGET) == {"wine-aaaaaaa": 50, "wine-bbbbbbb": 50}


def test_weights_move_along_and_back():
    current = route(USER_RULE)
    for weight in (0, 20, 50, 100, 0):
        patch = route_patch(current, TARGET, Traffic(weight, 0, 1, 2))
        if patch is not None:
            current = route(*patch["spec"]["rules"])
        assert route_weights(current, TARGET) == {
            "wine-aaaaaaa": 100 - weight,
            "wine-bbbbbbb": weight,
        }


def test_without_a_candidate_the_model_service_takes_everything():
    # After a promotion (or a rollback): the Service <name> selects the serving revision
    # and outlives every revision, so the route names no revision Service any more.
    during = route(*desired_rules(route(USER_RULE), TARGET, Traffic(50, 0, 1, 2)))
    promoted = RoutingTarget("wine", "ml", stable="bbbbbbb")
    after = route(*desired_rules(during, promoted, Traffic(0, 0, 0, 2)))
    assert after["spec"]["rules"][0]["backendRefs"] == [{"name": "wine", "port": 80, "weight": 100}]
    assert route_patch(route(USER_RULE), promoted, Traffic(0, 0, 0, 2)) is not None
    again = route({"backendRefs": [{"name": "wine", "port": 80, "weight": 100}]})
    assert route_patch(again, promoted, Traffic(0, 0, 0, 2)) is None


def test_foreign_backends_and_rules_are_untouched():
    other_rule = {"backendRefs": [{"name": "other", "port": 8080}]}
    mixed = {"backendRefs": [{"name": "wine", "port": 80}, {"name": "legacy", "port": 80}]}
    cross_ns = {"backendRefs": [{"name": "wine", "namespace": "elsewhere", "port": 80}]}
    rules = desired_rules(route(other_rule, mixed, cross_ns), TARGET, Traffic(20, 0, 1, 2))
    assert rules[0] == other_rule
    assert rules[1]["backendRefs"][-1] == {"name": "legacy", "port": 80}
    assert [r["name"] for r in rules[1]["backendRefs"]] == [
        "wine-aaaaaaa",
        "wine-bbbbbbb",
        "legacy",
    ]
    assert rules[2] == cross_ns


def test_port_and_filters_are_kept():
    rule = {
        "backendRefs": [
            {
                "name": "wine",
                "port": 8080,
                "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {}}],
            }
        ]
    }
    refs = desired_rules(route(rule), TARGET, Traffic(20, 0, 1, 2))[0]["backendRefs"]
    assert all(r["port"] == 8080 and r["filters"] for r in refs)


def test_route_without_our_backend_is_an_error_naming_the_fix():
    with pytest.raises(RoutingError, match="backendRef to Service wine"):
        desired_rules(
            route({"backendRefs": [{"name": "other", "port": 80}]}), TARGET, Traffic(20, 0, 1, 2)
        )


def test_plan_keeps_the_service_on_the_stable_and_weights_exact():
    plan = GatewayAPIRouter("wine").plan(TARGET, Traffic(20, 0, 1, 2))
    assert plan.service_selector == naming.selector_labels("wine", "aaaaaaa")
    assert plan.effective_weight == 20
    assert plan.replicas == {"aaaaaaa": 2, "bbbbbbb": 1}


class FakeApi:
    def __init__(self, obj, conflicts=0):
        self.obj = obj
        self.conflicts = conflicts
        self.patches = []

    async def get(self, kind, namespace, name):
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
    assert route_weights(api.obj, TARGET) == {"wine-aaaaaaa": 80, "wine-bbbbbbb": 20}


def test_apply_retries_a_conflict_on_a_fresh_read():
    api = FakeApi(route(USER_RULE), conflicts=2)
    asyncio.run(GatewayAPIRouter("wine").apply(api, TARGET, Traffic(50, 0, 1, 2)))
    assert len(api.patches) == 3
    assert route_weights(api.obj, TARGET)["wine-bbbbbbb"] == 50


def test_apply_on_a_missing_route_says_so():
    class Missing(FakeApi):
        async def get(self, kind, namespace, name):
            return None

    with pytest.raises(RoutingError, match="does not exist"):
        asyncio.run(GatewayAPIRouter("wine").apply(Missing(None), TARGET, Traffic(20, 0, 1, 2)))


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
