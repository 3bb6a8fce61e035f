"""The bake period after a promotion (``spec.rollout.bake``), on the reconcile's side.

The switch keeps the previous revision at ``minReplicas`` instead of
deleting it and records ``status.bake`` (:func:`start`); while the promoted
revision is the stable one, :func:`watch` lets :func:`vigil.core.bake.decide`
judge the health conditions each cycle and applies its move: bake on,
remove the previous revision once the bake passed, or go back to it
(scaled up first: the Service only moves to an available revision). Going
back ends like a rolled-back candidate: the promoted revision is held out
until the spec changes or a person retries. Given up (the previous revision
not available by progressDeadline, or its Deployment deleted by hand: nothing
to go back to), the promoted revision serves on and status.bake keeps reason
BakeRollbackFailed until another revision rolls out (:func:`_gave_up`). The
switch marks the kept revision with the bake's start (:func:`kept_since`), so
a switch whose status write was lost starts its bake when it switched.

A bake that failed is finished before anything new rolls out: a newer spec
waits while live traffic goes back (:func:`going_back`, ``watch(asked=...)``),
not Ready (what it asks for does not serve) and Progressing; the cycle that
goes back records the promoted revision RolledBack in history only. A failure
not in status yet (a condition turned since the last cycle, or the write after
BakeFailed lost) is judged first when a newer spec, or one without a bake,
arrives, and counts the same. One that asks for the previous revision is
answered by going back itself, without a rollout (the promoted revision is
removed at once: should the cycle be cut short after that, status.bake still
says what happened, and :func:`baking` hands it to ``watch`` to finish); past
progressDeadline it keeps going back, overdue (:func:`_overdue`), where
another revision asked for rolls out against the promoted one instead (the
previous revision removed). A previous revision deleted by hand is made again
when the spec asks for it (:func:`make_previous_again`): the spec renders that
very revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vigil.common.objects import body
from vigil.common.times import format_unix, parse_time, parse_unix
from vigil.core import naming
from vigil.core.bake import (
    BakeDecision,
    BakeObservations,
    BakeState,
    decide,
    signals,
    state_from_status,
)
from vigil.core.bake import state_to_status as bake_status
from vigil.core.desired import RevisionInfo
from vigil.core.observed import DeploymentView
from vigil.core.reconcile.cycle import Cycle
from vigil.core.reconcile.plan import REMOVE_AFTER_OUTCOME_SECONDS, Plan
from vigil.core.reconcile.report import (
    Outcome,
    Side,
    failed,
    finish,
    meanwhile,
    not_ready,
    outcome,
    stable_outcome,
)
from vigil.core.reconcile.rollback import bake_failed
from vigil.core.spec import BakeSpec
from vigil.core.vocabulary import BakeMove, ConditionType, Phase, Reason

#: How often a bake looks at the health conditions at the latest (a health write that
#: flips one asks for a reconcile at once).
RECHECK_SECONDS = 30.0
#: What ``decide`` is given for a failed bake whose spec no longer has one (a newer spec
#: waits for the going back): a failed bake's moves never read it.
_GOING_BACK_ONLY = BakeSpec("0s", 0.0, 0)


def start(
    cycle: Cycle, change: str, previous: DeploymentView, revision: str
) -> tuple[str, dict[str, Any] | None]:
    """At the switch: keep the previous revision for the bake (delete it without one).

    Returns how the Switched Event ends (the previous revision removed, or kept until
    when) and ``status.bake``.
    """
    spec = cycle.spec
    assert spec is not None
    bake = spec.rollout.bake
    if bake is None:
        cycle.delete_revision(previous.revision)
        return f"revision {previous.revision} removed", None
    kept = min(bake.min_replicas, spec.replicas)
    # Started at the switch: one whose status write was lost marked it on the kept revision
    # (or, stopped before that scale, on the Service, which moved first).
    moved = cycle.serving_since(revision)
    marked = kept_since(cycle, previous.revision, revision)
    started = marked or (moved.timestamp() if moved else cycle.obs.now.timestamp())
    mark = {naming.ANNOTATION_KEPT_FOR_BAKE: f"{revision} {format_unix(started)}"}
    cycle.scale_revision(previous.revision, kept, mark)
    state = BakeState(
        revision=revision,
        previous=previous.revision,
        started_at=started,
        ends_at=started + bake.duration_seconds,
        change=change,
        previous_model_version=previous.model_version or "",
        message=f"revision {previous.revision} kept at {kept} replica(s)",
    )
    cycle.plan.recheck_after = RECHECK_SECONDS
    then = (
        f"revision {previous.revision} kept at {kept} replica(s) for the bake "
        f"(spec.rollout.bake.duration {bake.duration}, until {format_unix(state.ends_at)})"
    )
    return then, _status(state, previous, kept)


def kept_since(cycle: Cycle, previous: str, revision: str) -> float | None:
    """When the switch to ``revision`` kept ``previous`` for its bake, as the switch marked
    it on that Deployment (None: no mark for that switch). Only a mark of this attempt
    (``Cycle.attempt_started``) counts: one left by an earlier attempt
    of the same revision over the same previous one would start the new bake at the old
    one's start."""
    live = cycle.live_deployment(previous)
    mark = body(live).meta.annotations.get(naming.ANNOTATION_KEPT_FOR_BAKE) if live else None
    promoted, _, text = str(mark or "").partition(" ")
    since = parse_unix(text) if promoted == revision else None
    attempt = parse_time(cycle.attempt_started())
    if since is None or attempt is None or since < attempt.timestamp():
        return None
    return since


