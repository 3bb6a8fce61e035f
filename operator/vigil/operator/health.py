"""The health loop: every interval, one cycle over every watched ModelDeployment.

Each cycle, like a runbook:

1. List the serving revision of every ModelDeployment (``status.stable``)
   and its running pods (kept up to date by a label-filtered pod watch,
   indexed by revision). One not judged (deleting, not serving yet, unusable
   monitoring settings) exports no health gauges.
2. Group the revisions by metrics source (``direct``, or ``prometheus`` per
   URL) and collect each group at once: the prometheus queries per cycle
   stay constant whatever the number of ModelDeployments.
3. Load each reference profile (ConfigMap; parsed again only when its
   resourceVersion changes).
4. Judge each revision with the pure :func:`vigil.core.health.evaluate`
   (its drift on the counts of the pods that read that profile: see
   :meth:`HealthLoop._drift_basis`), and
   its realized performance (labels) with :func:`vigil.core.performance.judge`.
5. Write ``status.health`` and the conditions through
   :meth:`HealthRecorder.record_health` (the reconciler): at most one patch per object per cycle,
   none when nothing changed after rounding (checked first against the
   watched copy, so an unchanged object costs no API call); Events on
   transitions.
6. Update the per-ModelDeployment gauges.

A failing source changes no verdict: ``MetricsAvailable`` turns False with
the error and the last figures stay, marked stale (those of the revision
judged: ``status.health.revision`` says which). One model's part raising (its
profile, its verdict, its write) is logged and leaves the others judged. What
a judged verdict holds until surely back (breached SLOs, drifted features,
PerformanceDegraded) stays in ``status.health`` through windows that judge nothing,
and so does its condition (held, :func:`vigil.core.health_status.hold_verdicts`): a
dip in traffic is no recovery. The verdict gauges say what the conditions say.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from vigil.common import objects
from vigil.common.relisting import Relistings
from vigil.common.times import format_time, format_unix, parse_unix
from vigil.core import naming
from vigil.core.desired import METRICS_PORT, mounted_reference, reference_digest
from vigil.core.health import DriftBasis, HealthReport, evaluate, format_window
from vigil.core.health_status import (
    Holds,
    condition_word,
    health_conditions,
    hold_verdicts,
    judged_revision,
    next_health,
    same_figures,
)
from vigil.core.observed import FetchState, fetch_state, fetches_by_revision
from vigil.core.performance import PerformanceReport, judge
from vigil.core.reconcile import has_served
from vigil.core.spec import SOURCE_PROMETHEUS, MonitoringSettings, monitoring_settings
from vigil.core.status import ConditionState, find_condition
from vigil.core.vocabulary import ConditionType, Reason
from vigil.core.window import RevisionWindow
from vigil.kube.cache import compact, expand
from vigil.kube.client import KubeError
from vigil.metrics import Collection, PodTarget, RevisionTarget, SourceCalls
from vigil.metrics.direct import DirectSource
from vigil.metrics.pool import SourceKey, SourcePool
from vigil.operator.api import Api
from vigil.operator.memory import release_free_memory
from vigil.operator.metrics import HealthFigures, OperatorMetrics
from vigil.profile import ReferenceProfile
from vigil.profile.model import ProfileError, parse_profile

log = logging.getLogger("vigil.operator.health")

DEFAULT_INTERVAL_SECONDS = 30.0

#: How long a gone pod's reference digest is kept beyond the longest window (and a cycle):
#: the direct source counts a pod's scrapes for the window after its last one.
DEPARTED_MARGIN_SECONDS = 120.0

#: How long past its deletionTimestamp (the end of its grace period) a pod still Running is
#: scraped: the kubelet's kill, and clocks a little apart.
LEAVING_MARGIN_SECONDS = 10.0

#: (namespace, ModelDeployment, revision) -> each reference digest its pods read, with the
#: last time a pod read it (now for a pod still there).
ProfilesRead = dict[tuple[str, str, str], dict[str, float]]


def _last_condition(
    status: Mapping[str, Any], target: RevisionTarget, kind: ConditionType
) -> Mapping[str, Any]:
    """The ``kind`` condition of this revision's last verdict ({} when ``status.health``
    judged another revision: a promotion holds nothing over)."""
    if not judged_revision(status.get("health"), target.revision):
        return {}
    return find_condition(status.get("conditions"), kind) or {}


def _drifted(status: Mapping[str, Any], target: RevisionTarget) -> frozenset[str]:
    """The features this revision's last DriftDetected named (``status.health.drift.over``):
    held over the threshold until surely under it (vigil.core.health.judge_drift). An
    Unknown since judged nothing: the features it carried (:func:`_carry_holds`) stand."""
    word = _last_condition(status, target, ConditionType.DRIFT_DETECTED).get("status")
    if word not in ("True", "Unknown"):
        return frozenset()
    over = objects.section(status, "health", "drift").get("over")
    return frozenset(name for name in over or () if isinstance(name, str))


def _degraded_by(status: Mapping[str, Any], target: RevisionTarget) -> frozenset[str]:
    """The SLOs this revision's last judged verdict found breached (none unless Degraded,
    or Unknown since: it carried them): each stays breached until surely met
    (vigil.core.slo). ``status.health.breached`` names them; a status written before it,
    the Healthy condition's reason alone."""
    healthy = _last_condition(status, target, ConditionType.HEALTHY)
    word = healthy.get("status")
    if word not in ("False", "Unknown"):
        return frozenset()
    breached = objects.section(status, "health").get("breached")
    if isinstance(breached, list):
        return frozenset(str(reason) for reason in breached)
    if word == "Unknown":
        return frozenset()
    return frozenset({str(healthy.get("reason") or "")}) - {""}


def _performance_held(status: Mapping[str, Any], target: RevisionTarget) -> bool:
    """Whether this revision's last judged PerformanceDegraded was True: held until the
    labels surely show it back. An Unknown since carried it as
    ``status.health.performance.degraded``."""
    word = _last_condition(status, target, ConditionType.PERFORMANCE_DEGRADED).get("status")
    if word == "True":
        return True
    carried = objects.section(status, "health", "performance").get("degraded")
    return word == "Unknown" and carried is True


