"""What every traffic router shares: the target, the plan, the interface.

A router turns the rollout's :class:`~vigil.core.rollout.Traffic` (what
``decide()`` asked for) into concrete Kubernetes state. It has two halves:

* ``plan(target, traffic)`` -- pure: the replica count of each revision's
  Deployment, the selector of the live Service ``<name>``, and the
  effective share of live traffic the candidate gets. The reconciler puts
  these into the manifests it already server-side applies (so the router
  never fights the reconciler over ``spec.replicas`` or the selector).
* ``apply(api, target, traffic)`` -- the thin I/O step for objects that are
  *not* in the reconciler's desired set (a user's HTTPRoute). It reads, asks
  a pure function for the patch, and writes only when something changes.

Shadow copies are not a router of live traffic: see :mod:`vigil.routing.shadow`
(a change to the stable revision's sidecar settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from vigil.core import naming
from vigil.core.desired import (
    SERVICE_PORT,
)
from vigil.core.rollout import Traffic


class RoutingError(RuntimeError):
    """The routing cannot be set up as asked (a missing or unusable HTTPRoute...).

    The message is written for a person: it goes into a condition. ``weighted``: the
    revision Services the route, left as it is, still sends live traffic to (a refused
    route mid-rollout); none when it names none (missing, no backendRef to the model).
    """

    def __init__(self, message: str, *, weighted: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.weighted = weighted


@dataclass(frozen=True)
class RoutingTarget:
    """Which ModelDeployment and which two revisions the traffic is split between."""

    name: str
    namespace: str
    stable: str
    candidate: str | None = None

    def revision_service(self, revision: str) -> str:
        """The per-revision Service ``<name>-<revision>`` (same name as its Deployment)."""
        return naming.deployment_name(self.name, revision)

    def revision_url(self, revision: str) -> str:
        """A pod-independent address of one revision's sidecars (its per-revision Service)."""
        return f"http://{self.revision_service(revision)}.{self.namespace}.svc:{SERVICE_PORT}"


@dataclass(frozen=True)
class RoutePlan:
    """What a router wants for one :class:`Traffic`.

    ``replicas`` maps a revision to its Deployment's ``spec.replicas``;
    ``service_selector`` is the selector of the live Service ``<name>``;
    ``effective_weight`` is the share (percent, rounded) of live traffic the
    candidate really gets, which can differ from the asked weight when the
    router is coarse (replica ratio).
    """

    replicas: Mapping[str, int]
    service_selector: Mapping[str, str]
    effective_weight: float
    notes: tuple[str, ...] = field(default_factory=tuple)


class RoutingApi(Protocol):
    """The kube calls a router's apply step needs (see :mod:`vigil.routing.kube`)."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Any,
        *,
        content_type: str = "application/merge-patch+json",
    ) -> dict[str, Any]: ...


@runtime_checkable
class DiscoveryApi(Protocol):
    """An API that can say which resources a group version serves (API discovery).

    Optional: a router asks it only to explain a 404 (:mod:`vigil.routing.kube` has it).
    """

    async def served_resources(self, group_version: str) -> frozenset[str] | None:
        """The resources (plurals) ``/apis/<group_version>`` serves; None when it is not served."""
        ...


class Router(Protocol):
    """A traffic router (one file per backend)."""

    #: Short name for status and logs ("replicaRatio", "gatewayAPI").
    kind: str

    def plan(self, target: RoutingTarget, traffic: Traffic) -> RoutePlan:
        """Pure: replicas, Service selector and effective weight."""
        ...

    async def apply(
        self, api: RoutingApi, target: RoutingTarget, traffic: Traffic, *, write: bool = True
    ) -> RoutePlan:
        """Write what lies outside the reconciler's desired set; returns the plan (``write``
        False: only read it and find what would be refused, RoutingError)."""
        ...
