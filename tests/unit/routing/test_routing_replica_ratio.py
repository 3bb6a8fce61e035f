"""Replica-ratio routing: replica counts, Service selector, the granularity it gives."""

from __future__ import annotations

import asyncio

import pytest

from vigil.core import naming
from vigil.core.rollout import Step, Traffic, traffic_at
from vigil.core.spec import parse_rollout
from vigil.routing import ReplicaRatioRouter, router_for
from vigil.routing.base import RoutingTarget
from vigil.routing.gateway_api import GatewayAPIRouter
from vigil.routing.replica_ratio import achievable_weights, effective_weight, service_selector

TARGET = RoutingTarget("wine", "ml", stable="aaaaaaa", candidate="bbbbbbb")
STABLE_ONLY = {naming.LABEL_MODEL_DEPLOYMENT: "wine", naming.LABEL_REVISION: "aaaaaaa"}


def test_no_candidate_selects_the_stable_only():
    plan = ReplicaRatioRouter().plan(RoutingTarget("wine", "ml", "aaaaaaa"), Traffic(0, 0, 0, 3))
    assert plan.service_selector == STABLE_ONLY
    assert plan.replicas == {"aaaaaaa": 3}
    assert plan.effective_weight == 0


@pytest.mark.parametrize(
    "traffic",
    [Traffic(0, 0, 1, 2), Traffic(0, 100, 2, 2), Traffic(0, 0, 0, 2)],
    ids=["validate", "shadow", "rollback"],
)
def test_weight_zero_keeps_live_traffic_on_the_stable(traffic):
    plan = ReplicaRatioRouter().plan(TARGET, traffic)
    assert plan.service_selector == STABLE_ONLY
    assert plan.replicas == {"aaaaaaa": 2, "bbbbbbb": traffic.candidate_replicas}
    assert plan.effective_weight == 0


def test_canary_spans_both_revisions_by_model_deployment_label():
    plan = ReplicaRatioRouter().plan(TARGET, Traffic(20, 0, 1, 2))
    assert plan.service_selector == {naming.LABEL_MODEL_DEPLOYMENT: "wine"}
    # Both revisions' pod labels match the selector (Deployment pods carry selector_labels).
    for revision in ("aaaaaaa", "bbbbbbb"):
        labels = naming.selector_labels("wine", revision)
        assert all(labels.get(k) == v for k, v in plan.service_selector.items())
    assert plan.replicas == {"aaaaaaa": 2, "bbbbbbb": 1}
    assert plan.effective_weight == pytest.approx(33.3)
    assert plan.notes and "33.3%" in plan.notes[0]


def test_full_weight_selects_the_candidate_only():
    plan = ReplicaRatioRouter().plan(TARGET, Traffic(100, 0, 2, 2))
    assert plan.service_selector == naming.selector_labels("wine", "bbbbbbb")
    assert plan.effective_weight == 100


def test_stable_always_keeps_full_capacity_along_the_steps():
    steps = (
        Step("validate"),
        Step("shadow", duration_seconds=60, percent=100),
        Step("canary", duration_seconds=60, weight=20),
        Step("canary", duration_seconds=60, weight=50),
        Step("pause"),
    )
    for replicas in (1, 2, 5, 10):
        for index in range(len(steps)):
            traffic = traffic_at(steps, index, replicas)
            plan = ReplicaRatioRouter().plan(TARGET, traffic)
            assert plan.replicas["aaaaaaa"] == replicas
            if steps[index].kind in ("validate", "shadow"):
                assert plan.service_selector == STABLE_ONLY


@pytest.mark.parametrize(
    ("stable", "candidate", "weight", "expected"),
    [(2, 1, 20, 33.3), (2, 1, 50, 33.3), (10, 2, 20, 16.7), (10, 5, 50, 33.3), (4, 4, 100, 100)],
)
def test_effective_weight(stable, candidate, weight, expected):
    assert effective_weight(stable, candidate, weight) == pytest.approx(expected)


def test_achievable_weights_are_c_over_r_plus_c():
    assert achievable_weights(2) == [33.3, 50.0, 100.0]
    assert achievable_weights(1) == [50.0, 100.0]
    assert len(achievable_weights(10)) == 11


def test_selector_without_candidate_ignores_weight():
    selector = service_selector(RoutingTarget("wine", "ml", "aaaaaaa"), Traffic(50, 0, 1, 2))
    assert selector == STABLE_ONLY


def test_apply_writes_nothing():
    class NoCalls:
        async def get(self, *args, **kwargs):
            raise AssertionError("no reads")

        async def patch(self, *args, **kwargs):
            raise AssertionError("no writes")

    plan = asyncio.run(ReplicaRatioRouter().apply(NoCalls(), TARGET, Traffic(20, 0, 1, 2)))
    assert plan.replicas == {"aaaaaaa": 2, "bbbbbbb": 1}


def test_router_for_picks_by_spec():
    assert isinstance(router_for(None), ReplicaRatioRouter)
    assert isinstance(
        router_for(parse_rollout({"trafficRouting": {}}).http_route), ReplicaRatioRouter
    )
    router = router_for(
        parse_rollout({"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}).http_route
    )
    assert isinstance(router, GatewayAPIRouter)
    assert router.http_route == "wine"
