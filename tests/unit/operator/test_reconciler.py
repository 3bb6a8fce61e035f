"""The reconciler's I/O discipline: writes only when needed, one status patch, errors retried.

The API is an in-memory stand-in (this is a unit test of the domain layer;
the e2e suite runs the real operator against a real API server).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
from itertools import pairwise
from typing import Any

import pytest
from running_pods import running_in

from vigil.core.reconcile import Event
from vigil.core.status import ConditionState
from vigil.kube.client import KubeError
from vigil.operator import reconciler as reconciler_module
from vigil.operator.health import HealthWrite
from vigil.operator.metrics import DELETED_SECONDS, OperatorMetrics
from vigil.operator.reconciler import Reconciler, ReconcilerConfig, RetryLater
from vigil.operator.rollouts import Rollouts

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


class MemoryApi:
    """Stores objects by (kind, namespace, name); records every write."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.fail_on: tuple[str, str] | None = None  # (verb, kind)
        self.fail_status = 500
        self.fail_retry_after: float | None = None
        #: The refusal's words (None: the API server's for that status; a 403 is RBAC's).
        self.fail_message: str | None = None

    def add(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in self.objects.items()
            if k == kind and ns == namespace and obj["metadata"].get("labels", {}).get(key) == value
        ]

    def _maybe_fail(self, verb: str, kind: str) -> None:
        if self.fail_on == (verb, kind):
            words = f"{verb} {kind} refused"
            if self.fail_status == 403:
                words = f'{words}: User "system:serviceaccount:vigil:vigil" cannot {verb} resource'
            raise KubeError(
                self.fail_status, self.fail_message or words, retry_after=self.fail_retry_after
            )

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("apply", manifest["kind"])
        self.writes.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        self.add(copy.deepcopy(manifest))
        return manifest

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self._maybe_fail("delete", kind)
        self.writes.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    async def patch(
        self, kind: str, namespace: str, name: str, patch: Any, *, content_type: str = ""
    ) -> dict[str, Any]:
        """A merge patch (the router's HTTPRoute write)."""
        self._maybe_fail("patch", kind)
        self.writes.append(("patch", kind, name))
        obj = self.objects[(kind, namespace, name)]
        obj["spec"] = merge(obj.get("spec") or {}, patch.get("spec") or {})
        return obj

    async def patch_status(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self._maybe_fail("status", kind)
        self.writes.append(("status", kind, name))
        obj = self.objects[(kind, namespace, name)]
        obj["status"] = merge(obj.get("status") or {}, patch)
        return obj

    def make_ready(self) -> None:
        for (kind, _, _), obj in self.objects.items():
            if kind == "Deployment":
                replicas = obj["spec"]["replicas"]
                obj["metadata"]["generation"] = 1
                obj["status"] = {
                    "observedGeneration": 1,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                }


def model_deployment(version: str = "1", replicas: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": {
            "model": {"version": version},
            "server": {"image": "img:1"},
            "replicas": replicas,
            **extra,
        },
    }


class Harness:
    def __init__(self) -> None:
        self.api = MemoryApi()
        self.events: list[Event] = []
        #: How many writes had been made when each Event was posted.
        self.writes_before_event: list[int] = []
        self.metrics = OperatorMetrics()
        self.reconciler = Reconciler(
            api_factory=lambda: self.api,
            config=ReconcilerConfig(sidecar_image="sidecar:test"),
            metrics=self.metrics,
            post_event=self.post_event,
            clock=lambda: NOW,
        )

    async def post_event(self, api: Any, body: Any, event: Event) -> None:
        self.events.append(event)
        self.writes_before_event.append(len(self.api.writes))

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def record_health(
        self, health: dict[str, Any], conditions: list[ConditionState], name: str = "wine"
    ) -> bool:
        """A health evaluation of the revision the stored object serves now."""
        stored = self.api.objects.get(("ModelDeployment", "ml", name)) or {}
        return await self.reconciler.record_health(
            HealthWrite(
                "ml",
                name,
                revision=stored.get("status", {}).get("stable", {}).get("revision", ""),
                uid=stored.get("metadata", {}).get("uid", ""),
                health=health,
                conditions=conditions,
            )
        )


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def test_first_reconcile_creates_children_and_patches_status_once(harness: Harness) -> None:
    harness.api.add(model_deployment())
    await harness.reconciler.reconcile("ml", "wine")
    verbs = [(verb, kind) for verb, kind, _ in harness.api.writes]
    assert verbs == [
        ("apply", "ConfigMap"),
        ("apply", "Deployment"),
        ("apply", "Service"),
        ("apply", "Service"),  # <name>-peers
        ("status", "ModelDeployment"),
    ]
    assert [e.reason for e in harness.events] == ["Deployed"]
    # Posted after the children, before the status that records them (a kill loses none).
    assert harness.writes_before_event == [4]
    assert harness.metric("vigil_operator_reconciles_total", outcome="changed") == 1
    assert harness.metric("vigil_operator_writes_total", kind="Deployment", verb="apply") == 1
    assert harness.metric("vigil_operator_model_deployments", phase="Pending") == 1


