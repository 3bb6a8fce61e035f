"""The rollout's operator-side helpers: requests, router plans, candidate addresses."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
from running_pods import running_in

from vigil.core.candidate import Request, RolloutInputs
from vigil.core.reconcile import Plan, Route
from vigil.core.rollout import Traffic
from vigil.core.spec import monitoring_settings, parse_rollout, parse_spec
from vigil.core.window import RevisionWindow
from vigil.metrics.pool import SourcePool
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
    rollouts = Rollouts(running_in(lambda: PODS))
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
    assert asyncio.run(Rollouts(running_in(lambda: {})).route(api, GATEWAY_BODY, action)) == []
    ((kind, _, patch, _),) = api.patches
    assert kind == "HTTPRoute"
    refs = patch["spec"]["rules"][0]["backendRefs"]  # type: ignore[index]
    assert [(r["name"], r["weight"]) for r in refs] == [("wine-s1", 80), ("wine-c1", 20)]


def test_after_write_clears_the_request() -> None:
    api = RecordingApi()
    plan = Plan(clear_request=Request("pause", "id-9"))
    asyncio.run(Rollouts(running_in(lambda: {})).after_write(api, GATEWAY_BODY, plan))
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
    rollouts = Rollouts(running_in(lambda: {}))
    api.route = None  # type: ignore[assignment]
    first = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    again = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    assert [(e.reason, e.warning) for e in first] == [("RoutingFailed", True)]
    assert "wine" in first[0].message
    assert again == []
    api.route = route
    back = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    assert [e.reason for e in back] == ["RoutingApplied"]


def test_the_next_cycle_reads_why_the_route_was_not_applied() -> None:
    # Status then shows no live share with the reason (it showed the step's weight).
    api = RecordingApi()
    route = api.route
    rollouts = Rollouts(running_in(lambda: {}))
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    api.route = None  # type: ignore[assignment]
    asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    assert "wine" in rollouts.routing_error("ml", "wine")
    api.route = route
    asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    assert rollouts.routing_error("ml", "wine") == ""


REPLICA_RATIO_BODY = {**GATEWAY_BODY, "spec": {"rollout": {}}}


def test_a_routing_error_of_a_route_the_spec_no_longer_names_is_let_go() -> None:
    # Old code: only a Route action on it or deleting the object cleared it, so after
    # trafficRouting was removed every canary showed weight 0 and "routing not applied".
    api = RecordingApi()
    api.route = None  # type: ignore[assignment]
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    for let_go in ("inputs", "after_write"):
        rollouts = Rollouts(running_in(lambda: {}))
        asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
        asyncio.run(rollouts.after_write(api, GATEWAY_BODY, Plan()))  # still the spec's route
        assert "does not exist" in rollouts.routing_error("ml", "wine")
        if let_go == "inputs":  # read before this cycle's status
            spec = parse_spec("wine", {"model": {"version": "1"}, "server": {"image": "img:1"}})
            asyncio.run(rollouts.inputs(api, REPLICA_RATIO_BODY, spec, {}, None))
        else:
            asyncio.run(rollouts.after_write(api, REPLICA_RATIO_BODY, Plan()))
        assert rollouts.routing_error("ml", "wine") == "", let_go


def test_only_the_route_that_failed_recovers_its_failure() -> None:
    # Renamed from wine to wine-v2 (missing): resetting wine is no recovery of wine-v2.
    api = RecordingApi()
    rollouts = Rollouts(running_in(lambda: {}))
    renamed = {
        **GATEWAY_BODY,
        "spec": {"rollout": {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine-v2"}}}},
    }
    route = api.route
    api.route = None  # type: ignore[assignment]
    failing = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine-v2")
    asyncio.run(rollouts.route(api, renamed, failing))
    api.route = route
    reset = Route("s1", http_route="wine")
    assert asyncio.run(rollouts.route(api, renamed, reset)) == []
    assert "wine-v2" in rollouts.routing_error("ml", "wine")


def test_a_deleted_models_routing_error_is_forgotten() -> None:
    api = RecordingApi()
    api.route = None  # type: ignore[assignment]
    rollouts = Rollouts(running_in(lambda: {}))
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    asyncio.run(rollouts.route(api, GATEWAY_BODY, action))
    rollouts.forget("ml", "wine")
    assert rollouts._routing_errors == {}


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
    rollouts = Rollouts(
        running_in(lambda: PODS), sources=SourcePool(lambda key: OnlyTheCandidate())
    )

    async def answering(*_args):
        return "http://wine-c1.ml.svc:80"

    rollouts.candidate_url = answering  # type: ignore[method-assign]
    settings = monitoring_settings({"monitoring": {}, "rollout": {}})
    measured = asyncio.run(
        rollouts._measure("ml", "wine", "c1", "s1", settings, None, None, 60.0, 1000.0)
    )
    assert not measured.metrics_available
    assert measured.metrics_error == "the stable: no sidecar answered (2 pods): p: TimeoutError"


@pytest.mark.parametrize("started", [False, True])
def test_a_probe_that_fails_after_the_first_step_keeps_the_copies_going(started: bool) -> None:
    """Before the first step the probe gates everything (a model still loading would count
    copies as errors); after, one that fails (a busy model server) holds the judging only."""
    rollouts = Rollouts(
        running_in(lambda: PODS), sources=SourcePool(lambda key: OnlyTheCandidate())
    )

    async def unanswered(*_args: Any) -> None:
        return None

    rollouts.candidate_url = unanswered  # type: ignore[method-assign]
    settings = monitoring_settings({"monitoring": {}, "rollout": {}})
    measured = asyncio.run(
        rollouts._measure(
            "ml", "wine", "c1", "s1", settings, None, None, 60.0, 1000.0, started=started
        )
    )
    assert not measured.metrics_available and not measured.candidate_serving
    assert measured.shadow_target == ("http://wine-c1.ml.svc:80" if started else None)


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

    rollouts = Rollouts(running_in(lambda: PODS))
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


async def test_a_regression_golden_set_of_text_rolls_back_saying_which_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Unusable, not a mismatch of every case: the status names the ConfigMap and the output.
    from vigil.core.spec import GoldenSetRef, parse_spec

    spec = parse_spec("wine", {"model": {"version": "2"}, "server": {"image": "img:1"}})
    document = {"task": "regression", "tolerance": 0.1, "inputs": [[1.0]], "expected": ["3.5"]}

    class GoldenConfigMap:
        async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
            return {"metadata": {"name": name}, "data": {"golden.json": json.dumps(document)}}

    async def answering(*_args: Any) -> str:
        return "http://wine-c1.ml.svc:80"

    rollouts = Rollouts(running_in(lambda: PODS))
    monkeypatch.setattr(rollouts, "candidate_url", answering)
    ref = GoldenSetRef("wine-golden", "golden.json")
    result = await rollouts.replay(GoldenConfigMap(), "ml", "wine", spec, ref)  # type: ignore[arg-type]
    assert result is not None and (result.total, result.agreed) == (0, 0)
    assert result.message.startswith(
        "golden set unusable: ConfigMap wine-golden key golden.json: expected[0]: '3.5' is not "
        "a number (task regression"
    )


TEN_ROWS = {"model": "wine", "inputs": [[1.0]] * 10, "expected": [0] * 10}


def replaying(monkeypatch: pytest.MonkeyPatch, replay: Any = None) -> tuple[Rollouts, Any, str]:
    """Rollouts with one candidate pod, which answers at its Service, and ``replay``
    standing for the golden replay of TEN_ROWS (None: neither is stood in for); returns
    them, the spec and the candidate's revision."""
    from vigil.core.revision import compute_revision
    from vigil.operator import rollouts as module
    from vigil.validation.golden import parse_golden_set

    spec = parse_spec("wine", {"model": {"version": "2"}, "server": {"image": "img:1"}})
    revision = compute_revision(spec, "")
    one_pod = {("ml", "wine-c-a"): PodInfo("wine", revision, "10.0.0.9", True)}
    rollouts = Rollouts(running_in(lambda: one_pod))

    async def answering(*_args: Any) -> str:
        return "http://wine-c1.ml.svc:80"

    async def load(*_: Any) -> Any:
        return parse_golden_set(TEN_ROWS)

    monkeypatch.setattr(rollouts, "candidate_url", answering)
    if replay is not None:
        monkeypatch.setattr(module, "load_golden_set", load)
        monkeypatch.setattr(module, "replay_report", replay)
    return rollouts, spec, revision


