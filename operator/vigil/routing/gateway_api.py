"""Gateway API routing: exact weights on a user's HTTPRoute.

Set ``spec.rollout.trafficRouting.gatewayAPI.httpRoute: <route>``. The
HTTPRoute belongs to the user (it names the Gateway, hostnames, paths);
Vigil only rewrites the backendRefs that point at this ModelDeployment:
the Service ``<name>`` or a per-revision Service ``<name>-<revision>``.
In each such rule, during a rollout, they become

    - {name: <name>-<stable>,    port: 80, weight: 100 - w}
    - {name: <name>-<candidate>, port: 80, weight: w}

where ``w`` is ``Traffic.candidate_weight``. Without a candidate (before
the first rollout, after a promotion, a rollback, a failure) they become
the Service ``<name>`` alone (weight 100): it selects the serving revision
and lives as long as the ModelDeployment, so no revision Service stays
named in the route, and the operator deletes a revision's Service only
after the route has left it (vigil.core.reconcile orders every plan:
writes, the route, deletions). BackendRefs to other Services in the same
rule are left as they are, as are the ref's other fields (port, filters)
taken from the first of ours.

The write is a JSON merge patch of ``spec.rules`` carrying the
``resourceVersion`` read, so a concurrent edit of the route is never
overwritten (409, retried on a fresh read). Replicas follow ``decide()``
(``ceil(w% x R)`` for the candidate, the stable at full count) and the
Service ``<name>`` keeps selecting the stable only: in-cluster clients that
call it directly bypass the gateway and stay on the stable.

GitOps: the route's weights change during a rollout; tell Argo CD to
ignore ``/spec/rules`` backendRef weights of that route (docs/rollouts.md).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from vigil.common.objects import body, items
from vigil.core import naming
from vigil.core.desired import SERVICE_PORT
from vigil.core.revision import REVISION_LENGTH
from vigil.core.rollout import Traffic
from vigil.kube.client import KubeError
from vigil.routing.base import RoutePlan, RoutingApi, RoutingError, RoutingTarget

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
HTTPROUTE = "HTTPRoute"
#: Conflicting writes (someone edited the route between our read and write) retried.
MAX_CONFLICT_RETRIES = 3


def _ours(ref: Mapping[str, Any], target: RoutingTarget) -> bool:
    """Whether a backendRef points at this ModelDeployment's Service or one of its revisions."""
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return False
    if (ref.get("namespace") or target.namespace) != target.namespace:
        return False
    name = str(ref.get("name", ""))
    if name == naming.service_name(target.name):
        return True
    pattern = rf"{re.escape(target.name)}-[0-9a-f]{{{REVISION_LENGTH}}}"
    return re.fullmatch(pattern, name) is not None or name in {
        target.revision_service(target.stable),
        target.revision_service(target.candidate or target.stable),
    }


def desired_backends(
    target: RoutingTarget, traffic: Traffic, template: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Our backendRefs for this traffic (``template`` supplies port and filters)."""
    base = {k: copy.deepcopy(v) for k, v in (template or {}).items() if k in ("port", "filters")}
    base.setdefault("port", SERVICE_PORT)
    if target.candidate is None:
        return [{**base, "name": naming.service_name(target.name), "weight": 100}]
    weight = max(0, min(100, traffic.candidate_weight))
    return [
        {**base, "name": target.revision_service(target.stable), "weight": 100 - weight},
        {
            **copy.deepcopy(base),
            "name": target.revision_service(target.candidate),
            "weight": weight,
        },
    ]


def desired_rules(
    route: Mapping[str, Any], target: RoutingTarget, traffic: Traffic
) -> list[dict[str, Any]]:
    """The route's rules with our backendRefs rewritten; RoutingError if none are ours."""
    rules = copy.deepcopy(list(items(route, "spec", "rules")))
    found = False
    for rule in rules:
        refs = list(rule.get("backendRefs") or [])
        mine = [r for r in refs if _ours(r, target)]
        if not mine:
            continue
        found = True
        others = [r for r in refs if not _ours(r, target)]
        rule["backendRefs"] = desired_backends(target, traffic, mine[0]) + others
    if not found:
        name = body(route).meta.name or "?"
        raise RoutingError(
            f"HTTPRoute {name} has no backendRef to Service {naming.service_name(target.name)} "
            f"or to a revision Service {target.name}-<revision>: add "
            f"'backendRefs: [{{name: {target.name}, port: {SERVICE_PORT}}}]' to the rule "
            "that should serve this model"
        )
    return rules


def route_patch(
    route: Mapping[str, Any], target: RoutingTarget, traffic: Traffic
) -> dict[str, Any] | None:
    """The merge patch that sets the weights, or None when the route already has them."""
    rules = desired_rules(route, target, traffic)
    if rules == list(items(route, "spec", "rules")):
        return None
    version = body(route).meta.resource_version
    patch: dict[str, Any] = {"spec": {"rules": rules}}
    if version:
        patch["metadata"] = {"resourceVersion": version}
    return patch


def route_weights(route: Mapping[str, Any], target: RoutingTarget) -> dict[str, int]:
    """Our backends and their weights as the route has them (Service name -> weight)."""
    weights: dict[str, int] = {}
    for rule in items(route, "spec", "rules"):
        for ref in rule.get("backendRefs") or []:
            if _ours(ref, target):
                weights[str(ref["name"])] = int(ref.get("weight", 1))
    return weights


class GatewayAPIRouter:
    """Weights on one HTTPRoute; replicas as decide() asks; the Service stays on the stable.

    ``apply`` raises RoutingError when the route cannot point at this model
    (missing, or no backendRef of ours: then no route names our Services
    either), KubeError when the API refused or failed (the route may still
    name what it named).
    """

    kind = "gatewayAPI"

    def __init__(self, http_route: str) -> None:
        self.http_route = http_route

    def plan(self, target: RoutingTarget, traffic: Traffic) -> RoutePlan:
        replicas = {target.stable: traffic.stable_replicas}
        weight = 0
        if target.candidate is not None:
            replicas[target.candidate] = traffic.candidate_replicas
            weight = max(0, min(100, traffic.candidate_weight))
        return RoutePlan(
            replicas=replicas,
            service_selector=naming.selector_labels(target.name, target.stable),
            effective_weight=float(weight),
        )

    async def apply(self, api: RoutingApi, target: RoutingTarget, traffic: Traffic) -> RoutePlan:
        """Read the route, patch its weights when they differ (optimistic concurrency)."""
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            route = await api.get(HTTPROUTE, target.namespace, self.http_route)
            if route is None:
                raise RoutingError(
                    f"HTTPRoute {target.namespace}/{self.http_route} "
                    "(spec.rollout.trafficRouting.gatewayAPI.httpRoute) does not exist"
                )
            patch = route_patch(route, target, traffic)
            if patch is None:
                break
            try:
                await api.patch(HTTPROUTE, target.namespace, self.http_route, patch)
                break
            except KubeError as error:
                if error.status != 409 or attempt == MAX_CONFLICT_RETRIES:
                    raise
        return self.plan(target, traffic)
