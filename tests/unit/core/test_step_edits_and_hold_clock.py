"""Steps edited mid-rollout, and the first step's hold clock.

Each step judges its own evidence: a spec edit that keeps the revision (the
attempt goes on) must not leave another step judged on the running step's
window and clock. The first step's holds count from its start, not from the
wait for the candidate's pods before it.
"""

from __future__ import annotations

from typing import Any

import core_world
import pytest
from core_world import RolloutWorld, spec
from figures_kit import figures as seen

from vigil.common.times import parse_unix
from vigil.core.candidate import RolloutInputs
from vigil.core.reconcile.stepped import steps_edited
from vigil.core.rollout import Observations, RolloutState, decide
from vigil.core.spec import parse_policy

GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)
SHADOW = {"shadow": {"duration": "60s", "percent": 100, "minRequests": 20}}
CANARY_20 = {"canary": {"weight": 20, "duration": "60s"}}
CANARY_50 = {"canary": {"weight": 50, "duration": "60s"}}


def rollout(*steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "replacement": {"steps": list(steps)},
        "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 2, "earlyAdvance": False},
        "progressDeadline": "5m",
    }


def at_canary_20(seconds: int) -> tuple[RolloutWorld, str]:
    """Shadow, canary 20%, canary 50%: ``seconds`` into the canary 20% step."""
    world, _ = core_world.serving(rollout(SHADOW, CANARY_20, CANARY_50), RolloutWorld())
    world.set_spec(spec("2", 2, rollout=rollout(SHADOW, CANARY_20, CANARY_50)))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://shadow")
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    for _ in range(200):
        world.pods_ready(candidate)
        world.reconcile()
        if world.status["candidate"]["stepName"] == "canary 20%":
            break
    for _ in range(seconds):
        world.pods_ready(candidate)
        world.reconcile()
    assert world.status["candidate"]["stepName"] == "canary 20%"
    return world, candidate


def seconds_at(world: RolloutWorld, name: str, candidate: str, limit: int = 200) -> float:
    """How long the rollout stays on step ``name`` until it moves on or is promoted."""
    began = None
    for _ in range(limit):
        world.pods_ready(candidate)
        world.reconcile()
        current = (world.status.get("candidate") or {}).get("stepName")
        if current == name and began is None:
            began = world.now
        if began is not None and current != name:
            return (world.now - began).total_seconds()
    raise AssertionError(f"still on {name}: {world.status}")


@pytest.mark.slow
def test_dropping_an_earlier_step_keeps_the_running_step_reindexed() -> None:
    world, candidate = at_canary_20(58)
    world.set_spec(spec("2", 2, rollout=rollout(CANARY_20, CANARY_50)))
    world.pods_ready(candidate)
    world.reconcile()
    status = world.status["candidate"]
    assert (status["step"], status["stepName"]) == (0, "canary 20%")
    assert "the steps changed: step 2 (canary 20%) is now step 1/2" in status["message"]
    # The next step then judges its own window for its whole duration.
    assert seconds_at(world, "canary 50%", candidate) >= 60


@pytest.mark.slow
def test_a_replaced_running_step_starts_afresh_on_its_own_evidence() -> None:
    world, candidate = at_canary_20(58)
    canary_30 = {"canary": {"weight": 30, "duration": "60s"}}
    world.set_spec(spec("2", 2, rollout=rollout(SHADOW, canary_30, CANARY_50)))
    world.pods_ready(candidate)
    world.reconcile()
    status = world.status["candidate"]
    now = world.now.timestamp()
    assert (status["step"], status["stepName"]) == (1, "canary 30%")
    assert parse_unix(status["stepStartedAt"]) == now
    assert parse_unix(status["lastAnalysisAt"]) == now
    assert status["failedChecks"] == 0 and status.get("heldSince") is None
    assert (
        "the steps changed: step 2 (canary 20%) is gone; step 2 starts afresh"
        in (world.condition("Progressing")["message"])
    )
    assert seconds_at(world, "canary 30%", candidate) >= 59


def test_a_running_step_past_the_end_of_shorter_steps_is_found_or_restarted() -> None:
    policy = parse_policy({"replacement": {"steps": [CANARY_20, CANARY_50]}}, "replacement")
    state = RolloutState(step=2, step_started_at=100.0, last_analysis_at=150.0, failed_checks=1)
    found, words = steps_edited(state, {"stepName": "canary 50%"}, policy.steps, 160.0)
    assert (found, words) == (
        RolloutState(step=1, step_started_at=100.0, last_analysis_at=150.0, failed_checks=1),
        "the steps changed: step 3 (canary 50%) is now step 2/2",
    )
    gone, _ = steps_edited(state, {"stepName": "canary 80%"}, policy.steps, 160.0)
    assert gone == RolloutState(step=1, step_started_at=160.0, last_analysis_at=160.0)
    unchanged = steps_edited(
        RolloutState(step=1, step_started_at=1.0), {"stepName": "canary 50%"}, policy.steps, 160.0
    )
    assert unchanged == (RolloutState(step=1, step_started_at=1.0), "")


def test_the_first_steps_data_hold_counts_from_its_start_not_the_pods_wait() -> None:
    policy = parse_policy(
        {
            "replacement": {"steps": [{"shadow": {"duration": "5m", "minRequests": 200}}]},
            "progressDeadline": "30m",
        },
        "replacement",
    )
    few = seen(requests=10, compared=10, agreement=1.0)
    state = RolloutState()
    decisions = []
    for minute, ready in ((0, False), (25, False), (26, True), (31, True), (56, True)):
        observed = Observations(candidate_ready=ready, replicas=2, figures=few)
        decision = decide(policy, state, observed, minute * 60.0)
        decisions.append(decision)
        state = decision.state
    assert [d.reason for d in decisions] == [
        "CandidateNotReady",
        "CandidateNotReady",
        "InsufficientData",
        "InsufficientData",
        "ProgressDeadlineExceeded",
    ]
    assert decisions[2].state.held_since == 26 * 60.0
    assert decisions[-1].message.endswith("for 1800s >= progressDeadline 1800s")


def test_steps_added_while_a_blue_green_candidate_starts_begin_at_their_first() -> None:
    # A blue/green candidate slow to start (10 minutes); then steps in the spec, same
    # revision. Its status (stepStartedAt: when it started) is no step's state: the first
    # step starts once the candidate is ready, its duration counted from then, all pods ready.
    world, _ = core_world.serving({}, RolloutWorld())
    world.set_spec(spec("2", 2, rollout={}))
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    for _ in range(10):
        world.reconcile(60)
    world.set_spec(spec("2", 2, rollout=rollout(SHADOW, CANARY_50)))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://shadow")
    world.reconcile()
    assert world.status["candidate"]["revision"] == candidate
    assert "stepStartedAt" not in world.status["candidate"]
    world.pods_ready(candidate, 1)  # one pod of two: not ready yet
    world.reconcile()
    assert world.status["candidate"]["reason"] == "CandidateNotReady"
    world.pods_ready(candidate)
    world.reconcile()
    ready_at = world.now
    assert parse_unix(world.status["candidate"]["stepStartedAt"]) == ready_at.timestamp()
    seconds_at(world, "shadow 100%", candidate)
    assert (world.now - ready_at).total_seconds() >= 60  # the step's duration
