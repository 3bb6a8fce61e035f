"""What a reconcile reads (:class:`Observation`) and what it returns (:class:`Plan`)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.core.candidate import Request, RolloutInputs, RoutePlanner
from vigil.core.desired import DEFAULT_PULL_POLICY, Owner
from vigil.core.observed import FetchState
from vigil.core.rollout import Traffic
from vigil.core.spec import GoldenSetRef, ModelDeploymentSpec

#: How soon to look again when waiting on something no watch reports (a ConfigMap).
RECHECK_SECONDS = 15.0
#: How soon the cycle after a rollback (or a failure) comes to remove the candidate.
REMOVE_AFTER_OUTCOME_SECONDS = 1.0


@dataclass(frozen=True)
class Observation:
    """A snapshot of one ModelDeployment and what it owns."""

    owner: Owner
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]
    service: Mapping[str, Any] | None
    configmaps: Sequence[Mapping[str, Any]]
    reference_found: bool  # False only when spec.monitoring.reference names a missing key
    now: datetime.datetime
    sidecar_image: str
    foreign_service: bool = False  # a Service named like ours exists and someone else owns it
    #: Per-revision Services ``<name>-<revision>`` (rollouts address one revision through them).
    revision_services: Sequence[Mapping[str, Any]] = ()
    #: What the operator measured for the candidate (rollouts with steps).
    rollout: RolloutInputs | None = None
    #: A person's request from the annotations (kubectl vigil ...), if any.
    request: Request | None = None
    #: The traffic router's plan (replicas, Service selector); None = stable-only selector.
    route_planner: RoutePlanner | None = None
    #: ``spec`` as the operator already parsed it this cycle (None: decide parses it).
    parsed: ModelDeploymentSpec | None = None
    #: Each revision's artifact fetch, from its pods (the most telling one; absent: nothing
    #: to say: done, not started, or a model not fetched).
    fetches: Mapping[str, FetchState] = field(default_factory=dict)
    #: A digest of the reference profile's text: in the pod template, so that an edit of
    #: the ConfigMap replaces the pods in place (the sidecar reads it at its start only).
    reference_digest: str = ""
    #: The imagePullPolicy of the containers that run ``sidecar_image``.
    sidecar_pull_policy: str = DEFAULT_PULL_POLICY


@dataclass(frozen=True)
class Apply:
    """Create or update an object (server-side apply of the full manifest)."""

    manifest: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True)
class Delete:
    """Delete an owned object by kind and name."""

    kind: str
    name: str


#: A route's traffic without a candidate (only the weights matter to a route).
ALL_TO_STABLE = Traffic(0, 0, 0, 0)


@dataclass(frozen=True)
class Route:
    """Point the router's route (an HTTPRoute) at the stable and the candidate.

    Without a candidate the route sends everything to the Service ``<name>``,
    which selects the serving revision and lives as long as the
    ModelDeployment: no revision Service is named outside a rollout.
    """

    stable: str
    candidate: str | None = None
    traffic: Traffic = ALL_TO_STABLE
    #: The HTTPRoute's name (``spec.rollout.trafficRouting``): the executor needs no spec.
    http_route: str = field(kw_only=True)


Action = Apply | Delete | Route


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelDeployment."""

    reason: str
    message: str
    warning: bool = False
    #: What makes it one occurrence on one version of the object, when not its words: an
    #: outcome decided again after a kill carries newer figures (vigil.core.events).
    occurrence: str = ""


@dataclass
class Plan:
    """What to do, in order, and the status to persist after doing it."""

    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    recheck_after: float | None = None
    #: The rollout asks for a golden-set replay against the candidate (then decide again).
    run_golden_set: GoldenSetRef | None = None
    #: A finished rollout: Promoted, RolledBack, Failed (for the operator's metric).
    rollout_outcome: str | None = None
    #: The manual request to clear from the annotations once the status is written.
    clear_request: Request | None = None
