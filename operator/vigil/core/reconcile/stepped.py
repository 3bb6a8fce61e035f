"""A change kind with steps: validate, shadow, canary and pause, judged by ``rollout.decide``.

Each cycle: take up the attempt where status left it (or hold a finished
one, or retry it), let :func:`vigil.core.rollout.decide` judge what was
measured, then roll back, switch (a promotion at full capacity), or set up
the traffic the step asks for and report the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Any

from vigil.common.times import format_time
from vigil.core import naming
from vigil.core.candidate import (
    RolloutInputs,
    golden_from_status,
    state_from_status,
    state_to_status,
)
from vigil.core.desired import RevisionInfo, desired_revision_service
from vigil.core.observed import DeploymentView
from vigil.core.reconcile.cycle import SERVICE_SETTLE_SECONDS, Cycle
from vigil.core.reconcile.plan import Plan
from vigil.core.reconcile.report import (
    Outcome,
    Side,
    finish,
    golden_status,
    last_gates,
    outcome,
    planned_summary,
)
from vigil.core.reconcile.requests import STATE_VERBS, refuse_what_cannot_apply
from vigil.core.reconcile.rollback import (
    ended_unrecorded,
    fetch_failed,
    finished_attempt,
    hold_finished,
    roll_back,
    with_replays_cause,
)
from vigil.core.reconcile.shadow import set_stable_shadow
from vigil.core.reconcile.spanning import behind_the_stable, live_selector
from vigil.core.reconcile.switch import promoting_occurrence, switch
from vigil.core.rollout import (
    Decision,
    GoldenResult,
    Observations,
    RolloutState,
    Traffic,
    decide,
)
from vigil.core.shadow import shadow_settings
from vigil.core.spec import RolloutPolicy, Step
from vigil.core.vocabulary import FINISHED, Action, ChangeKind, Phase, Reason, RequestVerb
from vigil.core.vocabulary import Outcome as HistoryOutcome

#: What a check says (status.candidate.reason) until the next one.
CHECK_REASONS = (Reason.STEP_IN_PROGRESS, Reason.CHECK_FAILED, Reason.UNDECIDED)


@dataclass
class _Attempt:
    """This revision's rollout as status left it (``previous``) and as it is now (``summary``)."""

    revision: str
    change: ChangeKind
    previous: dict[str, Any]
    summary: dict[str, Any]
    #: The spec's steps changed under the running step: what became of it ("" = nothing).
    edited: str = ""
    #: Why the step's shadow copies are not sent ("" = they are, or it asks for none).
    unsent: str = ""
    #: The router's words on the share it gives (replica ratio: 5 % on one pod is 50 %).
    routed: str = ""


def progress(
    cycle: Cycle,
    revision: str,
    identity: str,
    change: ChangeKind,
    stable_view: DeploymentView,
    candidate_view: DeploymentView | None,
    policy: RolloutPolicy,
) -> Plan:
    """Drive the candidate through its steps with ``rollout.decide`` (vigil.core.rollout)."""
    attempt = _attempt(cycle, revision, change)
    held = _hold_or_restart(cycle, attempt, stable_view)
    if held is not None:
        return held
    # A model that cannot be fetched fails the rollout at once (no step can pass without it).
    fetch = cycle.obs.fetches.get(revision)
    if fetch is not None and fetch.kind == "failed":
        return fetch_failed(cycle, stable_view, attempt.summary, fetch.words)
    # Judge what was measured; an end decided by a cycle whose status write was lost stands.
    decision, seen, was_promoting = _judge(cycle, attempt, stable_view, candidate_view, policy)
    decision = ended_unrecorded(cycle, attempt.summary, with_replays_cause(cycle, decision, policy))
    golden = attempt.summary["golden"]
    # Past the deadline while the fetch kept failing: say so in the fetch's words.
    if decision.action == Action.FAIL and fetch is not None and fetch.kind == "retrying":
        words = f"{fetch.words} ({decision.message})"
        return fetch_failed(cycle, stable_view, attempt.summary, words)
    # Rolled back or failed: the stable alone again.
    if decision.action in (Action.ROLLBACK, Action.FAIL):
        return roll_back(cycle, stable_view, decision, attempt.summary, golden)
    # Promoted: full capacity first, then the blue/green switch finishes it.
    if decision.action == Action.PROMOTE and not was_promoting:
        cycle.event(
            Reason.PROMOTING,
            f"revision {revision} promoted at step {decision.state.step + 1} "
            f"({decision.reason}): {decision.message}; scaling it to "
            f"{seen.replicas} replica(s) before the switch",
            occurrence=promoting_occurrence(revision, attempt.summary["startedAt"]),
        )
    if decision.action == Action.PROMOTE and candidate_view is not None and seen.full_capacity:
        plan = switch(cycle, identity, change, stable_view, candidate_view)
        plan.rollout_outcome = HistoryOutcome.PROMOTED
        return plan
    # Otherwise: the traffic this step asks for, and where the rollout stands.
    traffic, effective, attempt.unsent, attempt.routed = _set_up_traffic(
        cycle, identity, revision, (stable_view, candidate_view), decision, seen
    )
    # Once per step left or held: decided again after a failed status write, newer words.
    this_step = f"{revision} {attempt.previous.get('stepStartedAt')} {decision.state.step}"
    for reason in (Reason.STEP_ADVANCED, Reason.UNDECIDED):
        if reason in decision.events:
            cycle.event(reason, decision.message, occurrence=f"{reason} {this_step}")
    reached = _step_report(cycle, attempt, stable_view, decision, policy, traffic, effective)
    cycle.recheck(max(1.0, min(policy.interval_seconds, 10.0)))
    return finish(
        cycle,
        reached,
        revision=revision,
        stable=Side(stable_view),
        candidate=Side(candidate_view, attempt.summary, rollout=attempt.summary),
    )


