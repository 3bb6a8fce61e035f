"""Status assembly: from the situation reached to conditions, phase and the revisions' summaries
(a stepped rollout's gates and golden-set replay among them).

Computed in memory and persisted once by the operator (``status_patch``).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.common.times import format_time
from vigil.core.observed import DeploymentView, FetchState
from vigil.core.reconcile.cycle import Cycle
from vigil.core.reconcile.plan import Plan
from vigil.core.rollout import Decision, Gate, GoldenResult
from vigil.core.spec import ModelDeploymentSpec
from vigil.core.status import (
    ConditionState,
    build_conditions,
    kstatus_conditions,
    owned_status,
    phase_with_health,
)
from vigil.core.vocabulary import ConditionType, Phase, Reason


@dataclass
class Outcome:
    """The situation reached, from which conditions and phase follow."""

    phase: str
    ready: ConditionState
    progressing: ConditionState
    #: Stalled True in another phase than Failed or RolledBack (those always are).
    stalled: bool = False


def outcome(
    phase: str,
    ready: tuple[bool, str],
    progressing: tuple[bool, str],
    message: str,
    *,
    stalled: bool = False,
) -> Outcome:
    """Ready and Progressing, each (status, reason), with one message."""
    return Outcome(
        phase,
        ConditionState(ConditionType.READY, ready[0], ready[1], message),
        ConditionState(ConditionType.PROGRESSING, progressing[0], progressing[1], message),
        stalled,
    )


def not_ready(phase: str, reason: str, message: str, *, progressing: bool) -> Outcome:
    """Not Ready, for one reason that Progressing shares (True while work goes on)."""
    return outcome(phase, (False, reason), (progressing, reason), message)


def failed(reason: str, message: str) -> Outcome:
    """Failed: not Ready, and nothing progresses until the spec or the cluster changes."""
    return not_ready(Phase.FAILED, reason, message, progressing=False)


def refused_write_status(
    planned: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    message: str,
    *,
    generation: int,
    now: datetime.datetime,
    reason: str = Reason.DEPLOY_FAILED,
) -> dict[str, Any]:
    """The status after one of a plan's writes was refused: by the API server as invalid
    (400/422, DeployFailed), or a route that cannot be written as asked while it still
    sends traffic to revision Services (RoutingFailed).

    The same write will not succeed until the spec (or the cluster's policy, or the
    route) changes, so the refusal is the outcome: Ready and Progressing False with
    ``reason`` and the words, Stalled True, phase Failed.
    Whatever already serves keeps serving (the writes after the refused one,
    such as removing an old revision, did not happen), so the status keeps what
    the last written cycle recorded (stable, candidate, bake, history, a person's
    request still unanswered): the plan's switch or step did not take place.
    """
    refused = failed(reason, message)
    conditions = build_conditions(
        [
            refused.ready,
            refused.progressing,
            *kstatus_conditions(refused.progressing, True, refused.ready),
        ],
        (previous or {}).get("conditions"),
        generation=generation,
        now=now,
    )
    kept = owned_status(previous)
    return {
        **kept,
        "observedGeneration": generation,
        "phase": Phase.FAILED,
        "conditions": conditions,
        "revision": planned.get("revision"),
        # The plan's Route did not run: a route it was to reset still needs it.
        "httpRoute": kept.get("httpRoute") or planned.get("httpRoute"),
    }


def has_served(status: Mapping[str, Any]) -> bool:
    """Whether the stable revision has served (been Ready) at least once.

    For the monitoring loop: a revision still being deployed for the first
    time (Ready=False, reason Deploying) or one that never came up
    (DeployFailed, no verdict yet) has no sidecar to measure, and judging it
    would only say "metrics unavailable" (a Warning Event and a status write
    on every first deployment that a cycle happens to catch). A revision that
    served and lost its pods is still judged: that verdict is news.
    """
    if not (status.get("stable") or {}).get("revision"):
        return False
    ready = next(
        (c for c in status.get("conditions") or () if c.get("type") == ConditionType.READY), {}
    )
    reason = ready.get("reason")
    if reason == Reason.DEPLOYING:
        return False
    if reason == Reason.ARTIFACT_FETCH_FAILED and not status.get("candidate"):
        return bool(status.get("health"))  # the first revision never got its model
    return not (reason == Reason.DEPLOY_FAILED and not status.get("health"))


def planned_summary(spec: ModelDeploymentSpec, revision: str) -> dict[str, Any]:
    """A revision's summary before its Deployment reports."""
    return {
        "revision": revision,
        "modelVersion": spec.model.version,
        "image": spec.server.image,
        "replicas": spec.replicas,
        "readyReplicas": 0,
    }