async def test_unchanged_world_means_no_write_at_all(harness: Harness) -> None:
    harness.api.add(model_deployment())
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.writes.clear()
    harness.events.clear()
    for _ in range(3):
        await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes == []
    assert harness.events == []
    assert harness.metric("vigil_operator_reconciles_total", outcome="unchanged") == 3
    assert harness.metric("vigil_operator_model_deployments", phase="Healthy") == 1


async def test_children_of_another_owner_are_ignored(harness: Harness) -> None:
    harness.api.add(model_deployment())
    harness.api.add(
        {
            "kind": "Deployment",
            "metadata": {
                "name": "wine-impostor",
                "namespace": "ml",
                "labels": {"vigil.dev/model-deployment": "wine", "vigil.dev/revision": "zzz"},
                "ownerReferences": [{"uid": "someone-else", "controller": True}],
            },
            "spec": {"replicas": 1},
        }
    )
    await harness.reconciler.reconcile("ml", "wine")
    assert ("delete", "Deployment", "wine-impostor") not in harness.api.writes


async def test_a_foreign_service_blocks_instead_of_being_overwritten(harness: Harness) -> None:
    harness.api.add(model_deployment())
    harness.api.add(
        {"kind": "Service", "metadata": {"name": "wine", "namespace": "ml"}, "spec": {}}
    )
    await harness.reconciler.reconcile("ml", "wine")
    assert [verb for verb, _, _ in harness.api.writes] == ["status"]
    assert [e.reason for e in harness.events] == ["ServiceConflict"]


async def test_a_gone_object_is_forgotten_quietly(harness: Harness) -> None:
    await harness.reconciler.reconcile("ml", "missing")
    assert harness.api.writes == []
    assert harness.metric("vigil_operator_reconciles_total", outcome="unchanged") == 1


async def test_a_deleting_object_is_left_to_garbage_collection(harness: Harness) -> None:
    body = model_deployment()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    harness.api.add(body)
    await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes == []


async def test_a_failed_write_stops_the_plan_reports_and_asks_for_a_retry(
    harness: Harness,
) -> None:
    harness.api.add(model_deployment())
    harness.api.fail_on = ("apply", "Deployment")
    with pytest.raises(RetryLater) as caught:
        await harness.reconciler.reconcile("ml", "wine")
    assert caught.value.delay == 10.0
    # The Service was not applied after the failed Deployment, and no status was written.
    assert [kind for _, kind, _ in harness.api.writes] == ["ConfigMap"]
    assert [e.reason for e in harness.events] == ["ReconcileFailed"]
    assert harness.events[0].warning
    assert "refused" in harness.events[0].message
    assert harness.metric("vigil_operator_reconciles_total", outcome="error") == 1


def backend_refs(api: MemoryApi) -> list[dict[str, Any]]:
    return api.objects[("HTTPRoute", "ml", "wine")]["spec"]["rules"][0]["backendRefs"]


