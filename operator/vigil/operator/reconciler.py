"""One reconcile of a ModelDeployment: observe, decide (pure core), write, report.

This is the domain layer under the kopf handlers. It knows nothing of kopf:
handlers call `reconcile()` (and turn `RetryLater` into a kopf retry) or
`nudge()` (for events of owned objects), and Events are posted through a
callable given at construction.

Writes happen only when the decision asks for them, in the decided order,
and the status is patched at most once per reconcile, only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.common import objects
from vigil.common.locks import Busy, KeyedLocks
from vigil.common.objects import section
from vigil.common.times import utc_now
from vigil.core import naming
from vigil.core.candidate import RolloutInputs
from vigil.core.desired import DEFAULT_PULL_POLICY, Owner, reference_digest
from vigil.core.health_status import condition_word, transitions
from vigil.core.observed import FetchState
from vigil.core.reconcile import (
    Action,
    Apply,
    Delete,
    Event,
    Observation,
    Plan,
    Route,
    decide,
    refused_write_status,
)
from vigil.core.spec import ModelDeploymentSpec, SpecError, parse_spec
from vigil.core.status import (
    ConditionState,
    build_conditions,
    find_condition,
    phase_after_health,
    replacing_merge_patch,
    status_patch,
)
from vigil.core.vocabulary import ConditionType, Reason
from vigil.kube.client import KubeError
from vigil.operator.api import Api
from vigil.operator.health import HealthWrite
from vigil.operator.metrics import (
    OUTCOME_CHANGED,
    OUTCOME_ERROR,
    OUTCOME_UNCHANGED,
    OperatorMetrics,
)
from vigil.operator.rollouts import Rollouts, RouteHeld, route_planner
from vigil.plugin.requests import ANNOTATION_REQUEST, REQUEST_ANNOTATIONS, parse_request

log = logging.getLogger("vigil.operator")

RETRY_SECONDS = 10.0
#: How long a stopping operator lets reconciles under way finish (its pod has 40 s).
CLOSE_GRACE_SECONDS = 20.0
#: The longest wait between two retries of a reconcile that keeps failing.
MAX_RETRY_SECONDS = 300.0
#: API answers that mean "this object, as it is, will never be accepted".
INVALID_STATUSES = (400, 422)
#: A 403 that refuses the object itself, in the API server's words: an admission webhook
#: or a ValidatingAdmissionPolicy that denied it, an exceeded object-count quota. Others
#: (RBAC's "cannot patch resource", a namespace being terminated) are not the object's.
OBJECT_DENIED = re.compile(r"denied (the )?request|exceeded quota")
#: A nudge waits this long before it reconciles, so that a burst of child events (a
#: Deployment's status moves through several replica counts within a second or two)
#: costs one reconcile (its reads and its status patch) instead of one per event.
COALESCE_SECONDS = 0.5
#: How long a health write waits for a reconcile of its object before leaving it to the
#: next cycle (a reconcile takes well under a second; a golden replay up to a minute).
HEALTH_WAIT_SECONDS = 5.0


#: Posts an Event about the object (as read) through the API and waits for the answer.
#: Posts an Event; False when the API server had it already (None: not said).
EventPoster = Callable[[Api, Mapping[str, Any], Event], Awaitable[bool | None]]


def refuses_the_object(error: KubeError) -> bool:
    """Whether an answer to a write refuses the object as it is, for as long as it stays so.
    An RBAC denial is not written to status: it is also what a restarting API server
    answers for a few seconds before its authorizer has caught up."""
    if error.status in INVALID_STATUSES:
        return True
    return error.status == 403 and OBJECT_DENIED.search(error.message) is not None


class RetryLater(Exception):
    """The reconcile failed in a way that may pass; try again after `delay` seconds."""

    def __init__(self, message: str, delay: float = RETRY_SECONDS) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class ReconcilerConfig:
    """Operator-wide settings that reach the decisions."""

    sidecar_image: str
    #: The imagePullPolicy of the containers that run it (the sidecar, vigil-fetch).
    sidecar_pull_policy: str = DEFAULT_PULL_POLICY


def needs_reconcile(event_type: str | None, body: Mapping[str, Any]) -> bool:
    """Whether a watch event of a ModelDeployment calls for a reconcile.

    Listed (the operator started: resume), created, a spec the status does not
    describe yet (generation ahead of status.observedGeneration; a reconcile
    that failed is retried by the reconciler), or a person's request waiting
    (kubectl vigil promote|abort|pause|resume|retry). Not its own status writes
    nor the health loop's: those leave the generation alone.
    """
    if event_type == "DELETED":
        return False
    if event_type in (None, "ADDED"):
        return True
    metadata = body.get("metadata") or {}
    if ANNOTATION_REQUEST in (metadata.get("annotations") or {}):
        return True
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed != metadata.get("generation")


#: What of a ModelDeployment a person changes to ask for a reconcile: the object (uid), its
#: spec (generation) and a request (kubectl vigil's annotations).
SpecVersion = tuple[str, Any, tuple[str, ...]]


def spec_version(body: Mapping[str, Any]) -> SpecVersion:
    """The object's uid, spec generation and request annotations, as ``body`` has them."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    request = tuple(str(annotations.get(key, "")) for key in REQUEST_ANNOTATIONS)
    return str(metadata.get("uid") or ""), metadata.get("generation"), request


