"""What the operator writes that a person reads, collected by running the real code.

The docs tests compare the pages with this catalogue: the conditions
(type, status, reason) the operator sets, the rollout reasons of
``status.candidate``, the Events it posts with their type, the phases and
history outcomes, and every message a person reads (condition and
candidate messages, Event messages, history reasons). It comes from the
pure decisions themselves (``vigil.core.reconcile.decide`` in the in-memory
World of tests/unit/core, ``vigil.core.health`` on built windows), so a page
is checked against what the operator does, not against a copy of its words.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "core"))

from core_world import OWNER, RolloutWorld, World, spec  # noqa: E402
from figures_kit import BOUNDS, figures, labelled  # noqa: E402
from kubelet_pods import RUNNING, backing_off, failed, pod  # noqa: E402

from vigil.core import drift, vocabulary  # noqa: E402
from vigil.core.candidate import Request, RolloutInputs  # noqa: E402
from vigil.core.health import HealthPolicy, evaluate  # noqa: E402
from vigil.core.health_status import (  # noqa: E402
    condition_word,
    health_conditions,
    transitions,
)
from vigil.core.performance import judge  # noqa: E402
from vigil.core.reconcile import Plan, refused_write_status  # noqa: E402
from vigil.core.rollout import GoldenResult  # noqa: E402
from vigil.core.spec import PerformanceSpec  # noqa: E402
from vigil.core.status import ConditionState, build_conditions  # noqa: E402
from vigil.core.window import RealizedPerformance, RevisionWindow  # noqa: E402
from vigil.operator.rollouts import RouteHeld  # noqa: E402
from vigil.profile import ReferenceProfile, Validation, build_profile  # noqa: E402
from vigil.routing import RoutingError  # noqa: E402
from vigil.validation.golden import ReplayReport  # noqa: E402

CORE = ROOT / "operator" / "vigil" / "core"
OPERATOR = ROOT / "operator" / "vigil" / "operator"


@dataclass
class Catalogue:
    """Everything seen while the scenarios ran."""

    #: (condition type, "True"/"False"/"Unknown", reason)
    conditions: set[tuple[str, str, str]] = field(default_factory=set)
    #: The same, with whether a rollout with steps was under way (status.candidate.stepName).
    rollout_conditions: set[tuple[str, str, str, bool]] = field(default_factory=set)
    #: status.candidate.reason values (the rollout's own reasons)
    candidate_reasons: set[str] = field(default_factory=set)
    #: Event reason -> the types it was posted with ("Normal", "Warning")
    events: dict[str, set[str]] = field(default_factory=dict)
    phases: set[str] = field(default_factory=set)
    outcomes: set[str] = field(default_factory=set)
    verdicts: set[str] = field(default_factory=set)
    #: Gate names in status.candidate.gates
    gates: set[str] = field(default_factory=set)
    #: Every text a person reads: messages, history reasons, step names.
    messages: set[str] = field(default_factory=set)

    def event(self, reason: str, warning: bool, message: str | None = None) -> None:
        self.events.setdefault(reason, set()).add("Warning" if warning else "Normal")
        if message:
            self.messages.add(message)

    def condition(self, state: ConditionState) -> None:
        self.conditions.add((state.type, condition_word(state.status), state.reason))
        if state.message:
            self.messages.add(state.message)

    def status(self, status: Mapping[str, Any]) -> None:
        stepped = bool((status.get("candidate") or {}).get("stepName"))
        for item in status.get("conditions") or ():
            self.conditions.add((item["type"], item["status"], item["reason"]))
            self.rollout_conditions.add((item["type"], item["status"], item["reason"], stepped))
            if item.get("message"):
                self.messages.add(item["message"])
        if status.get("phase"):
            self.phases.add(status["phase"])
        for entry in status.get("history") or ():
            self.outcomes.add(entry["outcome"])
            self.messages.add(entry["reason"])
        candidate = status.get("candidate") or {}
        for key in ("message", "stepName"):
            if candidate.get(key):
                self.messages.add(candidate[key])
        if candidate.get("reason"):
            self.candidate_reasons.add(candidate["reason"])
        self.gates.update(gate["name"] for gate in candidate.get("gates") or ())

    def plan(self, plan: Plan) -> None:
        for event in plan.events:
            self.event(event.reason, event.warning, event.message)

    @property
    def reasons(self) -> set[str]:
        """Every reason a person can meet: on a condition, in status.candidate, on an Event."""
        return (
            {reason for _, _, reason in self.conditions} | self.candidate_reasons | set(self.events)
        )


# -- the reconcile scenarios --------------------------------------------------------------


def _cycle(world: World, seen: Catalogue, advance: float = 1.0) -> None:
    seen.plan(world.reconcile(advance))
    seen.status(world.status)


def _serving(seen: Catalogue, world: World | None = None, **extra: Any) -> tuple[World, str]:
    """A world whose first revision serves with all replicas (the stable)."""
    world = world or World()
    world.spec = spec("1", 2, **extra)
    _cycle(world, seen)
    revision = world.status["stable"]["revision"]
    world.pods_ready(revision, 1)
    _cycle(world, seen)
    world.pods_ready(revision)
    _cycle(world, seen)
    return world, revision


def _first_revision(seen: Catalogue) -> None:
    world, revision = _serving(seen)
    world.set_spec(spec("1", 3))  # scaled in place
    _cycle(world, seen)
    world.pods_ready(revision)
    _cycle(world, seen)
    world.pods_ready(revision)
    _cycle(world, seen)
    deployment = world.deployment(revision)
    assert deployment is not None
    deployment["metadata"]["generation"] += 1  # pods replaced in place (a rollout restart)
    deployment["status"]["updatedReplicas"] = 1
    _cycle(world, seen)
    world.pods_ready(revision, 1)  # pods lost without a spec change
    _cycle(world, seen)
    broken = World()
    broken.spec = spec("1", 2)
    _cycle(broken, seen)
    broken.deadline_exceeded(broken.status["stable"]["revision"])
    _cycle(broken, seen)


def _blocked(seen: Catalogue) -> None:
    long_name = World(dataclasses.replace(OWNER, name="w" * 60))
    long_name.spec = spec("1", 1)
    _cycle(long_name, seen)
    conflict = World()
    conflict.foreign_service = True
    _cycle(conflict, seen)
    world, _ = _serving(seen)
    world.reference_found = False
    world.set_spec(
        spec("2", 2, monitoring={"reference": {"configMapKeyRef": {"name": "r", "key": "k"}}})
    )
    _cycle(world, seen)
    # A route refused while it still weights revision Services: the step waits.
    refused = RoutingError(
        "HTTPRoute wine: spec.rules[0] ...", weighted=("wine-7f3c2a1", "wine-9b1e4d0")
    )
    seen.status(
        refused_write_status(
            world.status,
            world.status,
            RouteHeld(refused).message,
            generation=world.generation,
            now=world.now,
            reason=vocabulary.Reason.ROUTING_FAILED,
        )
    )


def _blue_green(seen: Catalogue) -> None:
    """Changes without steps: switch once available, fail, pause, supersede, abort."""
    world, _ = _serving(seen)
    world.set_spec(spec("1", 2, config={"K": "1"}))
    _cycle(world, seen)
    world.pods_ready(world.status["candidate"]["revision"])
    _cycle(world, seen)
    world.set_spec(spec("1", 2, config={"K": "2"}))
    _cycle(world, seen)
    world.deadline_exceeded(world.status["candidate"]["revision"])
    _cycle(world, seen)
    world.set_spec(spec("1", 2, config={"K": "3"}))  # supersedes the failed candidate
    _cycle(world, seen)
    world.set_spec(spec("1", 2, config={"K": "1"}))  # back to the stable: aborts
    _cycle(world, seen)
    world.set_spec(spec("1", 2, config={"K": "4"}, paused=True))
    _cycle(world, seen)


GOLDEN = {"configMapKeyRef": {"name": "golden", "key": "golden.json"}}
STEPS = [
    {"validate": {"goldenSet": GOLDEN}},
    {"shadow": {"duration": "10s", "percent": 100, "minRequests": 20}},
    {"pause": {"duration": "5s"}},
    {"canary": {"weight": 50, "duration": "10s"}},
    {"pause": {}},
]
ROLLOUT = {
    "replacement": {"steps": STEPS},
    "tweak": {"steps": [{"canary": {"weight": 50, "duration": "10s"}}]},
    "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 2},
    "progressDeadline": "60s",
}
SEEN = {
    "requests": 100,
    "latency_p95": 0.01,
    "compared": 100,
    "agreement": 0.99,
    "prediction_shift": 0.01,
    "candidate_drift": 0.05,
    "stable_drift": 0.05,
}
GOOD = figures(**SEEN)
SLOW = figures(**{**SEEN, "latency_p95": 0.3, "stable_latency_p95": 0.01})
DISAGREEING = figures(**{**SEEN, "compared": 400, "agreement": 0.81})
#: 2 failures in 100 requests: beyond 1 %, not surely.
DOUBTFUL = figures(**{**SEEN, "error_rate": 0.02})


def _rollout(
    seen: Catalogue, version: str = "2", rollout: dict[str, Any] = ROLLOUT, **extra: Any
) -> tuple[RolloutWorld, str]:
    """A stepped rollout started from a serving stable (candidate pods not ready yet)."""
    world = RolloutWorld()
    _serving(seen, world, rollout=rollout)
    world.set_spec(spec(version, 2, rollout=rollout, **extra))
    _cycle(world, seen)
    return world, world.status["candidate"]["revision"]


def _drive(world: RolloutWorld, candidate: str, seen: Catalogue, until: Any, limit: int) -> None:
    for _ in range(limit):
        if world.deployment(candidate) is not None:
            world.pods_ready(candidate)
        _cycle(world, seen)
        if until():
            return
    raise AssertionError(f"scenario stuck; status: {world.status}")


def _reason(world: World) -> str:
    return str((world.status.get("candidate") or {}).get("reason"))


def _step_name(world: World) -> str:
    return str((world.status.get("candidate") or {}).get("stepName"))


def _stepped(seen: Catalogue) -> None:
    """Every step kind, every hold, a failed check, pauses, a promotion after the gates."""
    world, candidate = _rollout(seen)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x", candidate_serving=False)
    _cycle(world, seen)  # CandidateNotReady
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    _drive(world, candidate, seen, lambda: _reason(world) == "ValidationPending", 5)
    world.inputs = RolloutInputs(
        figures=GOOD, shadow_target="http://x", golden=GoldenResult(200, 200)
    )
    _drive(world, candidate, seen, lambda: world.status["candidate"]["step"] == 1, 5)
    world.inputs = RolloutInputs(figures=figures(**{**SEEN, "compared": 3}))
    _drive(world, candidate, seen, lambda: _reason(world) == "InsufficientData", 5)
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    _drive(world, candidate, seen, lambda: _reason(world) == "MetricsUnavailable", 5)
    for step in ("shadow 100%", "canary 50%"):  # a failed check, then passing ones
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        _drive(world, candidate, seen, lambda step=step: _step_name(world) == step, 40)
        world.inputs = RolloutInputs(figures=SLOW, shadow_target="http://x")
        _drive(world, candidate, seen, lambda: _reason(world) == "CheckFailed", 10)
    world.inputs = RolloutInputs(figures=DOUBTFUL, shadow_target="http://x")
    _drive(world, candidate, seen, lambda: _reason(world) == "Undecided", 20)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    _drive(world, candidate, seen, lambda: _reason(world) == "WaitingForPerson", 80)
    world.request = Request("pause", "p1")
    _cycle(world, seen)
    world.request = Request("resume", "p2")
    _drive(world, candidate, seen, lambda: world.status["stable"]["revision"] == candidate, 30)


def _stepped_endings(seen: Catalogue) -> None:
    """Rolled back on the gates, retried, promoted by a person; aborted; past the deadline."""
    world, candidate = _rollout(seen)
    world.inputs = RolloutInputs(
        figures=DISAGREEING, shadow_target="http://x", golden=GoldenResult(200, 200)
    )
    _drive(world, candidate, seen, lambda: world.status["phase"] == "RolledBack", 40)
    _cycle(world, seen)
    world.request = Request("retry", "r1")
    _cycle(world, seen)
    world.request = Request("promote", "r2")
    _cycle(world, seen)
    _cycle(world, seen)  # Promoting: the candidate scales to full capacity
    _drive(world, candidate, seen, lambda: world.status["stable"]["revision"] == candidate, 10)
    world.request = Request("nonsense", "r3")  # no rollout: ignored
    _cycle(world, seen)

    world, candidate = _rollout(seen)
    world.inputs = RolloutInputs(figures=GOOD, golden=GoldenResult(0, 0))
    _drive(world, candidate, seen, lambda: world.status["phase"] == "RolledBack", 10)

    world, candidate = _rollout(seen)
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.request = Request("stop", "a0")  # an unknown verb
    _cycle(world, seen)
    world.request = Request("pause", "a0b", "abc1234")  # meant for another rollout
    _cycle(world, seen)
    world.request = Request("abort", "a1")
    _drive(world, candidate, seen, lambda: world.status["phase"] == "RolledBack", 10)

    # Metrics back between two checks, after a hold: Analyzing until the next check.
    world, candidate = _rollout(seen, version="1", config={"K": "2"})  # a tweak: one canary
    world.inputs = RolloutInputs(figures=DOUBTFUL)
    _drive(world, candidate, seen, lambda: _reason(world) == "StepInProgress", 10)
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="scrape failed")
    _cycle(world, seen, advance=0.5)
    world.inputs = RolloutInputs(figures=DOUBTFUL)
    _cycle(world, seen, advance=0.5)
    assert _reason(world) == "Analyzing", world.status

    world, candidate = _rollout(seen, version="1", config={"K": "1"})  # a tweak: one canary
    world.inputs = RolloutInputs(figures=figures(**{**SEEN, "requests": 12}))
    _drive(world, candidate, seen, lambda: world.status["phase"] == "Failed", 90)


def _bake(seen: Catalogue) -> None:
    """A promotion with a bake: one passes; one turns PerformanceDegraded and goes back; one
    whose previous revision never comes back is given up; one loses its pods."""
    rollout = {"bake": {"duration": "10m"}, "progressDeadline": "60s"}
    for ending in ("passes", "goes back", "gives up", "loses its pods"):
        world, previous = _serving(seen, rollout=rollout)
        world.set_spec(spec("2", 2, rollout=rollout))
        _cycle(world, seen)
        promoted = world.status["candidate"]["revision"]
        world.pods_ready(promoted)
        _cycle(world, seen)
        if ending == "passes":
            _cycle(world, seen, 600)
            continue
        if ending == "loses its pods":
            world.pods_ready(promoted, 0)
            _cycle(world, seen)
            continue
        world.status["conditions"] = build_conditions(
            [
                ConditionState(
                    "PerformanceDegraded",
                    True,
                    "PerformanceBelowThreshold",
                    "accuracy 0.874 (95% CI 0.838-0.905) < threshold 0.95 over 1h, 300 labels",
                )
            ],
            world.status.get("conditions"),
            generation=world.generation,
            now=world.now,
        )
        _cycle(world, seen)
        if ending == "goes back":
            world.pods_ready(previous)
        _cycle(world, seen, 61)
        _cycle(world, seen)


def _states(world: World) -> dict[str, tuple[str, str]]:
    """Ready, Progressing and Stalled as (status, reason), with the phase."""
    found = {
        kind: (world.condition(kind)["status"], world.condition(kind)["reason"])
        for kind in ("Ready", "Progressing", "Stalled")
    }
    return {**found, "phase": (world.status["phase"], "")}


def _bake_failed(seen: Catalogue) -> tuple[World, str]:
    """Version 2 promoted with a bake, its Healthy turned False: version 1 scales back up
    (not available yet). Returns the world and version 1's revision."""
    rollout = {"bake": {"duration": "10m"}, "progressDeadline": "60s"}
    world, previous = _serving(seen, rollout=rollout)
    world.set_spec(spec("2", 2, rollout=rollout))
    _cycle(world, seen)
    world.pods_ready(world.status["candidate"]["revision"])
    _cycle(world, seen)
    reference, data = _reference()
    report = evaluate(_window(reference, data, success=968, errors=32), reference, POLICY)
    healthy = next(s for s in health_conditions(report, POLICY) if s.type == "Healthy")
    world.status["conditions"] = build_conditions(
        [healthy], world.status.get("conditions"), generation=world.generation, now=world.now
    )
    _cycle(world, seen)
    assert world.status["bake"]["reason"] == "BakeFailed", world.status
    return world, previous


