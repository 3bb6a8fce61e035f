"""The bake period after a promotion (spec.rollout.bake): keep the previous revision, go back
to it when the promoted one fails its health in that time.

The pure decision (vigil.core.bake.decide) line by line, then the whole reconcile in the
in-memory World: the switch keeps the previous revision, a bake that passes removes it, a
health condition that turns bad sends live traffic back (never to a revision without Ready
pods), a verdict older than the switch does not, and a restart anywhere resumes.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import replace
from typing import Any

import pytest
from core_world import World, judged, promoted_with_bake, serving, spec

from vigil.common.times import format_time
from vigil.core.bake import (
    BakeObservations,
    BakeState,
    Signal,
    decide,
    signals,
    state_from_status,
    state_to_status,
)
from vigil.core.reconcile import decide as reconcile_decide
from vigil.core.spec import BakeSpec, parse_rollout
from vigil.core.vocabulary import BakeMove, Reason

BAKE = BakeSpec("10m", 600.0, 0)
T = 1_000_000.0
STATE = BakeState("new1234", "old1234", started_at=T, ends_at=T + 600, change="replacement")
DEGRADED = Signal(
    "PerformanceDegraded",
    "True",
    "PerformanceBelowThreshold",
    "accuracy 0.874 (95% CI 0.838-0.905) < threshold 0.95 over 1h, 300 labels",
    since=T + 60,
)


def seen(*signals: Signal, exists: bool = True, available: bool = False) -> BakeObservations:
    return BakeObservations(signals, exists, available, replicas=2)


class TestTheBakeDecision:
    def test_bakes_with_the_previous_revision_at_min_replicas(self) -> None:
        healthy = Signal("Healthy", "True", "SLOsMet", "fine", since=T - 100)
        decision = decide(BakeSpec("10m", 600.0, 1), STATE, seen(healthy), T + 30, 1800)
        assert decision.move == BakeMove.BAKE
        assert decision.previous_replicas == 1
        assert "Healthy True (SLOsMet)" in decision.message
        assert "kept at 1 replica(s) until" in decision.message

    def test_min_replicas_never_exceed_the_spec_replicas(self) -> None:
        decision = decide(BakeSpec("10m", 600.0, 5), STATE, seen(), T + 30, 1800)
        assert decision.previous_replicas == 2

    def test_passes_once_its_time_is_over(self) -> None:
        decision = decide(BAKE, STATE, seen(), T + 600, 1800)
        assert decision.move == BakeMove.PASS
        assert decision.previous_replicas == 0

    def test_a_failed_bakes_end_stays_whatever_the_spec_now_says(self) -> None:
        # Going back with rollout.bake removed (a 0s stand-in), status read endsAt = startedAt.
        failed = replace(STATE, failed_at=T + 65)
        decision = decide(BakeSpec("0s", 0.0, 0), failed, seen(DEGRADED), T + 70, 1800)
        assert decision.state.ends_at == T + 600
        longer = decide(BakeSpec("1h", 3600.0, 0), STATE, seen(), T + 70, 1800)
        assert longer.state.ends_at == T + 3600  # a bake not failed follows the spec

    def test_a_condition_turned_bad_during_the_bake_goes_back(self) -> None:
        decision = decide(BAKE, STATE, seen(DEGRADED), T + 61, 1800)
        assert decision.move == BakeMove.GO_BACK
        assert decision.previous_replicas == 2
        assert decision.state.failed_at == T + 61
        assert decision.state.reason == Reason.BAKE_FAILED
        # The measured value and the threshold, in the condition's words.
        assert "accuracy 0.874" in decision.state.message
        assert "threshold 0.95" in decision.state.message

    def test_unhealthy_goes_back_too(self) -> None:
        unhealthy = Signal("Healthy", "False", "ErrorRateHigh", "error rate 5%", since=T + 1)
        decision = decide(BAKE, STATE, seen(unhealthy), T + 2, 1800)
        assert decision.move == BakeMove.GO_BACK

    def test_goes_back_at_once_when_the_previous_revision_is_available(self) -> None:
        decision = decide(BAKE, STATE, seen(DEGRADED, available=True), T + 61, 1800)
        assert decision.move == BakeMove.ROLL_BACK

    def test_a_promoted_revision_without_a_ready_pod_goes_back(self) -> None:
        # No pod serves, so no request is judged: Healthy stays Unknown, and the bake
        # passed at its end, removing the one revision that could serve.
        lost = BakeObservations((), True, True, replicas=2, promoted_ready=0)
        decision = decide(BAKE, STATE, lost, T + 61, 1800)
        assert decision.move == BakeMove.ROLL_BACK
        assert "revision new1234 has no ready pod (0/2)" in decision.state.message
        some = BakeObservations((), True, True, replicas=2, promoted_ready=1)
        assert decide(BAKE, STATE, some, T + 600, 1800).move == BakeMove.PASS

    def test_a_verdict_older_than_the_switch_is_the_previous_revisions(self) -> None:
        old = Signal("PerformanceDegraded", "True", "PerformanceBelowThreshold", "x", T - 5)
        decision = decide(BAKE, STATE, seen(old), T + 61, 1800)
        assert decision.move == BakeMove.BAKE

    @pytest.mark.parametrize(
        "signal",
        [
            Signal("PerformanceDegraded", "Unknown", "InsufficientLabels", "3 < 100", T + 5),
            Signal("Healthy", "Unknown", "InsufficientData", "few requests", T + 5),
            Signal("PerformanceDegraded", "False", "PerformanceMet", "fine", T + 5),
        ],
    )
    def test_too_few_labels_or_requests_never_go_back(self, signal: Signal) -> None:
        assert decide(BAKE, STATE, seen(signal), T + 61, 1800).move == BakeMove.BAKE

    def test_a_failed_bake_does_not_pass_when_its_time_ends(self) -> None:
        failing = decide(BAKE, STATE, seen(DEGRADED), T + 61, 1800).state
        decision = decide(BAKE, failing, seen(), T + 700, 1800)
        assert decision.move == BakeMove.GO_BACK

    def test_gives_up_when_the_previous_revision_never_comes_back(self) -> None:
        failing = decide(BAKE, STATE, seen(DEGRADED), T + 61, 1800).state
        decision = decide(BAKE, failing, seen(), T + 61 + 1800, 1800)
        assert decision.move == BakeMove.GIVE_UP
        assert "progressDeadline 1800s" in decision.message
        assert "revision new1234 keeps serving" in decision.message

    def test_the_previous_revision_gone_ends_the_bake(self) -> None:
        decision = decide(BAKE, STATE, seen(exists=False), T + 61, 1800)
        assert decision.move == BakeMove.PASS and not decision.passed

    def test_a_failed_bake_with_the_previous_revision_gone_gives_up_at_once(self) -> None:
        # It passed: nothing said, the failed revision serving on as if it had baked well.
        failing = decide(BAKE, STATE, seen(DEGRADED), T + 61, 1800).state
        for state in (STATE, failing):
            decision = decide(BAKE, state, seen(DEGRADED, exists=False), T + 62, 1800)
            assert decision.move == BakeMove.GIVE_UP
            assert decision.message.startswith(
                "revision old1234 is gone (its Deployment was deleted outside the operator): "
                "nothing to go back to; revision new1234 keeps serving (PerformanceDegraded True"
            )
        # Past progressDeadline the give-up removed it itself (a cycle cut short): its words.
        late = decide(BAKE, failing, seen(exists=False), T + 61 + 1800, 1800)
        assert late.move == BakeMove.GIVE_UP and "progressDeadline 1800s" in late.message

    def test_a_failure_seen_past_the_end_with_the_previous_gone_is_a_pass(self) -> None:
        """The cycle that passed the bake removed the previous revision and lost its status
        write: a failure seen after the bake's end is not a give-up "deleted outside"."""
        decision = decide(BAKE, STATE, seen(DEGRADED, exists=False), T + 700, 1800)
        assert decision.move == BakeMove.PASS
        assert decision.message == "revision old1234 is gone"

    def test_a_bake_given_up_stays_given_up(self) -> None:
        gave_up = replace(STATE, failed_at=T + 61, reason="BakeRollbackFailed", message="m")
        for previous in (seen(exists=False), seen(available=True)):
            decision = decide(BAKE, gave_up, previous, T + 3000, 1800)
            assert (decision.move, decision.message) == (BakeMove.GIVE_UP, "m")

    def test_the_state_survives_status(self) -> None:
        failing = decide(BAKE, STATE, seen(DEGRADED), T + 61, 1800).state
        assert state_from_status(state_to_status(failing)) == failing
        assert state_from_status({"revision": "x"}) is None

    def test_signals_read_the_watched_conditions(self) -> None:
        conditions = [
            {"type": "Ready", "status": "True", "reason": "Available"},
            {
                "type": "PerformanceDegraded",
                "status": "True",
                "reason": "PerformanceBelowThreshold",
                "message": "m",
                "lastTransitionTime": "1970-01-12T13:46:40Z",
            },
        ]
        (signal,) = signals(conditions)
        assert signal.type == "PerformanceDegraded" and signal.since == T