def baking(cycle: Cycle, revision: str) -> BakeState | None:
    """The bake of ``revision`` (the stable one) that status records, if any; or a failed
    bake going back to ``revision`` that was cut short after it removed the promoted one
    (a spec asking for ``revision`` again): :func:`watch` finishes it."""
    state = state_from_status(cycle.obs.status.get("bake"))
    if state is None:
        return None
    if state.revision == revision:
        return state
    cut = state.failed_at is not None and state.previous == revision
    return state if cut and state.revision not in cycle.views() else None


def going_back(
    cycle: Cycle, stable: DeploymentView, views: Mapping[str, DeploymentView], asked: str
) -> BakeState | None:
    """The failed bake of the stable revision, not given up: it is finished before the
    revision ``asked`` for rolls out (its previous revision gone: given up, or made again by
    a spec asking for it). Also one failing now, not yet in status: superseded, its previous
    revision would go and the revision that failed would serve on."""
    state = baking(cycle, stable.revision)
    if state is None or state.reason == Reason.BAKE_ROLLBACK_FAILED:
        return None
    previous = views.get(state.previous)
    made_again = previous is None and asked == state.previous
    seen = _seen(cycle, previous, stable, made_again)
    return state if _judged(cycle, state, seen).failed else None


def make_previous_again(cycle: Cycle, state: BakeState, identity: str) -> None:
    """A failed bake's previous revision, deleted by hand, made again from the spec that asks
    for it (the same revision: the same objects); live traffic goes back once it is available."""
    spec = cycle.spec
    assert spec is not None
    info = RevisionInfo(state.previous, identity, naming.ROLE_STABLE)
    cycle.ensure_revision(info, spec.replicas)
    cycle.event(
        Reason.DEPLOYED,
        f"the Deployment of revision {state.previous}, which live traffic goes back to after "
        f"revision {state.revision} failed its bake, was missing (deleted outside the "
        f"operator); made again from the spec with {spec.replicas} replica(s)",
        warning=True,
    )


