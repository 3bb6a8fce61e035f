"""The reconcile decision with rollout steps: candidate lifecycle, traffic, promotion, rollback."""

from __future__ import annotations

import copy
import datetime
import functools
from typing import Any, ClassVar

import core_world
import pytest
from core_world import RolloutWorld, spec
from figures_kit import figures as seen

from vigil.common.times import format_time
from vigil.core.analysis import candidate_figures
from vigil.core.candidate import Request, RolloutInputs
from vigil.core.desired import desired_service
from vigil.core.reconcile import Apply, Delete, Plan, Route, decide
from vigil.core.reconcile.cycle import SERVICE_SETTLE_SECONDS
from vigil.core.rollout import GoldenResult
from vigil.core.window import RevisionWindow
from vigil.routing import RoutingTarget
from vigil.routing.gateway_api import desired_rules

GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)
BAD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.4)

ROLLOUT = {
    "replacement": {
        "steps": [
            {"shadow": {"duration": "10s", "percent": 100, "minRequests": 20}},
            {"canary": {"weight": 20, "duration": "10s"}},
            {"canary": {"weight": 50, "duration": "10s"}},
        ]
    },
    "tweak": {"steps": [{"canary": {"weight": 50, "duration": "5s"}}]},
    "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 2},
    "progressDeadline": "60s",
}


def serving(
    world: RolloutWorld | None = None, rollout: dict[str, Any] = ROLLOUT
) -> tuple[RolloutWorld, str]:
    """Version 1 serving with all its replicas: the stable revision."""
    return core_world.serving(rollout, world or RolloutWorld())


def started(
    version: str = "2", world: RolloutWorld | None = None, **extra: Any
) -> tuple[RolloutWorld, str, str]:
    """A stable serving, then a spec change (``extra``: more spec fields) starts a candidate."""
    extra.setdefault("rollout", ROLLOUT)
    world, stable = serving(world, extra["rollout"])
    world.set_spec(spec(version, 2, **extra))
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    return world, stable, candidate


def run_until(world: RolloutWorld, candidate: str, predicate: Any, limit: int = 60) -> None:
    for _ in range(limit):
        if world.deployment(candidate) is not None:
            world.pods_ready(candidate)
        world.reconcile(advance=1.0)
        if predicate():
            return
    raise AssertionError(f"not reached; status: {world.status}")


def test_replacement_goes_shadow_canary_canary_promoted() -> None:
    world, stable, candidate = started()
    assert world.status["candidate"]["change"] == "replacement"
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://10.0.0.9:8000")
    world.pods_ready(candidate)
    world.reconcile()
    # shadow: full candidate capacity, no live traffic, the stable copies requests
    assert world.replicas(candidate) == 2 and world.replicas(stable) == 2
    assert world.shadow(stable)["targetRevision"] == candidate
    assert world.objects[("Service", "wine")]["spec"]["selector"]["vigil.dev/revision"] == stable
    assert ("Service", f"wine-{candidate}") in world.objects
    seen: set[str] = set()

    def promoted() -> bool:
        seen.add(str((world.status.get("candidate") or {}).get("stepName")))
        return world.status["stable"]["revision"] == candidate

    run_until(world, candidate, promoted)
    assert {"shadow 100%", "canary 20%", "canary 50%"} <= seen
    assert world.deployment(stable) is None
    assert world.status["history"][0]["outcome"] == "Promoted"
    assert world.status["history"][0]["change"] == "replacement"
    assert "candidate" not in world.status
    assert any(p.rollout_outcome == "Promoted" for p in world.plans)


def plan_that_posts(world: RolloutWorld, candidate: str, reason: str) -> Plan:
    """Run the rollout up to the cycle whose plan posts `reason`; return that plan, not done."""
    for _ in range(60):
        if world.deployment(candidate) is not None:
            world.pods_ready(candidate)
        world.now += datetime.timedelta(seconds=1)
        plan = decide(world.observe())
        if any(e.reason == reason for e in plan.events):
            return plan
        world.reconcile(advance=0)
    raise AssertionError(f"no plan posted {reason}; status: {world.status}")


def settled_posts(world: RolloutWorld, reason: str) -> list[str]:
    """A few more cycles (nothing may happen twice), then every `reason` Event posted."""
    for _ in range(3):
        world.reconcile()
    return [e.message for plan in world.plans for e in plan.events if e.reason == reason]


@functools.cache
def _at_the_switch() -> tuple[RolloutWorld, str, str, Plan]:
    """A rollout up to its switch's plan (not carried out), built once for every cut."""
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    return world, stable, candidate, plan_that_posts(world, candidate, "Switched")


@pytest.mark.parametrize("done", range(7))
def test_a_promotion_cut_short_is_finished_once_in_the_same_words(done: int) -> None:
    # The operator stopped after `done` of the switch's actions, before its Events and
    # status (a kill): the next cycles finish this very promotion, nothing twice.
    world, stable, candidate, cut = copy.deepcopy(_at_the_switch())
    assert [e.reason for e in cut.events] == ["Switched"] and len(cut.actions) == 6
    world.carry_out(cut.actions[:done])
    run_until(world, candidate, lambda: world.status["stable"]["revision"] == candidate)
    assert settled_posts(world, "Switched") == [cut.events[0].message]
    # One name whatever the object's version: the health loop may write status in between.
    named = {e.occurrence for plan in world.plans for e in plan.events if e.reason == "Switched"}
    assert named == {cut.events[0].occurrence} and cut.events[0].occurrence.startswith("Switched")
    assert (world.names("Deployment"), world.names("ConfigMap")) == (
        [f"wine-{candidate}"],
        [f"wine-{candidate}-sidecar"],
    )
    assert f"wine-{stable}" not in world.names("Service")
    history = [(h["revision"], h["outcome"]) for h in world.status["history"]]
    assert history == [(candidate, "Promoted"), (stable, "Deployed")]
    assert "candidate" not in world.status


def test_a_step_advance_decided_again_after_its_status_failed_is_one_event() -> None:
    # The status write that records the advance failed; the retry judged newer figures:
    # other words, so another Event on the same version. Its name is the attempt's step.
    world, _, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("reason") is not None)
    cut = plan_that_posts(world, candidate, "StepAdvanced")
    world.carry_out(cut.actions)  # its status write failed
    newer = seen(requests=120, latency_p95=0.01, compared=120, agreement=0.98)
    world.inputs = RolloutInputs(figures=newer, shadow_target="http://x")
    again = world.reconcile(advance=0.0)
    (first,) = (e for e in cut.events if e.reason == "StepAdvanced")
    (second,) = (e for e in again.events if e.reason == "StepAdvanced")
    assert first.message != second.message and first.occurrence == second.occurrence != ""


def test_an_undecided_hold_decided_again_after_its_status_failed_is_one_event() -> None:
    # As a step advance: the hold's start was never recorded, so the retry began it again
    # with the newer figures in its words, and posted a second Undecided.
    steps = [{"canary": {"weight": 50, "duration": "5s"}}]
    rollout = {**ROLLOUT, "replacement": {"steps": steps}, "progressDeadline": "600s"}
    world, _, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=seen(requests=200, error_rate=0.015))
    cut = plan_that_posts(world, candidate, "Undecided")
    world.carry_out(cut.actions)  # its status write failed
    world.inputs = RolloutInputs(figures=seen(requests=240, error_rate=0.0125))
    again = world.reconcile(advance=0.0)
    (first,) = (e for e in cut.events if e.reason == "Undecided")
    (second,) = (e for e in again.events if e.reason == "Undecided")
    assert first.message != second.message and first.occurrence == second.occurrence != ""


def test_every_step_advance_has_its_own_name_when_the_steps_were_edited() -> None:
    # The shadow step removed while canary 50% runs moves it from index 2 to 1: the next
    # advance enters index 2 again. Named by that index, it met the first's name (a 409):
    # never posted.
    steps = [
        {"shadow": {"duration": "10s", "percent": 100, "minRequests": 20}},
        {"canary": {"weight": 20, "duration": "10s"}},
        {"canary": {"weight": 50, "duration": "10s"}},
        {"canary": {"weight": 80, "duration": "10s"}},
    ]
    rollout = {**ROLLOUT, "replacement": {"steps": steps}}
    world, _, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 50%")
    world.set_spec(spec("2", 2, rollout={**rollout, "replacement": {"steps": steps[1:]}}))
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 80%")
    named = [e.occurrence for p in world.plans for e in p.events if e.reason == "StepAdvanced"]
    assert len(named) == 3 and len(set(named)) == 3