class TestTheSpec:
    def test_absent_is_no_bake(self) -> None:
        assert parse_rollout({}).bake is None

    def test_read_with_its_default(self) -> None:
        assert parse_rollout({"bake": {"duration": "15m"}}).bake == BakeSpec("15m", 900.0, 0)
        assert parse_rollout({"bake": {"duration": "1m", "minReplicas": 2}}).bake == BakeSpec(
            "1m", 60.0, 2
        )

    @pytest.mark.parametrize(
        ("bake", "words"),
        [
            ({}, "spec.rollout.bake.duration"),
            ({"duration": "0s"}, "spec.rollout.bake.duration"),
            ({"duration": "5m", "minReplicas": -1}, "spec.rollout.bake.minReplicas"),
        ],
    )
    def test_bad_values_name_the_field(self, bake: dict[str, Any], words: str) -> None:
        with pytest.raises(ValueError, match=words):
            parse_rollout({"bake": bake})


# -- the reconcile -------------------------------------------------------------------------


def baked(duration: str = "10m", **bake: Any) -> dict[str, Any]:
    return {"bake": {"duration": duration, **bake}}


def promoted(rollout: dict[str, Any] | None = None) -> tuple[World, str, str]:
    """Version 2 switched in blue/green with a bake: (world, previous, promoted)."""
    return promoted_with_bake(rollout or baked())


