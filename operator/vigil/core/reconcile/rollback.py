"""A stepped rollout that ends badly: rolled back (the gates, a person) or failed (a deadline).

The candidate leaves live and shadow traffic at once; it is removed by the
next cycle, once the status records the outcome, and stays out until the
spec changes or a person retries. A stepped rollback marks the candidate's
Deployment first (``vigil.dev/ended``): its status write lost after the
Event, the next cycle ends the attempt the same way (:func:`ended_unrecorded`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vigil.common.objects import body
from vigil.core import naming
from vigil.core.candidate import state_to_status
from vigil.core.observed import DeploymentView
from vigil.core.reconcile.cycle import Cycle, serving_in_place
from vigil.core.reconcile.plan import REMOVE_AFTER_OUTCOME_SECONDS, Plan
from vigil.core.reconcile.report import Side, finish, not_ready
from vigil.core.reconcile.shadow import set_stable_shadow
from vigil.core.rollout import Decision
from vigil.core.spec import RolloutPolicy
from vigil.core.vocabulary import FINISHED, Action, Answer, Outcome, Phase, Reason, RequestVerb


def stable_alone(cycle: Cycle, stable_view: DeploymentView) -> DeploymentView:
    """The stable without shadow copies, alone behind the Service and route; but a revision
    serving in its place while it is not available (its Deployment made again:
    :func:`serving_in_place`) keeps serving until it is (never a Service over no ready pod).
    The revision left serving."""
    set_stable_shadow(cycle, stable_view, None)
    standin = serving_in_place(cycle, stable_view.revision, stable_view, cycle.views())
    serving = standin or stable_view
    cycle.serve(serving.revision)
    cycle.keep_in_history(stable_view)
    return serving


#: What :func:`in_place_words` says, between the two revisions.
_IN_PLACE = " serves all live traffic until revision "


def in_place_words(standin: DeploymentView, stable: str) -> str:
    """Who serves while a stand-in keeps the stable's place (:func:`stable_alone`), in a
    message."""
    return f"revision {standin.revision}{_IN_PLACE}{stable} is available"


def _as_it_stands(
    summary: Mapping[str, Any], stable_view: DeploymentView, serving: DeploymentView
) -> dict[str, Any]:
    """An ended attempt's summary as this cycle finds it: a stand-in that served when it
    ended may have handed over to the stable since (the message's last clause says who
    serves), or be the ended revision itself (its replicas and all live traffic)."""
    now = dict(summary)
    head, sep, last = str(summary.get("message") or "").rpartition("; ")
    if sep and _IN_PLACE in last:
        stable = stable_view.revision
        words = (
            in_place_words(serving, stable)
            if serving.revision != stable
            else f"revision {stable} keeps serving"
        )
        now["message"] = f"{head}; {words}"
    if serving.revision == summary.get("revision"):
        now["weight"] = 100
    else:
        now.update(weight=0, replicas=0, readyReplicas=0)
    return now


def roll_back(
    cycle: Cycle,
    stable_view: DeploymentView,
    decision: Decision,
    summary: dict[str, Any],
    golden: Mapping[str, Any] | None,
) -> Plan:
    """The candidate leaves live and shadow traffic now and is removed by the next cycle.

    The stable (untouched) keeps serving at full capacity. The candidate's
    removal waits for the status that records the outcome: an operator
    stopped between the two would otherwise find the candidate gone with
    no outcome recorded, start it again and roll it back a second time.
    """
    revision = str(summary["revision"])
    failed = decision.action == Action.FAIL
    message = (
        f"revision {revision} {'failed' if failed else 'rolled back'} at step "
        f"{decision.state.step + 1} ({decision.reason}): {decision.message}; "
        f"revision {stable_view.revision} keeps serving"
    )
    summary.update(state_to_status(decision.state))
    summary["golden"] = golden
    if (candidate := cycle.views().get(revision)) is not None and summary.get("startedAt"):
        words = f"{decision.state.step} {decision.reason} {decision.message}"
        mark = {naming.ANNOTATION_ENDED: f"{decision.action} {summary['startedAt']} {words}"}
        # Written before the Service moves and the Event: nothing said is then undone.
        cycle.scale_revision(revision, candidate.replicas, mark)
    return _end(
        cycle,
        stable_view,
        summary,
        Outcome.FAILED if failed else Outcome.ROLLED_BACK,
        (decision.reason, f"{decision.reason}: {decision.message}"),
        message,
        Reason.ROLLOUT_FAILED if failed else Reason.ROLLED_BACK,
    )


def with_replays_cause(cycle: Cycle, decision: Decision, policy: RolloutPolicy) -> Decision:
    """A validate step failed past its deadline: with why its last replay gave no result (a
    model answering HTTP 500 to every batch held it; the deadline's words did not say so)."""
    step = decision.state.step
    if not (
        decision.action == Action.FAIL
        and decision.reason == Reason.PROGRESS_DEADLINE_EXCEEDED
        and step < len(policy.steps)
        and policy.steps[step].kind == "validate"
    ):
        return decision
    return replace(decision, message=cycle.with_golden_pending(decision.message))


def ended_unrecorded(cycle: Cycle, summary: Mapping[str, Any], decision: Decision) -> Decision:
    """The end that a cycle cut short before its status write decided for this attempt
    (``summary``), as its mark on the candidate's Deployment says: decided again in its
    words, whatever this cycle measured (its Event may be out; going on would belie it)."""
    marked = _marked_end(cycle, str(summary["revision"]), summary.get("startedAt"))
    if marked is None:
        return decision
    action, step, reason, message = marked
    answered = cycle.answered or {}
    # Taken by this cycle, it did not end the attempt: an abort only if the end was one.
    aborted = answered.get("verb") == RequestVerb.ABORT and reason == Reason.ABORTED
    if answered.get("answer") == Answer.TAKEN and not aborted:
        cycle.answer(False, f"revision {summary['revision']} ended ({reason}): {message}")
    cycle.plan.run_golden_set = None  # no replay for a candidate that ended
    state = replace(decision.state, step=step, promoting=False)
    return replace(decision, action=action, state=state, reason=reason, message=message)


def end_as_marked(cycle: Cycle, revision: str) -> bool:
    """A candidate superseded after a cycle ended its attempt whose status write was lost:
    removed with the outcome its mark says in history (its Event was out), not superseded."""
    candidate = cycle.obs.status.get("candidate") or {}
    if candidate.get("revision") != revision:
        return False
    marked = _marked_end(cycle, revision, candidate.get("startedAt"))
    if marked is None:
        return False
    action, _, reason, message = marked
    ended = Outcome.FAILED if action == Action.FAIL else Outcome.ROLLED_BACK
    cycle.delete_revision(revision)
    cycle.record(
        revision,
        candidate.get("modelVersion"),
        candidate.get("image"),
        candidate.get("change"),
        ended,
        f"{reason}: {message}",
    )
    return True


def _marked_end(
    cycle: Cycle, revision: str, started: object
) -> tuple[Action, int, str, str] | None:
    """(action, step, reason, words) of the end marked on ``revision``'s Deployment for the
    attempt that started at ``started`` (None: no such mark)."""
    live = cycle.live_deployment(revision)
    mark = body(live).meta.annotations.get(naming.ANNOTATION_ENDED) if live else None
    parts = str(mark or "").split(" ", 4)
    ended = (Action.ROLLBACK, Action.FAIL)
    if len(parts) < 5 or parts[0] not in ended or not started or parts[1] != started:
        return None
    action, _, step, reason, message = parts
    return (Action(action), int(step), reason, message) if step.isdigit() else None


def fetch_failed(
    cycle: Cycle, stable_view: DeploymentView, summary: dict[str, Any], words: str
) -> Plan:
    """The candidate cannot get its model (vigil-fetch's words): it fails now, with or
    without steps, and the stable keeps serving (or the revision serving in its place while
    it is made again: :func:`stable_alone`)."""
    revision = str(summary["revision"])
    standin = serving_in_place(cycle, stable_view.revision, stable_view, cycle.views())
    serving = (
        in_place_words(standin, stable_view.revision)
        if standin is not None
        else f"revision {stable_view.revision} keeps serving"
    )
    message = f"revision {revision} could not fetch its model: {words}; {serving}"
    reason = Reason.ARTIFACT_FETCH_FAILED
    return _end(
        cycle, stable_view, summary, Outcome.FAILED, (reason, f"{reason}: {words}"), message, reason
    )


def bake_failed(cycle: Cycle, previous: DeploymentView, summary: dict[str, Any]) -> Plan:
    """The promoted revision failed its bake: live traffic goes back to the previous revision
    (available), and the promoted one ends like a rolled-back candidate (removed next cycle,
    held out until the spec changes or a person retries)."""
    reason, words = Reason.BAKE_FAILED, str(summary.get("message") or "")
    message = (
        f"revision {summary['revision']} rolled back in its bake period ({reason}): {words}; "
        f"revision {previous.revision} serves again"
    )
    why = (reason, f"{reason}: {words}")
    return _end(cycle, previous, summary, Outcome.ROLLED_BACK, why, message, Reason.ROLLED_BACK)


def _end(
    cycle: Cycle,
    stable_view: DeploymentView,
    summary: dict[str, Any],
    ended: Outcome,
    why: tuple[str, str],
    message: str,
    event: str,
) -> Plan:
    """End an attempt (``why``: the reason, and the history's words): the stable alone now,
    the candidate removed by the next cycle, once the status records the outcome."""
    spec = cycle.spec
    assert spec is not None
    revision = str(summary["revision"])
    serving = stable_alone(cycle, stable_view)
    cycle.plan.recheck_after = REMOVE_AFTER_OUTCOME_SECONDS  # hold_finished removes it
    # One Event per ended attempt, though a cycle run again after a kill judges newer figures
    # and the health loop may have written status in between.
    started = summary.get("startedAt")
    occurrence = f"{ended} {revision} {started}" if started else ""
    cycle.event(event, message, warning=True, occurrence=occurrence)
    cycle.record(
        revision, spec.model.version, spec.server.image, summary.get("change"), ended, why[1]
    )
    cycle.plan.rollout_outcome = ended
    summary.update(
        {
            "outcome": ended,
            "outcomeGeneration": cycle.obs.generation,
            "reason": why[0],
            "message": message,
        }
    )
    return _finished(cycle, stable_view, _as_it_stands(summary, stable_view, serving), serving)


def finished_attempt(cycle: Cycle, revision: str) -> Mapping[str, Any] | None:
    """This revision's attempt as status left it, when it ended (rolled back, failed) and
    neither the spec nor a person has asked for it again since."""
    previous = cycle.obs.status.get("candidate") or {}
    if previous.get("revision") != revision or previous.get("outcome") not in FINISHED:
        return None
    generation = previous.get("outcomeGeneration")
    if cycle.verb == RequestVerb.RETRY or generation != cycle.obs.generation:
        asked = cycle.verb == RequestVerb.RETRY
        if asked:
            cycle.answer(True, f"revision {revision} rolls out again from step 1")
        cycle.event(
            Reason.ROLLOUT_RETRIED,
            f"revision {revision} rolled out again "
            + ("(a person asked)" if asked else "(the spec changed)"),
        )
        return None
    return previous


def hold_finished(
    cycle: Cycle, stable_view: DeploymentView, previous: Mapping[str, Any], revision: str
) -> Plan:
    """A rolled-back or failed revision stays out until the spec changes or a person retries.
    One still serving in the stable's place (:func:`stable_alone`) is removed once the stable
    is available: the Service never selects a revision deleted in the same plan."""
    serving = stable_alone(cycle, stable_view)
    if serving.revision != revision:
        cycle.delete_revision(revision)
    if cycle.verb:
        cycle.answer(
            False,
            f"revision {revision} ended {previous.get('outcome')} "
            f"({previous.get('reason')}); `kubectl vigil retry` rolls it out again",
        )
    return _finished(cycle, stable_view, _as_it_stands(previous, stable_view, serving), serving)


def _finished(
    cycle: Cycle, stable_view: DeploymentView, summary: Mapping[str, Any], serving: DeploymentView
) -> Plan:
    """Status of an ended attempt (``serving``: who serves, the ended revision itself while
    it stands in for the stable: its live replicas then)."""
    failed = summary.get("outcome") == Outcome.FAILED
    reason = (
        str(summary.get("reason") or Reason.PROGRESS_DEADLINE_EXCEEDED)
        if failed
        else Reason.ROLLED_BACK
    )
    message = str(summary.get("message") or "")
    reached = not_ready(
        Phase.FAILED if failed else Phase.ROLLED_BACK, reason, message, progressing=False
    )
    return finish(
        cycle,
        reached,
        revision=str(summary["revision"]),
        stable=Side(stable_view),
        candidate=Side(
            serving if serving.revision == summary["revision"] else None, summary, rollout=summary
        ),
    )
