"""The reconcile decision, scenario by scenario (new, scale, blue/green, failures, bad input)."""

from __future__ import annotations

import copy
import datetime

import core_world
import pytest
from core_world import World, spec

from vigil.common.times import format_time
from vigil.core.desired import desired_service
from vigil.core.reconcile import Apply, Delete, Plan, decide
from vigil.core.status import ConditionState, build_conditions


def converged_world(version: str = "1", replicas: int = 2) -> World:
    world = World()
    world.spec = spec(version, replicas)
    world.reconcile()
    world.pods_ready(world.status["stable"]["revision"])
    world.reconcile()
    return world


def candidate_started() -> tuple[World, str, str]:
    """A converged world whose spec asks for version 2, its candidate's Deployment made."""
    world = converged_world()
    old = world.status["revision"]
    world.set_spec(spec("2"))
    world.reconcile()
    return world, old, world.status["revision"]


def candidate_ready() -> tuple[World, str, str]:
    """A converged world whose spec asks for version 2, its candidate's pods all ready."""
    world, old, new = candidate_started()
    world.pods_ready(new)
    return world, old, new


def first_at_its_deadline(ready: int) -> tuple[World, str, Plan]:
    """A first revision with ``ready`` pods when its Deployment's progress deadline passes."""
    world = World()
    world.reconcile()
    revision = world.status["revision"]
    world.pods_ready(revision, ready=ready)
    world.deadline_exceeded(revision)
    return world, revision, world.reconcile()


def kinds(plan) -> list[tuple[str, str, str]]:
    return [("apply" if isinstance(a, Apply) else "delete", a.kind, a.name) for a in plan.actions]


RETIRED = ("RolloutAborted", "RolloutSuperseded")


class TestBrandNewModel:
    def test_creates_settings_then_deployment_then_service(self) -> None:
        world = World()
        plan = world.reconcile()
        revision = world.status["revision"]
        assert kinds(plan) == [
            ("apply", "ConfigMap", f"wine-{revision}-sidecar"),
            ("apply", "Deployment", f"wine-{revision}"),
            ("apply", "Service", "wine"),
            ("apply", "Service", "wine-peers"),
        ]
        assert [e.reason for e in plan.events] == ["Deployed"]
        assert world.service_revision() == revision

    def test_the_model_column_names_the_model_even_when_the_spec_leaves_it_to_the_object(
        self,
    ) -> None:
        world = World()
        world.spec = spec(model={"name": "wine-quality", "version": "1"})
        world.reconcile()
        assert world.status["model"] == "wine-quality"
        world.set_spec(spec(model={"version": "2"}))
        world.reconcile()
        assert world.status["model"] == "wine"  # the object's name, as the pods are told
        world.set_spec(spec(model={}))  # no version: InvalidSpec, the name still shown
        world.reconcile()
        assert (world.condition("Ready")["reason"], world.status["model"]) == (
            "InvalidSpec",
            "wine",
        )

    def test_a_first_revision_serving_some_pods_at_its_deadline_is_degraded_not_failed(
        self,
    ) -> None:
        # "is not available", phase Failed, though the Service sent traffic to its ready pod.
        world, revision, plan = first_at_its_deadline(ready=1)
        ready = world.condition("Ready")
        assert (world.status["phase"], ready["reason"]) == ("Degraded", "ReplicasUnavailable")
        assert ready["message"] == (
            f'revision {revision}: 1/2 replica(s) ready (ReplicaSet "x" has timed out progressing.)'
        )
        assert world.condition("Stalled")["status"] == "True"
        assert "DeployFailed" not in [e.reason for e in plan.events]
        assert world.service_revision() == revision