def degrade(world: World) -> None:
    judged(
        world,
        "PerformanceDegraded",
        True,
        "PerformanceBelowThreshold",
        "accuracy 0.874 (95% CI 0.838-0.905) < threshold 0.95 over 1h, 300 labels",
    )


def replicas(world: World, revision: str) -> int:
    deployment = world.deployment(revision)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def ready_behind_the_service(world: World) -> int:
    deployment = world.deployment(world.service_revision() or "")
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


class TestTheSwitchKeepsThePreviousRevision:
    def test_kept_at_min_replicas_with_its_bake_in_status(self) -> None:
        world, previous, revision = promoted(baked(minReplicas=1))
        assert replicas(world, previous) == 1
        bake = world.status["bake"]
        assert (bake["revision"], bake["previous"], bake["change"]) == (
            revision,
            previous,
            "replacement",
        )
        assert bake["previousReplicas"] == 1
        assert bake["endsAt"] == format_time(
            datetime.datetime.fromisoformat(bake["startedAt"].replace("Z", "+00:00"))
            + datetime.timedelta(minutes=10)
        )
        progressing = world.condition("Progressing")
        assert (progressing["status"], progressing["reason"]) == ("True", "Baking")
        assert world.condition("Ready")["status"] == "True"

    def test_a_duration_edited_during_the_bake_moves_its_end(self) -> None:
        # Lengthened to wait for late labels, the bake still ended (and removed the
        # previous revision) at the old end.
        world, previous, _revision = promoted(baked(minReplicas=1))
        started = datetime.datetime.fromisoformat(
            world.status["bake"]["startedAt"].replace("Z", "+00:00")
        )
        world.set_spec(spec("2", 2, rollout=baked("1h", minReplicas=1)))
        world.reconcile(advance=30)
        assert world.status["bake"]["endsAt"] == format_time(started + datetime.timedelta(hours=1))
        world.reconcile(advance=600)
        assert world.status["bake"]["previous"] == previous and replicas(world, previous) == 1
        assert world.condition("Progressing")["reason"] == "Baking"

    def test_a_spec_set_back_to_the_kept_revision_during_a_good_bake_says_the_bake_ends(
        self,
    ) -> None:
        # Its kept Deployment rolls out as the candidate; status.bake went without a word.
        world, previous, revision = promoted(baked(minReplicas=1))
        world.set_spec(spec("1", 2, rollout=baked(minReplicas=1)))
        plan = world.reconcile()
        said = [e.message for e in plan.events if e.reason == "RolloutSuperseded"]
        assert said == [
            f"the bake of revision {revision} ends: the spec asks for revision {previous} "
            "again, kept for the bake, which rolls out against it"
        ]
        assert "bake" not in world.status and world.deployment(previous) is not None
        assert world.status["candidate"]["revision"] == previous
        assert "RolloutSuperseded" not in [e.reason for e in world.reconcile().events]

    def test_the_switched_event_says_it_is_kept(self) -> None:
        world, previous = serving(baked())
        world.set_spec(spec("2", 2, rollout=baked()))
        world.reconcile()
        world.pods_ready(world.status["candidate"]["revision"])
        plan = world.reconcile()
        (switched,) = [e for e in plan.events if e.reason == "Switched"]
        assert f"revision {previous} kept at 0 replica(s) for the bake" in switched.message

    def test_without_bake_the_previous_revision_goes_at_the_switch(self) -> None:
        world, previous = serving({})
        world.set_spec(spec("2", 2))
        world.reconcile()
        world.pods_ready(world.status["candidate"]["revision"])
        world.reconcile()
        assert world.deployment(previous) is None
        assert "bake" not in world.status