async def test_a_golden_replay_without_answers_or_configmap_waits_and_one_pod_gets_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows with no answer (timeouts, 5xx: a failed batch), or a golden-set ConfigMap not
    applied yet, rolled a good candidate back; now no result: the step replays again."""
    from vigil.core.rollout import GoldenResult
    from vigil.core.spec import GoldenSetRef
    from vigil.validation.golden import ReplayReport

    rollouts, spec, _ = replaying(monkeypatch)

    class NoConfigMap:
        async def get(self, kind: str, namespace: str, name: str) -> None:
            return None

    ref = GoldenSetRef("g", "golden.json")
    assert await rollouts.replay(NoConfigMap(), "ml", "wine", spec, ref) is None  # type: ignore[arg-type]
    assert "ConfigMap g (golden set) does not exist" in rollouts.golden_pending("ml", "wine")

    asked: list[int] = []
    reports = [
        ReplayReport(GoldenResult(10, 6), errors=("rows 6..9: HTTP 503",), unanswered=4),
        ReplayReport(GoldenResult(10, 6), errors=("rows 6..9: HTTP 422",)),
    ]

    async def report(*_: Any, concurrency: int, **__: Any) -> ReplayReport:
        asked.append(concurrency)
        return reports.pop(0)

    rollouts, spec, _ = replaying(monkeypatch, report)
    assert await rollouts.replay(None, "ml", "wine", spec, ref) is None  # type: ignore[arg-type]
    assert "4 row(s) got no answer" in rollouts.golden_pending("ml", "wine")
    judged = await rollouts.replay(None, "ml", "wine", spec, ref)  # type: ignore[arg-type]
    assert rollouts.golden_pending("ml", "wine") == ""
    assert judged is not None and (judged.total, judged.agreed) == (10, 6)
    assert "HTTP 422" in judged.message
    assert asked == [1, 1]  # one candidate pod (a validate step's): one batch at a time


class BothRevisions:
    """A metrics source that measures both revisions: the same inputs, so no drift."""

    def __init__(self, window: RevisionWindow) -> None:
        self.window = window

    async def collect(self, targets, now):
        return Collection(windows={t.key: self.window for t in targets})

    async def close(self) -> None:
        pass


def _binned(reference: Any, live: Any) -> RevisionWindow:
    """Live rows counted in ``reference``'s bins, as its sidecars count them."""
    from vigil.core import drift

    bins = {}
    for feature in reference.features:
        slots = drift.bin_index(live[:, feature.index], feature.edges)
        bins[feature.name] = {
            str(slot): float((slots == slot).sum()) for slot in range(len(feature.proportions))
        }
    rows = float(len(live))
    return RevisionWindow(requests_by_outcome={"success": rows}, input_rows=rows, feature_bins=bins)


