"""The health loop's discipline: one cycle for all, grouped sources, writes only on change.

The API is the in-memory stand-in of test_reconciler and the metrics source
a recorded stand-in (unit tests of the domain layer; tests/e2e/health runs
the real operator against real sidecars, MLServer and Prometheus).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from test_reconciler import NOW, MemoryApi

from vigil.core.health import HealthReport
from vigil.core.health_status import health_conditions
from vigil.core.reconcile import Event
from vigil.core.spec.health import HealthPolicy
from vigil.core.vocabulary import ConditionType
from vigil.core.window import RealizedPerformance, RevisionWindow, Scrape
from vigil.metrics import Collection, PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.pool import SourcePool
from vigil.operator.health import HealthLoop, _degraded_by, _drifted, pod_info
from vigil.operator.metrics import OperatorMetrics
from vigil.operator.reconciler import Reconciler, ReconcilerConfig, reference_digest
from vigil.profile import Validation, build_profile

GOOD = RevisionWindow(
    requests_by_outcome={"success": 100.0},
    latency_buckets=((0.05, 90.0), (0.1, 100.0), (math.inf, 100.0)),
)
BAD = RevisionWindow(
    requests_by_outcome={"success": 90.0, "model_error": 10.0},
    latency_buckets=((0.05, 90.0), (0.1, 100.0), (math.inf, 100.0)),
)


class FakeSource:
    """Answers what the test says; records every call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[list[RevisionTarget]] = []
        self.windows: dict[tuple[str, str, str], RevisionWindow] = {}
        self.error: str | None = None
        self.unanswered: dict[tuple[str, str, str], str] = {}
        self.closed = False
        self.forgotten: list[tuple[str, str]] = []

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        self.calls.append(list(targets))
        result = Collection(queries=15 if self.name == "prometheus" else 0)
        result.unanswered.update(self.unanswered)
        for target in targets:
            if self.error:
                result.errors[target.key] = self.error
            elif target.key in self.windows:
                result.windows[target.key] = self.windows[target.key]
            else:
                result.errors[target.key] = "no sidecar answered"
        return result

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))

    async def close(self) -> None:
        self.closed = True


def md(name: str = "wine", revision: str = "r1", **monitoring: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "model": {"version": "1"},
            "server": {"image": "img:1"},
            "monitoring": {"window": "30s", **monitoring},
            "rollout": {"analysis": {"minRequests": 20}},
        },
        "status": {
            "phase": "Healthy",
            "stable": {"revision": revision},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": ""}
            ],
        },
    }


def pod(name: str, model: str = "wine", revision: str = "r1", ip: str = "10.0.0.1") -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"vigil.dev/model-deployment": model, "vigil.dev/revision": revision},
        },
        "status": {"phase": "Running", "podIP": ip},
    }


