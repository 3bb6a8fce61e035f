"""One rollout in simulated time, and batches of them (reproducible per rollout).

The loop is the reconciler's, reduced to what the gates see. Every cycle:
the traffic since the last cycle flows under the routing in effect; the
operator scrapes both revisions and takes their windows since the step's
start; the judge decides;
the decision's traffic is applied through the real router plan (the replica
ratio's effective share) and the real shadow block (``routing.shadow``,
read by the sidecar's settings parser: percent and tolerance), which
reaches the stable's sidecars only after the ConfigMap volume propagates.
Cycles come every
``min(analysis.interval, 10 s)`` (the reconciler's recheck) and one second
after a step advance (the writes of an advance trigger a reconcile).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gatesim.counters import NO_SHADOW, Stream, WindowView
from gatesim.judges import JudgeChoice, OperatorJudge, Seen, Setup
from gatesim.world import CASES, Baseline, Case, CaseWorld, build_world
from vigil.core.rollout import Decision, RolloutState, Traffic
from vigil.core.spec import parse_rollout
from vigil.routing import RoutingTarget, router_for
from vigil.routing.shadow import shadow_for
from vigil.sidecar.config import ShadowSettings, settings_from_mapping

REPO = Path(__file__).resolve().parents[3]
#: Today's policies: the shipped examples' steps, the CRD's defaults for the rest.
POLICY_EXAMPLES = {
    "replacement": REPO / "manifests/examples/replacement/modeldeployment-patch.yaml",
    "tweak": REPO / "manifests/examples/tweak/modeldeployment-patch.yaml",
}
CANDIDATE = "candidate"
STABLE = "stable"
FINAL = {"promote": "promoted", "rollback": "rolled back", "fail": "failed"}


@dataclass(frozen=True)
class Timing:
    """Operator and cluster timing the windows depend on."""

    #: A reconcile after each step advance (its writes change the children).
    event_seconds: float = 1.0
    #: A shadow block reaches the stable's sidecars after U(0, this) seconds.
    shadow_delay_max: float = 60.0
    #: A rollout still undecided after this long is reported as undecided.
    horizon_seconds: float = 6 * 3600.0
    #: spec.replicas (the CRD's default 1: a canary weight of 20 is 1 pod of 2 = 50 %).
    replicas: int = 1


@dataclass(frozen=True)
class Outcome:
    """How one rollout ended."""

    result: str  # promoted | rolled back | failed | undecided
    reason: str
    #: Gates that failed in the final decision.
    gates: tuple[str, ...]
    seconds: float
    live_requests: int
    candidate_requests: int
    #: Step index (0-based) where it ended.
    step: int


@cache
def example_rollout(policy: str) -> Mapping[str, Any]:
    """``spec.rollout`` of the shipped example for this change kind."""
    path = POLICY_EXAMPLES.get(policy)
    if path is None:
        raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICY_EXAMPLES)}")
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))["spec"]
    return spec["rollout"]


def spec_for(policy: str, analysis: Mapping[str, Any]) -> dict[str, Any]:
    """The ModelDeployment spec the rollout runs under (monitoring at its defaults)."""
    rollout = dict(example_rollout(policy))
    rollout["analysis"] = {**(rollout.get("analysis") or {}), **analysis}
    return {"monitoring": {}, "rollout": rollout}


def run_rollout(
    world: CaseWorld,
    choice: JudgeChoice,
    policy: str,
    rate: float,
    rng: np.random.Generator,
    timing: Timing = Timing(),
) -> Outcome:
    """One rollout from its first cycle to promote, roll back, fail, or the horizon."""
    spec = spec_for(policy, choice.analysis)
    setup = Setup(
        spec=spec,
        change=policy,
        replicas=timing.replicas,
        candidate_revision=CANDIDATE,
        reference=world.candidate_reference,
        stable_reference=world.stable_reference,
    )
    decide = choice.judge.start(setup)
    cycle = max(1.0, min(setup.policy().interval_seconds, 10.0))
    router = router_for(parse_rollout(spec["rollout"]).http_route)
    target = RoutingTarget("sim", "sim", STABLE, CANDIDATE)
    stream = Stream(world, rate, rng)
    state = RolloutState()
    now = last = 0.0
    share = 0.0
    shadow = NO_SHADOW  # the shadow settings the stable's sidecars run with
    pending: tuple[float, ShadowSettings] | None = None  # not at the sidecars yet
    candidate_pods = 1
    while True:
        if pending is not None and pending[0] <= now:
            stream.flow(pending[0] - last, share, shadow)
            last, shadow, pending = pending[0], pending[1], None
        stream.flow(now - last, share, shadow)
        stream.scrape(now)
        # As the operator measures (vigil.core.candidate.evidence_seconds): from the step's start.
        start = state.step_started_at if state.step_started_at is not None else now
        stable, candidate = stream.since(start)
        seen = Seen(
            now,
            WindowView(stream.candidate_layout, candidate, "", candidate_pods),
            WindowView(stream.stable_layout, stable, CANDIDATE, timing.replicas),
        )
        decision = decide(state, seen)
        state = decision.state
        if decision.action in FINAL:
            return _outcome(FINAL[decision.action], decision, now, stream)
        plan = router.plan(target, decision.traffic)
        share = plan.effective_weight / 100.0
        candidate_pods = decision.traffic.candidate_replicas
        wanted = shadow_settings(target, decision.traffic)
        if wanted != (pending[1] if pending is not None else shadow):
            pending = (
                None
                if wanted == shadow
                else (now + float(rng.uniform(0.0, timing.shadow_delay_max)), wanted)
            )
        last = now
        now += timing.event_seconds if decision.action == "advance" else cycle
        if now > timing.horizon_seconds:
            return _outcome("undecided", decision, last, stream)


def shadow_settings(target: RoutingTarget, traffic: Traffic) -> ShadowSettings:
    """What the stable's sidecars run with: the operator's block, read as the sidecar reads it."""
    block = shadow_for(target, traffic, target_url=f"http://{target.candidate}")
    return settings_from_mapping({"shadow": block}).shadow if block else NO_SHADOW


def _outcome(result: str, decision: Decision, now: float, stream: Stream) -> Outcome:
    return Outcome(
        result=result,
        reason=decision.reason,
        gates=tuple(g.name for g in decision.gates if not g.passed),
        seconds=now,
        live_requests=stream.live_requests,
        candidate_requests=stream.candidate_requests,
        step=decision.state.step,
    )


# -- batches ------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """A slice of one cell's rollouts (the unit a worker process runs)."""

    judge: str
    policy: str
    case: str
    rate: float
    first: int
    count: int
    seed: int
    eager: bool = False
    baseline: Baseline = field(default_factory=Baseline)
    timing: Timing = field(default_factory=Timing)


def rollout_seed(seed: int, case: str, rate: float, index: int) -> np.random.SeedSequence:
    """Rollout ``index`` of a (case, rate): the same streams for every judge and policy."""
    return np.random.SeedSequence([seed, zlib.crc32(case.encode()), round(rate * 1000), index])


@cache
def _world(case: Case, baseline: Baseline) -> CaseWorld:
    return build_world(case, baseline)


def _choice(text: str, eager: bool) -> JudgeChoice:
    choice = JudgeChoice.parse(text)
    if eager and isinstance(choice.judge, OperatorJudge):
        return JudgeChoice(choice.label, OperatorJudge(lazy=False), choice.analysis)
    return choice


def run_task(task: Task) -> list[Outcome]:
    case = next(c for c in CASES if c.name == task.case)
    world = _world(case, task.baseline)
    choice = _choice(task.judge, task.eager)
    return [
        run_rollout(
            world,
            choice,
            task.policy,
            task.rate,
            np.random.default_rng(rollout_seed(task.seed, task.case, task.rate, i)),
            task.timing,
        )
        for i in range(task.first, task.first + task.count)
    ]