def _describe(action: Action) -> tuple[str, str]:
    """(verb, what) of an action, for logs and failure messages."""
    if isinstance(action, Route):
        return "route", f"traffic to {action.stable}/{action.candidate or '-'}"
    verb = "apply" if isinstance(action, Apply) else "delete"
    return verb, f"{action.kind} {action.name}"


def _parsed(name: str, raw: Mapping[str, Any]) -> ModelDeploymentSpec | None:
    """The spec, parsed once for the whole cycle (None: the decision reports why not)."""
    try:
        return parse_spec(name, raw)
    except SpecError:
        return None


def health_patch(
    body: Mapping[str, Any],
    health: Mapping[str, Any],
    conditions: Sequence[ConditionState],
    now: datetime.datetime,
) -> tuple[dict[str, Any], str]:
    """The status patch a health evaluation needs on this object (empty: none), and the phase.

    Conditions the evaluation does not mention keep their place and value.
    """
    status = body.get("status") or {}
    merged = build_conditions(
        conditions,
        status.get("conditions"),
        generation=int((body.get("metadata") or {}).get("generation") or 0),
        now=now,
    )
    order = {item.get("type"): index for index, item in enumerate(status.get("conditions") or [])}
    merged.sort(key=lambda item: order.get(item["type"], len(order)))
    patch: dict[str, Any] = {}
    if status.get("health") != health:
        patch["health"] = replacing_merge_patch(status.get("health"), health)
    if status.get("conditions") != merged:
        patch["conditions"] = merged
    phase = phase_after_health(status.get("phase"), merged)
    if status.get("phase") != phase:
        patch["phase"] = phase
    return patch, phase