def test_a_promote_request_whose_switch_was_cut_short_is_answered_as_done() -> None:
    # The person's promote switches at once (the candidate is at full capacity); the
    # operator stops after every write, before its status and the request's clearing.
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("reason") is not None)
    world.pods_ready(candidate)
    world.request = Request("promote", "p1")
    world.now += datetime.timedelta(seconds=1)
    cut = decide(world.observe())
    assert [e.reason for e in cut.events] == ["Promoting", "Switched"]
    world.carry_out(cut.actions)
    plan = world.reconcile()
    # Both said again under the cut cycle's names (a 409 each, if it posted them).
    assert [(e.reason, e.occurrence) for e in plan.events] == [
        (e.reason, e.occurrence) for e in cut.events
    ]
    assert plan.clear_request == Request("promote", "p1") and world.request is None
    assert (world.status["lastRequest"]["id"], world.status["lastRequest"]["answer"]) == (
        "p1",
        "Taken",
    )
    # The rollout's outcome for the metric, as the switch it finishes gives it.
    assert plan.rollout_outcome == cut.rollout_outcome == "Promoted"
    assert world.status["stable"]["revision"] == candidate and world.deployment(stable) is None


def test_a_stepped_switch_cut_short_then_a_new_spec_finishes_it_first() -> None:
    # The switch's writes done (the Service moved), not its deletions, Events or status; a
    # new spec before the next cycle: it finishes the promotion, then rolls out against it.
    world, stable, candidate, cut = copy.deepcopy(_at_the_switch())
    world.carry_out(cut.actions[:3])
    world.set_spec(spec("3", 2, rollout=ROLLOUT))
    plan = world.reconcile()
    assert [e.reason for e in plan.events] == ["Switched", "RolloutStarted"]
    assert plan.events[0].occurrence == cut.events[0].occurrence
    # Named by its occurrence too: decided again after a kill, it is posted once.
    assert plan.events[1].occurrence.startswith(f"RolloutStarted {world.status['revision']} ")
    assert plan.rollout_outcome == "Promoted"
    assert world.deployment(stable) is None and f"wine-{stable}" not in world.names("Service")
    history = [(h["revision"], h["outcome"], h["change"]) for h in world.status["history"]]
    assert history == [(candidate, "Promoted", "replacement"), (stable, "Deployed", "new")]
    assert world.status["stable"]["revision"] == candidate
    assert world.status["candidate"]["revision"] == world.status["revision"] != candidate


@pytest.mark.parametrize("done", range(3))
def test_a_rollback_cut_short_is_finished_once(done: int) -> None:
    # The operator stopped after `done` of the rollback's actions (before its Event and
    # status): the candidate is still there, so the next cycle decides the same rollback.
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    cut = plan_that_posts(world, candidate, "RolledBack")
    # The candidate's Deployment only gets its mark (vigil.dev/ended): kept as it runs.
    live = world.deployment(candidate)
    assert live is not None
    for action in cut.actions:
        if action.kind == "Deployment":
            assert isinstance(action, Apply) and action.manifest["spec"] == live["spec"]
    # Decided again on newer figures, its Event keeps its name (vigil.core.events).
    began = world.status["candidate"]["startedAt"]
    assert cut.events[0].occurrence == f"RolledBack {candidate} {began}"
    world.carry_out(cut.actions[:done])
    assert world.deployment(candidate) is not None
    run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
    assert settled_posts(world, "RolledBack") == [cut.events[0].message]
    assert (world.names("Deployment"), world.names("ConfigMap")) == (
        [f"wine-{stable}"],
        [f"wine-{stable}-sidecar"],
    )
    assert [h["outcome"] for h in world.status["history"]] == ["RolledBack", "Deployed"]


def at_the_first_canary() -> tuple[RolloutWorld, str, str]:
    """A rollout at its "canary 20%" step under replica ratio, its candidate pods ready."""
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("stepName") == "canary 20%")
    world.pods_ready(candidate)
    world.reconcile()
    return world, stable, candidate


def test_canary_spans_both_revisions_with_replica_ratio() -> None:
    world, stable, candidate = at_the_first_canary()
    selector = world.objects[("Service", "wine")]["spec"]["selector"]
    assert selector == {"vigil.dev/model-deployment": "wine"}
    assert world.replicas(candidate) == 1 and world.replicas(stable) == 2
    assert world.shadow(stable) is None
    # One candidate pod beside the stable's two is a third of the live traffic, not 20 %:
    # said with the step (status.candidate.weight alone said it before).
    words = "step 2/3 (canary 20%; replica ratio: 1 pod(s) beside 2 stable = 33.3%): "
    assert world.status["candidate"]["message"].startswith(words)
    assert words in world.condition("Ready")["message"]


def test_a_canary_selector_leaves_the_serving_mark_as_the_last_move_wrote_it() -> None:
    # The mark names the revision that last took all live traffic: a canary's span moves
    # none whole, and a Service an operator without marks applied costs no write for one.
    world, stable, _candidate = at_the_first_canary()
    service = world.objects[("Service", "wine")]
    assert service["metadata"]["annotations"]["vigil.dev/serving-since"].startswith(stable)
    selector = dict(service["spec"]["selector"])
    world.carry_out([Apply(desired_service(core_world.OWNER, stable, selector))])
    services = [a for a in decide(world.observe()).actions if getattr(a, "kind", "") == "Service"]
    assert [a.name for a in services if a.name == "wine"] == []