def _hold_or_restart(cycle: Cycle, attempt: _Attempt, stable_view: DeploymentView) -> Plan | None:
    """A finished attempt (rolled back, failed) is held until the spec or a person says so,
    then starts again from step 1; a retry is refused while an attempt runs."""
    revision = attempt.revision
    if attempt.previous.get("outcome") in FINISHED:
        finished = finished_attempt(cycle, revision)
        if finished is not None:
            return hold_finished(cycle, stable_view, finished, revision)
        attempt.previous = {}
        attempt.summary["startedAt"] = format_time(cycle.obs.now)
        if cycle.verb in STATE_VERBS:  # placed while the person saw the attempt ended
            cycle.answer(
                False,
                f"the rollout of revision {revision} started again (the spec changed) after "
                "this request was placed; look at it and ask again",
            )
    if cycle.verb == RequestVerb.RETRY:
        cycle.answer(
            False,
            f"revision {revision} is rolling out; retry is for a rollout that "
            "ended RolledBack or Failed",
        )
    return None


def _attempt(cycle: Cycle, revision: str, change: ChangeKind) -> _Attempt:
    """This revision's attempt as status left it (nothing, for another revision's)."""
    assert cycle.spec is not None
    previous = dict(cycle.obs.status.get("candidate") or {})
    # A blue/green candidate's summary (steps added as it starts) is no step's state: its
    # stepStartedAt is when it started. One that ended keeps its outcome (_hold_or_restart).
    seeds = previous.get("stepName") or previous.get("outcome") in FINISHED
    if previous.get("revision") != revision or not seeds:
        previous = {}
    summary: dict[str, Any] = {**planned_summary(cycle.spec, revision), "change": change}
    # Steps added as a blue/green candidate starts: the attempt goes on from its start.
    started = previous.get("startedAt") or cycle.recorded_start(revision)
    summary["startedAt"] = started or format_time(cycle.obs.now)
    return _Attempt(revision, change, previous, summary)


