"""A tiny in-memory stand-in for the API server and the Deployment controller.

Only for unit tests of the pure decision: it stores what a plan applies,
removes what it deletes, and lets a test say "these pods became ready" or
"this Deployment gave up". The real behaviour is covered by the e2e suite.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from vigil.common.objects import copied
from vigil.common.times import format_time
from vigil.core.candidate import Request, RolloutInputs
from vigil.core.desired import Owner
from vigil.core.observed import fetch_state, fetches_by_revision
from vigil.core.reconcile import Action, Apply, Delete, Observation, Plan, decide
from vigil.core.rollout import GoldenResult
from vigil.core.spec import parse_rollout
from vigil.core.status import ConditionState, build_conditions, status_patch
from vigil.routing import RoutingTarget, router_for

OWNER = Owner(name="wine", namespace="ml", uid="uid-wine")
SIDECAR = "ghcr.io/vigil-dev/vigil:test"
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def spec(version: str = "1", replicas: int = 2, **extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "model": {"name": "wine", "version": version},
        "server": {"image": "seldonio/mlserver:1.7.1-sklearn"},
        "replicas": replicas,
    }
    value.update(extra)
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it to the status."""
    if not isinstance(patch, dict):
        return copied(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class World:
    """The objects of one ModelDeployment and its status, as the API server would hold them."""

    def __init__(self, owner: Owner = OWNER) -> None:
        self.owner = owner
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.generation = 1
        self.spec: dict[str, Any] = spec()
        self.now = T0
        self.reference_found = True
        #: A digest of the reference profile's text, as the operator computes it.
        self.reference_digest = ""
        self.foreign_service = False
        self.status_writes = 0
        #: Pods by name, as the kubelet writes them (only their artifact fetch is read).
        self.pods: dict[str, dict[str, Any]] = {}

    # -- the user -------------------------------------------------------------
    def set_spec(self, value: dict[str, Any]) -> None:
        self.spec = value
        self.generation += 1

    # -- the operator ---------------------------------------------------------
    def observe(self) -> Observation:
        def of(kind: str) -> list[dict[str, Any]]:
            return [obj for (k, _), obj in self.objects.items() if k == kind]

        service = self.objects.get(("Service", self.owner.name))
        return Observation(
            owner=self.owner,
            generation=self.generation,
            spec=self.spec,
            status=self.status,
            deployments=of("Deployment"),
            service=service,
            configmaps=of("ConfigMap"),
            reference_found=self.reference_found,
            reference_digest=self.reference_digest,
            now=self.now,
            sidecar_image=SIDECAR,
            foreign_service=self.foreign_service,
            revision_services=[
                obj
                for (kind, name), obj in self.objects.items()
                if kind == "Service" and name != self.owner.name
            ],
            fetches=fetches_by_revision(
                (pod["metadata"]["labels"]["vigil.dev/revision"], state)
                for pod in self.pods.values()
                if (state := fetch_state(pod)) is not None
            ),
        )

    def reconcile(self, advance: float = 1.0) -> Plan:
        """Decide, then carry out the plan as the operator layer would."""
        self.now += datetime.timedelta(seconds=advance)
        plan = decide(self.observe())
        self.carry_out(plan.actions)
        patch = status_patch(self.status, plan.status)
        if patch is not None:
            self.status_writes += 1
            self.status = merge_patch(self.status, patch)
        return plan

    def carry_out(self, actions: Sequence[Action]) -> None:
        """Apply and delete as the plan says (alone: an operator stopped before its status)."""
        for action in actions:
            if isinstance(action, Apply):
                self._apply(action.manifest)
            elif isinstance(action, Delete):
                self.objects.pop((action.kind, action.name), None)
                if action.kind == "Deployment":  # its pods go with it
                    self.pods = {
                        name: pod
                        for name, pod in self.pods.items()
                        if not name.startswith(f"{action.name}-")
                    }

    def _apply(self, manifest: Any) -> None:
        key = (str(manifest["kind"]), str(manifest["metadata"]["name"]))
        new = copied(dict(manifest))
        old = self.objects.get(key)
        if new["kind"] == "Deployment":
            generation = 1
            if old is not None:
                generation = old["metadata"]["generation"]
                if old["spec"] != new["spec"]:
                    generation += 1
            new["metadata"]["generation"] = generation
            new["status"] = copied(old.get("status", {})) if old else {}
        if new["kind"] == "Service":  # a route names a revision Service only once it is old
            created = old["metadata"].get("creationTimestamp") if old else None
            new["metadata"]["creationTimestamp"] = created or format_time(self.now)
        self.objects[key] = new

    # -- the kubelet ----------------------------------------------------------------
    def kubelet(self, pod: dict[str, Any]) -> None:
        """A pod's status as the kubelet wrote it (tests/unit/core/kubelet_pods.py)."""
        self.pods[pod["metadata"]["name"]] = copied(pod)

    # -- the Deployment controller ----------------------------------------------
    def deployment(self, revision: str) -> dict[str, Any] | None:
        return self.objects.get(("Deployment", f"{self.owner.name}-{revision}"))

    def pods_ready(self, revision: str, ready: int | None = None) -> None:
        deployment = self.deployment(revision)
        assert deployment is not None, f"no Deployment for {revision}"
        replicas = deployment["spec"]["replicas"]
        count = replicas if ready is None else ready
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": count,
            "availableReplicas": count,
        }

    def deadline_exceeded(self, revision: str) -> None:
        deployment = self.deployment(revision)
        assert deployment is not None
        deployment.setdefault("status", {})["conditions"] = [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "x" has timed out progressing.',
            }
        ]

    # -- reading ----------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.objects if k == kind)

    def service_revision(self) -> str | None:
        service = self.objects.get(("Service", self.owner.name))
        return None if service is None else service["spec"]["selector"]["vigil.dev/revision"]

    def condition(self, kind: str) -> dict[str, Any]:
        for item in self.status.get("conditions", []):
            if item["type"] == kind:
                return item
        raise AssertionError(f"no {kind} condition in {self.status}")


