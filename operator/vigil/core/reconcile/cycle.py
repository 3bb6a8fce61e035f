"""One decision's working state: what lives, what to write, the history, the person's request.

Like kopf's one patch accumulated and applied once: every branch of the
runbook adds to the same :class:`Cycle`, and :meth:`Cycle.ordered_actions`
gives the writes in the one order that keeps traffic safe.
"""

from __future__ import annotations

import copy
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from vigil.common.objects import body
from vigil.common.times import format_time, parse_time
from vigil.core import naming
from vigil.core.desired import (
    RevisionInfo,
    desired_configmap,
    desired_deployment,
    desired_peers_service,
    desired_service,
    needs_write,
    owner_reference,
    with_applied_hash,
)
from vigil.core.observed import DeploymentView, service_revision, view_deployment
from vigil.core.reconcile.plan import (
    ALL_TO_STABLE,
    Action,
    Apply,
    Delete,
    Event,
    Observation,
    Plan,
    Route,
)
from vigil.core.rollout import Traffic
from vigil.core.spec import ModelDeploymentSpec
from vigil.core.status import find_condition, push_history
from vigil.core.vocabulary import FINISHED, Answer, Outcome, Reason

#: How old a revision Service is before the route names it (``Cycle.route_revisions``).
SERVICE_SETTLE_SECONDS = 5.0