def live_share(world: RolloutWorld, candidate: str) -> float:
    """The candidate's share of live traffic now: its part of the ready pods the Service
    ``wine`` selects (pods over a scale-down are ready until the test says they are gone)."""
    selector = world.objects[("Service", "wine")]["spec"]["selector"].items()
    ready = {
        d["metadata"]["labels"]["vigil.dev/revision"]: d["status"].get("readyReplicas", 0)
        for (kind, _), d in world.objects.items()
        if kind == "Deployment" and selector <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    return round(100.0 * ready.get(candidate, 0) / max(1, sum(ready.values())), 1)


def shadow_step_passing(steps: list[dict[str, Any]]) -> tuple[RolloutWorld, str, str, Plan]:
    """Four stable pods, a candidate on ``steps``; the plan of the first step change (not
    carried out), the candidate still at the first step's pods, all ready."""
    rollout = {**ROLLOUT, "replacement": {"steps": steps}}
    world = RolloutWorld()
    world.spec = spec("1", 4, rollout=rollout)
    world.reconcile()
    world.pods_ready(stable := world.status["stable"]["revision"])
    world.reconcile()
    world.set_spec(spec("2", 4, rollout=rollout))
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    return world, stable, candidate, plan_that_posts(world, candidate, "StepAdvanced")


SHADOW_THEN_CANARY = [
    {"shadow": {"duration": "10s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 20, "duration": "1h"}},
]


def test_from_shadow_to_canary_the_candidate_never_gets_more_than_its_share() -> None:
    # Its four shadow pods cut to the canary's one: the Service spanned both revisions
    # before the scale-down, 4 of 8 ready pods (50 %) until three were gone, not 20 %.
    world, _stable, candidate, plan = shadow_step_passing(SHADOW_THEN_CANARY)
    assert world.replicas(candidate) == 4
    for action in plan.actions:  # each write, as the operator makes them
        world.carry_out([action])
        assert live_share(world, candidate) <= 20, action
    world.reconcile(advance=0)  # decided again, with its status: the share it really gets
    assert world.replicas(candidate) == 1
    assert live_share(world, candidate) == world.status["candidate"]["weight"] == 0
    world.pods_ready(candidate)  # three pods gone: the Service spans both, 1 of 5
    world.reconcile()
    assert world.objects[("Service", "wine")]["spec"]["selector"] == {
        "vigil.dev/model-deployment": "wine"
    }
    assert live_share(world, candidate) == world.status["candidate"]["weight"] == 20


def test_an_operator_stopped_at_the_step_change_does_not_widen_the_service_early() -> None:
    # Stopped between two writes of the step change's plan (no status): the next cycle
    # sees the candidate's extra pods still ready and keeps the Service on the stable.
    built = shadow_step_passing(SHADOW_THEN_CANARY)
    for done in range(len(built[3].actions) + 1):
        world, _stable, candidate, plan = copy.deepcopy(built)
        world.carry_out(plan.actions[:done])
        for _ in range(2):
            world.reconcile()
            assert live_share(world, candidate) == world.status["candidate"]["weight"] == 0
        world.pods_ready(candidate)
        world.reconcile()
        assert live_share(world, candidate) == world.status["candidate"]["weight"] == 20


def test_a_canary_stepping_down_reports_the_share_of_the_pods_that_stay() -> None:
    # 50 % (2 pods beside 4) then 20 % (1 pod): the Service already spans both and keeps
    # doing so; status says the share of the pod that stays, 20 %, not 2 of 6.
    steps = [{"canary": {"weight": 50, "duration": "10s"}}, SHADOW_THEN_CANARY[1]]
    world, _stable, candidate, plan = shadow_step_passing(steps)
    assert live_share(world, candidate) == 33.3
    world.carry_out(plan.actions)
    world.reconcile(advance=0)
    assert world.replicas(candidate) == 1
    assert world.objects[("Service", "wine")]["spec"]["selector"] == {
        "vigil.dev/model-deployment": "wine"
    }
    assert world.status["candidate"]["weight"] == 20


def test_over_a_hundred_replicas_one_ready_canary_pod_keeps_traffic() -> None:
    # 1 % of 150 replicas is two candidate pods; one of them lost, 100 x 1 // 150 gave the
    # one still ready 0 %: no live traffic, the step held on too little data.
    rollout = {**ROLLOUT, "replacement": {"steps": [{"canary": {"weight": 1, "duration": "1m"}}]}}
    world, stable = serving(RolloutWorld(), rollout)
    world.set_spec(spec("2", 150, rollout=rollout))
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    world.inputs = RolloutInputs(figures=GOOD)
    for ready in (2, 2, 1, 1):
        world.pods_ready(candidate, ready=ready)
        world.pods_ready(stable)
        world.reconcile()
    assert world.status["candidate"]["weight"] > 0
    assert world.objects[("Service", "wine")]["spec"]["selector"] == {
        "vigil.dev/model-deployment": "wine"
    }


def test_bad_agreement_rolls_back_and_is_not_retried() -> None:
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
    # Out of every traffic at once; removed by the next cycle, once status records the
    # outcome (a kill in between must not find it gone with no outcome recorded).
    assert world.deployment(candidate) is not None
    assert world.plans[-1].recheck_after is not None
    assert world.shadow(stable) is None
    assert world.objects[("Service", "wine")]["spec"]["selector"]["vigil.dev/revision"] == stable
    world.reconcile()
    assert world.deployment(candidate) is None
    assert world.replicas(stable) == 2
    assert world.shadow(stable) is None
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack")
    assert "agreement 0.400 [" in ready["message"] and "] vs 0.950 in 2 checks" in ready["message"]
    # kstatus (Flux): a refused revision that is not retried is Stalled, not Current
    stalled = world.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RolledBack")
    assert world.status["history"][0]["outcome"] == "RolledBack"
    assert any(e.reason == "RolledBack" and e.warning for p in world.plans for e in p.events)
    # not retried on later cycles
    for _ in range(5):
        world.reconcile()
    assert world.deployment(candidate) is None
    # a person retries
    world.request = Request("retry", "id-1")
    world.reconcile()
    assert world.deployment(candidate) is not None
    last = world.status["lastRequest"]
    assert (last["id"], last["verb"], last["answer"]) == ("id-1", "retry", "Taken")
    assert "outcome" not in world.status["candidate"]


def test_golden_set_failure_stops_at_validate() -> None:
    steps = {
        "replacement": {
            "steps": [
                {
                    "validate": {
                        "goldenSet": {"configMapKeyRef": {"name": "g", "key": "golden.json"}},
                        "minAgreement": 0.9,
                    }
                },
                {"shadow": {"duration": "10s"}},
            ]
        }
    }
    world, stable, candidate = started(rollout={**ROLLOUT, **steps})
    world.pods_ready(candidate)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    plan = world.reconcile()
    assert plan.run_golden_set is not None and plan.run_golden_set.name == "g"
    assert world.replicas(candidate) == 1
    assert world.shadow(stable) is None
    world.inputs = RolloutInputs(
        figures=GOOD, shadow_target="http://x", golden=GoldenResult(total=100, agreed=40)
    )
    world.reconcile()
    assert world.status["phase"] == "RolledBack"
    assert "golden set agreement 0.400" in world.condition("Ready")["message"]
    assert world.shadow(stable) is None


def test_a_second_validate_step_replays_its_own_golden_set() -> None:
    def validate(name: str) -> dict[str, Any]:
        ref = {"configMapKeyRef": {"name": name, "key": "golden.json"}}
        return {"validate": {"goldenSet": ref, "minAgreement": 0.9}}

    steps = {"replacement": {"steps": [validate("g1"), validate("g2")]}}
    world, _, candidate = started(rollout={**ROLLOUT, **steps})
    world.pods_ready(candidate)
    world.inputs = RolloutInputs(
        figures=GOOD, shadow_target="http://x", golden=GoldenResult(total=100, agreed=100)
    )
    world.reconcile()
    assert world.status["candidate"]["step"] == 1
    assert world.status["candidate"]["golden"] == {
        "total": 100, "agreed": 100, "agreement": 1.0, "step": 0
    }  # fmt: skip
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")  # the replay's cycle only
    plan = world.reconcile()
    assert plan.run_golden_set is not None and plan.run_golden_set.name == "g2"
    assert world.status["candidate"]["step"] == 1


def _validating_with_replays_that_give_no_result(why: str) -> RolloutWorld:
    """A validate step whose replays give no result, for ``why``, after its first cycle."""
    ref = {"configMapKeyRef": {"name": "g", "key": "golden.json"}}
    steps = {"replacement": {"steps": [{"validate": {"goldenSet": ref}}]}}
    world, _, candidate = started(rollout={**ROLLOUT, **steps})
    world.pods_ready(candidate)
    world.inputs = RolloutInputs(figures=GOOD, golden_pending=why)
    world.reconcile()
    return world


def test_a_replay_without_a_result_says_why_in_status() -> None:
    # It said only "replaying the golden set against the candidate" (the cause in the
    # operator's log): a missing ConfigMap and a slow pod looked alike.
    why = "golden set not read: ConfigMap g (golden set) does not exist"
    world = _validating_with_replays_that_give_no_result(why)
    candidate_status = world.status["candidate"]
    assert candidate_status["reason"] == "ValidationPending"
    assert candidate_status["message"].endswith(f"the last replay gave no result: {why}")


def test_a_replay_without_a_result_past_the_deadline_fails_saying_why() -> None:
    # A model answering HTTP 500 to every batch gives no result: held, then failed with the
    # deadline's words alone ("replaying the golden set against the candidate for 600s").
    why = 'HTTP 500: {"error": "ValueError: X has 12 features"}'
    world = _validating_with_replays_that_give_no_result(why)
    world.reconcile(advance=61)  # past progressDeadline (60s)
    candidate_status = world.status["candidate"]
    assert candidate_status["reason"] == "ProgressDeadlineExceeded"
    assert f"the last replay gave no result: {why}; revision" in candidate_status["message"]
    (failed,) = [e for e in world.plans[-1].events if e.reason == "RolloutFailed"]
    assert f"the last replay gave no result: {why}" in failed.message


def test_missing_metrics_hold_then_fail_at_deadline() -> None:
    world, stable, candidate = started()
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["reason"] == "MetricsUnavailable"
    run_until(world, candidate, lambda: world.status["phase"] == "Failed", limit=90)
    world.reconcile()  # the cycle after the recorded outcome removes the candidate
    assert world.deployment(candidate) is None
    assert world.replicas(stable) == 2
    assert world.condition("Ready")["reason"] == "ProgressDeadlineExceeded"


def test_status_keeps_the_last_evaluated_gates_through_holds_and_an_abort() -> None:
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: bool(world.status["candidate"].get("gates")))
    evaluated = world.status["candidate"]["gates"]
    assert {g["name"] for g in evaluated} >= {"errorRate", "latencyP95", "agreement"}
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    world.reconcile()
    assert world.status["candidate"]["reason"] == "MetricsUnavailable"
    assert world.status["candidate"]["gates"] == evaluated
    world.request = Request("abort", "a1")
    world.reconcile()
    assert world.status["phase"] == "RolledBack"
    assert world.status["candidate"]["gates"] == evaluated


@pytest.mark.parametrize("verb", ["promote", "abort", "pause", "resume"])
def test_a_request_at_an_ended_attempt_is_refused_when_it_starts_again(verb: str) -> None:
    # Typed at a rolled-back attempt (the plugin names its revision); a spec edit restarts
    # it before the operator reads the request: a promote would skip every gate of it.
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
    world.reconcile()
    world.set_spec({**world.spec, "paused": False})
    world.request = Request(verb, "r1", candidate)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    plan = world.reconcile()
    assert "RolloutRetried" in [e.reason for e in plan.events]
    answer = world.status["lastRequest"]
    assert answer["answer"] == "Refused"
    assert f"the rollout of revision {candidate} started again" in answer["message"]
    assert world.status["candidate"]["step"] == 0
    assert "promoting" not in world.status["candidate"]
    assert world.condition("Ready")["reason"] != "RolloutPaused"


@pytest.mark.slow
def test_a_pause_does_not_count_against_the_deadline() -> None:
    # Held 50 of 60 s, paused 5 minutes, resumed: status keeps no hold across the pause,
    # and the rollout fails only a full progressDeadline after the resume.
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    world.pods_ready(candidate)
    for _ in range(50):
        world.reconcile()
    assert world.status["candidate"]["reason"] == "MetricsUnavailable"
    world.request = Request("pause", "p1")
    world.reconcile()
    assert "heldSince" not in world.status["candidate"]
    world.reconcile(advance=300)
    world.request = Request("resume", "p2")
    world.reconcile()
    resumed = world.now
    run_until(world, candidate, lambda: world.status["phase"] == "Failed", limit=90)
    assert (world.now - resumed).total_seconds() >= 60
    assert world.condition("Ready")["reason"] == "ProgressDeadlineExceeded"


def test_a_request_for_another_rollout_is_refused_and_its_own_taken() -> None:
    """A promote placed while revision X rolled out (the operator down, Git synced Y)."""
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    world.pods_ready(candidate)
    world.request = Request("promote", "p1", "0ther00")
    world.reconcile()
    answer = world.status["lastRequest"]
    assert (answer["answer"], answer["message"]) == (
        "Refused",
        f"it was for revision 0ther00; revision {candidate} is rolling out now",
    )
    assert world.status["candidate"]["revision"] == candidate
    assert world.status["phase"] != "Promoting" and "promoting" not in world.status["candidate"]
    world.request = Request("pause", "p2", candidate)
    world.reconcile()
    assert world.status["lastRequest"]["answer"] == "Taken"
    assert world.condition("Ready")["reason"] == "RolloutPaused"


def read_by_the_next_rollout(verb: str, named: bool) -> tuple[RolloutWorld, str, str]:
    """A request placed at steady state (naming the serving revision, or none), read once
    version 2's rollout has started: (world, stable, candidate)."""
    world, stable = core_world.serving(ROLLOUT, RolloutWorld())
    world.request = Request(verb, "p1", stable if named else None)
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.reconcile()
    return world, stable, world.status["candidate"]["revision"]


@pytest.mark.parametrize("verb", ["promote", "abort", "pause", "resume"])
def test_a_request_naming_no_revision_is_refused_by_a_rollout_no_status_has_shown(
    verb: str,
) -> None:
    """Placed with nothing rolling out (a hand-written annotation; the operator down, Git
    synced version 2): a promote promoted the new revision unjudged."""
    world, _stable, candidate = read_by_the_next_rollout(verb, named=False)
    answer = world.status["lastRequest"]
    assert (answer["answer"], answer["message"]) == (
        "Refused",
        f"placed before revision {candidate}'s rollout started: look at it (kubectl vigil "
        "status) and ask again",
    )
    assert world.status["phase"] == "Progressing" and not world.status["candidate"].get("paused")
    assert world.condition("Ready")["reason"] not in ("Promoting", "Aborted", "RolloutPaused")
    # Once status shows the rollout, a request naming no revision is its own (as before).
    world.pods_ready(candidate)
    world.request = Request("pause", "p2")
    world.reconcile()
    assert world.status["lastRequest"]["answer"] == "Taken"


def test_replicas_raised_mid_canary_never_give_the_candidate_more_than_its_weight() -> None:
    """Its new pods ready before the stable's: 5 of 7 ready pods (71 %) at a 50 % step."""
    steps = {"replacement": {"steps": [{"canary": {"weight": 50, "duration": "60s"}}]}}
    rollout = {**steps, "analysis": {"interval": "2s", "minRequests": 20}}
    world, stable, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=GOOD)
    run_until(world, candidate, lambda: world.status["candidate"].get("weight") == 33)
    world.set_spec(spec("2", 10, rollout=rollout))
    shares = []
    for ready in (2, 2, 4, 6, 10, 10, 10):
        world.pods_ready(stable, ready)
        world.pods_ready(candidate)
        world.reconcile(advance=1)
        shares.append(world.status["candidate"]["weight"])
    assert max(shares) <= 50, shares
    assert (world.replicas(stable), world.replicas(candidate), shares[-1]) == (10, 5, 33), shares


def test_a_rolled_back_revision_rolled_out_again_without_steps_starts_its_own_clock() -> None:
    # Its blue/green attempt showed the rolled-back attempt's stepStartedAt beside its own
    # startedAt.
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("outcome") is not None)
    world.reconcile(advance=30)
    without_steps = {k: v for k, v in ROLLOUT.items() if k != "replacement"}
    world.set_spec(spec("2", 2, rollout=without_steps))
    world.reconcile()
    attempt = world.status["candidate"]
    assert attempt["revision"] == candidate and not attempt.get("outcome")
    assert attempt["stepStartedAt"] == attempt["startedAt"] == format_time(world.now)


