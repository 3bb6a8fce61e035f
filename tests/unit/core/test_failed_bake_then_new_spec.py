"""A bake that failed is finished before a new spec rolls out.

Version 2 was promoted with a bake, failed it, and live traffic is on its way back to
version 1 (scaled up, not yet available) when a new spec arrives. Going back completes
first: a spec asking for version 1 again is answered by it (no rollout of version 1
against the version that failed), any other waits and then rolls out against version 1.
History keeps version 2 RolledBack either way, and a cycle cut short anywhere finishes.
"""

from __future__ import annotations

import copy
import datetime
import functools
from typing import Any

import core_world
import pytest
from core_world import RolloutWorld, judged, spec
from figures_kit import figures as seen
from test_ended_candidate_keeps_its_outcome import STEPPED as SHORT_STEPS

from vigil.core.candidate import RolloutInputs
from vigil.core.reconcile import Plan, decide

GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)
BAKE = {"duration": "10m", "minReplicas": 0}
STEPPED = {**SHORT_STEPS, "bake": BAKE}
BLUE_GREEN = {"bake": BAKE}


def run_until(world: RolloutWorld, predicate: Any, limit: int = 60) -> None:
    """Cycles, the candidate's pods ready, until ``predicate``."""
    for _ in range(limit):
        candidate = (world.status.get("candidate") or {}).get("revision")
        if candidate and world.deployment(candidate) is not None:
            world.pods_ready(candidate)
        world.reconcile()
        if predicate():
            return
    raise AssertionError(f"not reached; status: {world.status}")


class World(RolloutWorld):
    def outcomes(self) -> list[tuple[str, str]]:
        return [(item["revision"], item["outcome"]) for item in self.status["history"]]

    def posted(self, reason: str) -> list[str]:
        return [e.message for plan in self.plans for e in plan.events if e.reason == reason]


@functools.cache
def _going_back(rollout_key: str) -> tuple[World, str, str]:
    rollout = STEPPED if rollout_key == "stepped" else BLUE_GREEN
    world, v1 = core_world.serving(rollout, World())
    world.set_spec(spec("2", 2, rollout=rollout))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, lambda: world.status["stable"]["revision"] != v1)
    world.inputs = None
    v2 = world.status["stable"]["revision"]
    assert world.status["bake"]["previous"] == v1
    world.reconcile(5)
    judged(world, "Healthy", False, "SLOBreached", "error rate 30% > 1%")
    world.reconcile()
    assert world.status["bake"]["reason"] == "BakeFailed"
    assert world.replicas(v1) == 2 and world.service_revision() == v2
    world.plans.clear()
    return world, v1, v2


def going_back(rollout_key: str = "stepped") -> tuple[World, str, str]:
    """Version 2 failed its bake; version 1 is scaling back up, not available yet."""
    return copy.deepcopy(_going_back(rollout_key))


def v1_ready(world: World, v1: str) -> Plan:
    world.pods_ready(v1)
    return world.reconcile()


@pytest.mark.parametrize("rollout_key", ["stepped", "blue/green"])
def test_a_spec_back_to_the_previous_revision_is_answered_by_going_back(rollout_key: str) -> None:
    world, v1, v2 = going_back(rollout_key)
    world.set_spec(spec("1", 2, rollout=STEPPED if rollout_key == "stepped" else BLUE_GREEN))
    world.reconcile()
    # No rollout of version 1 against the version that failed: it waits to take traffic back.
    assert "candidate" not in world.status
    assert world.deployment(v1)["metadata"]["labels"]["vigil.dev/role"] == "stable"
    assert world.service_revision() == v2
    assert world.status["bake"]["reason"] == "BakeFailed"
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "BakeFailed")
    assert f"the spec asks for revision {v1} again" in progressing["message"]
    world.reconcile()
    assert world.service_revision() == v2 and "candidate" not in world.status
    # Available: live traffic goes back, version 2 ends RolledBack and goes.
    plan = v1_ready(world, v1)
    assert world.service_revision() == v1
    assert [e.reason for e in plan.events] == ["RolledBack"]
    for _ in range(3):
        world.reconcile(30)
    assert world.names("Deployment") == [f"wine-{v1}"]
    assert world.service_revision() == v1
    assert world.status["stable"]["revision"] == v1 and world.status["revision"] == v1
    assert world.status["phase"] == "Healthy"
    assert world.condition("Ready")["status"] == "True"
    assert "bake" not in world.status and "candidate" not in world.status
    assert world.outcomes() == [(v2, "RolledBack"), (v1, "Deployed")]
    assert world.status["history"][0]["modelVersion"] == "2"
    assert world.posted("RolledBack") == [plan.events[0].message]
    for reason in ("RolloutStarted", "RolloutAborted", "RolloutSuperseded", "Switched"):
        assert world.posted(reason) == [], reason