class Cycle:
    """Collects actions, Events and status pieces during one decision."""

    def __init__(self, obs: Observation, spec: ModelDeploymentSpec | None = None) -> None:
        self.obs = obs
        #: The parsed spec (None until the runbook has read it).
        self.spec = spec
        self.plan = Plan()
        self.live: dict[tuple[str, str], Mapping[str, Any]] = {}
        for kind, items in (
            ("Deployment", obs.deployments),
            ("ConfigMap", obs.configmaps),
            (
                "Service",
                [*([obs.service] if obs.service is not None else []), *obs.revision_services],
            ),
        ):
            for item in items:
                meta = body(item).meta
                if not meta.deleting or item is obs.service:
                    self.live[(kind, meta.name)] = item
        self.history: list[dict[str, Any]] = [
            dict(item) for item in obs.status.get("history") or ()
        ]
        #: Where the route points (a route outside the desired set only; see Route).
        self.wanted_route: Route | None = None
        #: Seconds the route stays off the revision Services (``route_revisions``; 0: not).
        self.route_held_for = 0.0
        #: The verb of a person's request still to answer ("" = none, or answered).
        self.verb = ""
        #: The answer given this cycle (``status.lastRequest``).
        self.answered: dict[str, Any] | None = None
        #: When live traffic moved to the stable, when a switch cut short before its status
        #: write said it (status.stable.since and its history entry, as that write had them).
        self.switched_at: datetime.datetime | None = None
        self._views: Mapping[str, DeploymentView] | None = None

    # -- reading --------------------------------------------------------------------------

    def views(self) -> Mapping[str, DeploymentView]:
        """Live revisions by revision; objects already being deleted no longer count."""
        if self._views is None:
            views: dict[str, DeploymentView] = {}
            for deployment in self.obs.deployments:
                if body(deployment).meta.deleting:
                    continue
                view = view_deployment(deployment)
                if view is not None:
                    views[view.revision] = view
            # Read by every branch of the runbook, several times a cycle: made once.
            self._views = MappingProxyType(views)
        return self._views

    def exists(self, kind: str, name: str) -> bool:
        return (kind, name) in self.live

    def fetch_progress(self, revision: str) -> str:
        """How a revision's model fetch goes, for a message ("": nothing to say)."""
        fetch = self.obs.fetches.get(revision)
        if fetch is None:
            return ""
        if fetch.kind == "fetching":
            return "fetching its model"
        return f"fetching its model failed, retrying: {fetch.words}"

    def with_golden_pending(self, message: str) -> str:
        """``message``, and why the last golden replay gave no result when it gave none."""
        pending = self.obs.rollout.golden_pending if self.obs.rollout else ""
        return f"{message}; the last replay gave no result: {pending}" if pending else message

    def previous_reason(self, kind: str) -> str | None:
        """The reason the last status gave this condition."""
        condition = find_condition(self.obs.status.get("conditions"), kind)
        return None if condition is None else condition.get("reason")

    # -- writing ----------------------------------------------------------------------------

    def ensure(self, manifest: Mapping[str, Any]) -> bool:
        """Queue a write when the live object differs; True when one was queued. A later
        wish for the same object replaces an earlier one in this plan: a blue/green branch
        keeps the Service on the stable, then its switch asks for the candidate; applying the
        first wish would send live traffic back to the revision the same plan deletes."""
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

    def ensure_revision(self, info: RevisionInfo, replicas: int) -> bool:
        """A revision's objects: its sidecar settings first (the pods mount them), then its
        Deployment. True when the Deployment is written."""
        assert self.spec is not None
        owner = self.obs.owner
        self.ensure(desired_configmap(owner, self.spec, info))
        return self.ensure(
            desired_deployment(
                owner,
                self.spec,
                info,
                sidecar_image=self.obs.sidecar_image,
                replicas=replicas,
                reference_digest=self.obs.reference_digest,
                sidecar_pull_policy=self.obs.sidecar_pull_policy,
            )
        )

    def serve(self, revision: str, selector: Mapping[str, str] | None = None) -> None:
        """Live traffic to ``revision``: the Service ``<name>`` (and the route, if any), and
        the headless ``<name>-peers`` through which the sidecars find each other (without it
        a label reaching another pod than the one holding its prediction counts as unknown)."""
        mark = self._serving_mark(revision, selector)
        self.ensure(desired_service(self.obs.owner, revision, selector, mark))
        self.ensure(desired_peers_service(self.obs.owner))
        if selector is None:
            self.route(revision)

    def _live_mark(self) -> str | None:
        """The live Service's serving mark (None: no Service, or none on it)."""
        service = self.obs.service
        return (
            body(service).meta.annotations.get(naming.ANNOTATION_SERVING_SINCE) if service else None
        )

    def _serving_mark(self, revision: str, selector: Mapping[str, str] | None) -> str | None:
        """The Service's mark: "<revision> <now>" when live traffic moves to ``revision`` in
        this cycle, else as it is: a canary's selector moves no traffic whole, and a Service
        that served ``revision`` before marks existed gets none (no write for it)."""
        mark = self._live_mark()
        if selector is not None or (mark is not None and mark.partition(" ")[0] == revision):
            return mark
        if mark is None and service_revision(self.obs.service) == revision:
            return None
        return f"{revision} {format_time(self.obs.now)}"

    def serving_since(self, revision: str) -> datetime.datetime | None:
        """When live traffic moved to ``revision`` in this rollout attempt, as the Service's
        mark says (None: not marked, or before the attempt began: an earlier move)."""
        marked, _, text = str(self._live_mark() or "").partition(" ")
        since, attempt = parse_time(text), parse_time(self.attempt_started())
        if marked != revision or since is None or attempt is None or since < attempt:
            return None
        return since

    def reapplied(
        self, live: Mapping[str, Any], api_version: str, kind: str, **parts: Any
    ) -> dict[str, Any]:
        """A live child to apply again with ``parts`` (spec, data) changed: one rendered from
        an older spec, which the current one cannot render again."""
        meta = body(live).meta
        metadata = {
            "name": meta.name,
            "namespace": self.obs.owner.namespace,
            "labels": dict(meta.labels),
            "annotations": {
                k: v for k, v in meta.annotations.items() if k != naming.ANNOTATION_APPLIED_HASH
            },
            "ownerReferences": [owner_reference(self.obs.owner)],
        }
        manifest = {"apiVersion": api_version, "kind": kind, "metadata": metadata, **parts}
        return with_applied_hash(manifest)

    def live_deployment(self, revision: str) -> Mapping[str, Any] | None:
        """``revision``'s Deployment as read this cycle (None: there is none)."""
        return self.live.get(("Deployment", naming.deployment_name(self.obs.owner.name, revision)))

    def scale_revision(
        self, revision: str, replicas: int, marks: Mapping[str, str] | None = None
    ) -> None:
        """A live revision's Deployment at ``replicas``, the rest as it runs (rendered from an
        older spec, which the current one cannot render again); ``marks``: annotations to set."""
        live = self.live_deployment(revision)
        if live is None:
            return
        spec = {**copy.deepcopy(dict(body(live).spec)), "replicas": replicas}
        manifest = self.reapplied(live, "apps/v1", "Deployment", spec=spec)
        if marks:
            manifest["metadata"]["annotations"].update(marks)
            manifest = with_applied_hash(manifest)
        self.ensure(manifest)

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

    def route(
        self, stable: str, candidate: str | None = None, traffic: Traffic = ALL_TO_STABLE
    ) -> None:
        """Where the route should point (a later wish in the plan replaces an earlier one)."""
        if self.spec is not None and self.spec.rollout.http_route:
            self.wanted_route = Route(
                stable, candidate, traffic, http_route=self.spec.rollout.http_route
            )

    def route_revisions(self, stable: str, candidate: str, traffic: Traffic) -> None:
        """The route to both revisions' Services once each is SERVICE_SETTLE_SECONDS old (a
        gateway learns of one from its own watch: a 500 for a backend it does not know yet);
        until then to ``<name>``, for ``route_held_for`` seconds more."""
        owner = self.obs.owner.name
        ages = [self._age(naming.deployment_name(owner, r)) for r in (stable, candidate)]
        wait = max(SERVICE_SETTLE_SECONDS - age for age in ages)
        if wait <= 0 or self.spec is None or not self.spec.rollout.http_route:
            self.route(stable, candidate, traffic)
        else:
            self.route(stable)
            self.route_held_for = wait

    def recheck(self, seconds: float) -> None:
        """Come back after ``seconds``, sooner when the route waits for revision Services."""
        self.plan.recheck_after = min(seconds, self.route_held_for or seconds)

    def _age(self, service: str) -> float:
        """Seconds since the Service was created (0: not yet; inf: not said)."""
        live = self.live.get(("Service", service))
        created = body(live).meta.created if live is not None else self.obs.now
        return (self.obs.now - created).total_seconds() if created else math.inf

    def ordered_actions(self) -> list[Action]:
        """Writes, then the route, then scale-downs and deletions: capacity comes before the
        traffic that needs it and leaves after it (see the package docstring). A replica-ratio
        Service never widens in a plan that shrinks the candidate (``reconcile.spanning``)."""
        actions = self.plan.actions
        shrinking = [action for action in actions if self._shrinks(action)]
        writes = [a for a in actions if not isinstance(a, Delete) and a not in shrinking]
        deletions = [action for action in actions if isinstance(action, Delete)]
        route = [self.wanted_route] if self.wanted_route is not None else []
        return [*writes, *self._dropped_route(), *route, *shrinking, *deletions]

    def routed_by(self) -> str | None:
        """The HTTPRoute this plan leaves pointing at the model (``status.httpRoute``): the
        spec's; a spec that cannot be read keeps the one recorded."""
        recorded = self.obs.status.get("httpRoute") or None
        if self.spec is None or self.spec.rollout.problem:
            return recorded
        return self.spec.rollout.http_route

    def _dropped_route(self) -> list[Route]:
        """A route the spec no longer names (dropped, renamed) still sends traffic to revision
        Services: it goes back to the Service ``<name>`` before any of them is deleted."""
        recorded = self.obs.status.get("httpRoute")
        if not recorded or recorded == self.routed_by():
            return []
        stable = str((self.obs.status.get("stable") or {}).get("revision") or "")
        return [Route(stable, http_route=str(recorded))]

    def _shrinks(self, action: Action) -> bool:
        """An Apply that leaves a live Deployment with fewer replicas."""
        if not isinstance(action, Apply) or action.kind != "Deployment":
            return False
        live = self.live.get(("Deployment", action.name))
        if live is None:
            return False
        wanted = action.manifest.get("spec", {}).get("replicas")
        return isinstance(wanted, int) and wanted < (body(live).spec.get("replicas") or 0)

    # -- telling ----------------------------------------------------------------------------

    def attempt_started(self) -> str | None:
        """When the rollout attempt status records began (a blue/green candidate's:
        ``stepStartedAt``); None without one."""
        candidate = self.obs.status.get("candidate") or {}
        return candidate.get("startedAt") or candidate.get("stepStartedAt")

    def recorded_start(self, revision: str) -> str | None:
        """When ``revision``'s attempt started, as status records it (``startedAt``); None:
        not yet (RolloutStarted is still to say), or the record is another revision's, or
        of an attempt that ended (one started again is another attempt)."""
        candidate = self.obs.status.get("candidate") or {}
        if candidate.get("revision") != revision or candidate.get("outcome"):
            return None
        return candidate.get("startedAt") or None

    def start_occurrence(self, revision: str) -> str:
        """What names the RolloutStarted Event of ``revision``'s attempt while status records
        no start of it: the status it starts from (the spec it last described, an earlier
        record of this revision: an attempt that ended, a pause), unchanged until that start
        is written. The cycle decided again after a kill names it the same; a later attempt
        (a retry, the spec asking for the revision again) starts from another status."""
        candidate = self.obs.status.get("candidate") or {}
        before = self.attempt_started() if candidate.get("revision") == revision else None
        described = self.obs.status.get("observedGeneration")
        return f"{Reason.ROLLOUT_STARTED} {revision} {described} {before or '-'}"

    def event(
        self, reason: str, message: str, *, warning: bool = False, occurrence: str = ""
    ) -> None:
        self.plan.events.append(Event(reason, message, warning, occurrence))

    def record(
        self,
        revision: str,
        model_version: str | None,
        image: str | None,
        change: str | None,
        outcome: str,
        reason: str,
        at: datetime.datetime | None = None,
    ) -> None:
        """A history entry (newest first, one per revision), made now unless ``at``; the
        stable revision status records keeps its own however many follow."""
        self.history = push_history(
            self.history,
            {
                "revision": revision,
                "modelVersion": model_version,
                "image": image,
                "change": change,
                "outcome": outcome,
                "reason": reason,
                "at": format_time(at or self.obs.now),
            },
            stable=(self.obs.status.get("stable") or {}).get("revision"),
        )

    def ended(self, revision: str) -> bool:
        """Whether ``revision``'s attempt ended (rolled back, failed): status says so, and its
        Deployment is only left until the cycle after that outcome."""
        candidate = self.obs.status.get("candidate") or {}
        return candidate.get("revision") == revision and candidate.get("outcome") in FINISHED

    def retire(self, view: DeploymentView, retirement: Retirement) -> None:
        """Remove a candidate revision that will not serve: an Event, and its history entry
        (one whose attempt ended keeps that outcome: removed only)."""
        self.delete_revision(view.revision)
        if self.ended(view.revision):
            return
        self.event(retirement.event, retirement.message)
        candidate = self.obs.status.get("candidate") or {}
        change = candidate.get("change") if candidate.get("revision") == view.revision else None
        self.record(
            view.revision,
            view.model_version,
            view.image,
            change,
            retirement.outcome,
            retirement.why,
        )

    def finish_cut_retire(self, revision: str | None, stable: DeploymentView | None) -> None:
        """A candidate retired by a cycle cut short before its status write (its Deployment
        gone, status naming it still, with no outcome): its Event and history entry now,
        in the words of the interrupted cycle (an Event it did post has the same name)."""
        candidate = self.obs.status.get("candidate") or {}
        gone = candidate.get("revision")
        if not gone or candidate.get("outcome") or stable is None:
            return
        if gone in self.views() or gone in (revision, stable.revision):
            return
        retirement = (
            aborted(gone, stable.revision)
            if revision == stable.revision
            else superseded(gone, f"revision {revision}" if revision else "the new spec")
        )
        self.event(retirement.event, retirement.message)
        self.record(
            gone,
            candidate.get("modelVersion"),
            candidate.get("image"),
            candidate.get("change"),
            retirement.outcome,
            retirement.why,
        )

    def keep_in_history(self, view: DeploymentView) -> None:
        """The stable revision always has a history entry (even after a lost status)."""
        if any(item.get("revision") == view.revision for item in self.history):
            return
        outcome = Outcome.PROMOTED if self.history else Outcome.DEPLOYED
        self.record(
            view.revision,
            view.model_version,
            view.image,
            None,
            outcome,
            "found serving live traffic",
        )

    def answer(self, taken: bool, message: str) -> None:
        """Answer the person's request: taken, or refused with the reason (also an Event),
        in ``status.lastRequest`` (``kubectl vigil --wait`` reads it); the annotation is
        cleared once that status is written."""
        request = self.obs.request
        if request is None:
            return
        self.verb = ""
        self.plan.clear_request = request
        self.answered = {
            "id": request.request_id or None,
            "verb": request.verb,
            "answer": Answer.TAKEN if taken else Answer.REFUSED,
            "message": message,
            "at": format_time(self.obs.now),
        }
        if not taken:
            self.event(
                Reason.REQUEST_REFUSED, f"request {request.verb!r} refused: {message}", warning=True
            )


