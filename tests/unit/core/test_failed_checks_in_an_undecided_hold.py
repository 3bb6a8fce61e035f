"""progressDeadline holds through failed checks (vigil.core.rollout.decide).

Past its step's end a step held Undecided goes on when a check fails (a gate
alternating between undecided and failed must not restart the hold's
clock). The failed checks' branch never looked at the deadline, so with a
high ``failureLimit`` such a step waited on, CheckFailed, long past it.
"""

from __future__ import annotations

from dataclasses import replace

from figures_kit import figures

from vigil.core.rollout import Observations, RolloutState, decide
from vigil.core.spec import parse_policy

POLICY = parse_policy(
    {
        "tweak": {"steps": [{"canary": {"weight": 50, "duration": "1m"}}]},
        "analysis": {"failureLimit": 100},
        "progressDeadline": "2m",
    },
    "tweak",
)


def failing(requests: int, failures: int):
    seen = figures(requests=requests)
    return replace(seen, live=replace(seen.live, failures=float(failures)))


def test_a_failed_check_past_the_deadline_of_an_undecided_hold_fails_the_rollout() -> None:
    state = RolloutState(step=0, step_started_at=0.0)
    # 2 % of 500 past the step's end: undecided beyond the 1 % limit, the hold begins.
    decision = decide(POLICY, state, Observations(True, 1, figures=failing(500, 10)), 70.0)
    assert decision.reason == "Undecided" and decision.state.held_since == 70.0
    state, reasons = decision.state, []
    for k in range(1, 10):  # then clearly failing checks, every 30 s
        evidence = failing(500 + 200 * k, 10 + 60 * k)
        decision = decide(POLICY, state, Observations(True, 1, figures=evidence), 70.0 + 30 * k)
        reasons.append(decision.reason)
        state = decision.state
        if decision.action == "fail":
            break
    assert reasons[:3] == ["CheckFailed"] * 3
    assert decision.action == "fail" and decision.reason == "ProgressDeadlineExceeded"
    assert decision.state.held_since == 70.0 and 70.0 + 30 * k - 70.0 >= 120.0
    assert 70.0 + 30 * (k - 1) - 70.0 < 120.0  # at the first check past the deadline
    assert decision.message.endswith(">= progressDeadline 120s")


def test_a_failed_check_before_the_steps_end_holds_no_deadline() -> None:
    state = RolloutState(step=0, step_started_at=0.0)
    decision = decide(POLICY, state, Observations(True, 1, figures=failing(2000, 200)), 30.0)
    assert decision.reason == "CheckFailed" and decision.state.held_since is None
