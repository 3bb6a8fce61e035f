"""The reconcile decision, as a runbook: one line per situation, in order (see the package)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vigil.common import objects
from vigil.common.objects import body
from vigil.core import naming
from vigil.core.observed import DeploymentView, service_revision
from vigil.core.reconcile import bake, bluegreen, stable
from vigil.core.reconcile.cycle import Cycle, serving_in_place, superseded
from vigil.core.reconcile.plan import RECHECK_SECONDS, Apply, Delete, Observation, Plan, Route
from vigil.core.reconcile.report import Side, failed, finish, meanwhile
from vigil.core.reconcile.rollback import stable_alone
from vigil.core.reconcile.shadow import make_settings_again
from vigil.core.reconcile.switch import finish_cut_switch, finish_superseded_switch
from vigil.core.revision import REVISION_LENGTH, classify_change, compute_identity, compute_revision
from vigil.core.spec import ModelDeploymentSpec, SpecError, outline_spec, parse_spec
from vigil.core.status import find_condition
from vigil.core.vocabulary import (
    ChangeKind,
    ConditionType,
    Reason,
    RequestVerb,
)


def decide(obs: Observation) -> Plan:
    """The whole reconcile decision for one ModelDeployment (see the package docstring)."""
    cycle = Cycle(obs)
    cycle.verb = _read_request(cycle)
    plan = _decide(cycle)
    # Every request gets an answer: one that no branch took is refused, saying what there is.
    if cycle.verb:
        ready = find_condition(plan.status.get("conditions"), ConditionType.READY) or {}
        cycle.answer(False, f"no rollout with steps under way ({ready.get('message')})")
    last = cycle.answered or obs.status.get("lastRequest")
    if last:
        plan.status["lastRequest"] = last
    plan.status["httpRoute"] = cycle.routed_by()
    # The Model column's value: spec.model.name defaults to the object's name.
    plan.status["model"] = outline_spec(obs.owner.name, obs.spec).model_name
    plan.actions = cycle.ordered_actions()
    return plan


def _decide(cycle: Cycle) -> Plan:
    obs = cycle.obs
    views = cycle.views()
    stable_revision = find_stable_revision(obs.status, views, obs.service)
    stable_view = views.get(stable_revision) if stable_revision else None

    # Read the spec; what the schema let through but pods cannot take stops here.
    try:
        spec = obs.parsed or parse_spec(obs.owner.name, obs.spec)
    except SpecError as error:
        cycle.finish_cut_retire(None, stable_view)
        retired, held = _supersede(cycle, stable_view, None)
        return _blocked(cycle, stable_view, Reason.INVALID_SPEC, str(error), retired, held)
    problem = naming.name_problem(obs.owner.name, REVISION_LENGTH)
    if problem is not None:
        return _blocked(cycle, stable_view, Reason.INVALID_SPEC, problem)
    cycle.spec = spec

    # Never take over a Service someone else created under our name.
    if obs.foreign_service:
        return _service_conflict(cycle, stable_view, views)

    revision = compute_revision(spec, obs.sidecar_image)
    # A candidate retired by a cycle cut short keeps its history entry.
    cycle.finish_cut_retire(revision, stable_view)
    # A stable whose Deployment is gone while this spec still makes it: made again (kept).
    if stable.lost_revision(obs, views) == revision:
        stable_revision, stable_view = revision, None
    change = _classify(obs, stable_revision, stable_view, revision, spec)

    # A change (or a bake) is never judged on a policy or thresholds the operator cannot read.
    if unreadable := _unreadable_section(spec, change, obs.status):
        retired, held = _supersede(cycle, stable_view, revision)
        return _blocked(cycle, stable_view, Reason.INVALID_SPEC, unreadable, retired, held)

    # A new revision needs its reference profile before its pods can start.
    if _missing_reference(obs, spec) and revision not in views:
        ref = spec.monitoring.reference
        assert ref is not None
        message = (
            f"ConfigMap {ref.name!r} with key {ref.key!r} (spec.monitoring.reference) "
            "was not found in this namespace"
        )
        retired, _held = _supersede(cycle, stable_view, revision)
        plan = _blocked(cycle, stable_view, Reason.REFERENCE_NOT_FOUND, message, retired)
        plan.recheck_after = RECHECK_SECONDS
        return plan
    plan = _act(cycle, revision, change, stable_view, views)
    # A live revision's settings, deleted by hand, come back (not only the spec's revision's).
    _settings_again(cycle, views)
    # Children a revision left behind go with it.
    _sweep_leftovers(cycle, views)
    return plan


def _act(
    cycle: Cycle,
    revision: str,
    change: ChangeKind | None,
    stable_view: DeploymentView | None,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """No stable yet: deploy at once. The stable asked for: keep it. Else replace it."""
    assert cycle.spec is not None
    identity = compute_identity(cycle.spec)
    if change is ChangeKind.NEW and stable_view is not None:
        # A stable that never served (_classify): this revision takes its place as a first one.
        return stable.replace_unserved(cycle, revision, identity, stable_view, views)
    if change is ChangeKind.NEW:
        # Unless a stable was there: its Deployment gone, a candidate left or a status naming it.
        lost = stable.lost_revision(cycle.obs, views)
        if lost is not None or any(v.role == naming.ROLE_CANDIDATE for v in views.values()):
            return stable.replace_lost(cycle, lost, revision, identity, views)
        return stable.deploy_new(cycle, revision, identity, views)
    if change is None:
        return stable.keep(cycle, revision, identity, views)
    assert stable_view is not None
    stable.found_by_label(cycle, stable_view, revision)
    return bluegreen.replace_stable(cycle, revision, identity, change, stable_view, views)


def _classify(
    obs: Observation,
    stable_revision: str | None,
    stable_view: DeploymentView | None,
    revision: str,
    spec: ModelDeploymentSpec,
) -> ChangeKind | None:
    """The kind of change from the stable revision; from one that never served (a first
    revision whose pods never came: nothing to judge against), "new", as a first one."""
    change = classify_change(
        stable_revision=stable_revision,
        stable_identity=stable_view.identity if stable_view else None,
        desired_revision=revision,
        desired_identity=compute_identity(spec),
    )
    if (
        change is not None
        and stable_view is not None
        and stable.never_served(obs.status, stable_view)
    ):
        return ChangeKind.NEW
    return change


def _service_conflict(
    cycle: Cycle, stable_view: DeploymentView | None, views: Mapping[str, DeploymentView]
) -> Plan:
    """A Service someone else created holds our Service's name: reported, never taken over.
    A switch cut short before its status write is recorded as it happened (Switched, its
    history entry, the bake it started): dropped, it was later taken for an abort."""
    message = (
        f"a Service named {naming.service_name(cycle.obs.owner.name)!r} already exists and "
        "is not owned by this ModelDeployment; rename one of them"
    )
    resumed = finish_cut_switch(cycle, stable_view, views) if stable_view else None
    plan = _blocked(cycle, stable_view, Reason.SERVICE_CONFLICT, message)
    if resumed is not None:
        plan.status["bake"] = resumed.written
    return plan


def _unreadable_section(
    spec: ModelDeploymentSpec, change: ChangeKind | None, status: Mapping[str, Any]
) -> str | None:
    """What makes spec.rollout or spec.monitoring unreadable (an older schema let it in),
    when a change or a bake under way (not one given up: nothing is judged) is to be judged
    by them."""
    baking = (status.get("bake") or {}).get("reason") not in (None, Reason.BAKE_ROLLBACK_FAILED)
    if change in (None, ChangeKind.NEW) and not baking:
        return None
    for section, problem in (
        ("rollout", spec.rollout.problem),
        ("monitoring", spec.monitoring.problem),
    ):
        if problem:
            return f"spec.{section} cannot be used ({problem}); the rollout waits for a fix"
    return None


def _missing_reference(obs: Observation, spec: ModelDeploymentSpec) -> bool:
    return spec.monitoring.reference is not None and not obs.reference_found


def _read_request(cycle: Cycle) -> str:
    """The verb of a person's request to act on ("" for none).

    One answered before (the operator stopped before clearing it) is only
    cleared; an unknown verb is refused.
    """
    request = cycle.obs.request
    if request is None:
        return ""
    if request.request_id and request.request_id == (
        (cycle.obs.status.get("lastRequest") or {}).get("id")
    ):
        cycle.plan.clear_request = request
        return ""
    if request.verb not in tuple(RequestVerb):
        cycle.answer(False, f"unknown request; one of {', '.join(RequestVerb)}")
        return ""
    return request.verb


def find_stable_revision(
    status: Mapping[str, Any],
    views: Mapping[str, DeploymentView],
    service: Mapping[str, Any] | None,
) -> str | None:
    """The revision serving live traffic: the one status names (unless a switch was cut
    short), else the one the Service selects, else the one whose Deployment is labelled
    stable.

    A revision only counts if its Deployment still exists; the fallbacks
    recover from a lost status (restored backup, status wiped), the label
    where the Service names no revision (a canary over both revisions' pods).
    """
    recorded = ((status.get("stable") or {}).get("revision")) or None
    selected = service_revision(service)
    # A switch cut short before its status write: the Service moved to the candidate,
    # labelled stable (the previous revision may be kept for a bake).
    switched = (status.get("candidate") or {}).get("revision")
    switched_view = views.get(selected) if selected and switched == selected else None
    if switched_view is not None and switched_view.role == naming.ROLE_STABLE:
        return switched_view.revision
    if recorded in views:
        return str(recorded)
    # Not a candidate: one serves in a lost stable's place, never promoted by that.
    if selected in views and views[selected].role != naming.ROLE_CANDIDATE:
        return selected
    # A bake's previous revision keeps the label: the one with the most ready pods serves.
    labelled = [view for view in views.values() if view.role == naming.ROLE_STABLE]
    if labelled:
        return max(labelled, key=lambda view: (view.ready_replicas, view.revision)).revision
    return None


def _blocked(
    cycle: Cycle,
    stable_view: DeploymentView | None,
    reason: str,
    message: str,
    retired: Sequence[str] = (),
    held: DeploymentView | None = None,
) -> Plan:
    """Report a spec the operator cannot act on (a warning Event of the same reason); keep
    whatever serves now (but the candidates ``retired``, and the one ``held`` out of
    traffic: see _supersede)."""
    why = message
    standin = _standin(cycle, stable_view)
    if stable_view is not None and standin is not None:
        message = (
            f"{message}; revision {standin.revision} serves all live traffic until revision "
            f"{stable_view.revision} is available"
        )
    elif stable_view is not None and held is not None:
        message = (
            f"{message}; revision {stable_view.revision} serves alone: candidate revision "
            f"{held.revision} gets no live or shadow traffic until the spec is fixed"
        )
    elif stable_view is not None:
        message = f"{message}; {meanwhile(stable_view)}"
    if cycle.previous_reason(ConditionType.READY) != reason:
        cycle.event(reason, message, warning=True)
    if cycle.verb:
        cycle.answer(False, f"the operator cannot act on this spec ({reason}): {message}")
    reached = failed(reason, message)
    plan = finish(cycle, reached, revision=None, stable=Side(stable_view) if stable_view else None)
    # A rollout or bake under way resumes where it stood once the spec is fixed.
    for key in ("candidate", "bake"):
        plan.status[key] = cycle.obs.status.get(key)
    # A candidate retired, or the stable now (its switch cut short, finished by _supersede).
    gone = {*retired, stable_view.revision if stable_view is not None else None}
    if (plan.status["candidate"] or {}).get("revision") in gone:
        plan.status["candidate"] = None
    if held is not None and (plan.status["candidate"] or {}).get("revision") == held.revision:
        plan.status["candidate"] = _held_status(plan.status["candidate"], held, reason, why)
    return plan


#: What a step's evidence is measured from, and the checks judged on it: started again once
#: a held candidate resumes.
_EVIDENCE = ("stepStartedAt", "heldSince", "lastAnalysisAt", "shadowPercent", "failedChecks")


def _held_status(
    previous: Mapping[str, Any], held: DeploymentView, reason: str, why: str
) -> dict[str, Any]:
    """``status.candidate`` of a candidate held out of traffic: its step kept, its share 0
    and why. Its step's evidence starts again once the spec is fixed (the rollout resumes
    at that step): time held out is neither the step's evidence nor a hold's."""
    kept = {key: value for key, value in previous.items() if key not in _EVIDENCE}
    return {
        **kept,
        "replicas": held.replicas,
        "readyReplicas": held.ready_replicas,
        "weight": 0,
        "reason": reason,
        "message": f"{why}; no live or shadow traffic until the spec is fixed",
    }


def _supersede(
    cycle: Cycle, stable_view: DeploymentView | None, revision: str | None
) -> tuple[list[str], DeploymentView | None]:
    """A newer spec that cannot start yet still supersedes the candidates it replaces, so
    none keeps live or shadow traffic unjudged while it waits: those of another revision;
    for a spec that cannot be read (``revision`` None), those running another model version
    or image than it asks for (either makes another revision). A candidate it keeps is held
    out of traffic (its pods stay, to resume): it is not judged meanwhile. The stable then
    serves alone; the revisions retired, and the candidate held. One serving all live
    traffic in the place of a stable not yet available (_standin) keeps serving meanwhile:
    neither retired nor held, and the stable not alone (its Service would select no ready pod)."""
    if stable_view is None:
        return [], None
    # A switch to the stable cut short: finished, its old stable removed (no candidate).
    switched_from = finish_superseded_switch(cycle, stable_view, revision)
    baking = bake.baking(cycle, stable_view.revision)
    standin = _standin(cycle, stable_view)
    serving = {
        stable_view.revision,
        baking.previous if baking else None,
        standin.revision if standin else None,
        switched_from,
    }
    kept = serving | {revision}
    others = [
        view
        for other, view in cycle.views().items()
        if other not in kept and (revision or _asks_another(cycle.obs.spec, view))
    ]
    by = f"revision {revision}" if revision else "the new spec"
    retired: list[str] = []
    for view in others:
        # One rolled back or failed, removed a cycle after its outcome, keeps that outcome.
        if cycle.ended(view.revision):
            cycle.delete_revision(view.revision)
            continue
        retired.append(view.revision)
        cycle.retire(view, superseded(view.revision, by))
    held = _held_out(cycle, serving | {view.revision for view in others})
    if standin is None and (others or held is not None):
        stable_alone(cycle, stable_view)
        # A spec.rollout not read names no route: the one status recorded leaves them.
        recorded = cycle.obs.status.get("httpRoute")
        if recorded and (cycle.spec is None or cycle.spec.rollout.problem):
            cycle.wanted_route = Route(stable_view.revision, http_route=str(recorded))
    return retired, held


def _standin(cycle: Cycle, stable_view: DeploymentView | None) -> DeploymentView | None:
    """The revision serving all live traffic in the place of a stable not yet available (its
    Deployment made again): stable.keep's rule, under which it serves until the stable is."""
    if stable_view is None:
        return None
    return serving_in_place(cycle, stable_view.revision, stable_view, cycle.views())