class Loop:
    def __init__(self) -> None:
        self.api = MemoryApi()
        self.events: list[Event] = []
        self.metrics = OperatorMetrics()
        self.sources: dict[tuple[str, str], FakeSource] = {}
        reconciler = Reconciler(
            api_factory=lambda: self.api,
            config=ReconcilerConfig(sidecar_image="sidecar:test"),
            metrics=self.metrics,
            post_event=self.post_event,
            clock=lambda: NOW,
        )
        self.now = NOW
        self.loop = HealthLoop(
            lambda: self.api,
            reconciler,
            self.metrics,
            interval=3,
            sources=SourcePool(self._source),
            clock=lambda: self.now.timestamp(),
        )

    async def post_event(self, api: Any, body: Any, event: Event) -> None:
        self.events.append(event)

    def _source(self, key: tuple[str, str]) -> FakeSource:
        return self.sources.setdefault(key, FakeSource(key[0]))

    def add(self, body: dict[str, Any], *pods: dict[str, Any]) -> None:
        self.api.add(body)
        self.loop.observe_model("ADDED", body)
        for item in pods:
            self.loop.observe_pod("ADDED", item)

    async def cycle(self) -> Any:
        result = await self.loop.cycle()
        # The watch hands the loop the object as written.
        for (kind, _, _), obj in self.api.objects.items():
            if kind == "ModelDeployment":
                self.loop.observe_model("MODIFIED", obj)
        self.now += datetime.timedelta(seconds=3)
        return result

    def status(self, name: str = "wine") -> dict[str, Any]:
        return self.api.objects[("ModelDeployment", "ml", name)]["status"]

    def condition(self, kind: str, name: str = "wine") -> dict[str, Any]:
        return next(c for c in self.status(name)["conditions"] if c["type"] == kind)

    def sample(self, metric: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(metric, labels)


@pytest.fixture
def loop() -> Loop:
    return Loop()


async def test_a_healthy_revision_gets_figures_conditions_and_gauges(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    direct = loop._source(("direct", ""))
    direct.windows[("ml", "wine", "r1")] = GOOD
    result = await loop.cycle()
    assert result.evaluated == 1 and result.written == 1
    (targets,) = direct.calls
    assert [p.ip for p in targets[0].pods] == ["10.0.0.1"]
    assert targets[0].pods[0].port == 9090 and targets[0].window_seconds == 30
    health = loop.status()["health"]
    assert health["requests"] == 100 and health["errorRate"] == 0 and health["window"] == "30s"
    assert health["revision"] == "r1"
    assert loop.condition("Healthy")["status"] == "True"
    assert loop.condition("MetricsAvailable")["status"] == "True"
    assert loop.status()["phase"] == "Healthy"
    md_labels = {"namespace": "ml", "name": "wine"}
    assert loop.sample("vigil_modeldeployment_error_rate", **md_labels, revision="r1") == 0
    assert loop.sample("vigil_modeldeployment_metrics_available", **md_labels) == 1
    assert loop.sample("vigil_modeldeployment_slo_max_error_rate", **md_labels) == 0.01
    assert loop.sample("vigil_modeldeployment_phase", **md_labels, phase="Healthy") == 1
    assert loop.sample("vigil_health_cycle_seconds_count") == 1
    # Healthy and MetricsAvailable appeared True: Events for both.
    assert {e.reason for e in loop.events} == {"SLOsMet", "MetricsCollected"}


def count_reads(loop: Loop) -> list[tuple[str, str]]:
    """The (kind, name) of each read the loop's API answers from now on."""
    reads: list[tuple[str, str]] = []
    get = loop.api.get

    async def counting_get(kind: str, namespace: str, name: str) -> Any:
        reads.append((kind, name))
        return await get(kind, namespace, name)

    loop.api.get = counting_get  # type: ignore[method-assign]
    return reads


async def test_unchanged_figures_write_nothing_even_though_time_passed(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = GOOD
    await loop.cycle()
    first = loop.status()["health"]["evaluatedAt"]
    writes = len(loop.api.writes)
    reads = count_reads(loop)
    result = await loop.cycle()
    assert result.written == 0 and len(loop.api.writes) == writes
    assert reads == []  # the watched copy was enough: not even a read
    assert loop.status()["health"]["evaluatedAt"] == first


async def test_metrics_available_names_the_sidecars_that_did_not_answer(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"), pod("wine-b"))
    source = loop._source(("direct", ""))
    source.windows[("ml", "wine", "r1")] = GOOD
    await loop.cycle()
    assert loop.condition("MetricsAvailable")["message"] == "100 requests over 30s"
    source.unanswered[("ml", "wine", "r1")] = "1 of 2 sidecars answered; wine-b: HTTP 503"
    await loop.cycle()
    available = loop.condition("MetricsAvailable")
    assert available["status"] == "True", available
    assert available["message"] == (
        "100 requests over 30s (1 of 2 sidecars answered; wine-b: HTTP 503)"
    )


async def test_an_slo_breach_degrades_with_an_event(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    source = loop._source(("direct", ""))
    source.windows[("ml", "wine", "r1")] = GOOD
    await loop.cycle()
    loop.events.clear()
    source.windows[("ml", "wine", "r1")] = BAD
    await loop.cycle()
    healthy = loop.condition("Healthy")
    assert healthy["status"] == "False" and healthy["reason"] == "ErrorRateHigh"
    assert "error rate 10.0% > 1.0% over 30s" in healthy["message"]
    assert loop.status()["phase"] == "Degraded"
    assert [(e.reason, e.warning) for e in loop.events] == [("ErrorRateHigh", True)]
    labels = {"namespace": "ml", "name": "wine"}
    assert loop.sample("vigil_modeldeployment_phase", **labels, phase="Degraded") == 1
    assert loop.sample("vigil_modeldeployment_error_rate", **labels, revision="r1") == 0.1


async def test_a_failing_source_keeps_figures_stale_and_changes_no_verdict(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    source = loop._source(("direct", ""))
    source.windows[("ml", "wine", "r1")] = BAD
    await loop.cycle()
    before = loop.status()
    source.error = "no sidecar answered (1 pods): wine-a: ClientConnectorError"
    await loop.cycle()
    after = loop.status()
    metrics = loop.condition("MetricsAvailable")
    assert metrics["status"] == "False" and "ClientConnectorError" in metrics["message"]
    assert after["health"] == {**before["health"], "stale": True}
    assert loop.condition("Healthy")["status"] == "False"  # unchanged
    assert after["phase"] == "Degraded"
    labels = {"namespace": "ml", "name": "wine"}
    assert loop.sample("vigil_modeldeployment_metrics_available", **labels) == 0
    assert loop.sample("vigil_modeldeployment_error_rate", **labels, revision="r1") == 0.1
    # Back: fresh figures, not stale.
    source.error = None
    await loop.cycle()
    assert "stale" not in loop.status()["health"]
    assert loop.condition("MetricsAvailable")["status"] == "True"


@pytest.mark.parametrize(
    "meanwhile",
    [
        pytest.param(("status", "stable", {"revision": "r2"}), id="promoted"),
        pytest.param(("metadata", "uid", "uid-recreated"), id="recreated"),
    ],
)
async def test_a_verdict_is_written_only_onto_what_was_judged(
    loop: Loop, meanwhile: tuple[str, str, Any]
) -> None:
    # The watched copy serves r1; before the write (which may wait for a promoting
    # reconcile) the object serves r2, or is another object of the same name.
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = BAD
    part, key, value = meanwhile
    loop.api.objects[("ModelDeployment", "ml", "wine")][part][key] = value
    result = await loop.loop.cycle()
    assert result.evaluated == 1 and result.written == 0
    assert loop.api.writes == [] and loop.events == []


async def test_prometheus_models_share_one_source_per_url(loop: Loop) -> None:
    url = {"metrics": {"source": "prometheus", "prometheusURL": "http://prom:9090"}}
    for index in range(5):
        loop.add(md(f"m{index}", **url))
    loop.add(md("other", metrics={"source": "prometheus", "prometheusURL": "http://b:9090/"}))
    loop.add(md("plain"), pod("plain-a", model="plain"))
    result = await loop.cycle()
    assert set(loop.sources) == {
        ("prometheus", "http://prom:9090"),
        ("prometheus", "http://b:9090"),
        ("direct", ""),
    }
    assert [len(call) for call in loop.sources[("prometheus", "http://prom:9090")].calls] == [5]
    assert result.queries == 30  # 15 per Prometheus, whatever the number of models
    assert result.evaluated == 7


async def test_only_running_pods_of_the_serving_revision_are_scraped(loop: Loop) -> None:
    pending = pod("wine-c", ip="")
    pending["status"] = {"phase": "Pending"}
    loop.add(
        md(),
        pod("wine-a", ip="10.0.0.1"),
        pod("wine-old", revision="r0", ip="10.0.0.2"),
        pod("other", model="other", ip="10.0.0.3"),
        pending,
    )
    await loop.cycle()
    (targets,) = loop.sources[("direct", "")].calls
    assert [p.name for p in targets[0].pods] == ["wine-a"]
    loop.loop.observe_pod("DELETED", pod("wine-a"))
    await loop.cycle()
    assert loop.sources[("direct", "")].calls[-1][0].pods == ()


async def test_models_without_a_serving_revision_are_not_judged(loop: Loop) -> None:
    body = md()
    body["status"] = {"phase": "Pending"}
    loop.add(body)
    result = await loop.cycle()
    assert result.evaluated == 0 and not loop.api.writes


async def test_a_deleted_model_loses_its_series(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = GOOD
    await loop.cycle()
    assert loop.sample("vigil_modeldeployment_metrics_available", namespace="ml", name="wine")
    loop.loop.observe_model("DELETED", loop.api.objects.pop(("ModelDeployment", "ml", "wine")))
    assert loop.sources[("direct", "")].forgotten == [("ml", "wine")]  # its scrapes too
    for metric in (
        "vigil_modeldeployment_metrics_available",
        "vigil_modeldeployment_drift_threshold",
    ):
        assert loop.sample(metric, namespace="ml", name="wine") is None
    assert (
        loop.sample("vigil_modeldeployment_phase", namespace="ml", name="wine", phase="Healthy")
        is None
    )
    result = await loop.cycle()
    assert result.evaluated == 0
    assert loop.sources[("direct", "")].closed  # no model uses it any more


async def test_a_model_deleted_while_the_cycle_collects_gets_no_series_back(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    direct = loop._source(("direct", ""))
    direct.windows[("ml", "wine", "r1")] = GOOD
    collect = direct.collect

    async def deleted_meanwhile(targets: Sequence[RevisionTarget], now: float) -> Collection:
        collected = await collect(targets, now)
        loop.loop.observe_model("DELETED", loop.api.objects.pop(("ModelDeployment", "ml", "wine")))
        return collected

    direct.collect = deleted_meanwhile  # type: ignore[method-assign]
    await loop.cycle()
    named = {"namespace": "ml", "name": "wine"}
    assert loop.sample("vigil_modeldeployment_metrics_available", **named) is None
    assert not loop.api.writes


def test_a_deleted_model_loses_its_rollout_series(loop: Loop) -> None:
    metrics = loop.metrics
    metrics.rollout_finished("ml", "wine", "Promoted")
    running = {"weight": 20, "lastAnalysisAt": "2026-12-05T00:00:00Z"}
    gates = [{"name": "errorRate", "passed": True}]
    metrics.rollout_progress("ml", "wine", {}, {**running, "gates": gates}, None, 0.0)
    metrics.rollout_finished("ml", "other", "Promoted")
    named = {"namespace": "ml", "name": "wine"}
    assert loop.sample("vigil_rollout_weight", **named) == 20
    metrics.forget("ml", "wine")
    assert loop.sample("vigil_rollout_weight", **named) is None
    assert loop.sample("vigil_rollouts_total", **named, outcome="Promoted") is None
    analysis = {**named, "gate": "errorRate", "result": "passed"}
    assert loop.sample("vigil_rollout_analysis_total", **analysis) is None
    other = {"namespace": "ml", "name": "other", "outcome": "Promoted"}
    assert loop.sample("vigil_rollouts_total", **other) == 1


def test_a_models_rollout_outcomes_are_counted_from_0_as_soon_as_the_watch_shows_it(
    loop: Loop,
) -> None:
    # The rollout alerts take increase() over an hour: a series first scraped at 1 (a first
    # rollback) shows none, and one met at 2 (scraping begun later) is no new rollback.
    loop.loop.observe_model("ADDED", md())
    named = {"namespace": "ml", "name": "wine"}
    for outcome in ("Promoted", "RolledBack", "Failed"):
        assert loop.sample("vigil_rollouts_total", **named, outcome=outcome) == 0
    loop.metrics.rollout_finished("ml", "wine", "RolledBack")
    loop.loop.observe_model("MODIFIED", md())  # seen again: counted on, not from 0 again
    assert loop.sample("vigil_rollouts_total", **named, outcome="RolledBack") == 1
    loop.loop.observe_model("DELETED", md())
    assert loop.sample("vigil_rollouts_total", **named, outcome="RolledBack") is None
    loop.loop.observe_model("ADDED", md())  # created again under its name: from 0
    assert loop.sample("vigil_rollouts_total", **named, outcome="RolledBack") == 0


def with_reference(loop: Loop) -> dict[str, Any]:
    """A model whose reference profile is the ConfigMap ``ref`` (version 1), with traffic."""
    body = md(reference={"configMapKeyRef": {"name": "ref", "key": "profile.json"}})
    loop.add(body, pod("wine-a"))
    loop.api.add(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "ref", "namespace": "ml", "resourceVersion": "1"},
            "data": {"profile.json": "{}"},
        }
    )
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = GOOD
    return body


async def test_a_reference_many_models_share_is_read_once_a_cycle(loop: Loop) -> None:
    # Read for each model: a thousand idle models sharing one cost 33 GETs a second.
    reads = count_reads(loop)
    with_reference(loop)
    for name in ("beer", "cider"):
        loop.add(
            md(name, reference={"configMapKeyRef": {"name": "ref", "key": "profile.json"}}),
            pod(f"{name}-a", model=name, ip="10.0.0.2" if name == "beer" else "10.0.0.3"),
        )
        loop._source(("direct", "")).windows[("ml", name, "r1")] = GOOD
    await loop.cycle()
    reads.clear()
    await loop.cycle()
    assert reads.count(("ConfigMap", "ref")) == 1


async def test_the_reference_is_parsed_once_per_resource_version(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigil.operator import health as module

    parsed: list[str] = []
    monkeypatch.setattr(module, "parse_profile", lambda text: parsed.append(text) or None)
    with_reference(loop)
    await loop.cycle()
    await loop.cycle()
    assert parsed == ["{}"]
    loop.api.objects[("ConfigMap", "ml", "ref")]["metadata"]["resourceVersion"] = "2"
    await loop.cycle()
    assert len(parsed) == 2


async def test_a_reference_edited_in_place_reconciles_its_models(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No watch sees the ConfigMap (none of the operator's labels): the reconcile that
    # replaces the pods (their sidecars read the profile at their start) came late or never.
    nudged: list[tuple[str, str]] = []
    reconciler = loop.loop.reconciler
    monkeypatch.setattr(reconciler, "nudge", lambda ns, name, delay=0.0: nudged.append((ns, name)))
    with_reference(loop)
    await loop.cycle()
    await loop.cycle()
    assert nudged == []
    loop.api.objects[("ConfigMap", "ml", "ref")]["metadata"]["resourceVersion"] = "2"
    await loop.cycle()
    assert nudged == [("ml", "wine")]
    await loop.cycle()
    assert nudged == [("ml", "wine")]
    # Deleted, seen missing, then created again (a GitOps delete-and-create): new too.
    configmap = loop.api.objects.pop(("ConfigMap", "ml", "ref"))
    await loop.cycle()
    assert nudged == [("ml", "wine")]
    configmap["metadata"]["resourceVersion"] = "7"
    loop.api.add(configmap)
    await loop.cycle()
    await loop.cycle()
    assert nudged == [("ml", "wine")] * 2


async def test_a_malformed_reference_is_its_models_problem_and_the_others_are_judged(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    # "drift": "psi" is an easy slip; the parser raised AttributeError, which ended the
    # whole cycle: no model was judged or written, every cycle.
    with_reference(loop)
    example = Path(__file__).resolve().parents[3] / "manifests/examples/new-model/profile.json"
    profile = json.loads(example.read_text())
    profile.pop("fingerprint", None)
    profile["drift"] = "psi"
    loop.api.objects[("ConfigMap", "ml", "ref")]["data"]["profile.json"] = json.dumps(profile)
    loop.add(md("other", "o1"), pod("other-a", model="other", revision="o1", ip="10.0.0.9"))
    loop._source(("direct", "")).windows[("ml", "other", "o1")] = GOOD
    result = await loop.cycle()
    assert (result.evaluated, result.failed) == (2, 0)
    assert loop.status("other")["health"]["verdict"] == "Healthy"
    # Judged without a reference (no drift figures), the reason logged.
    assert loop.status("wine")["health"]["drift"] == {"method": "psi", "level": "unknown"}
    assert (
        "ml/wine: reference ConfigMap ref/profile.json: invalid reference profile: drift "
        "must be an object" in caplog.text
    )


def test_the_reference_digest_follows_the_profiles_text() -> None:
    def configmap(text: str) -> dict[str, Any]:
        return {"metadata": {"name": "ref"}, "data": {"profile.json": text}}

    first = reference_digest(configmap('{"a": 1}'), "profile.json")
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    assert reference_digest(configmap('{"a": 1}'), "profile.json") == first
    assert reference_digest(configmap('{"a": 2}'), "profile.json") != first
    assert reference_digest(configmap("{}"), "other.json") == ""
    assert reference_digest(None, "profile.json") == ""


def test_pod_info_reads_labels_ip_and_phase() -> None:
    info = pod_info(pod("a", ip="10.1.1.1"))
    assert info is not None and info.running and info.ip == "10.1.1.1"
    assert pod_info({"metadata": {"labels": {}}}) is None
    going = pod("a")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not pod_info(going).running  # type: ignore[union-attr]
    assert pod_info(going).leaving  # type: ignore[union-attr]
    assert not pod_info(pod("a")).leaving  # type: ignore[union-attr]


async def test_a_pod_being_deleted_is_scraped_apart_until_it_stops(loop: Loop) -> None:
    loop.add(md(), pod("wine-a", ip="10.0.0.1"), pod("wine-b", ip="10.0.0.2"))
    going = pod("wine-a", ip="10.0.0.1")
    grace_ends = loop.now + datetime.timedelta(seconds=30)
    going["metadata"]["deletionTimestamp"] = grace_ends.isoformat().replace("+00:00", "Z")
    loop.loop.observe_pod("MODIFIED", going)
    await loop.cycle()
    target = loop.sources[("direct", "")].calls[-1][0]
    assert [p.name for p in target.pods] == ["wine-b"]
    assert [(p.name, p.ip) for p in target.leaving] == [("wine-a", "10.0.0.1")]
    going["status"] = {"phase": "Succeeded"}  # its containers have stopped
    loop.loop.observe_pod("MODIFIED", going)
    await loop.cycle()
    assert loop.sources[("direct", "")].calls[-1][0].leaving == ()


async def test_a_leaving_pod_is_not_scraped_past_its_grace_or_at_an_ip_given_to_another(
    loop: Loop,
) -> None:
    loop.add(md(), pod("wine-b", ip="10.0.0.2"))
    grace_ends = loop.now + datetime.timedelta(seconds=30)
    for name, ip in (("wine-a", "10.0.0.1"), ("wine-c", "10.0.0.2")):
        going = pod(name, ip=ip)  # wine-c's IP is wine-b's now (its status is stale)
        going["metadata"]["deletionTimestamp"] = grace_ends.isoformat().replace("+00:00", "Z")
        loop.loop.observe_pod("MODIFIED", going)
    await loop.cycle()
    assert [p.name for p in loop.sources[("direct", "")].calls[-1][0].leaving] == ["wine-a"]
    # Still Running long past its grace period (its node lost): no longer asked.
    loop.now = grace_ends + datetime.timedelta(seconds=60)
    await loop.cycle()
    assert loop.sources[("direct", "")].calls[-1][0].leaving == ()


@pytest.mark.parametrize("judged", ["r1", None], ids=["this-revision", "unnamed-before"])
async def test_too_few_requests_right_after_a_start_hold_the_last_verdict(
    loop: Loop, judged: str | None
) -> None:
    body = md()
    body["status"]["health"] = {"evaluatedAt": "2025-12-31T23:59:00Z", "verdict": "Healthy"}
    if judged:  # else written before status.health named its revision: held all the same
        body["status"]["health"]["revision"] = judged
    body["status"]["conditions"].append(
        {"type": "Healthy", "status": "True", "reason": "SLOsMet", "message": ""}
    )
    loop.add(body, pod("wine-a"))
    few = RevisionWindow(requests_by_outcome={"success": 3.0})
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = few
    # A restarted operator has watched the pods for less than the 30 s window.
    for _ in range(10):  # 0 s .. 27 s
        result = await loop.cycle()
        assert result.held == 1 and not loop.api.writes
    # A full window later, too few requests is a verdict.
    await loop.cycle()
    assert loop.condition("Healthy")["status"] == "Unknown"


class SteadySidecar(DirectSource):
    """The direct source, its pods' sidecars answering one success a second since 0 s."""

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        labels = 'endpoint="infer",origin="live",outcome="success"'
        served = f"vigil_request_outcomes_total{{{labels}}} {now}"
        values, started_at = parse_sidecar_metrics(
            f"vigil_sidecar_start_time_seconds 0\n{served}\n"
        )
        return Scrape(now, started_at, values)


@pytest.mark.slow
async def test_a_window_made_longer_than_the_history_kept_holds_too_few_requests(
    loop: Loop,
) -> None:
    # 30 s and 20 requests made 10 min and 400: the source kept 30 s + 2 min of scrapes,
    # 150 requests. Written, "too few" flipped Healthy to Unknown for minutes on a
    # history shorter than the window the status names.
    loop.sources[("direct", "")] = cast(FakeSource, SteadySidecar())
    loop.add(md(), pod("wine-a"))
    for _ in range(240):  # 12 minutes: the operator has watched for longer than 10
        await loop.cycle()
    assert loop.status()["health"]["verdict"] == "Healthy"
    edited = copy.deepcopy(loop.api.objects[("ModelDeployment", "ml", "wine")])
    edited["spec"]["monitoring"]["window"] = "10m"
    edited["spec"]["rollout"]["analysis"]["minRequests"] = 400
    loop.api.add(edited)
    loop.loop.observe_model("MODIFIED", edited)
    held = 0
    while (await loop.cycle()).held:
        held += 1
        assert loop.status()["health"]["verdict"] == "Healthy"
    # Held until 400 requests were kept (the history 250 s longer, in 3-s cycles).
    assert 80 <= held <= 85, held
    assert loop.status()["health"]["verdict"] == "Healthy"
    assert loop.status()["health"]["requests"] >= 400


def promoted_right_after_a_start(loop: Loop) -> None:
    """r0's figures and verdict in status (Healthy), r1 promoted in the operator's first
    window: the direct source's history is shorter than the window."""
    body = md(revision="r1")
    body["status"]["health"] = {
        "evaluatedAt": "2025-12-31T23:59:00Z",
        "revision": "r0",
        "window": "30s",
        "verdict": "Healthy",
        "requests": 900,
        "errorRate": 0.001,
    }
    body["status"]["conditions"].append(
        {"type": "Healthy", "status": "True", "reason": "SLOsMet", "message": "r0's figures"}
    )
    loop.add(body, pod("wine-a"))


async def test_a_revision_promoted_right_after_a_start_is_judged_not_held(loop: Loop) -> None:
    # The hold is for the revision the last verdict judged: r0's Healthy and figures
    # stood for r1 for a whole window, with no gauges.
    promoted_right_after_a_start(loop)
    few = RevisionWindow(requests_by_outcome={"success": 3.0})
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = few
    result = await loop.cycle()
    assert result.held == 0 and result.written == 1
    health = loop.status()["health"]
    assert (health["revision"], health["verdict"], health["requests"]) == (
        "r1",
        "InsufficientData",
        3,
    )
    assert loop.condition("Healthy")["status"] == "Unknown"
    assert loop.sample("vigil_modeldeployment_metrics_available", namespace="ml", name="wine")


async def test_no_metrics_for_a_promoted_revision_show_no_figures_of_the_last(
    loop: Loop,
) -> None:
    # r1 has no figures yet: r0's are not shown as r1's (stale or not); the verdict's
    # conditions keep their last value, as when any source fails.
    promoted_right_after_a_start(loop)
    await loop.cycle()  # no window for r1: "no sidecar answered"
    assert loop.status()["health"] == {
        "evaluatedAt": "2026-01-01T00:00:00Z",
        "revision": "r1",
        "window": "30s",
        "verdict": "MetricsUnavailable",
        "requests": 0,
    }
    assert loop.condition("Healthy")["message"] == "r0's figures"
    assert loop.condition("MetricsAvailable")["status"] == "False"


async def test_unavailable_metrics_without_figures_are_written_once(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    await loop.cycle()  # no window for r1: "no sidecar answered"
    assert loop.status()["health"]["verdict"] == "MetricsUnavailable"
    writes = len(loop.api.writes)
    await loop.cycle()
    assert len(loop.api.writes) == writes
    assert "stale" not in loop.status()["health"]


async def test_sidecars_that_do_not_answer_are_counted(loop: Loop) -> None:
    class Flaky(FakeSource):
        async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
            result = await super().collect(targets, now)
            result.scrapes, result.scrape_failures = 2, 1
            return result

    loop.sources[("direct", "")] = Flaky("direct")
    loop.add(md(), pod("wine-a"), pod("wine-b", ip="10.0.0.2"))
    loop.sources[("direct", "")].windows[("ml", "wine", "r1")] = GOOD
    result = await loop.cycle()
    assert result.scrape_failures == 1
    assert loop.sample("vigil_health_scrape_failures_total") == 1
    assert loop.condition("MetricsAvailable")["status"] == "True"  # the other one answered


async def test_a_source_that_raises_fails_only_its_group(loop: Loop) -> None:
    class Broken(FakeSource):
        async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
            raise RuntimeError("boom")

    loop.sources[("prometheus", "http://p:9090")] = Broken("prometheus")
    loop.add(md("a", metrics={"source": "prometheus", "prometheusURL": "http://p:9090"}))
    loop.add(md("b"), pod("b-1", model="b"))
    loop.sources.setdefault(("direct", ""), FakeSource("direct")).windows[("ml", "b", "r1")] = GOOD
    await loop.cycle()
    assert loop.condition("MetricsAvailable", "a")["status"] == "False"
    assert "boom" in loop.condition("MetricsAvailable", "a")["message"]
    assert loop.condition("MetricsAvailable", "b")["status"] == "True"


def test_watch_handlers_feeding_the_loop_do_not_log_every_event() -> None:
    import logging

    from vigil.operator.runtime import QuietWatchHandlers

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, "", 0, message, None, None)

    quiet = QuietWatchHandlers()
    assert not quiet.filter(record("Handler 'model_pod_seen' succeeded."))
    assert not quiet.filter(record("Handler 'model_deployment_seen' succeeded."))
    assert not quiet.filter(record("Handler 'child_changed' succeeded."))
    assert quiet.filter(record("Handler 'reconcile_model_deployment' succeeded."))
    assert quiet.filter(record("Handler 'model_pod_seen' failed with an exception."))


async def test_a_first_deployment_still_under_way_is_not_judged(loop: Loop) -> None:
    # Its pods run but the revision has not been Ready yet: no "metrics unavailable"
    # verdict, Event or status write for a model that is still coming up.
    body = md()
    body["status"]["phase"] = "Progressing"
    body["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "reason": "Deploying", "message": "1/2 ready"}
    ]
    loop.add(body, pod("wine-a"))
    result = await loop.cycle()
    assert result.evaluated == 0 and not loop.api.writes and not loop.events


class TestRealizedPerformance:
    """Labels judged each cycle: status.health.performance, PerformanceDegraded, gauges."""

    @staticmethod
    def with_labels(scored: float, correct: float) -> RevisionWindow:
        realized = RealizedPerformance(
            labels_by_outcome={"joined": scored, "unknown": 7.0, "duplicate": 3.0},
            scored_by_class={"0": scored},
            correct_by_class={"0": correct},
        )
        return replace(GOOD, realized=realized)

    async def test_labels_below_the_baseline_degrade_with_an_event_and_gauges(
        self, loop: Loop
    ) -> None:
        profile = build_profile(
            np.arange(40.0).reshape(-1, 1),
            predictions=np.arange(40) % 2,
            task="classification",
        )
        profile = dataclasses.replace(profile, validation=Validation("holdout", 400, accuracy=0.9))
        ref = {"configMapKeyRef": {"name": "ref", "key": "profile.json"}}
        loop.add(md(reference=ref, performance={"window": "2h", "minLabels": 50}), pod("wine-a"))
        loop.api.add(
            {
                "kind": "ConfigMap",
                "metadata": {"name": "ref", "namespace": "ml", "resourceVersion": "1"},
                "data": {"profile.json": profile.to_json()},
            }
        )
        source = loop._source(("direct", ""))
        source.windows[("ml", "wine", "r1")] = self.with_labels(400, 372)
        await loop.cycle()
        (targets,) = source.calls
        assert targets[0].labels_window_seconds == 7200
        assert loop.condition("PerformanceDegraded")["reason"] == "PerformanceMet"
        loop.events.clear()

        source.windows[("ml", "wine", "r1")] = self.with_labels(400, 300)
        await loop.cycle()
        condition = loop.condition("PerformanceDegraded")
        assert (condition["status"], condition["reason"]) == ("True", "PerformanceBelowThreshold")
        assert "accuracy 0.750" in condition["message"]
        assert (
            "< threshold 0.855 (baseline 0.9 holdout, maxDrop 5%) over 2h" in condition["message"]
        )
        assert loop.status()["phase"] == "Degraded"
        assert [(e.reason, e.warning) for e in loop.events] == [("PerformanceBelowThreshold", True)]
        performance = loop.status()["health"]["performance"]
        assert (performance["labels"], performance["accuracy"]) == (400, 0.75)
        assert performance["notJoined"] == {"duplicate": 3, "unknown": 7}
        assert loop.status()["health"]["readable"]["realized"] == "75%"
        md_labels = {"namespace": "ml", "name": "wine"}
        revision = {**md_labels, "revision": "r1"}
        assert loop.sample("vigil_modeldeployment_realized_accuracy", **revision) == 0.75
        assert loop.sample("vigil_modeldeployment_labels", **revision, outcome="joined") == 400
        assert loop.sample("vigil_modeldeployment_labels", **revision, outcome="unknown") == 7
        assert loop.sample("vigil_modeldeployment_performance_degraded", **md_labels) == 1
        assert loop.sample("vigil_modeldeployment_performance_baseline", **md_labels) == 0.9
        assert loop.sample(
            "vigil_modeldeployment_performance_threshold", **md_labels
        ) == pytest.approx(0.855)

    async def test_a_degraded_model_stays_degraded_until_surely_back_within(
        self, loop: Loop
    ) -> None:
        # Read back from the condition: accuracy 0.86 over a 0.855 threshold on 400 labels
        # (95% CI 0.823-0.891) was PerformanceMet the cycle after a True, and back.
        performance = {"window": "1h", "minAccuracy": 0.855, "minLabels": 50}
        loop.add(md(performance=performance), pod("wine-a"))
        source = loop._source(("direct", ""))
        found = []
        for correct in (300, 344, 344, 380):
            source.windows[("ml", "wine", "r1")] = self.with_labels(400, correct)
            await loop.cycle()
            condition = loop.condition("PerformanceDegraded")
            found.append((condition["status"], condition["message"].endswith("held until it is")))
        assert found == [("True", False), ("True", True), ("True", True), ("False", False)]

    async def test_too_few_labels_after_a_start_hold_the_last_judgement(self, loop: Loop) -> None:
        body = md(performance={"window": "1m", "minAccuracy": 0.9, "minLabels": 50})
        body["status"]["health"] = {"evaluatedAt": "2025-12-31T23:59:00Z", "revision": "r1"}
        body["status"]["conditions"].append(
            {
                "type": "PerformanceDegraded",
                "status": "True",
                "reason": "PerformanceBelowThreshold",
                "message": "accuracy 0.700",
            }
        )
        loop.add(body, pod("wine-a"))
        loop._source(("direct", "")).windows[("ml", "wine", "r1")] = self.with_labels(5, 5)
        for _ in range(20):  # 0 s .. 57 s: the operator's history is shorter than 1m
            await loop.cycle()
            assert loop.condition("PerformanceDegraded")["message"] == "accuracy 0.700"
        await loop.cycle()
        # Warmed up, too few labels are judged: they judge nothing, so the True stays, held.
        condition = loop.condition("PerformanceDegraded")
        assert (condition["status"], condition["reason"]) == ("True", "PerformanceBelowThreshold")
        assert condition["message"] == "accuracy 0.700 (held: 5 labels < 50 needed over 1m)"

    async def test_a_promoted_revision_is_not_shown_its_predecessors_judgement(
        self, loop: Loop
    ) -> None:
        # The hold is for an operator that restarted; after a promotion the new revision's
        # few labels showed the old revision's verdict for the whole labels window.
        performance = {"window": "1m", "minAccuracy": 0.9, "minLabels": 50}
        loop.add(md(performance=performance), pod("wine-a"))
        source = loop._source(("direct", ""))
        source.windows[("ml", "wine", "r1")] = self.with_labels(400, 300)
        for _ in range(21):  # past the operator's first minute
            await loop.cycle()
        assert loop.condition("PerformanceDegraded")["reason"] == "PerformanceBelowThreshold"
        promoted = loop.api.objects[("ModelDeployment", "ml", "wine")]
        promoted["status"]["stable"] = {"revision": "r2"}
        loop.loop.observe_model("MODIFIED", promoted)
        loop.loop.observe_pod("ADDED", pod("wine-b", revision="r2", ip="10.0.0.2"))
        source.windows[("ml", "wine", "r2")] = self.with_labels(5, 5)
        await loop.cycle()
        assert loop.condition("PerformanceDegraded")["reason"] == "InsufficientLabels"


async def test_one_model_that_cannot_be_evaluated_leaves_the_others_judged(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigil.operator import health as module

    evaluate = module.evaluate

    def failing_for_one(window: Any, profile: Any, policy: Any, error: Any, **more: Any) -> Any:
        if window is BAD:
            raise ValueError("a bug met by one model's figures")
        return evaluate(window, profile, policy, error, **more)

    monkeypatch.setattr(module, "evaluate", failing_for_one)
    loop.add(md("broken", "r2"), pod("broken-a", "broken", "r2", "10.0.0.2"))
    loop.add(md(), pod("wine-a"))
    direct = loop._source(("direct", ""))
    direct.windows[("ml", "broken", "r2")] = BAD
    direct.windows[("ml", "wine", "r1")] = GOOD
    result = await loop.cycle()
    assert result.evaluated == 1 and result.written == 1
    assert loop.condition("Healthy")["status"] == "True"
    assert "health" not in loop.status("broken")


async def test_a_rollout_the_operator_cannot_use_leaves_every_model_judged(loop: Loop) -> None:
    # A canary step without its weight (an older schema let it in): the KeyError ended the
    # whole cycle, no model judged; the rollout waits for a fix, monitoring goes on.
    broken = md("broken", "r2")
    broken["spec"]["rollout"] = {"tweak": {"steps": [{"canary": {"duration": "1m"}}]}}
    loop.add(broken, pod("broken-a", "broken", "r2", "10.0.0.2"))
    loop.add(md(), pod("wine-a"))
    direct = loop._source(("direct", ""))
    direct.windows[("ml", "broken", "r2")] = GOOD
    direct.windows[("ml", "wine", "r1")] = GOOD
    result = await loop.cycle()
    assert result.evaluated == 2 and result.written == 2
    assert loop.condition("Healthy", "broken")["status"] == "True"


async def test_a_reference_no_model_reads_any_more_is_let_go(loop: Loop) -> None:
    body = with_reference(loop)
    await loop.cycle()
    assert list(loop.loop._references) == [("ml", "ref", "profile.json")]
    loop.loop.observe_model("DELETED", body)
    await loop.cycle()
    assert loop.loop._references == {}


async def test_what_a_relisting_no_longer_shows_is_dropped(loop: Loop) -> None:
    # Deleted while the watch was away: kopf reports no DELETED; the listing shows the rest.
    from vigil.common.relisting import LISTING_SECONDS

    gone = md("gone", "r2")
    loop.add(gone, pod("gone-a", "gone", "r2", "10.0.0.2"))
    loop.add(md(), pod("wine-a"), pod("wine-b", ip="10.0.0.3"))
    del loop.api.objects[("ModelDeployment", "ml", "gone")]  # deleted in the cluster
    loop.now += datetime.timedelta(seconds=5)
    loop.loop.listing("modeldeployments", "ml", False)
    loop.loop.listing("pods", None, False)
    loop.loop.listing("pods", "other", False)  # never complete (the API server went away)
    loop.loop.observe_model(None, md())
    loop.loop.observe_pod(None, pod("wine-a"))
    loop.loop.listing("modeldeployments", "ml", True)
    loop.loop.listing("pods", None, True)
    loop.now += datetime.timedelta(seconds=LISTING_SECONDS)
    direct = loop._source(("direct", ""))
    direct.windows[("ml", "wine", "r1")] = GOOD
    await loop.cycle()
    assert list(loop.loop.models) == [("ml", "wine")]
    assert list(loop.loop.pods) == [("ml", "wine-a")]
    assert [p.ip for p in direct.calls[-1][0].pods] == ["10.0.0.1"]


async def test_a_paused_operator_judges_and_writes_nothing(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = GOOD
    loop.loop.active = False
    result = await loop.cycle()
    assert result.evaluated == 0 and loop.api.writes == []
    loop.loop.active = True
    assert (await loop.cycle()).written == 1


async def test_a_paused_operator_exports_no_per_model_series_until_it_acts_again(
    loop: Loop,
) -> None:
    # Another instance judges now: this one's last values (an error rate, a Degraded
    # phase) kept the alerts' max by (namespace, name) firing for as long as it ran.
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = BAD
    await loop.cycle()
    loop.metrics.rollout_progress("ml", "wine", {}, {"weight": 20, "gates": [{}]}, None, 0.0)
    named = {"namespace": "ml", "name": "wine"}
    per_model = (
        ("vigil_modeldeployment_error_rate", {**named, "revision": "r1"}),
        ("vigil_modeldeployment_metrics_available", named),
        ("vigil_modeldeployment_phase", {**named, "phase": "Degraded"}),
        ("vigil_rollout_weight", named),
        ("vigil_rollout_gate_verdict", {**named, "gate": "None", "verdict": "fail"}),
    )
    assert all(loop.sample(metric, **labels) is not None for metric, labels in per_model)
    loop.loop.active = False
    assert all(loop.sample(metric, **labels) is None for metric, labels in per_model)
    # A reconcile under way at the pause sets its phase after: the next paused cycle drops it.
    loop.metrics.set_phase("ml", "wine", "Degraded")
    await loop.cycle()
    assert loop.sample("vigil_modeldeployment_phase", **named, phase="Degraded") is None
    loop.loop.active = True
    await loop.cycle()
    assert loop.sample("vigil_modeldeployment_error_rate", **named, revision="r1") == 0.1


def test_drift_detected_names_the_features_the_verdict_names() -> None:
    # proline's estimate reads over the threshold on too few rows to be sure of it: the
    # verdict does not name it, and neither does the condition.
    policy = HealthPolicy()
    report = HealthReport(
        "DriftDetected",
        500,
        drift_score=0.41,
        drift_level="threshold",
        drift_features={"proline": 0.41, "alcohol": 0.31, "ash": 0.01},
        drift_sure={"alcohol": 0.31, "ash": 0.01},
        drift_over={"alcohol": 0.31},
    )
    (drift,) = [c for c in health_conditions(report, policy) if c.type == "DriftDetected"]
    assert drift.message == f"psi 0.31 >= {policy.drift_threshold:g} over 5m: alcohol 0.31"


@pytest.mark.parametrize(
    ("revision", "drift_status", "held"),
    [("r1", "True", {"alcohol"}), ("r2", "True", set()), ("r1", "False", set())],
    ids=["named-last-cycle", "another-revision", "not-detected"],
)
def test_the_features_drift_detected_named_are_held_on_the_next_cycle(
    revision: str, drift_status: str, held: set[str]
) -> None:
    # Read back from status.health.drift.over: vigil.core.health holds them over the
    # threshold until surely under it; a verdict of another revision holds nothing.
    status = {
        "health": {
            "evaluatedAt": "2026-12-06T17:00:00Z",
            "revision": "r1",
            "drift": {"method": "psi", "level": "threshold", "over": ["alcohol"]},
        },
        "conditions": [{"type": "DriftDetected", "status": drift_status}],
    }
    target = RevisionTarget("ml", "wine", revision, 300.0)
    assert _drifted(status, target) == held


@pytest.mark.parametrize(
    ("health", "healthy", "held"),
    [
        ({"breached": ["ErrorRateHigh", "LatencyHigh"]}, "False", {"ErrorRateHigh", "LatencyHigh"}),
        ({}, "False", {"ErrorRateHigh"}),  # written before status.health.breached
        ({"breached": ["ErrorRateHigh"]}, "True", set()),
        ({"revision": "r0", "breached": ["ErrorRateHigh"]}, "False", set()),
    ],
    ids=["both", "reason-alone", "healthy", "another-revision"],
)
def test_every_slo_the_last_degraded_verdict_found_breached_is_held(
    health: dict[str, Any], healthy: str, held: set[str]
) -> None:
    status = {
        "health": {"evaluatedAt": "2026-12-06T17:00:00Z", "revision": "r1", **health},
        "conditions": [{"type": "Healthy", "status": healthy, "reason": "ErrorRateHigh"}],
    }
    assert _degraded_by(status, RevisionTarget("ml", "wine", "r1", 300.0)) == held


def test_the_conditions_concepts_lists_are_the_codes() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "concepts.md").read_text()
    listed = re.search(r"conditions \((.*?)\),\s+each with", text, flags=re.DOTALL)
    assert listed, "docs/concepts.md: the list of conditions moved"
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == {c.value for c in ConditionType}


async def test_a_breach_stays_until_the_figures_surely_meet_the_slo_again(loop: Loop) -> None:
    # 5 errors in 300 (1.7 % against 1 %) prove neither a breach nor a recovery: the last
    # verdict stays, whichever it was (on point estimates it flipped at each cycle).
    def errors(requests: float, failed: float) -> RevisionWindow:
        return RevisionWindow(
            requests_by_outcome={"success": requests - failed, "model_error": failed},
            latency_buckets=((0.05, requests), (math.inf, requests)),
        )

    loop.add(md(), pod("wine-a"))
    direct = loop._source(("direct", ""))
    direct.windows[("ml", "wine", "r1")] = errors(300, 5)
    await loop.cycle()
    assert loop.condition("Healthy")["status"] == "True"
    direct.windows[("ml", "wine", "r1")] = errors(1000, 50)
    await loop.cycle()
    assert loop.condition("Healthy")["reason"] == "ErrorRateHigh"
    direct.windows[("ml", "wine", "r1")] = errors(300, 5)
    await loop.cycle()
    healthy = loop.condition("Healthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "ErrorRateHigh")
    assert "error rate 1.7% not surely within 1.0%" in healthy["message"]
    direct.windows[("ml", "wine", "r1")] = errors(3000, 3)
    await loop.cycle()
    assert loop.condition("Healthy")["status"] == "True"
