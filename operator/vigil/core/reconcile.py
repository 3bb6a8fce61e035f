"""The reconcile decision: from what is (observation) to what to do (plan).

Pure evaluation in the manner of Argo Rollouts: `decide()` reads a snapshot
(the ModelDeployment and its live children), returns the writes to make,
the Events to post and the complete new status, and touches nothing. The
operator layer applies the writes in order, then persists the status once.

The state machine, Flagger-style (each step reads like a runbook line):

    spec invalid or names too long       -> report InvalidSpec, touch nothing
    a foreign Service holds our name     -> report ServiceConflict, touch nothing
    no stable revision                   -> deploy the revision as stable (change "new")
    stable revision == desired revision  -> keep it: scale in place, drop any candidate
        lost pods, spec unchanged        -> report Degraded (ReplicasUnavailable) until back
    stable revision != desired revision  -> blue/green:
        reference profile missing        -> hold, report ReferenceNotFound, keep stable
        paused                           -> hold where it is
        candidate not yet available      -> start it and wait (stable keeps serving)
        candidate failed                 -> report RolloutFailed (stable keeps serving)
        candidate available              -> move the Service, then delete the old revision

Safety rules: the Service is only ever moved to a revision whose Deployment
is available (all replicas ready), and the old revision is deleted only
after the move was written: the Service never selects zero Ready pods
during a switch. With a route outside the operator's children (a Gateway
API HTTPRoute), every plan says where it points, and a plan's actions run
in one order: writes, then the route, then deletions. So the route names
only Services that exist, and a Service is deleted only once the route has
left it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vigil.core import naming, rollout
from vigil.core.candidate import (
    ANSWER_REFUSED,
    ANSWER_TAKEN,
    FINISHED,
    OUTCOME_FAILED,
    OUTCOME_ROLLED_BACK,
    REQUEST_VERBS,
    Request,
    RolloutInputs,
    RoutePlanner,
    golden_from_status,
    state_from_status,
    state_to_status,
)
from vigil.core.desired import (
    SIDECAR_CONFIG_KEY,
    Owner,
    RevisionInfo,
    desired_configmap,
    desired_deployment,
    desired_revision_service,
    desired_service,
    needs_write,
    owner_reference,
    with_applied_hash,
)
from vigil.core.health import monitoring_settings
from vigil.core.observed import DeploymentView, service_revision, view_deployment
from vigil.core.revision import (
    REVISION_LENGTH,
    Change,
    classify_change,
    compute_identity,
    compute_revision,
)
from vigil.core.spec import ModelDeploymentSpec, SpecError, parse_spec
from vigil.core.status import (
    CONDITION_PROGRESSING,
    CONDITION_READY,
    PHASE_DEGRADED,
    PHASE_FAILED,
    PHASE_HEALTHY,
    PHASE_PENDING,
    PHASE_PROGRESSING,
    PHASE_ROLLED_BACK,
    ConditionState,
    build_conditions,
    find_condition,
    kstatus_conditions,
    phase_with_health,
    push_history,
    timestamp,
)

# Reasons (one CamelCase word each; they are the API's vocabulary).
REASON_AVAILABLE = "Available"
REASON_COMPLETE = "Complete"
REASON_DEPLOYING = "Deploying"
REASON_SCALING = "Scaling"
REASON_REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
REASON_ROLLOUT_IN_PROGRESS = "RolloutInProgress"
REASON_ROLLOUT_FAILED = "RolloutFailed"
REASON_ROLLOUT_PAUSED = "RolloutPaused"
REASON_DEPLOY_FAILED = "DeployFailed"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_REFERENCE_NOT_FOUND = "ReferenceNotFound"
REASON_SERVICE_CONFLICT = "ServiceConflict"

# Event reasons.
EVENT_DEPLOYED = "Deployed"
EVENT_SCALED = "Scaled"
EVENT_SWITCHED = "Switched"
EVENT_ROLLOUT_STARTED = "RolloutStarted"
EVENT_ROLLOUT_ABORTED = "RolloutAborted"
EVENT_ROLLOUT_SUPERSEDED = "RolloutSuperseded"
EVENT_ROLLOUT_FAILED = "RolloutFailed"
EVENT_DEPLOY_FAILED = "DeployFailed"
EVENT_INVALID_SPEC = "InvalidSpec"
EVENT_REFERENCE_NOT_FOUND = "ReferenceNotFound"
EVENT_SERVICE_CONFLICT = "ServiceConflict"
EVENT_REQUEST_REFUSED = "RequestRefused"

# History outcomes.
OUTCOME_DEPLOYED = "Deployed"
OUTCOME_PROMOTED = "Promoted"
OUTCOME_SUPERSEDED = "Superseded"
OUTCOME_ABORTED = "Aborted"

# How soon to look again when waiting on something no watch reports (a ConfigMap).
RECHECK_SECONDS = 15.0


@dataclass(frozen=True)
class Observation:
    """A snapshot of one ModelDeployment and what it owns."""

    owner: Owner
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]
    service: Mapping[str, Any] | None
    configmaps: Sequence[Mapping[str, Any]]
    reference_found: bool  # False only when spec.monitoring.reference names a missing key
    now: datetime.datetime
    sidecar_image: str
    foreign_service: bool = False  # a Service named like ours exists and someone else owns it
    #: Per-revision Services ``<name>-<revision>`` (rollouts address one revision through them).
    revision_services: Sequence[Mapping[str, Any]] = ()
    #: What the operator measured for the candidate (rollouts with steps).
    rollout: RolloutInputs | None = None
    #: A person's request from the annotations (kubectl vigil ...), if any.
    request: Request | None = None
    #: The traffic router's plan (replicas, Service selector); None = stable-only selector.
    route_planner: RoutePlanner | None = None


@dataclass(frozen=True)
class Apply:
    """Create or update an object (server-side apply of the full manifest)."""

    manifest: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True)
class Delete:
    """Delete an owned object by kind and name."""

    kind: str
    name: str


#: A route's traffic without a candidate (only the weights matter to a route).
ALL_TO_STABLE = rollout.Traffic(0, 0, 0, 0)


@dataclass(frozen=True)
class Route:
    """Point the router's route (an HTTPRoute) at the stable and the candidate.

    Without a candidate the route sends everything to the Service ``<name>``,
    which selects the serving revision and lives as long as the
    ModelDeployment: no revision Service is named outside a rollout.
    """

    stable: str
    candidate: str | None = None
    traffic: rollout.Traffic = ALL_TO_STABLE


Action = Apply | Delete | Route


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelDeployment."""

    reason: str
    message: str
    warning: bool = False


