"""What the operator reads back from the cluster, reduced to the facts decisions need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vigil.common.objects import body, section
from vigil.core import naming


@dataclass(frozen=True)
class DeploymentView:
    """One revision's live Deployment, as far as the rollout logic cares."""

    name: str
    revision: str
    role: str | None
    identity: str | None
    model_version: str | None
    image: str | None
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    available_replicas: int
    updated_replicas: int
    failure: str | None  # why the Deployment controller gave up, if it did

    @property
    def is_available(self) -> bool:
        """All wanted replicas of the current template are ready and available.

        Checking observedGeneration first avoids trusting counts the
        Deployment controller computed for an older spec.
        """
        return (
            self.observed_generation >= self.generation
            and self.replicas > 0
            and self.updated_replicas >= self.replicas
            and self.available_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
        )


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def deployment_failure(status: Mapping[str, Any]) -> str | None:
    """The Deployment controller's verdict that the pods will not come: deadline or failure."""
    for condition in status.get("conditions") or ():
        kind = condition.get("type")
        if (
            kind == "Progressing"
            and condition.get("status") == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return str(condition.get("message") or "progress deadline exceeded")
        if kind == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason") or "replica failure")
    return None


def view_deployment(deployment: Mapping[str, Any]) -> DeploymentView | None:
    """Reduce a live Deployment; None for one without a revision label (not ours to judge)."""
    view = body(deployment)
    meta, spec, status = view.meta, view.spec, view.status
    labels, annotations = meta.labels, meta.annotations
    revision = labels.get(naming.LABEL_REVISION)
    if not revision:
        return None
    return DeploymentView(
        name=meta.name,
        revision=str(revision),
        role=labels.get(naming.LABEL_ROLE),
        identity=annotations.get(naming.ANNOTATION_IDENTITY),
        model_version=annotations.get(naming.ANNOTATION_MODEL_VERSION),
        image=annotations.get(naming.ANNOTATION_IMAGE),
        generation=meta.generation,
        observed_generation=_int(status.get("observedGeneration")),
        replicas=_int(spec.get("replicas", 1)),
        ready_replicas=_int(status.get("readyReplicas")),
        available_replicas=_int(status.get("availableReplicas")),
        updated_replicas=_int(status.get("updatedReplicas")),
        failure=deployment_failure(status),
    )


def service_revision(service: Mapping[str, Any] | None) -> str | None:
    """The revision a live Service sends traffic to, if it selects one."""
    if service is None:
        return None
    selector = section(service, "spec", "selector")
    revision = selector.get(naming.LABEL_REVISION)
    return str(revision) if revision else None
