"""The bake period after a promotion: ``decide(spec, state, seen, now)``.

Argo Rollouts' ``scaleDownDelaySeconds``, with a verdict: after the switch
the previous revision is kept (at ``spec.rollout.bake.minReplicas``) for
``bake.duration``, and live traffic goes back to it when the promoted
revision fails what the health loop judges in that time. Pure: it reads
the bake's state (``status.bake``), the health conditions the health loop
wrote and the previous revision's Deployment, and returns a
:class:`BakeDecision`; the reconcile applies it and persists the state.

The runbook, one cycle:

    gave up going back before                   -> over: the promoted revision serves on
    the previous revision is gone, the bake     -> give up at once: nothing to go back to (the
      failed                                       promoted revision serves on)
    the previous revision is gone               -> over: nothing to go back to (passed, if
                                                   past its end without a failure)
    going back, the previous revision available -> roll back: live traffic to it (RolledBack)
    going back past progressDeadline            -> give up: the promoted revision keeps serving
    going back                                  -> the previous revision at full replicas; wait
    Healthy turned False, or PerformanceDegraded -> go back (at once when the previous revision
      turned True, since the bake started,         is available already)
      or the promoted revision has no ready pod
    the bake's time is over                     -> passed: the previous revision goes
    otherwise                                   -> bake: the previous revision at minReplicas

Only a condition that *turned* bad since the bake started counts: the
health loop judges the serving revision, so a verdict older than the switch
is the previous revision's, and going back to a revision as bad as the
promoted one would gain nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vigil.common.times import format_unix, parse_unix
from vigil.core.spec import BakeSpec
from vigil.core.vocabulary import BakeMove, ConditionType, Reason

#: The conditions a bake watches, each with the status that fails it.
FAILING = {ConditionType.HEALTHY: "False", ConditionType.PERFORMANCE_DEGRADED: "True"}


@dataclass(frozen=True)
class BakeState:
    """``status.bake``: the bake of one promotion (times in Unix seconds)."""

    revision: str
    previous: str
    started_at: float
    ends_at: float
    change: str = ""
    previous_model_version: str = ""
    #: When a watched condition failed: from then on live traffic goes back.
    failed_at: float | None = None
    reason: str = Reason.BAKING
    message: str = ""


@dataclass(frozen=True)
class Signal:
    """One watched health condition as status holds it."""

    type: str
    status: str
    reason: str
    message: str
    #: lastTransitionTime (Unix seconds; None: unknown).
    since: float | None

    def failed_since(self, moment: float) -> bool:
        """Failing, and turned so at or after ``moment``."""
        return (
            FAILING.get(self.type) == self.status
            and self.since is not None
            and self.since >= moment
        )

    def describe(self) -> str:
        """'PerformanceDegraded True (PerformanceBelowThreshold): accuracy 0.874 ...'."""
        return f"{self.type} {self.status} ({self.reason}): {self.message}"


@dataclass(frozen=True)
class BakeObservations:
    signals: tuple[Signal, ...]
    #: The previous revision's Deployment exists.
    previous_exists: bool
    #: It has all ``replicas`` ready (live traffic may go back to it).
    previous_available: bool
    #: spec.replicas: the previous revision's count when traffic goes back.
    replicas: int
    #: Ready pods of the promoted revision (None: not known): none serve with 0, and the
    #: health loop then judges nothing (too few requests) that could fail the bake.
    promoted_ready: int | None = None


@dataclass(frozen=True)
class BakeDecision:
    """One cycle of a bake: what to do, the bake's next state, the words for a person."""

    move: BakeMove
    #: Written to status.bake (restart-safe: the next cycle reads it back).
    state: BakeState
    #: Replicas the previous revision's Deployment should have (0 when it goes).
    previous_replicas: int
    message: str
    #: The bake's time is over without a failure: it passed (BakePassed).
    passed: bool = False

    @property
    def failed(self) -> bool:
        """The bake has failed: before (going back, or given up), or this cycle."""
        return self.state.failed_at is not None