class TestPeersService:
    """The sidecars find each other through ``<name>-peers``: labels join at any pod."""

    def test_is_headless_over_every_pod_of_the_model_on_the_feedback_port(self) -> None:
        world = converged_world()
        peers = world.objects[("Service", "wine-peers")]
        assert peers["spec"]["clusterIP"] == "None"
        assert peers["spec"]["publishNotReadyAddresses"] is True
        assert peers["spec"]["selector"] == {"vigil.dev/model-deployment": "wine"}
        assert [p["port"] for p in peers["spec"]["ports"]] == [8001]
        (owner,) = peers["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "ModelDeployment",
            world.owner.uid,
            True,
        )

    def test_the_sidecars_are_told_its_name(self) -> None:
        world = converged_world()
        (settings,) = [obj for (kind, _), obj in world.objects.items() if kind == "ConfigMap"]
        assert "wine-peers.ml.svc:8001" in next(iter(settings["data"].values()))

    def test_a_deleted_one_is_recreated_and_a_present_one_left_alone(self) -> None:
        world = converged_world()
        assert world.reconcile().actions == []
        del world.objects[("Service", "wine-peers")]
        assert kinds(world.reconcile()) == [("apply", "Service", "wine-peers")]

    def test_it_outlives_revisions(self) -> None:
        world, old, new = candidate_ready()
        world.reconcile()  # the switch
        world.reconcile()
        assert world.service_revision() == new
        assert ("Service", "wine-peers") in world.objects
        assert not any(name.startswith(f"wine-{old}") for _, name in world.objects)

    def test_status_is_pending_until_the_deployment_reports(self) -> None:
        world = World()
        world.reconcile()
        assert world.status["phase"] == "Pending"
        assert world.condition("Ready")["status"] == "False"
        assert world.condition("Ready")["reason"] == "Deploying"
        assert world.condition("Progressing")["status"] == "True"
        assert world.status["observedGeneration"] == 1
        assert world.status["stable"]["readyReplicas"] == 0
        (entry,) = world.status["history"]
        assert (entry["change"], entry["outcome"]) == ("new", "Deployed")

    def test_the_deployments_reports_cost_a_status_write_only_when_a_pod_is_ready(self) -> None:
        # bench/scale: each status write is API-server work the ramp waits for.
        world = World()
        world.reconcile()
        revision = world.status["revision"]
        assert world.status_writes == 1
        world.reconcile()  # the Deployment exists, reports nothing yet
        world.pods_ready(revision, ready=0)
        world.reconcile()  # its first report: no pod ready
        assert world.status_writes == 1 and world.status["phase"] == "Pending"
        assert world.condition("Ready")["message"] == f"revision {revision}: 0/2 replica(s) ready"
        world.pods_ready(revision, ready=1)
        world.reconcile()
        world.pods_ready(revision)
        world.reconcile()
        assert world.status_writes == 3 and world.status["phase"] == "Healthy"

    def test_deploying_while_pods_start(self) -> None:
        world = World()
        world.reconcile()
        world.pods_ready(world.status["revision"], ready=1)
        world.reconcile()
        assert world.status["phase"] == "Progressing"
        assert world.condition("Ready")["reason"] == "Deploying"
        assert "1/2" in world.condition("Ready")["message"]

    def test_kstatus_pair_follows_progressing_and_failure(self) -> None:
        world = World()
        world.reconcile()
        assert world.condition("Reconciling")["status"] == "True"
        assert world.condition("Stalled")["status"] == "False"
        world.pods_ready(world.status["revision"], ready=0)
        world.deadline_exceeded(world.status["revision"])
        world.reconcile()
        assert world.condition("Reconciling")["status"] == "False"
        assert world.condition("Stalled")["status"] == "True"
        assert world.condition("Stalled")["reason"] == "DeployFailed"

    def test_becomes_healthy_and_ready_when_available(self) -> None:
        world = converged_world()
        assert world.condition("Reconciling")["status"] == "False"
        assert world.condition("Stalled")["status"] == "False"
        assert world.status["phase"] == "Healthy"
        assert world.condition("Ready")["status"] == "True"
        assert world.condition("Progressing")["status"] == "False"
        assert world.condition("Progressing")["reason"] == "Complete"
        assert world.status["stable"]["readyReplicas"] == 2

    def test_a_broken_slo_written_by_the_health_loop_makes_it_degraded(self) -> None:
        world = converged_world()
        world.status["conditions"].append(
            {"type": "Healthy", "status": "False", "reason": "ErrorRateAboveSLO", "message": "x"}
        )
        world.reconcile()
        assert world.status["phase"] == "Degraded"
        assert world.condition("Ready")["status"] == "True"
        assert world.condition("Healthy")["reason"] == "ErrorRateAboveSLO"

    def test_a_deployment_that_never_comes_fails_with_its_reason(self) -> None:
        world, _revision, plan = first_at_its_deadline(ready=0)
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "DeployFailed"
        assert "timed out" in world.condition("Ready")["message"]
        assert [e.reason for e in plan.events] == ["DeployFailed"]
        assert plan.events[0].warning
        assert world.reconcile().events == []  # reported once, not on every reconcile


