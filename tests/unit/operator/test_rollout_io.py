"""The rollout's operator-side helpers: requests, router plans, candidate addresses."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from vigil.core.candidate import Request
from vigil.core.reconcile import Plan, Route
from vigil.core.rollout import Traffic
from vigil.core.spec import monitoring_settings, parse_rollout
from vigil.core.window import RevisionWindow
from vigil.metrics.source import Collection
from vigil.operator.health import PodInfo
from vigil.operator.rollouts import Rollouts, route_planner
from vigil.plugin.requests import parse_request as read_request


def test_request_annotations_read_as_the_core_takes_them() -> None:
    assert read_request(None) is None
    assert read_request({"vigil.dev/request": "pause", "vigil.dev/request-id": "a"}) == Request(
        "pause", "a"
    )
    assert read_request({"vigil.dev/request": "bogus"}) == Request("bogus", "")


def test_route_planner_follows_the_spec() -> None:
    plan = route_planner("wine", "ml", parse_rollout({}).http_route)(
        "s1", "c1", Traffic(20, 0, 1, 2)
    )
    assert plan.replicas == {"s1": 2, "c1": 1}
    assert plan.service_selector == {"vigil.dev/model-deployment": "wine"}
    gateway = parse_rollout({"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}})
    plan = route_planner("wine", "ml", gateway.http_route)("s1", "c1", Traffic(20, 0, 1, 2))
    assert plan.service_selector["vigil.dev/revision"] == "s1"
    assert plan.effective_weight == 20


PODS = {
    ("ml", "wine-c1-a"): PodInfo("wine", "c1", "10.0.0.7", True),
    ("ml", "wine-c1-b"): PodInfo("wine", "c1", "10.0.0.8", False),
    ("ml", "wine-s1-a"): PodInfo("wine", "s1", "10.0.0.3", True),
}


def test_candidate_is_addressed_at_its_revision_service_never_a_pod_ip() -> None:
    rollouts = Rollouts(lambda: PODS)
    assert rollouts.candidate_urls("ml", "wine", "c1") == ["http://wine-c1.ml.svc:80"]


def test_rollout_metrics_weight_gates_and_duration() -> None:
    from vigil.operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    gates = [{"name": "agreement", "passed": True}, {"name": "errorRate", "passed": False}]
    after = {"weight": 33, "lastAnalysisAt": "2026-01-01T00:00:10Z", "gates": gates}
    metrics.rollout_progress("ml", "wine", {}, after, None, 0.0)
    metrics.rollout_progress("ml", "wine", after, after, None, 0.0)  # same analysis: once
    value = metrics.registry.get_sample_value
    assert value("vigil_rollout_weight", {"namespace": "ml", "name": "wine"}) == 33
    labels = {"namespace": "ml", "name": "wine", "gate": "agreement", "result": "passed"}
    assert value("vigil_rollout_analysis_total", labels) == 1
    before = {**after, "startedAt": "2026-01-01T00:00:00Z"}
    finished = {"outcome": "RolledBack"}
    now = 1767225600.0 + 90  # 2026-01-01T00:01:30Z
    metrics.rollout_progress("ml", "wine", before, finished, "RolledBack", now)
    assert value("vigil_rollout_weight", {"namespace": "ml", "name": "wine"}) == 0
    assert value("vigil_rollout_duration_seconds_sum", {"outcome": "RolledBack"}) == 90


def test_each_gate_s_verdict_and_figures_while_a_rollout_runs() -> None:
    from vigil.operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    undecided = {
        "name": "errorRate",
        "verdict": "undecided",
        "passed": True,
        "value": 0.004,
        "low": 0.0,
        "high": 0.03,
        "threshold": 0.01,
        "samples": 250,
        "needed": 900,
    }
    after = {"weight": 50, "lastAnalysisAt": "2026-01-01T00:00:10Z", "gates": [undecided]}
    metrics.rollout_progress("ml", "wine", {}, after, None, 0.0)
    value = metrics.registry.get_sample_value
    gate = {"namespace": "ml", "name": "wine", "gate": "errorRate"}
    assert value("vigil_rollout_gate_verdict", {**gate, "verdict": "undecided"}) == 1
    assert value("vigil_rollout_gate_verdict", {**gate, "verdict": "pass"}) == 0
    figures = {"value": 0.004, "low": 0.0, "high": 0.03, "threshold": 0.01, "samples": 250}
    for figure, expected in {**figures, "needed": 900}.items():
        assert value(f"vigil_rollout_gate_{figure}", gate) == expected
    metrics.rollout_progress("ml", "wine", after, {"outcome": "Promoted"}, "Promoted", 60.0)
    assert value("vigil_rollout_gate_verdict", {**gate, "verdict": "undecided"}) is None


class RecordingApi:
    """Records the calls the rollout I/O makes (an HTTPRoute to weight, a request to clear)."""

    def __init__(self) -> None:
        self.route = {
            "metadata": {"name": "wine", "resourceVersion": "7"},
            "spec": {"rules": [{"backendRefs": [{"name": "wine", "port": 80}]}]},
        }
        self.patches: list[tuple[str, str, object, str]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, object] | None:
        return self.route if kind == "HTTPRoute" else None

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: object,
        *,
        content_type: str = "application/merge-patch+json",
    ) -> dict[str, object]:
        self.patches.append((kind, name, patch, content_type))
        return {}


GATEWAY_BODY = {
    "metadata": {"namespace": "ml", "name": "wine"},
    "spec": {"rollout": {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}},
    "status": {},
}


def test_a_route_action_weights_the_httproute() -> None:
    api = RecordingApi()
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    assert asyncio.run(Rollouts(lambda: {}).route(api, GATEWAY_BODY, action)) == []
    ((kind, _, patch, _),) = api.patches
    assert kind == "HTTPRoute"
    refs = patch["spec"]["rules"][0]["backendRefs"]  # type: ignore[index]
    assert [(r["name"], r["weight"]) for r in refs] == [("wine-s1", 80), ("wine-c1", 20)]


def test_after_write_clears_the_request() -> None:
    api = RecordingApi()
    plan = Plan(clear_request=Request("pause", "id-9"))
    asyncio.run(Rollouts(lambda: {}).after_write(api, GATEWAY_BODY, plan))
    ((kind, _, patch, content_type),) = api.patches
    assert kind == "ModelDeployment" and content_type == "application/json-patch+json"
    assert patch[0] == {  # type: ignore[index]
        "op": "test",
        "path": "/metadata/annotations/vigil.dev~1request-id",
        "value": "id-9",
    }


def test_a_routing_failure_is_an_event_once_and_its_recovery_another() -> None:
    """A missing HTTPRoute must be visible (it would hold the rollout with no cause shown)."""
    api = RecordingApi()
    route = api.route
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    rollouts = Rollouts(lambda: {})
    api.route = None  # type: ignore[assignment]
    first = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    again = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    assert [(e.reason, e.warning) for e in first] == [("RoutingFailed", True)]
    assert "wine" in first[0].message
    assert again == []
    api.route = route
    back = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    assert [e.reason for e in back] == ["RoutingApplied"]


class OnlyTheCandidate:
    """A metrics source that measures the candidate and fails the stable."""

    async def collect(self, targets, now):
        candidate, stable = targets
        return Collection(
            windows={candidate.key: RevisionWindow(requests_by_outcome={"success": 500.0})},
            errors={stable.key: "no sidecar answered (2 pods): p: TimeoutError"},
        )

    async def close(self) -> None:
        pass


def test_without_the_stables_figures_the_step_holds_instead_of_judging_half() -> None:
    """The comparisons with the stable would be left out, not held: never promote on that."""
    rollouts = Rollouts(lambda: PODS, source_factory=lambda key: OnlyTheCandidate())

    async def answering(*_args):
        return "http://wine-c1.ml.svc:80"

    rollouts.candidate_url = answering  # type: ignore[method-assign]
    settings = monitoring_settings({"monitoring": {}, "rollout": {}})
    measured = asyncio.run(
        rollouts._measure("ml", "wine", "c1", "s1", settings, None, None, 60.0, 1000.0)
    )
    assert not measured.metrics_available
    assert measured.metrics_error == "the stable: no sidecar answered (2 pods): p: TimeoutError"


async def test_a_replay_that_could_not_run_is_no_result_but_an_unusable_golden_set_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No result: the validate step stays pending and replays again (within the deadline);
    # a 0/0 result is a mismatch that rolls the candidate back at once.
    from vigil.core.rollout import GoldenResult
    from vigil.core.spec import GoldenSetRef, parse_spec
    from vigil.kube.client import KubeError
    from vigil.operator import rollouts as module
    from vigil.validation.golden import GoldenSetError, ReplayReport

    spec = parse_spec("wine", {"model": {"version": "2"}, "server": {"image": "img:1"}})
    answers = [False]

    async def candidate_url(namespace: str, name: str, revision: str) -> str | None:
        return "http://wine-c1.ml.svc:80" if answers[0] else None

    def loading(error: Exception) -> Any:
        async def load(*_: Any) -> None:
            raise error

        return load

    rollouts = Rollouts(lambda: PODS)
    monkeypatch.setattr(rollouts, "candidate_url", candidate_url)
    replay = functools.partial(rollouts.replay, None, "ml", "wine", spec, GoldenSetRef("g", "k"))
    assert await replay() is None  # the candidate's sidecar did not answer ready
    answers[0] = True
    monkeypatch.setattr(module, "load_golden_set", loading(KubeError(503, "restarting")))
    assert await replay() is None
    monkeypatch.setattr(module, "load_golden_set", loading(GoldenSetError("no rows")))
    result = await replay()
    assert result is not None and (result.total, result.agreed) == (0, 0)
    # The candidate gone between the probe and the replay: every batch refused.
    refused = ReplayReport(GoldenResult(10, 0), errors=("refused",), unreachable=True)

    async def load(*_: Any) -> None:
        return None

    async def report(*_: Any, **__: Any) -> ReplayReport:
        return refused

    monkeypatch.setattr(module, "load_golden_set", load)
    monkeypatch.setattr(module, "replay_report", report)
    assert await replay() is None
