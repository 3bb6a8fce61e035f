"""Kopf handlers: decorators only, each delegating to the domain layer.

- ModelDeployment created, resumed (operator start) or its spec changed:
  reconcile now (kopf retries on RetryLater).
- Every ModelDeployment and model pod seen (listed, changed, deleted) is
  handed to the health loop, which runs one cycle per interval over all of
  them (started with the first ModelDeployment seen, stopped at cleanup).
- A ModelDeployment carries a person's request annotation (kubectl vigil):
  nudge a reconcile, which acts on it and clears it.
- An owned Deployment or the Service changed (rollout progress, a pod became
  Ready, someone deleted a child): nudge a reconcile of its ModelDeployment.
  These watches are filtered server-side by the `vigil.dev/model-deployment`
  label, so the operator receives events of its own children only.

The runtime objects (reconciler, settings) arrive through kopf's `memo`,
built by vigil.operator.main.
"""

from __future__ import annotations

from typing import Any

import kopf

from vigil.core import naming
from vigil.operator import runtime
from vigil.operator.reconciler import RetryLater
from vigil.plugin.requests import ANNOTATION_REQUEST


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


@kopf.on.resume(naming.GROUP, naming.VERSION, naming.PLURAL)
@kopf.on.create(naming.GROUP, naming.VERSION, naming.PLURAL)
@kopf.on.update(naming.GROUP, naming.VERSION, naming.PLURAL, field="spec")
async def reconcile_model_deployment(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    try:
        await memo.runtime.reconciler.reconcile(namespace, name)
    except RetryLater as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from error


@kopf.on.event("apps", "v1", "deployments", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
@kopf.on.event("", "v1", "services", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
async def child_changed(labels: kopf.Labels, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.reconciler.nudge(namespace, labels[naming.LABEL_MODEL_DEPLOYMENT])


@kopf.on.event(naming.GROUP, naming.VERSION, naming.PLURAL)
async def model_deployment_seen(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    memo.runtime.health.observe_model(type, body)
    # A person's request (kubectl vigil promote|abort|pause|resume|retry): act on it now.
    if type != "DELETED" and ANNOTATION_REQUEST in (body.metadata.annotations or {}):
        memo.runtime.reconciler.nudge(body.metadata.namespace, body.metadata.name)
    # Started from a resource handler (not at startup): its task inherits the
    # context kopf posts Events from. Starting twice is a no-op.
    memo.runtime.health.start()


@kopf.on.event("", "v1", "pods", labels={naming.LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
async def model_pod_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.health.observe_pod(type, body)