def watch(
    cycle: Cycle,
    state: BakeState,
    view: DeploymentView,
    previous: DeploymentView | None,
    reached: Outcome | None,
    asked: str | None = None,
    made_again: bool = False,
) -> Plan:
    """One cycle of the bake of the stable revision ``view`` (vigil.core.bake's runbook).

    ``reached``: what the stable revision reports, which the bake's status adds to.
    ``asked``: the revision a newer spec asks for, which waits while a failed bake goes
    back (None: the spec asks for the promoted revision still); status then speaks of
    it (``reached`` is not read: None). ``made_again``: the previous revision (``previous``
    None) was made again this cycle (:func:`make_previous_again`).
    """
    spec = cycle.spec
    assert spec is not None
    now = cycle.obs.now.timestamp()
    if state.revision != view.revision:
        # Going back to ``view`` (asked for) was cut short after it removed the promoted one.
        return _back(cycle, state, _as_recorded(cycle, state.revision), view, view.revision)
    decision = _judged(cycle, state, _seen(cycle, previous, view, made_again))
    if spec.rollout.bake is None and asked is None and not decision.failed:
        # spec.rollout.bake removed: the bake ends, the previous revision goes (unless it
        # failed, recorded or judged now: that one goes back first).
        assert reached is not None
        if previous is not None:
            cycle.delete_revision(previous.revision)
        return finish(cycle, reached, revision=view.revision, stable=Side(view))
    # Over: passed, or the previous revision never came back (the promoted one keeps serving).
    there = previous is not None or made_again
    if decision.move == BakeMove.GIVE_UP and there and asked == state.previous:
        # The spec asks for the previous revision: kept (overdue) until it is available.
        return _overdue(cycle, decision, view, previous)
    if decision.move in (BakeMove.PASS, BakeMove.GIVE_UP):
        return _over(cycle, decision, view, previous, reached, asked)
    if previous is not None:  # one made again this cycle has its full replicas already
        cycle.scale_revision(previous.revision, decision.previous_replicas)
    after = decision.state
    if after.failed_at is not None and state.failed_at is None:
        _failed_now(cycle, after)
    # The previous revision is available: live traffic goes back to it.
    if decision.move == BakeMove.ROLL_BACK:
        assert previous is not None
        return _back(cycle, after, _as_running(view), previous, asked)
    plan = finish(
        cycle,
        _going_on(decision, view, reached, asked),
        revision=asked or view.revision,
        stable=Side(view),
    )
    plan.status["bake"] = _status(after, previous, decision.previous_replicas)
    left = after.ends_at - now if decision.move == BakeMove.BAKE else RECHECK_SECONDS
    plan.recheck_after = max(1.0, min(RECHECK_SECONDS, left))
    return plan


def _judged(cycle: Cycle, state: BakeState, seen: BakeObservations) -> BakeDecision:
    """This cycle's move of the bake (vigil.core.bake's runbook) on what is ``seen`` now."""
    spec = cycle.spec
    assert spec is not None
    rules = spec.rollout.bake or _GOING_BACK_ONLY
    now = cycle.obs.now.timestamp()
    return decide(rules, state, seen, now, spec.rollout.progress_deadline_seconds)


def _failed_now(cycle: Cycle, state: BakeState) -> None:
    """The BakeFailed Event: once per bake, whatever words a retry after a lost write has."""
    cycle.event(
        Reason.BAKE_FAILED,
        f"revision {state.revision} failed its bake: {state.message}; "
        f"live traffic goes back to revision {state.previous}",
        warning=True,
        occurrence=_occurrence(Reason.BAKE_FAILED, state),
    )


def _going_on(
    decision: BakeDecision, view: DeploymentView, reached: Outcome | None, asked: str | None
) -> Outcome:
    """A bake going on (or going back): Progressing True; Ready as the promoted revision
    has it, unless a newer spec waits (what it asks for does not serve yet: not Ready)."""
    state = decision.state
    if asked is not None:
        return _waiting(state, view, asked, decision.message)
    assert reached is not None
    why = Reason.BAKING if decision.move == BakeMove.BAKE else Reason.BAKE_FAILED
    return bake_outcome(reached, why, f"bake of revision {state.revision}: {decision.message}")


def _over(
    cycle: Cycle,
    decision: BakeDecision,
    view: DeploymentView,
    previous: DeploymentView | None,
    reached: Outcome | None,
    asked: str | None,
) -> Plan:
    """The bake passed, or its previous revision never came back: the previous revision
    goes, the promoted one serves on (and another revision a newer spec asks for rolls out
    against it next: there is nothing else to roll out against)."""
    state = decision.state
    if previous is not None:
        cycle.delete_revision(previous.revision)
    if decision.move == BakeMove.GIVE_UP:
        # Said once per bake: status keeps the give-up (Progressing), or a spec that asked
        # for the previous revision past the deadline said it; a retry has the same name.
        if cycle.previous_reason(ConditionType.PROGRESSING) != Reason.BAKE_ROLLBACK_FAILED:
            occurrence = _occurrence(Reason.BAKE_ROLLBACK_FAILED, state)
            cycle.event(
                Reason.BAKE_ROLLBACK_FAILED, decision.message, warning=True, occurrence=occurrence
            )
        if asked is None:
            assert reached is not None
            return _gave_up(cycle, decision, view, reached)
    elif decision.passed:
        # Also when a cycle cut short removed the previous revision: named once per bake.
        cycle.event(
            Reason.BAKE_PASSED,
            f"revision {state.revision} passed its bake ({decision.message}); "
            f"revision {state.previous} removed",
            occurrence=_occurrence(Reason.BAKE_PASSED, state),
        )
    if asked is not None:
        gone = "gone" if previous is None else "removed"
        words = (
            f"revision {asked} waits: {decision.message}; revision {state.previous} {gone}, "
            f"revision {asked} rolls out against revision {view.revision} next"
        )
        reached = not_ready(Phase.PROGRESSING, Reason.BAKE_ROLLBACK_FAILED, words, progressing=True)
        cycle.plan.recheck_after = REMOVE_AFTER_OUTCOME_SECONDS
    assert reached is not None
    return finish(cycle, reached, revision=asked or view.revision, stable=Side(view))


