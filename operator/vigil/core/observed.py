"""What the operator reads back from the cluster, reduced to the facts decisions need."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vigil.common.objects import body, integer_or_zero, section
from vigil.core import naming
from vigil.core.desired import FETCH_CONTAINER, MODEL_VOLUME


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
    #: Its progress deadline passed (``failure`` may be a replica failure alone: a quota).
    deadline_exceeded: bool = False
    #: Its rollout completed (Progressing: NewReplicaSetAvailable): the controller times
    #: no scale from there, so a scale up that never comes reports no deadline.
    rolled_out: bool = False

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


def _progressing(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Deployment's Progressing condition ({} without one)."""
    found = (c for c in status.get("conditions") or () if c.get("type") == "Progressing")
    return next(found, {})


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
    progressing = _progressing(status).get("reason")
    return DeploymentView(
        name=meta.name,
        revision=str(revision),
        role=labels.get(naming.LABEL_ROLE),
        identity=annotations.get(naming.ANNOTATION_IDENTITY),
        model_version=annotations.get(naming.ANNOTATION_MODEL_VERSION),
        image=annotations.get(naming.ANNOTATION_IMAGE),
        generation=meta.generation,
        observed_generation=integer_or_zero(status.get("observedGeneration")),
        replicas=integer_or_zero(spec.get("replicas", 1)),
        ready_replicas=integer_or_zero(status.get("readyReplicas")),
        available_replicas=integer_or_zero(status.get("availableReplicas")),
        updated_replicas=integer_or_zero(status.get("updatedReplicas")),
        failure=deployment_failure(status),
        deadline_exceeded=progressing == "ProgressDeadlineExceeded",
        rolled_out=progressing == "NewReplicaSetAvailable",
    )


def service_revision(service: Mapping[str, Any] | None) -> str | None:
    """The revision a live Service sends traffic to, if it selects one."""
    if service is None:
        return None
    selector = section(service, "spec", "selector")
    revision = selector.get(naming.LABEL_REVISION)
    return str(revision) if revision else None


#: What one pod's artifact fetch says, from the least to the most telling.
FetchKind = Literal["fetching", "retrying", "failed"]
_FETCH_ORDER: tuple[FetchKind, ...] = ("fetching", "retrying", "failed")
#: vigil-fetch's exit codes that no retry will change: a permanent error (1), bad
#: arguments (2), a bug (70). 75 is transient errors outlasting the retries.
PERMANENT_EXIT_CODES = (1, 2, 70)


@dataclass(frozen=True)
class FetchState:
    """One pod's artifact fetch (its vigil-fetch init container), as the kubelet reports it.

    ``failed``: a permanent error or a missing Secret (the rollout fails at once);
    ``retrying``: a transient one, or the kubelet waiting to start it, its
    words the last attempt's; ``fetching``: running. ``words`` are vigil-fetch's
    termination message (``URI: what went wrong``) or the kubelet's.
    """

    kind: FetchKind
    words: str = ""

    @staticmethod
    def worst(states: Iterable[FetchState]) -> FetchState | None:
        """The most telling state of a revision's pods (a failure over a retry over a run)."""
        return max(states, key=lambda state: _FETCH_ORDER.index(state.kind), default=None)


def fetch_state(pod: Mapping[str, Any]) -> FetchState | None:
    """The artifact fetch of a pod as its status shows it; None: done, not started, or none."""
    view = body(pod)
    status = view.status
    message = str(status.get("message") or "")
    if status.get("reason") == "Evicted" and MODEL_VOLUME in message:
        return FetchState("failed", f"the pod was evicted: {message}")
    container = next(
        (
            item
            for item in status.get("initContainerStatuses") or ()
            if item.get("name") == FETCH_CONTAINER
        ),
        None,
    )
    if container is None:
        return None
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated")
    ended = state.get("terminated")
    if ended is not None:
        return None if ended.get("exitCode") == 0 else _ended(ended, _memory_limit(view.spec))
    waiting = state.get("waiting")
    if last and last.get("exitCode") != 0:
        return _ended(last, _memory_limit(view.spec))
    if state.get("running") is not None:
        return FetchState("fetching")
    if waiting and waiting.get("reason") not in (None, "PodInitializing", "ContainerCreating"):
        words = f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
        if _secret_missing(waiting):
            return FetchState("failed", f"spec.model.storage.secretRef: {words}")
        return FetchState("retrying", words)
    return None


#: The kubelet's words for a Secret, or a key of it, that does not exist. Only these: its
#: other Secret messages ("failed to sync secret cache", "secrets ... is forbidden" while the
#: node authorizer catches up) pass on their own and must not fail a revision.
_SECRET_NOT_FOUND = re.compile(r'secret "[^"]+" not found|couldn\'t find key \S+ in secret \S+')


def _secret_missing(waiting: Mapping[str, Any]) -> bool:
    """The kubelet cannot start vigil-fetch for want of the spec's Secret or one of its keys:
    permanent until a person creates it, so the revision fails at once rather than waiting
    out its deadline."""
    message = str(waiting.get("message") or "").lower()
    return waiting.get("reason") == "CreateContainerConfigError" and bool(
        _SECRET_NOT_FOUND.search(message)
    )


def _ended(terminated: Mapping[str, Any], limit: str | None) -> FetchState:
    code = integer_or_zero(terminated.get("exitCode"))
    reason = str(terminated.get("reason") or "")
    words = " ".join(str(terminated.get("message") or "").split())
    if reason == "OOMKilled":
        return FetchState(
            "failed",
            f"{FETCH_CONTAINER} ran out of memory (OOMKilled at its limit of {limit or '?'}; "
            "spec.model.fetch.resources)",
        )
    if code in PERMANENT_EXIT_CODES:
        return FetchState("failed", words or f"{FETCH_CONTAINER} exited with {code} ({reason})")
    return FetchState("retrying", words or f"{FETCH_CONTAINER} exited with {code} ({reason})")


def _memory_limit(spec: Mapping[str, Any]) -> str | None:
    for container in spec.get("initContainers") or ():
        if container.get("name") == FETCH_CONTAINER:
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            return None if limit is None else str(limit)
    return None


def fetches_by_revision(pods: Iterable[tuple[str, FetchState]]) -> dict[str, FetchState]:
    """Each revision's most telling fetch, from (revision, state) of its pods."""
    grouped: dict[str, list[FetchState]] = {}
    for revision, state in pods:
        grouped.setdefault(revision, []).append(state)
    return {
        revision: worst
        for revision, states in grouped.items()
        if (worst := FetchState.worst(states)) is not None
    }
