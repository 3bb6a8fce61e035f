"""The first deployment (change "new"), keeping the stable revision, and a stable that is lost.

A stable revision is lost when status (else the Service) names it and its
Deployment is gone: deleted by someone, or a status restored without it.
A spec that still makes that revision makes it again (:func:`keep`); one
that makes another revision never promotes that revision unjudged
(:func:`replace_lost`). A stable that never served is no baseline: the spec
that changes it deploys as a first revision in its place (:func:`replace_unserved`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from vigil.common.times import parse_time
from vigil.core import naming
from vigil.core.desired import RevisionInfo
from vigil.core.observed import DeploymentView, service_revision
from vigil.core.reconcile import bake
from vigil.core.reconcile.cycle import Cycle, aborted, retired, serving_in_place, superseded
from vigil.core.reconcile.plan import Observation, Plan
from vigil.core.reconcile.report import (
    Side,
    failed,
    finish,
    has_served,
    not_ready,
    planned_summary,
    replicas_message,
    stable_outcome,
)
from vigil.core.reconcile.rollback import finished_attempt
from vigil.core.reconcile.switch import finish_cut_switch
from vigil.core.status import find_condition
from vigil.core.vocabulary import (
    FINISHED,
    ChangeKind,
    ConditionType,
    Outcome,
    Phase,
    Reason,
    RequestVerb,
)


def deploy_new(
    cycle: Cycle,
    revision: str,
    identity: str,
    views: Mapping[str, DeploymentView],
    took_over: tuple[Outcome, str, str] | None = None,
) -> Plan:
    """No stable revision yet: deploy this one at once and let it serve (change "new").

    ``took_over``: it takes the place of a lost stable instead (the history's outcome, its
    change kind and why); the candidates left are superseded.
    """
    spec = cycle.spec
    assert spec is not None
    info = RevisionInfo(revision, identity, naming.ROLE_STABLE)
    created = cycle.ensure_revision(info, spec.replicas) and revision not in views
    cycle.serve(revision)
    if took_over is not None:
        _take_over(cycle, revision, views, took_over)
    elif created:
        _deployed_first(cycle, revision, None)
    view = views.get(revision)
    return finish(
        cycle,
        stable_outcome(cycle, revision, view, just_created=created),
        revision=revision,
        stable=Side(view, planned_summary(spec, revision), new=took_over is not None),
    )


def keep(cycle: Cycle, revision: str, identity: str, views: Mapping[str, DeploymentView]) -> Plan:
    """The spec asks for the stable revision: keep it (made again when its Deployment is
    lost), scale it in place, drop any candidate."""
    spec = cycle.spec
    assert spec is not None
    view = views.get(revision)
    if view is None:
        return _make_again(cycle, revision, identity, views)
    resumed = finish_cut_switch(cycle, view, views)
    cycle.ensure_revision(RevisionInfo(revision, identity, naming.ROLE_STABLE), spec.replicas)
    if view.replicas != spec.replicas:
        cycle.event(
            Reason.SCALED,
            f"revision {revision} scaled from {view.replicas} to {spec.replicas} replica(s)",
        )
    # A bake keeps the previous revision until it passes (or traffic goes back to it).
    baking = resumed.bake if resumed else bake.baking(cycle, revision)
    kept = baking.previous if baking else resumed.previous if resumed else None
    _serve_when_ready(cycle, revision, view, views, kept)
    # A first deployment cut short before its status write: its Event and entry now.
    if _deployed_unrecorded(cycle, view):
        replaced = (cycle.obs.status.get("stable") or {}).get("revision")
        _deployed_first(cycle, revision, replaced if replaced != revision else None)
    cycle.keep_in_history(view)
    reached = stable_outcome(cycle, revision, view, just_created=False)
    if baking is not None:
        return bake.watch(cycle, baking, view, views.get(baking.previous), reached)
    return finish(cycle, reached, revision=revision, stable=Side(view))


def never_served(status: Mapping[str, Any], view: DeploymentView) -> bool:
    """Whether the stable revision never served: no pod of it is ready, and status says it
    never did (:func:`has_served`), or Ready has been False since it became the stable as a
    first revision (a spec refused meanwhile changed Ready's reason, which has_served reads)."""
    if view.ready_replicas > 0:
        return False
    if not has_served(status):
        return True
    ready = find_condition(status.get("conditions"), ConditionType.READY) or {}
    turned = parse_time(ready.get("lastTransitionTime"))
    since = parse_time((status.get("stable") or {}).get("since"))
    if ready.get("status") != "False" or turned is None or since is None:
        return False
    return turned <= since and _first_since(status, view.revision, since)


def _first_since(status: Mapping[str, Any], revision: str, since: datetime.datetime) -> bool:
    """Whether the stable became it as a first revision: its history entry is a first
    deployment's, written then. One made the stable by a switch or a go-back (a bake rolled
    back: Ready False from that instant) served at that moment: its entry says otherwise."""
    entry = next((h for h in status.get("history") or () if h.get("revision") == revision), None)
    if entry is None:  # none to tell (a status written in part): as before, by Ready alone
        return True
    written = parse_time(entry.get("at"))
    first = entry.get("outcome") == Outcome.DEPLOYED and entry.get("change") == ChangeKind.NEW
    return first and written is not None and written >= since


def replace_unserved(
    cycle: Cycle,
    revision: str,
    identity: str,
    stable_view: DeploymentView,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """The stable never served (:func:`never_served`): nothing to judge a change against, so
    this revision is deployed as a first one (change "new": no steps, live traffic at once).
    The one that never served is removed at once (its pods may hold the quota or the nodes
    this one needs); a candidate left is superseded."""
    spec = cycle.spec
    assert spec is not None
    info = RevisionInfo(revision, identity, naming.ROLE_STABLE)
    created = cycle.ensure_revision(info, spec.replicas) and revision not in views
    cycle.serve(revision)
    for other, view in views.items():
        if other == stable_view.revision:
            cycle.delete_revision(other)
        elif other != revision:
            cycle.retire(view, superseded(other, f"revision {revision}"))
    _deployed_first(cycle, revision, stable_view.revision)
    view = views.get(revision)
    return finish(
        cycle,
        stable_outcome(cycle, revision, view, just_created=created),
        revision=revision,
        stable=Side(view, planned_summary(spec, revision), new=True),
    )


def _deployed_first(cycle: Cycle, revision: str, replaced: str | None) -> None:
    """The Deployed Event and history entry of a first revision (``replaced``: the stable,
    which never served, it takes the place of). A cycle run again after a kill before its
    status write posts the same Event: named by its occurrence, it is posted once."""
    spec = cycle.spec
    assert spec is not None
    instead = f" in place of revision {replaced}, which never served" if replaced else ""
    cycle.event(
        Reason.DEPLOYED,
        f"revision {revision} (model {spec.model.name} version {spec.model.version}) "
        f"deployed with {spec.replicas} replica(s){instead}",
        occurrence=f"{Reason.DEPLOYED} {revision} {cycle.obs.generation}",
    )
    why = "first revision of this ModelDeployment" + (
        f" (revision {replaced} never served)" if replaced else ""
    )
    cycle.record(
        revision, spec.model.version, spec.server.image, ChangeKind.NEW, Outcome.DEPLOYED, why
    )


def _deployed_unrecorded(cycle: Cycle, view: DeploymentView) -> bool:
    """Whether the stable is a first revision whose cycle was cut short before its status
    write: no history entry, and status says nothing served. One with ready pods under a
    status lost whole is only found serving (Cycle.keep_in_history): nothing tells them apart."""
    if any(item.get("revision") == view.revision for item in cycle.history):
        return False
    status = cycle.obs.status
    if has_served(status):
        return False
    return bool((status.get("stable") or {}).get("revision")) or view.ready_replicas == 0


def _serve_when_ready(
    cycle: Cycle,
    revision: str,
    view: DeploymentView | None,
    views: Mapping[str, DeploymentView],
    kept: str | None,
) -> None:
    """Live traffic to the stable and any candidate aborted, once the stable can take it:
    one that served in a lost stable's place keeps serving until the stable made again is
    available (the Service only moves to an available revision)."""
    standin = serving_in_place(cycle, revision, view, views)
    if standin is not None:
        cycle.serve(standin.revision)
        return
    cycle.serve(revision)
    _abort_others(cycle, revision, views, kept)


def _abort_others(
    cycle: Cycle, revision: str, views: Mapping[str, DeploymentView], kept: str | None
) -> None:
    """A spec change back to the stable revision aborts the rollout."""
    for other, other_view in views.items():
        if other not in (revision, kept):
            cycle.retire(other_view, aborted(other, revision))


def _make_again(
    cycle: Cycle, revision: str, identity: str, views: Mapping[str, DeploymentView]
) -> Plan:
    """The stable's Deployment is gone and the spec still makes it: made again, its history
    entry kept, Degraded until its pods are back."""
    spec = cycle.spec
    assert spec is not None
    # Never served: its first Deployment never came (a refused write), deployed as first.
    if not has_served(cycle.obs.status):
        return deploy_new(cycle, revision, identity, views)
    cycle.ensure_revision(RevisionInfo(revision, identity, naming.ROLE_STABLE), spec.replicas)
    baking = bake.baking(cycle, revision)
    _serve_when_ready(cycle, revision, None, views, baking.previous if baking else None)
    cycle.event(
        Reason.DEPLOYED,
        f"the Deployment of stable revision {revision} was missing (deleted outside the "
        f"operator); made again from the spec with {spec.replicas} replica(s)",
        warning=True,
    )
    if not any(item.get("revision") == revision for item in cycle.history):
        why = "made again from the spec: its Deployment was missing"
        cycle.record(revision, spec.model.version, spec.server.image, None, Outcome.DEPLOYED, why)
    message = f"{replicas_message(revision, 0, spec.replicas)} (its Deployment was missing)"
    reached = not_ready(Phase.DEGRADED, Reason.REPLICAS_UNAVAILABLE, message, progressing=True)
    summary = planned_summary(spec, revision)
    plan = finish(cycle, reached, revision=revision, stable=Side(None, summary))
    # A bake under way goes on once the Deployment reports.
    plan.status["bake"] = cycle.obs.status.get("bake") if baking else None
    return plan


def lost_revision(obs: Observation, views: Mapping[str, DeploymentView]) -> str | None:
    """The stable revision status (else the Service) names whose Deployment is gone, unless
    a live revision serves in its place (a switch cut short moved the Service)."""
    recorded = (obs.status.get("stable") or {}).get("revision") or None
    selected = service_revision(obs.service)
    # A candidate the Service selects serves in a lost stable's place (_hold_lost): no stable.
    if recorded in views or (selected in views and views[selected].role != naming.ROLE_CANDIDATE):
        return None
    # A live revision the Service selects is no lost one (with status lost too, the candidate
    # serving in a lost stable's place was taken for it, and kept: promoted unjudged).
    lost = recorded or (selected if selected not in views else None)
    return str(lost) if lost else None


def found_by_label(cycle: Cycle, stable_view: DeploymentView, revision: str) -> None:
    """Say so when the stable was found by its Deployment's label alone (status lost, and
    a canary's Service names no revision): the rollout starts again against it."""
    recorded = (cycle.obs.status.get("stable") or {}).get("revision")
    if stable_view.revision in (recorded, service_revision(cycle.obs.service)):
        return
    candidate = cycle.obs.status.get("candidate") or {}
    again = "goes on" if candidate.get("revision") == revision else "starts again"
    missing = f" (revision {recorded}: its Deployment is missing)" if recorded else ""
    cycle.event(
        Reason.ROLLOUT_RETRIED,
        f"status names no live stable revision{missing} and the Service selects none: "
        f"revision {stable_view.revision}, whose Deployment is labelled stable, keeps serving "
        f"as the stable; the rollout of revision {revision} {again}",
        warning=True,
    )


def replace_lost(
    cycle: Cycle,
    lost: str | None,
    revision: str,
    identity: str,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """The stable is lost and the spec makes another revision, which never takes its place
    unjudged: a person's promote, or a change without steps, deploys it in its place; else
    the rollout holds (:func:`_hold_lost`)."""
    spec = cycle.spec
    assert spec is not None
    previous = cycle.obs.status.get("candidate") or {}
    mine = previous if previous.get("revision") == revision else {}
    # The stable's identity went with its Deployment: the cautious kind, as classify_change.
    change = str(mine.get("change") or ChangeKind.REPLACEMENT)
    gone = (
        f"the Deployment of stable revision {lost} is missing"
        if lost
        else "no stable revision's Deployment is left"
    )
    asked = cycle.obs.request.revision if cycle.obs.request is not None else None
    # With no candidate in status the plugin names the serving revision: here, the lost one.
    if cycle.verb == RequestVerb.PROMOTE and asked in (None, "", revision, lost):
        cycle.answer(True, f"revision {revision} takes the stable's place ({gone})")
        why = f"promoted by a person: {gone}"
        return deploy_new(cycle, revision, identity, views, (Outcome.PROMOTED, change, why))
    held = _why_held(cycle, change, mine, revision)
    if held is None:
        why = f"deployed in place of the stable (a change without steps): {gone}"
        return deploy_new(cycle, revision, identity, views, (Outcome.DEPLOYED, change, why))
    ended = f" (it ended {mine['outcome']})" if mine.get("outcome") in FINISHED else ""
    back = f"set the spec back to revision {lost}'s to make it again, or " if lost else ""
    message = (
        f"{gone} (deleted outside the operator) and the spec makes revision {revision}, "
        f"which is {held}{ended}: {back}`kubectl vigil promote` to make revision "
        f"{revision} the stable"
    )
    return _hold_lost(cycle, lost, revision, mine, message, views)


def _why_held(cycle: Cycle, change: str, mine: Mapping[str, Any], revision: str) -> str | None:
    """Why the revision may not take a lost stable's place by itself (None: it may, as a
    change without steps switches once available)."""
    spec = cycle.spec
    assert spec is not None
    if spec.rollout.problem:
        return "not promoted while spec.rollout cannot be read"
    if spec.rollout.policy(change, spec.monitoring.slo).steps:
        return "not promoted without its steps"
    if spec.paused:
        return "paused (spec.paused)"
    if mine.get("outcome") in FINISHED and finished_attempt(cycle, revision) is not None:
        return "held out"
    return None


def _hold_lost(
    cycle: Cycle,
    lost: str | None,
    revision: str,
    mine: Mapping[str, Any],
    message: str,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """Hold until a person says. Live traffic goes to the candidate, at the stable's
    replicas: unjudged, but the one revision left that can answer (pointing the Service at
    the lost stable would fail every request). A rejected candidate is removed, and traffic
    goes to the lost stable's Service, which answers once the spec makes it again."""
    view = views.get(revision)
    rejected = mine.get("outcome") in FINISHED
    # Whatever its pods' readiness now (the missing stable has none): no flapping Service.
    serving = not rejected and view is not None
    if serving:
        assert cycle.spec is not None and view is not None
        cycle.serve(revision)
        if view.replicas != cycle.spec.replicas:  # all the traffic: the stable's capacity
            cycle.scale_revision(revision, cycle.spec.replicas)
        message = f"{message}; meanwhile revision {revision} serves all live traffic"
    elif lost:
        cycle.serve(lost)
    if rejected:
        cycle.delete_revision(revision)
    previous = find_condition(cycle.obs.status.get("conditions"), ConditionType.READY) or {}
    if previous.get("message") != message:
        cycle.event(Reason.ROLLOUT_FAILED, message, warning=True)
    if cycle.verb:
        cycle.answer(False, message)
    reached = failed(Reason.ROLLOUT_FAILED, message)
    recorded = cycle.obs.status.get("stable")
    stable = Side(None, {**recorded, "replicas": 0, "readyReplicas": 0}) if recorded else None
    # The rollout's state as it stood (it resumes should the stable come back).
    frozen = {**mine, "weight": 100 if serving else 0, "shadowPercent": None} if mine else None
    candidate = Side(views.get(revision), frozen, rollout=frozen) if frozen else None
    return finish(cycle, reached, revision=revision, stable=stable, candidate=candidate)


def _take_over(
    cycle: Cycle,
    revision: str,
    views: Mapping[str, DeploymentView],
    took_over: tuple[Outcome, str, str],
) -> None:
    """The revision deployed in a lost stable's place: a Warning saying so, its history
    entry, and the other candidates superseded."""
    spec = cycle.spec
    assert spec is not None
    outcome, change, why = took_over
    for other, view in views.items():
        if other != revision:
            cycle.retire(
                view,
                retired(
                    Reason.ROLLOUT_SUPERSEDED,
                    Outcome.SUPERSEDED,
                    other,
                    f"revision {revision} took the stable's place",
                ),
            )
    cycle.event(
        Reason.DEPLOYED,
        f"revision {revision} (model {spec.model.name} version {spec.model.version}) "
        f"serves with {spec.replicas} replica(s), {why}",
        warning=True,
    )
    cycle.record(revision, spec.model.version, spec.server.image, change, outcome, why)