def test_another_spec_waits_then_rolls_out_against_the_previous_revision() -> None:
    world, v1, v2 = going_back()
    world.set_spec(spec("3", 2, rollout=STEPPED))
    world.reconcile()
    # Going back goes on: version 1 kept, nothing of version 3 yet, status says why.
    assert world.replicas(v1) == 2 and world.service_revision() == v2
    assert world.names("Deployment") == sorted([f"wine-{v1}", f"wine-{v2}"])
    assert "candidate" not in world.status
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "BakeFailed")
    assert f"goes back to revision {v1} first" in progressing["message"]
    v3 = world.status["revision"]
    assert v3 not in (v1, v2) and f"revision {v3} waits" in progressing["message"]
    assert world.outcomes()[0] == (v2, "Promoted")
    # Version 1 available: live traffic back to it, version 2 RolledBack.
    plan = v1_ready(world, v1)
    assert world.service_revision() == v1
    assert [e.reason for e in plan.events] == ["RolledBack"]
    assert world.outcomes()[0] == (v2, "RolledBack")
    assert world.status["history"][0]["modelVersion"] == "2"
    # Then version 3 rolls out against version 1; version 2 keeps its outcome.
    world.reconcile()
    assert world.deployment(v2) is None
    assert world.status["stable"]["revision"] == v1
    assert world.status["candidate"]["revision"] == v3
    assert world.posted("RolloutSuperseded") == []
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, lambda: world.status["stable"]["revision"] == v3)
    assert f"revision {v1}" in world.posted("Switched")[0].split(" to ")[0]
    assert world.outcomes()[:3] == [(v3, "Promoted"), (v2, "RolledBack"), (v1, "Deployed")]


def test_the_previous_revision_deleted_while_another_spec_waits_gives_up() -> None:
    # Version 3 rolled out against version 2 at once, the failed bake forgotten unsaid.
    world, v1, v2 = going_back()
    world.set_spec(spec("3", 2, rollout=STEPPED))
    world.reconcile()
    del world.objects[("Deployment", f"wine-{v1}")]
    plan = world.reconcile()
    assert [e.reason for e in plan.events] == ["BakeRollbackFailed"]
    assert plan.events[0].message.startswith(f"revision {v1} is gone (its Deployment was deleted")
    v3 = world.status["revision"]
    ready = world.condition("Ready")["message"]
    assert ready.startswith(f"revision {v3} waits: revision {v1} is gone")
    assert f"revision {v3} rolls out against revision {v2} next" in ready
    world.reconcile()
    assert world.status["stable"]["revision"] == v2
    assert world.status["candidate"]["revision"] == v3
    assert world.posted("BakeRollbackFailed") == [plan.events[0].message]


@pytest.mark.parametrize("rollout_key", ["stepped", "blue/green"])
def test_a_spec_back_to_a_previous_revision_deleted_by_hand_makes_it_again(
    rollout_key: str,
) -> None:
    # Version 1 rolled out again as a candidate against the version that failed its bake
    # (steps from the first), the bake's failure forgotten unsaid.
    world, v1, v2 = going_back(rollout_key)
    del world.objects[("Deployment", f"wine-{v1}")]
    world.set_spec(spec("1", 2, rollout=STEPPED if rollout_key == "stepped" else BLUE_GREEN))
    plan = world.reconcile()
    (made,) = plan.events
    assert (made.reason, made.warning) == ("Deployed", True)
    assert made.message == (
        f"the Deployment of revision {v1}, which live traffic goes back to after revision {v2} "
        "failed its bake, was missing (deleted outside the operator); made again from the "
        "spec with 2 replica(s)"
    )
    assert world.deployment(v1)["metadata"]["labels"]["vigil.dev/role"] == "stable"
    assert world.replicas(v1) == 2 and world.service_revision() == v2
    assert "candidate" not in world.status
    assert world.status["bake"]["reason"] == "BakeFailed"
    assert world.reconcile().events == []
    plan = v1_ready(world, v1)
    assert world.service_revision() == v1
    assert [e.reason for e in plan.events] == ["RolledBack"]
    world.reconcile(30)
    assert world.names("Deployment") == [f"wine-{v1}"]
    assert world.condition("Ready")["status"] == "True"
    assert world.outcomes() == [(v2, "RolledBack"), (v1, "Deployed")]
    for reason in ("RolloutStarted", "Switched", "BakeRollbackFailed", "RolloutAborted"):
        assert world.posted(reason) == [], reason


