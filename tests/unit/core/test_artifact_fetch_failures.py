"""A model that cannot be fetched: ArtifactFetchFailed, at once or at the deadline.

The candidate's pods are written as the kubelet writes them (kubelet_pods):
a permanent error of vigil-fetch fails the rollout at once, with or without
steps; transient ones retry in the pod until the deadline; the stable keeps
serving with all its replicas, and the candidate never gets traffic.
"""

from __future__ import annotations

from typing import Any

from core_world import RolloutWorld, World, spec
from kubelet_pods import (
    FORBIDDEN,
    RUNNING,
    SECRET_MISSING,
    UNREACHABLE,
    backing_off,
    failed,
    pod,
)

from vigil.core.candidate import Request
from vigil.core.reconcile import has_served

URI = "s3://models/wine/2/model.tar.gz"
STEPS = {
    "replacement": {"steps": [{"canary": {"weight": 50, "duration": "10s"}}]},
    "progressDeadline": "60s",
}


def model(version: str) -> dict[str, Any]:
    return {"name": "wine", "version": version, "uri": f"s3://models/wine/{version}/model.tar.gz"}


def serving(world: World, **extra: Any) -> str:
    world.spec = spec("1", 2, model=model("1"), **extra)
    world.reconcile()
    stable = world.status["stable"]["revision"]
    world.pods_ready(stable)
    world.reconcile()
    return stable


def changed(world: World, version: str = "2", **extra: Any) -> str:
    world.set_spec(spec(version, 2, model=model(version), **extra))
    world.reconcile()
    return world.status["candidate"]["revision"]


def events(plan: Any) -> list[tuple[str, str, bool]]:
    return [(event.reason, event.message, event.warning) for event in plan.events]


def assert_stable_serves_alone(world: World, stable: str) -> None:
    assert world.service_revision() == stable
    assert world.deployment(stable)["spec"]["replicas"] == 2


class TestWithoutSteps:
    def test_a_permanent_error_fails_the_candidate_at_once_in_the_fetchers_words(self) -> None:
        world = World()
        stable = serving(world)
        candidate = changed(world)
        world.kubelet(failed(candidate))
        plan = world.reconcile()
        message = (
            f"revision {candidate} could not fetch its model: {FORBIDDEN}; "
            f"revision {stable} keeps serving"
        )
        assert events(plan) == [("ArtifactFetchFailed", message, True)]
        assert world.status["phase"] == "Failed"
        for kind in ("Ready", "Progressing"):
            condition = world.condition(kind)
            assert (condition["status"], condition["reason"]) == ("False", "ArtifactFetchFailed")
            assert condition["message"] == message
        assert world.condition("Stalled")["status"] == "True"
        assert world.status["history"][0]["outcome"] == "Failed"
        assert world.status["history"][0]["reason"] == f"ArtifactFetchFailed: {FORBIDDEN}"
        assert world.status["candidate"]["outcome"] == "Failed"
        assert_stable_serves_alone(world, stable)
        assert has_served(world.status)  # the stable's health is still judged

    def test_the_candidate_is_removed_and_stays_out_until_the_spec_changes(self) -> None:
        world = World()
        stable = serving(world)
        candidate = changed(world)
        world.kubelet(failed(candidate))
        world.reconcile()
        world.reconcile()
        assert world.deployment(candidate) is None
        for _ in range(3):
            plan = world.reconcile()
            assert plan.events == [] and world.deployment(candidate) is None
        assert world.condition("Ready")["reason"] == "ArtifactFetchFailed"
        assert_stable_serves_alone(world, stable)
        fixed = changed(world, "3")
        assert fixed != candidate
        assert world.deployment(fixed) is not None
        assert world.condition("Ready")["reason"] == "RolloutInProgress"

    def test_a_person_retries_the_same_revision(self) -> None:
        world = RolloutWorld()
        serving(world)
        candidate = changed(world)
        world.kubelet(failed(candidate))
        world.reconcile()
        world.reconcile()
        world.request = Request("retry", "r1")
        plan = world.reconcile()
        assert "RolloutRetried" in [event.reason for event in plan.events]
        assert world.status["lastRequest"]["answer"] == "Taken"
        assert world.deployment(candidate) is not None

    def test_transient_errors_wait_in_progressing_then_fail_with_the_deployment(self) -> None:
        world = World()
        stable = serving(world)
        candidate = changed(world)
        world.kubelet(backing_off(candidate))
        plan = world.reconcile()
        assert plan.events == []
        progressing = world.condition("Progressing")
        assert (progressing["status"], progressing["reason"]) == ("True", "RolloutInProgress")
        assert progressing["message"] == (
            f"revision {candidate} starting (0/2 ready; fetching its model failed, retrying: "
            f"{UNREACHABLE}); revision {stable} keeps serving"
        )
        world.deadline_exceeded(candidate)
        plan = world.reconcile()
        words = f'{UNREACHABLE} (ReplicaSet "x" has timed out progressing.)'
        assert [event.reason for event in plan.events] == ["ArtifactFetchFailed"]
        assert world.condition("Ready")["message"] == (
            f"revision {candidate} could not fetch its model: {words}; "
            f"revision {stable} keeps serving"
        )
        assert_stable_serves_alone(world, stable)

    def test_a_missing_secret_fails_the_candidate_at_once_naming_it(self) -> None:
        world = World()
        stable = serving(world)
        candidate = changed(world)
        world.kubelet(pod(candidate, SECRET_MISSING))
        plan = world.reconcile()
        words = (
            f"revision {candidate} could not fetch its model: spec.model.storage.secretRef: "
            'CreateContainerConfigError: secret "wine-artifacts" not found'
        )
        assert [event.reason for event in plan.events] == ["ArtifactFetchFailed"]
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["message"] == f"{words}; revision {stable} keeps serving"
        world.reconcile()
        assert world.deployment(candidate) is None
        assert_stable_serves_alone(world, stable)

    def test_a_running_fetch_is_said(self) -> None:
        world = World()
        serving(world)
        candidate = changed(world)
        world.kubelet(pod(candidate, RUNNING))
        world.reconcile()
        assert "(0/2 ready; fetching its model)" in world.condition("Progressing")["message"]


