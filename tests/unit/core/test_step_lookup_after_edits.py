"""Finding the running step once the spec's steps change under a rollout (same revision).

A candidate held out of traffic while the spec could not be read lost its
step's evidence (``stepStartedAt``): the fix that makes the spec readable may
also edit the steps, and the rollout must resume at its step where it now
stands, not at the index it had (which skips a step unjudged). A step named
like others (two pauses) keeps its own place: the steps as they were
(``status.candidate.stepNames``) are aligned with the steps now.
"""

from __future__ import annotations

from typing import Any

from core_world import spec
from test_progressive_rollout import GOOD, ROLLOUT, run_until, started

from vigil.common.times import parse_unix
from vigil.core.candidate import Request, RolloutInputs
from vigil.core.reconcile.stepped import steps_edited
from vigil.core.rollout import RolloutState
from vigil.core.spec import parse_policy

CANARY_10 = {"canary": {"weight": 10, "duration": "10s"}}
CANARY_50 = {"canary": {"weight": 50, "duration": "10s"}}
CANARY_80 = {"canary": {"weight": 80, "duration": "10s"}}
PAUSE: dict[str, Any] = {"pause": {}}
SHADOW = {"shadow": {"duration": "10s", "percent": 100}}
TWO_PAUSES = [CANARY_10, PAUSE, CANARY_50, PAUSE, CANARY_80]
NAMES = ["canary 10%", "pause", "canary 50%", "pause", "canary 80%"]


def steps(*listed: dict[str, Any]) -> Any:
    return parse_policy({"replacement": {"steps": list(listed)}}, "replacement").steps


def with_steps(listed: list[dict[str, Any]]) -> dict[str, Any]:
    return {**ROLLOUT, "replacement": {"steps": listed}}


def test_a_held_candidate_resumes_its_step_where_the_fixing_edit_moved_it() -> None:
    world, _, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
    world.set_spec(spec("2", 2, rollout={**ROLLOUT, "analysis": {"interval": "fast"}}))
    world.reconcile()
    held = world.status["candidate"]
    assert (held["step"], held.get("stepStartedAt"), held["weight"]) == (1, None, 0)
    # The fix also drops the shadow step: [canary 20%, canary 50%].
    world.set_spec(spec("2", 2, rollout=with_steps(ROLLOUT["replacement"]["steps"][1:])))
    world.pods_ready(candidate)
    world.reconcile()
    resumed = world.status["candidate"]
    assert (resumed["step"], resumed["stepName"]) == (0, "canary 20%")
    assert "the steps changed: step 2 (canary 20%) is now step 1/2" in resumed["message"]
    # Its evidence starts again now (the candidate is ready), not at the time held out.
    assert parse_unix(resumed["stepStartedAt"]) == world.now.timestamp()


def test_a_held_candidate_whose_step_the_fix_removed_starts_the_step_at_its_place() -> None:
    held = RolloutState(step=1, step_started_at=None, failed_checks=1, released=True)
    previous = {"stepName": "canary 20%", "stepNames": ["shadow 100%", "canary 20%", "pause"]}
    state, words = steps_edited(held, previous, steps(SHADOW, CANARY_50, PAUSE), 500.0)
    # Not started here: rollout.decide starts it once the candidate is ready.
    assert state == RolloutState(step=1)
    assert words == "the steps changed: step 2 (canary 20%) is gone; step 2 starts afresh"


def test_a_first_step_not_yet_started_begins_at_the_edited_first_step() -> None:
    waiting = RolloutState(step=0)
    previous = {"stepName": "shadow 100%", "stepNames": ["shadow 100%", "canary 50%"]}
    validate = {"validate": {"goldenSet": {"configMapKeyRef": {"name": "g", "key": "g.json"}}}}
    edited = steps(validate, SHADOW, CANARY_50)
    assert steps_edited(waiting, previous, edited, 500.0) == (waiting, "")


def test_a_step_inserted_in_front_keeps_the_rollout_at_the_second_of_two_pauses() -> None:
    world, _, candidate = started(rollout=with_steps(TWO_PAUSES))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")

    def waiting() -> bool:
        return world.status["candidate"].get("reason") == "WaitingForPerson"

    run_until(world, candidate, waiting)
    world.request = Request("resume", "r1", candidate)
    world.reconcile()
    run_until(world, candidate, lambda: world.status["candidate"]["step"] == 3 and waiting())
    world.set_spec(spec("2", 2, rollout=with_steps([SHADOW, *TWO_PAUSES])))
    world.pods_ready(candidate)
    world.reconcile()
    status = world.status["candidate"]
    assert (status["step"], status["stepName"], status["reason"]) == (
        4,
        "pause",
        "WaitingForPerson",
    )
    assert "the steps changed: step 4 (pause) is now step 5/6" in status["message"]
    # The person's one resume moves it on to canary 80%, not back through canary 50%.
    world.request = Request("resume", "r2", candidate)
    world.reconcile()
    assert world.status["candidate"]["stepName"] == "canary 80%"


def test_two_steps_inserted_in_front_of_two_pauses_keep_the_second() -> None:
    running = RolloutState(step=3, step_started_at=100.0, last_analysis_at=100.0)
    previous = {"stepName": "pause", "stepNames": NAMES}
    edited = steps(SHADOW, CANARY_10, *TWO_PAUSES)  # its old index now holds the first pause
    assert steps_edited(running, previous, edited, 500.0) == (
        RolloutState(step=5, step_started_at=100.0, last_analysis_at=100.0),
        "the steps changed: step 4 (pause) is now step 6/7",
    )


def test_a_step_removed_before_the_first_of_two_pauses_keeps_the_first() -> None:
    running = RolloutState(step=1, step_started_at=100.0)
    previous = {"stepName": "pause", "stepNames": NAMES}
    moved, _ = steps_edited(running, previous, steps(*TWO_PAUSES[1:]), 500.0)
    assert moved.step == 0  # canary 50% (now step 2) not skipped unjudged


def test_a_status_without_the_steps_before_finds_the_nearest_same_named_step() -> None:
    running = RolloutState(step=3, step_started_at=100.0)
    moved, words = steps_edited(running, {"stepName": "pause"}, steps(*TWO_PAUSES[1:]), 500.0)
    assert (moved.step, words) == (2, "the steps changed: step 4 (pause) is now step 3/4")


def test_the_steps_as_run_are_reported_in_status() -> None:
    world, _, candidate = started(rollout=with_steps(TWO_PAUSES))
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["stepNames"] == NAMES