class TestASwitchCutShortBeforeItsStatusWrite:
    """The operator stopped after the switch moved the Service (and kept the previous
    revision for the bake), before status said so: status names the old stable still."""

    def cut_switch(self, rollout: dict[str, Any]) -> tuple[World, str, str]:
        world, previous = serving(rollout)
        world.set_spec(spec("2", 2, rollout=rollout))
        world.reconcile()
        revision = world.status["candidate"]["revision"]
        world.pods_ready(revision)
        world.now += datetime.timedelta(seconds=1)
        world.carry_out(reconcile_decide(world.observe()).actions)
        assert world.service_revision() == revision
        assert world.status["stable"]["revision"] == previous
        return world, previous, revision

    def test_live_traffic_stays_on_the_promoted_revision_with_a_pod_unready(self) -> None:
        # The previous revision is at minReplicas 0: moved back there, traffic met no pod.
        world, previous, revision = self.cut_switch(baked())
        world.pods_ready(revision, 1)
        world.reconcile()
        assert world.service_revision() == revision
        assert ready_behind_the_service(world) == 1
        assert world.status["stable"]["revision"] == revision
        bake = world.status["bake"]
        assert (bake["revision"], bake["previous"]) == (revision, previous)
        assert replicas(world, previous) == 0
        history = [(h["revision"], h["outcome"]) for h in world.status["history"]]
        assert (revision, "Promoted") in history

    def test_a_switch_stopped_before_keeping_the_previous_revision_bakes_from_the_move(
        self,
    ) -> None:
        # The Service moved, then the operator stopped before the previous revision's scale
        # (and its mark): the bake, stable.since and history count from the Service's move.
        world, _previous = serving(baked())
        world.set_spec(spec("2", 2, rollout=baked()))
        world.reconcile()
        world.pods_ready(world.status["candidate"]["revision"])
        written = copy.deepcopy(world)
        written.reconcile()
        world.now += datetime.timedelta(seconds=1)
        actions = reconcile_decide(world.observe()).actions
        moved = next(
            i
            for i, a in enumerate(actions)
            if (getattr(a, "kind", ""), a.name) == ("Service", "wine")
        )
        world.carry_out(actions[: moved + 1])
        world.reconcile(advance=120)
        bake = {**world.status["bake"], "message": ""}
        assert bake == {**written.status["bake"], "message": ""}
        assert world.status["stable"] == written.status["stable"]
        assert world.status["history"] == written.status["history"]

    def test_the_retry_lands_where_the_lost_write_would_have(self) -> None:
        # The operator was down two minutes after the switch (or the API server refused its
        # status writes): the bake, status.stable.since and the history entry started at the
        # retry, the bake ending two minutes late. Healthy goes Unknown either way: the health
        # loop judges the revision status names, so a verdict between is the previous one's.
        world, previous = serving(baked())
        judged(world, "Healthy", True, "SLOsMet", "error rate 0.0% <= 1.0%")
        world.set_spec(spec("2", 2, rollout=baked()))
        world.reconcile()
        revision = world.status["candidate"]["revision"]
        world.pods_ready(revision)
        written = copy.deepcopy(world)
        written.reconcile()
        world.now += datetime.timedelta(seconds=1)
        world.carry_out(reconcile_decide(world.observe()).actions)
        world.now += datetime.timedelta(seconds=120)
        judged(world, "Healthy", None, "InsufficientData", f"revision {previous}: no pod")
        plan = world.reconcile()
        # (its message is the bake's first check's: the retry cycle watches it already)
        assert {**world.status["bake"], "message": ""} == {**written.status["bake"], "message": ""}
        assert world.status["stable"] == written.status["stable"]
        assert world.status["history"] == written.status["history"]
        healthy = (world.condition("Healthy"), written.condition("Healthy"))
        assert [(h["status"], h["reason"], h["message"]) for h in healthy] == 2 * [
            (
                "Unknown",
                "InsufficientData",
                f"revision {revision} has just taken live traffic: not judged yet",
            )
        ]
        assert plan.actions == []  # the previous revision kept as the switch left it
        # The bake ends when it would have: ten minutes after the switch.
        world.now = written.now + datetime.timedelta(seconds=599)
        assert world.reconcile(0).events == []
        assert [e.reason for e in world.reconcile(1).events] == ["BakePassed"]

    def test_without_a_bake_the_previous_revision_goes(self) -> None:
        world, previous, revision = self.cut_switch({})
        world.pods_ready(revision, 1)
        world.reconcile()
        assert world.service_revision() == revision
        assert world.status["stable"]["revision"] == revision
        assert world.deployment(previous) is None
        assert "bake" not in world.status


