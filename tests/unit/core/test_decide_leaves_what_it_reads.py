"""decide() reads the objects it is given and changes none of them.

The operator hands it its watch cache's own objects (vigil.kube keeps no copies), and the unit
tests' worlds hand it theirs: a change made in place would be what the next cycle, and every
other reader of the cache, takes for the API server's.
"""

from __future__ import annotations

import copy
from typing import Any

import core_world
import pytest
from core_world import RolloutWorld, spec
from figures_kit import figures as seen

from vigil.core.candidate import RolloutInputs
from vigil.core.reconcile import Observation, Plan, decide

GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)
BAD = seen(requests=200, error_rate=0.2)
ANALYSIS = {"interval": "2s", "minRequests": 20, "failureLimit": 2}
STEPPED = {
    "replacement": {
        "steps": [
            {"shadow": {"duration": "4s", "percent": 100, "minRequests": 20}},
            {"canary": {"weight": 20, "duration": "4s"}},
        ]
    },
    "analysis": ANALYSIS,
    "progressDeadline": "60s",
}
ROLLOUTS = {
    "shadow and canary, promoted": (STEPPED, GOOD, "Promoted"),
    "shadow and canary, rolled back": (STEPPED, BAD, "RolledBack"),
    "blue/green": ({}, GOOD, "Promoted"),
}


@pytest.mark.parametrize(("rollout", "figures", "outcome"), ROLLOUTS.values(), ids=ROLLOUTS)
def test_a_rollout_start_to_end_changes_nothing_it_was_given(
    rollout: dict[str, Any], figures: Any, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decided: list[Plan] = []

    def deciding_and_checking(observation: Observation) -> Plan:
        before = copy.deepcopy(observation)
        plan = decide(observation)
        assert observation == before, f"cycle {len(decided)} changed what it read"
        decided.append(plan)
        return plan

    monkeypatch.setattr(core_world, "decide", deciding_and_checking)
    world, _ = core_world.serving(rollout, RolloutWorld())
    world.set_spec(spec("2", 2, rollout=rollout))
    world.inputs = RolloutInputs(figures=figures, shadow_target="http://x")
    for _ in range(20):
        for kind, name in list(world.objects):
            if kind == "Deployment":
                world.pods_ready(name.removeprefix("wine-"))
        world.reconcile()
    outcomes = [item.get("outcome") for item in world.status.get("history", [])]
    assert outcome in outcomes, world.status
    assert len(decided) == 22
