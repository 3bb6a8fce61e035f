"""What a failing reconcile or health write says, and how often: a Warning Event once per
failure (not per retry, whatever else moves the object's version), the phase series
kept, and nothing written by an instance kopf has paused."""

from __future__ import annotations

import asyncio
import copy
import types
from typing import Any

import kopf
import pytest
from test_reconciler import (
    BROKEN,
    NOW,
    Harness,
    MemoryApi,
    converged,
    model_deployment,
    settled,
)

from vigil.core.status import ConditionState
from vigil.kube.cache import ObjectCache
from vigil.kube.client import KubeError
from vigil.operator import handlers
from vigil.operator.metrics import DELETED_SECONDS, OperatorMetrics
from vigil.operator.reconciler import Reconciler, ReconcilerConfig, RetryLater
from vigil.operator.runtime import CACHED_KINDS, post_event
from vigil.plugin.requests import ANNOTATION_REQUEST, ANNOTATION_REQUEST_ID


class NamingApi(MemoryApi):
    """The API server's side of Events (a name posted twice is a 409: False) and of
    resourceVersion (every status write moves it)."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[tuple[str, str, str]] = []
        self.version = 10

    async def create_event(self, manifest: dict[str, Any]) -> bool:
        name = manifest["metadata"]["name"]
        if name in {posted for posted, _, _ in self.posted}:
            return False
        self.posted.append((name, manifest["reason"], manifest["message"]))
        return True

    async def patch_status(self, *args: Any, **kwargs: Any) -> Any:
        stored = await super().patch_status(*args, **kwargs)
        self.version += 1
        stored["metadata"]["resourceVersion"] = str(self.version)
        return stored


def reconciler(api: MemoryApi, metrics: OperatorMetrics | None = None) -> Reconciler:
    """The reconciler with the runtime's real Event poster."""
    return Reconciler(
        lambda: api,
        ReconcilerConfig("sidecar:test"),
        metrics or OperatorMetrics(),
        post_event,
        clock=lambda: NOW,
    )


async def retried(reconciling: Reconciler, times: int) -> None:
    for _ in range(times):
        with pytest.raises(RetryLater):
            await reconciling.reconcile("ml", "wine")


async def test_a_refused_status_write_is_a_reconcile_failure_said_in_an_event() -> None:
    # A ClusterRole without modeldeployments/status (403), a CRD left at an older version
    # (422): the children were made, the status stayed empty, and only the log said why.
    harness = Harness()
    harness.api.add(model_deployment())
    harness.api.fail_on, harness.api.fail_status = ("status", "ModelDeployment"), 422
    with pytest.raises(RetryLater):
        await harness.reconciler.reconcile("ml", "wine")
    failed = [e for e in harness.events if e.reason == "ReconcileFailed"]
    assert [e.message for e in failed] == ["could not write status: status ModelDeployment refused"]
    assert failed[0].warning


async def test_retries_of_a_refused_write_post_one_event_while_the_version_moves() -> None:
    # The refused write's own status (DeployFailed), and the health loop on a live model,
    # move the version between retries: named by it, every retry posted another Warning.
    api = NamingApi()
    stored = model_deployment()
    stored["metadata"]["resourceVersion"] = "10"
    api.add(stored)
    api.fail_on, api.fail_status = ("apply", "Deployment"), 422
    await retried(reconciler(api), 4)
    assert [reason for _, reason, _ in api.posted].count("ReconcileFailed") == 1


async def test_the_events_metric_counts_events_created_not_their_repeats() -> None:
    api, metrics = NamingApi(), OperatorMetrics()
    api.add(model_deployment())
    api.fail_on = ("apply", "Deployment")
    await retried(reconciler(api, metrics), 4)
    created = [reason for _, reason, _ in api.posted].count("ReconcileFailed")
    counted = metrics.registry.get_sample_value(
        "vigil_operator_events_total", {"reason": "ReconcileFailed"}
    )
    assert created == counted == 1


async def test_a_health_flip_written_after_failed_patches_is_one_event() -> None:
    # Each retry judged newer figures: the words changed, and so did the Event's name.
    harness = Harness()
    harness.api = NamingApi()
    await converged(harness)
    harness.reconciler._post_event = post_event
    for attempt, rate in enumerate(("5.1%", "5.3%", "4.9%")):
        broken = [ConditionState("Healthy", False, "ErrorRateAboveSLO", f"error rate {rate} > 1%")]
        harness.api.fail_on = ("status", "ModelDeployment") if attempt < 2 else None
        if attempt < 2:
            with pytest.raises(KubeError):
                await harness.record_health({"verdict": "Degraded"}, broken)
        else:
            assert await harness.record_health({"verdict": "Degraded"}, broken)
    flips = [message for _, reason, message in harness.api.posted if reason == "ErrorRateAboveSLO"]
    assert flips == ["Healthy is False: error rate 5.1% > 1%"]