def _failed_bake_then_new_spec(seen: Catalogue) -> None:
    """A failed bake going back when a new spec arrives: another revision waits (and, past
    progressDeadline, rolls out against the promoted one); a spec set back to the previous
    revision is Healthy once it serves, and overdue (Failed, Stalled) past the deadline."""
    rollout = {"bake": {"duration": "10m"}, "progressDeadline": "60s"}
    waiting = {
        "Ready": ("False", "BakeFailed"),
        "Progressing": ("True", "BakeFailed"),
        "Stalled": ("False", "NotStalled"),
        "phase": ("Progressing", ""),
    }
    for version, overdue in (("3", False), ("3", True), ("1", False), ("1", True)):
        world, previous = _bake_failed(seen)
        world.set_spec(spec(version, 2, rollout=rollout))
        _cycle(world, seen)
        assert _states(world) == waiting, world.status
        if overdue:
            _cycle(world, seen, 61)
        if overdue and version == "3":  # the previous revision removed, version 3 rolls out
            assert _states(world) == {
                **waiting,
                "Ready": ("False", "BakeRollbackFailed"),
                "Progressing": ("True", "BakeRollbackFailed"),
            }, world.status
            _cycle(world, seen)
            assert world.status["candidate"]["revision"] == world.status["revision"]
            continue
        if overdue:  # version 1 kept at full replicas, overdue
            assert _states(world) == {
                "Ready": ("False", "BakeRollbackFailed"),
                "Progressing": ("False", "BakeRollbackFailed"),
                "Stalled": ("True", "BakeRollbackFailed"),
                "phase": ("Failed", ""),
            }, world.status
        world.pods_ready(previous)
        _cycle(world, seen)  # live traffic back on version 1
        if version == "3":
            assert _states(world) == waiting, world.status
            _cycle(world, seen)
            assert world.status["candidate"]["revision"] == world.status["revision"]
        else:
            assert _states(world)["Ready"] == ("True", "Available"), world.status
            assert _states(world)["phase"] == ("Healthy", ""), world.status