def _gave_up(cycle: Cycle, decision: BakeDecision, view: DeploymentView, reached: Outcome) -> Plan:
    """Going back given up: the promoted revision serves on (Ready as it has it), and status
    keeps saying why (status.bake, Progressing False) until another revision rolls out."""
    state = replace(decision.state, reason=Reason.BAKE_ROLLBACK_FAILED, message=decision.message)
    ready = (reached.ready.status is True, reached.ready.reason)
    words = f"{reached.ready.message}; {decision.message}"
    stands = outcome(reached.phase, ready, (False, Reason.BAKE_ROLLBACK_FAILED), words)
    plan = finish(cycle, stands, revision=view.revision, stable=Side(view))
    plan.status["bake"] = _status(state, None, 0)
    return plan


def _overdue(
    cycle: Cycle, decision: BakeDecision, view: DeploymentView, previous: DeploymentView | None
) -> Plan:
    """A spec asking for the previous revision again, which is still not available at
    progressDeadline: it is kept at full replicas (not removed and rolled out again against
    the revision that failed its bake), live traffic goes back to it once it is available;
    meanwhile status says the going back is overdue (Stalled)."""
    spec = cycle.spec
    assert spec is not None
    state = decision.state
    full = spec.replicas
    cycle.scale_revision(state.previous, full)
    deadline = spec.rollout.progress_deadline_seconds
    then = (
        f"the spec asks for revision {state.previous}: it is kept at {full} replica(s), "
        "and live traffic goes back to it once it is available"
    )
    if cycle.previous_reason(ConditionType.PROGRESSING) != Reason.BAKE_ROLLBACK_FAILED:
        occurrence = _occurrence(Reason.BAKE_ROLLBACK_FAILED, state)
        message = f"{decision.message}; {then}"
        cycle.event(Reason.BAKE_ROLLBACK_FAILED, message, warning=True, occurrence=occurrence)
    message = (
        f"revision {state.previous} is not available {deadline:.0f}s (progressDeadline) "
        f"after revision {state.revision} failed its bake at {format_unix(state.failed_at)} "
        f"({state.message}); {then}; {meanwhile(view)}"
    )
    plan = finish(
        cycle,
        failed(Reason.BAKE_ROLLBACK_FAILED, message),
        revision=state.previous,
        stable=Side(view),
    )
    plan.status["bake"] = _status(state, previous, full)
    plan.recheck_after = RECHECK_SECONDS
    return plan


def _back(
    cycle: Cycle,
    state: BakeState,
    promoted: Mapping[str, Any],
    previous: DeploymentView,
    asked: str | None,
) -> Plan:
    """Live traffic back to the available previous revision; the promoted one ends
    RolledBack (its history entry with what it ran, not what a newer spec asks for).

    A newer spec asking for the previous revision is answered by this: the promoted one is
    removed now (not held out), as status.bake tells a cycle cut short after it, and status
    reports the previous revision as the spec's (RolledBack in history and the Event only).
    Another revision asked for waits one more cycle (Progressing), the promoted one's
    outcome in status.candidate for that cycle to remove it."""
    plan = bake_failed(cycle, previous, _rolled_back(promoted, state))
    ran = {key: promoted[key] for key in ("modelVersion", "image") if promoted.get(key)}
    cycle.history = [
        {**entry, **ran} if entry.get("revision") == promoted["revision"] else entry
        for entry in cycle.history
    ]
    plan.status["history"] = cycle.history
    if asked is None:
        return plan
    if asked == previous.revision:
        # The spec's revision serves: reported as a kept stable is (RolledBack in history).
        cycle.delete_revision(str(promoted["revision"]))
        reached = stable_outcome(cycle, asked, previous, just_created=False)
        return finish(cycle, reached, revision=asked, stable=Side(previous))
    ended = plan.status["candidate"]
    message = (
        f"revision {asked} waits: revision {promoted['revision']} rolled back in its bake "
        f"period ({state.message}); live traffic is on revision {previous.revision} again, "
        f"revision {asked} rolls out against it next"
    )
    reached = not_ready(Phase.PROGRESSING, Reason.BAKE_FAILED, message, progressing=True)
    side = Side(None, ended, rollout=ended)
    return finish(cycle, reached, revision=asked, stable=Side(previous), candidate=side)