def _holds(status: Mapping[str, Any], target: RevisionTarget) -> Holds:
    """What this revision's last judged verdicts hold until surely back (read from status)."""
    return Holds(
        _degraded_by(status, target), _drifted(status, target), _performance_held(status, target)
    )


def _holding(holds: Holds, report: HealthReport, performance: PerformanceReport | None) -> Holds:
    """The holds a window that judged nothing keeps its conditions at: none where nothing
    was measured at all (no request, no label, no usable reference profile). Held there, a
    breach would stay forever: an idle model Degraded and its SLO alert firing."""
    idle = report.requests <= 0
    labels = (performance.figures.get("labels") or 0) if performance is not None else 0
    return Holds(
        slos=frozenset() if idle else holds.slos,
        drift=frozenset() if idle or report.no_reference else holds.drift,
        performance=holds.performance and labels > 0,
    )


def _carry_holds(
    previous: Mapping[str, Any] | None,
    health: dict[str, Any],
    conditions: Sequence[ConditionState],
    holds: Holds,
) -> dict[str, Any]:
    """``health`` with the holds of each condition written Unknown (InsufficientData, no
    reference, too few labels) carried as the last judged verdict left them: an Unknown
    judges nothing, so the next judged window must still be surely back. Status keeps
    them (an operator restart reads them back)."""
    unknown = {c.type for c in conditions if c.status is None}
    if not unknown:
        return health
    carried = dict(health)
    if ConditionType.HEALTHY in unknown:
        carried.pop("breached", None)
        if holds.slos:
            carried["breached"] = sorted(holds.slos)
    if ConditionType.DRIFT_DETECTED in unknown and "drift" in carried:
        # Not what the unjudged window measured: only the last judged verdict holds.
        drift = {k: v for k, v in carried["drift"].items() if k != "over"}
        carried["drift"] = {**drift, "over": sorted(holds.drift)} if holds.drift else drift
    if ConditionType.PERFORMANCE_DEGRADED in unknown and holds.performance:
        carried["performance"] = {**(carried.get("performance") or {}), "degraded": True}
    if isinstance(previous, Mapping) and same_figures(previous, carried):
        carried["evaluatedAt"] = previous["evaluatedAt"]  # nothing new: nothing written
    return carried


@dataclass(frozen=True)
class HealthWrite:
    """A health evaluation to write: ``status.health`` and the health conditions of the
    serving ``revision`` of the object ``uid``, as the loop judged it."""

    namespace: str
    name: str
    revision: str
    uid: str
    health: Mapping[str, Any]
    conditions: Sequence[ConditionState]


class HealthRecorder(Protocol):
    """Writes a health evaluation (:class:`vigil.operator.reconciler.Reconciler` does)."""

    async def record_health(self, write: HealthWrite) -> bool: ...

    def nudge(self, namespace: str, name: str, delay: float = 0.0) -> None: ...

    def health_unchanged(self, body: Mapping[str, Any], write: HealthWrite) -> bool: ...

    def forget(self, namespace: str, name: str) -> None: ...


@dataclass(frozen=True)
class PodInfo:
    """What the operator needs of one model pod (from the pod watch)."""

    model_deployment: str
    revision: str
    ip: str
    running: bool
    #: Its artifact fetch, when there is something to say (the reconciles report it).
    fetch: FetchState | None = None
    #: The digest of the reference profile its sidecar read at its start ("": not said).
    reference_digest: str = ""
    #: (ConfigMap, key) of the reference profile it mounts (None: none, or not said).
    reference: tuple[str, str] | None = None
    #: Being deleted, still up: until when its sidecar is scraped for the figures since
    #: the last scrape (requests served while it drains), its silence no error (0: not
    #: leaving). Its deletionTimestamp (the end of its grace period) and a margin: a pod
    #: left Running on a lost node is not scraped for ever.
    leaving_until: float = 0.0

    @property
    def leaving(self) -> bool:
        return self.leaving_until > 0


def pod_info(body: Mapping[str, Any]) -> PodInfo | None:
    """A pod's ModelDeployment, revision and IP, or None when it is not a model pod."""
    pod = objects.body(body)
    labels = pod.meta.labels
    model = labels.get(naming.LABEL_MODEL_DEPLOYMENT)
    revision = labels.get(naming.LABEL_REVISION)
    if not model or not revision:
        return None
    ip = str(pod.status.get("podIP") or "")
    up = bool(ip) and pod.status.get("phase") == "Running"
    deleting = pod.meta.deleting
    deleted_at = parse_unix(pod.meta.raw.get("deletionTimestamp")) if deleting else None
    digest = str(pod.meta.annotations.get(naming.ANNOTATION_REFERENCE_DIGEST) or "")
    mounted = mounted_reference(pod.spec)
    return PodInfo(
        model,
        revision,
        ip,
        up and not deleting,
        # A pod being deleted fetches for no attempt: an ended one's failure, read by a retry,
        # failed the new attempt at once with the old words.
        None if deleting else fetch_state(body),
        digest,
        mounted,
        leaving_until=(deleted_at or 0.0) + LEAVING_MARGIN_SECONDS if up and deleting else 0.0,
    )


@dataclass
class _Reference:
    resource_version: str
    key: str
    profile: ReferenceProfile | None
    error: str | None
    #: Of the profile's text, as the pod template carries it (vigil.core.desired).
    digest: str = ""
    #: When this loop first read that digest, and whether it saw it change then (else it
    #: was the first it read: the change, if any, came before).
    since: float = 0.0
    changed: bool = False


@dataclass
class CycleResult(SourceCalls):
    """What one cycle did (for logs, metrics and tests), with the calls its sources made."""

    evaluated: int = 0
    written: int = 0
    held: int = 0
    #: Targets whose evaluation raised (logged; the others are judged).
    failed: int = 0
    reports: dict[tuple[str, str], HealthReport] = field(default_factory=dict)