async def test_the_route_leaves_a_service_before_it_is_deleted(harness: Harness) -> None:
    """Gateway API: the HTTPRoute is rewritten before the Services it named are deleted,
    and a route write that fails stops the plan before any deletion."""
    from vigil.operator.rollouts import Rollouts

    class SilentCandidate(Rollouts):
        """Its candidate never answers ready, so no address is probed (no network here)."""

        async def candidate_url(self, namespace: str, name: str, revision: str) -> str | None:
            return None

    harness.reconciler.rollouts = SilentCandidate(lambda: {})
    routing = {"trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}}}
    harness.api.add(model_deployment(rollout=routing))
    harness.api.add(
        {
            "kind": "HTTPRoute",
            "metadata": {"name": "wine", "namespace": "ml"},
            "spec": {"rules": [{"backendRefs": [{"name": "wine", "port": 80}]}]},
        }
    )
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")
    stable = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]["stable"]
    old = f"wine-{stable['revision']}"
    assert backend_refs(harness.api) == [{"name": "wine", "port": 80, "weight": 100}]
    # An earlier stepped rollout left the route on the stable's revision Service.
    service = copy.deepcopy(harness.api.objects[("Service", "ml", "wine")])
    service["metadata"]["name"] = old
    harness.api.add(service)
    # A change without steps (blue/green): the candidate starts, becomes available.
    changed = model_deployment(version="2", rollout=routing)
    changed["metadata"]["generation"] = 2
    changed["status"] = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    harness.api.add(changed)
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.make_ready()
    backend_refs(harness.api)[:] = [{"name": old, "port": 80, "weight": 100}]
    harness.api.fail_on = ("patch", "HTTPRoute")
    with pytest.raises(RetryLater):
        await harness.reconciler.reconcile("ml", "wine")
    assert not [w for w in harness.api.writes if w[0] == "delete"]
    assert "could not route traffic" in harness.events[-1].message
    harness.api.fail_on = None
    harness.api.make_ready()  # the switch re-applied the Deployment (this store drops status)
    await harness.reconciler.reconcile("ml", "wine")
    writes = harness.api.writes
    assert writes.index(("patch", "HTTPRoute", "wine")) < writes.index(("delete", "Service", old))
    assert backend_refs(harness.api) == [{"name": "wine", "port": 80, "weight": 100}]


async def test_a_client_error_is_retried_later_than_a_server_error(harness: Harness) -> None:
    harness.api.add(model_deployment())
    harness.api.fail_on = ("apply", "ConfigMap")
    harness.api.fail_status = 403
    with pytest.raises(RetryLater) as caught:
        await harness.reconciler.reconcile("ml", "wine")
    assert caught.value.delay == 60.0


async def test_missing_reference_is_looked_up_and_reported(harness: Harness) -> None:
    reference = {"reference": {"configMapKeyRef": {"name": "wine-ref", "key": "p.json"}}}
    harness.api.add(model_deployment(monitoring=reference))
    await harness.reconciler.reconcile("ml", "wine")
    status = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    assert status["conditions"][0]["reason"] == "ReferenceNotFound"
    assert [e.reason for e in harness.events] == ["ReferenceNotFound"]

    harness.api.add(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "wine-ref", "namespace": "ml"},
            "data": {"other.json": "{}"},
        }
    )
    await harness.reconciler.reconcile("ml", "wine")
    assert ("apply", "Deployment") not in [(v, k) for v, k, _ in harness.api.writes]

    harness.api.objects[("ConfigMap", "ml", "wine-ref")]["data"]["p.json"] = "{}"
    await harness.reconciler.reconcile("ml", "wine")
    assert ("apply", "Deployment") in [(v, k) for v, k, _ in harness.api.writes]
    await harness.reconciler.close()


async def settled(harness: Harness) -> None:
    """Wait for the reconciles the nudges started (a fixed sleep races a busy machine)."""
    await asyncio.wait_for(asyncio.gather(*list(harness.reconciler._tasks)), timeout=30)


async def test_nudges_in_a_burst_collapse_into_few_reconciles(harness: Harness) -> None:
    # A burst joins the queued reconcile whatever the wait before it (not half a second here).
    harness.reconciler.coalesce_seconds = 0.01
    harness.api.add(model_deployment())
    for _ in range(20):
        harness.reconciler.nudge("ml", "wine")
    await settled(harness)
    total = sum(
        harness.metric("vigil_operator_reconciles_total", outcome=outcome)
        for outcome in ("changed", "unchanged", "error")
    )
    assert 1 <= total <= 2


async def test_a_failed_nudge_schedules_its_own_retry(harness: Harness) -> None:
    harness.reconciler.coalesce_seconds = 0.01
    harness.api.add(model_deployment())
    harness.api.fail_on = ("apply", "ConfigMap")
    harness.reconciler.nudge("ml", "wine")
    await settled(harness)
    assert ("ml", "wine") in harness.reconciler._timers
    await harness.reconciler.close()


