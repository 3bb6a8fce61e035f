"""Shadow copies the stable's sidecar could not compare count against the candidate.

A copy that timed out at the stable's shadow client, or that the candidate
answered 200 with an unparseable body or another number of rows, is counted
by the candidate's own sidecar as a success and by the stable's only in
``vigil_shadow_requests_total{outcome}``. The gates read that family: such
copies are the candidate's failed copies, and a hold says why copies were
not compared.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.core.analysis import CandidateFigures, candidate_figures, shadow_copies
from vigil.core.rollout import Decision, Observations, RolloutPolicy, RolloutState, Step, decide
from vigil.core.window import RevisionWindow, SeriesKey, series_key

CANDIDATE = "cand"
T0 = 1_000_000.0
STEP = Step("shadow", duration_seconds=60, percent=100, min_requests=50)
POLICY = RolloutPolicy(steps=(STEP,), min_requests=50, progress_deadline_seconds=600)
BASE = {"model": "wine", "version": "1", "role": "stable", "revision": "r1"}


def _series(*samples: tuple[str, dict[str, str], float]) -> dict[SeriesKey, float]:
    """Samples as a sidecar exports them, reduced to the kept series (as both sources do)."""
    out: dict[SeriesKey, float] = {}
    for name, labels, value in samples:
        key = series_key(name, {**BASE, **labels})
        if key is not None:  # a family the operator does not read is dropped
            out[key] = out.get(key, 0.0) + value
    return out


def _answered(origin: str, by_outcome: Mapping[str, float]) -> list[tuple[str, dict, float]]:
    """Inference requests by outcome, every one in the 50 ms bucket."""
    out: list[tuple[str, dict, float]] = []
    for outcome, n in by_outcome.items():
        labels = {"endpoint": "infer", "origin": origin, "outcome": outcome}
        out.append(("vigil_request_outcomes_total", labels, n))
    total = sum(by_outcome.values())
    for le in ("0.05", "+Inf"):
        labels = {"endpoint": "infer", "origin": origin, "le": le}
        out.append(("vigil_request_duration_seconds_bucket", labels, total))
    return out


def _stable(compared: float, target: str = CANDIDATE, **uncompared: float) -> RevisionWindow:
    """The stable's window: its live requests, the copies it sent to ``target`` by outcome
    (one prediction each, every compared one agreeing)."""
    tr = {"target_revision": target}
    samples = [
        *_answered("live", {"success": compared + sum(uncompared.values())}),
        ("vigil_shadow_predictions_total", tr, compared),
        ("vigil_shadow_agreements_total", tr, compared),
    ]
    for outcome, n in {"compared": compared, **uncompared}.items():
        samples.append(("vigil_shadow_requests_total", {**tr, "outcome": outcome}, n))
    return RevisionWindow.from_series(_series(*samples), pods=2)


def _candidate(**copies: float) -> RevisionWindow:
    """The candidate's window: the copies it answered, by its sidecar's outcome."""
    return RevisionWindow.from_series(_series(*_answered("shadow", copies)), pods=2)


def _figures(stable: RevisionWindow, candidate: RevisionWindow) -> CandidateFigures:
    return candidate_figures(CANDIDATE, candidate, stable)


def _decide(
    figures: CandidateFigures, now: float = T0 + 120, held: float | None = None
) -> Decision:
    state = RolloutState(step=0, step_started_at=T0, held_since=held)
    seen = Observations(candidate_ready=True, replicas=2, figures=figures)
    return decide(POLICY, state, seen, now)


def test_half_the_copies_unparseable_never_promote_on_agreement_one() -> None:
    # 200 copies, all answered 200 by the candidate: 100 compared and agreeing, 100 with a
    # body the stable's sidecar could not parse.
    figures = _figures(_stable(100, unparseable=100), _candidate(success=200))
    d = _decide(figures)
    assert d.action != "promote", d.message
    assert figures.agreement == 1.0
    assert (figures.copies.requests, figures.copies.failures) == (200, 100)
    error_rate = next(g for g in d.gates if g.name == "errorRate")
    assert error_rate.verdict in ("fail", "undecided")
    assert "100 copies not compared (unparseable 100)" in error_rate.text


def test_the_stables_copies_are_kept_by_target_revision_and_outcome() -> None:
    stable = _stable(100, timeout=3, target_error=2)
    assert stable.shadow_not_compared == {CANDIDATE: {"timeout": 3.0}}
    key = series_key(
        "vigil_shadow_requests_total",
        {**BASE, "target_revision": CANDIDATE, "outcome": "timeout", "pod": "p"},
    )
    assert key == (
        "vigil_shadow_requests_total",
        (("target_revision", CANDIDATE), ("outcome", "timeout")),
    )


def test_copies_of_another_number_of_rows_are_failed_copies() -> None:
    figures = _figures(_stable(300, mismatch=30), _candidate(success=330))
    assert (figures.copies.requests, figures.copies.failures) == (330, 30)


def test_every_copy_timing_out_holds_saying_so() -> None:
    # The candidate never answered in time; its sidecar has not counted them (yet).
    figures = _figures(_stable(0, timeout=30), _candidate())
    d = _decide(figures)
    assert (d.action, d.reason) == ("hold", "InsufficientData")
    assert d.message == "0 compared predictions < 50 needed; 30 copies not compared (timeout 30)"


def test_the_deadline_failure_says_why_no_copy_was_compared() -> None:
    figures = _figures(_stable(0, timeout=5, unparseable=7), _candidate(success=4))
    d = _decide(figures, now=T0 + 1000, held=T0)
    assert d.reason == "ProgressDeadlineExceeded"
    assert "12 copies not compared (timeout 5, unparseable 7)" in d.message


def test_late_answers_to_timed_out_copies_are_said_not_failed() -> None:
    # The candidate answered after the stable's shadow client gave up (its fixed 5 s): its
    # sidecar recorded the real latency, which the latency gates judge; failing the copies
    # too made a healthy but slow candidate fail its shadow step.
    figures = _figures(_stable(0, timeout=30), _candidate(success=30))
    assert (figures.copies.requests, figures.copies.failures) == (30, 0)
    d = _decide(figures)
    assert d.message == "0 compared predictions < 50 needed; 30 copies not compared (timeout 30)"


def test_never_more_failed_than_the_copies_the_candidate_counted_as_success() -> None:
    # Counted by different pods at slightly different times: the stable's side may be ahead.
    figures = _figures(_stable(10, unparseable=50), _candidate(success=20, model_error=5))
    assert (figures.copies.requests, figures.copies.failures) == (25, 25)


def test_unreachable_copies_are_failed_copies_the_candidate_never_saw() -> None:
    figures = _figures(_stable(90, unreachable=10), _candidate(success=90))
    assert (figures.copies.requests, figures.copies.failures) == (100, 10)
    assert figures.not_compared_text == "10 copies not compared (unreachable 10)"


def test_target_errors_are_counted_once_by_the_candidates_sidecar() -> None:
    figures = _figures(_stable(90, target_error=10), _candidate(success=90, model_error=10))
    assert (figures.copies.requests, figures.copies.failures) == (100, 10)
    assert figures.not_compared_text == ""


def test_copies_to_another_revision_do_not_count_against_the_candidate() -> None:
    figures = _figures(_stable(90, target="old", unparseable=40), _candidate(success=90))
    assert (figures.copies.requests, figures.copies.failures) == (90, 0)
    assert figures.not_compared_text == ""


def test_a_canary_steps_error_rate_is_on_live_requests_alone() -> None:
    canary = Step("canary", duration_seconds=60, weight=50)
    live = RevisionWindow(requests_by_outcome={"success": 500.0})
    figures = candidate_figures(CANDIDATE, live, _stable(10, unparseable=400))
    policy = RolloutPolicy(steps=(canary,), min_requests=50)
    state = RolloutState(step=0, step_started_at=T0)
    d = decide(policy, state, Observations(True, 2, figures=figures), T0 + 120)
    error_rate = next(g for g in d.gates if g.name == "errorRate")
    assert error_rate.verdict != "fail" and "not compared" not in error_rate.text


def test_copies_too_large_to_compare_are_said_but_not_failed() -> None:
    # The stable's sidecar does not compare answers over its cap: not the candidate's fault,
    # but a step that compares nothing must say why.
    window = RevisionWindow(copies_by_outcome={"success": 40.0})
    copies = shadow_copies(window, {"too_large": 40.0})
    assert copies.failures == 0
    figures = CandidateFigures(copies=copies, not_compared={"too_large": 40.0})
    assert figures.not_compared_text == "40 copies not compared (too_large 40)"


def test_copies_the_stables_side_could_not_read_are_said_but_not_failed() -> None:
    # Its own answer unreadable (br, zstd, not JSON) or a failed comparison: the hold said
    # only "0 compared predictions < 50 needed" until progressDeadline failed the rollout.
    stable = _stable(0, stable_unparseable=480, compare_error=20)
    figures = _figures(stable, _candidate(success=500))
    assert (figures.copies.requests, figures.copies.failures) == (500, 0)
    d = _decide(figures)
    assert (d.action, d.reason) == ("hold", "InsufficientData")
    assert d.message == (
        "0 compared predictions < 50 needed; "
        "500 copies not compared (stable_unparseable 480, compare_error 20)"
    )


def test_copies_the_stables_queue_dropped_are_said_but_not_failed() -> None:
    # A candidate too slow for the shadow traffic fills the stable's shadow queue: the
    # copies never sent leave the step waiting, and the hold says why.
    stable = _series(
        *_answered("live", {"success": 500}),
        ("vigil_shadow_requests_total", {"target_revision": CANDIDATE, "outcome": "compared"}, 20),
        ("vigil_shadow_predictions_total", {"target_revision": CANDIDATE}, 20),
        ("vigil_shadow_agreements_total", {"target_revision": CANDIDATE}, 20),
        ("vigil_shadow_dropped_total", {"target_revision": CANDIDATE}, 480),
    )
    figures = _figures(RevisionWindow.from_series(stable, pods=2), _candidate(success=20))
    assert (figures.copies.requests, figures.copies.failures) == (20, 0)
    d = _decide(figures)
    assert (d.action, d.reason) == ("hold", "InsufficientData")
    assert d.message == "20 compared predictions < 50 needed; 480 copies not compared (dropped 480)"