def _status_screen_of_a_failed_bake(seen: Catalogue) -> None:
    """``kubectl vigil status`` of a stepped rollout promoted, then failed in its bake: the
    line that says where the attempt ended (a person reads it as a message)."""
    from vigil.plugin.status import render

    steps = [
        {"canary": {"weight": 50, "duration": "1h"}},
        {"canary": {"weight": 80, "duration": "1h"}},
    ]
    rollout = {"bake": {"duration": "10m"}, "replacement": {"steps": steps}}
    world, previous = _serving(seen, RolloutWorld(), rollout=rollout)
    assert isinstance(world, RolloutWorld)
    world.set_spec(spec("2", 2, rollout=rollout))
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="none")
    _cycle(world, seen)
    promoted = world.status["candidate"]["revision"]
    world.request = Request("promote", "id-1", promoted)
    _drive(world, promoted, seen, lambda: world.status["stable"]["revision"] == promoted, 6)
    world.inputs = None
    world.status["conditions"] = build_conditions(
        [ConditionState("PerformanceDegraded", True, "PerformanceBelowThreshold", "accuracy low")],
        world.status.get("conditions"),
        generation=world.generation,
        now=world.now,
    )
    _cycle(world, seen, 30)
    world.pods_ready(previous)
    _cycle(world, seen)
    assert _reason(world) == "BakeFailed", world.status
    md = {"metadata": {"name": "wine"}, "spec": world.spec, "status": world.status}
    screen = render(md, now=world.now)
    seen.messages.update(line.strip() for line in screen.splitlines() if "ended in" in line)


