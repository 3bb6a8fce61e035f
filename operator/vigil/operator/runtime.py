"""The operator's runtime: its options, the kopf settings it needs, its API access.

Kept apart from handlers.py so that handlers stay one-liners and the choices
below (where kopf keeps its bookkeeping, what is watched, how) are
explained in one place.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import time
import types
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import orjson
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching as kopf_watching

from vigil import __version__
from vigil.common.objects import Body, items
from vigil.core import naming
from vigil.core.desired import DEFAULT_PULL_POLICY
from vigil.core.events import event_manifest
from vigil.core.reconcile import Event
from vigil.kube.cache import LISTING_SECONDS, ObjectCache
from vigil.kube.client import FIELD_MANAGER, Connection, KubeClient
from vigil.operator.health import DEFAULT_INTERVAL_SECONDS, HealthLoop
from vigil.operator.metrics import OperatorMetrics
from vigil.operator.reconciler import Api, Reconciler, ReconcilerConfig
from vigil.operator.rollouts import Rollouts
from vigil.routing.kube import RoutingKubeClient

#: The "From" of the operator's Events: the name its writes carry as field manager.
REPORTING_COMPONENT = FIELD_MANAGER
DEFAULT_SIDECAR_IMAGE = f"ghcr.io/vigil-dev/vigil:{__version__}"

log = logging.getLogger("vigil.operator")

#: The kinds whose watches feed the object cache (plural -> kind), and the label each
#: watch filters on (None: every object of the kind is watched).
CACHED_PLURALS = {
    naming.PLURAL: "ModelDeployment",
    "deployments": "Deployment",
    "services": "Service",
    "configmaps": "ConfigMap",
}
CACHED_KINDS: dict[str, str | None] = {
    "ModelDeployment": None,
    "Deployment": naming.LABEL_MODEL_DEPLOYMENT,
    "Service": naming.LABEL_MODEL_DEPLOYMENT,
    "ConfigMap": naming.LABEL_MODEL_DEPLOYMENT,
}
#: After a complete listing, when the cache is swept: once its window is surely over.
GHOSTS_SWEPT_AFTER = LISTING_SECONDS + 1.0


@dataclass(frozen=True)
class OperatorOptions:
    """Everything `vigil-operator` is told on its command line."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    #: The imagePullPolicy of the containers that run the sidecar image in model pods.
    sidecar_pull_policy: str = DEFAULT_PULL_POLICY
    metrics_port: int = 9090
    metrics_address: str = "0.0.0.0"
    health_port: int = 8080
    log_format: str = "plain"
    standalone: bool = True
    peering_name: str | None = None
    #: With peering, the instance of highest priority acts (kopf pauses all on a tie).
    priority: int = 0
    verbose: bool = False
    health_interval: float = DEFAULT_INTERVAL_SECONDS


@dataclass
class Runtime:
    """The objects handlers reach through kopf's memo."""

    options: OperatorOptions
    metrics: OperatorMetrics
    reconciler: Reconciler
    health: HealthLoop
    cache: ObjectCache = field(default_factory=lambda: ObjectCache(CACHED_KINDS))
    client: KubeClient | None = None
    started: float = field(default_factory=time.monotonic)
    #: The sweeps of ghosts complete listings scheduled (cancelled at shutdown).
    sweeps: list[asyncio.TimerHandle] = field(default_factory=list)

    def set_active(self, active: bool) -> None:
        """kopf paused the operator (False: another instance acts) or resumed it."""
        if active != self.reconciler.active:
            log.info("operator %s", "resumed" if active else "paused: another instance acts")
        self.reconciler.active = self.health.active = active

    def api(self) -> KubeClient:
        if self.client is None:
            raise RuntimeError("not logged in to the API server yet")
        return self.client


def index(runtime: Runtime, plural: str, body: Any) -> None:
    """A watched object indexed (kopf's index handlers run first, from the first listing on)."""
    kind = CACHED_PLURALS.get(plural)
    if kind is not None:
        runtime.cache.store(kind, dict(body))


def remember(runtime: Runtime, plural: str, event_type: str | None, body: Any) -> None:
    """A watch event (listed: None, ADDED, MODIFIED, DELETED): keep the cache up to date."""
    kind = CACHED_PLURALS.get(plural)
    if kind is not None:
        runtime.cache.observe(kind, event_type, dict(body))


