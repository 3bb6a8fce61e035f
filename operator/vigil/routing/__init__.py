"""Traffic routers: how a rollout's :class:`~vigil.core.rollout.Traffic` reaches the cluster.

One file per backend, each behind :class:`~vigil.routing.base.Router`:

* :mod:`vigil.routing.replica_ratio` -- default, no mesh: replica counts and
  the live Service's selector;
* :mod:`vigil.routing.gateway_api` -- exact weights on a user's HTTPRoute;
* :mod:`vigil.routing.shadow` -- the stable sidecars' ``shadow`` settings
  (copies to the candidate, no live traffic).

``router_for(spec.rollout.http_route)`` picks the live-traffic router.
"""

from __future__ import annotations

from vigil.routing.base import RoutePlan, Router, RoutingApi, RoutingError, RoutingTarget
from vigil.routing.gateway_api import GatewayAPIRouter
from vigil.routing.replica_ratio import ReplicaRatioRouter

__all__ = [
    "GatewayAPIRouter",
    "ReplicaRatioRouter",
    "RoutePlan",
    "Router",
    "RoutingApi",
    "RoutingError",
    "RoutingTarget",
    "router_for",
]


def router_for(http_route: str | None) -> Router:
    """The router ``spec.rollout.trafficRouting`` asks for: Gateway API when it names an
    HTTPRoute, else replica ratio."""
    if http_route:
        return GatewayAPIRouter(http_route)
    return ReplicaRatioRouter()