def test_a_weighted_route_is_not_held_to_the_stables_ready_pods() -> None:
    # The replica-ratio guard capped the candidate under an HTTPRoute too: with the stable
    # short (a lost node), a 50 % step ran at 25 % and was passed on it.
    world, stable, candidate = routed_rollout()
    world.set_spec(spec("2", 4, rollout=RoutedWorld.ROLLOUT))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    for _ in range(60):
        world.pods_ready(stable, 2 if world.replicas(stable) == 4 else None)
        if world.deployment(candidate) is not None:
            world.pods_ready(candidate)
        world.reconcile(advance=1)
        if world.status["candidate"].get("stepName") == "canary 50%":
            break
    world.pods_ready(candidate)
    world.reconcile(advance=1)
    assert world.replicas(candidate) == 2  # ceil(50 % x 4), whatever the stable's ready pods
    assert world.status["candidate"]["weight"] == 50


def test_steps_removed_after_a_long_canary_time_the_blue_green_wait_from_now() -> None:
    # Timed from the stepped attempt's start, the first blue/green cycle failed it at once
    # (RolloutFailed, Stalled), then switched anyway once its pods were ready.
    rollout = {"replacement": {"steps": [{"canary": {"weight": 25, "duration": "30m"}}]}}
    world, stable, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=GOOD)
    run_until(world, candidate, lambda: world.status["candidate"].get("weight", 0) > 0)
    for _ in range(40):  # 20 minutes into the canary
        world.pods_ready(stable)
        world.pods_ready(candidate)
        world.reconcile(advance=30)
    completed = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    world.deployment(candidate)["status"]["conditions"] = [completed]
    world.set_spec(spec("2", 2, rollout={}))
    plan = world.reconcile(advance=1)
    assert world.condition("Ready")["reason"] == "RolloutInProgress"
    assert "RolloutFailed" not in [e.reason for e in plan.events]
    world.pods_ready(candidate)
    world.reconcile(advance=5)
    assert world.service_revision() == candidate


def test_a_request_naming_the_serving_revision_is_refused_by_the_next_rollout() -> None:
    """kubectl vigil names the serving revision when status shows no candidate."""
    world, stable, candidate = read_by_the_next_rollout("promote", named=True)
    answer = world.status["lastRequest"]
    assert (answer["answer"], answer["message"]) == (
        "Refused",
        f"placed while revision {stable} served with no rollout in view; look at revision "
        f"{candidate}'s (kubectl vigil status) and ask again",
    )
    assert world.condition("Ready")["reason"] != "Promoting"


@pytest.mark.parametrize("step", ["shadow 100%", "canary 20%"])
def test_a_promote_while_spec_paused_holds_the_rollout_is_refused_and_an_abort_taken(
    step: str,
) -> None:
    """spec.paused is the spec's hold: a promote switched at a shadow step and, at a canary,
    scaled an unjudged candidate to half the live traffic for as long as the pause lasted."""
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("stepName") == step)
    world.set_spec(spec("2", 2, rollout=ROLLOUT, paused=True))
    world.pods_ready(candidate)
    world.reconcile()
    held = world.replicas(candidate)
    world.request = Request("promote", "p1", candidate)
    for _ in range(3):
        world.pods_ready(candidate)
        world.reconcile(advance=10)
    answer = world.status["lastRequest"]
    assert (answer["answer"], answer["message"]) == (
        "Refused",
        "spec.paused holds the rollout: set it to false to promote",
    )
    assert world.status["stable"]["revision"] == stable and world.replicas(candidate) == held
    assert world.condition("Ready")["reason"] == "RolloutPaused"
    world.request = Request("abort", "p2", candidate)
    world.reconcile()
    assert world.status["lastRequest"]["answer"] == "Taken"
    assert world.status["phase"] == "RolledBack"


def promoting_short_of_capacity() -> tuple[RolloutWorld, str, str]:
    """A promotion decided, the candidate held at 1 of its 2 replicas (a quota, say)."""
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("stepName") == "canary 50%")
    run_until(world, candidate, lambda: world.replicas(candidate) == 2)
    world.pods_ready(candidate, ready=1)
    world.reconcile()
    assert world.status["candidate"]["reason"] == "Promoting"
    return world, stable, candidate


@pytest.mark.slow
def test_a_promotion_short_of_capacity_fails_at_the_deadline() -> None:
    world, stable, candidate = promoting_short_of_capacity()
    for _ in range(58):
        world.reconcile()
    assert world.status["candidate"]["reason"] == "Promoting"
    assert world.status["candidate"]["promoting"] is True
    for _ in range(5):
        world.reconcile()
    assert world.status["phase"] == "Failed"
    ready = world.condition("Ready")
    assert ready["reason"] == "ProgressDeadlineExceeded"
    assert "waiting for 2 ready replica(s) of the candidate for 60s" in ready["message"]
    world.reconcile()  # the cycle after the recorded outcome removes the candidate
    assert world.deployment(candidate) is None
    assert world.replicas(stable) == 2 and world.service_revision() == stable
    assert world.status["history"][0]["outcome"] == "Failed"


def test_abort_during_a_promotion_rolls_back() -> None:
    world, stable, candidate = promoting_short_of_capacity()
    world.request = Request("abort", "a1")
    world.reconcile()
    assert world.status["phase"] == "RolledBack"
    assert "rollout aborted by a person" in world.condition("Ready")["message"]
    world.reconcile()
    assert world.deployment(candidate) is None
    assert world.replicas(stable) == 2 and world.service_revision() == stable