class HealthLoop:
    """Collects, judges and records the health of every watched ModelDeployment."""

    def __init__(
        self,
        api_factory: Callable[[], Api],
        reconciler: HealthRecorder,
        metrics: OperatorMetrics,
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        sources: SourcePool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api_factory = api_factory
        self.reconciler = reconciler
        self.metrics = metrics
        self.interval = interval
        #: Shared with the rollouts: one reader of each sidecar's /metrics.
        self.sources = sources or SourcePool()
        self._clock = clock
        #: The watched ModelDeployments, compact (vigil.kube.cache.compact): at N = 1000 the
        #: watch's own dicts would hold tens of megabytes between cycles.
        self.models: dict[tuple[str, str], bytes] = {}
        self.pods: dict[tuple[str, str], PodInfo] = {}
        #: The names of ``pods`` by (namespace, ModelDeployment, revision): a cycle looks up
        #: each model's own (sorting every pod per model cost seconds at 2 000 models).
        self._pods_of: dict[tuple[str, str, str], set[str]] = {}
        #: Pods gone lately, with when: the direct source still counts their last scrapes
        #: (and Prometheus its samples of them) for a window.
        self._departed: dict[tuple[str, str], tuple[PodInfo, float]] = {}
        #: Pods gone before this are unknown to this loop (an operator restart).
        self._pods_since: float | None = clock()
        #: Pods whose artifact fetch has something to say, by (namespace, ModelDeployment).
        self._fetching: dict[tuple[str, str], dict[str, tuple[str, FetchState]]] = {}
        #: By (namespace, ConfigMap, key): models may read different keys of one ConfigMap.
        self._references: dict[tuple[str, str, str], _Reference] = {}
        #: The reference ConfigMap's resourceVersion each model was last judged with ("" when
        #: it was not there: one created again afterwards is new to the pods too).
        self._reference_versions: dict[tuple[str, str], str] = {}
        #: When this loop began watching (its first cycle, or the first after a pause): a
        #: direct source's history is no longer than that.
        self._watching_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._active = True
        #: What a relisting of ModelDeployments or pods no longer shows is gone.
        self._relisted = {
            naming.PLURAL: Relistings(clock),
            "pods": Relistings(clock),
        }

    @property
    def active(self) -> bool:
        """False while kopf pauses the operator (peering): nothing is judged or written."""
        return self._active

    @active.setter
    def active(self, active: bool) -> None:
        self._active = active
        if not active:  # another instance judges: its gauges, not this one's stale ones
            self.metrics.forget_all()

    # -- what the watches tell -------------------------------------------------------

    def listing(self, plural: str, namespace: str | None, done: bool) -> None:
        """A watch (re)starts listing ModelDeployments or pods (None: cluster-wide), or that
        listing is complete."""
        relisted = self._relisted.get(plural)
        if relisted is not None:
            (relisted.listing_done if done else relisted.listing_started)(namespace)

    def _drop_ghosts(self) -> None:
        """Forget what a finished relisting did not show (deleted while the watch was away)."""
        for namespace, name in self._relisted[naming.PLURAL].ghosts():
            log.info("%s/%s: gone (a relisting did not show it)", namespace, name)
            self.observe_model("DELETED", {"metadata": {"namespace": namespace, "name": name}})
        for namespace, name in self._relisted["pods"].ghosts():
            self.observe_pod("DELETED", {"metadata": {"namespace": namespace, "name": name}})

    def observe_model(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ModelDeployment was listed, changed or deleted."""
        meta = objects.body(body).meta
        key = (meta.namespace, meta.name)
        if event_type == "DELETED":
            self.models.pop(key, None)
            self._reference_versions.pop(key, None)
            self._relisted[naming.PLURAL].forget(key)
            self.metrics.forget(*key)
            # Its revisions are hashes of its spec: one created again under its name
            # would otherwise read the deleted one's scrapes as its own.
            self.sources.forget(*key)
            # A deletion in the foreground (or of an object with no children) is followed by
            # no reconcile that finds it gone: what the reconciles keep of it goes here.
            self.reconciler.forget(*key)
            return
        self.models[key] = compact(body)
        self._relisted[naming.PLURAL].seen(key)
        self.metrics.seen(*key)

    def observe_pod(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """A model pod was listed, changed or deleted; True when its artifact fetch says
        something new (its ModelDeployment's reconcile reports it)."""
        meta = objects.body(body).meta
        key = (meta.namespace, meta.name)
        info = pod_info(body)
        if event_type == "DELETED" or info is None:
            before = self.pods.pop(key, None)
            self._relisted["pods"].forget(key)
            info = None
            if before is not None and before.running:  # a stopped one: departed when it stopped
                self._departed[key] = (before, self._clock())
        else:
            before = self.pods.get(key)
            self.pods[key] = info
            self._relisted["pods"].seen(key)
            if info.running:
                self._departed.pop(key, None)
            elif before is not None and before.running:
                # Stopped (Evicted, Failed, deleting) yet still listed: it counts no more
                # from now on, as if gone.
                self._departed[key] = (before, self._clock())
        self._index_pod(meta.namespace, meta.name, before, info)
        if before is not None:
            owner_key = (meta.namespace, before.model_deployment)
            fetching = self._fetching.get(owner_key, {})
            fetching.pop(meta.name, None)
            if not fetching:  # its ModelDeployment may be gone: no reconcile reads it again
                self._fetching.pop(owner_key, None)
        if info is not None and info.fetch is not None:
            owner = self._fetching.setdefault((meta.namespace, info.model_deployment), {})
            owner[meta.name] = (info.revision, info.fetch)
        return (before.fetch if before else None) != (info.fetch if info else None)

    def _index_pod(
        self, namespace: str, pod: str, before: PodInfo | None, info: PodInfo | None
    ) -> None:
        """Keep ``_pods_of`` in step with ``pods`` (a pod's labels may change too)."""
        if before is not None and (
            info is None
            or (before.model_deployment, before.revision) != (info.model_deployment, info.revision)
        ):
            key = (namespace, before.model_deployment, before.revision)
            names = self._pods_of.get(key)
            if names is not None:
                names.discard(pod)
                if not names:
                    del self._pods_of[key]
        if info is not None:
            key = (namespace, info.model_deployment, info.revision)
            self._pods_of.setdefault(key, set()).add(pod)

    def fetches(self, namespace: str, name: str) -> dict[str, FetchState]:
        """Each revision's artifact fetch of one ModelDeployment, from its pods (only pods
        with something to say are kept apart: a reconcile does not scan every pod)."""
        pods = self._fetching.get((namespace, name))
        if not pods:
            self._fetching.pop((namespace, name), None)
            return {}
        return fetches_by_revision(pods.values())

    # -- the loop --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run_forever())

    async def stop(self) -> None:
        """Stop the cycles; the sources stay open for the reconciles under way (they share
        them: the runtime closes them after those)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def run_forever(self) -> None:
        """A cycle every interval (a slow cycle delays the next one, never overlaps it).

        The first cycle comes one interval after the start: the watches have
        listed every object by then, and a restarted operator does not
        rewrite what its predecessor just wrote.
        """
        await asyncio.sleep(self.interval)
        while True:
            started = time.monotonic()
            try:
                await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health cycle failed")
            release_free_memory()  # what a burst of reconciles or this cycle freed
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.1, self.interval - elapsed))

    def _targets(self) -> list[tuple[RevisionTarget, MonitoringSettings, Mapping[str, Any]]]:
        targets = []
        for (namespace, name), data in list(self.models.items()):
            try:
                found = self._target(namespace, name, data)
            except Exception:  # one object the loop cannot read must not stop the others
                log.exception("%s/%s: health not evaluated", namespace, name)
                found = None
            if found is None:
                # Not judged (deleting, not serving, unusable settings): its last figures
                # would be exported as current for as long, an alert on them firing.
                self.metrics.drop_health(namespace, name)
            else:
                targets.append(found)
        return targets

    def _target(
        self, namespace: str, name: str, data: bytes
    ) -> tuple[RevisionTarget, MonitoringSettings, Mapping[str, Any]] | None:
        """What the cycle judges of one ModelDeployment (None: nothing to judge now)."""
        body = expand(data)
        view = objects.body(body)
        if view.meta.deleting:
            return None
        status = view.status
        if not has_served(status):
            return None  # nothing serves yet: nothing to judge
        revision = str(status["stable"]["revision"])
        try:
            settings = monitoring_settings(view.spec)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("%s/%s: monitoring settings unusable: %s", namespace, name, error)
            return None
        pods, leaving = (
            tuple(PodTarget(pod_name, info.ip, METRICS_PORT) for pod_name, info in found)
            for found in self._revision_pods(namespace, name, revision)
        )
        target = RevisionTarget(
            namespace,
            name,
            revision,
            settings.policy.window_seconds,
            pods,
            labels_window_seconds=settings.policy.performance.window_seconds,
            leaving=leaving,
        )
        return target, settings, body

    def running_pods(self, namespace: str, name: str, revision: str) -> list[tuple[str, PodInfo]]:
        """The running pods of one revision of a ModelDeployment, by name."""
        return self._revision_pods(namespace, name, revision)[0]

    def _revision_pods(
        self, namespace: str, name: str, revision: str
    ) -> tuple[list[tuple[str, PodInfo]], list[tuple[str, PodInfo]]]:
        """The running pods of one revision of a ModelDeployment and those being deleted,
        still up, by name: from the index kept as pods are observed, so a cycle costs each
        model its own pods only."""
        key = (namespace, name, revision)
        names = self._pods_of.get(key, set())
        now = self._clock()
        running: list[tuple[str, PodInfo]] = []
        leaving: list[tuple[str, PodInfo]] = []
        for pod_name in sorted(names):
            info = self.pods.get((namespace, pod_name))
            if info is None or (info.model_deployment, info.revision) != (name, revision):
                names.discard(pod_name)  # gone without an event through observe_pod
            elif info.running:
                running.append((pod_name, info))
            elif info.leaving_until >= now:
                leaving.append((pod_name, info))
        if not names:
            self._pods_of.pop(key, None)
        # An IP a running pod has now is no longer the leaving one's (its sidecar counted
        # twice, as a counter reset).
        ips = {info.ip for _, info in running}
        return running, [(pod_name, info) for pod_name, info in leaving if info.ip not in ips]

    def _hold_gauges(self, target: RevisionTarget, status: Mapping[str, Any]) -> None:
        """The verdict gauges as status holds them, while nothing is judged after a restart:
        without series for a window, the alerts on them resolved and fired again."""
        figures = replace(self._last_figures(target) or HealthFigures(target.revision))
        figures.metrics_available = True  # a window came: too short a one to judge
        _set_verdicts(figures, _verdicts(status, target, status.get("health") or {}, []))
        self.metrics.set_health(target.namespace, target.name, figures)

    def _last_figures(self, target: RevisionTarget) -> HealthFigures | None:
        """The gauges' figures of this revision (None: none yet, or another revision's)."""
        previous = self.metrics.health_of(target.namespace, target.name)
        return previous if previous is not None and previous.revision == target.revision else None

    def _warming_up(
        self,
        target: RevisionTarget,
        settings: MonitoringSettings,
        now: float,
        previous: Mapping[str, Any] | None,
        window: float | None = None,
    ) -> bool:
        """The direct source has watched for less than ``window`` (an operator restart, or
        a window made longer than the history kept for the last): too few requests or
        labels may only mean too short a history. Not for a revision new since (a
        promotion): its few figures are its own, not a reason to show another's; so only
        while the last verdict (``previous``, status.health) is of this revision."""
        if settings.source_key[0] == SOURCE_PROMETHEUS:
            return False  # Prometheus has the history
        if not judged_revision(previous, target.revision):
            return False  # nothing of this revision to hold
        since = self._watching_since if self._watching_since is not None else now
        source = self.sources.get(settings.source_key)
        if isinstance(source, DirectSource):
            kept = source.kept_since(target.key, labels=window is not None)
            since = max(since, now if kept is None else kept)
        return now - since < (target.window_seconds if window is None else window)

    async def _collect(
        self, groups: Mapping[SourceKey, list[RevisionTarget]], now: float
    ) -> Collection:
        async def one(key: SourceKey, targets: list[RevisionTarget]) -> Collection:
            try:
                return await self.sources.get(key).collect(targets, now)
            except Exception as error:  # a broken source must not stop the others
                log.exception("metrics source %s failed", key[0])
                failed = Collection()
                for target in targets:
                    failed.errors[target.key] = f"{key[0]} source failed: {error}"
                return failed

        merged = Collection()
        results = await asyncio.gather(*(one(k, t) for k, t in groups.items()))
        for (key, _), result in zip(groups.items(), results, strict=True):
            merged.windows.update(result.windows)
            merged.errors.update(result.errors)
            merged.unanswered.update(result.unanswered)
            merged.add(result)
            if result.errors:
                self.metrics.source_failures.labels(key[0]).inc(len(result.errors))
        # Sources of URLs no ModelDeployment names any more are closed.
        await self.sources.close_unnamed(groups)
        return merged

    def _nudge_on_new_references(
        self, targets: Sequence[tuple[RevisionTarget, MonitoringSettings, Any]]
    ) -> None:
        """A reference ConfigMap edited or created again: its models are reconciled now, which
        replaces their pods (the sidecar reads the profile at its start only); no watch
        sees the ConfigMap (it carries none of the operator's labels)."""
        for target, settings, _ in targets:
            cached = (
                self._references.get((target.namespace, *settings.reference))
                if settings.reference
                else None
            )
            key = (target.namespace, target.name)
            version = cached.resource_version if cached is not None else ""
            before = self._reference_versions.get(key)
            self._reference_versions[key] = version
            if before is not None and version and before != version:
                self.reconciler.nudge(*key)

    async def _reference(
        self, read: ConfigMapReads, namespace: str, ref: tuple[str, str]
    ) -> tuple[ReferenceProfile | None, str | None]:
        name, key = ref
        try:
            configmap = await read.get(namespace, name)
        except KubeError as error:
            cached = self._references.get((namespace, name, key))
            if cached is not None:
                return cached.profile, cached.error
            return None, f"reference ConfigMap {name}: {error.message}"
        if configmap is None:
            self._references.pop((namespace, name, key), None)
            return None, f"reference ConfigMap {name} not found"
        found = objects.body(configmap)
        version = found.meta.resource_version
        cached = self._references.get((namespace, name, key))
        if cached is not None and cached.resource_version == version:
            return cached.profile, cached.error
        text = found.value(key)
        profile, problem = None, None
        if text is None:
            problem = f"reference ConfigMap {name} has no key {key}"
        else:
            try:
                profile = parse_profile(text)
            except ProfileError as error:
                problem = f"reference ConfigMap {name}/{key}: {error}"
            except Exception as error:  # a parser bug: kept as this version's problem, not
                # parsed again each cycle (nor raised at every model that reads it)
                log.exception("%s: reference ConfigMap %s/%s not parsed", namespace, name, key)
                problem = f"reference ConfigMap {name}/{key}: not parsed: {_said(error)}"
        digest = reference_digest(configmap, key)
        if cached is not None and cached.digest == digest:
            since, changed = cached.since, cached.changed  # another field of it changed
        else:
            since, changed = self._clock(), cached is not None
        self._references[(namespace, name, key)] = _Reference(
            version, key, profile, problem, digest, since, changed
        )
        return profile, problem

    def _mounted(self, target: RevisionTarget) -> tuple[str, str] | None:
        """(ConfigMap, key) of the reference profile the target's running pods mount, when they
        all mount the same one (None: none says, or they differ)."""
        mounted = {
            info.reference
            for pod in target.pods
            if (info := self.pods.get((target.namespace, pod.name))) is not None
            and info.reference is not None
        }
        return mounted.pop() if len(mounted) == 1 else None

    async def _profile_for(
        self,
        read: ConfigMapReads,
        target: RevisionTarget,
        settings: MonitoringSettings,
        mounted: tuple[str, str] | None,
    ) -> tuple[MonitoringSettings, ReferenceProfile | None, str | None]:
        """The settings drift is judged by, and their profile and problem.

        A spec naming a new ConfigMap leaves the stable's pods on theirs until the
        rollout ends, their inputs binned by its edges: judged against the one they
        mount, or against none when it cannot be read (pruned: no other profile describes
        their bins, nor its validation score their labels). The spec's is read too: an
        edit of it in place reconciles the model (``_nudge_on_new_references``).
        """
        spec = (
            await self._reference(read, target.namespace, settings.reference)
            if settings.reference
            else await _no_reference()
        )
        if mounted is None or mounted == settings.reference:
            return settings, *spec
        profile, problem = await self._reference(read, target.namespace, mounted)
        return replace(settings, reference=mounted), profile, problem

    def _profiles_read(self, now: float) -> ProfilesRead:
        """Which reference digests each revision's pods read: those there, and those gone
        lately (forgotten once no window reaches back to them)."""
        read: ProfilesRead = {}

        def note(namespace: str, info: PodInfo, at: float) -> None:
            if info.reference_digest:
                digests = read.setdefault((namespace, info.model_deployment, info.revision), {})
                digests[info.reference_digest] = max(at, digests.get(info.reference_digest, at))

        for (namespace, _), info in self.pods.items():
            if info.running:  # a stopped one counts no more: since it stopped (departed)
                note(namespace, info, now)
        for (namespace, _), (info, gone) in self._departed.items():
            note(namespace, info, gone)
        return read

    def _forget_departed(self, before: float) -> None:
        for key in [k for k, (_, gone) in self._departed.items() if gone < before]:
            del self._departed[key]

    def _digest_read_by(self, namespace: str, pod: str) -> str:
        """The reference digest a pod's sidecar read ("": not said, or a pod unknown)."""
        info = self.pods.get((namespace, pod))
        if info is None:
            info, _ = self._departed.get((namespace, pod), (None, 0.0))
        return info.reference_digest if info is not None else ""

    def _drift_basis(
        self,
        target: RevisionTarget,
        settings: MonitoringSettings,
        profiles_read: ProfilesRead,
        now: float,
        pinned: bool = False,
    ) -> DriftBasis | None:
        """What drift is judged on when some counts of the window are in another profile's
        bins than the one it is scored against (None: every count is in its bins).

        A reference ConfigMap edited in place: the reconcile replaces the pods
        (their template carries the profile's digest), and each sidecar bins by
        the profile it read at its start. The direct source keeps each pod's
        scrapes: drift is judged on the pods that read the current profile.
        A source that adds the pods up (Prometheus) cannot leave any out: drift
        is not judged until every pod reads it and a window has passed since
        the last that did not. Pods that do not say what they read count as
        reading the current profile (templates from before the digest).
        ``pinned``: the profile is the one the revision's pods mount, not the spec's (a
        rollout under way, or one that ended badly): an edit of it replaces none of them.
        """
        if not settings.reference:
            return None
        name, key = settings.reference
        ref = self._references.get((target.namespace, name, key))
        if ref is None or ref.profile is None or not ref.digest:
            return None
        # When a pod last read another profile than this one (gone ones: when they went).
        others = [
            at for digest, at in profiles_read.get(target.key, {}).items() if digest != ref.digest
        ]
        if not others:
            return None
        # Not seen to change: the pods read another ConfigMap (or key) than the spec names
        # now, a spec change under way; its revision's pods may never read this one (the
        # stable during a rollout). Their bins are not this profile's: not judged either.
        moved = not ref.changed
        elsewhere = (
            f"another reference profile than ConfigMap {name} "
            "(a spec change, or an edit unseen, under way)"
        )
        changed = f"ConfigMap {name} changed at {format_unix(ref.since)}"
        if pinned:  # the ConfigMap its pods mount, not the spec's: the edit replaces none
            changed += " (the spec names another ConfigMap: no pod of this revision is replaced)"
        source = self.sources.get(settings.source_key)
        if isinstance(source, DirectSource):
            split = source.split_by_profile(
                target, now, lambda pod: self._digest_read_by(target.namespace, pod), ref.digest
            )
            counted, other, kept = split.counted, split.other, split.kept
            if not other:
                return None
            if not kept:
                every = "the pod" if len(counted) == 1 else f"all {len(counted)} pods"
                reads = "reads" if len(counted) == 1 else "read"
                read = elsewhere if moved else f"the previous reference profile ({changed})"
                what = f"{reads} {read}" if moved else f"still {reads} {read}"
                return DriftBasis(None, f"drift not judged: {every} counted {what}")
            reads = "reads" if len(other) == 1 else "read"
            read = elsewhere if moved else "still " + reads + " the previous reference profile"
            return DriftBasis(
                source.pods_window(target, now, kept),
                f"inputs counted on {len(kept)} of {len(counted)} pods: {len(other)} "
                + (f"{reads} {read}" if moved else read),
            )
        if max(others) < now - target.window_seconds:
            return None
        if moved:
            return DriftBasis(None, f"drift not judged: its pods read {elsewhere}")
        return DriftBasis(
            None,
            f"reference {changed}: drift is judged again once every pod reads it and "
            f"{format_window(target.window_seconds)} has passed",
        )

    def _unsure_of_the_past(
        self, target: RevisionTarget, settings: MonitoringSettings, now: float
    ) -> bool:
        """Prometheus' window may reach back before this loop watched the pods (an operator
        restart): pods gone since may have read another reference profile, unseen."""
        return (
            settings.source_key[0] == SOURCE_PROMETHEUS
            and bool(settings.reference)
            and now - (now if self._pods_since is None else self._pods_since)
            < target.window_seconds
        )

    def _judge(
        self,
        target: RevisionTarget,
        settings: MonitoringSettings,
        body: Mapping[str, Any],
        profile: ReferenceProfile | None,
        collection: Collection,
        result: CycleResult,
        now: float,
        evaluated_at: str,
        profiles_read: ProfilesRead,
        pinned: bool = False,
        problem: str | None = None,
    ) -> HealthWrite | None:
        """One target's health and conditions to write, or None when there is nothing to
        (``problem``: why its reference profile could not be read, said with drift)."""
        window = collection.windows.get(target.key)
        error = collection.errors.get(target.key)
        status = objects.body(body).status
        previous = status.get("health")
        basis = (
            self._drift_basis(target, settings, profiles_read, now, pinned)
            if window is not None and profile is not None
            else None
        )
        holds = _holds(status, target)
        report = evaluate(
            window,
            profile,
            settings.policy,
            error,
            degraded_by=holds.slos,
            drift_basis=basis,
            drifted=holds.drift,
            reference_problem=problem,
        )
        if target.key in collection.unanswered:
            report = replace(report, unanswered=collection.unanswered[target.key])
        result.reports[(target.namespace, target.name)] = report
        result.evaluated += 1
        if report.verdict == "InsufficientData" and self._warming_up(
            target, settings, now, previous
        ):
            # The direct source has watched this revision for less than a
            # window (an operator restart): too few requests may only mean
            # too short a history. Hold the last verdict, and its gauges.
            result.held += 1
            self._hold_gauges(target, status)
            return None
        performance = self._performance(target, settings, profile, window, now, status)
        health = next_health(
            previous, report, settings.policy, evaluated_at, performance, revision=target.revision
        )
        conditions = health_conditions(report, settings.policy, performance)
        health = _carry_holds(previous, health, conditions, holds)
        held = _holding(holds, report, performance)
        conditions = hold_verdicts(conditions, status.get("conditions"), held)
        held_drift: Mapping[str, Any] | None = None
        if (
            basis is None
            and self._unsure_of_the_past(target, settings, now)
            and _drift_changes(status, target, conditions)
        ):
            # Restarted less than a window ago: a reference edited in place may have had
            # its pods replaced unseen, their counts in the old bins still in the window.
            # Hold the last drift verdict rather than raise or clear drift on them; the
            # rest (Healthy, performance) is written as ever.
            log.debug("%s/%s: drift change held (restart)", target.namespace, target.name)
            result.held += 1
            health, conditions = _drift_held(previous, status, health, conditions)
            held_drift = objects.section(health, "drift")  # the gauges say what status says
        verdicts = _verdicts(status, target, health, conditions)
        self._update_gauges(target, settings, report, performance, held_drift, verdicts)
        uid = objects.body(body).meta.uid
        write = HealthWrite(target.namespace, target.name, target.revision, uid, health, conditions)
        if self.reconciler.health_unchanged(body, write):
            return None  # not even a read: the watched copy already says all this
        return write

    async def cycle(self) -> CycleResult:
        """One cycle over every ModelDeployment (see the module docstring)."""
        started = time.monotonic()
        result = CycleResult()
        if not self.active:
            self._watching_since = None
            self._pods_since = None  # pods may come and go unseen until active again
            self.metrics.forget_all()  # what a reconcile under way at the pause set since
            return result
        self._drop_ghosts()
        now = self._clock()
        if self._watching_since is None:
            self._watching_since = now
        if self._pods_since is None:
            self._pods_since = now
        evaluated_at = format_time(datetime.datetime.fromtimestamp(now, datetime.UTC))
        targets = self._targets()
        groups: dict[SourceKey, list[RevisionTarget]] = {}
        for target, settings, _ in targets:
            groups.setdefault(settings.source_key, []).append(target)
        collection = await self._collect(groups, now)
        result.add(collection)
        if collection.scrape_failures:
            self.metrics.scrape_failures.inc(collection.scrape_failures)

        references = await self._load_references(targets)
        longest = max((t.window_seconds for t, _, _ in targets), default=0.0)
        self._forget_departed(now - longest - self.interval - DEPARTED_MARGIN_SECONDS)
        profiles_read = self._profiles_read(now)
        writes = []
        for (target, spec_settings, body), (settings, profile, problem) in zip(
            targets, references, strict=True
        ):
            if (target.namespace, target.name) not in self.models:
                continue  # deleted while this cycle collected: its series are gone with it
            if problem:
                log.warning("%s/%s: %s", target.namespace, target.name, problem)
            try:
                write = self._judge(
                    target,
                    settings,
                    body,
                    profile,
                    collection,
                    result,
                    now,
                    evaluated_at,
                    profiles_read,
                    settings is not spec_settings,
                    problem,
                )
            except Exception:  # one model's figures meeting a bug must not stall the others
                log.exception("%s/%s: health not evaluated", target.namespace, target.name)
                result.failed += 1
                continue
            if write is not None:
                writes.append(self._record(write))
        outcomes = await asyncio.gather(*writes)
        result.written = sum(1 for written in outcomes if written)
        self.metrics.health_cycle.observe(time.monotonic() - started)
        log.debug(
            "health cycle: %d evaluated, %d written, %d queries, %d/%d scrapes failed",
            result.evaluated,
            result.written,
            result.queries,
            result.scrape_failures,
            result.scrapes,
        )
        return result

    async def _load_references(
        self, targets: Sequence[tuple[RevisionTarget, MonitoringSettings, Any]]
    ) -> list[tuple[MonitoringSettings, ReferenceProfile | None, str | None]]:
        """Each target's settings, reference profile and problem (step 3), in order."""
        read = ConfigMapReads(self._api_factory())
        mounted = [self._mounted(target) for target, _, _ in targets]
        # Profiles no model reads any more (deleted, or pointed elsewhere) are let go.
        wanted = {(t.namespace, *s.reference) for t, s, _ in targets if s.reference} | {
            (t.namespace, *ref) for (t, _, _), ref in zip(targets, mounted, strict=True) if ref
        }
        for stale in [key for key in self._references if key not in wanted]:
            del self._references[stale]
        found = await asyncio.gather(
            *(
                self._profile_for(read, target, settings, ref)
                for (target, settings, _), ref in zip(targets, mounted, strict=True)
            ),
            return_exceptions=True,
        )
        references = []
        for (target, settings, _), got in zip(targets, found, strict=True):
            if isinstance(got, BaseException):  # one model's must not stop the others' cycle
                if not isinstance(got, Exception):
                    raise got
                where = f"{target.namespace}/{target.name}"
                log.error("%s: reference profile not read", where, exc_info=got)
                got = (settings, None, f"reference profile not read: {_said(got)}")
            references.append(got)
        self._nudge_on_new_references(targets)
        return references

    def _performance(
        self,
        target: RevisionTarget,
        settings: MonitoringSettings,
        profile: ReferenceProfile | None,
        window: RevisionWindow | None,
        now: float,
        status: Mapping[str, Any],
    ) -> PerformanceReport | None:
        """PerformanceDegraded from the labels of the window (None: nothing to say now).

        Too few labels on a history shorter than the labels' window (the direct
        source after a restart) holds the last verdict, as too few requests do.
        """
        if window is None:
            return None
        policy = settings.policy.performance
        report = judge(
            window.realized,
            policy,
            profile.validation if profile is not None else None,
            format_window(policy.window_seconds),
            held=_performance_held(status, target),
        )
        if report.condition.reason == Reason.INSUFFICIENT_LABELS and self._warming_up(
            target, settings, now, status.get("health"), policy.window_seconds
        ):
            return None
        return report

    async def _record(self, write: HealthWrite) -> bool:
        try:
            return await self.reconciler.record_health(write)
        except KubeError as error:
            log.warning(
                "%s/%s: could not write health: %s", write.namespace, write.name, error.message
            )
            return False
        except Exception:  # one write meeting a bug must not fail the others' (one gather)
            log.exception("%s/%s: could not write health", write.namespace, write.name)
            return False

    def _update_gauges(
        self,
        target: RevisionTarget,
        settings: MonitoringSettings,
        report: HealthReport,
        performance: PerformanceReport | None = None,
        held_drift: Mapping[str, Any] | None = None,
        verdicts: _Verdicts | None = None,
    ) -> None:
        """The model's gauges from ``report`` (``held_drift``: status.health.drift as held,
        in place of the report's drift; ``verdicts``: the conditions' verdicts)."""
        policy = settings.policy
        previous = self._last_figures(target)
        if report.verdict == "MetricsUnavailable":
            # The last figures stay (as in status), only availability drops.
            figures = replace(previous) if previous is not None else HealthFigures(target.revision)
            available = False
        else:
            figures = HealthFigures(
                revision=target.revision,
                error_rate=report.error_rate,
                latency_p95=report.latency_p95,
                drift_score=(report.drift_score if held_drift is None else held_drift.get("score")),
            )
            available = True
            if performance is not None:
                realized = performance.figures
                figures.realized_accuracy = realized.get("accuracy")
                figures.realized_mae = realized.get("mae")
                figures.realized_rmse = realized.get("rmse")
                figures.label_delay_p95 = realized.get("labelDelayP95")
                figures.labels = {
                    "joined": realized.get("labels", 0),
                    **realized.get("notJoined", {}),
                }
                figures.performance_baseline = performance.baseline
                figures.performance_threshold = performance.threshold
            elif previous is not None:  # held: the last judgement stays
                figures = replace(
                    previous,
                    error_rate=figures.error_rate,
                    latency_p95=figures.latency_p95,
                    drift_score=figures.drift_score,
                )
        figures.drift_threshold = policy.drift_threshold
        figures.slo_max_error_rate = policy.max_error_rate
        figures.slo_latency_p95 = policy.max_latency_p95
        figures.metrics_available = available
        if verdicts is not None:
            _set_verdicts(figures, verdicts)
        self.metrics.set_health(target.namespace, target.name, figures)


def _set_verdicts(figures: HealthFigures, verdicts: _Verdicts) -> None:
    """The verdict gauges' values, as the conditions say them."""
    figures.slo_breached = dict(verdicts.slos)
    figures.drift_detected = verdicts.drift
    figures.performance_degraded = verdicts.performance


#: The SLO each reason of a breach names (the ``slo`` label of the breach gauge).
SLO_NAMES = {Reason.ERROR_RATE_HIGH: "errorRate", Reason.LATENCY_HIGH: "latencyP95"}


@dataclass(frozen=True)
class _Verdicts:
    """The verdicts the gauges export as the conditions say them (None: Unknown, no series)."""

    slos: Mapping[str, bool]
    drift: bool | None
    performance: bool | None


def _verdicts(
    status: Mapping[str, Any],
    target: RevisionTarget,
    health: Mapping[str, Any],
    conditions: Sequence[ConditionState],
) -> _Verdicts:
    """Healthy's SLOs, DriftDetected and PerformanceDegraded as written now (held ones as
    held); a condition not written this cycle (metrics unavailable, labels held) as status
    has it for this revision: an alert on them says what the conditions say."""
    words: dict[str, str] = {}
    if judged_revision(status.get("health"), target.revision):
        words = {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or ()}
    words.update({c.type: condition_word(c.status) for c in conditions})

    def said(kind: ConditionType, bad: str) -> bool | None:
        word = words.get(kind)
        return word == bad if word in ("True", "False") else None

    healthy = said(ConditionType.HEALTHY, "False")
    slos: dict[str, bool] = {}
    if healthy is not None:
        breached = set(health.get("breached") or ()) if healthy else set()
        if healthy and not breached:  # a status.health written before it listed them
            written = next((c.reason for c in conditions if c.type == ConditionType.HEALTHY), None)
            last = find_condition(status.get("conditions"), ConditionType.HEALTHY) or {}
            breached = {written or str(last.get("reason"))}
        slos = {name: reason in breached for reason, name in SLO_NAMES.items()}
    return _Verdicts(
        slos,
        said(ConditionType.DRIFT_DETECTED, "True"),
        said(ConditionType.PERFORMANCE_DEGRADED, "True"),
    )


class ConfigMapReads:
    """One cycle's reads of ConfigMaps: each read once, however many models share it (a
    reference ConfigMap for a thousand models was a thousand GETs every cycle)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.reads: dict[tuple[str, str], asyncio.Future[Any]] = {}

    def get(self, namespace: str, name: str) -> asyncio.Future[Any]:
        key = (namespace, name)
        if key not in self.reads:
            self.reads[key] = asyncio.ensure_future(self.api.get("ConfigMap", namespace, name))
        return self.reads[key]


async def _no_reference() -> tuple[ReferenceProfile | None, str | None]:
    return None, None


def _said(error: Exception) -> str:
    """An unexpected error in a line of a log or a problem (its text may be a whole input)."""
    text = str(error)
    return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _drift_held(
    previous: Mapping[str, Any] | None,
    status: Mapping[str, Any],
    health: dict[str, Any],
    conditions: list[ConditionState],
) -> tuple[dict[str, Any], list[ConditionState]]:
    """``health`` and ``conditions`` with the last drift verdict (DriftDetected and
    status.health.drift) in place of the fresh one."""
    last = find_condition(status.get("conditions"), ConditionType.DRIFT_DETECTED)
    if last is not None:
        word = last.get("status")
        held = ConditionState(
            ConditionType.DRIFT_DETECTED,
            None if word == "Unknown" else word == "True",
            str(last.get("reason") or ""),
            str(last.get("message") or ""),
        )
        conditions = [held if c.type == ConditionType.DRIFT_DETECTED else c for c in conditions]
    if isinstance(previous, Mapping) and "drift" in previous:
        health = {**health, "drift": previous["drift"]}
        if same_figures(previous, health):
            health["evaluatedAt"] = previous["evaluatedAt"]
    return health, conditions


def _drift_changes(
    status: Mapping[str, Any], target: RevisionTarget, conditions: Sequence[ConditionState]
) -> bool:
    """Whether ``conditions`` judge drift (True or False) otherwise than the last verdict on
    this revision did (another status or reason)."""
    if not judged_revision(status.get("health"), target.revision):
        return False
    fresh = next((c for c in conditions if c.type == ConditionType.DRIFT_DETECTED), None)
    last = find_condition(status.get("conditions"), ConditionType.DRIFT_DETECTED)
    if fresh is None or fresh.status is None or last is None:
        return False
    return (condition_word(fresh.status), fresh.reason) != (last.get("status"), last.get("reason"))
