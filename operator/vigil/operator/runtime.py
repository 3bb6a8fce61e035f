"""The operator's runtime: its options, the kopf settings it needs, its API access.

Kept apart from handlers.py so that handlers stay one-liners and the choices
below (where kopf keeps its bookkeeping, what is watched, how) are
explained in one place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf

from vigil import __version__
from vigil.core import naming
from vigil.core.reconcile import Event
from vigil.kube.client import Connection, KubeClient
from vigil.operator.health import DEFAULT_INTERVAL_SECONDS, HealthLoop
from vigil.operator.metrics import OperatorMetrics
from vigil.operator.reconciler import Reconciler, ReconcilerConfig
from vigil.operator.rollouts import Rollouts
from vigil.routing.kube import RoutingKubeClient

DEFAULT_SIDECAR_IMAGE = f"ghcr.io/vigil-dev/vigil:{__version__}"

log = logging.getLogger("vigil.operator")


@dataclass(frozen=True)
class OperatorOptions:
    """Everything `vigil-operator` is told on its command line."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    sidecar_image: str = DEFAULT_SIDECAR_IMAGE
    metrics_port: int = 9090
    metrics_address: str = "0.0.0.0"
    health_port: int = 8080
    log_format: str = "plain"
    standalone: bool = True
    peering_name: str | None = None
    verbose: bool = False
    health_interval: float = DEFAULT_INTERVAL_SECONDS
    #: Reach candidates at their pod IPs (shadow copies, golden replays) instead of their
    #: per-revision Service: for clusters without Service networking (the dev cluster).
    pod_addressing: bool = False


@dataclass
class Runtime:
    """The objects handlers reach through kopf's memo."""

    options: OperatorOptions
    metrics: OperatorMetrics
    reconciler: Reconciler
    health: HealthLoop
    client: KubeClient | None = None
    started: float = field(default_factory=time.monotonic)

    def api(self) -> KubeClient:
        if self.client is None:
            raise RuntimeError("not logged in to the API server yet")
        return self.client


def post_event(body: Any, event: Event) -> None:
    """Post a Kubernetes Event on the ModelDeployment through kopf's event queue."""
    kopf.event(
        body,
        type="Warning" if event.warning else "Normal",
        reason=event.reason,
        message=event.message,
    )


def build_runtime(options: OperatorOptions) -> Runtime:
    metrics = OperatorMetrics()
    metrics.info.labels(__version__, options.sidecar_image).set(1)
    holder: dict[str, Runtime] = {}
    reconciler = Reconciler(
        api_factory=lambda: holder["runtime"].api(),
        config=ReconcilerConfig(sidecar_image=options.sidecar_image),
        metrics=metrics,
        post_event=post_event,
    )
    health = HealthLoop(
        api_factory=lambda: holder["runtime"].api(),
        reconciler=reconciler,
        metrics=metrics,
        interval=options.health_interval,
    )
    reconciler.rollouts = Rollouts(
        lambda: health.pods,
        pod_addressing=options.pod_addressing,
        sidecar_image=options.sidecar_image,
    )
    runtime = Runtime(options=options, metrics=metrics, reconciler=reconciler, health=health)
    holder["runtime"] = runtime
    return runtime


#: Watch handlers that only feed the health loop: their per-event success lines are noise.
QUIET_HANDLERS = ("model_deployment_seen", "model_pod_seen")


class QuietWatchHandlers(logging.Filter):
    """Drops kopf's "Handler '<id>' succeeded." for the health loop's watch handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.endswith(" succeeded.")
            and any(f"'{handler}'" in message for handler in QUIET_HANDLERS)
        )


def configure_kopf(settings: kopf.OperatorSettings, runtime: Runtime) -> None:
    """Kopf settings that make the operator GitOps-friendly and cheap to run.

    - Bookkeeping in status, not annotations: a GitOps tool comparing the
      object it applied sees no drift (the CRD declares `status.kopf`).
    - No dynamic scanning of namespaces and CRDs: the operator serves the
      namespaces it is told, so its RBAC needs no cluster-wide namespace or
      CRD watch.
    - Child watches are filtered server-side by Vigil's label.
    - Events: only those the operator posts on purpose (Deployed, Switched...).
    """
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="kopf")
    settings.scanning.disabled = True
    settings.posting.loggers = False
    settings.posting.reporting_component = "vigil-operator"
    objects_log = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietWatchHandlers) for f in objects_log.filters):
        objects_log.addFilter(QuietWatchHandlers())
    settings.watching.label_selectors["apps", "v1", "deployments"] = naming.LABEL_MODEL_DEPLOYMENT
    settings.watching.label_selectors["", "v1", "services"] = naming.LABEL_MODEL_DEPLOYMENT
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
    previous client is closed and replaced, so both always use the same identity.
    """
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    previous = state.client
    state.client = RoutingKubeClient(
        Connection(
            server=info.server,
            ca_path=str(info.ca_path) if info.ca_path else None,
            ca_data=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data,
            insecure=bool(info.insecure),
            token=info.token,
            scheme=info.scheme,
            certificate_path=str(info.certificate_path) if info.certificate_path else None,
            private_key_path=str(info.private_key_path) if info.private_key_path else None,
        )
    )
    if previous is not None:
        await previous.close()
    return info


async def shutdown(runtime: Runtime) -> None:
    await runtime.health.stop()
    await runtime.reconciler.close()
    if runtime.reconciler.rollouts is not None:
        await runtime.reconciler.rollouts.close()
    if runtime.client is not None:
        await runtime.client.close()


def probe(runtime: Runtime) -> dict[str, float]:
    """Liveness details: the process answers, and for how long it has run."""
    return {"uptimeSeconds": round(time.monotonic() - runtime.started, 1)}