def test_tweak_runs_the_tweak_steps() -> None:
    world, _stable, candidate = started(version="1", config={"MLSERVER_PARALLEL_WORKERS": "2"})
    assert world.status["candidate"]["change"] == "tweak"
    world.inputs = RolloutInputs(figures=GOOD)
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["stepName"] == "canary 50%"
    run_until(world, candidate, lambda: world.status["stable"]["revision"] == candidate)
    assert world.status["history"][0]["change"] == "tweak"


def test_spec_back_to_stable_aborts_and_new_spec_supersedes() -> None:
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    world.set_spec(spec("3", 2, rollout=ROLLOUT))
    world.reconcile()
    newer = world.status["candidate"]["revision"]
    assert newer != candidate and world.deployment(candidate) is None
    superseded = world.status["history"][0]
    assert (superseded["revision"], superseded["outcome"], superseded["change"]) == (
        candidate,
        "Superseded",
        "replacement",
    )
    assert ("Service", f"wine-{candidate}") not in world.objects
    world.set_spec(spec("1", 2, rollout=ROLLOUT))
    world.reconcile()
    assert world.deployment(newer) is None
    assert world.shadow(stable) is None
    assert "candidate" not in world.status


def test_person_pause_resume_promote_abort() -> None:
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.pods_ready(candidate)
    world.request = Request("pause", "p1")
    plan = world.reconcile()
    assert plan.clear_request == Request("pause", "p1")
    assert world.status["candidate"]["reason"] == "Paused"
    assert world.condition("Ready")["reason"] == "RolloutPaused"
    for _ in range(15):
        world.reconcile()
    assert world.status["candidate"]["stepName"] == "shadow 100%"
    world.request = Request("resume", "p2")
    world.reconcile()
    assert world.status["candidate"]["reason"] != "Paused"
    world.request = Request("promote", "p3")
    run_until(world, candidate, lambda: world.status["stable"]["revision"] == candidate, 5)
    world.set_spec(spec("3", 2, rollout=ROLLOUT))
    world.reconcile()
    newer = world.status["candidate"]["revision"]
    world.request = Request("abort", "p4")
    world.reconcile()
    assert world.status["phase"] == "RolledBack"
    world.reconcile()
    assert world.deployment(newer) is None


def test_same_request_id_is_never_acted_on_twice() -> None:
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.pods_ready(candidate)
    world.request = Request("pause", "p1")
    world.reconcile()
    world.request = Request("resume", "p2")
    world.reconcile()
    # the pause annotation seen again (a restart before it was cleared): ignored
    world.request = Request("pause", "p2")
    plan = world.reconcile()
    assert plan.clear_request is not None
    assert world.status["candidate"]["reason"] != "Paused"


def test_candidate_figures_from_two_windows() -> None:
    stable = RevisionWindow(
        requests_by_outcome={"success": 100},
        prediction_classes={"0": 40, "1": 40, "2": 20},
        shadow_predictions={"cand": 80},
        shadow_agreements={"cand": 60},
    )
    cand = RevisionWindow(
        requests_by_outcome={"success": 78, "error": 2},
        latency_buckets=((0.01, 50.0), (0.1, 80.0), (float("inf"), 80.0)),
        prediction_classes={"0": 10, "1": 10, "2": 60},
    )
    figures = candidate_figures("cand", cand, stable)
    assert figures.requests == 80
    assert figures.live.error_rate == 0.025
    assert figures.compared == 80 and figures.agreement == 0.75
    assert figures.prediction_shift is not None and figures.prediction_shift.estimate > 0.2
    assert figures.live.latency_p95 is not None and 0.01 < figures.live.latency_p95 <= 0.1
    assert figures.stable.requests == 100
    same = candidate_figures("cand", stable, stable)
    assert same.prediction_shift is not None and same.prediction_shift.raw == 0.0
    alone = candidate_figures("cand", cand, None)
    assert alone.agreement is None and alone.compared == 0


def test_the_candidate_s_copies_are_apart_from_its_live_requests() -> None:
    cand = RevisionWindow(
        requests_by_outcome={"success": 300, "model_error": 20},
        copies_by_outcome={"success": 280, "model_error": 20},
        latency_buckets=((0.1, 320.0), (float("inf"), 320.0)),
        copy_latency_buckets=((0.1, 300.0), (float("inf"), 300.0)),
    )
    figures = candidate_figures("cand", cand, RevisionWindow())
    assert (figures.live.requests, figures.live.failures) == (20, 0)
    assert (figures.copies.requests, figures.copies.failures) == (300, 20)
    assert figures.requests == 20


class TestEveryRequestIsAnswered:
    """A person's request is taken or refused with the reason: never left, never dropped."""

    def ask(self, world: RolloutWorld, verb: str, request_id: str = "r1") -> dict[str, Any]:
        world.request = Request(verb, request_id)
        plan = world.reconcile()
        assert plan.clear_request == Request(verb, request_id), "the annotation is cleared"
        last = world.status["lastRequest"]
        assert (last["id"], last["verb"]) == (request_id, verb)
        refused = [e for e in plan.events if e.reason == "RequestRefused"]
        if last["answer"] == "Refused":
            assert [e.message for e in refused] == [f"request {verb!r} refused: {last['message']}"]
            assert refused[0].warning
        else:
            assert last["answer"] == "Taken" and not refused
        return dict(last)

    @pytest.mark.parametrize(
        ("problem", "reason"),
        [
            ("invalid", "InvalidSpec"),
            ("conflict", "ServiceConflict"),
            ("reference", "ReferenceNotFound"),
        ],
    )
    @pytest.mark.parametrize("verb", ["promote", "abort", "pause", "resume", "retry"])
    def test_refused_while_the_spec_cannot_be_acted_on(
        self, problem: str, reason: str, verb: str
    ) -> None:
        world, _stable, candidate = started()
        world.pods_ready(candidate)
        if problem == "invalid":
            world.set_spec(spec("3", 2, rollout=ROLLOUT, server={"image": ""}))
        elif problem == "conflict":
            world.foreign_service = True
        else:
            world.set_spec(
                spec(
                    "3",
                    2,
                    rollout=ROLLOUT,
                    monitoring={"reference": {"configMapKeyRef": {"name": "gone", "key": "p"}}},
                )
            )
            world.reference_found = False
        world.reconcile()
        assert world.condition("Ready")["reason"] == reason
        last = self.ask(world, verb)
        assert last["answer"] == "Refused"
        assert last["message"].startswith(f"the operator cannot act on this spec ({reason}): ")

    @pytest.mark.parametrize("verb", ["promote", "abort", "pause", "resume", "retry"])
    def test_refused_without_a_rollout(self, verb: str) -> None:
        world, stable = serving()
        last = self.ask(world, verb)
        assert last["message"] == (
            f"no rollout with steps under way (revision {stable} serves with 2/2 ready replica(s))"
        )

    def test_refused_during_a_change_without_steps(self) -> None:
        # A tweak with no steps is a blue/green switch: nothing to promote or abort.
        world, _stable, _candidate = started(version="1", config={"KNOB": "1"})
        rollout = {**ROLLOUT, "tweak": {"steps": []}}
        world.set_spec(spec("1", 2, rollout=rollout, config={"KNOB": "2"}))
        world.reconcile()
        last = self.ask(world, "abort")
        assert last["answer"] == "Refused"
        assert last["message"].startswith("no rollout with steps under way (revision ")

    def test_after_a_rollback_only_retry_is_taken(self) -> None:
        world, _stable, candidate = started()
        world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
        for verb in ("promote", "abort", "pause", "resume"):
            last = self.ask(world, verb, f"id-{verb}")
            assert last["answer"] == "Refused"
            assert f"revision {candidate} ended RolledBack (AnalysisFailed)" in last["message"]
            assert "kubectl vigil retry" in last["message"]
        assert world.deployment(candidate) is None
        last = self.ask(world, "retry")
        assert last == {**last, "answer": "Taken"}
        assert world.deployment(candidate) is not None

    def test_retry_during_a_rollout_is_refused(self) -> None:
        world, _stable, candidate = started()
        last = self.ask(world, "retry")
        assert (
            last["answer"] == "Refused"
            and f"revision {candidate} is rolling out" in (last["message"])
        )

    def test_a_resume_with_nothing_paused_is_refused(self) -> None:
        world, _stable, candidate = started()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        world.pods_ready(candidate)
        last = self.ask(world, "resume")
        assert last["message"] == "nothing to resume: the rollout is not paused"
        world.set_spec(spec("2", 2, rollout=ROLLOUT, paused=True))
        world.reconcile()
        last = self.ask(world, "resume", "r2")
        assert last["message"] == "spec.paused holds the rollout: set it to false to resume"

    def test_taken_requests_say_what_was_done(self) -> None:
        world, _stable, candidate = started()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        world.pods_ready(candidate)
        last = self.ask(world, "pause")
        assert last["message"] == "Paused: paused by a person at step 1/3 (shadow 100%)"
        assert self.ask(world, "resume", "r2")["answer"] == "Taken"

    def test_abort_and_pause_during_a_promotion_are_taken(self) -> None:
        world, _stable, _candidate = promoting_short_of_capacity()
        last = self.ask(world, "pause")
        assert last["message"].startswith("Paused: ")
        assert world.status["candidate"]["reason"] == "Paused"
        assert world.status["candidate"]["promoting"] is True
        assert self.ask(world, "abort", "r2")["message"] == "Aborted: rollout aborted by a person"
        assert world.status["phase"] == "RolledBack"

    def test_an_unknown_verb_is_refused(self) -> None:
        world, _stable, _candidate = started()
        last = self.ask(world, "explode")
        assert last["message"] == "unknown request; one of promote, abort, pause, resume, retry"

    def test_a_request_answered_before_a_restart_is_only_cleared(self) -> None:
        world, _stable, _candidate = started()
        first = self.ask(world, "promote")
        world.request = Request("promote", "r1")  # the annotation was never cleared
        plan = world.reconcile()
        assert plan.clear_request == Request("promote", "r1")
        assert world.status["lastRequest"] == first
        assert not [e for e in plan.events if e.reason == "RequestRefused"]


