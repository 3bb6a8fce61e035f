"""A spec the operator cannot read arriving mid-canary (an older CRD let it in).

The candidate is not judged while the spec cannot be read, so it takes no
traffic meanwhile: the stable serves alone (Service, route, no shadow
copies), the candidate's pods stay, and status says it gets 0 % and why.
Once the spec is fixed the rollout resumes at the same step, whose
evidence starts again (the time held out is neither evidence nor a hold).
"""

from __future__ import annotations

from typing import Any

import pytest
from core_world import RolloutWorld, spec
from figures_kit import figures as seen
from test_a_stand_in_keeps_serving import standing_in
from test_progressive_rollout import (
    BAD,
    GOOD,
    ROLLOUT,
    RoutedWorld,
    routed_rollout,
    run_until,
    started,
)

from vigil.common.times import parse_unix
from vigil.core.candidate import RolloutInputs

#: Readable to the API server under an older schema, not to the operator: (spec, its words).
UNREADABLE = {
    "analysis-interval": (
        lambda rollout: spec("2", 2, rollout={**rollout, "analysis": {"interval": "fast"}}),
        "spec.rollout cannot be used (spec.rollout.analysis.interval: not a duration: 'fast')",
    ),
    "zero-replicas": (
        lambda rollout: {**spec("2", 2, rollout=rollout), "replicas": 0},
        "spec.replicas must be at least 1",
    ),
}


def at_canary_50(routed: bool = False) -> tuple[RolloutWorld, str, str]:
    world, stable, candidate = routed_rollout() if routed else started()
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    run_until(world, candidate, lambda: world.status["candidate"]["stepName"] == "canary 50%")
    assert selected(world) is None or routed  # the Service spans both revisions
    return world, stable, candidate


def blocked(world: RolloutWorld, candidate: str, kind: str, seconds: int = 600) -> None:
    """The unreadable spec set, then ``seconds`` of cycles (the candidate failing badly)."""
    make, _words = UNREADABLE[kind]
    world.set_spec(make(world.spec["rollout"]))
    world.inputs = RolloutInputs(figures=BAD, shadow_target="http://x")
    for _ in range(seconds):
        world.pods_ready(candidate)
        world.reconcile(advance=1.0)


def selected(world: RolloutWorld) -> str | None:
    """The revision the live Service selects (None: every pod of the model)."""
    return world.objects[("Service", "wine")]["spec"]["selector"].get("vigil.dev/revision")


@pytest.mark.parametrize("kind", list(UNREADABLE))
@pytest.mark.parametrize("routed", [False, True], ids=["replica-ratio", "gateway-api"])
def test_live_traffic_goes_to_the_stable_alone_and_shadow_copies_stop(
    kind: str, routed: bool
) -> None:
    world, stable, candidate = at_canary_50(routed)
    blocked(world, candidate, kind, seconds=1)
    assert selected(world) == stable
    assert world.shadow(stable) is None
    if routed:
        assert isinstance(world, RoutedWorld)
        assert world.backends() == [("wine", 100)]
    # Its pods stay, so that the rollout can resume.
    assert world.deployment(candidate) is not None
    assert world.condition("Ready")["reason"] == "InvalidSpec"


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_status_gives_the_held_candidate_0_percent_and_says_why(kind: str) -> None:
    world, stable, candidate = at_canary_50()
    kept = dict(world.status["candidate"])
    blocked(world, candidate, kind)
    held = world.status["candidate"]
    assert (held["revision"], held["step"], held["stepName"]) == (
        candidate,
        kept["step"],
        "canary 50%",
    )
    assert held["weight"] == 0 and not held.get("shadowPercent")
    assert held["reason"] == "InvalidSpec"
    assert UNREADABLE[kind][1] in held["message"]
    for condition in ("Ready", "Progressing"):
        message = world.condition(condition)["message"]
        assert UNREADABLE[kind][1] in message
        assert f"revision {stable} serves alone" in message
        assert f"candidate revision {candidate} gets no live or shadow traffic" in message
    assert world.status["phase"] == "Failed"  # nothing goes on until the spec is fixed


