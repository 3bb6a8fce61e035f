"""A stable revision whose status or Deployment is lost, and a newer spec that cannot start.

Neither ever puts an unjudged candidate in front of live traffic: the stable
is found again (by its label) or made again (from a spec that still makes
it); otherwise the rollout holds with the stable alone until a person says.
A newer spec that cannot start supersedes the candidate it replaces.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_world import RolloutWorld, World, spec
from figures_kit import figures as seen
from test_bake_period import promoted as promoted_with_bake
from test_progressive_rollout import (
    BAD,
    GOOD,
    ROLLOUT,
    RoutedWorld,
    routed_rollout,
    run_until,
    serving,
    started,
)

from vigil.core.candidate import Request, RolloutInputs
from vigil.core.reconcile import Delete, Plan, Route

REFERENCE = {"reference": {"configMapKeyRef": {"name": "ref3", "key": "p.json"}}}


def at_canary(world: RolloutWorld, candidate: str, name: str = "canary 20%") -> None:
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("stepName") == name)
    world.pods_ready(candidate)
    world.reconcile()


def canary(routed: bool = False) -> tuple[RolloutWorld, str, str]:
    """A rollout with steps at its 20 % canary (live Service over both revisions, or a route)."""
    world, stable, candidate = routed_rollout() if routed else started()
    at_canary(world, candidate)
    return world, stable, candidate


def selected(world: World) -> str | None:
    """The revision the live Service selects (None: every pod of the model)."""
    return world.objects[("Service", "wine")]["spec"]["selector"].get("vigil.dev/revision")


def role(world: World, revision: str) -> str | None:
    deployment = world.deployment(revision)
    return None if deployment is None else deployment["metadata"]["labels"]["vigil.dev/role"]


def warnings(plan: Plan) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in plan.events if e.warning]


def outcomes(world: World) -> list[tuple[str, str]]:
    return [(h["revision"], h["outcome"]) for h in world.status.get("history") or ()]


def delete_deployment(world: World, revision: str) -> None:
    del world.objects[("Deployment", f"wine-{revision}")]


class TestAStatusLostMidCanary:
    def test_the_stable_is_found_by_its_label_and_the_rollout_starts_again(self) -> None:
        world, stable, candidate = canary()
        assert selected(world) is None  # the canary's Service names no revision
        world.status = {}  # restored from a backup without status
        plan = world.reconcile()
        assert not any(isinstance(a, Delete) and a.kind == "Deployment" for a in plan.actions)
        assert world.replicas(stable) == 2 and role(world, stable) == "stable"
        assert world.status["stable"]["revision"] == stable
        assert world.status["candidate"]["revision"] == candidate
        assert world.status["candidate"]["step"] == 0  # the shadow step: no live traffic
        assert selected(world) == stable
        ((reason, message),) = warnings(plan)
        assert reason == "RolloutRetried"
        assert f"revision {stable}, whose Deployment is labelled stable" in message
        assert f"the rollout of revision {candidate} starts again" in message


class TestAStableDeletedMidRollout:
    @pytest.mark.parametrize("routed", [False, True], ids=["replica-ratio", "gateway-api"])
    def test_the_candidate_serves_meanwhile_but_is_never_promoted(self, routed: bool) -> None:
        # The one revision left that can answer: pointing the Service at the lost stable
        # failed every request until a person acted.
        world, stable, candidate = canary(routed)
        delete_deployment(world, stable)
        for _ in range(5):  # the candidate ready all along: never promoted all the same
            world.pods_ready(candidate)
            world.reconcile()
        assert selected(world) == candidate
        # All the traffic: the stable's replicas (2), a candidate all the same.
        assert world.replicas(candidate) == 2 and role(world, candidate) == "candidate"
        assert world.status["stable"]["revision"] == stable
        assert world.status["candidate"]["revision"] == candidate
        assert world.status["candidate"]["weight"] == 100
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "RolloutFailed"
        assert outcomes(world) == [(stable, "Deployed")]
        posted = [(e.reason, e.warning) for p in world.plans[-5:] for e in p.events]
        assert posted == [("RolloutFailed", True)]
        if routed:
            assert isinstance(world, RoutedWorld)
            assert world.backends() == [("wine", 100)]

    def test_the_warning_says_what_was_found_and_what_a_person_can_do(self) -> None:
        world, stable, candidate = canary()
        delete_deployment(world, stable)
        ((reason, message),) = warnings(world.reconcile())
        assert reason == "RolloutFailed"
        assert f"the Deployment of stable revision {stable} is missing" in message
        assert f"the spec makes revision {candidate}, which is not promoted without its steps" in (
            message
        )
        assert "kubectl vigil promote" in message
        assert message == world.condition("Ready")["message"]

    def test_the_spec_set_back_makes_the_stable_again_and_aborts_the_candidate(self) -> None:
        world, stable, candidate = canary()
        delete_deployment(world, stable)
        world.reconcile()
        world.set_spec(spec("1", 2, rollout=ROLLOUT))
        world.reconcile()
        assert world.replicas(stable) == 2 and role(world, stable) == "stable"
        # The candidate serves until the stable made again is available (it was deleted at
        # once and the Service moved to a stable with no ready pod: an outage).
        assert selected(world) == candidate and world.deployment(candidate) is not None
        world.pods_ready(stable)
        plan = world.reconcile()
        assert world.deployment(candidate) is None
        assert selected(world) == stable
        assert ("RolloutAborted", False) in [(e.reason, e.warning) for e in plan.events]
        assert outcomes(world) == [(candidate, "Aborted"), (stable, "Deployed")]
        assert world.status["history"][1]["reason"] == "first revision of this ModelDeployment"
        world.reconcile()
        assert world.status["phase"] == "Healthy"

    def test_a_person_can_promote_the_candidate_in_its_place(self) -> None:
        world, stable, candidate = canary()
        delete_deployment(world, stable)
        world.reconcile()
        world.request = Request("promote", "r1")
        plan = world.reconcile()
        assert world.status["lastRequest"]["answer"] == "Taken"
        assert role(world, candidate) == "stable" and world.replicas(candidate) == 2
        assert selected(world) == candidate
        assert world.status["stable"]["revision"] == candidate and "candidate" not in world.status
        ((reason, message),) = warnings(plan)
        assert reason == "Deployed" and "promoted by a person" in message
        assert outcomes(world)[0] == (candidate, "Promoted")
        assert stable in message

    def test_a_promote_naming_the_lost_stable_takes_a_revision_never_started(self) -> None:
        # The spec moved on while the stable's Deployment went: status shows no candidate, so
        # the plugin names the lost stable, and the hold asks for exactly that promote.
        world, stable = serving()
        delete_deployment(world, stable)
        world.set_spec(spec("2", 2, rollout=ROLLOUT))
        world.reconcile()
        assert "kubectl vigil promote" in world.condition("Ready")["message"]
        assert not world.status.get("candidate")
        world.request = Request("promote", "r1", stable)
        world.reconcile()
        assert world.status["lastRequest"]["answer"] == "Taken"
        assert world.status["stable"]["revision"] != stable

    def test_another_request_is_refused_with_the_reason(self) -> None:
        world, stable, _candidate = canary()
        delete_deployment(world, stable)
        world.reconcile()
        world.request = Request("resume", "r1")
        world.reconcile()
        last = world.status["lastRequest"]
        assert last["answer"] == "Refused" and f"stable revision {stable}" in last["message"]

    def test_a_candidate_serving_in_its_place_keeps_the_service_whatever_its_readiness(
        self,
    ) -> None:
        # Serving only while it had ready pods, the Service went back and forth with a
        # Warning at each turn.
        world, stable, candidate = canary()
        delete_deployment(world, stable)
        world.reconcile()
        posted = []
        for ready in (0, 1, 0, 1):
            world.pods_ready(candidate, ready)
            plan = world.reconcile()
            assert selected(world) == candidate and world.status["candidate"]["weight"] == 100
            posted += warnings(plan)
        assert posted == []

    def test_a_lost_status_too_leaves_the_candidate_unpromoted(self) -> None:
        world, stable, candidate = canary()
        delete_deployment(world, stable)
        world.status = {}
        plan = world.reconcile()
        assert world.replicas(candidate) == 2 and role(world, candidate) == "candidate"
        assert world.condition("Ready")["reason"] == "RolloutFailed"
        assert "no stable revision's Deployment is left" in warnings(plan)[0][1]
        # It serves, and status says so (a canary's Service had left it all traffic unsaid).
        assert selected(world) == candidate
        assert f"meanwhile revision {candidate} serves all live traffic" in warnings(plan)[0][1]

    def test_status_lost_while_the_candidate_serves_leaves_it_unpromoted(self) -> None:
        world, stable, candidate = canary()
        delete_deployment(world, stable)
        world.reconcile()  # the candidate serves in the lost stable's place
        world.status = {}
        for _ in range(3):
            world.pods_ready(candidate)
            plan = world.reconcile()
        assert role(world, candidate) == "candidate" and selected(world) == candidate
        assert world.condition("Ready")["reason"] == "RolloutFailed"
        assert not any(e.reason == "Deployed" for e in plan.events)

    def test_a_spec_without_steps_deploys_the_candidate_in_the_stables_place(self) -> None:
        world, stable, candidate = started(rollout={})
        delete_deployment(world, stable)
        plan = world.reconcile()
        assert role(world, candidate) == "stable" and selected(world) == candidate
        ((reason, message),) = warnings(plan)
        assert reason == "Deployed"
        assert f"the Deployment of stable revision {stable} is missing" in message
        assert outcomes(world) == [(candidate, "Deployed"), (stable, "Deployed")]
        assert world.status["history"][0]["change"] == "replacement"
        assert "first revision" not in world.status["history"][0]["reason"]

    def test_a_paused_spec_without_steps_holds_too(self) -> None:
        world, stable, candidate = started(rollout={})
        delete_deployment(world, stable)
        world.set_spec({**spec("2", 2, rollout={}), "paused": True})
        world.reconcile()
        # Not promoted; it takes the Service all the same, the one revision that can answer.
        assert role(world, candidate) == "candidate" and selected(world) == candidate
        assert "which is paused (spec.paused)" in world.condition("Ready")["message"]


class TestAStableDeletedDuringARolledBackHold:
    def test_the_rejected_revision_is_not_deployed(self) -> None:
        world, stable, candidate = started()
        world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
        delete_deployment(world, stable)
        for _ in range(3):
            plan = world.reconcile()
            assert world.deployment(candidate) is None
        assert selected(world) == stable
        assert world.status["candidate"]["outcome"] == "RolledBack"
        assert outcomes(world) == [(candidate, "RolledBack"), (stable, "Deployed")]
        assert world.condition("Ready")["reason"] == "RolloutFailed"
        assert any(r == "RolloutFailed" for p in world.plans[-3:] for r, _ in warnings(p))
        assert plan.events == []  # posted once


class TestAStableDeletedInSteadyState:
    def promoted(self) -> tuple[World, str]:
        world = World()
        world.spec = spec("1", 2)
        world.reconcile()
        world.pods_ready(world.status["stable"]["revision"])
        world.reconcile()
        world.set_spec(spec("2", 2))
        world.reconcile()
        revision = world.status["candidate"]["revision"]
        world.pods_ready(revision)
        world.reconcile()
        world.reconcile()
        return world, revision

    def test_is_made_again_and_its_history_entry_kept(self) -> None:
        world, revision = self.promoted()
        history = world.status["history"]
        assert history[0]["outcome"] == "Promoted"
        delete_deployment(world, revision)
        plan = world.reconcile()
        deployment = world.deployment(revision)
        assert deployment is not None and deployment["spec"]["replicas"] == 2
        assert role(world, revision) == "stable"
        assert world.status["history"] == history
        ((reason, message),) = warnings(plan)
        assert reason == "Deployed"
        assert f"the Deployment of stable revision {revision} was missing" in message

    def test_is_degraded_until_its_pods_are_back(self) -> None:
        world, revision = self.promoted()
        delete_deployment(world, revision)
        world.reconcile()
        assert world.status["phase"] == "Degraded"
        assert world.condition("Ready")["reason"] == "ReplicasUnavailable"
        world.reconcile()
        assert world.status["phase"] == "Degraded"
        world.pods_ready(revision)
        world.reconcile()
        assert world.status["phase"] == "Healthy"

    def test_a_first_revision_that_never_served_is_deployed_as_first_again(self) -> None:
        # Its Deployment never came (a refused write) or went before its first pod.
        world = World()
        world.reconcile()
        revision = world.status["stable"]["revision"]
        delete_deployment(world, revision)
        plan = world.reconcile()
        assert [(e.reason, e.warning) for e in plan.events] == [("Deployed", False)]
        assert world.status["phase"] == "Pending"
        assert world.status["history"][0]["reason"] == "first revision of this ModelDeployment"

    def test_a_promoted_revision_lost_in_its_bake_is_made_again_and_the_bake_goes_on(
        self,
    ) -> None:
        world, previous, revision = promoted_with_bake()
        bake = world.status["bake"]
        delete_deployment(world, revision)  # the previous one, still labelled stable, stays
        world.reconcile()
        assert role(world, revision) == "stable" and selected(world) == revision
        assert world.deployment(previous) is not None
        assert world.status["stable"]["revision"] == revision
        assert world.status["bake"] == bake
        world.pods_ready(revision)
        world.reconcile()
        assert world.status["bake"]["previous"] == previous
        assert world.condition("Progressing")["reason"] == "Baking"


class TestANewerSpecThatCannotStart:
    def waiting_for_reference(self, world: RolloutWorld) -> Plan:
        world.set_spec(spec("3", 2, rollout=world.spec["rollout"], monitoring=REFERENCE))
        world.reference_found = False
        world.inputs = RolloutInputs(figures=seen(requests=200, error_rate=0.5), shadow_target="x")
        return world.reconcile(60)

    def test_supersedes_the_candidate_and_leaves_the_stable_alone(self) -> None:
        world, stable, candidate = canary()
        plan = self.waiting_for_reference(world)
        assert world.deployment(candidate) is None
        assert selected(world) == stable and world.shadow(stable) is None
        assert "candidate" not in world.status
        assert outcomes(world)[0] == (candidate, "Superseded")
        assert [e.reason for e in plan.events] == ["RolloutSuperseded", "ReferenceNotFound"]
        assert world.condition("Ready")["reason"] == "ReferenceNotFound"
        for _ in range(3):
            assert world.reconcile(60).actions == []

    def test_a_rolled_back_candidate_not_yet_removed_goes_with_its_outcome(self) -> None:
        world, stable, candidate = started()
        world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
        assert world.deployment(candidate) is not None  # removed by the next cycle
        plan = self.waiting_for_reference(world)
        assert world.deployment(candidate) is None and selected(world) == stable
        assert outcomes(world)[0] == (candidate, "RolledBack")
        assert world.status["candidate"]["outcome"] == "RolledBack"
        assert "RolloutSuperseded" not in [e.reason for e in plan.events]

    def test_the_route_leaves_the_superseded_candidate_first(self) -> None:
        world, stable, candidate = canary(routed=True)
        assert isinstance(world, RoutedWorld)
        plan = self.waiting_for_reference(world)
        assert world.backends() == [("wine", 100)] and selected(world) == stable
        kinds = [type(a).__name__ for a in plan.actions]
        assert kinds.index("Route") < kinds.index("Delete")
        assert world.deployment(candidate) is None

    def test_the_new_revision_starts_from_its_first_step_once_it_can(self) -> None:
        world, _stable, _candidate = canary()
        self.waiting_for_reference(world)
        world.reference_found = True
        world.reconcile()
        assert world.status["candidate"]["step"] == 0
        assert world.status["candidate"]["revision"] == world.status["revision"]

    def test_an_unreadable_rollout_for_a_newer_revision_supersedes_the_candidate(self) -> None:
        world, stable, candidate = canary(routed=True)
        assert isinstance(world, RoutedWorld)
        broken: dict[str, Any] = {**world.spec["rollout"], "analysis": {"interval": "fast"}}
        world.set_spec(spec("3", 2, rollout=broken))
        plan = world.reconcile()
        assert world.condition("Ready")["reason"] == "InvalidSpec"
        assert world.deployment(candidate) is None and selected(world) == stable
        assert world.backends() == [("wine", 100)]
        assert any(isinstance(a, Route) for a in plan.actions)
        assert "candidate" not in world.status

    def test_an_unreadable_spec_for_another_model_version_supersedes_the_candidate(self) -> None:
        # A reference written the old way: the spec is not read, yet it asks for version 3.
        world, stable, candidate = canary()
        old_style = {"reference": {"name": "ref3", "key": "p.json"}}
        world.set_spec(spec("3", 2, rollout=ROLLOUT, monitoring=old_style))
        plan = world.reconcile()
        assert world.condition("Ready")["reason"] == "InvalidSpec"
        assert world.deployment(candidate) is None and selected(world) == stable
        assert world.shadow(stable) is None and "candidate" not in world.status
        assert (
            "RolloutSuperseded",
            f"revision {candidate} removed: superseded by the new spec",
        ) in [(e.reason, e.message) for e in plan.events]

    def test_the_same_revision_blocked_keeps_its_candidate_where_it_stood(self) -> None:
        world, _stable, candidate = canary()
        step = world.status["candidate"]["step"]
        broken = {**ROLLOUT, "analysis": {"interval": "fast"}}
        world.set_spec(spec("2", 2, rollout=broken))
        world.reconcile()
        assert world.condition("Ready")["reason"] == "InvalidSpec"
        assert world.deployment(candidate) is not None
        assert world.status["candidate"]["step"] == step
