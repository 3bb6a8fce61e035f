"""The in-cluster operator's pod killed at random moments of rollouts, replaced each time.

The operator runs as the manifests' Deployment; each kill SIGKILLs its process
and force-deletes its pod, and the Deployment's next pod takes over (model pods
are real containers on the real node, live traffic goes through the Service).
All rollout state lives in status (issue 6, "restart safety"), so a new
operator pod resumes where the killed one stopped. Rollouts in a row on
one ModelDeployment: a good replacement (promoted), a bad replacement
(rolled back on the agreement gate), a tweak (promoted), then as many more
good replacements as it takes (at most three) for 21 kills to have landed
while a rollout was under way; each kill at a seeded random moment. The
seed and every kill moment (seconds after the change was applied, and the
step and reason the rollout was at) are printed and appended to
.vigil/e2e-logs/fault-figures.jsonl; rerun with ``VIGIL_FAULT_SEED=<seed>``
to replay the same moments (the same pauses; what the rollout is doing at
each depends on the machine's speed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fault_checks import (
    DEADLINE,
    assert_consistent,
    assert_history,
    record,
    rolled_back_events,
    rollout_models,
    seeded_rng,
    switched_events,
)
from kit.incluster import InClusterOperator, RealNamespace
from kit.kube import Kube, safe
from kit.status import condition, promoted, read_status, rolled_back, status, tweak_promoted
from kit.waits import Watch, watch_until

from vigil.devcluster.models import train_wine

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
#: Kills needed in all, each while a rollout is under way.
MIN_KILLS = 21
#: The most kills per rollout, and the random pause before each (seconds, counted once
#: the restarted operator answers /healthz). A fresh process needs a few cycles before
#: it judges again (its scrape history is in memory), so much shorter pauses would land
#: every kill on an InsufficientData hold.
KILLS = {
    "good": (8, 2.0, 7.0),
    "bad": (6, 1.5, 5.0),
    "tweak": (7, 2.0, 7.0),
    "again": (8, 2.0, 7.0),
}
#: Good replacements added when the first three rollouts took fewer than MIN_KILLS kills.
MAX_EXTRA_ROLLOUTS = 3
CONFIG = {"E2E_KNOB": "on"}


def promoted_counter(operator: InClusterOperator) -> float:
    """``vigil_rollouts_total{outcome="Promoted"}`` of the running process (0 if unreachable)."""
    return safe(lambda: operator.total("vigil_rollouts_total", outcome="Promoted"), 0.0)


class Killer:
    """Kills and restarts the operator at seeded random moments of rollouts under way."""

    def __init__(self, kube: Kube, operator: InClusterOperator, seed_name: str) -> None:
        self.kube = kube
        self.operator = operator
        self.rng, self.seed = seeded_rng(seed_name)
        self.kills: list[dict[str, Any]] = []
        #: Highest Promoted counter seen per operator process (metrics live in memory).
        self.counters: dict[int, float] = {}

    def run(self, rollout: str, watch: Watch, finished: Callable[[dict[str, Any]], bool]) -> None:
        """Kill at random pauses while the rollout is under way, at most its count of times.

        A rollout already over takes no more kills: the next rollout takes them.
        """
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
            at = read_status(self.kube)
            if at and finished(at):
                return
            self.operator.kill()
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


def test_operator_killed_at_21_random_moments_of_rollouts_resumes_each_once(
    kube: Kube, on_real_node: RealNamespace, incluster_operator: InClusterOperator
) -> None:
    space = on_real_node
    setup = space.deploy(kube, STEPS, deadline=DEADLINE)
    killer = Killer(kube, incluster_operator, "operator kills")
    models = rollout_models(space.folder)
    good, bad, tweak = Watch(), Watch(), Watch()
    watches = {"good": good, "bad": bad, "tweak": tweak}
    try:
        # 1. A good replacement: promoted exactly once, through every step.
        kube.apply(space.manifest(models["good"], STEPS, deadline=DEADLINE))
        killer.run("good", good, promoted("2"))
        watch_until(kube, promoted("2"), 240, "the good replacement's promotion", good)
        after_good = assert_consistent(kube)
        good_revision = after_good["stable"]["revision"]
        assert good_revision != setup.revision

        # 2. A bad replacement: rolled back on the agreement gate, never on missing data.
        kube.apply(space.manifest(models["bad"], STEPS, deadline=DEADLINE))
        killer.run("bad", bad, rolled_back)
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
        kube.apply(
            space.manifest(models["good"], STEPS, deadline=DEADLINE, tweak=TWEAK, config=CONFIG)
        )
        killer.run("tweak", tweak, tweak_promoted(good_revision))
        watch_until(kube, tweak_promoted(good_revision), 240, "the tweak's promotion", tweak)
        tweak_revision = assert_consistent(kube)["stable"]["revision"]
        assert set(tweak.steps) <= {"canary 25%", "canary 50%"}, tweak.steps
        promotions = [good_revision, tweak_revision]

        # 4. More good replacements while fewer than MIN_KILLS kills landed in rollouts
        #    (a fast machine finishes a rollout between fewer kills).
        for extra in range(1, MAX_EXTRA_ROLLOUTS + 1):
            if len(killer.kills) >= MIN_KILLS:
                break
            version = str(3 + extra)
            model = train_wine(space.folder / f"wine-{version}", version=version, seed=1 + extra)
            kube.apply(space.manifest(model, STEPS, deadline=DEADLINE, tweak=TWEAK, config=CONFIG))
            watch = watches[f"again-{version}"] = Watch()
            killer.run("again", watch, promoted(version))
            watch_until(kube, promoted(version), 240, f"version {version}'s promotion", watch)
            promotions.append(assert_consistent(kube)["stable"]["revision"])
        final = status(kube)
    finally:
        setup.traffic.stop()
        record(
            "operator-kills",
            seed=killer.seed,
            kills=killer.kills,
            reasons_at_kills=sorted({str(k["reason"]) for k in killer.kills}),
            steps={name: watch.steps for name, watch in watches.items()},
        )

    assert len(killer.kills) >= MIN_KILLS, killer.kills
    # History keeps one entry per revision: the Events and metrics catch a second promotion.
    assert_history(final, promoted=promotions, rolled_back=[bad_revision])
    # Events agree: one switch of live traffic per promotion, one rollback Event.
    switches = switched_events(kube)
    assert len(switches) == len(promotions), switches
    assert len(rolled_back_events(kube)) == 1, rolled_back_events(kube)
    # Metrics live in each process's memory: no process counted more promotions than happened.
    assert sum(killer.counters.values()) <= len(promotions), killer.counters
    # Live traffic always had a Ready pod to go to.
    assert sum(w.no_ready_pods for w in watches.values()) == 0, [
        moment for w in watches.values() for moment in w.without_ready_pods
    ]
