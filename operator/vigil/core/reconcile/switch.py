"""The switch that ends every replacement: live traffic moves to the candidate, the old goes.

Safety rule: the Service is only ever moved to a revision whose Deployment
is available (all replicas ready), and the old revision is deleted only
after the move was written.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from vigil.core import naming
from vigil.core.bake import BakeState, state_from_status
from vigil.core.desired import RevisionInfo
from vigil.core.observed import DeploymentView
from vigil.core.reconcile import bake
from vigil.core.reconcile.cycle import Cycle
from vigil.core.reconcile.plan import Plan
from vigil.core.reconcile.report import Side, finish, stable_outcome
from vigil.core.vocabulary import ChangeKind, Outcome, Reason, RequestVerb


def switch(
    cycle: Cycle,
    identity: str,
    change: ChangeKind,
    stable_view: DeploymentView,
    candidate_view: DeploymentView,
) -> Plan:
    """Promote the available candidate: move the Service first, then delete the old revision
    (or keep it for the bake)."""
    spec = cycle.spec
    assert spec is not None
    revision = candidate_view.revision
    cycle.serve(revision)
    # A switch decided again after its Service moved (the cycle stopped there) dates from
    # that move, as the Service's mark says.
    cycle.switched_at = cycle.serving_since(revision)
    cycle.ensure_revision(RevisionInfo(revision, identity, naming.ROLE_STABLE), spec.replicas)
    # The old revision goes, or stays for the bake (spec.rollout.bake) to go back to.
    then, baked = bake.start(cycle, change, stable_view, revision)
    cycle.event(
        Reason.SWITCHED,
        switched_message(
            stable_view.revision, stable_view.model_version, revision, spec.model.version, then
        ),
        occurrence=_switch_occurrence(cycle, stable_view.revision, revision),
    )
    ran = (spec.model.version, spec.server.image)
    _record_promotion(cycle, candidate_view, change, ran, cycle.switched_at)
    reached = stable_outcome(cycle, revision, candidate_view, just_created=False)
    if baked is not None:
        reached = bake.bake_outcome(reached, Reason.BAKING, then)
    plan = finish(cycle, reached, revision=revision, stable=Side(candidate_view, new=True))
    if baked is not None:
        plan.status["bake"] = baked
    return plan


@dataclass(frozen=True)
class CutSwitch:
    """A switch finished after its status write was cut: the old revision, removed or kept
    for the bake that starts now."""

    previous: str
    bake: BakeState | None
    #: ``status.bake`` as the switch writes it (None: no bake).
    written: Mapping[str, Any] | None = None


def finish_cut_switch(
    cycle: Cycle, view: DeploymentView, views: Mapping[str, DeploymentView]
) -> CutSwitch | None:
    """Finish a switch to this revision that was cut short before its status write.

    The operator stopped after the Service moved, before the status said so:
    status still names the old stable and this revision as the candidate. Its
    history entry and its Switched Event are written now, in the very words of
    the interrupted cycle (an Event it did post is then found under the same
    name), and its Promoting Event if that cycle promoted it too; the old
    revision, if still there, is kept for the bake (started now) or removed, as
    the switch would have.
    """
    previous = _cut_from(cycle, view)
    if previous is None:
        return None
    candidate = cycle.obs.status.get("candidate") or {}
    previous_view = views.get(str(previous["revision"]))
    then, baked = (
        bake.start(cycle, candidate.get("change") or "", previous_view, view.revision)
        if previous_view is not None
        else (None, None)
    )
    _finish_cut(cycle, view, previous, then)
    return CutSwitch(str(previous["revision"]), state_from_status(baked), baked)


def finish_superseded_switch(cycle: Cycle, view: DeploymentView, asked: str | None) -> str | None:
    """Finish a switch to this revision cut short before its status write, in a cycle whose
    spec asks for another revision (``asked``; None: a spec that cannot be read) or that
    cannot be acted on: recorded as :func:`finish_cut_switch` does, and the old stable
    removed at once, no candidate retired (a newer spec removes a bake's previous revision
    too), unless the spec asks for it again. The old stable's revision (None: no cut)."""
    previous = _cut_from(cycle, view)
    if previous is None:
        return None
    old = str(previous["revision"])
    then = f"revision {old} kept: the spec asks for it again" if old == asked else None
    if then is None:
        cycle.delete_revision(old)
    _finish_cut(cycle, view, previous, then)
    return old