async def test_an_unexpected_error_schedules_a_retry_too(harness: Harness) -> None:
    # e.g. a proxy's HTML page where the API server's JSON was due
    harness.reconciler.coalesce_seconds = 0.01
    harness.api.add(model_deployment())

    async def unreadable(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    harness.api.get = unreadable  # type: ignore[method-assign]
    harness.reconciler.nudge("ml", "wine")
    await settled(harness)
    assert ("ml", "wine") in harness.reconciler._timers
    assert harness.metric("vigil_operator_reconciles_total", outcome="error") == 1
    await harness.reconciler.close()


async def test_post_event_failures_never_fail_a_reconcile() -> None:
    harness = Harness()

    async def broken(api: Any, body: Any, event: Event) -> None:
        raise RuntimeError("event queue closed")

    harness.reconciler._post_event = broken
    harness.api.add(model_deployment())
    await harness.reconciler.reconcile("ml", "wine")
    assert ("status", "ModelDeployment", "wine") in harness.api.writes


async def converged(harness: Harness) -> None:
    harness.api.add(model_deployment())
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.writes.clear()


def stored_status(harness: Harness) -> dict[str, Any]:
    return harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]


BROKEN = [ConditionState("Healthy", False, "ErrorRateAboveSLO", "error rate 5% > 1%")]
FINE = [ConditionState("Healthy", True, "SLOsMet", "ok")]


async def test_health_is_written_once_with_its_conditions_and_phase(harness: Harness) -> None:
    await converged(harness)
    health = {"verdict": "Degraded", "errorRate": 0.05, "agreement": 0.9}
    assert await harness.record_health(health, BROKEN)
    assert harness.api.writes == [("status", "ModelDeployment", "wine")]
    status = stored_status(harness)
    assert status["health"] == health
    assert status["phase"] == "Degraded"
    types = [c["type"] for c in status["conditions"]]
    assert types[:4] == ["Ready", "Progressing", "Reconciling", "Stalled"]
    assert "Healthy" in types
    # The same evaluation again writes nothing.
    assert not await harness.record_health(health, BROKEN)
    assert len(harness.api.writes) == 1


async def test_recovered_health_returns_to_healthy_and_drops_stale_figures(
    harness: Harness,
) -> None:
    await converged(harness)
    await harness.record_health({"verdict": "Degraded", "agreement": 0.9}, BROKEN)
    await harness.record_health({"verdict": "Healthy"}, FINE)
    status = stored_status(harness)
    assert status["phase"] == "Healthy"
    assert status["health"] == {"verdict": "Healthy"}
    # A rollout reconcile afterwards keeps the health verdict's effect and writes nothing.
    harness.api.writes.clear()
    await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes == []


async def test_the_rollout_keeps_a_degraded_verdict(harness: Harness) -> None:
    await converged(harness)
    await harness.record_health({"verdict": "Degraded"}, BROKEN)
    harness.api.writes.clear()
    await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes == []
    assert stored_status(harness)["phase"] == "Degraded"


async def test_health_does_not_override_a_rollout_phase(harness: Harness) -> None:
    harness.api.add(model_deployment())
    await harness.reconciler.reconcile("ml", "wine")  # Pending: pods not ready yet
    assert await harness.record_health({"verdict": "Degraded"}, BROKEN)
    assert stored_status(harness)["phase"] == "Pending"


async def test_health_for_a_missing_object_is_dropped(harness: Harness) -> None:
    assert not await harness.record_health({}, FINE, name="nope")


async def test_health_judged_on_another_revision_or_object_is_not_written(
    harness: Harness,
) -> None:
    # The loop judged revision A; meanwhile (it waits for the lock a promoting reconcile
    # holds) B was promoted: A's breach written onto B counted as B's bake failure and
    # rolled B back. A recreated object (kubectl replace --force) took the deleted one's.
    await converged(harness)
    harness.events.clear()
    stored = harness.api.objects[("ModelDeployment", "ml", "wine")]
    serving, uid = stored["status"]["stable"]["revision"], stored["metadata"]["uid"]
    health = {"verdict": "Degraded", "errorRate": 0.05}
    judged_elsewhere = (("old-revision", uid), (serving, "uid-of-the-deleted-one"))
    for revision, judged_uid in judged_elsewhere:
        assert not await harness.reconciler.record_health(
            HealthWrite("ml", "wine", revision, judged_uid, health, BROKEN)
        )
    assert harness.api.writes == [] and harness.events == []
    assert "health" not in stored_status(harness)
    assert await harness.reconciler.record_health(
        HealthWrite("ml", "wine", serving, uid, health, BROKEN)
    )


