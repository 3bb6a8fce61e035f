"""An attempt that ended keeps its outcome when the spec moves on before its removal.

A candidate rolled back (or failed) leaves traffic at once, and its Deployment goes a
cycle later, once status records the outcome. A spec set back to the stable revision in
between (or a lost stable's Deployment made again, or another revision taking its place)
removes that Deployment; the attempt stays RolledBack (Failed) in history, with no
RolloutAborted or RolloutSuperseded Event for a rollout that had already ended.
"""

from __future__ import annotations

import copy
import functools

import core_world
import pytest
from core_world import RolloutWorld, spec
from figures_kit import figures as seen

from vigil.core.candidate import RolloutInputs
from vigil.core.reconcile import decide

BAD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.4, error_rate=0.5)
STEPPED = {
    "replacement": {
        "steps": [
            {"shadow": {"duration": "10s", "percent": 100, "minRequests": 20}},
            {"canary": {"weight": 50, "duration": "10s"}},
        ]
    },
    "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 2},
    "progressDeadline": "60s",
}
RETIRED = ("RolloutAborted", "RolloutSuperseded")


class World(RolloutWorld):
    def outcomes(self) -> list[tuple[str, str]]:
        return [(item["revision"], item["outcome"]) for item in self.status["history"]]

    def posted(self, *reasons: str) -> list[str]:
        return [e.message for plan in self.plans for e in plan.events if e.reason in reasons]

    def ended(self) -> str | None:
        return (self.status.get("candidate") or {}).get("outcome")


@functools.cache
def _rolled_back() -> tuple[World, str, str]:
    world, v1 = core_world.serving(STEPPED, World())
    world.set_spec(spec("2", 2, rollout=STEPPED))
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    for _ in range(30):
        v2 = world.status["revision"]
        if world.deployment(v2) is not None:
            world.pods_ready(v2)
        world.reconcile()
        if world.ended():
            break
    world.inputs = None
    assert world.ended() == "RolledBack" and world.deployment(v2) is not None
    world.plans.clear()
    return world, v1, v2


def rolled_back() -> tuple[World, str, str]:
    """Version 2 rolled back on its shadow step, its Deployment not removed yet."""
    return copy.deepcopy(_rolled_back())


@functools.cache
def _failed() -> tuple[World, str, str]:
    world, v1 = core_world.serving(STEPPED, World())
    world.set_spec(spec("2", 2, rollout=STEPPED))
    world.reconcile()
    v2 = world.status["revision"]
    world.reconcile(30)
    world.reconcile(30)
    assert world.ended() == "Failed" and world.deployment(v2) is not None
    world.plans.clear()
    return world, v1, v2


def failed() -> tuple[World, str, str]:
    """Version 2's pods never became ready within progressDeadline, its Deployment left."""
    return copy.deepcopy(_failed())


def assert_kept(world: World, v1: str, v2: str, outcome: str) -> None:
    assert world.names("Deployment") == [f"wine-{v1}"]
    assert all(v2 not in name for name in world.names("ConfigMap") + world.names("Service"))
    assert world.outcomes() == [(v2, outcome), (v1, "Deployed")]
    assert world.status["history"][0]["modelVersion"] == "2"
    assert world.posted(*RETIRED) == []


def test_a_rolled_back_candidate_stays_rolled_back_when_the_spec_returns_to_the_stable() -> None:
    world, v1, v2 = rolled_back()
    reason = world.status["history"][0]["reason"]
    world.set_spec(spec("1", 2, rollout=STEPPED))
    world.reconcile()
    assert_kept(world, v1, v2, "RolledBack")
    assert world.status["history"][0]["reason"] == reason
    for _ in range(3):
        world.reconcile(30)
    assert_kept(world, v1, v2, "RolledBack")
    assert world.status["phase"] == "Healthy" and "candidate" not in world.status
    assert world.service_revision() == v1


def test_a_failed_candidate_stays_failed_when_the_spec_returns_to_the_stable() -> None:
    world, v1, v2 = failed()
    world.set_spec(spec("1", 2, rollout=STEPPED))
    world.reconcile()
    assert_kept(world, v1, v2, "Failed")
    assert "ProgressDeadlineExceeded" in world.status["history"][0]["reason"]
    assert world.status["phase"] == "Healthy"


@pytest.mark.parametrize("done", range(4))
def test_the_spec_returning_cut_short_still_keeps_the_rolled_back_outcome(done: int) -> None:
    # The operator stopped after `done` of the cycle's writes, before its Events and status.
    world, v1, v2 = rolled_back()
    world.set_spec(spec("1", 2, rollout=STEPPED))
    cut = decide(world.observe())
    assert [e.reason for e in cut.events] == []
    assert done <= len(cut.actions)
    world.carry_out(cut.actions[:done])
    for _ in range(3):
        world.reconcile()
    assert_kept(world, v1, v2, "RolledBack")


def test_a_stable_made_again_leaves_the_rolled_back_candidate_rolled_back() -> None:
    world, v1, v2 = rolled_back()
    del world.objects[("Deployment", f"wine-{v1}")]
    world.set_spec(spec("1", 2, rollout=STEPPED))
    world.reconcile()
    assert_kept(world, v1, v2, "RolledBack")
    assert len(world.posted("Deployed")) == 1


def test_a_revision_taking_a_lost_stables_place_leaves_the_rolled_back_one_rolled_back() -> None:
    world, v1, v2 = rolled_back()
    del world.objects[("Deployment", f"wine-{v1}")]
    world.set_spec(spec("3", 2, rollout={**STEPPED, "replacement": {"steps": []}}))
    world.reconcile()
    v3 = world.status["stable"]["revision"]
    assert world.names("Deployment") == [f"wine-{v3}"]
    assert world.outcomes() == [(v3, "Deployed"), (v2, "RolledBack"), (v1, "Deployed")]
    assert world.posted(*RETIRED) == []


def test_a_running_candidate_is_still_aborted_when_the_spec_returns_to_the_stable() -> None:
    world, v1 = core_world.serving(STEPPED, World())
    world.set_spec(spec("2", 2, rollout=STEPPED))
    world.reconcile()
    v2 = world.status["revision"]
    world.set_spec(spec("1", 2, rollout=STEPPED))
    world.reconcile()
    assert world.names("Deployment") == [f"wine-{v1}"]
    assert world.outcomes() == [(v2, "Aborted"), (v1, "Deployed")]
    assert len(world.posted("RolloutAborted")) == 1