def revision_summary(view: DeploymentView | None, fallback: Mapping[str, Any]) -> dict[str, Any]:
    """A revision's summary from its live Deployment (the fallback until it exists)."""
    if view is None:
        return dict(fallback)
    return {
        "revision": view.revision,
        "modelVersion": view.model_version or fallback.get("modelVersion"),
        "image": view.image or fallback.get("image"),
        "replicas": view.replicas,
        "readyReplicas": view.ready_replicas,
    }


@dataclass(frozen=True)
class Side:
    """One revision in status (``stable`` or ``candidate``): its live view, else a summary.

    ``new``: a stable that just took over (its ``since`` starts now).
    ``rollout``: a stepped rollout's state (vigil.core.candidate), written as it is.
    """

    view: DeploymentView | None = None
    fallback: Mapping[str, Any] = field(default_factory=dict)
    new: bool = False
    rollout: Mapping[str, Any] | None = None


def finish(
    cycle: Cycle,
    reached: Outcome,
    *,
    revision: str | None,
    stable: Side | None = None,
    candidate: Side | None = None,
) -> Plan:
    """Assemble the complete owned status (computed in memory, persisted once)."""
    obs = cycle.obs
    serving = _stable_status(cycle, stable) if stable is not None else None
    conditions = build_conditions(
        [
            reached.ready,
            reached.progressing,
            *kstatus_conditions(
                reached.progressing,
                reached.stalled or reached.phase in (Phase.FAILED, Phase.ROLLED_BACK),
                reached.ready,
            ),
            *_not_judged_yet(obs.status, serving),
        ],
        obs.status.get("conditions"),
        generation=obs.generation,
        now=obs.now,
    )
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "phase": phase_with_health(reached.phase, conditions),
        "conditions": conditions,
        "revision": revision,
        "history": cycle.history or None,
    }
    if serving is not None:
        status["stable"] = serving
    if candidate is not None:
        status["candidate"] = _candidate_status(cycle, candidate)
    cycle.plan.status = status
    return cycle.plan


#: The health loop's conditions, and the reason each has before its first verdict.
_HEALTH_CONDITIONS = (
    (ConditionType.HEALTHY, Reason.INSUFFICIENT_DATA),
    (ConditionType.DRIFT_DETECTED, Reason.INSUFFICIENT_DATA),
    (ConditionType.PERFORMANCE_DEGRADED, Reason.INSUFFICIENT_LABELS),
)


def _not_judged_yet(
    status: Mapping[str, Any], serving: Mapping[str, Any] | None
) -> list[ConditionState]:
    """Another revision takes live traffic (a switch, a bake going back): the health
    conditions, which speak of the one before, are Unknown until it is judged."""
    before = (status.get("stable") or {}).get("revision")
    now = (serving or {}).get("revision")
    if not before or not now or before == now:
        return []
    message = f"revision {now} has just taken live traffic: not judged yet"
    present = {str(c.get("type")) for c in status.get("conditions") or ()}
    return [
        ConditionState(kind, None, reason, message)
        for kind, reason in _HEALTH_CONDITIONS
        if kind in present
    ]


def _since(previous: Mapping[str, Any], revision: Any, key: str, now: str, *, keep: bool) -> Any:
    """The previous time under ``key`` while the same revision stays, else now."""
    same = keep and previous.get("revision") == revision and previous.get(key)
    return previous.get(key) if same else now


def _stable_status(cycle: Cycle, side: Side) -> dict[str, Any]:
    summary = revision_summary(side.view, side.fallback)
    previous = cycle.obs.status.get("stable") or {}
    now = format_time(cycle.switched_at or cycle.obs.now)
    summary["since"] = _since(previous, summary["revision"], "since", now, keep=not side.new)
    return summary


def waiting_since(cycle: Cycle, revision: str) -> str:
    """When this blue/green attempt of ``revision`` began waiting for its candidate
    (``status.candidate.stepStartedAt``): kept from this attempt only, once started, not
    from an ended one, a stepped one's step (its steps removed: the wait starts now) or a
    wait paused before its start (it starts at the resume)."""
    previous = cycle.obs.status.get("candidate") or {}
    started = previous.get("startedAt")
    same = bool(started) and not previous.get("outcome") and not previous.get("stepName")
    return str(_since(previous, revision, "stepStartedAt", format_time(cycle.obs.now), keep=same))