async def test_a_refused_child_ends_in_deploy_failed_with_the_api_servers_words(
    harness: Harness,
) -> None:
    """A 422 on a child (e.g. a field the API server refuses) must show in status, not only logs."""
    harness.api.add(model_deployment())
    harness.api.fail_on = ("apply", "Deployment")
    harness.api.fail_status = 422
    with pytest.raises(RetryLater) as caught:
        await harness.reconciler.reconcile("ml", "wine")
    assert caught.value.delay == 60.0
    status = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    assert status["phase"] == "Failed"
    ready = {c["type"]: c for c in status["conditions"]}
    assert (ready["Ready"]["status"], ready["Ready"]["reason"]) == ("False", "DeployFailed")
    assert "apply Deployment refused" in ready["Ready"]["message"]
    assert ready["Stalled"]["status"] == "True"
    # nothing after the refused write: only the ConfigMap before it, then the status
    assert [kind for _, kind, _ in harness.api.writes] == ["ConfigMap", "ModelDeployment"]


async def update_refused_with_403(harness: Harness, words: str | None) -> None:
    """Generation 2 (a new model version), its Deployment's apply answered 403 in ``words``
    (None: RBAC's)."""
    changed = model_deployment(version="2")
    changed["metadata"]["generation"] = 2
    changed["status"] = stored_status(harness)
    harness.api.add(changed)
    harness.api.fail_on, harness.api.fail_status = ("apply", "Deployment"), 403
    harness.api.fail_message = words
    with pytest.raises(RetryLater):
        await harness.reconciler.reconcile("ml", "wine")


@pytest.mark.parametrize(
    "words",
    [
        'admission webhook "policy.example.com" denied the request: no latest tags',
        "deployments.apps \"wine-1\" is forbidden: ValidatingAdmissionPolicy 'no-latest' "
        "with binding 'no-latest' denied request: failed expression: image tag",
        'deployments.apps "wine-1" is forbidden: exceeded quota: objects, requested: '
        "count/deployments.apps=1, used: count/deployments.apps=4, limited: "
        "count/deployments.apps=4",
    ],
)
async def test_a_child_denied_by_admission_or_quota_ends_in_deploy_failed(
    harness: Harness, words: str
) -> None:
    """A 403 that refuses the object (a policy webhook, an object-count quota), not the
    operator's rights: in status, or GitOps tools wait for a generation never observed."""
    await converged(harness)
    await update_refused_with_403(harness, words)
    status = stored_status(harness)
    assert (status["phase"], status["observedGeneration"]) == ("Failed", 2)
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DeployFailed")
    assert words in ready["message"]


@pytest.mark.parametrize(
    "words",
    [
        None,  # RBAC's: also what a restarting API server answers for a few seconds
        'deployments.apps "wine-1" is forbidden: unable to create new content in namespace '
        "ml because it is being terminated",
        "Forbidden",  # a proxy's own answer, no Kubernetes Status
    ],
)
async def test_a_child_refused_for_no_fault_of_its_own_leaves_status_as_it_was(
    harness: Harness, words: str | None
) -> None:
    await converged(harness)
    before = copy.deepcopy(stored_status(harness))
    await update_refused_with_403(harness, words)
    assert stored_status(harness) == before


async def test_a_refused_switch_leaves_the_stable_and_history_as_they_were(
    harness: Harness,
) -> None:
    """A 422 on the Service that switches live traffic: the switch did not happen, so
    status must not record it; once the refusal is lifted, the switch is posted once."""
    await converged(harness)
    before = copy.deepcopy(stored_status(harness))
    changed = model_deployment(version="2")
    changed["metadata"]["generation"] = 2
    changed["status"] = stored_status(harness)
    harness.api.add(changed)
    await harness.reconciler.reconcile("ml", "wine")  # the candidate starts
    harness.api.make_ready()
    harness.events.clear()
    harness.api.fail_on, harness.api.fail_status = ("apply", "Service"), 422
    with pytest.raises(RetryLater):
        await harness.reconciler.reconcile("ml", "wine")
    status = stored_status(harness)
    selected = harness.api.objects[("Service", "ml", "wine")]["spec"]["selector"]
    assert selected["vigil.dev/revision"] == before["stable"]["revision"]
    assert status["stable"] == before["stable"] and status["history"] == before["history"]
    assert status["phase"] == "Failed" and status["revision"] != before["revision"]
    assert [e.reason for e in harness.events] == ["ReconcileFailed"]
    harness.api.fail_on = None
    await harness.reconciler.reconcile("ml", "wine")
    status = stored_status(harness)
    assert status["stable"]["revision"] == status["revision"]
    assert [e.reason for e in harness.events].count("Switched") == 1
    assert [h["outcome"] for h in status["history"]] == ["Promoted", "Deployed"]