def test_a_blocked_spec_warns_once_and_writes_status_once() -> None:
    world, _stable, candidate = at_canary_50()
    blocked(world, candidate, "analysis-interval", seconds=1)
    writes = world.status_writes
    for _ in range(5):
        world.pods_ready(candidate)
        plan = world.reconcile()
        assert plan.actions == [] and plan.events == []
    assert world.status_writes == writes


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_fixing_the_spec_resumes_the_step_with_its_evidence_started_again(kind: str) -> None:
    world, stable, candidate = at_canary_50()
    step = world.status["candidate"]["step"]
    blocked(world, candidate, kind)
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    resumed = world.status["candidate"]
    assert resumed["step"] == step and resumed["stepName"] == "canary 50%"
    assert world.condition("Ready")["reason"] == "RolloutInProgress"
    # The step's clock starts at the fix: the time held out is no evidence of the step.
    assert parse_unix(resumed["stepStartedAt"]) == world.now.timestamp()
    assert selected(world) is None and resumed["weight"] > 0  # both revisions serve again
    assert world.deployment(stable) is not None


@pytest.mark.slow
def test_the_time_held_out_counts_against_no_deadline_once_fixed() -> None:
    # A step holding for data when the spec went unreadable: 600 s later, fixed, it holds
    # afresh (a carried heldSince failed it at once, past its 60 s progressDeadline).
    world, _stable, candidate = at_canary_50()
    world.inputs = RolloutInputs(figures=seen(requests=3), shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["candidate"]["reason"] == "InsufficientData"
    blocked(world, candidate, "analysis-interval")
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.inputs = RolloutInputs(figures=seen(requests=3), shadow_target="http://x")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.status["phase"] == "Progressing"
    assert world.status["candidate"]["reason"] == "InsufficientData"
    assert world.deployment(candidate) is not None


#: Errors in half the candidate's answers: a check fails (agreement and latency good).
ERRORS = {
    "requests": 100,
    "latency_p95": 0.01,
    "compared": 100,
    "agreement": 0.99,
    "error_rate": 0.5,
}


@pytest.mark.slow
def test_a_check_failed_before_the_hold_counts_no_more_once_fixed() -> None:
    # failureLimit 2: one failed check, held out, fixed; the first check after the fix is the
    # step's first (it rolled back at once, "in 2 checks", counting the one before the hold).
    world, _stable, candidate = at_canary_50()
    failing = RolloutInputs(figures=seen(**ERRORS), shadow_target="http://x")
    world.inputs = failing
    run_until(world, candidate, lambda: world.status["candidate"].get("failedChecks") == 1)
    blocked(world, candidate, "analysis-interval", seconds=300)
    assert not world.status["candidate"].get("failedChecks")
    world.set_spec(spec("2", 2, rollout=ROLLOUT))
    world.inputs = failing
    world.pods_ready(candidate)
    world.reconcile(advance=1.0)
    resumed = world.status["candidate"]
    assert resumed["failedChecks"] == 1 and resumed["reason"] == "CheckFailed"
    assert not resumed.get("outcome") and world.status["phase"] == "Progressing"


#: Unreadable specs arriving then: two that make the candidate, one the stable's version.
STANDING_IN = ["zero-replicas", "analysis-interval", "zero-replicas-version-1"]


def unreadable(kind: str) -> dict[str, Any]:
    if kind == "zero-replicas-version-1":
        return {**spec("1", 2, rollout=ROLLOUT), "replicas": 0}
    return UNREADABLE[kind][0](ROLLOUT)


@pytest.mark.parametrize("kind", STANDING_IN)
def test_a_candidate_serving_in_the_stables_place_keeps_serving_until_the_stable_is_available(
    kind: str,
) -> None:
    # The stable alone was an outage: the Service selected no ready pod ("serves alone").
    world, stable, candidate = standing_in()
    world.set_spec(unreadable(kind))
    for _ in range(5):
        world.pods_ready(candidate)
        world.reconcile(advance=1.0)
        assert selected(world) == candidate and world.deployment(candidate) is not None
    message = world.condition("Ready")["message"]
    assert world.condition("Ready")["reason"] == "InvalidSpec"
    assert f"revision {candidate} serves all live traffic until revision {stable}" in message
    assert "alone" not in message and "nothing serves" not in message
    # The stable available: the unreadable spec holds the candidate out, or supersedes it.
    world.pods_ready(stable)
    world.pods_ready(candidate)
    plan = world.reconcile(advance=1.0)
    assert selected(world) == stable
    superseded = "RolloutSuperseded" in [event.reason for event in plan.events]
    assert superseded == kind.endswith("version-1")
    assert (world.deployment(candidate) is None) == superseded
