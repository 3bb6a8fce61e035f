"""A serving revision whose scale-up the Deployment controller gave up on.

spec.replicas goes from 2 to 4 and only 2 pods can start (a quota, a node too
small, a model that cannot be fetched): once the Deployment reports its
progress deadline exceeded, nothing moves without a person. The model still
serves with what it has (not Failed), but Progressing turns False and Stalled
True, so Argo CD and Flux see it instead of waiting for their own timeouts.
"""

from __future__ import annotations

from core_world import World, spec

TIMED_OUT = 'ReplicaSet "x" has timed out progressing.'


def scaled_up_to_four() -> tuple[World, str]:
    """Version 1 serving with 2 replicas, then asked for 4, of which 2 are ready."""
    world = World()
    world.reconcile()
    revision = world.status["revision"]
    world.pods_ready(revision)
    world.reconcile()
    assert world.condition("Ready")["status"] == "True"
    world.set_spec(spec("1", replicas=4))
    world.reconcile()
    world.pods_ready(revision, ready=2)
    world.reconcile()
    return world, revision


def conditions(world: World) -> dict[str, tuple[str, str]]:
    return {
        kind: (world.condition(kind)["status"], world.condition(kind)["reason"])
        for kind in ("Ready", "Progressing", "Reconciling", "Stalled")
    }


def test_a_scale_up_still_under_way_is_progressing_and_not_stalled() -> None:
    world, _ = scaled_up_to_four()
    for _ in range(3):
        world.reconcile(advance=60)
    assert world.status["phase"] == "Progressing"
    assert conditions(world) == {
        "Ready": ("False", "Scaling"),
        "Progressing": ("True", "Scaling"),
        "Reconciling": ("True", "Scaling"),
        "Stalled": ("False", "NotStalled"),
    }


def test_a_scale_up_the_deployment_gave_up_on_is_stalled_with_the_figures() -> None:
    world, revision = scaled_up_to_four()
    world.deadline_exceeded(revision)
    plan = world.reconcile(advance=600)
    assert world.status["phase"] == "Degraded"
    assert conditions(world) == {
        "Ready": ("False", "ReplicasUnavailable"),
        "Progressing": ("False", "ReplicasUnavailable"),
        "Reconciling": ("False", "ReplicasUnavailable"),
        "Stalled": ("True", "ReplicasUnavailable"),
    }
    for kind in ("Ready", "Progressing", "Stalled"):
        message = world.condition(kind)["message"]
        assert "2/4" in message, message
        assert TIMED_OUT in message, message
        assert revision in message, message
    # Still serving with what it has: not Failed, nothing removed, no DeployFailed.
    assert world.service_revision() == revision
    assert "DeployFailed" not in [event.reason for event in plan.events]
    assert world.deployment(revision)["spec"]["replicas"] == 4


def test_a_scale_up_that_gave_up_stays_stalled_without_a_write_per_cycle() -> None:
    world, revision = scaled_up_to_four()
    world.deadline_exceeded(revision)
    world.reconcile(advance=600)
    writes, status = world.status_writes, world.status
    for _ in range(5):
        plan = world.reconcile(advance=600)
        assert plan.actions == [] or all(
            getattr(action, "kind", None) != "Deployment"
            or action.manifest["spec"]["replicas"] == 4
            for action in plan.actions
        )
    assert world.status_writes == writes
    assert world.status == status
    assert world.condition("Stalled")["status"] == "True"


def test_a_scale_up_that_gave_up_recovers_once_the_pods_are_ready() -> None:
    world, revision = scaled_up_to_four()
    world.deadline_exceeded(revision)
    world.reconcile(advance=600)
    assert world.condition("Stalled")["status"] == "True"
    world.pods_ready(revision)  # the quota raised: all 4 ready, the deadline cleared
    world.reconcile()
    assert world.status["phase"] == "Healthy"
    assert conditions(world) == {
        "Ready": ("True", "Available"),
        "Progressing": ("False", "Complete"),
        "Reconciling": ("False", "Complete"),
        "Stalled": ("False", "NotStalled"),
    }
    assert "4/4" in world.condition("Ready")["message"]
    assert world.status["stable"]["readyReplicas"] == 4


def test_a_scale_up_that_gave_up_then_moves_again_is_no_longer_stalled() -> None:
    world, revision = scaled_up_to_four()
    world.deadline_exceeded(revision)
    world.reconcile(advance=600)
    world.pods_ready(revision, ready=3)  # one more pod came: the controller progresses
    world.reconcile()
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Progressing")["status"] == "True"
    assert "3/4" in world.condition("Progressing")["message"]


def test_a_new_replica_count_is_not_judged_by_the_previous_deadline() -> None:
    # The Deployment controller has not seen the new count yet: its old verdict is no
    # verdict on it (else the next cycle would flap back to Scaling).
    world, revision = scaled_up_to_four()
    world.deadline_exceeded(revision)
    world.reconcile(advance=600)
    world.set_spec(spec("1", replicas=6))
    world.reconcile()
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Progressing")["reason"] == "Scaling"