class StableReference:
    """The API holding the stable's reference ConfigMap (None: deleted), or refusing it."""

    def __init__(self, configmap: dict[str, Any] | None, error: Exception | None) -> None:
        self.configmap, self.error = configmap, error
        self.reads: list[tuple[str, str]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((kind, name))
        if self.error is not None:
            raise self.error
        return self.configmap


@pytest.mark.parametrize(
    ("unread", "why"),
    [
        ("deleted", "ConfigMap ref-v1 was not found"),
        ("refused", ""),
        ("emptied", "ConfigMap ref-v1 holds no profile under 'p.json'"),
        ("", ""),
    ],
)
async def test_a_stable_whose_reference_cannot_be_read_is_never_judged_with_the_candidates(
    monkeypatch: pytest.MonkeyPatch, unread: str, why: str
) -> None:
    """Its drift against the candidate's reference would be measured in the wrong bins:
    the inputDrift gate has no evidence, and says which ConfigMap it could not read."""
    import numpy as np

    from vigil.core.judges import gates
    from vigil.core.revision import compute_revision
    from vigil.core.spec import parse_policy, parse_spec
    from vigil.core.vocabulary import GateVerdict
    from vigil.kube.client import KubeError
    from vigil.profile import build_profile

    live = np.random.default_rng(3).normal(size=(3000, 2))
    reference = build_profile(live, feature_names=["a", "b"], model_name="wine")
    raw_spec = {
        "model": {"version": "2"},
        "server": {"image": "img:1"},
        "monitoring": {"reference": {"configMapKeyRef": {"name": "ref-v2", "key": "p.json"}}},
    }
    spec = parse_spec("wine", raw_spec)
    candidate = compute_revision(spec, "")
    mounted = {"name": "reference", "configMap": {"name": "ref-v1", "items": [{"key": "p.json"}]}}
    stable = {"spec": {"template": {"spec": {"volumes": [mounted]}}}}
    pods = {
        ("ml", "wine-c-a"): PodInfo("wine", candidate, "10.0.0.7", True),
        ("ml", "wine-s1-a"): PodInfo("wine", "s1", "10.0.0.3", True),
    }
    window = _binned(reference, live)
    rollouts = Rollouts(
        running_in(lambda: pods), sources=SourcePool(lambda key: BothRevisions(window))
    )

    async def answering(*_args: Any) -> str:
        return "http://wine-c.ml.svc:80"

    monkeypatch.setattr(rollouts, "candidate_url", answering)
    old = {
        "deleted": None,
        "refused": None,
        "emptied": {"metadata": {"name": "ref-v1"}, "data": {}},
        "": {"metadata": {"name": "ref-v1"}, "data": {"p.json": reference.to_json()}},
    }[unread]
    api = StableReference(
        old, KubeError(503, "service unavailable") if unread == "refused" else None
    )
    body = {
        "metadata": {"namespace": "ml", "name": "wine"},
        "status": {"stable": {"revision": "s1"}},
    }
    configmap = {"metadata": {"name": "ref-v2"}, "data": {"p.json": reference.to_json()}}
    deployments = {candidate: {}, "s1": stable}
    inputs = await rollouts.inputs(api, body, spec, deployments, configmap)  # type: ignore[arg-type]

    assert api.reads == [("ConfigMap", "ref-v1")]
    if unread == "refused":  # the API server did not answer: no figures, the step holds
        assert inputs is not None and not inputs.metrics_available
        assert "service unavailable" in inputs.metrics_error
        # The traffic set up stays: without the target the stable's sidecars were told to
        # stop copying for the cycle, status still saying they copied.
        assert inputs.shadow_target == "http://wine-c.ml.svc:80" and inputs.candidate_serving
        return
    assert inputs is not None and inputs.figures is not None
    policy = parse_policy({"replacement": {"steps": [{"canary": {"weight": 50}}]}}, "replacement")
    (gate,) = (g for g in gates(policy.steps[0], policy, inputs.figures) if g.name == "inputDrift")
    if not unread:  # read: each revision against its own reference, as always
        assert len(inputs.figures.input_drift) == 2 and gate.text.startswith("input drift of ")
        return
    assert inputs.figures.input_drift == ()
    assert gate.verdict == GateVerdict.UNDECIDED and gate.within  # said, holding no step
    assert gate.text.startswith(f"input drift not judged: the stable's reference {why}")


async def test_a_golden_replay_goes_on_from_the_answers_of_the_last_until_it_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vigil.core.rollout import GoldenResult
    from vigil.core.spec import GoldenSetRef
    from vigil.validation.golden import ReplayReport, parse_golden_set

    given: list[Any] = []
    reports = [
        ReplayReport(GoldenResult(10, 4), unanswered=6, resumable=True),
        ReplayReport(GoldenResult(10, 10)),
        ReplayReport(GoldenResult(10, 4), unanswered=6, resumable=True),
        ReplayReport(GoldenResult(10, 4), unanswered=6, resumable=True),
    ]

    async def report(*_: Any, progress: Any, **__: Any) -> ReplayReport:
        given.append(progress)
        return reports.pop(0)

    rollouts, spec, revision = replaying(monkeypatch, report)
    ref = GoldenSetRef("g", "golden.json")
    assert await rollouts.replay(None, "ml", "wine", spec, ref) is None  # type: ignore[arg-type]
    assert "(4 of 10 answered so far" in rollouts.golden_pending("ml", "wine")
    assert await rollouts.replay(None, "ml", "wine", spec, ref) is not None  # type: ignore[arg-type]
    await rollouts.replay(None, "ml", "wine", spec, ref)  # type: ignore[arg-type]
    assert given[0] is given[1]  # the second went on from the first's answers
    assert given[2] is not given[1]  # a completed replay is not kept: the next asks afresh
    assert (given[0].revision, given[0].golden) == (revision, parse_golden_set(TEN_ROWS))
    # The rollout ends (rolled back) with a replay under way: a retry starts from row 0.
    body = {"metadata": {"namespace": "ml", "name": "wine"}, "spec": {}, "status": {}}
    await rollouts.after_write(None, body, Plan(rollout_outcome="RolledBack"))  # type: ignore[arg-type]
    await rollouts.replay(None, "ml", "wine", spec, ref)  # type: ignore[arg-type]
    assert given[3] is not given[2]


async def test_an_unusable_golden_sets_cause_is_shown_where_its_rollback_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 0/0 replay rolls back; the cause (ConfigMap missing, rows unreadable) must be in
    the rollback's words and in status.candidate.golden, not only in the operator's log."""
    from vigil.core.reconcile.stepped import golden_status
    from vigil.core.rollout import Observations, RolloutState, decide
    from vigil.core.spec import GoldenSetRef, parse_policy, parse_spec
    from vigil.operator import rollouts as module
    from vigil.validation.golden import GoldenSetError

    cause = "ConfigMap g has no key 'golden.json' (golden set)"

    async def unusable(*_: Any) -> None:
        raise GoldenSetError(cause)

    async def answering(*_args: Any) -> str:
        return "http://wine-c1.ml.svc:80"

    rollouts = Rollouts(running_in(lambda: PODS))
    monkeypatch.setattr(rollouts, "candidate_url", answering)
    monkeypatch.setattr(module, "load_golden_set", unusable)
    spec = parse_spec("wine", {"model": {"version": "2"}, "server": {"image": "img:1"}})
    result = await rollouts.replay(None, "ml", "wine", spec, GoldenSetRef("g", "golden.json"))  # type: ignore[arg-type]
    assert result is not None and (result.total, result.agreed) == (0, 0)
    validate = {"validate": {"goldenSet": {"configMapKeyRef": {"name": "g", "key": "golden.json"}}}}
    policy = parse_policy({"replacement": {"steps": [validate]}}, "replacement")
    seen = Observations(candidate_ready=True, replicas=1, golden=result)
    decision = decide(policy, RolloutState(step=0, step_started_at=0.0), seen, 0.0)
    assert decision.action == "rollback" and cause in decision.message
    assert cause in (golden_status(result) or {}).get("message", "")


class MeasuredAsNone(Rollouts):
    """Its own reads (the routing error let go), then figures that hold no step back."""

    async def inputs(self, *args: Any) -> RolloutInputs | None:
        read = await super().inputs(*args)
        return read and RolloutInputs(metrics_available=False, metrics_error="none")


async def test_a_canary_after_trafficrouting_is_removed_gets_its_live_share() -> None:
    # The route named first never existed; the user went back to replica ratio. Old code:
    # every later canary showed weight 0 and "routing not applied: HTTPRoute ml/wine ...".
    from test_reconciler import Harness, model_deployment

    harness = Harness()
    rollouts = MeasuredAsNone(running_in(lambda: {}), sidecar_image="sidecar:test")
    harness.reconciler.rollouts = rollouts
    gateway = {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}
    harness.api.add(model_deployment(rollout=gateway))
    for _ in range(2):
        await harness.reconciler.reconcile("ml", "wine")
        harness.api.make_ready()
    assert "does not exist" in rollouts.routing_error("ml", "wine")
    steps = [{"canary": {"weight": 50, "duration": "1h"}}]
    canary = model_deployment(version="2", rollout={"replacement": {"steps": steps}})
    canary["metadata"]["generation"] = 2
    canary["status"] = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    harness.api.add(canary)
    for _ in range(4):
        await harness.reconciler.reconcile("ml", "wine")
        harness.api.make_ready()
    candidate = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]["candidate"]
    assert candidate["weight"] == 33, candidate["message"]
    assert "routing not applied" not in candidate["message"]


async def test_a_route_that_fails_or_recovers_asks_for_the_cycle_that_says_so() -> None:
    """The status of the cycle whose route failed was decided before: the candidate's share
    and "routing not applied" were a recheck (up to 10 s) late, both ways."""
    from test_reconciler import Harness, model_deployment

    harness = Harness()
    harness.reconciler.rollouts = Rollouts(running_in(lambda: {}), sidecar_image="sidecar:test")
    nudged: list[tuple[str, str]] = []
    harness.reconciler.nudge = lambda namespace, name, **_: nudged.append((namespace, name))
    gateway = {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}
    harness.api.add(model_deployment(rollout=gateway))
    await harness.reconciler.reconcile("ml", "wine")
    assert nudged == [("ml", "wine")]
    harness.api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")  # the same failure: nothing new to say
    assert nudged == [("ml", "wine")]
    harness.api.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "wine", "namespace": "ml", "resourceVersion": "1"},
            "spec": {"rules": [{"backendRefs": [{"name": "wine", "port": 80}]}]},
        }
    )
    await harness.reconciler.reconcile("ml", "wine")  # made: routing applied again
    assert nudged == [("ml", "wine")] * 2


async def test_a_routing_failure_whose_event_post_failed_is_posted_by_the_retried_cycle() -> None:
    # Taken as said before a post that failed (503), the failure would never be said: every
    # later cycle sees the same failure and posts nothing.
    from test_reconciler import Harness, model_deployment

    from vigil.kube.client import KubeError
    from vigil.operator.reconciler import RetryLater

    harness = Harness()
    harness.reconciler.rollouts = Rollouts(running_in(lambda: {}), sidecar_image="sidecar:test")
    attempts: list[str] = []

    async def post_event(api: Any, body: Any, event: Any) -> None:
        attempts.append(event.reason)
        if event.reason == "RoutingFailed" and attempts.count("RoutingFailed") == 1:
            raise KubeError(503, "POST events: etcd leader changed")
        harness.events.append(event)

    harness.reconciler._post_event = post_event
    gateway = {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}
    harness.api.add(model_deployment(rollout=gateway))
    retried = 0
    for _ in range(4):
        try:
            await harness.reconciler.reconcile("ml", "wine")
        except RetryLater as error:
            assert "RoutingFailed Event not posted" in str(error)
            retried += 1
        harness.api.make_ready()

    assert retried == 1
    assert [e.reason for e in harness.events].count("RoutingFailed") == 1
    assert attempts.count("RoutingFailed") == 2


def test_routing_events_are_named_by_their_route_and_failure_not_by_the_process() -> None:
    # A restarted operator (its failures forgotten) posts the same failure under the same
    # name, which the API server then refuses as a repeat instead of showing it twice.
    from vigil.core.events import event_name

    api = RecordingApi()
    route = api.route
    api.route = None  # type: ignore[assignment]
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    before, after = (
        asyncio.run(Rollouts(running_in(lambda: {})).route(api, GATEWAY_BODY, action))  # type: ignore[arg-type]
        for _ in range(2)
    )
    moved = {**GATEWAY_BODY, "metadata": {**GATEWAY_BODY["metadata"], "resourceVersion": "9"}}

    def name(body: Any, event: Any) -> str:
        return event_name(body, "Warning", event.reason, event.message, event.occurrence)

    assert name(GATEWAY_BODY, before[0]) == name(moved, after[0])
    other = Route("s1", "c2", Traffic(20, 0, 1, 2), http_route="wine")  # another rollout
    (again,) = asyncio.run(Rollouts(running_in(lambda: {})).route(api, GATEWAY_BODY, other))  # type: ignore[arg-type]
    assert name(GATEWAY_BODY, again) != name(GATEWAY_BODY, before[0])
    rollouts = Rollouts(running_in(lambda: {}))
    asyncio.run(rollouts.route(api, GATEWAY_BODY, action))  # type: ignore[arg-type]
    api.route = route
    (applied,) = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))  # type: ignore[arg-type]
    assert applied.reason == "RoutingApplied" and "wine" in applied.occurrence


def test_the_same_routing_failure_after_a_recovery_is_a_new_event() -> None:
    # Under the first failure's name the API server refuses it as a repeat for an hour: a
    # route deleted again after it was fixed would hold the rollout with no Warning shown.
    from vigil.core.events import event_name

    api = RecordingApi()
    route = api.route
    action = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")
    rollouts = Rollouts(running_in(lambda: {}))
    said = []
    for present in (None, route, None, route):
        api.route = present  # type: ignore[assignment]
        (event,) = asyncio.run(rollouts.route(api, GATEWAY_BODY, action))  # type: ignore[arg-type]
        said.append(event)
    names = [event_name(GATEWAY_BODY, "Warning", e.reason, e.message, e.occurrence) for e in said]
    assert [e.reason for e in said] == ["RoutingFailed", "RoutingApplied"] * 2
    assert len(set(names)) == 4


async def test_a_refused_route_still_weighting_a_revision_holds_the_plans_step() -> None:
    # Left as it is (refs of one rule differing), the route still sends 20 % to the
    # candidate's Service: the plan's rollback went on and deleted it (live requests to a
    # Service that is gone fail) while status said RolledBack. Now the step waits, saying why.
    from test_reconciler import Harness, model_deployment

    from vigil.core.reconcile import Delete
    from vigil.kube.client import KubeError

    harness = Harness()
    harness.reconciler.rollouts = Rollouts(running_in(lambda: {}), sidecar_image="sidecar:test")
    stable, candidate = "wine-aaaaaaa", "wine-bbbbbbb"
    for service in (stable, candidate):
        labels = {"vigil.dev/model-deployment": "wine"}
        harness.api.add(
            {"kind": "Service", "metadata": {"name": service, "namespace": "ml", "labels": labels}}
        )
    filtered = {"name": candidate, "port": 80, "weight": 20, "filters": [{"type": "X"}]}
    route = {
        "kind": "HTTPRoute",
        "metadata": {"name": "wine", "namespace": "ml", "resourceVersion": "7"},
        "spec": {
            "rules": [{"backendRefs": [{"name": stable, "port": 80, "weight": 80}, filtered]}]
        },
    }
    harness.api.add(route)
    body = model_deployment(rollout={"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}})
    body["status"] = {"phase": "Progressing", "stable": {"revision": "aaaaaaa"}}
    harness.api.add(body)
    back = Route("aaaaaaa", None, Traffic(0, 0, 0, 2), http_route="wine")
    plan = Plan(
        actions=[back, Delete("Service", candidate), Delete("Deployment", candidate)],
        status={"phase": "RolledBack", "stable": {"revision": "aaaaaaa"}},
    )
    with pytest.raises(KubeError) as held:
        await harness.reconciler._write(harness.api, body, plan)
    assert held.value.retryable
    assert not [w for w in harness.api.writes if w[0] == "delete"]
    assert [e.reason for e in harness.events] == ["RoutingFailed"]  # no ReconcileFailed too
    status = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == ("Failed", "RoutingFailed")
    assert f"still sends traffic to {stable}, {candidate}" in ready["message"]
    assert "spec.rules[0]" in ready["message"]

    route["spec"]["rules"][0]["backendRefs"][1].pop("filters")  # fixed by its owner
    await harness.reconciler._write(harness.api, body, plan)
    assert ("delete", "Service", candidate) in harness.api.writes
    refs = harness.api.objects[("HTTPRoute", "ml", "wine")]["spec"]["rules"][0]["backendRefs"]
    assert [r["name"] for r in refs] == ["wine"]


def test_a_route_naming_none_of_the_models_revisions_lets_the_plan_go_on() -> None:
    # A missing route, or one of ours weighting only <name>: nothing to keep serving.
    api = RecordingApi()
    api.route = None  # type: ignore[assignment]
    action = Route("s1", None, Traffic(0, 0, 0, 2), http_route="wine")
    (failed,) = asyncio.run(Rollouts(running_in(lambda: {})).route(api, GATEWAY_BODY, action))  # type: ignore[arg-type]
    assert failed.reason == "RoutingFailed"


async def test_a_refused_route_holds_the_switch_of_the_live_service_too() -> None:
    # The writes before the route went on: the Service <name> selected the candidate (all
    # in-cluster callers on it) while status said the old stable serves.
    from test_reconciler import Harness, backend_refs, model_deployment

    from vigil.operator.reconciler import RetryLater

    class SilentCandidate(Rollouts):
        async def candidate_url(self, namespace: str, name: str, revision: str) -> None:
            return None

    harness = Harness()
    api = harness.api
    harness.reconciler.rollouts = SilentCandidate(running_in(lambda: {}))
    routing = {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}
    api.add(model_deployment(rollout=routing))
    refs = [{"name": "wine", "port": 80}]
    api.add(
        {
            "kind": "HTTPRoute",
            "metadata": {"name": "wine", "namespace": "ml"},
            "spec": {"rules": [{"backendRefs": refs}]},
        }
    )
    await harness.reconciler.reconcile("ml", "wine")
    api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")
    stable = api.objects[("ModelDeployment", "ml", "wine")]["status"]["stable"]["revision"]
    service = json.loads(json.dumps(api.objects[("Service", "ml", "wine")]))
    service["metadata"]["name"] = f"wine-{stable}"
    api.add(service)
    changed = model_deployment(version="2", rollout=routing)
    changed["metadata"]["generation"] = 2
    changed["status"] = api.objects[("ModelDeployment", "ml", "wine")]["status"]
    api.add(changed)
    await harness.reconciler.reconcile("ml", "wine")  # the candidate starts (blue/green)
    api.make_ready()
    backend_refs(api)[:] = [  # its owner edits the route: two refs of the model differ
        {"name": f"wine-{stable}", "port": 80, "weight": 50},
        {"name": "wine", "port": 80, "weight": 50, "filters": [{"type": "X"}]},
    ]
    selector = dict(api.objects[("Service", "ml", "wine")]["spec"]["selector"])
    before = len(api.writes)
    with pytest.raises(RetryLater):
        await harness.reconciler.reconcile("ml", "wine")
    assert [w for w in api.writes[before:] if w[0] != "status"] == []
    assert api.objects[("Service", "ml", "wine")]["spec"]["selector"] == selector
    status = api.objects[("ModelDeployment", "ml", "wine")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RoutingFailed" and "; not done until then: " in ready["message"]

    backend_refs(api)[1].pop("filters")  # fixed: the switch goes on
    await harness.reconciler.reconcile("ml", "wine")
    assert api.objects[("Service", "ml", "wine")]["spec"]["selector"] != selector