def _bake_without_its_previous(seen: Catalogue) -> None:
    """A failed bake whose previous revision's Deployment is deleted by hand while it goes
    back: given up at once (the spec unchanged: status keeps it; another spec then rolls out
    against the promoted revision); a spec set back to it makes it again from the spec."""
    rollout = {"bake": {"duration": "10m"}, "progressDeadline": "60s"}
    for version in (None, "3", "1"):
        world, previous = _bake_failed(seen)
        del world.objects[("Deployment", f"wine-{previous}")]
        if version is not None:
            world.set_spec(spec(version, 2, rollout=rollout))
        _cycle(world, seen)
        _cycle(world, seen)
        if version == "1":  # made again: live traffic back on it once it is available
            world.pods_ready(previous)
            _cycle(world, seen)
            assert world.service_revision() == previous, world.status


def _performance_gates(seen: Catalogue) -> None:
    """A tweak's canary judged on labels too: held for them, then 10 points below the
    stable, rolled back."""
    analysis = {**ROLLOUT["analysis"], "performance": {"minAccuracy": 0.85, "maxDrop": 0.05}}
    world, candidate = _rollout(
        seen, version="1", rollout={**ROLLOUT, "analysis": analysis}, config={"K": "1"}
    )
    few = dataclasses.replace(GOOD, realized=labelled(20, 1.0), stable_realized=labelled(80, 1.0))
    world.inputs = RolloutInputs(figures=few)
    _drive(world, candidate, seen, lambda: _reason(world) == "Undecided", 30)
    worse = dataclasses.replace(
        GOOD, realized=labelled(2000, 0.80), stable_realized=labelled(2000, 0.90)
    )
    world.inputs = RolloutInputs(figures=worse)
    _drive(world, candidate, seen, lambda: world.status["phase"] == "RolledBack", 20)


