"""The operator SIGKILLed at random moments across three rollouts, restarted each time.

All rollout state lives in status (issue 6, "restart safety"), so a new
operator process resumes where the killed one stopped. Three rollouts in a
row on one ModelDeployment: a good replacement (promoted), a bad
replacement (rolled back on the agreement gate), a tweak (promoted), with
21 kills in all at seeded random moments. The seed and every kill moment
(seconds after the change was applied, and the step the rollout was at) are
printed and appended to .vigil/e2e-logs/fault-figures.jsonl; rerun with
``VIGIL_FAULT_SEED=<seed>`` to replay the same moments.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fault_checks import (
    Watch,
    apply_md,
    assert_consistent,
    assert_history,
    condition,
    deploy,
    manifest,
    promoted,
    record,
    rolled_back,
    rolled_back_events,
    rollout_models,
    seeded_rng,
    status,
    switched_events,
    tweak_promoted,
    watch_until,
)
from operator_e2e import Kube, OperatorProcess

pytestmark = pytest.mark.faults

STEPS = [
    {"shadow": {"duration": "12s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 20, "duration": "10s"}},
    {"canary": {"weight": 50, "duration": "10s"}},
]
TWEAK = [
    {"canary": {"weight": 25, "duration": "10s"}},
    {"canary": {"weight": 50, "duration": "10s"}},
]
#: Kills per rollout, and the random pause before each (seconds, counted once the
#: restarted operator answers /healthz): 21 kills in all. A fresh process needs a few
#: cycles before it judges again (its scrape history is in memory), so pauses
#: shorter than that would land every kill on an InsufficientData hold.
KILLS = {"good": (8, 2.0, 7.0), "bad": (6, 1.5, 5.0), "tweak": (7, 2.0, 7.0)}


def promoted_counter(operator: OperatorProcess) -> float:
    """``vigil_rollouts_total{outcome="Promoted"}`` of the running process (0 if unreachable)."""
    try:
        values = operator.metrics()
    except OSError:
        return 0.0
    return sum(
        v
        for k, v in values.items()
        if k.startswith("vigil_rollouts_total{") and 'outcome="Promoted"' in k
    )


class Killer:
    """Kills and restarts the operator at seeded random moments, noting each moment."""

    def __init__(self, kube: Kube, operator: OperatorProcess, seed_name: str) -> None:
        self.kube = kube
        self.operator = operator
        self.rng, self.seed = seeded_rng(seed_name)
        self.kills: list[dict[str, Any]] = []
        #: Highest Promoted counter seen per operator process (metrics live in memory).
        self.counters: dict[int, float] = {}

    def run(self, rollout: str, watch: Watch) -> None:
        count, low, high = KILLS[rollout]
        applied = time.monotonic()
        for _ in range(count):
            end = time.monotonic() + self.rng.uniform(low, high)
            while time.monotonic() < end:
                watch.see(self.kube)
                self.counters[self.operator.starts] = max(
                    self.counters.get(self.operator.starts, 0.0), promoted_counter(self.operator)
                )
                time.sleep(1.0)
            assert self.operator.process is not None
            self.operator.process.kill()
            self.operator.process.wait(timeout=10)
            at = status(self.kube)
            candidate = at.get("candidate") or {}
            self.kills.append(
                {
                    "rollout": rollout,
                    "after_seconds": round(time.monotonic() - applied, 1),
                    "step": candidate.get("stepName") or f"none ({at.get('phase')})",
                    "reason": candidate.get("reason"),
                }
            )
            print(f"kill {len(self.kills)}: {self.kills[-1]}", flush=True)
            self.operator.start()


def test_operator_killed_at_21_random_moments_across_three_rollouts(
    kube: Kube, operator: OperatorProcess, workload_runner: Path, tmp_path: Path
) -> None:
    setup = deploy(kube, workload_runner, tmp_path, STEPS)
    killer = Killer(kube, operator, "operator kills")
    models = rollout_models(tmp_path)
    good, bad, tweak = Watch(), Watch(), Watch()
    try:
        # 1. A good replacement: promoted exactly once, through every step.
        apply_md(kube, manifest(models["good"], STEPS))
        killer.run("good", good)
        watch_until(kube, promoted("2"), 240, "the good replacement's promotion", good)
        after_good = assert_consistent(kube)
        good_revision = after_good["stable"]["revision"]
        assert good_revision != setup.revision

        # 2. A bad replacement: rolled back on the agreement gate, never on missing data.
        apply_md(kube, manifest(models["bad"], STEPS))
        killer.run("bad", bad)
        bad_watch = watch_until(kube, rolled_back, 240, "the bad replacement's rollback", bad)
        bad_revision = bad_watch.last["history"][0]["revision"]
        assert bad_watch.last["stable"]["revision"] == good_revision
        ready = condition(bad_watch.last, "Ready")
        assert ready.get("reason") == "RolledBack" and "agreement" in ready.get("message", ""), (
            ready
        )
        assert "canary 20%" not in bad.steps, f"the bad model reached live traffic: {bad.steps}"
        assert_consistent(kube)

        # 3. A tweak of the good model's settings: only the tweak steps, promoted once.
        apply_md(kube, manifest(models["good"], STEPS, tweak=TWEAK, config={"E2E_KNOB": "on"}))
        killer.run("tweak", tweak)
        watch_until(kube, tweak_promoted(good_revision), 240, "the tweak's promotion", tweak)
        final = assert_consistent(kube)
        tweak_revision = final["stable"]["revision"]
        assert set(tweak.steps) <= {"canary 25%", "canary 50%"}, tweak.steps
    finally:
        setup.traffic.stop()
        record(
            "operator-kills",
            seed=killer.seed,
            kills=killer.kills,
            reasons_at_kills=sorted({str(k["reason"]) for k in killer.kills}),
            steps={"good": good.steps, "bad": bad.steps, "tweak": tweak.steps},
        )

    assert len(killer.kills) >= 20
    assert_history(final, promoted=[good_revision, tweak_revision], rolled_back=[bad_revision])
    # Events agree: one switch of live traffic per promotion, one rollback Event.
    switches = switched_events(kube)
    assert len(switches) == 2, switches
    assert len(rolled_back_events(kube)) == 1, rolled_back_events(kube)
    # Metrics live in each process's memory: no process counted more promotions than happened.
    assert sum(killer.counters.values()) <= 2, killer.counters
    # Live traffic always had a Ready pod to go to.
    assert good.no_ready_pods + bad.no_ready_pods + tweak.no_ready_pods == 0, (
        good.without_ready_pods + bad.without_ready_pods + tweak.without_ready_pods
    )