def _waiting(state: BakeState, view: DeploymentView, asked: str, words: str) -> Outcome:
    """A newer spec waits while the failed bake goes back (``words``: how far it is)."""
    if asked == state.previous:
        lead = (
            f"the spec asks for revision {asked} again: live traffic goes back to it once "
            "it is available (no rollout)"
        )
    else:
        lead = (
            f"revision {asked} waits: the failed bake goes back to revision {state.previous} "
            f"first, then revision {asked} rolls out against it"
        )
    message = f"{lead}; revision {state.revision} failed its bake: {words}; {meanwhile(view)}"
    return not_ready(Phase.PROGRESSING, Reason.BAKE_FAILED, message, progressing=True)


def _seen(
    cycle: Cycle, previous: DeploymentView | None, promoted: DeploymentView, made_again: bool
) -> BakeObservations:
    """What the bake's runbook reads: the health loop's conditions, both revisions' pods."""
    assert cycle.spec is not None
    replicas = cycle.spec.replicas
    return BakeObservations(
        signals(cycle.obs.status.get("conditions")),
        previous_exists=previous is not None or made_again,
        previous_available=previous is not None
        and previous.is_available
        and previous.replicas == replicas,
        replicas=replicas,
        promoted_ready=promoted.ready_replicas,
    )


def bake_outcome(reached: Outcome, reason: str, words: str) -> Outcome:
    """Ready as the stable revision has it; Progressing True while the bake lasts."""
    ready = (reached.ready.status is True, reached.ready.reason)
    return outcome(reached.phase, ready, (True, reason), f"{reached.ready.message}; {words}")


def supersede(cycle: Cycle, stable: str, other: str, revision: str) -> bool:
    """A new rollout during a bake: the baked revision's previous one goes (True), without
    a history entry of its own (it ended as it was, replaced earlier)."""
    state = baking(cycle, stable)
    if state is None or state.previous != other:
        return False
    cycle.delete_revision(other)
    cycle.event(
        Reason.ROLLOUT_SUPERSEDED,
        f"revision {other}, kept for the bake of revision {stable}, removed: revision "
        f"{revision} rolls out",
    )
    return True


def _status(state: BakeState, previous: DeploymentView | None, replicas: int) -> dict[str, Any]:
    return {
        **bake_status(state),
        "previousReplicas": replicas,
        "previousReadyReplicas": previous.ready_replicas if previous is not None else 0,
    }


def _occurrence(reason: str, state: BakeState) -> str:
    """One Event of ``reason`` per bake, whatever words a retry after a lost write has."""
    return f"{reason} {state.revision} {format_unix(state.started_at)}"


def _as_running(view: DeploymentView) -> dict[str, Any]:
    return {"revision": view.revision, "modelVersion": view.model_version, "image": view.image}


def _as_recorded(cycle: Cycle, revision: str) -> dict[str, Any]:
    """A revision whose Deployment is gone, as status said of it: the stable it was (a
    cycle cut short left that), else its history entry."""
    recorded = cycle.obs.status.get("stable") or {}
    if recorded.get("revision") != revision:
        recorded = next((h for h in cycle.history if h.get("revision") == revision), {})
    return {
        "revision": revision,
        "modelVersion": recorded.get("modelVersion"),
        "image": recorded.get("image"),
    }


def _rolled_back(promoted: Mapping[str, Any], state: BakeState) -> dict[str, Any]:
    """``status.candidate`` for the promoted revision that goes back out, as a rollback
    leaves a candidate (its outcome is written by ``bake_failed``)."""
    return {
        **promoted,
        "change": state.change or None,
        "startedAt": format_unix(state.started_at),
        "message": state.message,
    }