def _cut_from(cycle: Cycle, view: DeploymentView) -> Mapping[str, Any] | None:
    """The stable status names, when a switch to ``view`` was cut short before its status
    write: status still names the old stable, and this revision as the candidate."""
    previous = cycle.obs.status.get("stable") or {}
    candidate = cycle.obs.status.get("candidate") or {}
    if candidate.get("revision") != view.revision or previous.get("revision") in (
        None,
        view.revision,
    ):
        return None
    return previous


def _finish_cut(
    cycle: Cycle, view: DeploymentView, previous: Mapping[str, Any], then: str | None
) -> None:
    """A cut switch's Events (Promoting, if unsaid; Switched) and history entry, with what
    the interrupted cycle knew of the candidate (the spec may ask for another revision now);
    its outcome for the metric; a person's promote request for it answered: it is done."""
    candidate = cycle.obs.status.get("candidate") or {}
    version = candidate.get("modelVersion") or view.model_version
    # When live traffic moved: the mark on the revision kept for the bake, or the Service's.
    moved = bake.kept_since(cycle, str(previous["revision"]), view.revision)
    kept = None if moved is None else datetime.datetime.fromtimestamp(moved, UTC)
    cycle.switched_at = kept or cycle.serving_since(view.revision)
    _promoted_unsaid(cycle, view)
    cycle.event(
        Reason.SWITCHED,
        switched_message(
            previous.get("revision"), previous.get("modelVersion"), view.revision, version, then
        ),
        occurrence=_switch_occurrence(cycle, str(previous["revision"]), view.revision),
    )
    ran = (version, candidate.get("image") or view.image)
    _record_promotion(cycle, view, candidate.get("change"), ran, cycle.switched_at)
    if candidate.get("stepName"):  # a stepped rollout's switch says so (stepped.progress)
        cycle.plan.rollout_outcome = Outcome.PROMOTED
    request = cycle.obs.request
    asked = request.revision if request is not None else None
    if cycle.verb == RequestVerb.PROMOTE and asked in (None, "", view.revision):
        cycle.answer(True, f"revision {view.revision} promoted: it serves all live traffic")


def _promoted_unsaid(cycle: Cycle, view: DeploymentView) -> None:
    """The Promoting Event of a stepped candidate that the cut cycle promoted and switched at
    once (at full capacity already, as after a shadow step): status never said it was
    promoting, so no later cycle would. Under the name of that cycle's, posted or not."""
    candidate = cycle.obs.status.get("candidate") or {}
    if not candidate.get("stepName") or candidate.get("promoting"):
        return  # blue/green (no Promoting), or said by the cycle that began the promotion
    step = candidate.get("step")
    at = f" at step {step + 1}" if isinstance(step, int) else ""
    cycle.event(
        Reason.PROMOTING,
        f"revision {view.revision} promoted{at}; at full capacity already "
        f"({view.ready_replicas} ready replica(s)), switched at once",
        occurrence=promoting_occurrence(view.revision, candidate.get("startedAt")),
    )


def promoting_occurrence(revision: str, started: object) -> str:
    """One Promoting Event per attempt (``started``: its start), whatever its words: the
    cycle that promotes, decided again, judged newer figures."""
    return f"{Reason.PROMOTING} {revision} {started}"


def _switch_occurrence(cycle: Cycle, previous: str, revision: str) -> str:
    """One Switched Event per promotion: the cycle that finishes a switch cut short may run
    on a newer version of the object (the health loop writes status in between; a spec edit
    that keeps the revision, or a newer spec: finish_superseded_switch). The attempt's start
    names it (a blue/green candidate's: stepStartedAt), else the generation."""
    started = cycle.attempt_started()
    return f"{Reason.SWITCHED} {previous} {revision} {started or cycle.obs.generation}"


def _record_promotion(
    cycle: Cycle,
    view: DeploymentView,
    change: str | None,
    ran: tuple[str | None, str | None],
    at: datetime.datetime | None = None,
) -> None:
    """The history entry of a switch to ``view``'s revision (``ran``: its model version and
    image; ``at``: when, if not now): one writer, so a switch cut short (finish_cut_switch)
    records it in the very words of the interrupted cycle."""
    cycle.record(
        view.revision,
        ran[0],
        ran[1],
        change,
        Outcome.PROMOTED,
        f"{change}: available with {view.ready_replicas} ready replica(s)",
        at,
    )


def switched_message(
    old_revision: object,
    old_version: object,
    new_revision: str,
    new_version: object,
    then: str | None = None,
) -> str:
    """The words of the Switched Event (the same words name the same Event: see core.events);
    ``then``: what became of the old revision (removed, unless a bake keeps it)."""
    return (
        f"live traffic moved from revision {old_revision} (version {old_version}) to revision "
        f"{new_revision} (version {new_version}); {then or f'revision {old_revision} removed'}"
    )