def test_an_unreadable_rollout_during_a_bake_keeps_the_previous_revision() -> None:
    # Read with its defaults, the section has no bake: the previous revision went unjudged.
    world, previous, _revision = promoted()
    world.set_spec(spec("2", 2, rollout={**baked(), "analysis": {"interval": "fast"}}))
    world.reconcile(60)
    assert world.deployment(previous) is not None
    assert world.status["bake"]["previous"] == previous
    assert world.condition("Ready")["reason"] == "InvalidSpec"
    world.set_spec(spec("2", 2, rollout=baked()))
    world.reconcile(60)
    assert world.status["bake"]["reason"] == "Baking" and world.deployment(previous) is not None


class TestABakeThatPasses:
    def test_removes_the_previous_revision_when_its_time_is_over(self) -> None:
        world, previous, revision = promoted()
        judged(world, "Healthy", True, "SLOsMet", "error rate 0.0% <= 1.0%")
        world.reconcile(60)
        assert world.deployment(previous) is not None
        assert world.status["bake"]["reason"] == "Baking"
        plan = world.reconcile(600)
        assert world.deployment(previous) is None
        assert [e.reason for e in plan.events] == ["BakePassed"]
        assert "Healthy True (SLOsMet)" in plan.events[0].message
        assert "bake" not in world.status
        assert world.status["stable"]["revision"] == revision
        assert world.condition("Progressing")["reason"] == "Complete"

    def test_one_cut_short_after_its_deletions_posts_bake_passed_once(self) -> None:
        # The operator stopped after the bake-passing plan removed the previous revision,
        # before its Event and status: the next cycle posts it (under the same name).
        world, previous, revision = promoted(baked(minReplicas=1))
        judged(world, "Healthy", True, "SLOsMet", "error rate 0.0% <= 1.0%")
        world.pods_ready(previous)
        world.reconcile(60)
        world.now += datetime.timedelta(seconds=600)
        cut = reconcile_decide(world.observe())
        assert [e.reason for e in cut.events] == ["BakePassed"]
        world.carry_out(cut.actions)
        assert world.deployment(previous) is None and world.status["bake"]
        plan = world.reconcile()
        assert [(e.reason, e.message, e.occurrence) for e in plan.events] == [
            (e.reason, e.message, e.occurrence) for e in cut.events
        ]
        assert cut.events[0].occurrence.startswith(f"BakePassed {revision} ")
        assert "bake" not in world.status and world.reconcile().events == []

    def test_a_previous_revision_removed_by_hand_mid_bake_passes_nothing(self) -> None:
        world, previous, _revision = promoted(baked(minReplicas=1))
        world.reconcile(60)
        del world.objects[("Deployment", f"wine-{previous}")]
        plan = world.reconcile()
        assert plan.events == [] and "bake" not in world.status

    def test_a_verdict_from_before_the_switch_does_not_go_back(self) -> None:
        world, previous = serving(baked())
        degrade(world)  # the previous revision's verdict
        world.set_spec(spec("2", 2, rollout=baked()))
        world.reconcile()
        world.pods_ready(world.status["candidate"]["revision"])
        world.reconcile()
        world.reconcile(30)
        assert replicas(world, previous) == 0
        assert world.status["bake"]["reason"] == "Baking"