class TestNothingChanged:
    def test_no_write_no_event_no_status_patch(self) -> None:
        world = converged_world()
        writes = world.status_writes
        plan = world.reconcile(advance=3600)
        assert plan.actions == []
        assert plan.events == []
        assert world.status_writes == writes

    def test_a_service_from_before_the_serving_mark_is_not_written_for_it(self) -> None:
        world = converged_world()
        service = world.objects[("Service", "wine")]
        assert service["metadata"]["annotations"]["vigil.dev/serving-since"].startswith(
            world.status["stable"]["revision"]
        )
        # As an operator without the mark applied it (its hash without the mark too).
        world.carry_out([Apply(desired_service(core_world.OWNER, world.service_revision()))])
        assert (
            "vigil.dev/serving-since"
            not in world.objects[("Service", "wine")]["metadata"]["annotations"]
        )
        assert world.reconcile(advance=3600).actions == []

    def test_an_answered_request_costs_no_status_write_later(self) -> None:
        world = converged_world()
        world.status["lastRequest"] = {"verb": "retry", "answer": "Refused", "message": "-"}
        writes = world.status_writes
        world.reconcile(advance=3600)
        assert world.status_writes == writes

    def test_timestamps_are_kept(self) -> None:
        world = converged_world()
        since = world.status["stable"]["since"]
        transition = world.condition("Ready")["lastTransitionTime"]
        world.reconcile(advance=3600)
        assert world.status["stable"]["since"] == since
        assert world.condition("Ready")["lastTransitionTime"] == transition

    def test_a_lost_status_is_rebuilt_from_the_service_without_recreating(self) -> None:
        world = converged_world()
        revision = world.status["revision"]
        world.status = {}
        plan = world.reconcile()
        assert plan.actions == []
        assert plan.events == []
        assert world.status["stable"]["revision"] == revision
        assert world.status["history"][0]["reason"] == "found serving live traffic"

    def test_a_deleted_deployment_is_recreated(self) -> None:
        world = converged_world()
        revision = world.status["revision"]
        del world.objects[("Deployment", f"wine-{revision}")]
        plan = world.reconcile()
        assert ("apply", "Deployment", f"wine-{revision}") in kinds(plan)
        assert [e.reason for e in plan.events] == ["Deployed"]

    def test_when_stable_is_gone_leftover_candidates_are_removed(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2"))
        world.reconcile()
        candidate = world.status["revision"]
        del world.objects[("Deployment", f"wine-{old}")]
        world.set_spec(spec("3"))
        plan = world.reconcile()
        third = world.status["revision"]
        assert ("delete", "Deployment", f"wine-{candidate}") in kinds(plan)
        assert world.names("Deployment") == [f"wine-{third}"]
        assert world.service_revision() == third

    def test_a_manual_scale_is_undone(self) -> None:
        world = converged_world()
        revision = world.status["revision"]
        world.deployment(revision)["spec"]["replicas"] = 7
        plan = world.reconcile()
        assert kinds(plan) == [("apply", "Deployment", f"wine-{revision}")]
        assert world.deployment(revision)["spec"]["replicas"] == 2

    def test_objects_being_deleted_are_not_counted(self) -> None:
        world = converged_world()
        world.objects[("Deployment", "wine-0ld0ld0")] = {
            "kind": "Deployment",
            "metadata": {
                "name": "wine-0ld0ld0",
                "labels": {"vigil.dev/revision": "0ld0ld0"},
                "deletionTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"replicas": 1},
        }
        plan = world.reconcile()
        assert plan.actions == []
        assert plan.events == []


class TestScaling:
    def test_replicas_scale_the_same_deployment_in_place(self) -> None:
        world = converged_world(replicas=2)
        revision = world.status["revision"]
        world.set_spec(spec("1", replicas=4))
        plan = world.reconcile()
        assert kinds(plan) == [("apply", "Deployment", f"wine-{revision}")]
        assert world.deployment(revision)["spec"]["replicas"] == 4
        assert world.status["revision"] == revision
        assert [e.reason for e in plan.events] == ["Scaled"]
        assert "from 2 to 4" in plan.events[0].message
        assert world.condition("Ready")["reason"] == "Scaling"
        assert world.status["phase"] == "Progressing"
        world.pods_ready(revision)
        world.reconcile()
        assert world.status["phase"] == "Healthy"
        assert world.status["stable"]["replicas"] == 4
        assert len(world.status["history"]) == 1

    def test_losing_pods_without_a_spec_change_is_degraded(self) -> None:
        world = converged_world(replicas=2)
        revision = world.status["revision"]
        world.pods_ready(revision, ready=1)
        plan = world.reconcile()
        assert plan.actions == []
        assert world.status["phase"] == "Degraded"
        assert world.condition("Ready")["reason"] == "ReplicasUnavailable"
        assert world.condition("Ready")["status"] == "False"
        world.pods_ready(revision)
        world.reconcile()
        assert world.status["phase"] == "Healthy"

    def test_a_serving_revision_whose_scale_up_times_out_is_degraded_not_failed(self) -> None:
        # Phase Failed / DeployFailed (for a revision that never served) on a model that
        # serves: Flux reported Failed and the alert fired; the advice was a new spec. It
        # serves short of its replicas, and stays so without help: Degraded and Stalled.
        world = converged_world(replicas=2)
        revision = world.status["revision"]
        world.set_spec(spec("1", replicas=5))
        world.reconcile()
        world.pods_ready(revision, ready=2)
        world.deadline_exceeded(revision)
        plan = world.reconcile()
        assert world.status["phase"] == "Degraded"
        assert world.condition("Ready")["reason"] == "ReplicasUnavailable"
        assert "timed out progressing" in world.condition("Ready")["message"]
        assert world.condition("Stalled")["status"] == "True"
        assert "DeployFailed" not in [e.reason for e in plan.events]

    def test_a_revision_that_never_served_fails_even_after_a_blocked_spec(self) -> None:
        # "Never served" read as the previous reason being Deploying: an InvalidSpec between
        # made a Deployment that gave up read Scaling for ever.
        world = World()
        world.reconcile()
        revision = world.status["revision"]
        world.set_spec({**spec(), "model": {"name": "wine", "version": "1", "fetch": {}}})
        world.reconcile()
        assert world.condition("Ready")["reason"] == "InvalidSpec"
        world.deadline_exceeded(revision)
        world.set_spec(spec())
        world.reconcile()
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "DeployFailed"

    def test_a_serving_revision_that_loses_pods_to_a_replica_failure_is_degraded(self) -> None:
        world = converged_world(replicas=2)
        revision = world.status["revision"]
        world.pods_ready(revision, ready=1)
        world.deployment(revision)["status"]["conditions"] = [
            {"type": "ReplicaFailure", "status": "True", "message": "exceeded quota: pods"}
        ]
        world.reconcile()
        assert world.status["phase"] == "Degraded"
        assert "exceeded quota" in world.condition("Ready")["message"]

    def test_scaling_down_is_ready_at_once(self) -> None:
        world = converged_world(replicas=4)
        revision = world.status["revision"]
        world.set_spec(spec("1", replicas=2))
        world.reconcile()
        world.deployment(revision)["status"]["observedGeneration"] += 1
        world.reconcile()
        assert world.condition("Ready")["status"] == "True"


class TestANewStableIsNotJudgedByTheLastOnesHealth:
    """The health conditions speak of the revision that served: when another takes live
    traffic they are Unknown until the health loop has judged it."""

    def test_a_model_promoted_to_fix_drift_is_not_degraded_by_the_old_ones(self) -> None:
        # A retrained model shipped to fix drift read Degraded (Argo CD, kubectl get) until
        # the next health cycle, longer when its metrics were unavailable.
        world, _old, new = candidate_ready()
        verdicts = [
            ConditionState("Healthy", False, "ErrorRateHigh", "error rate 3.2% > 1.0% over 5m"),
            ConditionState("DriftDetected", True, "DriftAboveThreshold", "psi 0.31 >= 0.2"),
        ]
        world.status["conditions"] = build_conditions(
            verdicts, world.status["conditions"], generation=world.generation, now=world.now
        )
        world.reconcile()
        assert world.service_revision() == new
        assert world.status["phase"] == "Healthy"
        for kind in ("Healthy", "DriftDetected"):
            condition = world.condition(kind)
            assert (condition["status"], condition["reason"]) == ("Unknown", "InsufficientData")
            assert condition["message"] == (
                f"revision {new} has just taken live traffic: not judged yet"
            )
        assert all(c["type"] != "PerformanceDegraded" for c in world.status["conditions"])
        world.reconcile()
        assert world.condition("Healthy")["reason"] == "InsufficientData"  # kept, not redone


class TestPodsReplacedInPlace:
    """A serving revision's pods replaced in place (an operator upgrade that changes the pod
    template, `kubectl rollout restart`): maxUnavailable 0 keeps its capacity meanwhile."""

    def replacing(self, counts: dict[str, int]) -> tuple[World, str]:
        """A converged world whose stable's Deployment rolls a new template, then a cycle."""
        world = converged_world()
        revision = world.status["stable"]["revision"]
        deployment = world.deployment(revision)
        assert deployment is not None
        deployment["metadata"]["generation"] += 1
        deployment["status"].update(counts)
        world.reconcile()
        return world, revision

    def test_it_stays_ready_and_says_it_updates(self) -> None:
        # It read Degraded, Ready False ReplicasUnavailable: every Application Degraded at
        # each operator upgrade, at full capacity.
        world, revision = self.replacing({"replicas": 3, "updatedReplicas": 1})
        assert world.status["phase"] == "Healthy"
        assert (world.condition("Ready")["status"], world.condition("Ready")["reason"]) == (
            "True",
            "Available",
        )
        progressing = world.condition("Progressing")
        assert (progressing["status"], progressing["reason"]) == ("True", "Updating")
        assert "replacing its pods (1/2 updated)" in progressing["message"]
        world.pods_ready(revision)
        world.reconcile()
        assert world.condition("Progressing")["reason"] == "Complete"

    def test_a_pod_lost_meanwhile_is_degraded(self) -> None:
        world, _ = self.replacing({"updatedReplicas": 1, "readyReplicas": 1})
        assert world.status["phase"] == "Degraded"
        assert world.condition("Ready")["reason"] == "ReplicasUnavailable"


class TestAReferenceEditedInPlace:
    def test_replaces_the_pods_which_read_it_at_their_start(self) -> None:
        # The sidecars kept counting with the old profile for as long as they lived, while
        # the health loop judged their counts against the new one.
        world = converged_world()
        world.reference_digest = "sha256:aaaa"
        world.reconcile()
        revision = world.status["stable"]["revision"]
        deployment = world.deployment(revision)
        assert deployment is not None
        template = deployment["spec"]["template"]["metadata"]["annotations"]
        assert template["vigil.dev/reference-digest"] == "sha256:aaaa"
        world.pods_ready(revision)
        world.reference_digest = "sha256:bbbb"
        world.reconcile()
        assert world.status["stable"]["revision"] == revision  # no new revision
        deployment = world.deployment(revision)
        assert deployment is not None
        template = deployment["spec"]["template"]["metadata"]["annotations"]
        assert template["vigil.dev/reference-digest"] == "sha256:bbbb"
        world.reconcile()  # the Deployment controller has not replaced them yet
        assert world.condition("Progressing")["reason"] == "Updating"
        assert world.condition("Ready")["status"] == "True"


class TestBlueGreen:
    def test_new_version_starts_a_candidate_and_keeps_traffic_on_stable(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2"))
        plan = world.reconcile()
        new = world.status["revision"]
        assert new != old
        assert kinds(plan) == [
            ("apply", "ConfigMap", f"wine-{new}-sidecar"),
            ("apply", "Deployment", f"wine-{new}"),
        ]
        assert world.service_revision() == old
        assert [e.reason for e in plan.events] == ["RolloutStarted"]
        candidate = world.status["candidate"]
        assert candidate["revision"] == new
        assert candidate["change"] == "replacement"
        assert candidate["modelVersion"] == "2"
        assert world.status["stable"]["revision"] == old
        assert world.status["phase"] == "Progressing"
        assert world.condition("Ready")["reason"] == "RolloutInProgress"
        assert world.condition("Progressing")["status"] == "True"
        role = world.deployment(new)["metadata"]["labels"]["vigil.dev/role"]
        assert role == "candidate"

    def test_service_does_not_move_to_a_partly_ready_candidate(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2"))
        world.reconcile()
        world.pods_ready(world.status["revision"], ready=1)
        plan = world.reconcile()
        assert world.service_revision() == old
        assert not any(isinstance(a, Delete) for a in plan.actions)

    def test_service_does_not_move_to_a_candidate_deployment_smaller_than_the_spec(self) -> None:
        # e.g. a revision kept at a bake's minReplicas, or a canary's size when the steps
        # were removed mid-rollout: all its own pods ready, but too few for the spec.
        world = converged_world(replicas=4)
        old = world.status["revision"]
        world.set_spec(spec("2", replicas=4))
        world.reconcile()
        new = world.status["revision"]
        world.deployment(new)["spec"]["replicas"] = 1
        world.pods_ready(new)
        plan = world.reconcile()
        assert world.service_revision() == old
        assert not any(isinstance(a, Delete) for a in plan.actions)
        assert world.deployment(new)["spec"]["replicas"] == 4  # scaled up first
        world.pods_ready(new)
        world.reconcile()
        assert world.service_revision() == new

    def test_a_stable_losing_every_pod_while_a_candidate_starts_is_degraded(self) -> None:
        # It read Progressing (RolloutInProgress) through the outage: Argo CD showed
        # Progressing, and no alert on phase Degraded fired.
        world, old, new = candidate_started()
        world.pods_ready(new, ready=1)
        world.pods_ready(old, ready=0)
        world.reconcile()
        ready, progressing = world.condition("Ready"), world.condition("Progressing")
        assert (world.status["phase"], ready["reason"]) == ("Degraded", "ReplicasUnavailable")
        assert (progressing["status"], progressing["reason"]) == ("True", "RolloutInProgress")
        assert ready["message"] == (
            f"revision {new} starting (1/2 ready); revision {old} has no ready pod: nothing serves"
        )
        world.pods_ready(old)
        world.reconcile()
        assert (world.status["phase"], world.condition("Ready")["reason"]) == (
            "Progressing",
            "RolloutInProgress",
        )

    def test_a_wait_paused_before_its_start_is_timed_from_the_resume(self) -> None:
        # Timed from the pause, a 20-minute pause spent the first minute's grace for a
        # replica failure: RolloutFailed 2 s after the resume.
        world = converged_world()
        world.set_spec(spec("2", paused=True))
        world.reconcile()
        held = world.status["candidate"]["stepStartedAt"]
        world.reconcile(advance=1200)
        assert world.status["candidate"]["stepStartedAt"] == held  # not rewritten each cycle
        world.set_spec(spec("2"))
        world.reconcile(advance=1)
        new = world.status["candidate"]["revision"]
        assert world.status["candidate"]["stepStartedAt"] == format_time(world.now)
        world.pods_ready(new, ready=0)
        quota = {"type": "ReplicaFailure", "status": "True", "message": "exceeded quota: pods"}
        world.deployment(new)["status"]["conditions"] = [quota]
        world.reconcile(advance=2)
        assert world.condition("Ready")["reason"] == "RolloutInProgress"

    @pytest.mark.parametrize("passes", [True, False])
    def test_a_replica_failure_in_an_attempts_first_minute_is_waited_out(
        self, passes: bool
    ) -> None:
        # The superseded candidate's pods, still terminating, held the namespace's quota: the
        # rollout failed at once, Stalled True, and switched by itself 40 s later.
        world, _old, new = candidate_started()
        world.pods_ready(new, ready=0)
        quota = {"type": "ReplicaFailure", "status": "True", "message": "exceeded quota: pods"}
        world.deployment(new)["status"]["conditions"] = [quota]
        plan = world.reconcile(advance=2)
        assert world.condition("Ready")["reason"] == "RolloutInProgress"
        assert "(0/2 ready; exceeded quota: pods)" in world.condition("Ready")["message"]
        assert "RolloutFailed" not in [e.reason for e in plan.events]
        assert plan.recheck_after == 58.0  # the look at the minute's end
        if passes:
            world.pods_ready(new)
            world.reconcile(advance=40)
            assert world.service_revision() == new
            return
        world.reconcile(advance=58)
        ready = world.condition("Ready")
        assert (ready["reason"], world.status["phase"]) == ("RolloutFailed", "Failed")
        assert ready["message"].startswith(
            f"revision {new} did not become available (0/2 ready): exceeded quota: pods; "
        )

    def test_a_scale_the_deployment_controller_does_not_time_fails_at_its_deadline(self) -> None:
        # A Deployment whose rollout completed (a bake's kept revision asked for again, more
        # replicas) reports no deadline for a scale up that never comes: it waited for ever.
        world, _old, new = candidate_started()
        world.pods_ready(new, ready=1)
        done = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        world.deployment(new)["status"]["conditions"] = [done]
        world.reconcile(advance=599)
        assert world.condition("Ready")["reason"] == "RolloutInProgress"
        plans = [world.reconcile(advance=1), world.reconcile(advance=30)]
        ready = world.condition("Ready")
        assert (ready["reason"], world.status["phase"]) == ("RolloutFailed", "Failed")
        assert ready["message"].startswith(
            f"revision {new} did not become available (1/2 ready): still short of its replicas "
            "600s after it started (its Deployment's progressDeadlineSeconds, which the "
            "Deployment controller does not apply to a scale up after a completed rollout); "
        )
        said = [e for plan in plans for e in plan.events if e.reason == "RolloutFailed"]
        assert len(said) == 1 and said[0].occurrence.startswith(f"RolloutFailed {new} ")

    def test_switch_moves_the_service_before_deleting_the_old_revision(self) -> None:
        world, old, new = candidate_ready()
        plan = world.reconcile()
        order = kinds(plan)
        assert order.index(("apply", "Service", "wine")) < order.index(
            ("delete", "Deployment", f"wine-{old}")
        )
        assert ("delete", "ConfigMap", f"wine-{old}-sidecar") in order
        assert world.service_revision() == new
        assert world.names("Deployment") == [f"wine-{new}"]
        assert [e.reason for e in plan.events] == ["Switched"]
        assert world.status["stable"]["revision"] == new
        assert "candidate" not in world.status
        assert world.status["phase"] == "Healthy"
        history = [(h["revision"], h["outcome"]) for h in world.status["history"]]
        assert history == [(new, "Promoted"), (old, "Deployed")]
        assert world.deployment(new)["metadata"]["labels"]["vigil.dev/role"] == "stable"
        settings = world.objects[("ConfigMap", f"wine-{new}-sidecar")]["data"]["sidecar.json"]
        assert '"role": "stable"' in settings
        assert world.reconcile().actions == []

    @pytest.mark.parametrize("done", range(6))
    def test_a_switch_cut_short_is_finished_once_in_the_same_words(self, done: int) -> None:
        # The operator stopped after `done` of the switch's actions, before its Events
        # and status: the next cycle finishes the same promotion with the same Switched
        # Event (same words, same Event name: posted once) and leaves nothing behind.
        world, old, new = candidate_ready()
        cut = decide(world.observe())
        assert done <= len(cut.actions) == 5
        world.carry_out(cut.actions[:done])
        plan = world.reconcile()
        assert [(e.reason, e.message) for e in plan.events] == [
            (e.reason, e.message) for e in cut.events
        ]
        assert world.names("Deployment") == [f"wine-{new}"]
        assert world.names("ConfigMap") == [f"wine-{new}-sidecar"]
        assert world.names("Service") == ["wine", "wine-peers"]
        assert world.service_revision() == new
        history = [(h["revision"], h["outcome"], h["change"]) for h in world.status["history"]]
        assert history == [(new, "Promoted", "replacement"), (old, "Deployed", "new")]
        assert world.status["stable"]["revision"] == new and "candidate" not in world.status
        settled = world.reconcile()
        assert settled.actions == [] and settled.events == []

    @pytest.mark.parametrize("service_only", [False, True])
    def test_a_switch_retried_after_an_outage_is_dated_at_the_switch(
        self, service_only: bool
    ) -> None:
        # The operator was down two minutes after the Service moved (and, or not, the rest of
        # the switch's writes), before its status write: status.stable.since and the history
        # entry are the switch's, not the retry's.
        world, _old, _new = candidate_ready()
        written = copy.deepcopy(world)
        written.reconcile()
        world.now += datetime.timedelta(seconds=1)
        actions = decide(world.observe()).actions
        assert (actions[0].kind, actions[0].name) == ("Service", "wine")  # the move comes first
        world.carry_out(actions[:1] if service_only else actions)
        world.reconcile(advance=120)
        assert world.status["stable"] == written.status["stable"]
        assert world.status["history"] == written.status["history"]

    @pytest.mark.parametrize("bake", [False, True])
    def test_a_switch_cut_short_then_a_service_conflict_records_the_switch(
        self, bake: bool
    ) -> None:
        # Someone's Service took our Service's name after the switch moved it, before its
        # status write: the conflict cycle dropped the switch unrecorded (no Switched Event;
        # history later said "found serving live traffic"); with the old stable kept for a
        # bake and our Service still seen, that stable was later recorded Aborted.
        rollout = {"bake": {"duration": "10m"}} if bake else {}
        world, old = core_world.serving(rollout)
        world.set_spec(spec("2", rollout=rollout))
        world.reconcile()
        new = world.status["revision"]
        world.pods_ready(new)
        cut = decide(world.observe())
        world.carry_out(cut.actions)
        world.foreign_service = True
        if not bake:  # the operator reads no foreign Service: ours is gone from what it sees
            del world.objects[("Service", "wine")]
        plans = [world.reconcile() for _ in range(2)]
        assert world.condition("Ready")["reason"] == "ServiceConflict"
        assert world.status["stable"]["revision"] == new and "candidate" not in world.status
        world.foreign_service = False
        plans += [world.reconcile() for _ in range(2)]
        # Said once each, the switch in the interrupted cycle's words (the same Event).
        said = [(e.reason, e.message, e.occurrence) for plan in plans for e in plan.events]
        (switched,) = [(e.reason, e.message, e.occurrence) for e in cut.events]
        assert said[:1] == [switched] and [e[0] for e in said[1:]] == ["ServiceConflict"]
        entry, written = world.status["history"][0], cut.status["history"][0]
        # When: the switch's, marked on the revision a bake keeps (else this cycle's).
        assert entry == (written if bake else {**written, "at": entry["at"]})
        assert [(h["revision"], h["outcome"]) for h in world.status["history"]] == [
            (new, "Promoted"),
            (old, "Deployed"),
        ]
        assert world.service_revision() == new and world.status["stable"]["revision"] == new
        assert ("bake" in world.status) is bake
        if bake:
            assert world.status["bake"]["startedAt"] == cut.status["bake"]["startedAt"]
            assert world.deployment(old) is not None

    @pytest.mark.parametrize("then", ["new spec", "reference missing", "invalid spec"])
    def test_a_switch_cut_short_then_another_spec_finishes_it_first(self, then: str) -> None:
        # The switch's writes done (the Service moved), not its deletions, Events or status;
        # the spec changes again before the next cycle (one that can start, or not): that
        # cycle finishes this very promotion, and the old stable goes as no candidate.
        world, old, new = candidate_ready()
        cut = decide(world.observe())
        world.carry_out(cut.actions[:3])
        assert world.service_revision() == new and world.status["stable"]["revision"] == old
        if then == "reference missing":
            reference = {"configMapKeyRef": {"name": "gone", "key": "p"}}
            world.set_spec(spec("3", monitoring={"reference": reference}))
            world.reference_found = False
        else:
            world.set_spec(spec("3", 0 if then == "invalid spec" else 2))
        plan = world.reconcile()
        switched = [(e.reason, e.message, e.occurrence) for e in cut.events]
        assert [(e.reason, e.message, e.occurrence) for e in plan.events][:1] == switched
        assert not any(e.reason in RETIRED for e in plan.events)
        assert world.deployment(old) is None and f"wine-{old}-sidecar" not in world.names(
            "ConfigMap"
        )
        assert world.service_revision() == new and world.status["stable"]["revision"] == new
        history = [(h["revision"], h["outcome"], h["change"]) for h in world.status["history"]]
        assert history == [(new, "Promoted", "replacement"), (old, "Deployed", "new")]
        assert world.status["history"][0]["reason"] == cut.status["history"][0]["reason"]
        assert world.status.get("candidate", {}).get("revision") != new

    def test_a_leftover_of_a_removed_revision_is_deleted(self) -> None:
        world = converged_world()
        stable = world.status["revision"]
        leftover = dict(world.objects[("ConfigMap", f"wine-{stable}-sidecar")])
        leftover["metadata"] = {
            **leftover["metadata"],
            "name": "wine-0ld0000-sidecar",
            "labels": {**leftover["metadata"]["labels"], "vigil.dev/revision": "0ld0000"},
        }
        world.objects[("ConfigMap", "wine-0ld0000-sidecar")] = leftover
        plan = world.reconcile()
        assert kinds(plan) == [("delete", "ConfigMap", "wine-0ld0000-sidecar")]
        assert world.names("ConfigMap") == [f"wine-{stable}-sidecar"]

    def test_the_stables_settings_deleted_while_a_candidate_starts_come_back(self) -> None:
        # Blue/green: the spec renders the candidate only, so the stable's settings (which its
        # pods mount) stayed missing until the switch; made again from its Deployment's copy.
        world = converged_world()
        stable = world.status["revision"]
        world.set_spec(spec("2"))
        world.reconcile()
        before = world.objects.pop(("ConfigMap", f"wine-{stable}-sidecar"))
        plan = world.reconcile()
        assert kinds(plan) == [("apply", "ConfigMap", f"wine-{stable}-sidecar")]
        assert world.objects[("ConfigMap", f"wine-{stable}-sidecar")] == before
        assert world.reconcile().actions == []

    def test_a_config_change_is_a_tweak(self) -> None:
        world = converged_world()
        world.set_spec(spec("1", config={"MLSERVER_PARALLEL_WORKERS": "0"}))
        world.reconcile()
        assert world.status["candidate"]["change"] == "tweak"

    def test_a_failed_candidate_leaves_stable_serving(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2", server={"image": "broken:latest"}))
        world.reconcile()
        new = world.status["revision"]
        world.pods_ready(new, ready=0)
        world.deadline_exceeded(new)
        plan = world.reconcile()
        assert world.service_revision() == old
        assert world.deployment(old) is not None
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "RolloutFailed"
        assert f"revision {old} keeps serving" in world.condition("Ready")["message"]
        assert [e.reason for e in plan.events] == ["RolloutFailed"]
        assert world.reconcile().events == []

    def test_spec_back_to_stable_aborts_the_candidate(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2"))
        world.reconcile()
        new = world.status["revision"]
        world.set_spec(spec("1"))
        plan = world.reconcile()
        assert ("delete", "Deployment", f"wine-{new}") in kinds(plan)
        assert [e.reason for e in plan.events] == ["RolloutAborted"]
        assert world.names("Deployment") == [f"wine-{old}"]
        assert "candidate" not in world.status
        assert world.status["history"][0]["outcome"] == "Aborted"
        assert world.status["phase"] == "Healthy"

    def test_a_newer_spec_supersedes_the_candidate(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2"))
        world.reconcile()
        second = world.status["revision"]
        world.set_spec(spec("3"))
        plan = world.reconcile()
        third = world.status["revision"]
        assert ("delete", "Deployment", f"wine-{second}") in kinds(plan)
        assert ("apply", "Deployment", f"wine-{third}") in kinds(plan)
        assert "RolloutSuperseded" in [e.reason for e in plan.events]
        assert world.names("Deployment") == sorted([f"wine-{old}", f"wine-{third}"])
        assert world.status["history"][0]["outcome"] == "Superseded"

    @pytest.mark.parametrize("back_to_stable", [True, False], ids=["aborted", "superseded"])
    def test_a_restart_before_the_status_write_keeps_the_history_entry(
        self, back_to_stable: bool
    ) -> None:
        # The operator stops after deleting the candidate, before status records why: the
        # next cycle finds no Deployment to retire, and wrote no history entry for it.
        world = converged_world()
        world.set_spec(spec("2"))
        world.reconcile()
        second = world.status["revision"]
        world.set_spec(spec("1" if back_to_stable else "3"))
        cut = decide(world.observe())
        world.carry_out(cut.actions)
        assert world.deployment(second) is None
        plan = world.reconcile()
        entries = [h for h in world.status["history"] if h["revision"] == second]
        assert [h["outcome"] for h in entries] == ["Aborted" if back_to_stable else "Superseded"]
        assert [(e.reason, e.message) for e in plan.events if e.reason in RETIRED] == [
            (e.reason, e.message) for e in cut.events if e.reason in RETIRED
        ]
        assert world.reconcile().events == []

    def test_paused_holds_the_rollout_before_it_starts(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2", paused=True))
        plan = world.reconcile()
        assert plan.actions == []
        assert world.condition("Ready")["reason"] == "RolloutPaused"
        assert world.status["candidate"]["modelVersion"] == "2"
        assert world.service_revision() == old

    @pytest.mark.parametrize("candidate", ["starting", "failed"])
    def test_spec_replicas_reach_the_stable_while_a_candidate_waits(self, candidate: str) -> None:
        # 2 -> 5 replicas reached only the candidate: a failed one ran 5 pods, the stable 2.
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(spec("2"))
        world.reconcile()
        new = world.status["revision"]
        if candidate == "failed":
            world.deadline_exceeded(new)
            world.reconcile()
            assert world.status["phase"] == "Failed"
        world.set_spec(spec("2", 5))
        world.reconcile()
        assert world.deployment(old)["spec"]["replicas"] == 5
        assert world.service_revision() == old

    def test_candidate_step_start_is_kept_across_reconciles(self) -> None:
        world = converged_world()
        world.set_spec(spec("2"))
        world.reconcile()
        started = world.status["candidate"]["stepStartedAt"]
        world.reconcile(advance=60)
        assert world.status["candidate"]["stepStartedAt"] == started


class TestWhatTheSchemaCannotCatch:
    def test_a_name_too_long_for_children_is_reported_not_crashed(self) -> None:
        from vigil.core.desired import Owner

        world = World(Owner(name="n" * 56, namespace="ml", uid="u"))
        plan = world.reconcile()
        assert plan.actions == []
        assert [e.reason for e in plan.events] == ["InvalidSpec"]
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "InvalidSpec"
        assert "at most 55" in world.condition("Ready")["message"]
        assert world.reconcile().events == []

    def test_a_spec_without_version_is_invalid(self) -> None:
        world = World()
        world.spec = {"model": {}, "server": {"image": "x"}}
        plan = world.reconcile()
        assert plan.actions == []
        assert "spec.model.version is required" in world.condition("Ready")["message"]

    def test_an_invalid_spec_keeps_the_stable_revision(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec({"model": {"version": "2"}, "server": {"image": "x"}, "replicas": 0})
        plan = world.reconcile()
        assert plan.actions == []
        assert world.status["stable"]["revision"] == old
        assert f"revision {old} keeps serving" in world.condition("Ready")["message"]

    def test_missing_reference_holds_and_asks_for_a_recheck(self) -> None:
        world = World()
        world.spec = spec(monitoring={"reference": {"configMapKeyRef": {"name": "r", "key": "k"}}})
        world.reference_found = False
        plan = world.reconcile()
        assert plan.actions == []
        assert plan.recheck_after and plan.recheck_after > 0
        assert world.condition("Ready")["reason"] == "ReferenceNotFound"
        assert [e.reason for e in plan.events] == ["ReferenceNotFound"]
        world.reference_found = True
        plan = world.reconcile()
        assert [a.kind for a in plan.actions] == ["ConfigMap", "Deployment", "Service", "Service"]

    def test_a_foreign_service_with_our_name_is_never_taken_over(self) -> None:
        world = World()
        world.foreign_service = True
        plan = world.reconcile()
        assert plan.actions == []
        assert world.condition("Ready")["reason"] == "ServiceConflict"
        assert [e.reason for e in plan.events] == ["ServiceConflict"]
        assert world.status["phase"] == "Failed"

    def test_missing_reference_does_not_touch_a_serving_revision(self) -> None:
        world = converged_world()
        old = world.status["revision"]
        world.set_spec(
            spec("1", monitoring={"reference": {"configMapKeyRef": {"name": "r", "key": "k"}}})
        )
        world.reference_found = False
        plan = world.reconcile()
        assert plan.actions == []
        assert world.service_revision() == old
        assert world.status["stable"]["revision"] == old


@pytest.mark.parametrize("generation", [1, 5])
def test_observed_generation_follows_the_object(generation: int) -> None:
    world = World()
    world.generation = generation
    plan = decide(world.observe())
    assert plan.status["observedGeneration"] == generation
    assert all(c["observedGeneration"] == generation for c in plan.status["conditions"])
