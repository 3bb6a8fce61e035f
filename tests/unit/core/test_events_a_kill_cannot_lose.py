"""Events a kill cannot lose: each said again, under its name, by the cycle decided again.

The operator posts a cycle's Events after its writes and before its status
(vigil.operator.reconciler): killed anywhere in between, the next cycle finds
status as it was and must say the same thing under the same name (a 409 if it
was posted), even when the writes already done (the candidate's Deployment, the
Service moved) changed what that cycle sees.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import core_world
import pytest
from core_world import RolloutWorld, spec
from figures_kit import figures as seen

from vigil.core.candidate import Request, RolloutInputs
from vigil.core.reconcile import Event, Plan, decide
from vigil.core.status import status_patch

GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)
BAD = seen(requests=200, error_rate=0.2)

#: Promoted at the end of its shadow step: the candidate is at full capacity already, so the
#: cycle that promotes it switches at once (Promoting and Switched in one plan).
SHADOW_ONLY = {
    "replacement": {"steps": [{"shadow": {"duration": "4s", "percent": 100, "minRequests": 20}}]},
    "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 2},
    "progressDeadline": "60s",
}
CANARY = {
    "replacement": {"steps": [{"canary": {"weight": 20, "duration": "4s"}}]},
    "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 2},
    "progressDeadline": "60s",
}
KINDS = {"shadow then switch": SHADOW_ONLY, "canary": CANARY, "blue/green": {}}
#: The Events named by their occurrence that a rollout says once each (blue/green: no
#: Promoting).
SAID_ONCE = ("RolloutStarted", "Promoting", "Switched")
SAID = {
    kind: SAID_ONCE if rollout else ("RolloutStarted", "Switched")
    for kind, rollout in KINDS.items()
}
CYCLES = 14


def _world(rollout: dict[str, Any]) -> RolloutWorld:
    world, _ = core_world.serving(rollout, RolloutWorld())
    world.set_spec(spec("2", 2, rollout=rollout))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    return world


def _decide(world: RolloutWorld) -> Plan:
    """The next cycle's plan, not carried out (every Deployment's pods ready first)."""
    for (kind, _), manifest in list(world.objects.items()):
        if kind == "Deployment":
            world.pods_ready(manifest["metadata"]["labels"]["vigil.dev/revision"])
    world.now += datetime.timedelta(seconds=1)
    return decide(world.observe())


def _run(
    world: RolloutWorld,
    cut_at: int | None = None,
    done: int | None = None,
    *,
    first: int = 0,
    before: list[tuple[RolloutWorld, list[Event]]] | None = None,
) -> list[Event]:
    """The rollout's cycles from ``first``, the one at ``cut_at`` killed after ``done`` of its
    actions (None: all of them and its Events, before its status): the Events posted.
    ``before`` gets the world before each cycle and the Events posted until then."""
    posted: list[Event] = []
    for index in range(first, CYCLES):
        if before is not None:
            before.append((copy.deepcopy(world), list(posted)))
        plan = _decide(world)
        killed = index == cut_at
        world.carry_out(plan.actions if not killed or done is None else plan.actions[:done])
        if killed and done is not None:
            continue
        posted += plan.events
        if killed:
            continue
        world.status = core_world.merge_patch(world.status, _patch(world, plan))
        if plan.clear_request is not None:
            world.request = None
    return posted


def _patch(world: RolloutWorld, plan: Plan) -> dict[str, Any]:
    return status_patch(world.status, plan.status) or {}


def _names(events: list[Event]) -> dict[str, set[str]]:
    """The Events said once each, by name (their occurrence: any version of the object)."""
    named: dict[str, set[str]] = {reason: set() for reason in SAID_ONCE}
    for event in events:
        if event.reason in named:
            assert event.occurrence, f"{event.reason} is not named by its occurrence"
            named[event.reason].add(event.occurrence)
    return named


@pytest.mark.slow  # every cut of every cycle: the targeted cuts below run in the fast suite
@pytest.mark.parametrize("kind", KINDS)
def test_a_kill_anywhere_in_a_rollout_loses_no_event_and_doubles_none(kind: str) -> None:
    # Every cycle of the rollout cut after each of its writes (and after its Events):
    # each Event the uninterrupted rollout says is said, under one name.
    start = _world(KINDS[kind])
    once = {reason: int(reason in SAID[kind]) for reason in SAID_ONCE}
    before: list[tuple[RolloutWorld, list[Event]]] = []
    whole = _names(_run(copy.deepcopy(start), before=before))
    assert {reason: len(names) for reason, names in whole.items()} == once
    # A run cut at a cycle is the whole run until then: it goes on from that cycle's world.
    for cut_at, (world, said_before) in enumerate(before):
        size = len(_decide(copy.deepcopy(world)).actions)
        for done in [*range(size + 1), None]:
            after = _run(copy.deepcopy(world), cut_at, done, first=cut_at)
            said = _names(said_before + after)
            counts = {reason: len(names) for reason, names in said.items()}
            assert counts == once, (cut_at, done)


@pytest.mark.parametrize("kind", ["canary", "blue/green"])
def test_a_rollout_started_after_its_candidate_was_written_is_said_again(kind: str) -> None:
    # Killed after the candidate's Deployment was applied, before the Event: the next cycle
    # sees the Deployment, and status without the attempt's start. It says it, the same name.
    world = _world(KINDS[kind])
    cut = _decide(world)
    (started,) = [e for e in cut.events if e.reason == "RolloutStarted"]
    world.carry_out(cut.actions)
    assert world.deployment(cut.status["revision"]) is not None
    again = world.reconcile(advance=0)
    assert [(e.reason, e.message, e.occurrence) for e in again.events] == [
        (started.reason, started.message, started.occurrence)
    ]
    # Recorded now: said no more.
    assert not [e for e in world.reconcile().events if e.reason == "RolloutStarted"]


def test_a_paused_blue_green_change_resumed_then_cut_is_announced_again() -> None:
    # Paused before its candidate started, status already holds it (its stepStartedAt):
    # no start recorded, so the cycle after a kill following its Deployment says it again.
    world, stable = core_world.serving({}, RolloutWorld())
    world.set_spec(spec("2", 2, rollout={}, paused=True))
    world.reconcile()
    assert world.status["candidate"]["stepStartedAt"]
    assert world.names("Deployment") == [f"wine-{stable}"]
    world.set_spec(spec("2", 2, rollout={}))
    cut = _decide(world)
    world.carry_out(cut.actions)
    again = world.reconcile(advance=0)
    said = [(e.reason, e.occurrence) for e in again.events]
    assert said == [(e.reason, e.occurrence) for e in cut.events if e.reason == "RolloutStarted"]
    assert said and world.status["candidate"]["startedAt"]


def test_a_retried_rollout_is_announced_under_another_name() -> None:
    # The same revision, the same spec: the retry's start is another occurrence than the
    # first attempt's (a 409 would swallow it).
    world = _world(CANARY)
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    first = [e for e in _run(world) if e.reason == "RolloutStarted"]
    assert world.status["candidate"]["outcome"] == "RolledBack"
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.request = Request("retry", "r1")
    retried = [e for e in _run(world) if e.reason == "RolloutStarted"]
    assert len(first) == len(retried) == 1
    assert first[0].occurrence != retried[0].occurrence != ""


def test_a_promotion_and_switch_cut_after_the_service_moved_says_promoting() -> None:
    # At full capacity after its shadow step, the candidate is promoted and switched in one
    # cycle; killed after the Service moved, the cycle that finishes the switch says both.
    world = _world(SHADOW_ONLY)
    for _ in range(CYCLES):
        cut = _decide(world)
        if [e.reason for e in cut.events] == ["Promoting", "Switched"]:
            break
        world.carry_out(cut.actions)
        world.status = core_world.merge_patch(world.status, _patch(world, cut))
    else:
        raise AssertionError("no cycle promoted and switched at once")
    candidate = world.status["candidate"]["revision"]
    world.carry_out(cut.actions)
    assert world.service_revision() == candidate and "promoting" not in world.status["candidate"]
    again = world.reconcile(advance=0)
    assert [(e.reason, e.occurrence) for e in again.events] == [
        (e.reason, e.occurrence) for e in cut.events
    ]
    assert world.status["stable"]["revision"] == candidate