def _held_out(cycle: Cycle, passed: set[str | None]) -> DeploymentView | None:
    """The candidate a blocked spec keeps (a revision not ``passed``: not the stable, a
    bake's previous one or one superseded), unless its attempt ended (rolled back, failed:
    out of traffic already)."""
    for view in cycle.views().values():
        candidate = view.role == naming.ROLE_CANDIDATE and view.revision not in passed
        if candidate and not cycle.ended(view.revision):
            return view
    return None


def _asks_another(spec: Mapping[str, Any], view: DeploymentView) -> bool:
    """Whether a spec that cannot be read asks for another model version or image than the
    revision ``view`` runs (a value missing or unrecorded says nothing)."""
    asked = (
        objects.section(spec, "model").get("version"),
        objects.section(spec, "server").get("image"),
    )
    return any(
        isinstance(want, str) and want and have is not None and want != have
        for want, have in zip(asked, (view.model_version, view.image), strict=True)
    )


def _settings_again(cycle: Cycle, views: Mapping[str, DeploymentView]) -> None:
    """Make again a live revision's settings ConfigMap deleted outside the operator, from the
    copy its Deployment carries (shadow.make_settings_again), unless the plan writes it (the
    spec's revision: Cycle.ensure_revision) or removes the revision. During a rollout the
    spec renders the candidate only: without this the stable's pods could not start again."""
    owner = cycle.obs.owner.name
    planned = {(a.kind, a.name) for a in cycle.plan.actions if isinstance(a, Apply | Delete)}
    deleted = {(a.kind, a.name) for a in cycle.plan.actions if isinstance(a, Delete)}
    for revision in views:
        name = naming.sidecar_configmap_name(owner, revision)
        if cycle.exists("ConfigMap", name) or ("ConfigMap", name) in planned:
            continue
        if ("Deployment", naming.deployment_name(owner, revision)) not in deleted:
            make_settings_again(cycle, revision)


def _sweep_leftovers(cycle: Cycle, views: Mapping[str, DeploymentView]) -> None:
    """Delete a revision's settings ConfigMap and Service once its Deployment is gone.

    A revision is removed child by child (Deployment first); an operator
    stopped in between leaves the others behind, and nothing else would
    remove them before the ModelDeployment itself goes.
    """
    plan = cycle.plan
    kept = set(views) | {
        str(action.manifest["metadata"]["labels"].get(naming.LABEL_REVISION))
        for action in plan.actions
        if isinstance(action, Apply) and action.kind == "Deployment"
    }
    deleted = {(action.kind, action.name) for action in plan.actions if isinstance(action, Delete)}
    main_service = naming.service_name(cycle.obs.owner.name)
    for (kind, name), item in sorted(cycle.live.items()):
        if kind not in ("ConfigMap", "Service") or name == main_service:
            continue
        revision = body(item).meta.labels.get(naming.LABEL_REVISION)
        if revision is None or str(revision) in kept or (kind, name) in deleted:
            continue
        plan.actions.append(Delete(kind, name))