def listing(runtime: Runtime, plural: str, namespace: str | None, done: bool) -> None:
    """A watch starts listing (None: cluster-wide), or the listing is complete: the cache
    and the health loop learn what it no longer shows."""
    kind = CACHED_PLURALS.get(plural)
    if kind is not None:
        cache = runtime.cache
        (cache.listing_done if done else cache.listing_started)(kind, namespace)
        if done:
            # Swept even when nothing reads the cache: a ghost's owner may have no other event.
            loop = asyncio.get_running_loop()
            runtime.sweeps[:] = [h for h in runtime.sweeps if h.when() > loop.time()]
            runtime.sweeps.append(loop.call_later(GHOSTS_SWEPT_AFTER, reconcile_ghosts, runtime))
    runtime.health.listing(plural, namespace, done)


def reconcile_ghosts(runtime: Runtime) -> None:
    """Reconcile the owners of the children relistings no longer showed (deleted while the
    watch was away, no DELETED event): nothing else would make those children again."""
    for kind, body in runtime.cache.gone():
        label = runtime.cache.kinds.get(kind)  # a child's names its ModelDeployment
        meta = Body(body).meta
        owner = meta.labels.get(label) if label is not None else None
        if owner:
            log.info(
                "%s %s/%s: gone (a relisting did not show it)", kind, meta.namespace, meta.name
            )
            runtime.reconciler.nudge(meta.namespace, owner)


def changed_by_others(body: Any) -> bool:
    """Whether the object's last change was someone else's write (a hand edit), not the
    operator's own apply nor a status update, by its newest managedFields entries."""
    entries = [e for e in items(body, "metadata", "managedFields") if isinstance(e, Mapping)]
    if not entries:
        return True  # cannot tell: a reconcile writes only what differs
    newest = max(str(entry.get("time") or "") for entry in entries)
    # Times are whole seconds: an edit tied with the operator's own write counts (one
    # reconcile, which writes only what differs; its own answer is then the newest).
    return any(
        entry.get("manager") != FIELD_MANAGER and not entry.get("subresource")
        for entry in entries
        if str(entry.get("time") or "") == newest
    )


async def post_event(api: Api, body: Any, event: Event) -> bool:
    """Post a Kubernetes Event on the ModelDeployment and wait for the API server's answer.

    Awaited (not queued, as kopf.event would) so that it is written before the
    status that records the same step: a kill in between loses nothing, and
    the repeated post after the restart finds the Event there already
    (vigil.core.events names it after the object's version and its words). False
    when it was there already.
    """
    manifest = event_manifest(
        body,
        event.reason,
        event.message,
        warning=event.warning,
        now=datetime.datetime.now(datetime.UTC),
        component=REPORTING_COMPONENT,
        occurrence=event.occurrence,
    )
    if not await api.create_event(manifest):
        log.info("event %s already posted (%s)", event.reason, manifest["metadata"]["name"])
        return False
    return True


def build_runtime(options: OperatorOptions) -> Runtime:
    metrics = OperatorMetrics()
    metrics.info.labels(__version__, options.sidecar_image).set(1)
    holder: dict[str, Runtime] = {}
    reconciler = Reconciler(
        api_factory=lambda: holder["runtime"].api(),
        config=ReconcilerConfig(
            sidecar_image=options.sidecar_image,
            sidecar_pull_policy=options.sidecar_pull_policy,
        ),
        metrics=metrics,
        post_event=post_event,
    )
    health = HealthLoop(
        api_factory=lambda: holder["runtime"].api(),
        reconciler=reconciler,
        metrics=metrics,
        interval=options.health_interval,
    )
    reconciler.fetches = health.fetches
    reconciler.rollouts = Rollouts(
        health.running_pods,
        sidecar_image=options.sidecar_image,
        sources=health.sources,
    )
    runtime = Runtime(options=options, metrics=metrics, reconciler=reconciler, health=health)
    # With peering kopf starts paused: acting waits for a stream it lets run.
    runtime.reconciler.active = runtime.health.active = options.peering_name is None
    holder["runtime"] = runtime
    return runtime