def serving_in_place(
    cycle: Cycle,
    revision: str,
    view: DeploymentView | None,
    views: Mapping[str, DeploymentView],
) -> DeploymentView | None:
    """The revision serving live traffic in the stable ``revision``'s place while the stable
    (``view``; None: no Deployment yet) is not available: the one the Service selects, if it
    has ready pods. It keeps serving until the stable is available."""
    standin = views.get(service_revision(cycle.obs.service) or "")
    if standin is None or standin.revision == revision or standin.ready_replicas == 0:
        return None
    return standin if view is None or not view.is_available else None


@dataclass(frozen=True)
class Retirement:
    """Why a candidate revision goes without serving: its Event and its history entry."""

    event: str
    message: str
    outcome: str
    why: str


def retired(
    event: str, outcome: str, revision: str, why: str, words: str | None = None
) -> Retirement:
    """A retirement whose Event says "revision <revision> removed: <words or why>"."""
    return Retirement(event, f"revision {revision} removed: {words or why}", outcome, why)


def superseded(revision: str, by: str) -> Retirement:
    return retired(Reason.ROLLOUT_SUPERSEDED, Outcome.SUPERSEDED, revision, f"superseded by {by}")


def aborted(revision: str, stable: str) -> Retirement:
    why = f"the spec returned to revision {stable}"
    words = f"the spec returned to the stable revision {stable}"
    return retired(Reason.ROLLOUT_ABORTED, Outcome.ABORTED, revision, why, words)