class RolloutWorld(World):
    """World + per-revision Services, the rollout inputs, the router and requests."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: RolloutInputs | None = None
        self.request: Request | None = None
        self.golden: GoldenResult | None = None
        self.plans: list[Plan] = []

    def observe(self) -> Observation:
        base = super().observe()
        try:
            route = parse_rollout(self.spec.get("rollout") or {}).http_route
        except ValueError:  # unreadable: the operator's parsed spec keeps the default
            route = None
        router = router_for(route)

        def planner(stable: str, candidate: str | None, traffic: Any) -> Any:
            return router.plan(RoutingTarget("wine", "ml", stable, candidate), traffic)

        return dataclasses.replace(
            base,
            rollout=self.inputs,
            request=self.request,
            route_planner=planner,
        )

    def reconcile(self, advance: float = 1.0) -> Plan:
        plan = super().reconcile(advance)
        self.plans.append(plan)
        if plan.clear_request is not None:
            self.request = None
        return plan

    def shadow(self, revision: str) -> Any:
        data = self.objects[("ConfigMap", f"wine-{revision}-sidecar")]["data"]
        return json.loads(data["sidecar.json"])["shadow"]

    def replicas(self, revision: str) -> int:
        deployment = self.deployment(revision)
        return -1 if deployment is None else deployment["spec"]["replicas"]


AnyWorld = TypeVar("AnyWorld", bound=World)


def serving(rollout: dict[str, Any], world: AnyWorld | None = None) -> tuple[AnyWorld, str]:
    """Version 1 serving with all its replicas: (world, its revision)."""
    world = world if world is not None else World()  # type: ignore[assignment]
    assert world is not None
    world.spec = spec("1", 2, rollout=rollout)
    world.reconcile()
    revision = world.status["stable"]["revision"]
    world.pods_ready(revision)
    world.reconcile()
    return world, revision


def promoted_with_bake(rollout: dict[str, Any] | None = None) -> tuple[World, str, str]:
    """Version 2 switched in blue/green with a bake (10m by default): (world, previous,
    promoted)."""
    rollout = rollout or {"bake": {"duration": "10m"}}
    world, previous = serving(rollout)
    world.set_spec(spec("2", 2, rollout=rollout))
    world.reconcile()
    revision = world.status["candidate"]["revision"]
    world.pods_ready(revision)
    world.reconcile()
    assert world.service_revision() == revision
    return world, previous, revision


def judged(world: World, kind: str, status: bool | None, reason: str, message: str) -> None:
    """What the health loop writes: one condition, its transition time now."""
    world.status["conditions"] = build_conditions(
        [ConditionState(kind, status, reason, message)],
        world.status.get("conditions"),
        generation=world.generation,
        now=world.now,
    )