def _gates_not_judged_yet(seen: Catalogue) -> None:
    """A tweak's canary with gates that have no evidence yet: no early end, then settled by
    what was judged; another whose p95 fails inside the bucket holding its limit."""
    world, candidate = _rollout(seen, version="1", config={"K": "3"})
    partial = dataclasses.replace(GOOD, prediction_shift=None, shared_features=2)
    world.inputs = RolloutInputs(figures=partial)
    _drive(world, candidate, seen, lambda: world.status["stable"]["revision"] == candidate, 40)
    slo = {"slo": {"maxLatencyP95": "220ms"}}
    world, candidate = _rollout(seen, version="1", config={"K": "4"}, monitoring=slo)
    counts = dict.fromkeys(BOUNDS, 0.0) | {0.15: 9000.0, 0.25: 1000.0}
    cumulative = tuple(zip(BOUNDS, np.cumsum(list(counts.values())).tolist(), strict=True))
    slow = figures(**{**SEEN, "requests": 10000})
    live = dataclasses.replace(slow.live, latency_buckets=cumulative)
    world.inputs = RolloutInputs(figures=dataclasses.replace(slow, live=live, stable=live))
    _drive(world, candidate, seen, lambda: world.status["phase"] == "RolledBack", 20)


def _model(version: str) -> dict[str, Any]:
    return {"name": "wine", "version": version, "uri": f"s3://models/wine/{version}/m.tar.gz"}