def test_a_stables_settings_deleted_mid_rollout_are_made_again_as_they_were() -> None:
    # They were made again only once the rollout ended (the spec renders the candidate):
    # meanwhile a stable pod restarted or rescheduled could not start (its volume missing).
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
    world.pods_ready(candidate)  # its shadow pod over the canary's one gone: the Service spans
    world.reconcile()
    settings = ("ConfigMap", f"wine-{stable}-sidecar")
    before, deployment = world.objects.pop(settings), copy.deepcopy(world.deployment(stable))
    world.pods_ready(candidate)
    plan = world.reconcile()
    assert [(type(a).__name__, a.kind, a.name) for a in plan.actions] == [
        ("Apply", "ConfigMap", f"wine-{stable}-sidecar")
    ]
    # The same bytes and applied hash; the stable's Deployment (its pods) and revision untouched.
    assert world.objects[settings] == before
    assert world.deployment(stable) == deployment
    assert world.status["stable"]["revision"] == stable and plan.events == []
    assert world.status["candidate"]["stepName"] == "canary 20%"
    world.pods_ready(candidate)
    assert world.reconcile().actions == []


def test_a_stables_settings_deleted_in_a_shadow_step_come_back_with_its_copies() -> None:
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=None, metrics_available=False, shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    shadow = world.shadow(stable)
    del world.objects[("ConfigMap", f"wine-{stable}-sidecar")]
    world.pods_ready(candidate)
    world.reconcile()
    assert world.shadow(stable) == shadow and shadow["percent"] == 100
    assert world.status["candidate"]["shadowPercent"] == 100
    assert "no shadow copies are sent" not in world.status["candidate"]["message"]


def test_a_shadow_step_without_the_stables_settings_reports_no_copies_and_why() -> None:
    # The stable's sidecar settings ConfigMap deleted outside the operator mid-step, and its
    # Deployment carries no copy of them (rendered by an operator from before the copy):
    # its settings were rendered from an older spec (not made again): no copies, and status
    # says so rather than a shadow percent not in effect.
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=None, metrics_available=False, shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["shadowPercent"] == 100
    del world.objects[("ConfigMap", f"wine-{stable}-sidecar")]
    world.deployment(stable)["metadata"]["annotations"].pop("vigil.dev/sidecar-settings", None)
    for _ in range(3):
        world.pods_ready(candidate)
        world.reconcile()
        status = world.status["candidate"]
        assert status["stepName"] == "shadow 100%" and "shadowPercent" not in status
        missing = f"no shadow copies are sent: ConfigMap wine-{stable}-sidecar"
        assert status["message"].count(missing) == 1
        assert missing in world.condition("Ready")["message"]


def test_a_probe_that_fails_once_mid_step_holds_the_judging_not_the_traffic() -> None:
    # The operator's probe of the candidate's sidecar (through its revision Service) timed
    # out once, its pods still Ready: the Service went back to the stable alone and the
    # shadow copies stopped for the cycle. Before the first step it still gates the start.
    world, _, candidate = started()
    serving_copies = RolloutInputs(figures=GOOD, shadow_target="http://x")
    unanswered = RolloutInputs(
        metrics_available=False,
        metrics_error="the candidate's sidecar does not answer ready yet",
        candidate_serving=False,
        shadow_target="http://x",
    )
    world.inputs = unanswered
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["reason"] == "CandidateNotReady"
    world.inputs = serving_copies
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
    world.pods_ready(candidate)
    world.reconcile()
    selector = world.objects[("Service", "wine")]["spec"]["selector"]
    weight = world.status["candidate"]["weight"]
    assert weight > 0
    world.inputs = unanswered
    world.pods_ready(candidate)
    world.reconcile()
    status = world.status["candidate"]
    assert (status["reason"], status["weight"]) == ("MetricsUnavailable", weight)
    assert world.objects[("Service", "wine")]["spec"]["selector"] == selector


def test_without_a_shadow_target_status_shows_no_copies() -> None:
    # A cycle of a shadow step with no target (no figures, nowhere to send copies): the
    # stable's sidecars are told to copy nothing, and status said 100 % all the same.
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["shadowPercent"] == 100
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="HTTP 429")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.shadow(stable) is None
    assert "shadowPercent" not in world.status["candidate"]


def test_the_shadow_steps_tolerance_reaches_the_stables_sidecar_settings() -> None:
    rollout = {
        **ROLLOUT,
        "analysis": {**ROLLOUT["analysis"], "tolerance": {"absolute": 3.0, "relative": 0.1}},
    }
    world, stable, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://10.0.0.9:8000")
    world.pods_ready(candidate)
    world.reconcile()
    block = world.shadow(stable)
    assert (block["targetRevision"], block["tolerance"], block["relativeTolerance"]) == (
        candidate,
        3.0,
        0.1,
    )


def test_mean_absolute_difference_of_paired_regression_predictions() -> None:
    stable = RevisionWindow(
        shadow_predictions={"cand": 50, "old": 10},
        shadow_agreements={"cand": 5},
        shadow_difference_sum={"cand": 1250.0, "old": 1.0},
        shadow_differences={"cand": 50, "old": 10},
    )
    figures = candidate_figures("cand", RevisionWindow(), stable)
    assert figures.mean_abs_difference == 25.0 and figures.agreement == 0.1
    assert stable.mean_abs_difference() == 1251.0 / 60
    assert RevisionWindow().mean_abs_difference() is None


class RoutedWorld(RolloutWorld):
    """RolloutWorld with the user's HTTPRoute, rewritten by the plans' Route actions.

    The pure router (vigil.routing.gateway_api) rewrites it, in the plan's
    order; a Service deleted while the route names it, or a route naming a
    Service that does not exist, fails the test on the spot.
    """

    ROLLOUT: ClassVar[dict[str, Any]] = {
        **ROLLOUT,
        "trafficRouting": {"gatewayAPI": {"httpRoute": "wine"}},
    }

    def __init__(self) -> None:
        super().__init__()
        self.http_route: dict[str, Any] = {
            "metadata": {"name": "wine"},
            "spec": {"rules": [{"backendRefs": [{"name": "wine", "port": 80}]}]},
        }
        self.routed = 0

    def backends(self) -> list[tuple[str, int]]:
        rule = self.http_route["spec"]["rules"][0]
        return [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]]

    def carry_out(self, actions: Any) -> None:
        # A gateway may see the route before a Service created in the same plan: it answers
        # 500 for a backend it does not know.
        existed = frozenset(n for kind, n in self.objects if kind == "Service")
        for action in actions:
            if isinstance(action, Route):
                target = RoutingTarget("wine", "ml", action.stable, action.candidate)
                services = frozenset(n for kind, n in self.objects if kind == "Service")
                named = dict(self.backends())
                self.http_route["spec"]["rules"] = desired_rules(
                    self.http_route, target, action.traffic, claimed=services
                )
                moved = [n for n, _ in self.backends() if n not in named]
                missing = [n for n in moved if n not in existed]
                assert not missing, (
                    f"the route moved to Services that did not exist before its plan: {missing}"
                )
                self.routed += 1
            elif isinstance(action, Delete) and action.kind == "Service":
                assert action.name not in dict(self.backends()), (
                    f"Service {action.name} deleted while the route sends {self.backends()}"
                )
            elif isinstance(action, Apply) and action.kind == "Deployment":
                weight = dict(self.backends()).get(action.name, 0)
                assert action.manifest["spec"]["replicas"] > 0 or not weight, (
                    f"Deployment {action.name} scaled to 0 while the route sends {self.backends()}"
                )
            super().carry_out([action])


def routed_rollout(version: str = "2", **extra: Any) -> tuple[RoutedWorld, str, str]:
    world, stable, candidate = started(
        version, RoutedWorld(), **{"rollout": RoutedWorld.ROLLOUT, **extra}
    )
    assert isinstance(world, RoutedWorld)
    return world, stable, candidate


def settle(world: RoutedWorld, candidate: str, done: Any) -> None:
    """Run until ``done``, then a few more cycles (the removals after an outcome)."""
    run_until(world, candidate, done, limit=90)
    for _ in range(3):
        world.reconcile()