def _judge(
    cycle: Cycle,
    attempt: _Attempt,
    stable_view: DeploymentView,
    candidate_view: DeploymentView | None,
    policy: RolloutPolicy,
) -> tuple[Decision, Observations, bool]:
    """``rollout.decide`` on this cycle's observations; the person's request answered."""
    spec, obs = cycle.spec, cycle.obs
    assert spec is not None
    state, attempt.edited = steps_edited(
        state_from_status(attempt.previous), attempt.previous, policy.steps, obs.now.timestamp()
    )
    refuse_what_cannot_apply(cycle, attempt.revision)
    if cycle.verb in STATE_VERBS:
        state = replace(state, requested=RequestVerb(cycle.verb))
    fresh = obs.rollout.golden if obs.rollout else None
    if fresh is not None:
        fresh = replace(fresh, step=state.step)
    golden = fresh or golden_from_status(attempt.previous)
    attempt.summary["golden"] = golden_status(golden)
    # A replay answers its own validate step: a later one replays its own golden set.
    if golden is not None and (golden.step not in (None, state.step) or attempt.edited):
        golden = None
    inputs = obs.rollout or RolloutInputs(metrics_available=False, metrics_error="not measured")
    attempt.summary.update(_feature_changes(inputs, attempt.previous))
    # Until status records the attempt's start (_steps_wait records none): a kill after the
    # candidate's writes posts it again, one name (its Deployment may be there already).
    if cycle.recorded_start(attempt.revision) is None:
        cycle.event(
            Reason.ROLLOUT_STARTED,
            f"revision {attempt.revision} ({attempt.change}: model {spec.model.name} version "
            f"{spec.model.version}) starting with {len(policy.steps)} step(s); "
            f"revision {stable_view.revision} keeps serving",
            occurrence=cycle.start_occurrence(attempt.revision),
        )
    seen = _observations(cycle, candidate_view, golden, inputs, started=bool(state.step_started_at))
    decision = decide(policy, state, seen, obs.now.timestamp())
    if decision.run_golden_set:
        cycle.plan.run_golden_set = policy.steps[decision.state.step].golden_set
    if cycle.verb:
        cycle.answer(
            not decision.refused, decision.refused or f"{decision.reason}: {decision.message}"
        )
    attempt.summary["gates"] = last_gates(decision, attempt.previous)
    return decision, seen, state.promoting


def steps_edited(
    state: RolloutState, previous: Mapping[str, Any], steps: Sequence[Step], now: float
) -> tuple[RolloutState, str]:
    """The state for the spec's steps, and words when they changed under the running step.

    The running step (``stepName``) keeps its clock and evidence where it now stands
    (``_now_at``); gone, the step now at its index starts afresh: each step judges its own
    evidence, nothing on another step's window or clock. One with its evidence dropped (held
    out of traffic: no ``stepStartedAt``) too, started once the candidate is ready (``decide``);
    a first step not yet started passed nothing: the edited steps begin at their first."""
    running = previous.get("stepName")
    fresh = state.step_started_at is None
    if not running or state.promoting or (fresh and state.step == 0):
        return state, ""
    moved = _now_at(running, state.step, previous.get("stepNames"), steps)
    if moved == state.step:
        return state, ""
    was = f"the steps changed: step {state.step + 1} ({running})"
    if moved is not None:
        return replace(state, step=moved), f"{was} is now step {moved + 1}/{len(steps)}"
    index, started = min(state.step, len(steps) - 1), None if fresh else now
    afresh = replace(
        state,
        step=index,
        step_started_at=started,
        last_analysis_at=started,  # nothing judged on the old step's window
        failed_checks=0,
        held_since=None,
        released=False,
    )
    return afresh, f"{was} is gone; step {index + 1} starts afresh"


def _now_at(running: str, step: int, before: Any, steps: Sequence[Step]) -> int | None:
    """Where the running step (index ``step`` of ``before``, status.candidate.stepNames) now
    stands in ``steps``; None: gone. The steps before and now are aligned (difflib): one named
    like others (two pauses) keeps its own place when steps are inserted or removed around it.
    Not aligned, or ``before`` unknown (an older operator's status): the same-named step
    nearest its index, the earlier of two (a step may run again, none is skipped unjudged)."""
    names = [each.describe() for each in steps]
    if isinstance(before, list) and step < len(before) and before[step] == running:
        aligned = SequenceMatcher(None, before, names, autojunk=False).get_matching_blocks()
        for old, new, size in aligned:
            if old <= step < old + size:
                return new + step - old
    found = [i for i, name in enumerate(names) if name == running]
    return min(found, key=lambda i: (abs(i - step), i)) if found else None


def _observations(
    cycle: Cycle,
    candidate_view: DeploymentView | None,
    golden: GoldenResult | None,
    inputs: RolloutInputs,
    *,
    started: bool,
) -> Observations:
    """What ``rollout.decide`` learns about the candidate this cycle.

    Ready: every pod ready, its sidecar answering ready (the operator's probe), before
    the rollout's first step starts; after that, any ready pod (a step that scales it
    up, a lost pod, a probe that failed once): it keeps what those carry (``_carried``)
    and its checks go on, so a failing candidate is still rolled back.
    """
    spec = cycle.spec
    assert spec is not None
    available = candidate_view is not None and candidate_view.is_available
    serving = cycle.obs.rollout is None or cycle.obs.rollout.candidate_serving
    ready = candidate_view.ready_replicas if candidate_view is not None else 0
    return Observations(
        candidate_ready=(available or started) and (serving or started) and ready > 0,
        replicas=spec.replicas,
        metrics_available=inputs.metrics_available and inputs.figures is not None,
        metrics_error=inputs.metrics_error,
        figures=inputs.figures,
        golden=golden,
        spec_paused=spec.paused,
        full_capacity=available and candidate_view.replicas == spec.replicas,
    )