def _artifacts(seen: Catalogue) -> None:
    """A model vigil-fetch cannot fetch: a first revision, a blue/green and a stepped one."""
    first = World()
    first.spec = spec("1", 2, model=_model("1"))
    _cycle(first, seen)
    revision = first.status["revision"]
    first.kubelet(pod(revision, RUNNING))
    _cycle(first, seen)
    first.kubelet(failed(revision))
    _cycle(first, seen)
    for extra in ({}, {"rollout": ROLLOUT}):
        world, _ = _serving(seen, RolloutWorld(), model=_model("1"), **extra)
        world.set_spec(spec("2", 2, model=_model("2"), **extra))
        _cycle(world, seen)
        candidate = world.status["candidate"]["revision"]
        world.kubelet(backing_off(candidate))
        _cycle(world, seen)
        world.kubelet(failed(candidate))
        _cycle(world, seen)
        _cycle(world, seen)


def _golden_replays(seen: Catalogue) -> None:
    """A replay's summary, as the validate step's message quotes it: one out of time that the
    next replay goes on from."""
    resumed = ReplayReport(GoldenResult(64, 52), unanswered=12, resumable=True)
    seen.messages.add(resumed.summary())


# -- health ------------------------------------------------------------------------------

FEATURES = ("alcohol", "malic_acid", "ash", "proline")
POLICY = HealthPolicy(window_seconds=300, drift_warning=0.1, drift_threshold=0.2)


def _reference() -> tuple[ReferenceProfile, np.ndarray]:
    data = np.random.default_rng(0).normal(size=(4000, len(FEATURES))) * [1, 2, 3, 4] + 10
    profile = build_profile(
        data,
        feature_names=list(FEATURES),
        predictions=(data[:, 0] > 10).astype(int),
        model_name="wine",
        model_version="1",
    )
    return profile, data


