"""A new revision replaces the stable one: blue/green, or the stepped rollout its change kind has.

Blue/green: start the candidate beside the stable, switch live traffic once
it is available, then remove the old revision. A change kind with steps
goes through :mod:`vigil.core.reconcile.stepped` instead.

A revision serving all live traffic in the place of a stable not yet available
(its Deployment made again: :func:`vigil.core.reconcile.cycle.serving_in_place`)
keeps serving until the stable is: a blue/green candidate may switch meanwhile
(to an available revision), a stepped rollout waits (:func:`_steps_wait`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from vigil.common.times import format_time, parse_time
from vigil.core import naming
from vigil.core.bake import BakeState
from vigil.core.desired import RevisionInfo, progress_deadline_seconds
from vigil.core.observed import DeploymentView
from vigil.core.reconcile import bake, stepped
from vigil.core.reconcile.cycle import Cycle, serving_in_place, superseded
from vigil.core.reconcile.plan import Plan
from vigil.core.reconcile.report import (
    Outcome,
    Side,
    failed,
    fetch_gave_up,
    finish,
    meanwhile,
    not_ready,
    outcome,
    planned_summary,
    waiting_since,
)
from vigil.core.reconcile.rollback import (
    end_as_marked,
    fetch_failed,
    finished_attempt,
    hold_finished,
    in_place_words,
    stable_alone,
)
from vigil.core.reconcile.switch import finish_superseded_switch, switch
from vigil.core.spec import RolloutPolicy
from vigil.core.vocabulary import ChangeKind, ConditionType, Phase, Reason


def replace_stable(
    cycle: Cycle,
    revision: str,
    identity: str,
    change: ChangeKind,
    stable_view: DeploymentView,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """Start the candidate, switch once available, drop the old (the runbook's third branch)."""
    spec = cycle.spec
    assert spec is not None
    # A bake that failed goes back to the previous revision before anything new rolls out.
    if (back := bake.going_back(cycle, stable_view, views, revision)) is not None:
        return _back_first(cycle, (revision, identity), back, stable_view, views)
    candidate_view = views.get(revision)
    policy = _policy(cycle, change)
    standin = serving_in_place(cycle, stable_view.revision, stable_view, views)
    # Blue/green: the stable alone serves until the candidate is ready (or a stand-in does).
    if policy is None or standin is not None:
        _stable_until_switch(cycle, stable_view)
    cycle.keep_in_history(stable_view)
    _supersede_others(cycle, revision, stable_view, views, standin.revision if standin else None)
    _end_a_bake_kept_for(cycle, stable_view.revision, revision)
    # The change kind has steps: a stepped rollout (validate, shadow, canary, pause).
    if policy is not None and standin is not None:
        return _steps_wait(cycle, revision, change, stable_view, (standin, candidate_view))
    if policy is not None and not (spec.paused and candidate_view is None):
        return stepped.progress(
            cycle, revision, identity, change, stable_view, candidate_view, policy
        )
    side = _candidate_side(cycle, revision, change, candidate_view)
    serving = _meanwhile(stable_view, standin)
    # Hold where it is while paused (do not even start a candidate).
    if spec.paused:
        if policy is not None:
            stable_alone(cycle, stable_view)
        message = f"rollout of revision {revision} is paused (spec.paused); {serving}"
        reached = not_ready(Phase.PROGRESSING, Reason.ROLLOUT_PAUSED, message, progressing=False)
        return finish(cycle, reached, revision=revision, stable=Side(stable_view), candidate=side)
    # A candidate that could not fetch its model stays out until the spec or a person says.
    finished = finished_attempt(cycle, revision)
    if finished is not None:
        return hold_finished(cycle, stable_view, finished, revision)
    failure = fetch_gave_up(cycle.obs.fetches.get(revision), candidate_view)
    if failure is not None:  # its Event named after the start status records: said once
        started = side.fallback.get("startedAt") or format_time(cycle.obs.now)
        return fetch_failed(cycle, stable_view, {**side.fallback, "startedAt": started}, failure)
    # Start the candidate: settings first, then its Deployment; announced until status says.
    cycle.ensure_revision(RevisionInfo(revision, identity, naming.ROLE_CANDIDATE), spec.replicas)
    side = _announce(cycle, side, change, serving)
    # Switch only to a candidate with all its replicas available (one kept small by a bake
    # or a canary step is scaled up first): the Service never selects too few Ready pods.
    if (
        candidate_view is not None
        and candidate_view.is_available
        and candidate_view.replicas >= spec.replicas
    ):
        return _switch_over(cycle, identity, change, stable_view, (candidate_view, standin))
    reached = _starting(cycle, revision, (serving, standin or stable_view), candidate_view)
    return finish(cycle, reached, revision=revision, stable=Side(stable_view), candidate=side)


def _switch_over(
    cycle: Cycle,
    identity: str,
    change: ChangeKind,
    stable_view: DeploymentView,
    views: tuple[DeploymentView, DeploymentView | None],
) -> Plan:
    """The switch to the available candidate; a stand-in (another revision serving in the
    place of the stable not yet available) is superseded by it, once the Service has moved."""
    candidate_view, standin = views
    if standin is not None and standin.revision != candidate_view.revision:
        cycle.retire(standin, superseded(standin.revision, f"revision {candidate_view.revision}"))
    return switch(cycle, identity, change, stable_view, candidate_view)


def _candidate_side(
    cycle: Cycle, revision: str, change: ChangeKind, candidate_view: DeploymentView | None
) -> Side:
    """The candidate in status, with its attempt's start as status records it (none: not
    started yet, the record is another revision's, or of an attempt that ended)."""
    assert cycle.spec is not None
    summary = {**planned_summary(cycle.spec, revision), "change": change}
    if (started := cycle.recorded_start(revision)) is not None:
        summary["startedAt"] = started
    return Side(candidate_view, summary)


def _announce(cycle: Cycle, side: Side, change: ChangeKind, serving: str) -> Side:
    """The RolloutStarted Event of a blue/green candidate (``serving``: who serves meanwhile),
    until status records its start: ``side`` with that start. A kill after its Deployment
    was applied, before the Event, finds no start recorded and posts it (the same name)."""
    assert cycle.spec is not None
    if side.fallback.get("startedAt"):
        return side
    model, revision = cycle.spec.model, str(side.fallback["revision"])
    cycle.event(
        Reason.ROLLOUT_STARTED,
        f"revision {revision} ({change}: model {model.name} version {model.version}) "
        f"starting; {serving}",
        occurrence=cycle.start_occurrence(revision),
    )
    return replace(side, fallback={**side.fallback, "startedAt": format_time(cycle.obs.now)})


def _stable_until_switch(cycle: Cycle, stable_view: DeploymentView) -> None:
    """At spec.replicas (an edit reaches it while the candidate starts or has failed), with
    no shadow copies (to a stepped candidate this change superseded). Live traffic to it
    alone, but a stand-in keeps serving until the stable is available (stable_alone)."""
    assert cycle.spec is not None
    stable_alone(cycle, stable_view)
    if stable_view.replicas != cycle.spec.replicas:
        cycle.scale_revision(stable_view.revision, cycle.spec.replicas)


def _meanwhile(stable_view: DeploymentView, standin: DeploymentView | None) -> str:
    """Who serves live traffic while a change waits, in a message."""
    if standin is None:
        return meanwhile(stable_view)
    return in_place_words(standin, stable_view.revision)


def _steps_wait(
    cycle: Cycle,
    revision: str,
    change: ChangeKind,
    stable_view: DeploymentView,
    views: tuple[DeploymentView, DeploymentView | None],
) -> Plan:
    """A stepped rollout starts once the stable is available: until then the revision serving
    in its place keeps all live traffic (stable_alone), and nothing is judged (one
    serving all of it is no canary, and the stable it is measured against has no pod): no
    step's clock, no hold's deadline, no candidate started (the stable's pods come first).
    The rollout then starts at its first step; a person's request waits for it too."""
    spec = cycle.spec
    assert spec is not None
    standin, candidate_view = views
    words = (
        f"{_meanwhile(stable_view, standin)} ({stable_view.ready_replicas}/{spec.replicas} ready)"
    )
    message = f"revision {revision} ({change}) waits to start its steps: {words}"
    if cycle.verb:
        cycle.answer(False, f"the rollout of revision {revision} has not started: {words}")
    summary = {
        **planned_summary(spec, revision),
        "change": change,
        "step": 0,
        "weight": 100 if standin.revision == revision else 0,
        "reason": Reason.REPLICAS_UNAVAILABLE,
        "message": message,
    }
    reached = not_ready(Phase.PROGRESSING, Reason.REPLICAS_UNAVAILABLE, message, progressing=True)
    candidate = Side(candidate_view, summary, rollout=summary)
    return finish(cycle, reached, revision=revision, stable=Side(stable_view), candidate=candidate)


def _back_first(
    cycle: Cycle,
    asked: tuple[str, str],
    state: BakeState,
    stable_view: DeploymentView,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """The stable failed its bake: live traffic goes back to the previous revision first
    (vigil.core.reconcile.bake), and the revision the spec asks for (``asked``: it and its
    identity) waits; no candidate starts (not Ready meanwhile). One asking for the previous
    revision gets it that way, without a rollout."""
    revision, identity = asked
    _stable_until_switch(cycle, stable_view)
    _supersede_others(cycle, revision, stable_view, views, kept=state.previous)
    previous = views.get(state.previous)
    # Deleted by hand and asked for: made again from the spec (the bake gives up otherwise).
    made_again = previous is None and revision == state.previous
    if made_again:
        bake.make_previous_again(cycle, state, identity)
    # Status speaks of the revision asked for, not of the stable as if it were the spec's.
    return bake.watch(cycle, state, stable_view, previous, None, revision, made_again)


def _supersede_others(
    cycle: Cycle,
    revision: str,
    stable_view: DeploymentView,
    views: Mapping[str, DeploymentView],
    kept: str | None = None,
) -> None:
    """A newer spec supersedes a candidate that was still starting (or baking); ``kept``: a
    failed bake's previous revision, which live traffic goes back to. A switch to the stable
    cut short is finished first: its old stable goes, not retired as a candidate."""
    switched_from = finish_superseded_switch(cycle, stable_view, revision)
    for other, other_view in views.items():
        if other in (revision, stable_view.revision, kept, switched_from):
            continue
        # One rolled back or failed, removed a cycle after its outcome, keeps that outcome.
        if cycle.ended(other):
            cycle.delete_revision(other)
        elif end_as_marked(cycle, other):
            continue  # rolled back by a cycle whose status write was lost: that outcome
        elif not bake.supersede(cycle, stable_view.revision, other, revision):
            cycle.retire(other_view, superseded(other, f"revision {revision}"))


def _end_a_bake_kept_for(cycle: Cycle, stable: str, revision: str) -> None:
    """The spec asks again for the revision a bake (not failed) keeps: it rolls out from its
    kept Deployment, and the bake ends, said once (a failed one goes back first)."""
    baked = bake.baking(cycle, stable)
    if baked is not None and baked.previous == revision and baked.failed_at is None:
        cycle.event(
            Reason.ROLLOUT_SUPERSEDED,
            f"the bake of revision {stable} ends: the spec asks for revision {revision} "
            "again, kept for the bake, which rolls out against it",
            occurrence=f"{Reason.ROLLOUT_SUPERSEDED} {baked.revision} {baked.started_at}",
        )


def _policy(cycle: Cycle, change: ChangeKind) -> RolloutPolicy | None:
    """The change kind's steps with the SLOs the gates use; None without steps (blue/green).
    A change with an unreadable spec.rollout or spec.monitoring is blocked before (runbook)."""
    spec = cycle.spec
    assert spec is not None
    policy = spec.rollout.policy(change, spec.monitoring.slo)
    return policy if policy.steps else None


#: A replica failure within an attempt's first minute is waited out: the pods of the
#: candidate it superseded hold the namespace's quota until they have terminated.
REPLICA_FAILURE_GRACE_SECONDS = 60.0


def _starting(
    cycle: Cycle,
    revision: str,
    server: tuple[str, DeploymentView],
    candidate_view: DeploymentView | None,
) -> Outcome:
    """A candidate on its way, or one that will not come, timed from when this blue/green
    attempt began waiting for it (``server``: who serves meanwhile, in words, and its
    Deployment)."""
    assert cycle.spec is not None
    started = waiting_since(cycle, revision)
    serving, up = server[0], server[1].ready_replicas > 0
    ready = f"{candidate_view.ready_replicas if candidate_view else 0}/{cycle.spec.replicas}"
    gave_up = _gave_up(cycle, candidate_view, started)
    if gave_up is not None:
        message = f"revision {revision} did not become available ({ready} ready): {gave_up}"
        message = f"{message}; {serving}"
        if cycle.previous_reason(ConditionType.PROGRESSING) != Reason.ROLLOUT_FAILED:
            occurrence = f"{Reason.ROLLOUT_FAILED} {revision} {started}"
            cycle.event(Reason.ROLLOUT_FAILED, message, warning=True, occurrence=occurrence)
        return failed(Reason.ROLLOUT_FAILED, message)
    # A replica failure (a quota the superseded candidate's pods still hold) may yet pass.
    trouble = cycle.fetch_progress(revision) or (candidate_view and candidate_view.failure)
    message = f"revision {revision} starting ({ready} ready{'; ' + trouble if trouble else ''})"
    message = f"{message}; {serving}"
    if not up:  # the stable lost every pod meanwhile: an outage, not a rollout's wait
        unavailable, rolling = (
            (False, Reason.REPLICAS_UNAVAILABLE),
            (True, Reason.ROLLOUT_IN_PROGRESS),
        )
        return outcome(Phase.DEGRADED, unavailable, rolling, message)
    return not_ready(Phase.PROGRESSING, Reason.ROLLOUT_IN_PROGRESS, message, progressing=True)


def _gave_up(cycle: Cycle, view: DeploymentView | None, started: str) -> str | None:
    """Why the candidate will not come: its Deployment's progress deadline passed; a replica
    failure (a quota) that outlasted the attempt's first REPLICA_FAILURE_GRACE_SECONDS (the
    superseded candidate's terminating pods may hold the quota until then); or, for one
    scaled up after its rollout completed (a bake's kept revision asked for again, more
    replicas), which the Deployment controller does not time, the attempt outlasted its
    deadline. None meanwhile, with the next look planned for when one of those may be due."""
    assert cycle.spec is not None
    if view is None:
        return None
    if view.deadline_exceeded:
        return view.failure or "progress deadline exceeded"
    deadline = progress_deadline_seconds(cycle.spec)
    began = parse_time(started)
    elapsed = (cycle.obs.now - began).total_seconds() if began is not None else 0.0
    if view.failure and elapsed >= REPLICA_FAILURE_GRACE_SECONDS:
        return view.failure
    if view.rolled_out and elapsed >= deadline:
        return (
            f"still short of its replicas {deadline}s after it started (its Deployment's "
            "progressDeadlineSeconds, which the Deployment controller does not apply to a "
            "scale up after a completed rollout)" + (f" ({view.failure})" if view.failure else "")
        )
    due = [REPLICA_FAILURE_GRACE_SECONDS] if view.failure else []
    due += [deadline] if view.rolled_out else []
    if due:
        cycle.plan.recheck_after = max(1.0, min(due) - elapsed)
    return None
