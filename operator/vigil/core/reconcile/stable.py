"""The first deployment (change "new") and keeping the stable revision as it is."""

from __future__ import annotations

from collections.abc import Mapping

from vigil.core import naming
from vigil.core.desired import RevisionInfo
from vigil.core.observed import DeploymentView
from vigil.core.reconcile import bake
from vigil.core.reconcile.cycle import Cycle
from vigil.core.reconcile.plan import Plan
from vigil.core.reconcile.report import Side, finish, planned_summary, stable_outcome
from vigil.core.reconcile.switch import finish_cut_switch
from vigil.core.vocabulary import ChangeKind, Outcome, Reason


def deploy_new(
    cycle: Cycle, revision: str, identity: str, views: Mapping[str, DeploymentView]
) -> Plan:
    """No stable revision yet: deploy this one at once and let it serve (change "new")."""
    spec = cycle.spec
    assert spec is not None
    info = RevisionInfo(revision, identity, naming.ROLE_STABLE)
    created = cycle.ensure_revision(info, spec.replicas) and revision not in views
    cycle.serve(revision)
    # Superseded leftovers (a candidate of a stable that was deleted) go away.
    for other in views:
        if other != revision:
            cycle.delete_revision(other)
    if created:
        cycle.event(
            Reason.DEPLOYED,
            f"revision {revision} (model {spec.model.name} version {spec.model.version}) "
            f"deployed with {spec.replicas} replica(s)",
        )
        cycle.record(
            revision,
            spec.model.version,
            spec.server.image,
            ChangeKind.NEW,
            Outcome.DEPLOYED,
            "first revision of this ModelDeployment",
        )
    view = views.get(revision)
    return finish(
        cycle,
        stable_outcome(cycle, revision, view, just_created=created),
        revision=revision,
        stable=Side(view, planned_summary(spec, revision)),
    )


def keep(cycle: Cycle, revision: str, identity: str, views: Mapping[str, DeploymentView]) -> Plan:
    """The spec asks for the stable revision: keep it, scale it in place, drop any candidate."""
    spec = cycle.spec
    assert spec is not None
    view = views[revision]
    finish_cut_switch(cycle, view)
    cycle.ensure_revision(RevisionInfo(revision, identity, naming.ROLE_STABLE), spec.replicas)
    if view.replicas != spec.replicas:
        cycle.event(
            Reason.SCALED,
            f"revision {revision} scaled from {view.replicas} to {spec.replicas} replica(s)",
        )
    cycle.serve(revision)
    # A bake keeps the previous revision until it passes (or traffic goes back to it).
    baking = bake.baking(cycle, revision)
    # A spec change back to the stable revision aborts the rollout.
    for other, other_view in views.items():
        if other != revision and (baking is None or other != baking.previous):
            cycle.retire(
                other_view,
                Reason.ROLLOUT_ABORTED,
                f"revision {other} removed: the spec returned to the stable revision {revision}",
                Outcome.ABORTED,
                f"the spec returned to revision {revision}",
            )
    cycle.keep_in_history(view)
    reached = stable_outcome(cycle, revision, view, just_created=False)
    if baking is not None:
        return bake.watch(cycle, baking, view, views.get(baking.previous), reached)
    return finish(cycle, reached, revision=revision, stable=Side(view))