def decode_watch_streams_with_orjson() -> None:
    """Make kopf decode watch events with orjson (2-4 times faster than the standard json).

    Why: decoding watch events was a quarter of the operator's CPU at scale
    (docs/design/api-traffic.md). It swaps the `json` of a private kopf module,
    `kopf._cogs.clients.api`; test_kopf_decodes_watch_events_with_orjson fails
    loudly when a kopf release moves it.
    """
    if getattr(kopf_api.json, "loads", None) is orjson.loads:
        return
    faster = types.ModuleType("json")
    faster.__dict__.update(vars(json))
    faster.loads = orjson.loads
    kopf_api.json = faster  # type: ignore[attr-defined]


#: How often a watch the API server refuses (403) is tried again.
FORBIDDEN_RETRY_SECONDS = 60.0


def announce_listings(
    on_listing: Callable[[str, str | None, bool], None],
    on_active: Callable[[bool], None] | None = None,
) -> None:
    """Call ``on_listing(plural, namespace, False)`` whenever a kopf watch (re)starts by
    listing, and ``(..., True)`` once that listing is complete (kopf's Bookmark.LISTED,
    also for an empty one; a listing that fails ends without it).

    Why: a relisting that finds no object in a namespace shows no event at all,
    and the cache and the health loop would keep the objects deleted meanwhile
    (vigil.kube.cache, vigil.common.relisting).
    It wraps `continuous_watch` of a private kopf module,
    `kopf._cogs.clients.watching`; test_kopf_announces_each_listing fails loudly
    when a kopf release moves it. Installed again, it replaces the listeners.

    ``on_active(True)`` as a watch starts (kopf is not paused), ``(False)`` when kopf
    pauses the operator (peering: another instance acts): the operator's own loops,
    which kopf does not pause, stop writing too.

    A namespace the operator may not read (deleted with its RoleBinding) is said in the
    log and tried again every FORBIDDEN_RETRY_SECONDS: kopf lets the 403 end the whole
    operator, and every other namespace with it.
    """
    original = getattr(
        kopf_watching.continuous_watch, "__wrapped__", kopf_watching.continuous_watch
    )
    #: Watches refused with 403 at their last try, by (plural, namespace).
    refused: set[tuple[str, str | None]] = set()

    async def continuous_watch(
        *, resource: Any, namespace: str | None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        waiter = kwargs.get("operator_pause_waiter")
        # kopf gives a stream it can pause a task (a resource's); one it cannot (peering's
        # own, which runs while paused) a bare future that never completes.
        if on_active is not None and isinstance(waiter, asyncio.Task):
            on_active(True)
            # Done: paused; cancelled: only this stream ended (a relisting, the exit).
            waiter.add_done_callback(lambda done: done.cancelled() or on_active(False))
        on_listing(resource.plural, namespace, False)
        watch = (resource.plural, namespace)
        try:
            async for event in original(resource=resource, namespace=namespace, **kwargs):
                if event is kopf_watching.Bookmark.LISTED:
                    refused.discard(watch)
                    on_listing(resource.plural, namespace, True)
                yield event
        except kopf_errors.APIForbiddenError as error:
            log.error(
                "cannot watch %s in namespace %s (%s): its models are not reconciled; grant "
                "the operator's Role there, or leave the namespace out of --namespace "
                "(trying again in %.0fs)",
                resource.plural,
                namespace,
                (error.args[0] if error.args else None) or error,
                FORBIDDEN_RETRY_SECONDS,
            )
            # kopf's handlers wait until every watch has listed, this one's included. The
            # cache and the health loop are told of an empty listing only at the second 403
            # in a row: a restarting API server answers 403 for a few seconds, a namespace
            # gone with its RoleBinding for ever (its objects would be kept as they were).
            if watch in refused:
                on_listing(resource.plural, namespace, True)
            refused.add(watch)
            yield kopf_watching.Bookmark.LISTED
            await asyncio.sleep(FORBIDDEN_RETRY_SECONDS)

    continuous_watch.__wrapped__ = original  # type: ignore[attr-defined]
    kopf_watching.continuous_watch = continuous_watch


#: Watch handlers that only feed the health loop or the cache: their success lines are noise.
QUIET_HANDLERS = ("model_deployment_seen", "model_pod_seen", "settings_changed", "child_changed")


class QuietWatchHandlers(logging.Filter):
    """Drops kopf's "Handler '<id>' succeeded." for the health loop's watch handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.endswith(" succeeded.")
            and any(f"'{handler}'" in message for handler in QUIET_HANDLERS)
        )


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's record of the last handled spec, for handlers Vigil does not have: none.

    Why: keeping it costs a deep copy of every watched object on every event and
    a status patch per ModelDeployment (docs/design/api-traffic.md).
    """

    def build(self, *, body: Any, extra_fields: Any = None) -> None:  # type: ignore[override]
        return None

    def fetch(self, *, body: Any) -> None:  # type: ignore[override]
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:  # type: ignore[override]
        return None


def configure_kopf(settings: kopf.OperatorSettings, runtime: Runtime) -> None:
    """Kopf settings that make the operator GitOps-friendly and cheap to run.

    - No bookkeeping on the object: the handlers are level-triggered (see
      vigil.operator.handlers), so kopf has no handler progress or last
      handled spec to keep. Were a create/update handler added, kopf would
      keep them in status, not annotations (a GitOps tool comparing the
      object it applied sees no drift; the CRD declares `status.kopf`).
    - No diff base: kopf builds one (a deep copy of the object) for every
      event of every watched kind to find what changed for such handlers.
    - No dynamic scanning of namespaces and CRDs: the operator serves the
      namespaces it is told, so its RBAC needs no cluster-wide namespace or
      CRD watch.
    - Child watches are filtered server-side by Vigil's label.
    - Events: only those the operator posts on purpose (Deployed, Switched...).
    - Watch events decoded by orjson (see decode_watch_streams_with_orjson).
    - Each listing announced to the cache and the health loop (see announce_listings).
    """
    decode_watch_streams_with_orjson()
    announce_listings(functools.partial(listing, runtime), runtime.set_active)
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.scanning.disabled = True
    settings.posting.loggers = False
    settings.posting.reporting_component = REPORTING_COMPONENT
    objects_log = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietWatchHandlers) for f in objects_log.filters):
        objects_log.addFilter(QuietWatchHandlers())
    settings.watching.label_selectors["apps", "v1", "deployments"] = naming.LABEL_MODEL_DEPLOYMENT
    settings.watching.label_selectors["", "v1", "services"] = naming.LABEL_MODEL_DEPLOYMENT
    settings.watching.label_selectors["", "v1", "configmaps"] = naming.LABEL_MODEL_DEPLOYMENT
    # Model pods (their IPs, for the health loop's direct scrapes): Vigil's pods only.
    settings.watching.label_selectors["", "v1", "pods"] = naming.LABEL_MODEL_DEPLOYMENT
    # Guard against silently frozen watch streams.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60


