"""A change while a revision serves in the place of a stable made again (not yet available).

The stable's Deployment was deleted mid-canary: the candidate serves all live
traffic in its place; the spec set back to the stable makes it again, and the
candidate keeps serving until it is available (cycle.serving_in_place). A
change that arrives meanwhile never moves the Service to the stable with no
ready pod: the stand-in keeps serving; a stepped rollout waits, judging
nothing, and starts at its first step once the stable is available.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_world import RolloutWorld, spec
from kubelet_pods import failed
from test_lost_stable_and_blocked_changes import canary, delete_deployment, role, selected
from test_progressive_rollout import BAD, GOOD, ROLLOUT, RoutedWorld, run_until

from vigil.common.times import parse_time
from vigil.core.candidate import Request, RolloutInputs


def standing_in(routed: bool = False) -> tuple[RolloutWorld, str, str]:
    """The stable made again (no pod ready), the candidate serving all live traffic in its
    place: (world, stable, stand-in)."""
    world, stable, candidate = canary(routed)
    delete_deployment(world, stable)
    world.reconcile()
    world.set_spec(spec("1", 2, rollout=ROLLOUT))
    world.pods_ready(candidate)
    world.reconcile()
    assert world.deployment(stable) is not None and selected(world) == candidate
    return world, stable, candidate


def changed(world: RolloutWorld, version: str, **extra: Any) -> str:
    """The spec changed to ``version``: its revision (as status names it)."""
    world.set_spec(spec(version, 2, **extra))
    world.reconcile()
    return str(world.status["revision"])


def wait(world: RolloutWorld, standin: str, cycles: int = 3, advance: float = 1.0) -> None:
    for _ in range(cycles):
        if world.deployment(standin) is not None:
            world.pods_ready(standin)
        world.reconcile(advance)


def serves_until(world: RolloutWorld, standin: str, stable: str) -> str:
    return f"revision {standin} serves all live traffic until revision {stable} is available"


class TestAStepChangeWhileAStandInServes:
    @pytest.mark.parametrize("routed", [False, True], ids=["replica-ratio", "gateway-api"])
    def test_the_stand_in_keeps_all_live_traffic(self, routed: bool) -> None:
        world, stable, standin = standing_in(routed)
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        assert changed(world, "2", rollout=ROLLOUT) == standin
        wait(world, standin)
        assert selected(world) == standin and world.replicas(standin) == 2
        if routed:
            assert isinstance(world, RoutedWorld)
            assert world.backends() == [("wine", 100)]
        assert world.shadow(stable) is None
        candidate = world.status["candidate"]
        assert candidate["revision"] == standin and candidate["weight"] == 100
        assert serves_until(world, standin, stable) in candidate["message"]
        assert serves_until(world, standin, stable) in world.condition("Ready")["message"]

    def test_nothing_is_judged_and_no_deadline_runs_meanwhile(self) -> None:
        world, _stable, standin = standing_in()
        world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
        changed(world, "2", rollout=ROLLOUT)
        wait(world, standin, cycles=8, advance=10.0)  # past progressDeadline (60s)
        candidate = world.status["candidate"]
        for clock in ("stepStartedAt", "heldSince", "lastAnalysisAt", "gates", "outcome"):
            assert clock not in candidate
        assert world.status["phase"] == "Progressing" and selected(world) == standin

    def test_another_revision_waits_and_the_stand_in_is_not_superseded(self) -> None:
        world, stable, standin = standing_in()
        revision = changed(world, "3", rollout=ROLLOUT)
        wait(world, standin)
        assert selected(world) == standin and world.deployment(standin) is not None
        assert world.deployment(revision) is None  # the stable's pods come first
        assert world.status["candidate"]["revision"] == revision
        assert world.status["candidate"]["weight"] == 0
        assert serves_until(world, standin, stable) in world.condition("Ready")["message"]

    def test_a_request_meanwhile_is_refused_with_the_reason(self) -> None:
        world, stable, standin = standing_in()
        changed(world, "2", rollout=ROLLOUT)
        world.request = Request("abort", "r1")
        world.reconcile()
        last = world.status["lastRequest"]
        assert last["answer"] == "Refused"
        assert serves_until(world, standin, stable) in last["message"]
        assert selected(world) == standin and world.deployment(standin) is not None


class TestOnceTheStableIsAvailable:
    def test_the_rollout_starts_at_its_first_step_then_and_proceeds(self) -> None:
        world, stable, standin = standing_in()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        changed(world, "2", rollout=ROLLOUT)
        wait(world, standin)
        world.pods_ready(stable)
        world.reconcile()
        assert selected(world) == stable  # the shadow step: live traffic on the stable
        candidate = world.status["candidate"]
        assert candidate["step"] == 0 and candidate["stepName"] == "shadow 100%"
        assert parse_time(candidate["stepStartedAt"]) == world.now  # its clock starts now
        assert world.shadow(stable) is not None
        run_until(world, standin, lambda: world.status["phase"] == "Healthy")
        assert world.status["stable"]["revision"] == standin and role(world, standin) == "stable"
        assert world.deployment(stable) is None

    def test_another_revision_starts_and_the_stand_in_is_superseded(self) -> None:
        world, stable, standin = standing_in()
        revision = changed(world, "3", rollout=ROLLOUT)
        wait(world, standin)
        world.pods_ready(stable)
        plan = world.reconcile()
        assert selected(world) == stable and world.deployment(standin) is None
        assert world.deployment(revision) is not None
        assert [e.reason for e in plan.events] == ["RolloutSuperseded", "RolloutStarted"]


class TestABlueGreenChangeWhileAStandInServes:
    def test_the_stand_in_serves_until_the_candidate_switches(self) -> None:
        world, stable, standin = standing_in()
        revision = changed(world, "3", rollout={})
        wait(world, standin)
        assert selected(world) == standin and world.deployment(standin) is not None
        assert world.replicas(revision) == 2
        assert serves_until(world, standin, stable) in world.condition("Ready")["message"]
        world.pods_ready(revision)
        world.reconcile()
        assert selected(world) == revision and world.status["stable"]["revision"] == revision
        assert world.deployment(standin) is None and world.deployment(stable) is None
        assert (standin, "Superseded") in [
            (h["revision"], h["outcome"]) for h in world.status["history"]
        ]

    def test_a_paused_change_keeps_the_stand_in_serving(self) -> None:
        world, stable, standin = standing_in()
        changed(world, "3", rollout={}, paused=True)
        wait(world, standin)
        assert selected(world) == standin and world.deployment(standin) is not None
        assert "paused (spec.paused)" in world.condition("Ready")["message"]
        assert serves_until(world, standin, stable) in world.condition("Ready")["message"]

    def test_the_stable_available_first_takes_live_traffic_back(self) -> None:
        world, stable, standin = standing_in()
        changed(world, "3", rollout={})
        wait(world, standin)
        world.pods_ready(stable)
        world.reconcile()
        assert selected(world) == stable and world.deployment(standin) is None


def fetch_fails(routed: bool = False) -> tuple[RolloutWorld, str, str, str]:
    """A change without steps while the stand-in serves, whose candidate's model fetch gave
    up (a permanent error): (world, stable, stand-in, candidate)."""
    world, stable, standin = standing_in(routed)
    rollout = {"trafficRouting": RoutedWorld.ROLLOUT["trafficRouting"]} if routed else {}
    revision = changed(world, "3", rollout=rollout)
    assert revision != standin and world.deployment(revision) is not None
    world.kubelet(failed(revision))
    return world, stable, standin, revision


class TestABlueGreenCandidateThatCannotFetchItsModel:
    @pytest.mark.parametrize("routed", [False, True], ids=["replica-ratio", "gateway-api"])
    def test_it_fails_and_the_stand_in_keeps_all_live_traffic(self, routed: bool) -> None:
        world, stable, standin, revision = fetch_fails(routed)
        plan = world.reconcile()
        assert [e.reason for e in plan.events] == ["ArtifactFetchFailed"]
        assert selected(world) == standin and world.deployment(standin) is not None
        if routed:
            assert isinstance(world, RoutedWorld)
            assert world.backends() == [("wine", 100)]
        candidate = world.status["candidate"]
        assert (candidate["revision"], candidate["outcome"], candidate["reason"]) == (
            revision,
            "Failed",
            "ArtifactFetchFailed",
        )
        assert world.status["phase"] == "Failed"
        assert world.condition("Ready")["reason"] == "ArtifactFetchFailed"
        assert serves_until(world, standin, stable) in candidate["message"]

    def test_the_ended_attempt_keeps_the_stand_in_until_the_stable_is_available(self) -> None:
        world, stable, standin, revision = fetch_fails()
        world.reconcile()
        for _ in range(3):  # the attempt held out: its candidate removed
            world.pods_ready(standin)
            plan = world.reconcile()
            assert selected(world) == standin and world.deployment(standin) is not None
            assert world.deployment(revision) is None
            assert "ArtifactFetchFailed" not in [e.reason for e in plan.events]
        assert world.status["candidate"]["outcome"] == "Failed"
        world.pods_ready(stable)
        world.reconcile()
        assert selected(world) == stable and world.deployment(standin) is None
        assert world.status["candidate"]["outcome"] == "Failed"
        ready = world.condition("Ready")
        assert ready["reason"] == "ArtifactFetchFailed"
        # Who serves, as it stands now: not the stand-in removed.
        assert ready["message"].endswith(f"; revision {stable} keeps serving"), ready["message"]
        assert standin not in world.status["candidate"]["message"]

    def test_a_stand_in_that_cannot_fetch_its_model_serves_until_the_stable_is_available(
        self,
    ) -> None:
        world, stable, standin = standing_in()
        world.pods_ready(standin, 1)
        world.kubelet(failed(standin))
        assert changed(world, "2", rollout={}) == standin  # asked for, not yet available
        candidate = world.status["candidate"]
        assert (candidate["revision"], candidate["outcome"]) == (standin, "Failed")
        assert serves_until(world, standin, stable) in candidate["message"]
        for _ in range(3):  # held out, but the one revision with a ready pod
            world.reconcile()
            assert selected(world) == standin and world.deployment(standin) is not None
            # Status says it serves: all live traffic, its replicas.
            candidate = world.status["candidate"]
            assert (candidate["weight"], candidate["readyReplicas"]) == (100, 1), candidate
        world.pods_ready(stable)
        world.reconcile()
        assert selected(world) == stable and world.deployment(standin) is None
        candidate = world.status["candidate"]
        assert candidate["outcome"] == "Failed"
        assert (candidate["weight"], candidate["replicas"], candidate["readyReplicas"]) == (0, 0, 0)