async def test_a_golden_replay_is_no_traffic_of_the_step_after_it(harness: Harness) -> None:
    """The validate step's replay goes through the candidate's sidecar: the next step
    starts after it and is measured from a scrape taken after it."""
    from vigil.core.candidate import RolloutInputs
    from vigil.core.rollout import GoldenResult
    from vigil.operator.rollouts import Rollouts

    clock = [NOW]
    harness.reconciler._clock = lambda: clock[0]
    happened: list[tuple[str, datetime.datetime]] = []

    class Recording(Rollouts):
        async def inputs(self, api: Any, body: Any, spec: Any, *rest: Any) -> RolloutInputs:
            happened.append(("measured", clock[0]))
            return RolloutInputs(metrics_available=False, metrics_error="not yet")

        async def replay(self, *args: Any) -> GoldenResult:
            clock[0] += datetime.timedelta(seconds=30)  # a replay takes its time
            happened.append(("replayed", clock[0]))
            return GoldenResult(200, 200)

    harness.reconciler.rollouts = Recording(running_in(lambda: {}))
    harness.api.add(model_deployment())
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")
    golden = {"configMapKeyRef": {"name": "g", "key": "golden.json"}}
    steps = [{"validate": {"goldenSet": golden}}, {"canary": {"weight": 20, "duration": "5m"}}]
    changed = model_deployment(version="2", rollout={"replacement": {"steps": steps}})
    changed["metadata"]["generation"] = 2
    changed["status"] = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    harness.api.add(changed)
    for _ in range(4):
        await harness.reconciler.reconcile("ml", "wine")
        harness.api.make_ready()
        if any(what == "replayed" for what, _ in happened):
            break
    replayed = next(at for what, at in happened if what == "replayed")
    assert any(what == "measured" and at >= replayed for what, at in happened)
    candidate = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]["candidate"]
    assert candidate["step"] == 1
    assert candidate["stepStartedAt"] == replayed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_health_waits_for_no_reconcile_and_is_written_the_next_cycle(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reconcile can hold the object for a minute (a golden replay): the health cycle,
    # which waits for all its writes, must not wait for it (other models' health would).
    await converged(harness)
    release = asyncio.Event()
    read = harness.api.get

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        await release.wait()
        return await read(*args, **kwargs)

    monkeypatch.setattr(harness.api, "get", stuck)
    reconciling = asyncio.create_task(harness.reconciler.reconcile("ml", "wine"))
    await asyncio.sleep(0)
    monkeypatch.setattr(harness.api, "get", read)
    monkeypatch.setattr(reconciler_module, "HEALTH_WAIT_SECONDS", 0.05)
    health = {"verdict": "Degraded", "errorRate": 0.05}
    written = harness.record_health(health, BROKEN)
    assert not await asyncio.wait_for(written, 1)
    release.set()
    await reconciling
    assert await harness.record_health(health, BROKEN)


async def test_a_nudge_for_no_name_is_ignored(harness: Harness) -> None:
    # A child labelled vigil.dev/model-deployment="" named no object: the reconcile read the
    # whole collection as one object and failed every 10 s for ever.
    harness.reconciler.nudge("ml", "")
    harness.reconciler.nudge("ml", "", delay=5)
    assert not harness.reconciler._tasks and not harness.reconciler._timers


async def test_retries_of_a_failing_reconcile_back_off_and_reset_on_success(
    harness: Harness,
) -> None:
    # After an API-server brownout every object failed at once and retried every 10 s in
    # lockstep, for ever: each further failure waits about twice as long (jittered).
    harness.api.add(model_deployment())
    harness.api.fail_on = ("apply", "Deployment")
    delays = []
    for _ in range(7):
        with pytest.raises(RetryLater) as caught:
            await harness.reconciler.reconcile("ml", "wine")
        delays.append(caught.value.delay)
    assert delays[0] == 10.0
    for before, after in pairwise(delays[:5]):
        assert 1.6 * before * 0.8 <= after <= 2 * before / 0.8
    assert max(delays) <= 300.0
    harness.api.fail_on = None
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.fail_on = ("apply", "Deployment")
    harness.api.objects[("ModelDeployment", "ml", "wine")]["spec"]["replicas"] = 3
    with pytest.raises(RetryLater) as caught:
        await harness.reconciler.reconcile("ml", "wine")
    assert caught.value.delay == 10.0


async def test_a_retry_waits_as_long_as_the_api_server_asked(harness: Harness) -> None:
    # A 429 from API Priority and Fairness says Retry-After: 120; the retry came after 10 s.
    harness.api.add(model_deployment())
    harness.api.fail_on = ("apply", "Deployment")
    harness.api.fail_status, harness.api.fail_retry_after = 429, 120.0
    with pytest.raises(RetryLater) as caught:
        await harness.reconciler.reconcile("ml", "wine")
    assert caught.value.delay == 120.0
    harness.api.fail_retry_after = 1.0  # a shorter wish does not cut the backoff
    with pytest.raises(RetryLater) as caught:
        await harness.reconciler.reconcile("ml", "wine")
    assert caught.value.delay >= 16.0


async def test_a_paused_operator_reconciles_nothing(harness: Harness) -> None:
    # kopf's peering paused this instance (another one acts): its own timers and nudges
    # must not write either. Resumed, kopf relists and every object is reconciled again.
    harness.api.add(model_deployment())
    harness.reconciler.active = False
    await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes == []
    harness.reconciler.active = True
    await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes


async def test_a_pause_while_observing_drops_the_plan(harness: Harness) -> None:
    # Paused by peering while it read (a golden replay takes up to a minute), it wrote
    # its plan after another instance had started acting.
    harness.api.add(model_deployment())
    read = harness.api.get

    async def paused_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = await read(*args, **kwargs)
        harness.reconciler.active = False
        return found

    harness.api.get = paused_meanwhile  # type: ignore[method-assign]
    await harness.reconciler._observe_decide_write("ml", "wine")
    assert harness.api.writes == []


async def test_shutting_down_lets_a_running_reconcile_finish(harness: Harness) -> None:
    # Cancelled mid-plan, a rolling restart of the operator interrupted writes every time.
    harness.api.add(model_deployment())
    harness.reconciler.coalesce_seconds = 0
    read = harness.api.get

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await read(*args, **kwargs)

    harness.api.get = slow  # type: ignore[method-assign]
    harness.reconciler.nudge("ml", "wine")
    await asyncio.sleep(0.01)  # the reconcile is running
    await harness.reconciler.close()
    assert ("status", "ModelDeployment", "wine") in harness.api.writes


def test_the_backoff_stays_capped_however_long_it_fails(harness: Harness) -> None:
    harness.reconciler._failures[("ml", "wine")] = 5000
    assert harness.reconciler._backoff(("ml", "wine")) <= 300.0


async def test_a_model_deployment_deleted_during_a_reconcile_gets_no_series_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The DELETED event (its series forgotten) lands while the reconcile awaits its status
    # patch: the phase and rollout weight it set after came back and stayed for ever.
    harness.api.add(model_deployment())
    patch = harness.api.patch_status

    async def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:
        written = await patch(*args, **kwargs)
        harness.metrics.forget("ml", "wine")
        return written

    monkeypatch.setattr(harness.api, "patch_status", deleted_meanwhile)
    await harness.reconciler.reconcile("ml", "wine")
    named = {"namespace": "ml", "name": "wine"}
    phase = {**named, "phase": stored_status(harness)["phase"]}
    get = harness.metrics.registry.get_sample_value
    assert get("vigil_modeldeployment_phase", phase) is None
    assert get("vigil_rollout_weight", named) is None
    # Created again: once the watch shows it, its series come back.
    monkeypatch.setattr(harness.api, "patch_status", patch)
    harness.metrics.seen("ml", "wine")
    await harness.reconciler.reconcile("ml", "wine")
    assert get("vigil_modeldeployment_phase", phase) == 1
    assert get("vigil_rollout_weight", named) == 0


def test_a_deleted_model_deployments_series_are_set_again_after_a_while() -> None:
    now = [0.0]
    metrics = OperatorMetrics(clock=lambda: now[0])
    metrics.forget("ml", "wine")
    metrics.set_phase("ml", "wine", "Healthy")
    named = {"namespace": "ml", "name": "wine", "phase": "Healthy"}
    assert metrics.registry.get_sample_value("vigil_modeldeployment_phase", named) is None
    now[0] += DELETED_SECONDS
    metrics.forget("ml", "other")  # also lets old entries go
    metrics.set_phase("ml", "wine", "Healthy")
    assert metrics.registry.get_sample_value("vigil_modeldeployment_phase", named) == 1
    assert list(metrics._deleted) == [("ml", "other")]


async def test_a_deleted_model_deployments_rollout_state_is_let_go() -> None:
    # Deleted while its HTTPRoute could not be written: the routing error stayed for good.
    harness = Harness()
    rollouts = Rollouts(running_in(lambda: {}))
    rollouts._routing_errors[("ml", "gone")] = "HTTPRoute ml/gone does not exist"
    harness.reconciler.rollouts = rollouts
    await harness.reconciler.reconcile("ml", "gone")
    assert rollouts.routing_error("ml", "gone") == ""


async def test_a_plan_for_an_object_deleted_and_created_again_meanwhile_is_dropped(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deleted and created again under its name while the cycle observed (a golden replay
    # takes up to a minute): the new object got the old one's status, its candidate and
    # history, and observedGeneration ahead of its generation.
    harness.api.add(model_deployment())
    listing = harness.api.list

    async def replaced_meanwhile(kind: str, namespace: str, selector: str) -> Any:
        if kind == "Deployment":
            harness.reconciler.forget("ml", "wine")
            again = model_deployment(version="9", replicas=1)
            again["metadata"]["uid"] = "uid-2"
            harness.api.add(again)
        return await listing(kind, namespace, selector)

    monkeypatch.setattr(harness.api, "list", replaced_meanwhile)
    await harness.reconciler.reconcile("ml", "wine")
    assert harness.api.writes == []
    assert "status" not in harness.api.objects[("ModelDeployment", "ml", "wine")]


async def test_a_dropped_plan_leaves_the_new_objects_request_and_metrics_alone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cycle went on after the dropped write: its outcome counted on the new object's
    # series, and the new object's request annotation was cleared unanswered.
    from running_pods import running_in

    from vigil.operator.rollouts import Rollouts

    harness.reconciler.rollouts = Rollouts(running_in(lambda: {}), sidecar_image="sidecar:test")
    harness.api.add(model_deployment())
    listing = harness.api.list

    async def replaced_meanwhile(kind: str, namespace: str, selector: str) -> Any:
        if kind == "Deployment":
            again = model_deployment(version="9", replicas=1)
            again["metadata"].update(uid="uid-2", annotations={"vigil.dev/request": "pause"})
            harness.api.add(again)
        return await listing(kind, namespace, selector)

    monkeypatch.setattr(harness.api, "list", replaced_meanwhile)
    await harness.reconciler.reconcile("ml", "wine")
    stored = harness.api.objects[("ModelDeployment", "ml", "wine")]
    assert stored["metadata"]["annotations"] == {"vigil.dev/request": "pause"}
    assert ("patch", "ModelDeployment", "wine") not in harness.api.writes


async def test_a_status_write_that_finds_the_object_gone_says_nothing(harness: Harness) -> None:
    # Its ReconcileFailed Warning went to an object that is gone, and its retry held the
    # nudges of one created again under the name for a minute.
    harness.api.add(model_deployment())
    harness.api.fail_on, harness.api.fail_status = ("status", "ModelDeployment"), 404
    await harness.reconciler.reconcile("ml", "wine")
    assert [e.reason for e in harness.events if e.warning] == []
    assert ("ml", "wine") not in harness.reconciler._failures


async def test_a_deleted_objects_retry_timer_goes_with_it(harness: Harness) -> None:
    harness.reconciler.nudge("ml", "wine", delay=60)
    harness.reconciler.forget("ml", "wine")
    assert ("ml", "wine") not in harness.reconciler._timers