def _window(
    reference: ReferenceProfile,
    data: np.ndarray,
    *,
    shift: Mapping[int, float] | None = None,
    rows: int = 2000,
    success: float = 1000,
    errors: float = 0,
    latency: float = 0.02,
) -> RevisionWindow:
    live = data[np.random.default_rng(1).integers(0, len(data), rows)].copy()
    for column, amount in (shift or {}).items():
        live[:, column] += amount * data[:, column].std()
    bins = {}
    for feature in reference.features:
        slots = drift.bin_index(live[:, feature.index], feature.edges)
        bins[feature.name] = {
            str(slot): float(np.sum(slots == slot)) for slot in range(len(feature.proportions))
        }
    total = success + errors
    return RevisionWindow(
        requests_by_outcome={"success": success, "model_error": errors},
        latency_buckets=((latency, total * 0.96), (1.0, total), (math.inf, total)),
        input_rows=float(rows),
        feature_bins=bins,
        pods=2,
    )


def _health(seen: Catalogue) -> None:
    """Every verdict, its conditions, and the Events their changes post."""
    reference, data = _reference()
    windows = [
        (_window(reference, data), reference),
        (_window(reference, data, success=12), reference),
        (_window(reference, data, success=968, errors=32), reference),
        (_window(reference, data, latency=0.9), reference),
        (_window(reference, data, shift={0: 1.0, 3: 1.0}), reference),
        (_window(reference, data, shift={2: 0.4}, rows=4000), reference),
        (_window(reference, data, shift={2: 0.5}, rows=70), reference),
        (_window(reference, data, rows=40), reference),
        # Rows without their features (sent under other names): none binned.
        (dataclasses.replace(_window(reference, data), feature_bins={}), reference),
        (_window(reference, data), None),
        (None, reference),
        (_window(reference, data), reference),
    ]
    reports = [
        evaluate(window, ref, POLICY, source_error=None if window else "timeout")
        for window, ref in windows
    ]
    # A feature the last DriftDetected named, not surely back under the threshold: held.
    shifted = _window(reference, data, shift={0: 0.45})
    reports.append(evaluate(shifted, reference, POLICY, drifted=frozenset({"alcohol"})))
    # Some sidecars did not answer the direct source's scrape (vigil.metrics.direct's words).
    unanswered = "2 of 3 sidecars answered; wine-r1-x: HTTP 503"
    reports.append(dataclasses.replace(reports[0], unanswered=unanswered))
    for report in reports:
        seen.verdicts.add(report.verdict)
        for state in health_conditions(report, POLICY):
            seen.condition(state)
            # The Event a change of this condition's status to this state posts.
            other = "False" if condition_word(state.status) == "True" else "True"
            for posted, attention in transitions([{"type": state.type, "status": other}], [state]):
                seen.event(posted.reason, attention)


def _labels(scored: float, correct: float) -> RealizedPerformance:
    return RealizedPerformance(
        labels_by_outcome={"joined": scored, "duplicate": 3.0, "unknown": 5.0},
        scored_by_class={"0": scored / 2, "1": scored / 2},
        correct_by_class={"0": correct / 2, "1": correct / 2},
    )


def _regression(scored: float, error: float) -> RealizedPerformance:
    return RealizedPerformance(
        labels_by_outcome={"joined": scored},
        scored_by_class={"": scored},
        absolute_error_sum=error * scored,
        squared_error_sum=error * error * scored * 1.2,
    )