HELD = f"the route names the revision Services once {SERVICE_SETTLE_SECONDS:g}s old"
#: Checks every 30 s (rechecks every 10 s): the held route's recheck comes sooner.
CANARY_CHECKED_EVERY_30S = {
    **RoutedWorld.ROLLOUT,
    "analysis": {"interval": "30s", "minRequests": 20, "failureLimit": 2},
    "replacement": {"steps": [{"canary": {"weight": 20, "duration": "5m"}}]},
}


def test_the_route_moves_to_revision_services_only_once_they_are_settled() -> None:
    """The first cycle of a rollout makes them: a gateway that read the route before it knew
    them (its own watch, after the operator's) answered 500 for all the model's traffic."""
    world, stable, candidate = routed_rollout(rollout=CANARY_CHECKED_EVERY_30S)
    assert {f"wine-{stable}", f"wine-{candidate}"} <= set(world.names("Service"))
    plan = world.reconcile(advance=SERVICE_SETTLE_SECONDS / 2)
    assert world.backends() == [("wine", 100)]
    assert world.status["candidate"]["weight"] == 0
    assert HELD in world.status["candidate"]["message"]
    # Back when they are old enough, not at the next 10 s recheck.
    assert plan.recheck_after == SERVICE_SETTLE_SECONDS / 2
    world.reconcile(advance=plan.recheck_after)
    assert world.backends() == [(f"wine-{stable}", 100), (f"wine-{candidate}", 0)]
    assert HELD not in world.status["candidate"]["message"]


def test_a_revision_service_made_again_mid_canary_holds_the_route_and_says_so() -> None:
    """Between two checks the last check's words stand: the held route's words stayed in them
    after the route moved (weight 20), or were missing while it held (weight 0)."""
    world, _stable, candidate = routed_rollout(rollout=CANARY_CHECKED_EVERY_30S)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.backends()[-1][1] == 20)
    del world.objects[("Service", f"wine-{candidate}")]  # deleted by someone
    world.reconcile(advance=1)
    assert world.backends() == [("wine", 100)]
    assert world.status["candidate"]["weight"] == 0 and HELD in world.status["candidate"]["message"]
    run_until(world, candidate, lambda: world.backends()[-1][1] == 20)
    assert world.status["candidate"]["weight"] == 20
    assert HELD not in world.status["candidate"]["message"]


def test_a_bake_scales_the_old_revision_down_only_after_the_route_left_it() -> None:
    world, stable, candidate = routed_rollout(
        rollout={**RoutedWorld.ROLLOUT, "bake": {"duration": "10m"}}
    )
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    settle(world, candidate, lambda: world.status["stable"]["revision"] == candidate)
    assert world.backends() == [("wine", 100)]
    assert world.replicas(stable) == 0 and world.status["bake"]["previous"] == stable


def test_a_route_dropped_from_the_spec_mid_rollout_is_reset_before_its_services_go() -> None:
    world, _stable, candidate = routed_rollout()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
    assert (f"wine-{candidate}", 20) in world.backends() and world.status["httpRoute"] == "wine"
    world.set_spec(spec("2", 2, rollout=ROLLOUT))  # trafficRouting removed
    world.reconcile()
    assert world.backends() == [("wine", 100)] and "httpRoute" not in world.status
    settle(world, candidate, lambda: world.status["stable"]["revision"] == candidate)


def test_a_refused_write_keeps_the_route_that_still_needs_its_reset() -> None:
    # The plan stopped before its Route: status must still name the route to reset.
    from vigil.core.reconcile import refused_write_status

    planned = {"httpRoute": None, "phase": "Progressing"}
    kept = refused_write_status(
        planned,
        {"httpRoute": "wine"},
        "refused",
        generation=2,
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    assert kept["httpRoute"] == "wine"
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    fresh = refused_write_status({"httpRoute": "wine"}, {}, "refused", generation=1, now=now)
    assert fresh["httpRoute"] == "wine"


class TestTheRouteLeavesAServiceBeforeItIsDeleted:
    """A backend Service is deleted only after no route references it (Gateway API)."""

    def finished(self, world: RoutedWorld, gone: str) -> None:
        assert world.backends() == [("wine", 100)]
        assert ("Service", f"wine-{gone}") not in world.objects
        assert world.routed > 0

    def test_promotion(self) -> None:
        world, stable, candidate = routed_rollout()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        seen: set[tuple[tuple[str, int], ...]] = set()

        def promoted() -> bool:
            seen.add(tuple(world.backends()))
            return world.status["stable"]["revision"] == candidate

        settle(world, candidate, promoted)
        assert ((f"wine-{stable}", 80), (f"wine-{candidate}", 20)) in seen
        self.finished(world, stable)
        assert world.service_revision() == candidate

    @pytest.mark.parametrize("end", ["rollback", "abort", "deadline"])
    def test_rollback_abort_and_deadline_failure(self, end: str) -> None:
        world, stable, candidate = routed_rollout()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
        world.pods_ready(candidate)
        world.reconcile()
        assert world.backends() == [(f"wine-{stable}", 80), (f"wine-{candidate}", 20)]
        if end == "rollback":
            failing = seen(requests=100, error_rate=0.5, compared=100, agreement=0.99)
            world.inputs = RolloutInputs(figures=failing, shadow_target="http://x")
        elif end == "abort":
            world.request = Request("abort", "a1")
        else:
            world.inputs = RolloutInputs(metrics_available=False, metrics_error="gone")
        settle(world, candidate, lambda: world.status["phase"] in ("RolledBack", "Failed"))
        self.finished(world, candidate)
        assert world.service_revision() == stable

    def test_a_change_without_steps_after_a_stepped_rollout(self) -> None:
        world, _stable, candidate = routed_rollout()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        settle(world, candidate, lambda: world.status["stable"]["revision"] == candidate)
        without_steps = {**RoutedWorld.ROLLOUT, "tweak": {"steps": []}}
        world.set_spec(spec("2", 2, rollout=without_steps, config={"KNOB": "1"}))
        world.reconcile()
        tweak = world.status["candidate"]["revision"]
        settle(world, tweak, lambda: world.status["stable"]["revision"] == tweak)
        self.finished(world, candidate)

    def test_superseded_then_back_to_the_stable(self) -> None:
        world, _stable, candidate = routed_rollout()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
        world.set_spec(spec("3", 2, rollout=RoutedWorld.ROLLOUT))
        world.reconcile()
        newer = world.status["candidate"]["revision"]
        assert ("Service", f"wine-{candidate}") not in world.objects
        world.set_spec(spec("1", 2, rollout=RoutedWorld.ROLLOUT))
        world.reconcile()
        world.reconcile()
        self.finished(world, newer)

    def test_a_route_that_fails_stops_the_deletions(self) -> None:
        world, _stable, candidate = routed_rollout()
        world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
        plan = decide(world.observe())
        kinds = [type(action).__name__ for action in plan.actions]
        assert kinds.index("Route") < kinds.index("Delete")
        assert all(k != "Delete" for k in kinds[: kinds.index("Route")])


class TestAStepAdvanceWaitsForThePodsThatCarryIt:
    """20 % on one pod, then 80 % wants both: while the second pod starts, the candidate
    keeps the live traffic its ready pod carries (it went to 0 %, then jumped to 80 %)."""

    STEPS: ClassVar[dict[str, Any]] = {
        "steps": [
            {"canary": {"weight": 20, "duration": "10s"}},
            {"canary": {"weight": 80, "duration": "5m"}},
        ]
    }

    def scaled_up(self, world: RolloutWorld, candidate: str, share: Any) -> list[Any]:
        """The candidate's share each cycle while its second pod never becomes ready."""
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["candidate"].get("weight", 0) > 0)
        shares = []
        for _ in range(25):
            world.reconcile()
            shares.append(share())
        assert world.status["candidate"]["stepName"] == "canary 80%"
        assert world.replicas(candidate) == 2 and world.status["phase"] == "Progressing"
        return shares

    def test_under_a_gateway_route_the_weight_stays_within_the_ready_pods(self) -> None:
        world, _stable, candidate = routed_rollout(
            rollout={**RoutedWorld.ROLLOUT, "replacement": self.STEPS}
        )
        shares = self.scaled_up(
            world, candidate, lambda: dict(world.backends())[f"wine-{candidate}"]
        )
        assert min(shares) == 20 and max(shares) == 50 and shares[-1] == 50
        assert world.status["candidate"]["weight"] == 50
        world.pods_ready(candidate)
        world.reconcile()
        assert dict(world.backends())[f"wine-{candidate}"] == 80

    def test_shadow_copies_after_a_validate_step_stay_within_the_ready_pods(self) -> None:
        # validate runs one pod; the shadow step's full load of copies waits for the others.
        ref = {"configMapKeyRef": {"name": "g", "key": "golden.json"}}
        steps = {"steps": [{"validate": {"goldenSet": ref}}, {"shadow": {"duration": "5m"}}]}
        world, stable, candidate = started(rollout={**ROLLOUT, "replacement": steps})
        world.pods_ready(candidate)
        world.inputs = RolloutInputs(
            figures=GOOD, shadow_target="http://x", golden=GoldenResult(total=100, agreed=100)
        )
        world.reconcile()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        percents = []
        for _ in range(5):
            world.reconcile()
            percents.append(world.shadow(stable)["percent"])
        assert world.status["candidate"]["stepName"].startswith("shadow")
        assert world.replicas(candidate) == 2 and percents == [50] * 5
        world.pods_ready(candidate)
        world.reconcile()
        assert world.shadow(stable)["percent"] == 100

    def test_a_candidate_short_of_pods_is_still_checked_and_rolled_back(self) -> None:
        # It keeps what its ready pods carry, so its gates must keep judging it: it held
        # CandidateNotReady with 50 % errors at its capped weight until progressDeadline.
        world, _stable, candidate = routed_rollout(
            rollout={**RoutedWorld.ROLLOUT, "replacement": self.STEPS, "progressDeadline": "30m"}
        )
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["candidate"].get("weight") == 80)
        world.pods_ready(candidate, ready=1)  # one pod lost
        world.inputs = RolloutInputs(
            figures=seen(requests=200, error_rate=0.5, latency_p95=0.01), shadow_target="http://x"
        )
        world.reconcile()
        assert dict(world.backends())[f"wine-{candidate}"] == 50
        for _ in range(10):
            world.reconcile(advance=2.0)
        assert world.status["phase"] == "RolledBack"
        assert world.status["candidate"]["reason"] == "AnalysisFailed"

    def test_a_decided_promotion_keeps_the_share_while_the_candidate_scales_up(self) -> None:
        # Promoted at canary 50 % on one pod of two: the route went 50 -> 0 -> 100.
        world, _stable, candidate = routed_rollout()
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        run_until(world, candidate, lambda: world.status["candidate"].get("weight") == 50)
        shares = []
        for _ in range(30):
            world.reconcile()
            shares.append(dict(world.backends()).get(f"wine-{candidate}"))
        assert world.status["candidate"]["reason"] == "Promoting"
        assert world.replicas(candidate) == 2 and set(shares) == {50}
        world.pods_ready(candidate)
        world.reconcile()
        assert world.backends() == [("wine", 100)] and world.service_revision() == candidate

    def test_under_replica_ratio_the_service_keeps_selecting_the_candidate(self) -> None:
        world, _stable, candidate = started(rollout={**ROLLOUT, "replacement": self.STEPS})

        def selected() -> str | None:
            return world.objects[("Service", "wine")]["spec"]["selector"].get("vigil.dev/revision")

        assert set(self.scaled_up(world, candidate, selected)) == {None}

    def test_under_replica_ratio_status_shows_the_share_of_the_ready_pods(self) -> None:
        # 80 % asks for both candidate pods next to two stable ones; with one of them ready
        # the Service spreads over 2 stable + 1 candidate pods: 33 %, not the 50 % of four.
        world, _stable, candidate = started(rollout={**ROLLOUT, "replacement": self.STEPS})
        weights = self.scaled_up(world, candidate, lambda: world.status["candidate"]["weight"])
        assert weights[-1] == 33
        world.pods_ready(candidate)
        world.reconcile()
        assert world.status["candidate"]["weight"] == 50