def decide(
    spec: BakeSpec, state: BakeState, seen: BakeObservations, now: float, deadline: float
) -> BakeDecision:
    """The bake's next move; see the module docstring for the runbook."""
    full = seen.replicas
    kept = min(spec.min_replicas, full)
    # The end follows bake.duration as edited (a longer bake waits for late labels); a failed
    # bake's is history (its moves never read it; a spec without a bake gives 0s).
    if state.failed_at is None:
        state = replace(state, ends_at=state.started_at + spec.duration_seconds)
    left = state.ends_at - now

    # Gave up going back (status keeps it until another revision rolls out): over.
    if state.reason == Reason.BAKE_ROLLBACK_FAILED:
        return BakeDecision(BakeMove.GIVE_UP, state, 0, state.message)
    failed = [s.describe() for s in seen.signals if s.failed_since(state.started_at)]
    if seen.promoted_ready == 0:
        failed.append(f"revision {state.revision} has no ready pod (0/{seen.replicas})")
    # The bake failed and the previous revision is gone: nothing to go back to, given up at
    # once (waiting for it would only wait out progressDeadline). Not a failure seen past
    # the bake's end: that bake passed (its cycle removed the previous revision).
    if not seen.previous_exists and (state.failed_at is not None or (failed and left > 0)):
        return _gone(state, "; ".join(failed), now, deadline)
    # The previous revision is gone (removed by hand, or a cut-short cycle): nothing to go
    # back to. Past the bake's end without a failure it passed (a cycle that removed the
    # previous revision was cut short before its BakePassed Event).
    if not seen.previous_exists:
        if left <= 0 and state.failed_at is None and not failed:
            return BakeDecision(BakeMove.PASS, state, 0, _standing(seen.signals), passed=True)
        return BakeDecision(BakeMove.PASS, state, 0, f"revision {state.previous} is gone")
    # Going back: switch once the previous revision is available, within the deadline.
    if state.failed_at is not None:
        return _going_back(state, seen, now, deadline)
    # A watched condition turned bad during the bake: go back to the previous revision.
    if failed:
        words = "; ".join(failed)
        failing = replace(state, failed_at=now, reason=Reason.BAKE_FAILED, message=words)
        return _going_back(failing, seen, now, deadline)
    # The bake's time is over without a failure: the previous revision goes.
    if left <= 0:
        return BakeDecision(BakeMove.PASS, state, 0, _standing(seen.signals), passed=True)
    # Otherwise: bake on, the previous revision kept at minReplicas.
    message = (
        f"{_standing(seen.signals)}; revision {state.previous} kept at {kept} replica(s) "
        f"until {format_unix(state.ends_at)}"
    )
    return BakeDecision(BakeMove.BAKE, replace(state, message=message), kept, message)


def _going_back(
    state: BakeState, seen: BakeObservations, now: float, deadline: float
) -> BakeDecision:
    assert state.failed_at is not None
    if seen.previous_available:
        return BakeDecision(BakeMove.ROLL_BACK, state, seen.replicas, state.message)
    waited = now - state.failed_at
    if waited >= deadline:
        message = (
            f"revision {state.previous} did not become available in {waited:.0f}s >= "
            f"progressDeadline {deadline:.0f}s; revision {state.revision} keeps serving "
            f"({state.message})"
        )
        return BakeDecision(BakeMove.GIVE_UP, state, 0, message)
    message = (
        f"{state.message}; scaling revision {state.previous} to {seen.replicas} replica(s) "
        "to go back to it"
    )
    return BakeDecision(BakeMove.GO_BACK, state, seen.replicas, message)


def _gone(state: BakeState, failed: str, now: float, deadline: float) -> BakeDecision:
    """Give up a failed bake whose previous revision is gone (``failed``: the failure found
    this cycle, when it had not failed before). Past progressDeadline it was the give-up's
    own removal, cut short before its status write: said in that give-up's words."""
    if state.failed_at is None:
        state = replace(state, failed_at=now, reason=Reason.BAKE_FAILED, message=failed)
    elif now - state.failed_at >= deadline:
        return _going_back(state, BakeObservations((), False, False, 0), now, deadline)
    message = (
        f"revision {state.previous} is gone (its Deployment was deleted outside the "
        f"operator): nothing to go back to; revision {state.revision} keeps serving "
        f"({state.message})"
    )
    return BakeDecision(BakeMove.GIVE_UP, state, 0, message)


def _standing(signals: Sequence[Signal]) -> str:
    """'Healthy True (SLOsMet), PerformanceDegraded False (PerformanceMet)'."""
    if not signals:
        return "no health verdict yet"
    return ", ".join(f"{s.type} {s.status} ({s.reason})" for s in signals)


# -- status.bake ------------------------------------------------------------------------


def signals(conditions: Sequence[Mapping[str, Any]] | None) -> tuple[Signal, ...]:
    """The watched conditions from ``status.conditions`` (those present)."""
    found = []
    for item in conditions or ():
        if item.get("type") not in FAILING:
            continue
        found.append(
            Signal(
                str(item.get("type")),
                str(item.get("status") or "Unknown"),
                str(item.get("reason") or ""),
                str(item.get("message") or ""),
                parse_unix(item.get("lastTransitionTime")),
            )
        )
    return tuple(found)


def state_from_status(status: Mapping[str, Any] | None) -> BakeState | None:
    """``status.bake`` as a state (None: no bake, or one status cannot describe)."""
    if not status or not status.get("revision") or not status.get("previous"):
        return None
    started, ends = parse_unix(status.get("startedAt")), parse_unix(status.get("endsAt"))
    if started is None or ends is None:
        return None
    return BakeState(
        revision=str(status["revision"]),
        previous=str(status["previous"]),
        started_at=started,
        ends_at=ends,
        change=str(status.get("change") or ""),
        previous_model_version=str(status.get("previousModelVersion") or ""),
        failed_at=parse_unix(status.get("failedAt")),
        reason=str(status.get("reason") or Reason.BAKING),
        message=str(status.get("message") or ""),
    )


def state_to_status(state: BakeState) -> dict[str, Any]:
    """``status.bake`` (without the previous revision's replica counts; no None values)."""
    out = {
        "revision": state.revision,
        "change": state.change or None,
        "previous": state.previous,
        "previousModelVersion": state.previous_model_version or None,
        "startedAt": format_unix(state.started_at),
        "endsAt": format_unix(state.ends_at),
        "failedAt": format_unix(state.failed_at),
        "reason": state.reason,
        "message": state.message or None,
    }
    return {key: value for key, value in out.items() if value is not None}