@functools.cache
def _back_cut() -> tuple[World, str, str, Plan]:
    world, v1, _v2 = going_back()
    world.set_spec(spec("1", 2, rollout=STEPPED))
    world.reconcile()
    world.pods_ready(v1)
    world.now += datetime.timedelta(seconds=1)
    return world, v1, _v2, decide(world.observe())


@pytest.mark.parametrize("done", range(5))
def test_going_back_to_the_revision_asked_for_cut_short_finishes_once(done: int) -> None:
    # The operator stopped after `done` of the plan's writes (the promoted revision's
    # removal among them), before its Events and status: the next cycles finish it.
    world, v1, v2, cut = copy.deepcopy(_back_cut())
    assert [e.reason for e in cut.events] == ["RolledBack"]
    assert done <= len(cut.actions) == 4
    world.carry_out(cut.actions[:done])
    for _ in range(3):
        world.reconcile()
    assert world.posted("RolledBack") == [cut.events[0].message]
    assert world.names("Deployment") == [f"wine-{v1}"]
    assert world.service_revision() == v1
    assert world.status["stable"]["revision"] == v1
    assert "bake" not in world.status and "candidate" not in world.status
    assert world.outcomes() == [(v2, "RolledBack"), (v1, "Deployed")]
    assert world.status["history"][0]["modelVersion"] == "2"
    assert world.posted("RolloutAborted") == [] and world.posted("RolloutStarted") == []


def conditions(world: World) -> dict[str, tuple[str, str]]:
    """Ready, Progressing and Stalled as (status, reason), with the phase."""
    kinds = ("Ready", "Progressing", "Stalled")
    found = {
        kind: (world.condition(kind)["status"], world.condition(kind)["reason"]) for kind in kinds
    }
    return {**found, "phase": (world.status["phase"], "")}


@pytest.mark.parametrize("rollout_key", ["stepped", "blue/green"])
def test_a_waiting_spec_is_not_ready_while_the_failed_bake_goes_back(rollout_key: str) -> None:
    # `kubectl wait --for=condition=Ready` must not return for a revision not even created,
    # and a GitOps check must not read the failed bake's RolledBack as the new spec's.
    world, v1, v2 = going_back(rollout_key)
    world.set_spec(spec("3", 2, rollout=STEPPED if rollout_key == "stepped" else BLUE_GREEN))
    waiting = {
        "Ready": ("False", "BakeFailed"),
        "Progressing": ("True", "BakeFailed"),
        "Stalled": ("False", "NotStalled"),
        "phase": ("Progressing", ""),
    }
    for _ in range(3):
        world.reconcile(10)
        assert world.status["observedGeneration"] == world.generation
        assert conditions(world) == waiting
    v3 = world.status["revision"]
    assert world.condition("Ready")["message"].startswith(f"revision {v3} waits: ")
    assert f"revision {v2} keeps serving" in world.condition("Ready")["message"]
    # The cycle that moves live traffic back: version 3 still waits, version 2 RolledBack
    # in history and its Event only.
    plan = v1_ready(world, v1)
    assert world.service_revision() == v1
    assert [e.reason for e in plan.events] == ["RolledBack"]
    assert world.outcomes()[0] == (v2, "RolledBack")
    assert conditions(world) == waiting
    assert world.status["revision"] == v3
    ready = world.condition("Ready")["message"]
    assert ready.startswith(f"revision {v3} waits: ") and "rolls out against it next" in ready
    world.reconcile()
    assert world.status["candidate"]["revision"] == v3
    assert world.condition("Stalled")["status"] == "False"