class Reconciler:
    """Reconciles ModelDeployments one at a time per object, coalescing bursts of events."""

    def __init__(
        self,
        api_factory: Callable[[], Api],
        config: ReconcilerConfig,
        metrics: OperatorMetrics,
        post_event: EventPoster,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._api_factory = api_factory
        self.config = config
        self.metrics = metrics
        self._post_event = post_event
        self._clock = clock
        self._locks = KeyedLocks()
        #: False while kopf pauses the operator (peering): nothing is reconciled.
        self.active = True
        #: Stopping: the reconciles under way finish their plan (a pause drops it).
        self._closing = False
        #: Reconciles that failed in a row, by object (for the retries' backoff).
        self._failures: dict[tuple[str, str], int] = {}
        #: What the reconcile under way, or the last that failed, read of each object.
        self._versions: dict[tuple[str, str], SpecVersion] = {}
        self._queued: set[tuple[str, str]] = set()
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Rollout I/O (measurements, golden replays, routes, requests); None = blue/green only.
        self.rollouts: Rollouts | None = None
        #: Each revision's artifact fetch of a ModelDeployment, from the pod watch.
        self.fetches: Callable[[str, str], Mapping[str, FetchState]] = lambda _ns, _name: {}
        self.coalesce_seconds = COALESCE_SECONDS

    async def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile now (from a ModelDeployment handler); RetryLater when it should be retried."""
        key = (namespace, name)
        async with self._locks.hold(key):
            await self._reconcile_once(namespace, name)

    def nudge(
        self, namespace: str, name: str, delay: float = 0.0, version: SpecVersion | None = None
    ) -> None:
        """Ask for a reconcile soon (an owned object changed); bursts collapse into one.

        ``version``: the object's as its watch event has it (:func:`spec_version`; None: a
        child's or the health loop's nudge). While a failed reconcile waits for its retry,
        the object's own events reconcile sooner only with a new spec or request: each of
        the health loop's status writes would otherwise repeat the failure (its write,
        warning and Event) at once.
        """
        if not name:  # a child labelled with no owner's name (set by someone else)
            log.debug("%s: a nudge names no ModelDeployment; ignored", namespace)
            return
        key = (namespace, name)
        if delay <= 0 and self._retry_pending(key, version):
            log.debug("%s/%s: nudge left to the pending retry", namespace, name)
            return
        if delay > 0:
            loop = asyncio.get_running_loop()
            previous = self._timers.pop(key, None)
            if previous is not None:
                previous.cancel()
            self._timers[key] = loop.call_later(delay, self._timer_fired, namespace, name)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        task = asyncio.get_running_loop().create_task(self._nudged(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retry_pending(self, key: tuple[str, str], version: SpecVersion | None) -> bool:
        """Whether a watch event of the object (``version``) finds the last reconcile failed,
        its retry timed, and the spec and request it read unchanged (unknown when it failed
        before reading: the retry tells). Other nudges (a child, a bake's condition flip from
        the health loop) still reconcile at once."""
        if version is None or key not in self._failures or key not in self._timers:
            return False
        failed = self._versions.get(key)
        return failed is None or failed == version

    def forget(self, namespace: str, name: str) -> None:
        """A deleted ModelDeployment: one created again under its name starts afresh."""
        self._failures.pop((namespace, name), None)
        self._versions.pop((namespace, name), None)
        timer = self._timers.pop((namespace, name), None)
        if timer is not None:  # the deleted object's retry would hold the new one's nudges
            timer.cancel()
        if self.rollouts is not None:
            self.rollouts.forget(namespace, name)

    def _timer_fired(self, namespace: str, name: str) -> None:
        self._timers.pop((namespace, name), None)  # a deleted object leaves no handle behind
        self.nudge(namespace, name)

    async def _nudged(self, key: tuple[str, str]) -> None:
        # Nudges arriving meanwhile find the key queued and join this reconcile.
        await asyncio.sleep(self.coalesce_seconds)
        async with self._locks.hold(key):
            self._queued.discard(key)
            try:
                await self._reconcile_once(*key)
            except RetryLater as error:
                log.warning("reconcile of %s/%s will be retried: %s", *key, error)
                self.nudge(*key, delay=error.delay)

    async def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop: no more retries or rechecks; reconciles under way may finish their plan."""
        for timer in self._timers.values():
            timer.cancel()
        self._closing = True
        self.active = False  # queued ones (still coalescing) do nothing
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()

    async def _reconcile_once(self, namespace: str, name: str) -> None:
        if not self.active:  # resumed, kopf relists: every object is reconciled then
            return
        started = time.monotonic()
        key = (namespace, name)
        try:
            changed = await self._observe_decide_write(namespace, name)
        except KubeError as error:
            self.metrics.reconciles.labels(OUTCOME_ERROR).inc()
            delay = self._backoff(key, RETRY_SECONDS if error.retryable else 60.0)
            # Retry-After (a 429 from API Priority and Fairness): never sooner than asked.
            delay = max(delay, error.retry_after or 0.0)
            raise RetryLater(str(error), delay) from error
        except Exception as error:  # a bug or an unreadable answer: retried, not forgotten
            log.exception("reconcile of %s/%s failed", namespace, name)
            self.metrics.reconciles.labels(OUTCOME_ERROR).inc()
            raise RetryLater(f"{type(error).__name__}: {error}", self._backoff(key)) from error
        finally:
            self.metrics.duration.observe(time.monotonic() - started)
        self._failures.pop(key, None)
        self._versions.pop(key, None)
        self.metrics.reconciles.labels(OUTCOME_CHANGED if changed else OUTCOME_UNCHANGED).inc()

    def _backoff(self, key: tuple[str, str], first: float = RETRY_SECONDS) -> float:
        """The delay before retrying a reconcile that failed: ``first``, then about twice as
        long each time (jittered: objects failing together do not retry together), at most
        MAX_RETRY_SECONDS; a success starts over."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        if failures == 1:
            return first
        doubled = first * 2 ** min(failures - 1, 16)  # past the cap long before 2**16
        return min(MAX_RETRY_SECONDS, doubled) * random.uniform(0.8, 1.0)

    async def _observe_decide_write(self, namespace: str, name: str) -> bool:
        """One full cycle; True when anything was written."""
        api = self._api_factory()
        self._versions.pop((namespace, name), None)
        body = await api.get("ModelDeployment", namespace, name)
        if body is not None:
            self._versions[(namespace, name)] = spec_version(body)
        if body is None or objects.body(body).meta.deleting:
            # Gone or going: garbage collection removes the children.
            self.metrics.set_phase(namespace, name, None)
            if body is None and self.rollouts is not None:
                self.rollouts.forget(namespace, name)
            return False
        # The phase status holds, until this cycle writes another: a reconcile that keeps
        # failing after a restart would leave the model without its series.
        self.metrics.set_phase(namespace, name, objects.body(body).status.get("phase"))
        observation = await self._observe(api, body)
        plan = decide(observation)
        if plan.run_golden_set is not None and self.rollouts is not None:
            # The validate step asked for a replay: run it, then observe again (so the
            # next step starts after it and measures from a scrape taken after it: its
            # requests are no traffic of that step) and decide with its result.
            assert observation.parsed is not None  # a rollout with steps read its spec
            result = await self.rollouts.replay(
                api, namespace, name, observation.parsed, plan.run_golden_set
            )
            observation = await self._observe(api, body)
            inputs = dataclasses.replace(
                observation.rollout or RolloutInputs(metrics_available=False),
                golden=result,
                golden_pending=self.rollouts.golden_pending(namespace, name),
            )
            plan = decide(dataclasses.replace(observation, rollout=inputs))
        if not self.active and not self._closing:
            # Paused while it observed and decided (a golden replay takes up to a minute):
            # another instance acts now; its own reconcile decides again.
            log.info("%s/%s: paused before writing; the plan is dropped", namespace, name)
            return False
        current = await api.get("ModelDeployment", namespace, name)
        if current is None or objects.body(current).meta.uid != objects.body(body).meta.uid:
            # Deleted (and maybe created again) while this cycle observed and decided (a
            # golden replay takes up to a minute): its plan, status, request and rollout
            # metrics are for no object (the new one's would count its outcome).
            log.info("%s/%s: deleted before writing; the plan is dropped", namespace, name)
            return False
        changed = await self._write(api, body, plan)
        if self.rollouts is not None:
            await self.rollouts.after_write(api, body, plan)
        if plan.rollout_outcome:
            self.metrics.rollout_finished(namespace, name, plan.rollout_outcome)
        self.metrics.rollout_progress(
            namespace,
            name,
            section(body, "status", "candidate"),
            plan.status.get("candidate") or {},
            plan.rollout_outcome,
            observation.now.timestamp(),
        )
        if plan.recheck_after:
            self.nudge(namespace, name, delay=plan.recheck_after)
        return changed

    async def _observe(self, api: Api, body: Mapping[str, Any]) -> Observation:
        """Read what one decision needs: the object's children, its reference profile's
        ConfigMap, and (with a candidate) the rollout's measurements and a person's request."""
        view = objects.body(body)
        namespace, name, uid = view.meta.namespace, view.meta.name, view.meta.uid
        spec = _parsed(name, view.spec)
        selector = f"{naming.LABEL_MODEL_DEPLOYMENT}={name}"
        deployments, configmaps, services, service = await asyncio.gather(
            api.list("Deployment", namespace, selector),
            api.list("ConfigMap", namespace, selector),
            api.list("Service", namespace, selector),
            api.get("Service", namespace, naming.service_name(name)),
        )
        ref = spec.monitoring.reference if spec is not None else None
        reference = await api.get("ConfigMap", namespace, ref.name) if ref else None
        owned = [item for item in deployments if objects.body(item).meta.controlled_by(uid)]
        rollout_inputs, planner = None, None
        if self.rollouts is not None and spec is not None:
            by_revision = {
                str(objects.body(item).meta.labels.get(naming.LABEL_REVISION)): item
                for item in owned
            }
            rollout_inputs = await self.rollouts.inputs(api, body, spec, by_revision, reference)
            if rollout_inputs is not None:  # status then shows no live share, and why
                routing_error = self.rollouts.routing_error(namespace, name)
                rollout_inputs = dataclasses.replace(rollout_inputs, routing_error=routing_error)
            planner = route_planner(name, namespace, spec.rollout.http_route)
        ours = service is not None and objects.body(service).meta.controlled_by(uid)
        return Observation(
            owner=Owner(name=name, namespace=namespace, uid=uid),
            generation=view.meta.generation,
            spec=view.spec,
            parsed=spec,
            status=view.status,
            deployments=owned,
            service=service if ours else None,
            configmaps=[item for item in configmaps if objects.body(item).meta.controlled_by(uid)],
            revision_services=[
                item
                for item in services
                if objects.body(item).meta.controlled_by(uid)
                and objects.body(item).meta.name != naming.service_name(name)
            ],
            reference_found=ref is None or objects.body(reference).has_key(ref.key),
            reference_digest=reference_digest(reference, ref.key if ref else None),
            now=self._clock(),
            sidecar_image=self.config.sidecar_image,
            sidecar_pull_policy=self.config.sidecar_pull_policy,
            foreign_service=service is not None and not ours,
            rollout=rollout_inputs,
            request=parse_request(view.meta.annotations) if self.rollouts is not None else None,
            route_planner=planner,
            fetches=self.fetches(namespace, name),
        )

    async def _write(self, api: Api, body: Mapping[str, Any], plan: Plan) -> bool:
        """Apply the plan's actions in order, post its Events, patch status once."""
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        for action, check in _checked_first(plan.actions):
            verb, what = _describe(action)
            if not check:
                log.info("%s %s in %s", verb, what, namespace)
            try:
                await self._carry_out(api, body, action, check=check)
            except KubeError as error:
                # Stop here: later actions (deleting the old revision) rely on this one.
                message = f"could not {verb} {what}: {error.message}"
                if isinstance(error, RouteHeld):  # its RoutingFailed Warning is out
                    held = _planned(plan, ConditionType.PROGRESSING)
                    message = f"{message}; not done until then: {held}" if held else message
                    await self._write_refused(api, body, plan, message, Reason.ROUTING_FAILED)
                    raise
                await self.report_failure(api, body, message)
                if isinstance(action, Apply) and refuses_the_object(error):
                    # Say so in status, or the object would show nothing while the
                    # retries (slow: 60 s) repeat the refusal.
                    await self._write_refused(api, body, plan, message, Reason.DEPLOY_FAILED)
                raise
            if not check and not isinstance(action, Route):
                self.metrics.writes.labels(action.kind, verb).inc()
        # Before the status that records the step: a kill in between loses no Event,
        # and the cycle that runs again after it finds its Events posted already.
        await self._emit(api, body, *plan.events, recorded=True)
        patch = status_patch(body.get("status"), plan.status)
        if patch is not None:
            try:
                await api.patch_status("ModelDeployment", namespace, name, patch)
            except KubeError as error:  # a write too (RBAC without /status, an old CRD)
                if error.status == 404:  # deleted while this cycle wrote: no one to tell
                    log.info("%s/%s: deleted before its status was written", namespace, name)
                    return True
                await self.report_failure(api, body, f"could not write status: {error.message}")
                raise
            self.metrics.writes.labels("ModelDeployment", "status").inc()
        self.metrics.set_phase(namespace, name, plan.status.get("phase"))
        writes = [action for action in plan.actions if not isinstance(action, Route)]
        return bool(writes) or patch is not None

    async def _carry_out(
        self, api: Api, body: Mapping[str, Any], action: Action, *, check: bool = False
    ) -> None:
        """One action of a plan (a Route through the rollout I/O, which writes only changes;
        ``check``: a Route read, not written)."""
        metadata = body["metadata"]
        if isinstance(action, Apply):
            await api.apply(action.manifest)
        elif isinstance(action, Delete):
            await api.delete(action.kind, metadata["namespace"], action.name)
        elif self.rollouts is not None:

            async def post(events: Sequence[Event]) -> None:
                # Recorded: a post that may pass on retry fails the cycle, and the routing
                # failure is not taken as said, so the retried cycle posts it (same name).
                try:
                    await self._emit(api, body, *events, recorded=True)
                except KubeError as error:
                    said = ", ".join(event.reason for event in events)
                    message = f"{said} Event not posted: {error.message}"
                    raise KubeError(error.status, message, retry_after=error.retry_after) from error

            namespace, name = metadata["namespace"], metadata["name"]
            before = self.rollouts.routing_error(namespace, name)
            await self.rollouts.route(api, body, action, post, check=check)
            if self.rollouts.routing_error(namespace, name) != before:
                # This cycle's status was decided before the route failed (or recovered): the
                # next one says so now, not at its recheck.
                self.nudge(namespace, name)

    async def _write_refused(
        self, api: Api, body: Mapping[str, Any], plan: Plan, message: str, reason: Reason
    ) -> None:
        metadata = body["metadata"]
        status = refused_write_status(
            plan.status,
            body.get("status"),
            message,
            reason=reason,
            generation=int(metadata.get("generation") or 0),
            now=datetime.datetime.now(datetime.UTC),
        )
        patch = status_patch(body.get("status"), status)
        if patch is not None:
            await api.patch_status(
                "ModelDeployment", metadata["namespace"], metadata["name"], patch
            )
            self.metrics.writes.labels("ModelDeployment", "status").inc()
        self.metrics.set_phase(metadata["namespace"], metadata["name"], status.get("phase"))

    async def _emit(
        self, api: Api, body: Mapping[str, Any], *events: Event, recorded: bool = False
    ) -> None:
        """Post Events (concurrently) and wait for them; a failed one is logged.

        ``recorded``: the status write that follows records the step these Events say.
        A post that may pass on retry (throttled, 5xx, no answer) is then raised once the
        others are posted: the status is not written, and the retried cycle posts the
        Event again under the same name (never twice). Any other failure (RBAC without
        events) is only logged: an Event is a courtesy that never stops a reconcile.
        """
        retry: list[KubeError] = []

        async def post(event: Event) -> None:
            try:
                # Counted when created: a repeat the API server already has (409) is none.
                if await self._post_event(api, body, event) is not False:
                    self.metrics.events.labels(event.reason).inc()
            except KubeError as error:
                log.warning("could not post event %s: %s", event.reason, error)
                if error.retryable:
                    retry.append(error)
            except Exception:
                log.exception("could not post event %s", event.reason)

        await asyncio.gather(*(post(event) for event in events))
        if recorded and retry:
            raise retry[0]

    async def record_health(self, write: HealthWrite) -> bool:
        """Write a health evaluation (status.health, its conditions, the phase) in one patch.

        For the monitoring loop (vigil.core.health computes its `health` and
        `conditions` for the serving ``revision`` of the object ``uid``). It runs
        under the same per-object lock as reconciles, so the two never interleave
        their reads and writes; rollout conditions are kept as they are. Each
        health condition whose status flips gets an Event (Warning when it calls
        for attention). Returns whether anything was written: nothing when a
        reconcile holds the object longer than HEALTH_WAIT_SECONDS (a golden
        replay holds it up to a minute, and the loop waits for all its writes);
        the next cycle writes it. Nothing either when the object read then serves
        another revision (a promotion while the loop judged: the old revision's
        breach would count against the new one's bake) or is another object of
        that name (deleted and created again): the verdict is not theirs.
        """
        namespace, name, revision = write.namespace, write.name, write.revision
        async with contextlib.AsyncExitStack() as held:
            try:
                key = (namespace, name)
                await held.enter_async_context(self._locks.hold(key, wait=HEALTH_WAIT_SECONDS))
            except Busy:
                log.info("%s/%s: health left to the next cycle (a reconcile runs)", namespace, name)
                return False
            if not self.active:  # paused (peering) while the health cycle ran: not ours
                return False
            api = self._api_factory()
            body = await api.get("ModelDeployment", namespace, name)
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                return False
            status = body.get("status") or {}
            now_serving = (objects.body(body).meta.uid, section(status, "stable").get("revision"))
            if now_serving != (write.uid, revision):
                log.debug(
                    "%s/%s: health of revision %s (uid %s) not written: now %s (uid %s)",
                    namespace,
                    name,
                    revision,
                    write.uid,
                    now_serving[1],
                    now_serving[0],
                )
                return False
            patch, phase = health_patch(body, write.health, write.conditions, self._clock())
            if not patch:
                return False
            # An Event per condition whose status flips (Healthy True -> False...),
            # posted before the status that records the flip (see _write).
            flips = transitions(status.get("conditions"), write.conditions)
            await self._emit(
                api,
                body,
                *(
                    Event(
                        state.reason,
                        f"{state.type} is {condition_word(state.status)}: {state.message}",
                        warning=attention,
                        occurrence=_flip_occurrence(status, state, revision),
                    )
                    for state, attention in flips
                ),
                recorded=True,
            )
            await api.patch_status("ModelDeployment", namespace, name, patch)
            self.metrics.writes.labels("ModelDeployment", "status").inc()
            self.metrics.set_phase(namespace, name, phase)
            if flips and status.get("bake"):
                # A bake judges these conditions: its reconcile need not wait for its recheck.
                self.nudge(namespace, name)
            return True

    def health_unchanged(self, body: Mapping[str, Any], write: HealthWrite) -> bool:
        """Whether a health evaluation would write nothing on this (watched) copy of the object.

        Lets the monitoring loop skip even the read of an unchanged object;
        `record_health` checks again on a fresh read before it writes.
        """
        patch, _ = health_patch(body, write.health, write.conditions, self._clock())
        return not patch

    async def report_failure(self, api: Api, body: Mapping[str, Any], message: str) -> None:
        """Post a Warning Event for a failed reconcile (the reason stays in the message).

        Once per version of the object: the retries of an unchanged object
        that fail the same way add no Event (vigil.core.events).
        """
        # Named by the spec's generation, not the object's version: the health loop and a
        # refused write's own status move the version between the retries.
        generation = (body.get("metadata") or {}).get("generation")
        occurrence = f"ReconcileFailed {generation} {message}"
        await self._emit(api, body, Event("ReconcileFailed", message, True, occurrence))