def _performance(seen: Catalogue) -> None:
    """PerformanceDegraded in each state, and the Events its changes post."""
    holdout = Validation("holdout", 500, accuracy=0.93)
    judged = [
        (_labels(37, 30), PerformanceSpec(), holdout),
        (_labels(500, 450), PerformanceSpec(), None),
        (_labels(500, 390), PerformanceSpec(), holdout),
        (_labels(500, 470), PerformanceSpec(), holdout),
        (_labels(500, 440), PerformanceSpec(), holdout),
        (_labels(500, 390), PerformanceSpec(min_accuracy=0.9), None),
        (_regression(500, 0.8), PerformanceSpec(max_mae=0.5), None),
        (_regression(500, 0.4), PerformanceSpec(), Validation("holdout", 500, mae=0.41)),
    ]
    cases = [(*case, False) for case in judged]
    # After a True, not surely back over the threshold: held.
    cases.append((_labels(200, 174), PerformanceSpec(), holdout, True))
    for realized, policy, baseline, held in cases:
        state = judge(realized, policy, baseline, "1h", held=held).condition
        seen.condition(state)
        other = "False" if condition_word(state.status) == "True" else "True"
        for posted, attention in transitions([{"type": state.type, "status": other}], [state]):
            seen.event(posted.reason, attention)


# -- Events the code can post (read from the source: the scenarios must reach them all) ---


def _module_strings(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _names(node: ast.expr, constants: Mapping[str, str]) -> Iterable[str]:
    """The reason words an Event's first argument can be (constants, literals, vocabulary)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.Name) and node.id in constants:
        yield constants[node.id]
    elif (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and isinstance(getattr(vocabulary, node.value.id, None), type)
    ):
        yield str(getattr(vocabulary, node.value.id)[node.attr])
    elif isinstance(node, ast.IfExp):
        yield from _names(node.body, constants)
        yield from _names(node.orelse, constants)


@functools.cache
def source_tree(path: Path) -> ast.Module:
    """A source file's syntax tree, parsed once per run (several doc tests scan the tree)."""
    return ast.parse(path.read_text(), filename=str(path))


def posted_event_reasons() -> dict[str, set[str]]:
    """Event reasons in the source: the core's ``*.event(...)``, the operator's ``Event(...)``.

    For the core, also every ``EVENT_*`` constant (some reach ``event()`` through a
    parameter). Maps reason -> the files.
    """
    found: dict[str, set[str]] = {}
    for path in [*sorted(CORE.rglob("*.py")), *sorted(OPERATOR.rglob("*.py"))]:
        tree = source_tree(path)
        constants = _module_strings(tree)
        for name, value in constants.items():
            if name.startswith("EVENT_"):
                found.setdefault(value, set()).add(path.name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            if (
                CORE in path.parents and isinstance(func, ast.Attribute) and func.attr == "event"
            ) or (isinstance(func, ast.Name) and func.id == "Event"):
                for reason in _names(node.args[0], constants):
                    found.setdefault(reason, set()).add(path.name)
    return found


def _operator_events(seen: Catalogue) -> None:
    """The operator layer's own Events, ``Event("Reason", message, warning)``, read from source."""
    for path in sorted(OPERATOR.rglob("*.py")):
        for node in ast.walk(source_tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Event"
                and node.args
                and isinstance(node.args[0], ast.Constant | ast.Attribute)
            ):
                flags = [*node.args[2:3], *(k.value for k in node.keywords if k.arg == "warning")]
                warning = any(isinstance(f, ast.Constant) and f.value is True for f in flags)
                for reason in _names(node.args[0], {}):
                    seen.event(reason, warning)


@functools.cache
def catalogue() -> Catalogue:
    seen = Catalogue()
    for scenario in (
        _first_revision,
        _blocked,
        _blue_green,
        _stepped,
        _stepped_endings,
        _bake,
        _failed_bake_then_new_spec,
        _status_screen_of_a_failed_bake,
        _bake_without_its_previous,
        _performance_gates,
        _gates_not_judged_yet,
        _artifacts,
        _golden_replays,
        _health,
        _performance,
        _operator_events,
    ):
        scenario(seen)
    return seen


# -- message shapes ------------------------------------------------------------------------

_REVISION = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def shape(text: str) -> str:
    """A message without its figures and revisions: 'p95 300ms vs 250ms' -> 'p95 #ms vs #ms'."""
    return _NUMBER.sub("#", _REVISION.sub("REV", " ".join(text.split())))


def written_by_the_code(text: str) -> bool:
    """Whether a quoted message (or a piece of one) is something the code writes.

    Figures and revisions may differ; the words, units and order may not. '...'
    in the quote stands for any text.
    """
    parts = [re.escape(shape(part).strip()) for part in text.split("...")]
    pattern = re.compile(".*".join(part for part in parts if part))
    return any(pattern.search(shape(message)) for message in catalogue().messages)
