"""The rollout's I/O around the pure decision (vigil.core.reconcile / vigil.core.rollout).

Before each reconcile of a ModelDeployment with a candidate:

* measure the candidate and the stable (the same metrics sources as the
  health loop: direct scrapes of the sidecars or Prometheus) and reduce the
  two windows to ``CandidateFigures`` (vigil.core.analysis, pure); the
  candidate's inputs only as counted in the bins of the profile they are
  scored against (see :meth:`Rollouts._candidate_inputs`);
* give the address the stable's sidecars copy shadow requests to, and the
  golden replay goes to: the candidate's per-revision Service
  (``http://<name>-<revision>.<ns>.svc:80``);
* the traffic router's pure plan (replicas, Service selector).

While writing the plan: point the HTTPRoute (Gateway API router) where the
plan's Route action says, between the plan's writes and its deletions.

After it: replay the golden set when the decision asked (then the reconciler
decides again), clear a person's request annotation (JSON patch guarded by
the request id).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from vigil.common import objects
from vigil.common.objects import section
from vigil.core import naming
from vigil.core.analysis import candidate_figures, feature_changes
from vigil.core.candidate import RolloutInputs, RoutePlanner, evidence_seconds
from vigil.core.desired import (
    METRICS_PORT,
    SIDECAR_READY_PATH,
    mounted_reference,
    reference_digest,
)
from vigil.core.events import shorten
from vigil.core.reconcile import Event, Plan, Route
from vigil.core.revision import compute_revision
from vigil.core.rollout import GoldenResult, Traffic
from vigil.core.spec import (
    GoldenSetRef,
    ModelDeploymentSpec,
    MonitoringSettings,
    health_settings,
)
from vigil.core.vocabulary import Reason
from vigil.core.window import RevisionWindow
from vigil.kube.client import KubeError
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.pool import SourcePool
from vigil.operator.api import Api
from vigil.operator.health import PodInfo
from vigil.plugin.requests import clear_request_patch
from vigil.profile.model import ProfileError, ReferenceProfile, parse_profile
from vigil.routing import RoutingError, RoutingTarget, router_for
from vigil.routing.base import RoutingApi
from vigil.validation.golden import (
    DEFAULT_CONCURRENCY,
    GoldenSetError,
    GoldenSetNotFound,
    ReplayProgress,
    load_golden_set,
    replay_report,
)

log = logging.getLogger("vigil.operator.rollouts")

#: Longer than the sidecar's own 2-s check of its model server, which its answer waits on.
READY_PROBE_SECONDS = 3.0
#: A step that has just started is measured over this much (a range query needs one):
#: short, so that its window does not reach back before the step into the one before.
MIN_EVIDENCE_SECONDS = 0.001

#: How long a candidate pod's reference digest is kept after the rollouts last saw the pod,
#: beyond the step's window: the direct source counts a gone pod's scrapes for the window
#: after its last one, and the health loop may have scraped it after the rollouts looked.
SEEN_MARGIN_SECONDS = 600.0

#: The running pods of one revision of a ModelDeployment, by name (the health loop's index).
RunningPods = Callable[[str, str, str], Sequence[tuple[str, PodInfo]]]
#: Posts Events; raises when the post may pass on a retry (the reconciler's recorded post).
PostEvents = Callable[[Sequence[Event]], Awaitable[None]]
#: A candidate's pods, by name: the reference digest each read at its start ("": not said),
#: and when the rollouts last saw the pod.
PodsRead = dict[str, tuple[str, float]]


def _mounted_reference(deployment: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(ConfigMap, key) of the reference profile a revision's pod template mounts."""
    return mounted_reference(section(deployment, "spec", "template", "spec"))


def _profile(configmap: Mapping[str, Any] | None, key: str) -> ReferenceProfile | None:
    """The profile under ``key`` (None: no ConfigMap, no key, or not a profile)."""
    raw = objects.body(configmap).data.get(key)
    try:
        return parse_profile(raw) if raw else None
    except (ProfileError, ValueError):
        return None