def _planned(plan: Plan, kind: str) -> str:
    """The words of a condition as the plan would have written it ("": none)."""
    return str((find_condition(plan.status.get("conditions"), kind) or {}).get("message") or "")


def _checked_first(actions: Sequence[Action]) -> list[tuple[Action, bool]]:
    """The plan's actions, each Route read first (True: checked, not carried out). A route
    refused while it still weights revision Services holds the whole plan, the writes before
    it too: a switch of the live Service to the candidate would be half a promotion. Only
    when a write comes before a Route: otherwise the Route's own read finds it first."""
    routes = [index for index, action in enumerate(actions) if isinstance(action, Route)]
    if not routes or all(isinstance(action, Route) for action in actions[: routes[-1]]):
        return [(action, False) for action in actions]
    return [*((actions[i], True) for i in routes), *((action, False) for action in actions)]


def _flip_occurrence(status: Mapping[str, Any], state: ConditionState, revision: str) -> str:
    """One Event per flip: the condition's last transition stays in status until the patch
    recording this one lands; a patch that failed, retried with newer figures, is the same
    flip (its words, with the figures, are not)."""
    before = find_condition(status.get("conditions"), state.type) or {}
    since = before.get("lastTransitionTime", "")
    return f"{state.type} {condition_word(state.status)} {revision} {since}"
