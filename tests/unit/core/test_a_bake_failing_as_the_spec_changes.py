"""A bake that fails in the very cycle a new spec arrives still goes back first.

The health loop turns a watched condition bad during the bake, and before the operator's
next cycle records the failure (status.bake.failedAt), Git brings another version, or a
spec without spec.rollout.bake, or the cycle that found the failure lost its status write.
The failure is judged before anything is superseded or ended: the previous revision is
kept and live traffic goes back to it, as when status had recorded the failure; the
revision that failed its bake is never recorded Promoted nor left serving.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from core_world import World, judged, promoted_with_bake, spec

from vigil.core.reconcile import Plan
from vigil.core.reconcile import decide as reconcile_decide

BAKE = {"bake": {"duration": "10m"}}
STEPPED = {
    "replacement": {"steps": [{"canary": {"weight": 20, "duration": "60s"}}]},
    **BAKE,
}


def failing() -> tuple[World, str, str]:
    """Version 2 baking, version 1 kept; the health loop has just turned Healthy False."""
    world, previous, promoted = promoted_with_bake(BAKE)
    world.reconcile()
    assert world.status["bake"]["reason"] == "Baking"
    judged(world, "Healthy", False, "ErrorRateHigh", "error rate 5.0% > 1.0% over 5m")
    return world, previous, promoted


def reasons(plan: Plan) -> list[str]:
    return [event.reason for event in plan.events]


def went_back(world: World, previous: str, promoted: str) -> Plan:
    """The previous revision's pods come back: live traffic goes back to it."""
    assert world.deployment(previous) is not None
    assert world.deployment(previous)["spec"]["replicas"] == 2  # type: ignore[index]
    world.pods_ready(previous)
    plan = world.reconcile()
    assert world.service_revision() == previous
    assert "RolledBack" in reasons(plan)
    outcomes = {item["revision"]: item["outcome"] for item in world.status["history"]}
    assert outcomes[promoted] == "RolledBack"
    return plan


@pytest.mark.parametrize("rollout", [BAKE, STEPPED], ids=["blue-green", "stepped"])
def test_a_new_version_waits_while_the_failure_goes_back(rollout: dict[str, Any]) -> None:
    world, previous, promoted = failing()
    world.set_spec(spec("3", 2, rollout=rollout))
    plan = world.reconcile()
    assert reasons(plan) == ["BakeFailed"]
    assert world.status["bake"]["failedAt"]
    assert world.condition("Ready")["reason"] == "BakeFailed"
    went_back(world, previous, promoted)
    # Then version 3 rolls out against version 1, not against the one that failed.
    for _ in range(4):
        world.reconcile()
    assert world.deployment(promoted) is None
    assert (world.status.get("candidate") or {}).get("revision") not in (None, promoted)
    assert world.status["stable"]["revision"] == previous


def test_a_spec_asking_for_the_previous_version_is_answered_by_going_back() -> None:
    world, previous, promoted = failing()
    world.set_spec(spec("1", 2, rollout=BAKE))
    plan = world.reconcile()
    assert reasons(plan) == ["BakeFailed"]
    assert world.deployment(previous) is not None
    went_back(world, previous, promoted)
    assert world.status["stable"]["revision"] == previous
    assert world.deployment(promoted) is None


def test_removing_the_bake_as_it_fails_still_goes_back() -> None:
    world, previous, promoted = failing()
    world.set_spec(spec("2", 2, rollout={}))
    plan = world.reconcile()
    assert reasons(plan) == ["BakeFailed"]
    assert world.status["bake"]["reason"] == "BakeFailed"
    went_back(world, previous, promoted)


def test_a_lost_write_after_bake_failed_then_a_new_version_goes_back_once() -> None:
    world, previous, promoted = failing()
    world.now += datetime.timedelta(seconds=1)
    first = reconcile_decide(world.observe())
    world.carry_out(first.actions)  # BakeFailed posted, version 1 scaled up; status lost
    world.set_spec(spec("3", 2, rollout=BAKE))
    again = world.reconcile()
    assert reasons(again) == ["BakeFailed"]
    # Named after the bake, not the words: the Event is not posted twice.
    assert again.events[0].occurrence == first.events[0].occurrence != ""
    went_back(world, previous, promoted)


def test_a_verdict_from_before_the_switch_lets_the_new_version_roll_out() -> None:
    # Healthy False since before the switch is the previous revision's: no failed bake.
    world, previous, _ = promoted_with_bake(BAKE)
    judged(world, "Healthy", False, "ErrorRateHigh", "error rate 5.0% > 1.0% over 5m")
    for item in world.status["conditions"]:
        if item["type"] == "Healthy":
            item["lastTransitionTime"] = "2025-12-31T00:00:00Z"
    world.set_spec(spec("3", 2, rollout=BAKE))
    plan = world.reconcile()
    assert reasons(plan) == ["RolloutSuperseded", "RolloutStarted"]
    assert world.deployment(previous) is None