def _candidate_status(cycle: Cycle, side: Side) -> dict[str, Any]:
    summary = revision_summary(side.view, side.fallback)
    previous = cycle.obs.status.get("candidate") or {}
    if side.rollout:
        # A stepped rollout's state (vigil.core.candidate), with the live replica counts.
        live = side.view is not None
        return {
            **{key: value for key, value in side.rollout.items() if value is not None},
            "replicas": summary["replicas"] if live else side.rollout.get("replicas", 0),
            "readyReplicas": summary["readyReplicas"] if live else 0,
        }
    now = format_time(cycle.obs.now)
    summary.update(
        {
            "change": side.fallback.get("change") or previous.get("change"),
            "step": 0,
            "weight": 0,
            "failedChecks": 0,
            # Paused before its start: when it was first held, kept (the wait's clock starts
            # at the resume).
            "stepStartedAt": (
                waiting_since(cycle, summary["revision"])
                if side.fallback.get("startedAt")
                else _since(previous, summary["revision"], "stepStartedAt", now, keep=True)
            ),
        }
    )
    if side.fallback.get("startedAt"):  # a blue/green attempt's start (bluegreen._announce)
        summary["startedAt"] = side.fallback["startedAt"]
    return summary


def stable_outcome(
    cycle: Cycle, revision: str, view: DeploymentView | None, *, just_created: bool
) -> Outcome:
    """Conditions and phase when the desired revision is (or becomes) the stable one."""
    assert cycle.spec is not None
    wanted = cycle.spec.replicas
    previous = cycle.previous_reason(ConditionType.READY)
    if view is None:
        if just_created:
            # Worded as the Deployment's first report (no pod ready yet) will be:
            # that report then changes nothing and costs no status write.
            message = replicas_message(revision, 0, wanted)
            return not_ready(Phase.PENDING, Reason.DEPLOYING, message, progressing=True)
        message = f"revision {revision} created; waiting for its Deployment to report"
        return not_ready(Phase.PROGRESSING, Reason.DEPLOYING, message, progressing=True)
    ready = view.ready_replicas
    fetch = cycle.obs.fetches.get(revision)
    gave_up = fetch_gave_up(fetch, view)
    if gave_up and previous in (None, Reason.DEPLOYING, Reason.ARTIFACT_FETCH_FAILED):
        # Never served: the kubelet keeps retrying (a fixed artifact at the same URI heals it).
        message = f"revision {revision} could not fetch its model: {gave_up}"
        if cycle.previous_reason(ConditionType.PROGRESSING) != Reason.ARTIFACT_FETCH_FAILED:
            cycle.event(Reason.ARTIFACT_FETCH_FAILED, message, warning=True)
        return failed(Reason.ARTIFACT_FETCH_FAILED, message)
    # The Deployment's verdict fails a revision, unless it serves: it was serving last cycle,
    # or has a ready pod the Service sends to (Degraded and stalled while short of replicas),
    # the verdict in its words.
    serving = previous in (Reason.AVAILABLE, Reason.REPLICAS_UNAVAILABLE, Reason.SCALING)
    if view.failure is not None and not view.is_available and not serving and ready == 0:
        message = f"revision {revision} is not available: {view.failure}"
        if cycle.previous_reason(ConditionType.PROGRESSING) != Reason.DEPLOY_FAILED:
            cycle.event(Reason.DEPLOY_FAILED, message, warning=True)
        return failed(Reason.DEPLOY_FAILED, message)
    if view.replicas == wanted and view.is_available:
        message = f"revision {revision} serves with {ready}/{wanted} ready replica(s)"
        return outcome(Phase.HEALTHY, (True, Reason.AVAILABLE), (False, Reason.COMPLETE), message)
    detail = (
        f"could not fetch its model: {gave_up}"
        if gave_up
        else cycle.fetch_progress(revision) or view.failure
    )
    return _short(revision, view, wanted, previous, detail)