def _edited_since_started(
    deployment: Mapping[str, Any] | None,
    configmap: Mapping[str, Any] | None,
    name: str,
    key: str,
) -> str:
    """Why the reference ConfigMap is not the profile the pods read at their start ("":
    it is, or their template does not say which they read)."""
    annotations = section(deployment, "spec", "template", "metadata", "annotations")
    started = annotations.get(naming.ANNOTATION_REFERENCE_DIGEST)
    current = reference_digest(configmap, key)
    if not started or started == current:
        return ""
    return (
        f"the stable's reference ConfigMap {name} was edited since the stable's pods "
        f"started (digest {current}, pods {started})"
    )


def _inputs_from(window: RevisionWindow, part: RevisionWindow) -> RevisionWindow:
    """``window`` with the figures a sidecar counts in its reference profile's bins (inputs,
    numeric predictions) taken from ``part``; requests, latency, classes, moments, shadow
    comparisons and labels as they are."""
    return dataclasses.replace(
        window,
        input_rows=part.input_rows,
        feature_bins=part.feature_bins,
        feature_categories=part.feature_categories,
        feature_missing=part.feature_missing,
        feature_out_of_range=part.feature_out_of_range,
        prediction_bins=part.prediction_bins,
    )


def _routing_occurrence(reason: str, action: Route, error: str, recovered: int) -> str:
    """A routing Event named by its route, revisions, failure and how many times this
    process saw that route recover, rather than the object's version: posted again after a
    restart, or by a retried cycle, it is the same Event; the same failure after a recovery
    is a new one (Events live an hour: a reused name would not be shown)."""
    route = f"{action.http_route or '-'} {action.stable}/{action.candidate or '-'}"
    return f"{reason} {route} {error}" + (f" #{recovered}" if recovered else "")


def _summed_unjudged(
    read: PodsRead,
    start: float,
    current: str,
    deployment: Mapping[str, Any] | None,
    edited: str,
) -> str:
    """Why the input drift of a window that adds the candidate's pods up since ``start``
    is not judged ("": it is): a pod in it read another profile than ``current``."""
    olds = {d for d, seen in read.values() if seen >= start and d not in ("", current)}
    annotations = section(deployment, "spec", "template", "metadata", "annotations")
    template = str(annotations.get(naming.ANNOTATION_REFERENCE_DIGEST) or "")
    if template not in ("", current):  # measured before its pods are replaced
        olds.add(template)
    if olds:
        return (
            f"{edited}: its pods counted inputs in the previous profile's bins (judged "
            "again in a step that starts once every pod reads it) (current "
            f"{current}, pods read {', '.join(sorted(olds))})"
        )
    return ""


class RouteHeld(KubeError):
    """A route refused as asked and left as it is, still sending traffic to revision
    Services: the plan's step does not take place (its scale-downs and deletions would
    leave live traffic on what is gone) until the route is fixed."""

    def __init__(self, error: RoutingError) -> None:
        message = (
            f"routing not applied: {error}; the route still sends traffic to "
            f"{', '.join(error.weighted)}, so the rollout holds (nothing is scaled down or "
            "deleted) until it is fixed"
        )
        super().__init__(409, message)  # retried soon: a person fixes the route, not Vigil
        self.args = (message,)


def route_planner(name: str, namespace: str, http_route: str | None) -> RoutePlanner:
    """The router's pure plan for this ModelDeployment (replica ratio or Gateway API)."""
    router = router_for(http_route)

    def plan(stable: str, candidate: str | None, traffic: Traffic) -> Any:
        return router.plan(RoutingTarget(name, namespace, stable, candidate), traffic)

    return plan