class ThrottledEvents(NamingApi):
    """The API server throttles the first ``refusals`` Event posts (429)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def create_event(self, manifest: dict[str, Any]) -> bool:
        if self.refusals:
            self.refusals -= 1
            raise KubeError(429, "too many requests", retry_after=1)
        return await super().create_event(manifest)


async def test_a_step_whose_event_was_throttled_is_recorded_once_the_event_is_posted() -> None:
    # A throttled post was logged and the status recorded the step anyway: the Event
    # (Deployed, Switched, RolledBack) was never posted by any later cycle.
    api = ThrottledEvents(refusals=1)
    api.add(model_deployment())
    reconciling = reconciler(api)
    with pytest.raises(RetryLater):
        await reconciling.reconcile("ml", "wine")
    assert "phase" not in api.objects[("ModelDeployment", "ml", "wine")].get("status", {})
    await reconciling.reconcile("ml", "wine")
    assert [reason for _, reason, _ in api.posted] == ["Deployed"]
    assert api.objects[("ModelDeployment", "ml", "wine")]["status"]["phase"] == "Pending"


async def test_an_event_refused_for_good_never_stops_a_reconcile() -> None:
    # RBAC without events/create (403): logged; the status still records the step.
    api = NamingApi()
    api.add(model_deployment())

    async def forbidden(manifest: dict[str, Any]) -> bool:
        raise KubeError(403, "events is forbidden")

    api.create_event = forbidden  # type: ignore[method-assign]
    reconciling = reconciler(api)
    await reconciling.reconcile("ml", "wine")
    api.make_ready()
    await reconciling.reconcile("ml", "wine")
    assert api.objects[("ModelDeployment", "ml", "wine")]["status"]["phase"] == "Healthy"


async def test_a_model_whose_reconciles_fail_after_a_restart_keeps_its_phase_series() -> None:
    # Set only by a write that succeeded: a new instance whose every reconcile of a spec
    # change is refused showed no phase for a model whose status has one.
    before = Harness()
    await converged(before)
    restarted = Harness()
    restarted.api = before.api
    stored = before.api.objects[("ModelDeployment", "ml", "wine")]
    stored["spec"]["model"]["version"], stored["metadata"]["generation"] = "2", 2
    before.api.fail_on, before.api.fail_status = ("apply", "Deployment"), 403
    with pytest.raises(RetryLater):
        await restarted.reconciler.reconcile("ml", "wine")
    assert stored["status"]["phase"] == "Healthy"
    sample = restarted.metrics.registry.get_sample_value
    phase = {"namespace": "ml", "name": "wine", "phase": "Healthy"}
    assert sample("vigil_modeldeployment_phase", phase) == 1
    assert sample("vigil_operator_model_deployments", {"phase": "Healthy"}) == 1


async def test_a_paused_instance_writes_no_health() -> None:
    # A health cycle that began before kopf paused this instance (peering) wrote status
    # and posted Events beside the instance that acts now.
    harness = Harness()
    await converged(harness)
    harness.events.clear()
    harness.reconciler.active = False
    assert not await harness.record_health({"verdict": "Degraded", "errorRate": 0.05}, BROKEN)
    assert harness.api.writes == [] and harness.events == []


def test_deleted_models_are_remembered_for_their_time_then_dropped_oldest_first() -> None:
    now = [0.0]
    metrics = OperatorMetrics(clock=lambda: now[0])
    metrics.forget("ml", "a")
    now[0] = 10.0
    metrics.forget("ml", "b")
    metrics.forget("ml", "a")  # deleted again: its time starts again
    now[0] = DELETED_SECONDS + 5.0
    metrics.forget("ml", "c")
    assert list(metrics._deleted) == [("ml", "b"), ("ml", "a"), ("ml", "c")]
    now[0] = DELETED_SECONDS + 11.0
    metrics.forget("ml", "d")
    assert list(metrics._deleted) == [("ml", "c"), ("ml", "d")]


async def test_a_failing_model_is_retried_on_its_backoff_not_on_each_status_write() -> None:
    """A 403 (RBAC missing) on every reconcile: the health loop's status writes come almost
    every cycle, and reconciling on each would repeat the failed write, its warning and its
    Event post instead of waiting for the retry. A new spec or request still goes at once,
    as do nudges that are not the object's own events."""
    harness = Harness()
    harness.reconciler.coalesce_seconds = 0.01
    harness.api.add(model_deployment())
    harness.api.fail_on, harness.api.fail_status = ("apply", "ConfigMap"), 403
    health = types.SimpleNamespace(observe_model=lambda *_: None, start=lambda: None)
    runtime = types.SimpleNamespace(
        reconciler=harness.reconciler, cache=ObjectCache(CACHED_KINDS), health=health
    )
    memo = types.SimpleNamespace(runtime=runtime)

    async def seen(event_type: str, item: dict[str, Any]) -> float:
        await handlers.model_deployment_seen(type=event_type, body=kopf.Body(item), memo=memo)
        await asyncio.sleep(0.02)  # past the coalescing: a reconcile started is a task now
        await settled(harness)
        return harness.metric("vigil_operator_reconciles_total", outcome="error")

    stored = harness.api.objects[("ModelDeployment", "ml", "wine")]
    assert await seen("ADDED", stored) == 1
    assert ("ml", "wine") in harness.reconciler._timers  # the retry, on its backoff
    for version in range(3):  # the health loop's writes move the version, not the spec
        written = copy.deepcopy(stored)
        written["metadata"]["resourceVersion"] = str(20 + version)
        written["status"] = {"health": {"verdict": "Healthy", "at": str(version)}}
        assert await seen("MODIFIED", written) == 1
    # A child's event, or the health loop's nudge (a bake's condition flip), goes at once.
    harness.reconciler.nudge("ml", "wine")
    assert await seen("MODIFIED", written) == 2

    stored["metadata"]["generation"] = 2  # a new spec
    assert await seen("MODIFIED", copy.deepcopy(stored)) == 3
    stored["metadata"]["annotations"] = {ANNOTATION_REQUEST: "retry", ANNOTATION_REQUEST_ID: "1"}
    assert await seen("MODIFIED", copy.deepcopy(stored)) == 4
    await harness.reconciler.close()