def test_a_route_not_applied_shows_no_live_share() -> None:
    # The HTTPRoute could not be written (missing, no Gateway API): the candidate gets no
    # live traffic, and status said it had its step's share.
    world, _stable, candidate = routed_rollout()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"].get("weight", 0) > 0)
    error = "HTTPRoute ml/wine does not exist"
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x", routing_error=error)
    world.reconcile()
    assert world.status["candidate"]["weight"] == 0
    assert f"routing not applied: {error}" in world.status["candidate"]["message"]
    assert f"routing not applied: {error}" in world.condition("Progressing")["message"]


def test_a_note_on_the_cycle_is_said_once_between_checks_and_goes_with_its_cause() -> None:
    """Between checks the last check's words stand: "routing not applied" was appended to
    them again at every cycle (1, 2, 3 ... times, a status write each), and stayed after
    the route was written."""
    world, _stable, candidate = routed_rollout(rollout=CANARY_CHECKED_EVERY_30S)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.backends()[-1][1] == 20)
    failing = RolloutInputs(figures=GOOD, shadow_target="http://x", routing_error="boom")
    world.inputs = failing
    for _ in range(4):
        world.reconcile(advance=2)
        assert world.status["candidate"]["message"].count("routing not applied: boom") == 1
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.reconcile(advance=2)
    assert "routing not applied" not in world.status["candidate"]["message"]
    assert world.status["candidate"]["weight"] == 20


def test_a_change_without_steps_ends_the_stables_shadow_copies_to_a_superseded_one() -> None:
    # The stable kept copying requests to the deleted candidate for as long as the
    # blue/green candidate ran.
    world, stable, candidate = started(rollout={**ROLLOUT, "tweak": {"steps": []}})
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.shadow(stable) is not None
    server = {"image": "seldonio/mlserver:1.7.1-sklearn", "env": [{"name": "X", "value": "1"}]}
    world.set_spec(spec("1", 2, rollout={**ROLLOUT, "tweak": {"steps": []}}, server=server))
    world.reconcile()
    assert world.deployment(candidate) is None and world.shadow(stable) is None


def test_between_checks_status_keeps_the_words_of_the_last_check() -> None:
    # Checks every 10 s, cycles every second: status changes at each check, not each cycle,
    # and Progressing keeps the check's reason (no StepInProgress/Analyzing flapping).
    rollout = {
        "replacement": {"steps": [{"canary": {"weight": 20, "duration": "120s"}}]},
        "analysis": {"interval": "10s", "minRequests": 20},
    }
    world, _stable, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=GOOD)
    run_until(world, candidate, lambda: world.status["candidate"]["reason"] == "StepInProgress")
    writes, reasons = world.status_writes, set()
    for _ in range(30):
        world.reconcile()
        reasons.add((world.status["candidate"]["reason"], world.condition("Progressing")["reason"]))
    assert reasons == {("StepInProgress", "StepInProgress")}
    assert world.status_writes - writes == 3
    assert world.status["candidate"]["message"].endswith("s left")


def test_a_timed_pause_says_when_it_ends_and_writes_status_once() -> None:
    rollout = {
        "replacement": {"steps": [{"pause": {"duration": "60s"}}, {"canary": {"weight": 20}}]},
        "analysis": {"interval": "10s", "minRequests": 20},
    }
    world, _stable, candidate = started(rollout=rollout)
    world.inputs = RolloutInputs(figures=GOOD)
    run_until(world, candidate, lambda: world.status["candidate"]["reason"] == "Pausing")
    writes, message = world.status_writes, world.status["candidate"]["message"]
    for _ in range(30):
        world.reconcile()
    assert world.status_writes == writes and world.status["candidate"]["message"] == message
    started_at = world.status["candidate"]["stepStartedAt"]
    assert message.startswith("step 1/2 (pause (timed)): pause until 20"), message
    assert started_at < message.rpartition(" ")[2]


@pytest.mark.parametrize(
    ("section", "value"),
    [("monitoring", {"window": "0s"}), ("rollout", {**ROLLOUT, "analysis": {"interval": "fast"}})],
)
def test_an_unreadable_section_mid_rollout_blocks_it_and_never_switches(
    section: str, value: dict[str, Any]
) -> None:
    # An older schema or a non-validating client let it through: the candidate must not
    # take the Service unjudged; the rollout stands where it was until the spec is fixed.
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "shadow 100%")
    step = world.status["candidate"]["step"]
    world.set_spec(spec("2", 2, **{"rollout": ROLLOUT, section: value}))
    for _ in range(3):
        world.pods_ready(candidate)
        world.reconcile()
    assert world.service_revision() == stable and world.status["stable"]["revision"] == stable
    ready = world.condition("Ready")
    assert ready["reason"] == "InvalidSpec" and f"spec.{section}" in ready["message"]
    assert world.status["candidate"]["revision"] == candidate
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.reconcile()
    assert world.status["candidate"]["step"] == step  # resumed, not restarted


def test_an_invalid_spec_mid_rollout_keeps_the_rollouts_state() -> None:
    world, _stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 50%")
    kept = world.status["candidate"]
    bad = spec("2", 2, rollout=ROLLOUT)
    bad["replicas"] = 0
    world.set_spec(bad)
    world.reconcile()
    assert world.condition("Ready")["reason"] == "InvalidSpec"
    assert world.status["candidate"]["step"] == kept["step"]
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.reconcile()
    assert world.status["candidate"]["stepName"] == "canary 50%"


def test_spec_replicas_edited_mid_rollout_reach_the_stable_too() -> None:
    # The candidate's share is its replicas over both: a stable left at its old count
    # would take the canary from 20 % of the traffic to 50 %.
    world, stable, candidate = started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 20%")
    world.set_spec(spec("2", 10, rollout=ROLLOUT))
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["stepName"] == "canary 20%"
    # The candidate grows once the stable's new pods are ready, not ahead of them.
    assert (world.replicas(stable), world.replicas(candidate)) == (10, 1)
    world.pods_ready(stable)
    world.reconcile()
    assert (world.replicas(stable), world.replicas(candidate)) == (10, 2)