class TestABakeThatFails:
    def test_live_traffic_goes_back_once_the_previous_revision_is_available(self) -> None:
        world, previous, revision = promoted()
        world.reconcile(30)
        degrade(world)
        plan = world.reconcile(1)
        # Scaled up first; the Service stays on the promoted revision meanwhile.
        assert replicas(world, previous) == 2
        assert world.service_revision() == revision
        assert ready_behind_the_service(world) == 2
        assert [e.reason for e in plan.events] == ["BakeFailed"]
        assert world.status["bake"]["reason"] == "BakeFailed"
        assert "accuracy 0.874" in world.status["bake"]["message"]
        world.reconcile(1)  # still starting
        assert world.service_revision() == revision
        world.pods_ready(previous)
        plan = world.reconcile(1)
        assert world.service_revision() == previous
        assert ready_behind_the_service(world) == 2
        assert [e.reason for e in plan.events] == ["RolledBack"]
        assert plan.events[0].warning
        assert plan.rollout_outcome == "RolledBack"
        assert world.status["phase"] == "RolledBack"
        ready = world.condition("Ready")
        assert (ready["status"], ready["reason"]) == ("False", "RolledBack")
        assert "rolled back in its bake period (BakeFailed)" in ready["message"]
        assert "accuracy 0.874" in ready["message"] and "threshold 0.95" in ready["message"]
        assert world.status["stable"]["revision"] == previous
        assert world.status["candidate"]["outcome"] == "RolledBack"
        assert world.status["history"][0]["outcome"] == "RolledBack"
        assert "bake" not in world.status
        # The next cycle removes the promoted revision; it stays out (spec untouched).
        world.reconcile(1)
        assert world.deployment(revision) is None
        for _ in range(3):
            world.reconcile(30)
        assert world.names("Deployment") == [f"wine-{previous}"]
        assert world.status["phase"] == "RolledBack"
        assert world.spec["model"]["version"] == "2"

    def test_with_min_replicas_at_full_capacity_it_goes_back_at_once(self) -> None:
        world, previous, _ = promoted(baked(minReplicas=2))
        world.pods_ready(previous)
        world.reconcile(30)
        degrade(world)
        plan = world.reconcile(1)
        assert world.service_revision() == previous
        assert {e.reason for e in plan.events} == {"BakeFailed", "RolledBack"}

    def test_a_promoted_revision_that_lost_its_pods_goes_back(self) -> None:
        world, previous, revision = promoted(baked(minReplicas=2))
        world.pods_ready(previous)
        world.reconcile(30)
        world.pods_ready(revision, 0)
        plan = world.reconcile(1)
        assert world.service_revision() == previous
        assert {e.reason for e in plan.events} == {"BakeFailed", "RolledBack"}
        assert f"revision {revision} has no ready pod (0/2)" in world.condition("Ready")["message"]

    def test_the_bake_removed_from_the_spec_while_going_back_still_goes_back(self) -> None:
        # It ended "as if it passed": the previous revision removed, no Event, the revision
        # that failed its bake serving on as if nothing had happened.
        world, previous, _ = promoted()
        degrade(world)
        world.reconcile(1)
        world.set_spec(spec("2", 2, rollout={}))
        world.reconcile(1)
        assert world.deployment(previous) is not None
        assert world.status["bake"]["reason"] == "BakeFailed"
        world.pods_ready(previous)
        plan = world.reconcile(1)
        assert world.service_revision() == previous
        assert [e.reason for e in plan.events] == ["RolledBack"]

    def test_a_bake_failure_decided_again_after_its_status_failed_is_one_event(self) -> None:
        world, _, _ = promoted()
        degrade(world)
        world.now += datetime.timedelta(seconds=1)
        first = reconcile_decide(world.observe())
        world.carry_out(first.actions)  # its status write failed
        again = world.reconcile(1)
        (said,) = (e for e in first.events if e.reason == "BakeFailed")
        (resaid,) = (e for e in again.events if e.reason == "BakeFailed")
        assert said.occurrence == resaid.occurrence != ""

    def test_the_previous_revision_deleted_while_going_back_gives_up_once(self) -> None:
        # Nothing was said: the bake ended as if it had passed (status.bake gone, Progressing
        # Complete), the revision that failed it serving on.
        world, previous, revision = promoted()
        degrade(world)
        world.reconcile(1)
        del world.objects[("Deployment", f"wine-{previous}")]
        plan = world.reconcile(1)
        (said,) = plan.events
        assert (said.reason, said.warning) == ("BakeRollbackFailed", True)
        assert said.message.startswith(
            f"revision {previous} is gone (its Deployment was deleted outside the operator): "
            f"nothing to go back to; revision {revision} keeps serving (PerformanceDegraded True"
        )
        assert world.service_revision() == revision
        progressing = world.condition("Progressing")
        assert (progressing["status"], progressing["reason"]) == ("False", "BakeRollbackFailed")
        assert said.message in progressing["message"]
        assert world.condition("Ready")["status"] == "True"
        assert world.condition("Stalled")["status"] == "False"
        assert world.status["bake"]["reason"] == "BakeRollbackFailed"
        assert world.status["bake"]["message"] == said.message
        # It stands, said once: no Event, no status write, no recheck.
        writes = world.status_writes
        for _ in range(3):
            plan = world.reconcile(30)
            assert plan.events == [] and plan.recheck_after is None
        assert world.status_writes == writes
        # The next revision rolls out against the promoted one, and the give-up ends.
        world.set_spec(spec("3", 2, rollout=baked()))
        world.reconcile(1)
        assert "bake" not in world.status
        assert world.status["candidate"]["revision"] == world.status["revision"] != revision
        assert world.service_revision() == revision

    def test_a_previous_revision_never_available_is_given_up_once_and_said(self) -> None:
        # Past progressDeadline (60s here) the previous revision goes and the promoted one
        # serves on; status says so until another revision rolls out (it said nothing).
        world, previous, revision = promoted({**baked(), "progressDeadline": "60s"})
        degrade(world)
        world.reconcile(1)
        plans = [world.reconcile(10) for _ in range(8)]
        said = [e for plan in plans for e in plan.events]
        assert [e.reason for e in said] == ["BakeRollbackFailed"]
        assert said[0].message.startswith(f"revision {previous} did not become available in ")
        assert world.deployment(previous) is None and world.service_revision() == revision
        progressing = world.condition("Progressing")
        assert (progressing["status"], progressing["reason"]) == ("False", "BakeRollbackFailed")
        assert world.status["bake"]["reason"] == "BakeRollbackFailed"
        assert world.condition("Ready")["status"] == "True"

    def test_a_give_up_decided_again_after_its_status_failed_is_one_event(self) -> None:
        world, previous, _ = promoted()
        degrade(world)
        world.reconcile(1)
        del world.objects[("Deployment", f"wine-{previous}")]
        world.now += datetime.timedelta(seconds=1)
        first = reconcile_decide(world.observe())
        world.carry_out(first.actions)  # its status write failed
        again = world.reconcile(1)
        (said,) = first.events
        (resaid,) = again.events
        assert said.reason == resaid.reason == "BakeRollbackFailed"
        assert said.occurrence == resaid.occurrence != ""
        assert world.reconcile(30).events == []

    def test_a_restart_between_the_writes_and_the_status_resumes(self) -> None:
        world, previous, _ = promoted()
        degrade(world)
        world.reconcile(1)
        world.pods_ready(previous)
        # The operator stops after the plan's writes, before its status write.
        world.now += datetime.timedelta(seconds=1)
        world.carry_out(reconcile_decide(world.observe()).actions)
        assert world.service_revision() == previous
        world.reconcile(1)
        assert world.status["stable"]["revision"] == previous
        assert world.status["phase"] == "RolledBack"
        world.reconcile(1)
        assert world.names("Deployment") == [f"wine-{previous}"]
        assert world.service_revision() == previous

    def test_a_spec_change_rolls_the_promoted_model_out_again(self) -> None:
        world, previous, _ = promoted()
        degrade(world)
        world.reconcile(1)
        world.pods_ready(previous)
        world.reconcile(1)
        world.reconcile(1)
        world.set_spec(spec("2", 2, rollout=baked("20m")))
        plan = world.reconcile(1)
        assert "RolloutRetried" in [e.reason for e in plan.events]
        assert world.status["candidate"].get("outcome") is None
        assert world.service_revision() == previous

    def test_the_same_revision_promoted_again_bakes_from_its_new_switch(self) -> None:
        """The mark the first switch left on the previous revision is that attempt's: the
        second bake of the same revision starts at its own switch, an hour later."""
        world, previous, revision = promoted()
        degrade(world)
        world.reconcile(1)
        world.pods_ready(previous)
        world.reconcile(1)
        world.reconcile(1)
        assert world.service_revision() == previous
        world.now += datetime.timedelta(hours=1)
        judged(world, "PerformanceDegraded", False, "PerformanceMet", "accuracy 0.95")
        world.set_spec(spec("2", 2, rollout=baked("20m")))
        world.reconcile(1)
        world.pods_ready(revision)
        world.reconcile(1)
        assert world.service_revision() == revision
        bake = world.status["bake"]
        assert bake["startedAt"] == format_time(world.now), bake
        plan = world.reconcile(1)
        assert "BakePassed" not in [e.reason for e in plan.events]
        assert world.deployment(previous) is not None


class TestANewRolloutDuringTheBake:
    def test_the_previous_revision_goes_without_a_history_entry_of_its_own(self) -> None:
        world, previous, _ = promoted()
        before = [e for e in world.status["history"] if e["revision"] == previous]
        world.set_spec(spec("3", 2, rollout=baked()))
        plan = world.reconcile(1)
        assert world.deployment(previous) is None
        assert "RolloutSuperseded" in [e.reason for e in plan.events]
        assert [e for e in world.status["history"] if e["revision"] == previous] == before
        assert "bake" not in world.status