@pytest.mark.parametrize("rollout_key", ["stepped", "blue/green"])
def test_a_spec_back_to_the_previous_revision_is_ready_once_it_serves(rollout_key: str) -> None:
    world, v1, v2 = going_back(rollout_key)
    world.set_spec(spec("1", 2, rollout=STEPPED if rollout_key == "stepped" else BLUE_GREEN))
    world.reconcile()
    # Version 1 does not serve yet: not Ready, going back progresses.
    assert conditions(world) == {
        "Ready": ("False", "BakeFailed"),
        "Progressing": ("True", "BakeFailed"),
        "Stalled": ("False", "NotStalled"),
        "phase": ("Progressing", ""),
    }
    # Live traffic back on version 1, which is what the spec asks for: Ready at once, not
    # RolledBack nor Stalled (version 2's RolledBack is in history and its Event).
    plan = v1_ready(world, v1)
    assert world.service_revision() == v1
    assert [e.reason for e in plan.events] == ["RolledBack"]
    assert world.outcomes()[0] == (v2, "RolledBack")
    assert world.status["observedGeneration"] == world.generation
    assert world.status["revision"] == v1 == world.status["stable"]["revision"]
    assert conditions(world) == {
        "Ready": ("True", "Available"),
        "Progressing": ("False", "Complete"),
        "Stalled": ("False", "NotStalled"),
        "phase": ("Healthy", ""),
    }
    assert "candidate" not in world.status
    world.reconcile(30)
    assert conditions(world)["Ready"] == ("True", "Available")
    assert world.names("Deployment") == [f"wine-{v1}"]


def test_a_spec_back_to_the_previous_revision_keeps_it_past_the_deadline() -> None:
    # Version 1 does not become available within progressDeadline (60s): it is not removed
    # and rolled out as a candidate against version 2 (its starting pods discarded); going
    # back goes on, overdue, and live traffic moves once it is available.
    world, v1, v2 = going_back()
    world.set_spec(spec("1", 2, rollout=STEPPED))
    for _ in range(70):
        world.reconcile()
        assert world.deployment(v1) is not None and world.replicas(v1) == 2
        assert world.deployment(v1)["metadata"]["labels"]["vigil.dev/role"] == "stable"
        assert "candidate" not in world.status
    assert world.service_revision() == v2
    assert conditions(world) == {
        "Ready": ("False", "BakeRollbackFailed"),
        "Progressing": ("False", "BakeRollbackFailed"),
        "Stalled": ("True", "BakeRollbackFailed"),
        "phase": ("Failed", ""),
    }
    message = world.condition("Ready")["message"]
    assert f"revision {v1} is not available 60s (progressDeadline) after" in message
    assert "once it is available" in message
    assert len(world.posted("BakeRollbackFailed")) == 1
    assert world.status["bake"]["reason"] == "BakeFailed"
    plan = v1_ready(world, v1)
    assert world.service_revision() == v1
    assert [e.reason for e in plan.events] == ["RolledBack"]
    assert conditions(world)["Ready"] == ("True", "Available")
    assert conditions(world)["Stalled"] == ("False", "NotStalled")
    world.reconcile(30)
    assert world.names("Deployment") == [f"wine-{v1}"]
    assert world.outcomes() == [(v2, "RolledBack"), (v1, "Deployed")]
    for reason in ("RolloutStarted", "RolloutAborted", "RolloutSuperseded", "Switched"):
        assert world.posted(reason) == [], reason


def test_another_spec_past_the_deadline_rolls_out_against_the_promoted_revision() -> None:
    # Version 1 never became available: it is removed, and version 3 rolls out against
    # version 2, the only revision that serves (docs/rollouts.md says so); the give-up
    # cycle says version 3 waits (not Ready as if version 2 were the spec's).
    world, v1, v2 = going_back()
    world.set_spec(spec("3", 2, rollout=STEPPED))
    for _ in range(70):
        plan = world.reconcile()
        if plan.events:
            break
    assert [e.reason for e in plan.events] == ["BakeRollbackFailed"]
    v3 = world.status["revision"]
    assert conditions(world) == {
        "Ready": ("False", "BakeRollbackFailed"),
        "Progressing": ("True", "BakeRollbackFailed"),
        "Stalled": ("False", "NotStalled"),
        "phase": ("Progressing", ""),
    }
    assert world.condition("Ready")["message"].startswith(f"revision {v3} waits: ")
    assert world.deployment(v1) is None
    world.reconcile()
    assert world.status["stable"]["revision"] == v2
    assert world.status["candidate"]["revision"] == v3
    assert world.outcomes()[0] == (v2, "Promoted")
