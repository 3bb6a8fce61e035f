"""A stepped rollback whose status write was lost after its Event is decided the same again.

The RolledBack Warning is out, the candidate out of live and shadow traffic, and the
operator stops before status records the outcome. The next cycle measures newer figures
(good ones, say): judged again, the step would go on and put the candidate back into
traffic after the Event said it was rolled back. The rollback leaves a mark on the
candidate's Deployment (vigil.dev/ended), and the next cycle ends the attempt as it says.
"""

from __future__ import annotations

import datetime

from core_world import RolloutWorld
from test_progressive_rollout import BAD, GOOD, plan_that_posts, started

from vigil.core.candidate import Request, RolloutInputs
from vigil.core.reconcile import Plan, decide


def cut_after_its_event() -> tuple[RolloutWorld, str, str, Plan]:
    """The rollback's writes done and its Event posted; its status write lost."""
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    cut = plan_that_posts(world, candidate, "RolledBack")
    world.carry_out(cut.actions)
    assert world.service_revision() == stable
    assert world.status["candidate"].get("outcome") is None
    return world, stable, candidate, cut


def test_newer_good_figures_end_the_attempt_as_the_event_said() -> None:
    world, stable, candidate, cut = cut_after_its_event()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    plan = world.reconcile()
    assert [(e.reason, e.message, e.occurrence) for e in plan.events] == [
        (e.reason, e.message, e.occurrence) for e in cut.events
    ]
    assert world.status["candidate"]["outcome"] == "RolledBack"
    assert world.status["phase"] == "RolledBack"
    assert world.shadow(stable) is None
    assert world.service_revision() == stable
    world.reconcile()
    assert world.deployment(candidate) is None
    outcomes = [h["outcome"] for h in world.status["history"]]
    assert outcomes == ["RolledBack", "Deployed"]


def test_a_promote_asked_meanwhile_is_refused() -> None:
    world, _, candidate, _ = cut_after_its_event()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.request = Request("promote", "p1", candidate)
    world.now += datetime.timedelta(seconds=1)
    plan = decide(world.observe())
    assert "RequestRefused" in [e.reason for e in plan.events]
    assert plan.status["lastRequest"]["answer"] == "Refused"
    assert plan.status["candidate"]["outcome"] == "RolledBack"


def test_an_abort_asked_meanwhile_is_answered_with_the_end_the_gates_decided() -> None:
    # Answered "Aborted: rollout aborted by a person" beside a history, a Ready condition
    # and Events that say the gates rolled it back.
    world, _, candidate, _ = cut_after_its_event()
    world.request = Request("abort", "a1", candidate)
    world.reconcile()
    answer = world.status["lastRequest"]
    ready = world.condition("Ready")
    assert answer["answer"] == "Refused" and "Aborted" not in answer["message"]
    assert answer["message"].startswith(f"revision {candidate} ended (AnalysisFailed): ")
    assert "(AnalysisFailed)" in ready["message"]
    assert world.status["history"][0]["reason"].startswith("AnalysisFailed: ")


def test_a_new_spec_meanwhile_records_the_rollback_not_a_supersession() -> None:
    # The RolledBack Warning was out: history said Superseded and a RolloutSuperseded
    # Event followed it.
    from core_world import spec
    from test_progressive_rollout import ROLLOUT

    world, _, candidate, _ = cut_after_its_event()
    world.set_spec(spec("3", 2, rollout=ROLLOUT))
    plan = world.reconcile()
    assert "RolloutSuperseded" not in [e.reason for e in plan.events]
    assert world.deployment(candidate) is None
    entry = next(h for h in world.status["history"] if h["revision"] == candidate)
    assert entry["outcome"] == "RolledBack"
