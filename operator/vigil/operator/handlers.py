"""Kopf handlers: decorators only, each delegating to the domain layer.

- A ModelDeployment seen: listed (operator start), created, its spec changed
  (generation ahead of status.observedGeneration) or a person's request
  annotation on it (kubectl vigil): nudge a reconcile. Level-triggered, as
  the reconciler is: no kopf create/update/resume handlers, so kopf keeps no
  bookkeeping on the object at all (no annotation, no `status.kopf`, no
  status write of its own) and builds no diff of every watched object on
  every event (docs/design/api-traffic.md).
  Failed reconciles are retried by the reconciler itself (until then, only a
  new spec or request reconciles sooner).
- Every ModelDeployment and model pod seen (listed, changed, deleted) is
  handed to the health loop, which runs one cycle per interval over all of
  them (started with the first ModelDeployment seen, stopped at cleanup).
  A pod whose artifact fetch says something new (vigil-fetch failed,
  retries, runs) nudges a reconcile of its ModelDeployment, which reports it.
- An owned Deployment or the Service changed (rollout progress, a pod became
  Ready, someone deleted a child), or a sidecar settings ConfigMap was deleted
  or edited by someone else (not the operator's own apply): nudge a reconcile
  of its ModelDeployment. A child deleted while its watch was away is told by
  no event: the runtime reconciles its owner once a relisting no longer shows
  it. These watches are filtered server-side by the `vigil.dev/model-deployment`
  label, so the operator receives events of its own children only.
- Every ModelDeployment and child seen goes into the operator's object cache
  (vigil.kube.cache), from which reconciles read instead of asking the API
  server again. It is fed by kopf *index* handlers: they run before any
  other handler of the event, and kopf starts no handler at all until every
  indexed kind has been listed once, so the first reconcile after a start
  already sees every child. (They return nothing: kopf's own index stays
  empty.) The event handlers feed it too: deletions, and listings (which
  make the cache distrust what it holds until the listing is over).

The runtime objects (reconciler, settings) arrive through kopf's `memo`,
built by vigil.operator.main.
"""

from __future__ import annotations

from typing import Any

import kopf

from vigil.core import naming
from vigil.operator import runtime
from vigil.operator.reconciler import needs_reconcile, spec_version


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime.configure_kopf(settings, memo.runtime)


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    return await runtime.login(memo.runtime, **kwargs)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await runtime.shutdown(memo.runtime)


@kopf.on.probe(id="uptime")
def probe(memo: kopf.Memo, **_: Any) -> dict[str, float]:
    return runtime.probe(memo.runtime)


@kopf.index(naming.GROUP, naming.VERSION, naming.PLURAL)
@kopf.index("apps", "v1", "deployments", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
@kopf.index("", "v1", "services", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
@kopf.index("", "v1", "configmaps", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
async def cached(resource: kopf.Resource, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime.index(memo.runtime, resource.plural, body)


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
@kopf.on.event("", "v1", "services", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
async def child_changed(
    type: str | None, resource: kopf.Resource, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    runtime.remember(memo.runtime, resource.plural, type, body)
    _nudge_owner(memo, body)


@kopf.on.event("", "v1", "configmaps", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
async def settings_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime.remember(memo.runtime, "configmaps", type, body)
    # A revision's sidecar settings are written by the reconciler itself: a deletion or
    # someone else's edit needs a reconcile, which writes them again; its own apply does not.
    if type == "DELETED" or runtime.changed_by_others(body):
        _nudge_owner(memo, body)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.PLURAL)
async def model_deployment_seen(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    memo.runtime.health.observe_model(type, body)
    runtime.remember(memo.runtime, naming.PLURAL, type, body)
    if needs_reconcile(type, body):
        meta = body.metadata
        memo.runtime.reconciler.nudge(meta.namespace, meta.name, version=spec_version(body))
    # Started with the first ModelDeployment seen: an operator with nothing to
    # watch runs no cycles. Starting twice is a no-op.
    memo.runtime.health.start()


@kopf.on.event("", "v1", "pods", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
async def model_pod_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # A pod's artifact fetch that says something new (failed, retrying) is reported by a
    # reconcile of its ModelDeployment; other pod changes reach it through its Deployment.
    if memo.runtime.health.observe_pod(type, body):
        _nudge_owner(memo, body)


def _nudge_owner(memo: kopf.Memo, child: kopf.Body) -> None:
    """Reconcile the ModelDeployment a child belongs to (its label names it)."""
    meta = child.metadata
    memo.runtime.reconciler.nudge(meta.namespace, meta.labels[naming.LABEL_MODEL_DEPLOYMENT])