async def login(state: Runtime, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in as kopf does (in-cluster service account, else kubeconfig), and share it.

    Kopf logs in again when the API server answers 401 (a rotated token): the
    client takes the new credentials, so both always use the same identity. It
    stays the same object: reconciles and health cycles under way hold it.
    """
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    connection = Connection(
        server=info.server,
        ca_path=str(info.ca_path) if info.ca_path else None,
        ca_data=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data,
        insecure=bool(info.insecure),
        token=info.token,
        scheme=info.scheme,
        certificate_path=str(info.certificate_path) if info.certificate_path else None,
        private_key_path=str(info.private_key_path) if info.private_key_path else None,
    )
    if state.client is None:
        state.client = RoutingKubeClient(connection, cache=state.cache)
    else:
        await state.client.reconnect(connection)
    return info


async def shutdown(runtime: Runtime) -> None:
    for sweep in runtime.sweeps:
        sweep.cancel()
    await runtime.health.stop()
    await runtime.reconciler.close()
    # After the reconciles under way: a rollout measuring at SIGTERM read "no sidecar
    # answered" from a closed session, and wrote it.
    await runtime.health.sources.close()
    if runtime.client is not None:
        await runtime.client.close()


def probe(runtime: Runtime) -> dict[str, float]:
    """Liveness details: the process answers, and for how long it has run."""
    return {"uptimeSeconds": round(time.monotonic() - runtime.started, 1)}