def _short(
    revision: str, view: DeploymentView, wanted: int, previous: str | None, detail: str | None
) -> Outcome:
    """A revision short of the ready replicas the spec asks for (or replacing its pods)."""
    ready = view.ready_replicas
    message = replicas_message(revision, ready, wanted)
    if detail:
        message = f"{message} ({detail})"
    # Its pods replaced in place (a changed pod template, a rollout restart): with
    # maxUnavailable 0 it keeps serving at full capacity meanwhile.
    serving_before = previous in (Reason.AVAILABLE, Reason.REPLICAS_UNAVAILABLE)
    if view.replicas == wanted and ready >= wanted and serving_before:
        return _updating(revision, view, wanted)
    if _gave_up_short(view, wanted):
        # Serving (a revision that never served failed above) with fewer pods than asked,
        # and its Deployment gave up on the rest (a quota, a node's size, a fetch): it
        # serves what it has, and nothing progresses until someone changes something.
        return outcome(
            Phase.DEGRADED,
            (False, Reason.REPLICAS_UNAVAILABLE),
            (False, Reason.REPLICAS_UNAVAILABLE),
            message,
            stalled=True,
        )
    # A revision that served fully and lost pods without a spec change is degraded.
    if view.replicas == wanted and serving_before:
        return not_ready(Phase.DEGRADED, Reason.REPLICAS_UNAVAILABLE, message, progressing=True)
    # Until a revision has been Ready once, it is still being deployed, not scaled;
    # Pending (as a pod is) until its first replica is ready.
    if previous in (None, Reason.DEPLOYING):
        phase = Phase.PENDING if ready == 0 else Phase.PROGRESSING
        return not_ready(phase, Reason.DEPLOYING, message, progressing=True)
    return not_ready(Phase.PROGRESSING, Reason.SCALING, message, progressing=True)


def _gave_up_short(view: DeploymentView, wanted: int) -> bool:
    """The Deployment controller, having seen the replica count asked for, gave up on
    the pods still missing (its progress deadline, a replica failure)."""
    return (
        view.failure is not None
        and view.replicas == wanted
        and view.observed_generation >= view.generation
        and view.ready_replicas < wanted
    )


def _updating(revision: str, view: DeploymentView, wanted: int) -> Outcome:
    """A serving revision at full capacity while its pods are replaced in place."""
    message = (
        f"revision {revision} serves with {view.ready_replicas}/{wanted} ready replica(s), "
        f"replacing its pods ({min(view.updated_replicas, wanted)}/{wanted} updated"
        f"{': ' + view.failure if view.failure else ''})"
    )
    return outcome(Phase.HEALTHY, (True, Reason.AVAILABLE), (True, Reason.UPDATING), message)


def fetch_gave_up(fetch: FetchState | None, view: DeploymentView | None) -> str | None:
    """vigil-fetch's words when a revision's pods will not get their model: a permanent
    error, or transient ones until the Deployment gave up."""
    if fetch is None or (view is not None and view.is_available):
        return None
    if fetch.kind == "failed":
        return fetch.words
    if fetch.kind == "retrying" and view is not None and view.failure is not None:
        return f"{fetch.words} ({view.failure})"
    return None


def replicas_message(revision: str, ready: int, wanted: int) -> str:
    return f"revision {revision}: {ready}/{wanted} replica(s) ready"


def meanwhile(stable: DeploymentView) -> str:
    """What the stable does while a change waits, in a message: it keeps serving, unless no
    pod of it is ready (then nothing serves)."""
    if stable.ready_replicas > 0:
        return f"revision {stable.revision} keeps serving"
    return f"revision {stable.revision} has no ready pod: nothing serves"


def _figure(value: float | None, threshold: float | None = None) -> float | None:
    """Four significant digits: a tiny error rate keeps its size in status, not 0; more
    while an interval end would read as the ``threshold`` it is not (a failed gate's
    interval clears its threshold in status too)."""
    if value is None or not math.isfinite(value):
        return None
    digits = 4
    while threshold is not None and value != threshold and digits < 17:
        if f"{value:.{digits}g}" != f"{threshold:.{digits}g}":
            break
        digits += 1
    return float(f"{value:.{digits}g}")


def gates_status(gates: Sequence[Gate]) -> list[dict[str, Any]] | None:
    """``status.candidate.gates``: per gate the verdict, the estimate and its interval, the
    threshold, and the samples judged (and, undecided, how many more would decide it)."""
    if not gates:
        return None
    return [
        {
            "name": g.name,
            "passed": g.passed,
            "value": _figure(g.value),
            "verdict": str(g.verdict),
            "low": _figure(g.low, g.threshold),
            "high": _figure(g.high, g.threshold),
            "threshold": _figure(g.threshold),
            "samples": g.samples,
            "unit": g.unit,
            "needed": g.needed,
        }
        for g in gates
    ]


def golden_status(golden: GoldenResult | None) -> dict[str, Any] | None:
    if golden is None:
        return None
    return {
        "total": golden.total,
        "agreed": golden.agreed,
        "agreement": round(golden.agreement, 4),
        **({"step": golden.step} if golden.step is not None else {}),
        **({"message": golden.message} if golden.message else {}),
    }


def last_gates(decision: Decision, previous: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """This cycle's gates, else the last ones evaluated: a hold or a wait evaluates none."""
    if decision.gates:
        return gates_status(decision.gates)
    return previous.get("gates")