def _set_up_traffic(
    cycle: Cycle,
    identity: str,
    revision: str,
    views: tuple[DeploymentView, DeploymentView | None],
    decision: Decision,
    seen: Observations,
) -> tuple[Traffic, float, str, str]:
    """Replicas, Services, route and shadow copies for this step: the traffic set up, the
    candidate's real share of it (see ``_carried``), why copies asked for are not sent, and
    the router's words on the share; the candidate's replicas start anyway."""
    stable_view, candidate_view = views
    owner, stable = cycle.obs.owner, stable_view.revision
    traffic = behind_the_stable(cycle, _carried(decision, seen, candidate_view), decision, views)
    replicas, selector, effective, notes = _route_plan(cycle, stable, revision, traffic)
    # Spanning both revisions: widened once the candidate is down to its count, its share
    # that of the ready pods that stay.
    selector, effective = live_selector(cycle, views, replicas, selector, effective)
    inputs = cycle.obs.rollout
    target = inputs.shadow_target if inputs is not None else None
    if not target:  # none to send copies to this cycle: status says none are sent
        traffic = replace(traffic, shadow_percent=0)
    shadow = shadow_settings(target, revision, traffic) if target else None
    unsent = ""
    if not set_stable_shadow(cycle, stable_view, shadow) and shadow is not None:
        # Its settings ConfigMap deleted (outside the operator): no sidecar copies anything.
        traffic, unsent = replace(traffic, shadow_percent=0), _no_settings(cycle, stable)
    info = RevisionInfo(revision, identity, naming.ROLE_CANDIDATE)
    cycle.ensure_revision(info, replicas.get(revision, traffic.candidate_replicas))
    # spec.replicas edited mid-rollout: the stable follows (its share depends on it).
    if stable_view.replicas != (wanted := replicas.get(stable, traffic.stable_replicas)):
        cycle.scale_revision(stable, wanted)
    cycle.ensure(desired_revision_service(owner, stable, naming.ROLE_STABLE))
    cycle.ensure(desired_revision_service(owner, revision, naming.ROLE_CANDIDATE))
    cycle.serve(stable, selector)
    cycle.route_revisions(stable, revision, traffic)
    cycle.keep_in_history(stable_view)
    return traffic, effective, unsent, "; ".join(notes)


def _no_settings(cycle: Cycle, stable: str) -> str:
    """Why no shadow copies are sent: the stable's settings are gone (not made again: they
    were rendered from an older spec)."""
    name = naming.sidecar_configmap_name(cycle.obs.owner.name, stable)
    return (
        f"no shadow copies are sent: ConfigMap {name}, the sidecar settings of revision "
        f"{stable}, is missing (deleted outside the operator)"
    )


