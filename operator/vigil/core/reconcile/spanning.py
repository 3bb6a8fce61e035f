"""Replica ratio's live Service across both revisions: when it may span them, and the share.

Without a mesh the candidate's live share is its part of the ready pods the Service
``<name>`` selects (:mod:`vigil.routing.replica_ratio`). A step change that shrinks the
candidate as the Service starts spanning both revisions (a shadow step's ``R`` pods, then
a canary's ``c``) must not widen the Service first: until the extra pods are gone the
candidate would get ``R`` of ``2R`` endpoints (50 %), not ``c / (R + c)``.

Writing the scale-down before the Service is no cure: the Service's write follows at
once, before the Deployment controller has taken a pod away, and an operator stopped
between the two writes widens it on its next cycle all the same. So the Service keeps
selecting the stable alone until the candidate is seen at its step's count (its
Deployment and its ready pods), decided from what is observed each cycle, whatever an
earlier cycle wrote; the writes keep the one order of :meth:`Cycle.ordered_actions`.
A Service that already spans both keeps doing so while the candidate shrinks (its share
only falls): narrowing it would take the candidate's traffic away and give it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from vigil.core import naming
from vigil.core.observed import DeploymentView, service_revision
from vigil.core.reconcile.cycle import Cycle
from vigil.core.rollout import Decision, Traffic, candidate_replicas_for


def behind_the_stable(
    cycle: Cycle,
    traffic: Traffic,
    decision: Decision,
    views: tuple[DeploymentView, DeploymentView | None],
) -> Traffic:
    """Under replica ratio, a canary's candidate grown no further than the stable's ready
    pods allow for the step's weight: with spec.replicas raised mid-canary, its new pods were
    ready before the stable's and took up to 71 % of live traffic at a 50 % step. Never
    shrunk by it (a stable pod restarting); a promotion's full capacity is asked whatever
    the stable's; an HTTPRoute's weights do not depend on pods."""
    stable_view, candidate_view = views
    weight = decision.traffic.candidate_weight
    routed = cycle.spec is None or cycle.spec.rollout.http_route is not None
    if routed or decision.state.promoting or candidate_view is None or not 0 < weight < 100:
        return traffic
    allowed = candidate_replicas_for(weight, stable_view.ready_replicas)
    capped = min(traffic.candidate_replicas, max(candidate_view.replicas, allowed))
    return replace(traffic, candidate_replicas=capped)


def live_selector(
    cycle: Cycle,
    views: tuple[DeploymentView, DeploymentView | None],
    replicas: Mapping[str, int],
    selector: Mapping[str, str],
    planned: float,
) -> tuple[dict[str, str], float]:
    """The live Service's selector this cycle and the candidate's real share under it.

    ``replicas``, ``selector`` and ``planned`` (the share) are the router's plan; a
    selector naming one revision (or a route that splits) is taken as it is."""
    stable, candidate_view = views[0].revision, views[1]
    if naming.LABEL_REVISION in selector:
        return dict(selector), planned
    kept = service_revision(cycle.obs.service) == stable
    if kept and candidate_view is not None and _too_big(candidate_view, replicas):
        # The stable alone this cycle too: spanning now would give the candidate its extra pods.
        return naming.selector_labels(cycle.obs.owner.name, stable), 0.0
    return dict(selector), ready_share(views, replicas, planned)


def ready_share(
    views: tuple[DeploymentView, DeploymentView | None],
    replicas: Mapping[str, int],
    planned: float,
) -> float:
    """The candidate's share of the ready pods behind a Service that selects both revisions
    (``planned`` until either reports a ready pod).

    The Service spreads over the ready pods whatever the router planned with the replicas
    asked for (some still start, some are lost). Pods over a revision's count are being
    removed by this plan: they count as gone."""
    stable_view, candidate_view = views
    stable = _staying(stable_view, replicas)
    ready = _staying(candidate_view, replicas) if candidate_view is not None else 0
    total = stable + ready
    return round(100.0 * ready / total, 1) if total else planned


def _too_big(view: DeploymentView, replicas: Mapping[str, int]) -> bool:
    """More candidate pods asked for or ready than its step's count (a scale-down to come,
    or pods not yet gone after one)."""
    wanted = replicas.get(view.revision, view.replicas)
    return max(view.replicas, view.ready_replicas) > wanted


def _staying(view: DeploymentView, replicas: Mapping[str, int]) -> int:
    """A revision's ready pods that stay (at most its count in the plan)."""
    return min(view.ready_replicas, replicas.get(view.revision, view.ready_replicas))