class TestWithSteps:
    def test_a_permanent_error_fails_the_rollout_at_once(self) -> None:
        world = RolloutWorld()
        stable = serving(world, rollout=STEPS)
        candidate = changed(world, rollout=STEPS)
        world.kubelet(failed(candidate))
        plan = world.reconcile()
        assert [e.reason for e in plan.events] == ["ArtifactFetchFailed"]
        assert world.status["phase"] == "Failed"
        assert world.status["candidate"]["reason"] == "ArtifactFetchFailed"
        assert world.status["candidate"]["weight"] == 0
        assert world.condition("Ready")["reason"] == "ArtifactFetchFailed"
        assert FORBIDDEN in world.condition("Ready")["message"]
        world.reconcile()
        assert world.deployment(candidate) is None
        assert_stable_serves_alone(world, stable)

    def test_transient_errors_hold_until_the_progress_deadline(self) -> None:
        world = RolloutWorld()
        stable = serving(world, rollout=STEPS)
        candidate = changed(world, rollout=STEPS)
        world.kubelet(backing_off(candidate))
        world.reconcile()
        assert world.status["candidate"]["reason"] == "CandidateNotReady"
        assert world.condition("Progressing")["message"].endswith(
            f"(fetching its model failed, retrying: {UNREACHABLE}); revision {stable} keeps serving"
        )
        for _ in range(70):
            world.reconcile(advance=1.0)
            if world.status["phase"] == "Failed":
                break
        assert world.condition("Ready")["reason"] == "ArtifactFetchFailed"
        message = world.condition("Ready")["message"]
        assert UNREACHABLE in message and ">= progressDeadline 60s" in message
        assert_stable_serves_alone(world, stable)


class TestFirstRevision:
    def test_nothing_serves_yet_the_model_fails_and_heals_when_fetched(self) -> None:
        world = World()
        world.spec = spec("1", 2, model=model("1"))
        world.reconcile()
        revision = world.status["revision"]
        world.pods_ready(revision, 0)
        world.kubelet(failed(revision))
        plan = world.reconcile()
        message = f"revision {revision} could not fetch its model: {FORBIDDEN}"
        assert events(plan) == [("ArtifactFetchFailed", message, True)]
        assert not has_served(world.status)  # no health to judge yet
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "ArtifactFetchFailed"
        assert world.reconcile().events == []  # once
        # The object was uploaded: the kubelet's next attempt fetches it.
        world.pods.clear()
        world.pods_ready(revision)
        world.reconcile()
        assert world.status["phase"] == "Healthy"

    def test_fetching_is_said_while_deploying(self) -> None:
        world = World()
        world.spec = spec("1", 2, model=model("1"))
        world.reconcile()
        revision = world.status["revision"]
        world.pods_ready(revision, 0)
        world.kubelet(pod(revision, RUNNING))
        world.reconcile()
        assert world.condition("Ready")["message"] == (
            f"revision {revision}: 0/2 replica(s) ready (fetching its model)"
        )


def test_a_blue_green_failure_decided_again_after_a_kill_is_one_event() -> None:
    # Named after a start taken at the failure, a kill before its status write posted the
    # Warning again under a new name, and status said the attempt started when it failed.
    import datetime

    from vigil.core.reconcile import decide

    world = World()
    serving(world)
    candidate = changed(world)
    started = world.status["candidate"]["startedAt"]
    world.kubelet(failed(candidate))
    world.now += datetime.timedelta(seconds=1)
    cut = decide(world.observe())  # its Event posted, its status write lost
    world.now += datetime.timedelta(seconds=1)
    again = world.reconcile()
    assert [e.occurrence for e in again.events] == [e.occurrence for e in cut.events]
    assert world.status["candidate"]["startedAt"] == started