class Rollouts:
    """Measures candidates, replays golden sets, applies routes, clears requests."""

    def __init__(
        self,
        running_pods: RunningPods,
        *,
        sidecar_image: str = "",
        sources: SourcePool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._running_pods = running_pods
        self.sidecar_image = sidecar_image
        #: Shared with the health loop: one reader of each sidecar's /metrics.
        self.sources = sources or SourcePool()
        #: The last routing failure per ModelDeployment: (the HTTPRoute, why). An Event only
        #: when it changes; it holds while the spec names that route (``_keep_routing_error``).
        self._routing_errors: dict[tuple[str, str], tuple[str, str]] = {}
        #: How many routing failures per ModelDeployment recovered: names a recurrence anew.
        self._routing_recoveries: dict[tuple[str, str], int] = {}
        #: Why the last golden replay per ModelDeployment gave no result (status says it).
        self._golden_pending: dict[tuple[str, str], str] = {}
        #: The candidate's answers to its golden set so far (a replay that ran out of time
        #: goes on from them), by ModelDeployment.
        self._replayed: dict[tuple[str, str], ReplayProgress] = {}
        #: Per ModelDeployment: its candidate, and what each of the candidate's pods read.
        self._read: dict[tuple[str, str], tuple[str, PodsRead]] = {}
        self._clock = clock

    def candidate_urls(self, namespace: str, name: str, revision: str) -> list[str]:
        """Where shadow copies and the golden replay can reach the candidate: its
        per-revision Service, which follows its pods as they come and go."""
        return [f"http://{naming.deployment_name(name, revision)}.{namespace}.svc:80"]

    async def _answers_ready(self, url: str) -> bool:
        timeout = aiohttp.ClientTimeout(total=READY_PROBE_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url + SIDECAR_READY_PATH) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def candidate_url(self, namespace: str, name: str, revision: str) -> str | None:
        """The first candidate address whose sidecar answers ready (model loaded), or None.

        Pod readiness is not always proof (a cluster that marks pods Ready
        without probing them, a probe period behind): copies sent to a
        starting model would count as the candidate's errors.
        """
        for url in self.candidate_urls(namespace, name, revision):
            if await self._answers_ready(url):
                return url
        return None

    async def inputs(
        self,
        api: Api,
        body: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        deployments: Mapping[str, Mapping[str, Any]],
        reference_configmap: Mapping[str, Any] | None,
    ) -> RolloutInputs | None:
        """The candidate's figures this cycle, or None when no candidate runs.

        ``deployments`` are the revisions' Deployments and ``reference_configmap``
        the ConfigMap ``spec.monitoring.reference`` names, as the reconciler
        already read them this cycle (read here again, they would cost calls).
        """
        view = objects.body(body)
        namespace, name = view.meta.namespace, view.meta.name
        # Before the reconciler reads routing_error() for this cycle's status.
        self._keep_routing_error(namespace, name, spec.rollout.http_route)
        stable = section(view.status, "stable").get("revision")
        candidate = compute_revision(spec, self.sidecar_image)
        if not stable or candidate == stable or candidate not in deployments:
            self._read.pop((namespace, name), None)
            return None
        self._note_reads(namespace, name, candidate)
        try:
            settings = health_settings(spec.monitoring, spec.rollout.analysis)
        except ValueError as error:
            return await self._unmeasured(namespace, name, candidate, str(error))
        reference = (
            _profile(reference_configmap, settings.reference[1]) if settings.reference else None
        )
        task = reference.task if reference is not None else ""
        try:
            stable_reference, unread = await self._stable_reference(
                api, namespace, deployments.get(stable), reference_configmap
            )
        except KubeError as error:  # not an absent ConfigMap: no figures, the step holds
            return await self._unmeasured(namespace, name, candidate, str(error), task)
        if not task and stable_reference is not None:
            task = stable_reference.task
        changes = None
        if reference is not None and stable_reference is not None:
            added, dropped, _ = feature_changes(reference, stable_reference)
            changes = (added, dropped)
        now = self._clock()
        summary = section(view.status, "candidate")
        window = evidence_seconds(summary, candidate, now)
        started = summary.get("revision") == candidate and bool(summary.get("stepStartedAt"))
        measured = await self._measure(
            namespace,
            name,
            candidate,
            stable,
            settings,
            reference,
            stable_reference,
            window,
            now,
            stable_reference_unread=unread,
            candidate_deployment=deployments.get(candidate),
            reference_configmap=reference_configmap,
            started=started and bool(summary.get("stepName")),
        )
        return dataclasses.replace(measured, feature_changes=changes, profile_task=task)

    async def _unmeasured(
        self, namespace: str, name: str, candidate: str, error: str, task: str = ""
    ) -> RolloutInputs:
        """No figures this cycle: the step holds, its traffic as set up. Without the shadow
        target the stable's sidecars would be told to stop copying for a cycle (a settings
        write that reaches them a minute later), status still saying they copy."""
        target = await self.candidate_url(namespace, name, candidate)
        return RolloutInputs(
            metrics_available=False,
            metrics_error=error,
            shadow_target=target,
            candidate_serving=target is not None,
            profile_task=task,
        )

    def _note_reads(self, namespace: str, name: str, revision: str) -> None:
        """Remember the reference digest each of the candidate's pods read: once gone, the
        pods provider forgets them, while a window may still count their inputs. Only running
        pods: one stopped (Evicted, Failed) but still listed counts nothing since, and its
        last-seen time stays when it stopped."""
        before, read = self._read.get((namespace, name), ("", {}))
        if before != revision:
            read = {}
        now = self._clock()
        for pod, info in self._running_pods(namespace, name, revision):
            read[pod] = (info.reference_digest, now)
        self._read[(namespace, name)] = (revision, read)

    def _candidate_inputs(
        self,
        source: object,
        target: RevisionTarget,
        window: RevisionWindow,
        settings: MonitoringSettings,
        deployment: Mapping[str, Any] | None,
        configmap: Mapping[str, Any] | None,
        now: float,
    ) -> tuple[RevisionWindow, str]:
        """The candidate's window with its inputs counted in the bins of the profile they
        are scored against, and why its input drift is not judged ("": it is).

        Its reference ConfigMap edited in place during the step: the reconcile
        renders its pod template with the new digest, and the rolling update
        replaces its pods while the step runs; each sidecar bins by the profile
        it read at its start. The direct source keeps each pod's scrapes: the
        inputs are counted on the pods that read the current profile. A source
        that adds the pods up (Prometheus) cannot leave any out: not judged
        while its window holds a pod that read another (for the rest of the
        step). Pods that do not say what they read count as reading it.
        """
        if not settings.reference:
            return window, ""
        name, key = settings.reference
        current = reference_digest(configmap, key)
        if not current:
            return window, ""
        start = now - target.window_seconds
        _, read = self._read.get(target.key[:2], ("", {}))
        for pod in [p for p, (_, seen) in read.items() if seen < start - SEEN_MARGIN_SECONDS]:
            del read[pod]
        edited = f"the candidate's reference ConfigMap {name} was edited during this step"
        if isinstance(source, DirectSource):
            split = source.split_by_profile(
                target, now, lambda pod: read.get(pod, ("", 0.0))[0], current
            )
            counted, other, kept = split.counted, split.other, split.kept
            if not other:
                return window, ""
            if kept:
                return _inputs_from(window, source.pods_window(target, now, kept)), ""
            every = "the pod" if len(counted) == 1 else f"all {len(counted)} pods"
            reads = "reads" if len(counted) == 1 else "read"
            why = f"{edited} and {every} counted still {reads} the previous profile"
            pods = ", ".join(sorted(set(other.values())))
            return _inputs_from(
                window, RevisionWindow()
            ), f"{why} (current {current}, pods read {pods})"
        why = _summed_unjudged(read, start, current, deployment, edited)
        return (_inputs_from(window, RevisionWindow()), why) if why else (window, "")

    async def _measure(
        self,
        namespace: str,
        name: str,
        candidate: str,
        stable: str,
        settings: MonitoringSettings,
        reference: ReferenceProfile | None,
        stable_reference: ReferenceProfile | None,
        evidence: float,
        now: float,
        *,
        stable_reference_unread: str = "",
        candidate_deployment: Mapping[str, Any] | None = None,
        reference_configmap: Mapping[str, Any] | None = None,
        started: bool = False,
    ) -> RolloutInputs:
        """Both revisions since the step started (``evidence`` seconds; at least one).

        ``started``: the rollout's first step has started. A probe that fails then (a
        busy model server, a pod draining) holds the judging for a cycle, not the copies.
        """
        target = await self.candidate_url(namespace, name, candidate)
        if target is None:
            return RolloutInputs(
                metrics_available=False,
                metrics_error="the candidate's sidecar does not answer ready yet",
                candidate_serving=False,
                shadow_target=self.candidate_urls(namespace, name, candidate)[0]
                if started
                else None,
            )
        window = max(evidence, MIN_EVIDENCE_SECONDS)
        targets = [
            RevisionTarget(
                namespace,
                name,
                revision,
                window,
                tuple(
                    PodTarget(pod, info.ip, METRICS_PORT)
                    for pod, info in self._running_pods(namespace, name, revision)
                ),
            )
            for revision in (candidate, stable)
        ]
        if not targets[0].pods:
            return RolloutInputs(
                metrics_available=False,
                metrics_error="no running candidate pods to measure",
                shadow_target=target,
            )
        key = settings.source_key
        source = self.sources.get(key)
        try:
            collection = await source.collect(targets, now)
        except Exception as error:  # a broken source holds the rollout, never judges it
            return RolloutInputs(
                metrics_available=False, metrics_error=f"metrics: {error}", shadow_target=target
            )
        cand = collection.windows.get(targets[0].key)
        if cand is None:
            problem = collection.errors.get(targets[0].key, "no metrics for the candidate")
            return RolloutInputs(
                metrics_available=False, metrics_error=problem, shadow_target=target
            )
        stable_window = collection.windows.get(targets[1].key)
        if stable_window is None:
            # Without it the comparisons (latency, predictions, inputs) would be left
            # out, not held: missing data never promote.
            problem = collection.errors.get(targets[1].key, "no metrics")
            return RolloutInputs(
                metrics_available=False,
                metrics_error=f"the stable: {problem}",
                shadow_target=target,
            )
        cand, edited = self._candidate_inputs(
            source, targets[0], cand, settings, candidate_deployment, reference_configmap, now
        )
        figures = candidate_figures(
            candidate,
            cand,
            stable_window,
            method=settings.policy.drift_method,  # type: ignore[arg-type]
            reference=reference,
            stable_reference=stable_reference,
            stable_reference_unread=stable_reference_unread,
        )
        if edited and reference is not None:
            unjudged = "; ".join(filter(None, (figures.input_drift_unjudged, edited)))
            figures = dataclasses.replace(figures, input_drift=(), input_drift_unjudged=unjudged)
        return RolloutInputs(figures=figures, shadow_target=target)

    async def _stable_reference(
        self,
        api: Api,
        namespace: str,
        deployment: Mapping[str, Any] | None,
        reference_configmap: Mapping[str, Any] | None,
    ) -> tuple[ReferenceProfile | None, str]:
        """The stable's reference profile, from the ConfigMap its pod template mounts, and
        why there is none ("": read, or none mounted); KubeError when the API server did not
        answer (a 429, a 5xx: no reason to judge without it).

        The spec now names the candidate's profile; the stable's pods still
        mount the one they were built with (usually the same ConfigMap, read
        once already). Its sidecars read it at their start only, and the stable's
        pods are not replaced during a rollout: a ConfigMap edited in place since
        (its digest no longer the pod template's) holds bins the stable's counts
        are not in, so it counts as unread. Pods without the digest: read as it is.
        """
        ref = _mounted_reference(deployment)
        if ref is None:
            return None, ""
        name, key = ref
        configmap = reference_configmap
        if configmap is None or (configmap.get("metadata") or {}).get("name") != name:
            configmap = await api.get("ConfigMap", namespace, name)
        profile = _profile(configmap, key)
        if profile is not None:
            edited = _edited_since_started(deployment, configmap, name, key)
            return (None, edited) if edited else (profile, "")
        if configmap is None:
            return None, f"the stable's reference ConfigMap {name} was not found"
        return None, f"the stable's reference ConfigMap {name} holds no profile under {key!r}"

    async def replay(
        self, api: Api, namespace: str, name: str, spec: ModelDeploymentSpec, ref: GoldenSetRef
    ) -> GoldenResult | None:
        """Replay the golden set against the candidate: None when it could not run (the
        step stays pending and replays again), nothing reproduced when the set is unusable.

        No result also when its ConfigMap does not exist yet (GitOps may apply it after
        the ModelDeployment) or when rows got no answer even on a retry (timeouts, 5xx,
        the pod gone between the probe and the replay): no evidence judges no candidate.
        """
        key = (namespace, name)

        def no_result(why: str) -> None:
            log.warning("%s/%s: golden replay gave no result (replayed again): %s", *key, why)
            self._golden_pending[key] = shorten(why, 300)

        self._golden_pending.pop(key, None)
        revision = compute_revision(spec, self.sidecar_image)
        url = await self.candidate_url(namespace, name, revision)
        if url is None:
            return no_result("no address of the candidate")
        # One batch at a time per candidate pod: a validate step runs one, and a
        # single-worker server would queue the rest until they time out.
        pods = len(self._running_pods(namespace, name, revision))
        concurrency = min(DEFAULT_CONCURRENCY, max(1, pods))
        try:
            golden = await load_golden_set(api, namespace, ref)
            progress = self._replayed.get(key)
            if progress is None or not progress.fits(golden, revision):
                progress = self._replayed[key] = ReplayProgress(golden, revision)
            report = await replay_report(
                golden,
                url,
                model=spec.model.name,
                concurrency=concurrency,
                server_protocol=spec.server.protocol,
                progress=progress,
            )
        except (KubeError, GoldenSetNotFound) as error:
            return no_result(f"golden set not read: {error}")
        except GoldenSetError as error:
            log.warning("%s/%s: golden set unusable: %s", namespace, name, error)
            return GoldenResult(total=0, agreed=0, message=f"golden set unusable: {error}")
        if not report.complete:  # no answer for some rows: those replayed next cycle
            return no_result(report.summary())
        self._replayed.pop(key, None)  # complete: a later replay asks afresh
        log.info("%s/%s: golden replay against %s: %s", namespace, name, url, report.summary())
        if report.result.agreed < report.result.total:  # what did not reproduce, in status
            return dataclasses.replace(report.result, message=shorten(report.summary(), 512))
        return report.result

    def golden_pending(self, namespace: str, name: str) -> str:
        """Why the last golden replay of this ModelDeployment gave no result ("": it did)."""
        return self._golden_pending.get((namespace, name), "")

    def forget(self, namespace: str, name: str) -> None:
        """A deleted ModelDeployment: nothing of it is kept."""
        self._routing_errors.pop((namespace, name), None)
        self._routing_recoveries.pop((namespace, name), None)
        self._golden_pending.pop((namespace, name), None)
        self._replayed.pop((namespace, name), None)
        self._read.pop((namespace, name), None)

    def routing_error(self, namespace: str, name: str) -> str:
        """Why the last route of this ModelDeployment could not be applied ("": it was)."""
        failed = self._routing_errors.get((namespace, name))
        return failed[1] if failed else ""

    def _keep_routing_error(self, namespace: str, name: str, http_route: str | None) -> None:
        """Forget a routing failure on another HTTPRoute than the one the spec names (None:
        replica ratio). No Route action on that route comes to clear it, and it would
        otherwise show every later step with no live share."""
        failed = self._routing_errors.get((namespace, name))
        if failed is not None and failed[0] != http_route:
            del self._routing_errors[(namespace, name)]
            log.info("%s/%s: routing failure on HTTPRoute %s let go", namespace, name, failed[0])

    async def route(
        self,
        api: Api,
        body: Mapping[str, Any],
        action: Route,
        post: PostEvents | None = None,
        *,
        check: bool = False,
    ) -> list[Event]:
        """Point the route (HTTPRoute) as the plan's Route action says; the Events said
        (``check``: read it only, raising RouteHeld as a write would, saying nothing else).

        A route that cannot point at this model (missing, no backendRef to it)
        names none of its Services either: the plan goes on, with a Warning
        Event (once per cause), which would otherwise leave a rollout holding
        on too little data with no visible cause. A KubeError (the API refused
        or failed) is raised: the plan's deletions must wait for the route. So
        is RouteHeld, after that Event, for a route refused while it still sends
        traffic to revision Services (refs differing in a rule, the weight limit).

        ``post`` posts the Events, raising when that may pass on a retry: the
        failure or recovery counts as announced only once it returns (None: once
        returned to the caller, who posts them).
        """
        view = objects.body(body)
        namespace, name = view.meta.namespace, view.meta.name
        router = router_for(action.http_route)
        routing_api: RoutingApi = api
        key = (namespace, name)
        target = RoutingTarget(name, namespace, action.stable, action.candidate)
        failed = self._routing_errors.get(key)
        try:
            await router.apply(routing_api, target, action.traffic, write=not check)
        except RoutingError as error:
            if check and not error.weighted:
                return []  # said when the plan writes it: the plan goes on
            log.warning("%s/%s: routing not applied: %s", namespace, name, error)
            events: list[Event] = []
            if failed != (action.http_route, str(error)):
                recovered = self._routing_recoveries.get(key, 0)
                occurrence = _routing_occurrence(
                    Reason.ROUTING_FAILED, action, str(error), recovered
                )
                message = f"routing not applied: {error}"
                events = [Event(Reason.ROUTING_FAILED, message, True, occurrence)]
                if post is not None:
                    await post(events)
                self._routing_errors[key] = (action.http_route, str(error))
            if error.weighted:
                raise RouteHeld(error) from error
            return events
        # Only a success on the route that failed recovers it (not a dropped route's reset).
        if check or failed is None or failed[0] != action.http_route:
            return []
        recovered = self._routing_recoveries.get(key, 0)
        occurrence = _routing_occurrence(Reason.ROUTING_APPLIED, action, failed[1], recovered)
        events = [Event(Reason.ROUTING_APPLIED, "routing applied again", occurrence=occurrence)]
        if post is not None:
            await post(events)
        self._routing_errors.pop(key, None)
        self._routing_recoveries[key] = recovered + 1
        return events

    async def after_write(self, api: Api, body: Mapping[str, Any], plan: Plan) -> None:
        """Log the rollout's progress, then clear a handled request."""
        view = objects.body(body)
        namespace, name = view.meta.namespace, view.meta.name
        # A dropped route's reset may have failed in this cycle's plan: not the spec's route.
        route = section(view.spec, "rollout", "trafficRouting", "gatewayAPI").get("httpRoute")
        self._keep_routing_error(namespace, name, str(route) if route else None)
        before = section(view.status, "candidate")
        after = plan.status.get("candidate") or {}
        if not after or plan.rollout_outcome:
            # Ended (promoted, rolled back, aborted, failed): a retry of the same revision
            # replays its golden set from the first row, to the pods it has then.
            self._replayed.pop((namespace, name), None)
        if after and (after.get("message"), after.get("gates")) != (
            before.get("message"),
            before.get("gates"),
        ):
            log.info(
                "%s/%s rollout of %s: %s %s gates=%s",
                namespace,
                name,
                after.get("revision"),
                after.get("reason"),
                after.get("message"),
                after.get("gates"),
            )
        if plan.clear_request is not None:
            try:
                await api.patch(
                    "ModelDeployment",
                    namespace,
                    name,
                    clear_request_patch(plan.clear_request),
                    content_type="application/json-patch+json",
                )
            except KubeError as error:
                # 422: a newer request arrived meanwhile; it is read on the next cycle.
                log.info("%s/%s: request not cleared: %s", namespace, name, error)
