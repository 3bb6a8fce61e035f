"""Replica-ratio routing (the default; no mesh, no gateway).

One Service ``<name>`` carries live traffic. Kubernetes spreads a Service's
connections evenly over its ready endpoints, so the share of traffic a
revision gets is its share of the ready pods behind the Service.

* No candidate, or a candidate with weight 0 (``validate``, ``shadow``,
  a rollback): the Service selects the stable revision only
  (``vigil.dev/model-deployment`` + ``vigil.dev/revision``).
* Canary weight ``w`` in 1..99: the Service selects on
  ``vigil.dev/model-deployment`` only, spanning both revisions' pods. The
  candidate runs ``c = ceil(w% x R)`` replicas (what ``decide()`` asks) and
  the stable keeps all its ``R`` replicas (capacity never drops), so the
  candidate's real share is ``c / (R + c)``: with ``R`` replicas the
  achievable shares are ``1/(R+1), 2/(R+2), ..., R/(2R)``. Example, R = 2:
  20 % and 50 % both give 1 candidate pod = 33 %; R = 10: 20 % -> 2 pods =
  17 %, 50 % -> 5 pods = 33 %. Use the Gateway API router for exact weights.
* Weight 100: the candidate at full capacity, the Service selects it only.

Spanning both revisions by the model-deployment label is exact as long as
only the stable and the candidate have pods, which the reconciler ensures
(a superseded candidate is removed before the next one takes live traffic,
since every rollout starts at weight 0). A Service selector cannot say
"revision in (a, b)", and a pod-template label toggled per step would
restart the pods, so this is the granularity replica ratio offers.
"""

from __future__ import annotations

from vigil.core import naming
from vigil.core.rollout import Traffic
from vigil.routing.base import RoutePlan, RoutingApi, RoutingTarget


def service_selector(target: RoutingTarget, traffic: Traffic) -> dict[str, str]:
    """The live Service's selector for this traffic (see the module docstring)."""
    if target.candidate is None or traffic.candidate_weight <= 0:
        return naming.selector_labels(target.name, target.stable)
    if traffic.candidate_weight >= 100:
        return naming.selector_labels(target.name, target.candidate)
    return {naming.LABEL_MODEL_DEPLOYMENT: target.name}


def replica_counts(target: RoutingTarget, traffic: Traffic) -> dict[str, int]:
    """``spec.replicas`` per revision: the stable's full count, the candidate's share."""
    counts = {target.stable: traffic.stable_replicas}
    if target.candidate is not None:
        counts[target.candidate] = traffic.candidate_replicas
    return counts


def effective_weight(stable_pods: int, candidate_pods: int, weight: int) -> float:
    """The candidate's real share of live traffic, percent, for the given ready pods."""
    if weight <= 0 or candidate_pods <= 0:
        return 0.0
    if weight >= 100:
        return 100.0
    total = stable_pods + candidate_pods
    return round(100.0 * candidate_pods / total, 1) if total else 0.0


def achievable_weights(replicas: int) -> list[float]:
    """Every share (percent) replica ratio can give with a stable of ``replicas`` pods."""
    return [round(100.0 * c / (replicas + c), 1) for c in range(1, replicas + 1)] + [100.0]


class ReplicaRatioRouter:
    """The default router: replica counts and the Service selector, nothing else to write."""

    kind = "replicaRatio"

    def plan(self, target: RoutingTarget, traffic: Traffic) -> RoutePlan:
        weight = traffic.candidate_weight if target.candidate is not None else 0
        real = effective_weight(traffic.stable_replicas, traffic.candidate_replicas, weight)
        notes: tuple[str, ...] = ()
        if 0 < weight < 100 and abs(real - weight) >= 0.5:
            notes = (
                f"replica ratio: {traffic.candidate_replicas} pod(s) beside "
                f"{traffic.stable_replicas} stable = {real:g}%",
            )
        return RoutePlan(
            replicas=replica_counts(target, traffic),
            service_selector=service_selector(target, traffic),
            effective_weight=real,
            notes=notes,
        )

    async def apply(
        self, api: RoutingApi, target: RoutingTarget, traffic: Traffic, *, write: bool = True
    ) -> RoutePlan:
        """Nothing outside the desired set: the reconciler applies replicas and selector."""
        return self.plan(target, traffic)
