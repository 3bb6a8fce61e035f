"""Status building blocks: conditions, history, and the one status patch.

Conventions (kstatus, so `kubectl wait`, Argo CD and Flux understand them):
- `observedGeneration` tells which spec the status describes;
- `Ready` is True only when the current spec is fully realised;
- `Progressing` is True while the operator is still moving towards the spec
  and False once it is done (reason Complete) or stuck (the failure reason);
- `Reconciling` mirrors `Progressing` and `Stalled` is True when the operator
  cannot reach the spec without a change from a person (phase Failed, or
  RolledBack: the spec's revision was refused and is not retried): the
  kstatus library behind Flux's health checks and `kpt live status` reads
  these two for custom resources;
- `lastTransitionTime` changes only when a condition's status changes, so an
  unchanged world gives a byte-identical status, hence no write at all.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.common.objects import copied
from vigil.common.times import format_time
from vigil.core.vocabulary import ConditionType, Phase, Reason

HISTORY_LIMIT = 10

# The status keys this module owns; others (health, kopf) belong to other writers.
OWNED_KEYS = (
    "observedGeneration",
    "model",
    "phase",
    "conditions",
    "revision",
    "stable",
    "candidate",
    "bake",
    "history",
    "lastRequest",
    "httpRoute",
)


@dataclass(frozen=True)
class ConditionState:
    """The wanted value of one condition, before timestamps are decided."""

    type: str
    status: bool | None  # None = Unknown
    reason: str
    message: str


def _status_word(value: bool | None) -> str:
    if value is None:
        return "Unknown"
    return "True" if value else "False"


def build_conditions(
    wanted: Iterable[ConditionState],
    previous: Sequence[Mapping[str, Any]] | None,
    *,
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """Conditions with lastTransitionTime kept unless their status flips.

    Conditions that other writers own (e.g. Healthy from the monitoring loop)
    are carried over untouched, after the ones given here.
    """
    previous_by_type = {str(item.get("type")): item for item in previous or ()}
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for state in wanted:
        seen.add(state.type)
        word = _status_word(state.status)
        before = previous_by_type.get(state.type)
        transition = (
            before.get("lastTransitionTime")
            if before is not None
            and before.get("status") == word
            and before.get("lastTransitionTime")
            else format_time(now)
        )
        result.append(
            {
                "type": state.type,
                "status": word,
                "reason": state.reason,
                "message": state.message,
                "lastTransitionTime": transition,
                "observedGeneration": generation,
            }
        )
    for item in previous or ():
        if str(item.get("type")) not in seen:
            result.append(dict(item))
    return result


def kstatus_conditions(
    progressing: ConditionState, failed: bool, ready: ConditionState
) -> list[ConditionState]:
    """Reconciling and Stalled, derived from Progressing and the Failed phase."""
    reconciling = ConditionState(
        ConditionType.RECONCILING, progressing.status, progressing.reason, progressing.message
    )
    if failed:
        stalled = ConditionState(ConditionType.STALLED, True, ready.reason, ready.message)
    else:
        stalled = ConditionState(ConditionType.STALLED, False, Reason.NOT_STALLED, "")
    return [reconciling, stalled]


def phase_with_health(phase: str, conditions: Sequence[Mapping[str, Any]] | None) -> str:
    """Lower Healthy to Degraded when the monitoring verdict says so.

    The rollout logic decides whether the spec is realised (Ready); the
    health evaluation (vigil.core.health) writes `Healthy` and `DriftDetected`.
    A model whose pods all serve but whose SLOs are broken, whose inputs
    drifted past the threshold, or whose labels say it got worse
    (``PerformanceDegraded``), is Degraded, whoever computes the phase last.
    """
    if phase != Phase.HEALTHY:
        return phase
    for kind, bad in (
        (ConditionType.HEALTHY, "False"),
        (ConditionType.DRIFT_DETECTED, "True"),
        (ConditionType.PERFORMANCE_DEGRADED, "True"),
    ):
        condition = find_condition(conditions, kind)
        if condition is not None and condition.get("status") == bad:
            return Phase.DEGRADED
    return phase


def phase_after_health(phase: str | None, conditions: Sequence[Mapping[str, Any]] | None) -> str:
    """The phase once the health evaluation wrote new conditions.

    A rollout phase other than Healthy/Degraded (Pending, Progressing,
    Failed...) stays; a model that is Ready is Healthy or Degraded depending
    on the health verdict alone (so a recovered model becomes Healthy again).
    """
    ready = find_condition(conditions, ConditionType.READY)
    if (
        phase in (Phase.HEALTHY, Phase.DEGRADED)
        and ready is not None
        and ready.get("status") == "True"
    ):
        return phase_with_health(Phase.HEALTHY, conditions)
    return phase or Phase.PENDING


def find_condition(
    conditions: Sequence[Mapping[str, Any]] | None, kind: str
) -> Mapping[str, Any] | None:
    """The condition of that type, if present."""
    for item in conditions or ():
        if item.get("type") == kind:
            return item
    return None


def push_history(
    history: Sequence[Mapping[str, Any]] | None,
    entry: Mapping[str, Any],
    stable: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first, one entry per revision, at most HISTORY_LIMIT entries: the oldest
    go, but never the ``stable`` revision's (dropped, it would come back as "found serving
    live traffic", now: how and when it came would be lost)."""
    kept = [dict(item) for item in history or () if item.get("revision") != entry.get("revision")]
    entries = [dict(entry), *kept]
    while len(entries) > HISTORY_LIMIT:
        oldest = max(i for i, item in enumerate(entries) if item.get("revision") != stable)
        del entries[oldest]
    return entries


def replacing_merge_patch(old: Any, new: Any) -> Any:
    """A JSON merge patch that makes `old` equal to `new` (removed keys become null).

    A plain merge patch only adds and overwrites keys; an object written
    whole (status.health) must also lose the keys the new value no longer has.
    """
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return copied(new)
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old or old[key] != value:
            patch[key] = replacing_merge_patch(old.get(key), value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def owned_status(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a status this module writes (for comparisons)."""
    status = status or {}
    return {key: copied(status[key]) for key in OWNED_KEYS if status.get(key) is not None}


def status_patch(
    current: Mapping[str, Any] | None, wanted: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The merge patch turning the current owned status into the wanted one, or None.

    None means "nothing changed": the caller must not write at all. Keys the
    wanted status drops (a finished candidate) are removed with null.
    """
    before = owned_status(current)
    after = {key: value for key, value in wanted.items() if value is not None}
    if before == after:
        return None
    # Objects (stable, candidate) lose the keys the wanted value no longer has.
    patch: dict[str, Any] = {
        key: replacing_merge_patch(before.get(key), value) for key, value in after.items()
    }
    for key in before:
        if key not in after:
            patch[key] = None
    return patch