def _carried(
    decision: Decision, seen: Observations, candidate_view: DeploymentView | None
) -> Traffic:
    """The step's traffic as far as the candidate's ready pods can take it.

    Nothing before it is ready (a request to a model still loading fails, and
    counts against it); then the live share and the copies its ready pods carry
    at a stable pod's load: a step that scales it up, or a lost pod, does not
    take all its traffic away until every pod is ready.
    """
    traffic = decision.traffic
    if not seen.candidate_ready or candidate_view is None:
        return replace(traffic, shadow_percent=0, candidate_weight=0)
    # A ready pod carries at least 1 % (over 100 replicas one pod's share rounds to 0).
    carried = max(1, 100 * candidate_view.ready_replicas // max(1, seen.replicas))
    return replace(
        traffic,
        candidate_weight=min(traffic.candidate_weight, carried),
        shadow_percent=min(traffic.shadow_percent, carried),
    )


def _route_plan(
    cycle: Cycle, stable: str, candidate: str | None, traffic: Traffic
) -> tuple[dict[str, int], dict[str, str], float, tuple[str, ...]]:
    """Replicas per revision, the live Service's selector, the candidate's real share and
    the router's notes on it (replica ratio: 5 % on one pod beside one is 50 %)."""
    planner = cycle.obs.route_planner
    if planner is None:
        replicas = {stable: traffic.stable_replicas}
        if candidate is not None:
            replicas[candidate] = traffic.candidate_replicas
        return replicas, naming.selector_labels(cycle.obs.owner.name, stable), 0.0, ()
    choice = planner(stable, candidate, traffic)
    return (
        dict(choice.replicas),
        dict(choice.service_selector),
        float(choice.effective_weight),
        tuple(choice.notes),
    )


def _step_report(
    cycle: Cycle,
    attempt: _Attempt,
    stable_view: DeploymentView,
    decision: Decision,
    policy: RolloutPolicy,
    traffic: Traffic,
    effective: float,
) -> Outcome:
    """``status.candidate`` for the step, and Ready/Progressing with the step's words."""
    state: RolloutState = decision.state
    step = policy.steps[min(state.step, len(policy.steps) - 1)]
    message = (
        f"promoting revision {attempt.revision}: {decision.message}"
        if state.promoting
        else f"step {state.step + 1}/{len(policy.steps)} "
        f"({'; '.join(filter(None, (step.describe(), attempt.routed)))}): {decision.message}"
    )
    fetching = cycle.fetch_progress(attempt.revision)
    if decision.reason == Reason.CANDIDATE_NOT_READY and fetching:
        message = f"{message} ({fetching})"
    if decision.reason == Reason.VALIDATION_PENDING:
        message = cycle.with_golden_pending(message)
    if attempt.edited:
        message = f"{message} ({attempt.edited})"
    reason = decision.reason
    previous = attempt.previous
    # Between two checks, the last check's words stand (no write, no flapping reason).
    if (
        decision.between_checks
        and not attempt.edited
        and previous.get("step") == state.step
        and previous.get("reason") in CHECK_REASONS
    ):
        reason, message = previous["reason"], previous["message"]
    share = round(effective) if traffic.candidate_weight else 0
    weight, message = _not_applied(cycle, attempt, share, message)
    attempt.summary.update(state_to_status(state))
    attempt.summary.update(
        {
            "stepName": step.describe(),
            "stepNames": [each.describe() for each in policy.steps],
            "weight": weight,
            "shadowPercent": traffic.shadow_percent or None,
            "reason": reason,
            "message": message,
        }
    )
    ready_reason = {
        Reason.PAUSED: Reason.ROLLOUT_PAUSED,
        Reason.WAITING_FOR_PERSON: Reason.WAITING_FOR_PERSON,
    }.get(reason, Reason.ROLLOUT_IN_PROGRESS)
    text = (
        f"revision {attempt.revision} ({attempt.change}) {message}; "
        f"revision {stable_view.revision} keeps serving"
    )
    active = ready_reason != Reason.ROLLOUT_PAUSED
    return outcome(Phase.PROGRESSING, (False, ready_reason), (active, reason), text)


#: Notes on one cycle, said after the step's words while true and only then: between checks
#: the last check's words come back with its cycle's notes, cut off at the first of these.
_CYCLE_NOTES = ("routing not applied: ", "the route names the revision", "no shadow copies are")


def _not_applied(cycle: Cycle, attempt: _Attempt, weight: int, message: str) -> tuple[int, str]:
    """The candidate's live share and the step's words, saying what the step asks for and
    does not get now: a route not applied or held (no live share), shadow copies not sent."""
    inputs, notes = cycle.obs.rollout, []
    if weight and inputs is not None and inputs.routing_error:
        weight, notes = 0, [f"routing not applied: {inputs.routing_error}"]
    if cycle.route_held_for:
        settle = f"the route names the revision Services once {SERVICE_SETTLE_SECONDS:g}s old"
        weight, notes = 0, [*notes, settle]
    cut = min((i for n in _CYCLE_NOTES if (i := message.find(f"; {n}")) >= 0), default=None)
    return weight, "; ".join([message[:cut], *notes, *filter(None, [attempt.unsent])])


def _feature_changes(
    inputs: RolloutInputs, previous: Mapping[str, Any]
) -> dict[str, list[str] | None]:
    """``featuresAdded`` / ``featuresDropped``: this cycle's reading, else the last one.

    A retrained model may add or drop input features; the gates then compare
    the shared ones, and status says which differ. A cycle that could not read
    both reference profiles keeps what the last one found (no status churn).
    """
    if inputs.feature_changes is None:
        return {key: previous.get(key) for key in ("featuresAdded", "featuresDropped")}
    added, dropped = inputs.feature_changes
    return {"featuresAdded": list(added) or None, "featuresDropped": list(dropped) or None}