@dataclass
class Plan:
    """What to do, in order, and the status to persist after doing it."""

    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    recheck_after: float | None = None
    #: The rollout asks for a golden-set replay against the candidate (then decide again).
    run_golden_set: rollout.GoldenSetRef | None = None
    #: A finished rollout: Promoted, RolledBack, Failed (for the operator's metric).
    rollout_outcome: str | None = None
    #: The manual request to clear from the annotations once the status is written.
    clear_request: Request | None = None


@dataclass
class _Outcome:
    """The situation reached, from which conditions and phase follow."""

    phase: str
    ready: ConditionState
    progressing: ConditionState


def _ready(ok: bool, reason: str, message: str) -> ConditionState:
    return ConditionState(CONDITION_READY, ok, reason, message)


def _progressing(active: bool, reason: str, message: str) -> ConditionState:
    return ConditionState(CONDITION_PROGRESSING, active, reason, message)


def refused_write_status(
    planned: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    message: str,
    *,
    generation: int,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status after the API server refused one of a plan's writes as invalid (400/422).

    The same write will not succeed until the spec (or the cluster's policy)
    changes, so the refusal is the outcome: Ready and Progressing False with
    reason DeployFailed and the API server's words, Stalled True, phase Failed.
    Whatever already serves keeps serving (the writes after the refused one,
    such as removing an old revision, did not happen).
    """
    ready = ConditionState(CONDITION_READY, False, REASON_DEPLOY_FAILED, message)
    progressing = ConditionState(CONDITION_PROGRESSING, False, REASON_DEPLOY_FAILED, message)
    conditions = build_conditions(
        [ready, progressing, *kstatus_conditions(progressing, True, ready)],
        (previous or {}).get("conditions"),
        generation=generation,
        now=now,
    )
    return {
        **planned,
        "observedGeneration": generation,
        "phase": PHASE_FAILED,
        "conditions": conditions,
    }


def _not_ready(phase: str, reason: str, message: str, *, progressing: bool) -> _Outcome:
    """Not Ready, for one reason that Progressing shares (True while work goes on)."""
    return _Outcome(
        phase, _ready(False, reason, message), _progressing(progressing, reason, message)
    )


def _is_deleting(item: Mapping[str, Any]) -> bool:
    return bool((item.get("metadata") or {}).get("deletionTimestamp"))


def _views(deployments: Sequence[Mapping[str, Any]]) -> dict[str, DeploymentView]:
    """Live revisions by revision; objects already being deleted no longer count."""
    views: dict[str, DeploymentView] = {}
    for deployment in deployments:
        if _is_deleting(deployment):
            continue
        view = view_deployment(deployment)
        if view is not None:
            views[view.revision] = view
    return views


def find_stable_revision(
    status: Mapping[str, Any],
    views: Mapping[str, DeploymentView],
    service: Mapping[str, Any] | None,
) -> str | None:
    """The revision serving live traffic: the one status names, else the one the Service selects.

    A revision only counts if its Deployment still exists; the Service
    fallback recovers from a lost status (restored backup, status wiped).
    """
    recorded = ((status.get("stable") or {}).get("revision")) or None
    if recorded in views:
        return str(recorded)
    selected = service_revision(service)
    if selected in views:
        return selected
    return None


def _revision_summary(view: DeploymentView | None, fallback: Mapping[str, Any]) -> dict[str, Any]:
    if view is None:
        return dict(fallback)
    return {
        "revision": view.revision,
        "modelVersion": view.model_version or fallback.get("modelVersion"),
        "image": view.image or fallback.get("image"),
        "replicas": view.replicas,
        "readyReplicas": view.ready_replicas,
    }


def has_served(status: Mapping[str, Any]) -> bool:
    """Whether the stable revision has served (been Ready) at least once.

    For the monitoring loop: a revision still being deployed for the first
    time (Ready=False, reason Deploying) or one that never came up
    (DeployFailed, no verdict yet) has no sidecar to measure, and judging it
    would only say "metrics unavailable" (a Warning Event and a status write
    on every first deployment that a cycle happens to catch). A revision that
    served and lost its pods is still judged: that verdict is news.
    """
    if not (status.get("stable") or {}).get("revision"):
        return False
    reason = _previous_reason(status, CONDITION_READY)
    if reason == REASON_DEPLOYING:
        return False
    return not (reason == REASON_DEPLOY_FAILED and not status.get("health"))


def _previous_reason(status: Mapping[str, Any], kind: str) -> str | None:
    condition = find_condition(status.get("conditions"), kind)
    return None if condition is None else condition.get("reason")


class _Builder:
    """Collects actions, events and status pieces during one decision."""

    def __init__(self, obs: Observation) -> None:
        self.obs = obs
        self.plan = Plan()
        self.live: dict[tuple[str, str], Mapping[str, Any]] = {}
        for kind, items in (("Deployment", obs.deployments), ("ConfigMap", obs.configmaps)):
            for item in items:
                if not _is_deleting(item):
                    self.live[(kind, str((item.get("metadata") or {}).get("name")))] = item
        if obs.service is not None:
            self.live[("Service", str(obs.service["metadata"]["name"]))] = obs.service
        for item in obs.revision_services:
            if not _is_deleting(item):
                self.live[("Service", str((item.get("metadata") or {}).get("name")))] = item
        self.history: list[dict[str, Any]] = [
            dict(item) for item in obs.status.get("history") or ()
        ]
        #: Where the route points (a route outside the desired set only; see Route).
        self.wanted_route: Route | None = None
        #: The verb of a person's request still to answer ("" = none, or answered).
        self.verb = ""
        #: The answer given this cycle (``status.lastRequest``).
        self.answered: dict[str, Any] | None = None

    def answer(self, taken: bool, message: str) -> None:
        """Answer the person's request: taken, or refused with the reason (also an Event).

        The answer goes into ``status.lastRequest`` (``kubectl vigil --wait``
        reads it), and the annotation is cleared once that status is written.
        """
        request = self.obs.request
        if request is None:
            return
        self.verb = ""
        self.plan.clear_request = request
        self.answered = {
            "id": request.request_id or None,
            "verb": request.verb,
            "answer": ANSWER_TAKEN if taken else ANSWER_REFUSED,
            "message": message,
            "at": timestamp(self.obs.now),
        }
        if not taken:
            self.event(
                EVENT_REQUEST_REFUSED, f"request {request.verb!r} refused: {message}", warning=True
            )

    def ensure(self, manifest: Mapping[str, Any]) -> bool:
        """Queue a write when the live object differs; True when one was queued.

        A later wish for the same object replaces an earlier one in this plan:
        the blue/green branch first keeps the Service on the stable revision,
        then the switch asks for the candidate; when a cut-short switch had
        already moved the Service, applying the first wish would send live
        traffic back to the revision the same plan deletes.
        """
        key = (str(manifest["kind"]), str(manifest["metadata"]["name"]))
        self.plan.actions = [
            action
            for action in self.plan.actions
            if not (isinstance(action, Apply) and (action.kind, action.name) == key)
        ]
        if needs_write(manifest, self.live.get(key)):
            self.plan.actions.append(Apply(manifest))
            return True
        return False

    def route(
        self,
        stable: str,
        candidate: str | None = None,
        traffic: rollout.Traffic = ALL_TO_STABLE,
    ) -> None:
        """Where the route should point (a later wish in the plan replaces an earlier one)."""
        if _routes_externally(self.obs.spec):
            self.wanted_route = Route(stable, candidate, traffic)

    def ordered_actions(self) -> list[Action]:
        """Writes, then the route, then deletions (see the module docstring)."""
        actions = self.plan.actions
        writes = [action for action in actions if not isinstance(action, Delete)]
        deletions = [action for action in actions if isinstance(action, Delete)]
        route = [self.wanted_route] if self.wanted_route is not None else []
        return [*writes, *route, *deletions]

    def exists(self, kind: str, name: str) -> bool:
        return (kind, name) in self.live

    def delete_revision(self, revision: str) -> None:
        """Delete a revision's Deployment, settings ConfigMap and Service (when they exist)."""
        owner = self.obs.owner.name
        for kind, name in (
            ("Deployment", naming.deployment_name(owner, revision)),
            ("ConfigMap", naming.sidecar_configmap_name(owner, revision)),
            ("Service", naming.deployment_name(owner, revision)),
        ):
            if self.exists(kind, name):
                self.plan.actions.append(Delete(kind, name))

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.plan.events.append(Event(reason, message, warning))

    def record(
        self,
        revision: str,
        model_version: str | None,
        image: str | None,
        change: str | None,
        outcome: str,
        reason: str,
    ) -> None:
        self.history = push_history(
            self.history,
            {
                "revision": revision,
                "modelVersion": model_version,
                "image": image,
                "change": change,
                "outcome": outcome,
                "reason": reason,
                "at": timestamp(self.obs.now),
            },
        )


def decide(obs: Observation) -> Plan:
    """The whole reconcile decision for one ModelDeployment (see the module docstring)."""
    build = _Builder(obs)
    build.verb = _read_request(build)
    plan = _decide(build)
    # Every request gets an answer: one that no branch took is refused, saying what there is.
    if build.verb:
        ready = find_condition(plan.status.get("conditions"), CONDITION_READY) or {}
        build.answer(False, f"no rollout with steps under way ({ready.get('message')})")
    last = build.answered or obs.status.get("lastRequest")
    if last:
        plan.status["lastRequest"] = last
    plan.actions = build.ordered_actions()
    return plan


def _routes_externally(raw_spec: Mapping[str, Any]) -> bool:
    """A route outside the operator's children carries the traffic (spec.rollout.trafficRouting)."""
    return bool((raw_spec.get("rollout") or {}).get("trafficRouting"))


def _read_request(build: _Builder) -> str:
    """The verb of a person's request to act on ("" for none).

    One answered before (the operator stopped before clearing it) is only
    cleared; an unknown verb is refused.
    """
    request = build.obs.request
    if request is None:
        return ""
    if request.request_id and request.request_id == (
        (build.obs.status.get("lastRequest") or {}).get("id")
    ):
        build.plan.clear_request = request
        return ""
    if request.verb not in REQUEST_VERBS:
        build.answer(False, f"unknown request; one of {', '.join(REQUEST_VERBS)}")
        return ""
    return request.verb


def _decide(build: _Builder) -> Plan:
    obs = build.obs
    views = _views(obs.deployments)
    stable_revision = find_stable_revision(obs.status, views, obs.service)
    stable_view = views.get(stable_revision) if stable_revision else None

    # Read the spec; what the schema let through but pods cannot take stops here.
    try:
        spec = parse_spec(obs.owner.name, obs.spec)
    except SpecError as error:
        return _blocked(build, stable_view, REASON_INVALID_SPEC, EVENT_INVALID_SPEC, str(error))
    problem = naming.name_problem(obs.owner.name, REVISION_LENGTH)
    if problem is not None:
        return _blocked(build, stable_view, REASON_INVALID_SPEC, EVENT_INVALID_SPEC, problem)

    # Never take over a Service someone else created under our name.
    if obs.foreign_service:
        message = (
            f"a Service named {naming.service_name(obs.owner.name)!r} already exists and is not "
            "owned by this ModelDeployment; rename one of them"
        )
        return _blocked(
            build, stable_view, REASON_SERVICE_CONFLICT, EVENT_SERVICE_CONFLICT, message
        )

    revision = compute_revision(spec, obs.sidecar_image)
    identity = compute_identity(spec)
    change = classify_change(
        stable_revision=stable_revision,
        stable_identity=stable_view.identity if stable_view else None,
        desired_revision=revision,
        desired_identity=identity,
    )

    # A new revision needs its reference profile before its pods can start.
    if spec.monitoring.reference is not None and not obs.reference_found and revision not in views:
        ref = spec.monitoring.reference
        message = (
            f"ConfigMap {ref.name!r} with key {ref.key!r} (spec.monitoring.reference) "
            "was not found in this namespace"
        )
        plan = _blocked(
            build, stable_view, REASON_REFERENCE_NOT_FOUND, EVENT_REFERENCE_NOT_FOUND, message
        )
        plan.recheck_after = RECHECK_SECONDS
        return plan

    if change is Change.NEW:
        plan = _deploy_new(build, spec, revision, identity, views)
    elif change is None:
        plan = _keep_stable(build, spec, revision, identity, views)
    else:
        plan = _blue_green(build, spec, revision, identity, change, stable_revision, views)
    _sweep_leftovers(build, views)
    return plan


def _sweep_leftovers(build: _Builder, views: Mapping[str, DeploymentView]) -> None:
    """Delete a revision's settings ConfigMap and Service once its Deployment is gone.

    A revision is removed child by child (Deployment first); an operator
    stopped in between leaves the others behind, and nothing else would
    remove them before the ModelDeployment itself goes.
    """
    plan = build.plan
    kept = set(views) | {
        str(action.manifest["metadata"]["labels"].get(naming.LABEL_REVISION))
        for action in plan.actions
        if isinstance(action, Apply) and action.kind == "Deployment"
    }
    deleted = {(action.kind, action.name) for action in plan.actions if isinstance(action, Delete)}
    main_service = naming.service_name(build.obs.owner.name)
    for (kind, name), item in sorted(build.live.items()):
        if kind not in ("ConfigMap", "Service") or name == main_service:
            continue
        revision = ((item.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_REVISION)
        if revision is None or str(revision) in kept or (kind, name) in deleted:
            continue
        plan.actions.append(Delete(kind, name))


def _switched_message(
    old_revision: object, old_version: object, new_revision: str, new_version: str
) -> str:
    """The words of the Switched Event (the same words name the same Event: see core.events)."""
    return (
        f"live traffic moved from revision {old_revision} (version {old_version}) to revision "
        f"{new_revision} (version {new_version}); revision {old_revision} removed"
    )


def _blocked(
    build: _Builder, stable_view: DeploymentView | None, reason: str, event: str, message: str
) -> Plan:
    """Report a spec the operator cannot act on; keep whatever serves now."""
    obs = build.obs
    if stable_view is not None:
        message = f"{message}; revision {stable_view.revision} keeps serving"
    if _previous_reason(obs.status, CONDITION_READY) != reason:
        build.event(event, message, warning=True)
    if build.verb:
        build.answer(False, f"the operator cannot act on this spec ({reason}): {message}")
    outcome = _not_ready(PHASE_FAILED, reason, message, progressing=False)
    return _finish(build, outcome, revision=None, stable=stable_view, candidate=None)


def _deploy_new(
    build: _Builder,
    spec: ModelDeploymentSpec,
    revision: str,
    identity: str,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """No stable revision yet: deploy this one at once and let it serve (change "new")."""
    obs = build.obs
    info = RevisionInfo(revision, identity, naming.ROLE_STABLE)
    # Write the settings first: the pods mount them.
    build.ensure(desired_configmap(obs.owner, spec, info))
    created = (
        build.ensure(
            desired_deployment(
                obs.owner, spec, info, sidecar_image=obs.sidecar_image, replicas=spec.replicas
            )
        )
        and revision not in views
    )
    build.ensure(desired_service(obs.owner, revision))
    build.route(revision)
    # Superseded leftovers (a candidate of a stable that was deleted) go away.
    for other in views:
        if other != revision:
            build.delete_revision(other)
    if created:
        build.event(
            EVENT_DEPLOYED,
            f"revision {revision} (model {spec.model.name} version {spec.model.version}) "
            f"deployed with {spec.replicas} replica(s)",
        )
        build.record(
            revision,
            spec.model.version,
            spec.server.image,
            Change.NEW.value,
            OUTCOME_DEPLOYED,
            "first revision of this ModelDeployment",
        )
    view = views.get(revision)
    return _finish(
        build,
        _stable_outcome(build, spec, revision, view, just_created=created),
        revision=revision,
        stable=view,
        candidate=None,
        stable_fallback=_planned_summary(spec, revision),
    )


def _keep_stable(
    build: _Builder,
    spec: ModelDeploymentSpec,
    revision: str,
    identity: str,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """The spec asks for the stable revision: keep it, scale it in place, drop any candidate."""
    obs = build.obs
    view = views[revision]
    _finish_cut_switch(build, spec, view)
    info = RevisionInfo(revision, identity, naming.ROLE_STABLE)
    build.ensure(desired_configmap(obs.owner, spec, info))
    build.ensure(
        desired_deployment(
            obs.owner, spec, info, sidecar_image=obs.sidecar_image, replicas=spec.replicas
        )
    )
    if view.replicas != spec.replicas:
        build.event(
            EVENT_SCALED,
            f"revision {revision} scaled from {view.replicas} to {spec.replicas} replica(s)",
        )
    build.ensure(desired_service(obs.owner, revision))
    build.route(revision)
    # A spec change back to the stable revision aborts the rollout.
    for other in views:
        if other == revision:
            continue
        build.delete_revision(other)
        build.event(
            EVENT_ROLLOUT_ABORTED,
            f"revision {other} removed: the spec returned to the stable revision {revision}",
        )
        other_view = views[other]
        build.record(
            other,
            other_view.model_version,
            other_view.image,
            _previous_change(build, other),
            OUTCOME_ABORTED,
            f"the spec returned to revision {revision}",
        )
    _ensure_in_history(build, view)
    return _finish(
        build,
        _stable_outcome(build, spec, revision, view, just_created=False),
        revision=revision,
        stable=view,
        candidate=None,
    )


def _blue_green(
    build: _Builder,
    spec: ModelDeploymentSpec,
    revision: str,
    identity: str,
    change: Change,
    stable_revision: str | None,
    views: Mapping[str, DeploymentView],
) -> Plan:
    """A new revision replaces the stable one: start it, switch once available, drop the old."""
    obs = build.obs
    assert stable_revision is not None
    stable_view = views[stable_revision]
    candidate_view = views.get(revision)

    policy = _rollout_policy(obs.spec, change)
    progressive = policy is not None and bool(policy.steps)
    # Keep live traffic on the stable revision until the candidate is ready.
    if not progressive:
        build.ensure(desired_service(obs.owner, stable_revision))
        build.route(stable_revision)
    _ensure_in_history(build, stable_view)

    # A newer spec supersedes a candidate that was still starting.
    for other, other_view in views.items():
        if other in (revision, stable_revision):
            continue
        build.delete_revision(other)
        build.event(
            EVENT_ROLLOUT_SUPERSEDED,
            f"revision {other} removed: superseded by revision {revision}",
        )
        build.record(
            other,
            other_view.model_version,
            other_view.image,
            _previous_change(build, other),
            OUTCOME_SUPERSEDED,
            f"superseded by revision {revision}",
        )

    candidate_summary = {
        **_planned_summary(spec, revision),
        "change": change.value,
    }
    # The change kind has steps: a progressive rollout (validate, shadow, canary, pause).
    if policy is not None and progressive and not (spec.paused and candidate_view is None):
        return _progressive(
            build, spec, revision, identity, change, stable_view, candidate_view, policy
        )
    # Hold where it is while paused (do not even start a candidate).
    if progressive:
        _stable_side(build, stable_view)
    if spec.paused:
        message = (
            f"rollout of revision {revision} is paused (spec.paused); "
            f"revision {stable_revision} keeps serving"
        )
        outcome = _not_ready(PHASE_PROGRESSING, REASON_ROLLOUT_PAUSED, message, progressing=False)
        return _finish(
            build,
            outcome,
            revision=revision,
            stable=stable_view,
            candidate=candidate_view,
            candidate_fallback=candidate_summary,
        )

    # Start the candidate: settings first, then its Deployment.
    info = RevisionInfo(revision, identity, naming.ROLE_CANDIDATE)
    build.ensure(desired_configmap(obs.owner, spec, info))
    build.ensure(
        desired_deployment(
            obs.owner, spec, info, sidecar_image=obs.sidecar_image, replicas=spec.replicas
        )
    )
    if candidate_view is None:
        build.event(
            EVENT_ROLLOUT_STARTED,
            f"revision {revision} ({change.value}: model {spec.model.name} version "
            f"{spec.model.version}) starting; revision {stable_revision} keeps serving",
        )

    # Switch only to an available candidate: the Service never selects zero Ready pods.
    if candidate_view is not None and candidate_view.is_available:
        return _switch(build, spec, revision, identity, change, stable_view, candidate_view)

    # Report a candidate that will not come; the stable revision keeps serving.
    if candidate_view is not None and candidate_view.failure is not None:
        message = (
            f"revision {revision} did not become available: {candidate_view.failure}; "
            f"revision {stable_revision} keeps serving"
        )
        if _previous_reason(obs.status, CONDITION_PROGRESSING) != REASON_ROLLOUT_FAILED:
            build.event(EVENT_ROLLOUT_FAILED, message, warning=True)
        outcome = _not_ready(PHASE_FAILED, REASON_ROLLOUT_FAILED, message, progressing=False)
    else:
        ready = candidate_view.ready_replicas if candidate_view else 0
        message = (
            f"revision {revision} starting ({ready}/{spec.replicas} ready); "
            f"revision {stable_revision} keeps serving"
        )
        outcome = _not_ready(
            PHASE_PROGRESSING, REASON_ROLLOUT_IN_PROGRESS, message, progressing=True
        )
    return _finish(
        build,
        outcome,
        revision=revision,
        stable=stable_view,
        candidate=candidate_view,
        candidate_fallback=candidate_summary,
    )


def _previous_change(build: _Builder, revision: str) -> str | None:
    """The change kind status recorded for a candidate revision (for its history entry)."""
    candidate = build.obs.status.get("candidate") or {}
    return candidate.get("change") if candidate.get("revision") == revision else None


def _rollout_policy(raw_spec: Mapping[str, Any], change: Change) -> rollout.RolloutPolicy | None:
    """``spec.rollout`` for this change kind, with the SLOs the gates use (None: unreadable)."""
    try:
        settings = monitoring_settings(raw_spec)
        return rollout.parse_policy(
            raw_spec.get("rollout") or {},
            change.value,
            max_error_rate=settings.policy.max_error_rate,
            max_latency_p95=settings.policy.max_latency_p95,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _route(
    build: _Builder, stable: str, candidate: str | None, traffic: rollout.Traffic
) -> tuple[dict[str, int], dict[str, str], float]:
    """Replicas per revision, the live Service's selector and the candidate's real share."""
    planner = build.obs.route_planner
    if planner is None:
        replicas = {stable: traffic.stable_replicas}
        if candidate is not None:
            replicas[candidate] = traffic.candidate_replicas
        return replicas, naming.selector_labels(build.obs.owner.name, stable), 0.0
    choice = planner(stable, candidate, traffic)
    return dict(choice.replicas), dict(choice.service_selector), float(choice.effective_weight)


def _shadow_block(
    build: _Builder, candidate: str, traffic: rollout.Traffic
) -> dict[str, Any] | None:
    """The stable sidecars' shadow settings for this traffic (None: no copies)."""
    inputs = build.obs.rollout
    if traffic.shadow_percent <= 0 or inputs is None or not inputs.shadow_target:
        return None
    block: dict[str, Any] = {
        "target": inputs.shadow_target,
        "targetRevision": candidate,
        "percent": traffic.shadow_percent,
    }
    if traffic.shadow_tolerance is not None:
        block.update(traffic.shadow_tolerance.sidecar_settings())
    return block


def _progressive(
    build: _Builder,
    spec: ModelDeploymentSpec,
    revision: str,
    identity: str,
    change: Change,
    stable_view: DeploymentView,
    candidate_view: DeploymentView | None,
    policy: rollout.RolloutPolicy,
) -> Plan:
    """Drive the candidate through its steps with ``rollout.decide`` (vigil.core.rollout)."""
    obs = build.obs
    stable = stable_view.revision
    previous = dict(obs.status.get("candidate") or {})
    same = previous.get("revision") == revision
    if not same:
        previous = {}
    verb = build.verb
    summary: dict[str, Any] = {**_planned_summary(spec, revision), "change": change.value}
    summary["startedAt"] = previous.get("startedAt") or timestamp(obs.now)
    now = obs.now.timestamp()
    replicas = spec.replicas

    # A finished attempt (rolled back, failed) is not retried until the spec or a person says so.
    if previous.get("outcome") in FINISHED:
        retried = verb == "retry" or previous.get("outcomeGeneration") != obs.generation
        if not retried:
            return _finished_hold(build, spec, identity, stable_view, previous, summary)
        if verb == "retry":
            build.answer(True, f"revision {revision} rolls out again from step 1")
        previous = {}
        summary["startedAt"] = timestamp(obs.now)
        build.event(
            "RolloutRetried",
            f"revision {revision} rolled out again "
            + ("(a person asked)" if verb == "retry" else "(the spec changed)"),
        )
    if build.verb == "retry":
        build.answer(
            False,
            f"revision {revision} is rolling out; retry is for a rollout that "
            "ended RolledBack or Failed",
        )
    state = state_from_status(previous)
    if verb in ("promote", "abort", "pause", "resume"):
        state = replace(state, requested=verb)  # type: ignore[arg-type]
    was_promoting = state.promoting
    golden = (obs.rollout.golden if obs.rollout else None) or golden_from_status(previous)
    inputs = obs.rollout or RolloutInputs(metrics_available=False, metrics_error="not measured")
    summary.update(_feature_changes_status(inputs, previous))

    if candidate_view is None and not previous:
        build.event(
            EVENT_ROLLOUT_STARTED,
            f"revision {revision} ({change.value}: model {spec.model.name} version "
            f"{spec.model.version}) starting with {len(policy.steps)} step(s); "
            f"revision {stable} keeps serving",
        )

    observations = _candidate_observations(build, spec, candidate_view, golden, inputs)
    decision = rollout.decide(policy, state, observations, now)
    state = decision.state
    traffic = decision.traffic
    if decision.run_golden_set:
        build.plan.run_golden_set = policy.steps[state.step].golden_set
    if build.verb:
        build.answer(
            not decision.refused, decision.refused or f"{decision.reason}: {decision.message}"
        )
    summary["gates"] = _last_gates(decision, previous)

    if decision.action in ("rollback", "fail"):
        return _roll_back(build, spec, identity, stable_view, decision, summary, golden)

    if decision.action == "promote" and not was_promoting:
        build.event(
            "Promoting",
            f"revision {revision} promoted at step {state.step + 1} ({decision.reason}): "
            f"{decision.message}; scaling it to {replicas} replica(s) before the switch",
        )
    # Promotion: once the candidate has full capacity, the blue/green switch finishes it.
    if decision.action == "promote" and candidate_view is not None and observations.full_capacity:
        plan = _switch(build, spec, revision, identity, change, stable_view, candidate_view)
        plan.rollout_outcome = "Promoted"
        return plan

    # Copies and live traffic reach the candidate only once it serves (a request to a
    # model still loading fails, and counts against it): until then the Service stays on
    # the stable and the stable sends no copies; the candidate's replicas start anyway.
    if not observations.candidate_ready:
        traffic = dataclasses.replace(traffic, shadow_percent=0, candidate_weight=0)
    # Set up the traffic this step asks for: replicas, selector, shadow copies.
    replica_counts, selector, effective = _route(build, stable, revision, traffic)
    _ensure_stable_shadow(build, stable_view, _shadow_block(build, revision, traffic))
    info = RevisionInfo(revision, identity, naming.ROLE_CANDIDATE)
    build.ensure(desired_configmap(obs.owner, spec, info))
    build.ensure(
        desired_deployment(
            obs.owner,
            spec,
            info,
            sidecar_image=obs.sidecar_image,
            replicas=replica_counts.get(revision, traffic.candidate_replicas),
        )
    )
    build.ensure(desired_revision_service(obs.owner, stable, naming.ROLE_STABLE))
    build.ensure(desired_revision_service(obs.owner, revision, naming.ROLE_CANDIDATE))
    build.ensure(desired_service(obs.owner, stable, selector))
    build.route(stable, revision, traffic)
    _ensure_in_history(build, stable_view)

    if "StepAdvanced" in decision.events:
        build.event("StepAdvanced", decision.message)
    step = policy.steps[min(state.step, len(policy.steps) - 1)]
    reason = decision.reason
    message = (
        f"promoting revision {revision}: {decision.message}"
        if state.promoting
        else f"step {state.step + 1}/{len(policy.steps)} ({step.describe()}): {decision.message}"
    )
    summary.update(state_to_status(state))
    summary.update(
        {
            "stepName": step.describe(),
            "weight": round(effective) if traffic.candidate_weight else 0,
            "shadowPercent": traffic.shadow_percent or None,
            "reason": reason,
            "message": message,
            "golden": _golden_status(golden),
        }
    )
    ready_reason = {
        "Paused": REASON_ROLLOUT_PAUSED,
        "WaitingForPerson": "WaitingForPerson",
    }.get(reason, REASON_ROLLOUT_IN_PROGRESS)
    text = f"revision {revision} ({change.value}) {message}; revision {stable} keeps serving"
    outcome = _Outcome(
        PHASE_PROGRESSING,
        _ready(False, ready_reason, text),
        _progressing(ready_reason != REASON_ROLLOUT_PAUSED, reason, text),
    )
    build.plan.recheck_after = max(1.0, min(policy.interval_seconds, 10.0))
    return _finish(
        build,
        outcome,
        revision=revision,
        stable=stable_view,
        candidate=candidate_view,
        candidate_fallback=summary,
        candidate_extra=summary,
    )


def _candidate_observations(
    build: _Builder,
    spec: ModelDeploymentSpec,
    candidate_view: DeploymentView | None,
    golden: rollout.GoldenResult | None,
    inputs: RolloutInputs,
) -> rollout.Observations:
    """What ``rollout.decide`` learns about the candidate this cycle."""
    available = candidate_view is not None and candidate_view.is_available
    serving = build.obs.rollout is None or build.obs.rollout.candidate_serving
    return rollout.Observations(
        candidate_ready=available and serving and candidate_view.ready_replicas > 0,
        replicas=spec.replicas,
        metrics_available=inputs.metrics_available and inputs.figures is not None,
        metrics_error=inputs.metrics_error,
        figures=inputs.figures,
        golden=golden,
        spec_paused=spec.paused,
        full_capacity=available and candidate_view.replicas == spec.replicas,
    )


def _ensure_stable_shadow(
    build: _Builder, stable_view: DeploymentView, shadow: Mapping[str, Any] | None
) -> None:
    """Set (or clear) the shadow block in the stable's live sidecar settings.

    The stable's ConfigMap was rendered from an older spec: its settings are
    taken from the live object and only ``shadow`` changes (the sidecar
    re-reads it at run time).
    """
    name = naming.sidecar_configmap_name(build.obs.owner.name, stable_view.revision)
    live = build.live.get(("ConfigMap", name))
    if live is None:
        return
    data = dict(live.get("data") or {})
    raw = data.get(SIDECAR_CONFIG_KEY)
    if raw is None:
        return
    try:
        settings = json.loads(raw)
    except ValueError:
        return
    if not isinstance(settings, dict) or settings.get("shadow") == (
        dict(shadow) if shadow else None
    ):
        return
    settings["shadow"] = dict(shadow) if shadow else None
    data[SIDECAR_CONFIG_KEY] = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    metadata = live.get("metadata") or {}
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": build.obs.owner.namespace,
            "labels": dict(metadata.get("labels") or {}),
            "annotations": {
                k: v
                for k, v in (metadata.get("annotations") or {}).items()
                if k != naming.ANNOTATION_APPLIED_HASH
            },
            "ownerReferences": [owner_reference(build.obs.owner)],
        },
        "data": data,
    }
    build.plan.actions.append(Apply(with_applied_hash(manifest)))


def _feature_changes_status(
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


def _golden_status(golden: rollout.GoldenResult | None) -> dict[str, Any] | None:
    if golden is None:
        return None
    return {"total": golden.total, "agreed": golden.agreed, "agreement": round(golden.agreement, 4)}


def _gates_status(gates: Sequence[rollout.Gate]) -> list[dict[str, Any]] | None:
    if not gates:
        return None
    return [
        {
            "name": g.name,
            "passed": g.passed,
            "value": round(g.value, 4) if math.isfinite(g.value) else None,
            "threshold": round(g.threshold, 4),
        }
        for g in gates
    ]


def _last_gates(
    decision: rollout.Decision, previous: Mapping[str, Any]
) -> list[dict[str, Any]] | None:
    """This cycle's gates, else the last ones evaluated: a hold or a wait evaluates none."""
    if decision.gates:
        return _gates_status(decision.gates)
    return previous.get("gates")


def _stable_side(build: _Builder, stable_view: DeploymentView) -> None:
    """The stable at full capacity, without shadow copies, alone behind the Service and route."""
    obs = build.obs
    _ensure_stable_shadow(build, stable_view, None)
    build.ensure(desired_service(obs.owner, stable_view.revision))
    build.route(stable_view.revision)
    _ensure_in_history(build, stable_view)


def _roll_back(
    build: _Builder,
    spec: ModelDeploymentSpec,
    identity: str,
    stable_view: DeploymentView,
    decision: rollout.Decision,
    summary: dict[str, Any],
    golden: rollout.GoldenResult | None,
) -> Plan:
    """The candidate leaves live and shadow traffic now and is removed by the next cycle.

    The stable (untouched) keeps serving at full capacity. The candidate's
    removal waits for the status that records the outcome: an operator
    stopped between the two would otherwise find the candidate gone with
    no outcome recorded, start it again and roll it back a second time.
    """
    obs = build.obs
    revision = str(summary["revision"])
    failed = decision.action == "fail"
    outcome_word = OUTCOME_FAILED if failed else OUTCOME_ROLLED_BACK
    _stable_side(build, stable_view)
    build.plan.recheck_after = REMOVE_AFTER_OUTCOME_SECONDS  # _finished_hold removes it
    message = (
        f"revision {revision} {'failed' if failed else 'rolled back'} at step "
        f"{decision.state.step + 1} ({decision.reason}): {decision.message}; "
        f"revision {stable_view.revision} keeps serving"
    )
    build.event(outcome_word if not failed else EVENT_ROLLOUT_FAILED, message, warning=True)
    build.record(
        revision,
        spec.model.version,
        spec.server.image,
        summary.get("change"),
        outcome_word,
        f"{decision.reason}: {decision.message}",
    )
    build.plan.rollout_outcome = outcome_word
    summary.update(state_to_status(decision.state))
    summary.update(
        {
            "replicas": 0,
            "readyReplicas": 0,
            "weight": 0,
            "outcome": outcome_word,
            "outcomeGeneration": obs.generation,
            "reason": decision.reason,
            "message": message,
            "golden": _golden_status(golden),
        }
    )
    return _finished_outcome(build, stable_view, summary)


#: How soon the cycle after a rollback (or a failure) comes to remove the candidate.
REMOVE_AFTER_OUTCOME_SECONDS = 1.0


def _finished_hold(
    build: _Builder,
    spec: ModelDeploymentSpec,
    identity: str,
    stable_view: DeploymentView,
    previous: Mapping[str, Any],
    summary: dict[str, Any],
) -> Plan:
    """A rolled-back or failed revision stays out until the spec changes or a person retries."""
    _stable_side(build, stable_view)
    build.delete_revision(str(summary["revision"]))
    if build.verb:
        build.answer(
            False,
            f"revision {summary['revision']} ended {previous.get('outcome')} "
            f"({previous.get('reason')}); `kubectl vigil retry` rolls it out again",
        )
    return _finished_outcome(build, stable_view, previous)


def _finished_outcome(
    build: _Builder, stable_view: DeploymentView, summary: Mapping[str, Any]
) -> Plan:
    failed = summary.get("outcome") == OUTCOME_FAILED
    reason = (
        str(summary.get("reason") or "ProgressDeadlineExceeded") if failed else OUTCOME_ROLLED_BACK
    )
    message = str(summary.get("message") or "")
    outcome = _not_ready(
        PHASE_FAILED if failed else PHASE_ROLLED_BACK, reason, message, progressing=False
    )
    return _finish(
        build,
        outcome,
        revision=str(summary["revision"]),
        stable=stable_view,
        candidate=None,
        candidate_fallback=summary,
        candidate_extra=summary,
    )


def _switch(
    build: _Builder,
    spec: ModelDeploymentSpec,
    revision: str,
    identity: str,
    change: Change,
    stable_view: DeploymentView,
    candidate_view: DeploymentView,
) -> Plan:
    """Promote the available candidate: move the Service first, then delete the old revision."""
    obs = build.obs
    build.ensure(desired_service(obs.owner, revision))
    build.route(revision)
    info = RevisionInfo(revision, identity, naming.ROLE_STABLE)
    build.ensure(desired_configmap(obs.owner, spec, info))
    build.ensure(
        desired_deployment(
            obs.owner, spec, info, sidecar_image=obs.sidecar_image, replicas=spec.replicas
        )
    )
    build.delete_revision(stable_view.revision)
    build.event(
        EVENT_SWITCHED,
        _switched_message(
            stable_view.revision, stable_view.model_version, revision, spec.model.version
        ),
    )
    build.record(
        revision,
        spec.model.version,
        spec.server.image,
        change.value,
        OUTCOME_PROMOTED,
        f"{change.value}: available with {candidate_view.ready_replicas} ready replica(s)",
    )
    outcome = _stable_outcome(build, spec, revision, candidate_view, just_created=False)
    return _finish(
        build, outcome, revision=revision, stable=candidate_view, candidate=None, new_stable=True
    )


def _finish_cut_switch(build: _Builder, spec: ModelDeploymentSpec, view: DeploymentView) -> None:
    """Record a switch to this revision that was cut short before its status write.

    The operator stopped after the Service moved and the old revision's
    Deployment went, before the status said so: status still names the old
    stable and this revision as the candidate. Its history entry and its
    Switched Event are written now, in the very words of the interrupted
    cycle (an Event it did post is then found under the same name).
    """
    status = build.obs.status
    previous = status.get("stable") or {}
    candidate = status.get("candidate") or {}
    if candidate.get("revision") != view.revision or previous.get("revision") in (
        None,
        view.revision,
    ):
        return
    build.event(
        EVENT_SWITCHED,
        _switched_message(
            previous.get("revision"),
            previous.get("modelVersion"),
            view.revision,
            spec.model.version,
        ),
    )
    change = candidate.get("change")
    build.record(
        view.revision,
        spec.model.version,
        spec.server.image,
        change,
        OUTCOME_PROMOTED,
        f"{change}: available with {view.ready_replicas} ready replica(s)",
    )


def _ensure_in_history(build: _Builder, view: DeploymentView) -> None:
    """The stable revision always has a history entry (even after a lost status)."""
    if any(item.get("revision") == view.revision for item in build.history):
        return
    outcome = OUTCOME_PROMOTED if build.history else OUTCOME_DEPLOYED
    build.record(
        view.revision, view.model_version, view.image, None, outcome, "found serving live traffic"
    )


def _planned_summary(spec: ModelDeploymentSpec, revision: str) -> dict[str, Any]:
    return {
        "revision": revision,
        "modelVersion": spec.model.version,
        "image": spec.server.image,
        "replicas": spec.replicas,
        "readyReplicas": 0,
    }


def _stable_outcome(
    build: _Builder,
    spec: ModelDeploymentSpec,
    revision: str,
    view: DeploymentView | None,
    *,
    just_created: bool,
) -> _Outcome:
    """Conditions and phase when the desired revision is (or becomes) the stable one."""
    wanted = spec.replicas
    previous = _previous_reason(build.obs.status, CONDITION_READY)
    if view is None:
        if just_created:
            # Worded as the Deployment's first report (no pod ready yet) will be:
            # that report then changes nothing and costs no status write.
            return _not_ready(
                PHASE_PENDING,
                REASON_DEPLOYING,
                _replicas_message(revision, 0, wanted),
                progressing=True,
            )
        message = f"revision {revision} created; waiting for its Deployment to report"
        return _not_ready(PHASE_PROGRESSING, REASON_DEPLOYING, message, progressing=True)
    ready = view.ready_replicas
    if view.failure is not None and not view.is_available:
        message = f"revision {revision} is not available: {view.failure}"
        if _previous_reason(build.obs.status, CONDITION_PROGRESSING) != REASON_DEPLOY_FAILED:
            build.event(EVENT_DEPLOY_FAILED, message, warning=True)
        return _not_ready(PHASE_FAILED, REASON_DEPLOY_FAILED, message, progressing=False)
    if view.replicas == wanted and view.is_available:
        message = f"revision {revision} serves with {ready}/{wanted} ready replica(s)"
        return _Outcome(
            PHASE_HEALTHY,
            _ready(True, REASON_AVAILABLE, message),
            _progressing(False, REASON_COMPLETE, message),
        )
    message = _replicas_message(revision, ready, wanted)
    # A revision that served fully and lost pods without a spec change is degraded.
    if view.replicas == wanted and previous in (REASON_AVAILABLE, REASON_REPLICAS_UNAVAILABLE):
        return _not_ready(PHASE_DEGRADED, REASON_REPLICAS_UNAVAILABLE, message, progressing=True)
    # Until a revision has been Ready once, it is still being deployed, not scaled;
    # Pending (as a pod is) until its first replica is ready.
    if previous in (None, REASON_DEPLOYING):
        phase = PHASE_PENDING if ready == 0 else PHASE_PROGRESSING
        return _not_ready(phase, REASON_DEPLOYING, message, progressing=True)
    return _not_ready(PHASE_PROGRESSING, REASON_SCALING, message, progressing=True)


def _replicas_message(revision: str, ready: int, wanted: int) -> str:
    return f"revision {revision}: {ready}/{wanted} replica(s) ready"


def _finish(
    build: _Builder,
    outcome: _Outcome,
    *,
    revision: str | None,
    stable: DeploymentView | None,
    candidate: DeploymentView | None,
    stable_fallback: Mapping[str, Any] | None = None,
    candidate_fallback: Mapping[str, Any] | None = None,
    new_stable: bool = False,
    candidate_extra: Mapping[str, Any] | None = None,
) -> Plan:
    """Assemble the complete owned status (computed in memory, persisted once)."""
    obs = build.obs
    previous = obs.status
    conditions = build_conditions(
        [
            outcome.ready,
            outcome.progressing,
            *kstatus_conditions(
                outcome.progressing,
                outcome.phase in (PHASE_FAILED, PHASE_ROLLED_BACK),
                outcome.ready,
            ),
        ],
        previous.get("conditions"),
        generation=obs.generation,
        now=obs.now,
    )
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "phase": phase_with_health(outcome.phase, conditions),
        "conditions": conditions,
        "revision": revision,
        "history": build.history or None,
    }

    previous_stable = previous.get("stable") or {}
    if stable is not None or stable_fallback is not None:
        summary = _revision_summary(stable, stable_fallback or {})
        same = previous_stable.get("revision") == summary["revision"] and not new_stable
        summary["since"] = (
            previous_stable.get("since")
            if same and previous_stable.get("since")
            else timestamp(obs.now)
        )
        status["stable"] = summary

    if candidate is not None or candidate_fallback is not None:
        fallback = dict(candidate_fallback or {})
        summary = _revision_summary(candidate, fallback)
        previous_candidate = previous.get("candidate") or {}
        same = previous_candidate.get("revision") == summary["revision"]
        summary.update(
            {
                "change": fallback.get("change") or previous_candidate.get("change"),
                "step": 0,
                "weight": 0,
                "failedChecks": 0,
                "stepStartedAt": previous_candidate.get("stepStartedAt")
                if same and previous_candidate.get("stepStartedAt")
                else timestamp(obs.now),
            }
        )
        if candidate_extra:
            # A stepped rollout's state (vigil.core.candidate), with the live replica counts.
            summary = {
                **{k: v for k, v in candidate_extra.items() if v is not None},
                "replicas": summary["replicas"],
                "readyReplicas": summary["readyReplicas"],
            }
            if candidate is None:
                summary["replicas"] = candidate_extra.get("replicas", 0)
                summary["readyReplicas"] = 0
        status["candidate"] = summary
    build.plan.status = status
    return build.plan
