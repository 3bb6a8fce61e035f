"""A ModelDeployment's status: read it, pick a condition, say what was seen, and the
predicates waits end on."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from kit.kube import Kube, safe
from vigil.common.times import parse_unix

Status = dict[str, Any]
Done = Callable[[Status], bool]

#: The conditions a failure message shows when the status has them.
SHOWN_CONDITIONS = ("Ready", "Healthy", "DriftDetected", "MetricsAvailable")
#: The candidate's fields a failure message shows.
SHOWN_CANDIDATE = ("revision", "stepName", "reason", "message", "outcome", "gates")


def status(kube: Kube, name: str = "wine") -> Status:
    """The ModelDeployment's status ({} while it has none or does not exist)."""
    return dict((kube.get("md", name) or {}).get("status") or {})


def read_status(kube: Kube, name: str = "wine") -> Status:
    """The status, or {} when the API server did not answer (for polls: no observation)."""
    return safe(lambda: status(kube, name), {})


def condition(current: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type ``kind``; {} when the status has none."""
    for item in current.get("conditions") or ():
        if item.get("type") == kind:
            return dict(item)
    return {}


def stable(current: Mapping[str, Any]) -> dict[str, Any]:
    return dict(current.get("stable") or {})


def candidate(current: Mapping[str, Any]) -> dict[str, Any]:
    return dict(current.get("candidate") or {})


def candidate_gates(current: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The candidate's gates by name ({} without a candidate)."""
    return {str(g["name"]): dict(g) for g in candidate(current).get("gates") or ()}


def gate_verdicts(current: Mapping[str, Any]) -> dict[str, str]:
    """Each gate's verdict: pass, fail or undecided (its interval still spans the threshold)."""
    return {name: str(gate["verdict"]) for name, gate in candidate_gates(current).items()}


def latest_entry(current: Mapping[str, Any]) -> dict[str, Any]:
    """The newest history entry ({} without history)."""
    return dict((current.get("history") or [{}])[0])


def describe(current: Mapping[str, Any]) -> str:
    """What a failure message shows: phase, stable, candidate, conditions, health, history."""
    shown = {
        "phase": current.get("phase"),
        "stable": stable(current).get("revision"),
        "candidate": {k: v for k, v in candidate(current).items() if k in SHOWN_CANDIDATE},
        "conditions": {
            kind: {k: found.get(k) for k in ("status", "reason", "message")}
            for kind in SHOWN_CONDITIONS
            if (found := condition(current, kind))
        },
        "health": current.get("health"),
        "history": (current.get("history") or [])[:4],
    }
    return json.dumps(shown, indent=1)


# -- what waits end on --------------------------------------------------------------------


def promoted(version: str) -> Done:
    """Model ``version`` is stable, its promotion the newest entry, and no candidate is left."""

    def done(current: Status) -> bool:
        return (
            stable(current).get("modelVersion") == version
            and latest_entry(current).get("outcome") == "Promoted"
            and not current.get("candidate")
        )

    return done


def tweak_promoted(revision_before: str) -> Done:
    """A tweak of ``revision_before`` is stable, promoted, and no candidate is left."""

    def done(current: Status) -> bool:
        entry = latest_entry(current)
        return (
            stable(current).get("revision") not in (None, revision_before)
            and entry.get("outcome") == "Promoted"
            and entry.get("change") == "tweak"
            and not current.get("candidate")
        )

    return done


def latest(version: str, outcome: str) -> Done:
    """The newest history entry is model ``version`` with ``outcome``."""

    def done(current: Status) -> bool:
        entry = latest_entry(current)
        return entry.get("modelVersion") == version and entry.get("outcome") == outcome

    return done


def newest_outcome(outcome: str) -> Done:
    """The newest history entry has ``outcome``."""
    return lambda current: latest_entry(current).get("outcome") == outcome


def at_step(step: str) -> Done:
    """The candidate is at the step named ``step`` (``shadow 100%``, ``canary 50%``)."""
    return lambda current: candidate(current).get("stepName") == step


def candidate_reason(reason: str) -> Done:
    return lambda current: candidate(current).get("reason") == reason


def checked_after(moment: float) -> Done:
    """The candidate's last check came after ``moment`` (Unix seconds)."""
    return lambda current: (parse_unix(candidate(current).get("lastAnalysisAt")) or 0) > moment


def judged_after(moment: float) -> Done:
    """The step is under way and its last check came after ``moment`` (Unix seconds)."""
    return lambda current: (
        candidate(current).get("reason") == "StepInProgress" and checked_after(moment)(current)
    )


def in_phase(phase: str) -> Done:
    return lambda current: current.get("phase") == phase


def rolled_back(current: Status) -> bool:
    return current.get("phase") == "RolledBack"
