"""`kubectl vigil status`: the screen, rendered from fixtures (80 columns, colour off/on)."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest

from vigil.plugin.status import render

#: A ModelDeployment in a canary step with one failed check, and its Events (the same
#: input makes the sample in docs/howto/manual-control.md).
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "status-canary.json").read_text())
NOW = datetime.datetime.fromisoformat(FIXTURE["now"].replace("Z", "+00:00"))
MD: dict[str, Any] = FIXTURE["modelDeployment"]
EVENTS: list[dict[str, Any]] = FIXTURE["events"]
ANSI = re.compile(r"\033\[[0-9;]*m")


def test_fits_80_columns_without_colour() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "\033[" not in screen
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_long_names_messages_and_reasons_stay_within_80_columns() -> None:
    long = "x" * 90
    md = json.loads(json.dumps(MD))
    md["metadata"].update(name="n" * 63, namespace="s" * 63)
    md["spec"]["model"].update(name="m" * 63, version=long)
    for condition in md["status"]["conditions"]:
        condition.update(reason=f"{condition['reason']}{long}", message=long)
    md["status"]["candidate"]["gates"][0]["name"] += long
    md["status"]["candidate"]["featuresAdded"] = [long, long]
    md["status"]["history"][0]["reason"] += long
    events = [{**event, "reason": event["reason"] + long} for event in EVENTS]
    for colour in (False, True):
        screen = ANSI.sub("", render(md, events, now=NOW, colour=colour))
        assert max(len(line) for line in screen.splitlines()) <= 80


def test_shows_revisions_steps_and_traffic() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "stable     7f3c2a1  v2      2/2 ready   since 2h" in screen
    assert "candidate  9b1e4d0  v3      replacement   failed checks 1/2" in screen
    assert "✔ 1 validate (golden set)" in screen and "✔ 2 shadow 100%" in screen
    assert "► 3 canary 20%" in screen and "· 4 canary 50%" in screen
    assert "stable  67%" in screen and "candidate 33%" in screen


def test_each_gate_of_the_last_check_beside_its_threshold() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "Gates (last check 40s ago)" in screen
    gates = screen[screen.index("Gates (") : screen.index("Health ")]
    assert re.search(
        r"error rate\s+0\.2%\s+\[0\.0%, 2\.1%\]\s+<= 1\.0%\s+undecided, 1130 more",
        gates,
    )
    assert re.search(r"p95 latency\s+298ms\s+\[250ms, inf\]\s+<= 250ms\s+FAIL", gates)
    assert re.search(
        r"P\(slower than stable\)\s+1\.000\s+\[0\.870, 1\.000\]\s+<= 0\.6\s+FAIL", gates
    )
    assert re.search(r"prediction shift\s+0\.012\s+\[0\.000, 0\.090\]\s+<= 0\.2\s+pass", gates)


def test_a_gate_the_view_does_not_know_shows_its_raw_figures() -> None:
    md = {**MD, "status": {**MD["status"]}}
    md["status"]["candidate"] = {
        **MD["status"]["candidate"],
        "gates": [{"name": "newGate", "passed": True, "value": 0.5, "threshold": 0.75}],
    }
    assert re.search(r"newGate\s+0\.5\s+0\.75\s+ok", render(md, EVENTS, now=NOW))


def test_no_gates_section_before_the_first_check() -> None:
    md = {**MD, "status": {**MD["status"]}}
    md["status"]["candidate"] = {
        k: v for k, v in MD["status"]["candidate"].items() if k not in ("gates", "lastAnalysisAt")
    }
    assert "Gates" not in render(md, EVENTS, now=NOW)


def test_every_health_figure_beside_its_threshold() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert re.search(r"error rate\s+0\.2%\s+<= 1\.0%\s+ok", screen)
    assert re.search(r"p95 latency\s+41ms\s+<= 250ms\s+ok", screen)
    assert re.search(r"drift \(psi\)\s+0\.310\s+< 0\.2\s+FAIL", screen)
    assert re.search(r"shadow agreement\s+0\.980\s+>= 0\.95\s+ok", screen)


def test_a_figure_that_rounds_to_its_threshold_shows_the_digits_that_decide() -> None:
    # "1.0% <= 1.0% FAIL" reads as a wrong verdict: the figure gets more digits.
    md = json.loads(json.dumps(MD))
    md["status"]["health"].update(errorRate=0.01049, latencyP95=0.2503, agreement=0.94996)
    md["status"]["health"]["drift"]["score"] = 0.19996
    # The verdicts as the operator judged them: both SLOs breached, drift under the threshold.
    md["status"]["health"]["breached"] = ["ErrorRateHigh", "LatencyHigh"]
    md["status"]["health"]["drift"]["level"] = "warning"
    gate = {"name": "goldenSet", "verdict": "fail", "value": 2969 / 2999, "threshold": 0.99}
    md["status"]["candidate"]["gates"] = [gate]
    screen = render(md, EVENTS, now=NOW)
    assert re.search(r"error rate\s+1\.05%\s+<= 1\.0%\s+FAIL", screen)
    assert re.search(r"p95 latency\s+250\.3ms\s+<= 250ms\s+FAIL", screen)
    assert re.search(r"shadow agreement\s+0\.94996\s+>= 0\.95\s+not surely", screen)
    assert re.search(r"drift \(psi\)\s+0\.19996\s+< 0\.2\s+ok", screen)
    assert re.search(r"golden set\s+0\.989997\s+>= 0\.99\s+FAIL", screen)


def _health_of(health: dict[str, Any], conditions: tuple = ()) -> str:
    md = json.loads(json.dumps(MD))
    md["status"].pop("candidate")
    md["status"]["health"] = {"window": "5m", "latencyP95": 0.041, **health}
    given = {c["type"] for c in conditions}
    kept = [c for c in md["status"]["conditions"] if c["type"] not in given]
    md["status"]["conditions"] = kept + list(conditions)
    return render(md, now=NOW)


def test_the_health_figures_say_how_long_they_have_not_changed() -> None:
    """A day-old evaluation read as live: the heading said "(stale)" at most. evaluatedAt
    moves only when the figures change (an idle model writes nothing): so the words."""
    day_old = (NOW - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    screen = _health_of({"verdict": "Healthy", "evaluatedAt": day_old, "stale": True})
    assert "Health (unchanged for 24h, stale)  window 5m" in screen
    assert "Health  window 5m" in _health_of({"verdict": "Healthy"})


def _baking(**bake: Any) -> str:
    md = json.loads(json.dumps(MD))
    md["status"].pop("candidate")
    md["status"]["bake"] = {
        "revision": "9b1e4d0",
        "previous": "7f3c2a1",
        "previousModelVersion": "2",
        "previousReplicas": 1,
        "previousReadyReplicas": 1,
        "endsAt": (NOW + datetime.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **bake,
    }
    return render(md, now=NOW)


def test_a_bake_shows_the_revision_it_keeps_and_when_it_ends() -> None:
    """The kept revision and the bake's end appeared nowhere: Revisions showed the promoted
    stable alone."""
    assert "  previous   7f3c2a1  v2      1/1 ready   kept for the bake, ends in 20m" in _baking()
    failed = _baking(failedAt=FIXTURE["now"], reason="BakeFailed", previousReadyReplicas=0)
    assert "  previous   7f3c2a1  v2      0/1 ready   going back: BakeFailed" in failed
    given_up = _baking(failedAt=FIXTURE["now"], reason="BakeRollbackFailed")
    assert "1/1 ready   not going back: BakeRollbackFailed" in given_up


def test_an_object_the_operator_has_not_read_says_so() -> None:
    """It showed "(status describes generation None, spec is at 1)" and a Pending phase."""
    md = json.loads(json.dumps(MD))
    md["status"] = {}
    screen = render(md, now=NOW)
    assert "(no status yet: is the operator running?)" in screen
    assert "generation None" not in screen


def test_an_aborted_or_superseded_attempt_is_not_coloured_as_a_success() -> None:
    md = json.loads(json.dumps(MD))
    md["status"]["history"] = [
        {"revision": "9b1e4d0", "modelVersion": "3", "outcome": "Aborted", "at": FIXTURE["now"]},
        {"revision": "8c0d3e9", "modelVersion": "2", "outcome": "Superseded", "at": FIXTURE["now"]},
    ]
    screen = render(md, now=NOW, colour=True)
    assert "\033[33mAborted" in screen and "\033[2mSuperseded" in screen


def test_a_figure_past_its_threshold_without_a_breach_judged_is_not_surely_past_it() -> None:
    # 2 errors in 120 requests: 1.7% reads over 1%, but is no evidence of it (Healthy).
    screen = _health_of(
        {
            "verdict": "Healthy",
            "requests": 120,
            "errorRate": 0.0167,
            "drift": {"method": "psi", "level": "warning", "score": 0.26},
        }
    )
    assert re.search(r"error rate\s+1\.7%\s+<= 1\.0%\s+not surely\n", screen)
    assert re.search(r"drift \(psi\)\s+0\.260\s+< 0\.2\s+not surely\n", screen)
    assert "FAIL" not in screen.split("Conditions")[0]


def test_a_breach_the_operator_holds_fails_though_the_estimate_is_within() -> None:
    # A breach stays until surely cleared: the estimates read within, the verdict holds.
    screen = _health_of(
        {
            "verdict": "DriftDetected",
            "requests": 5000,
            "errorRate": 0.002,
            "breached": ["ErrorRateHigh"],
            "drift": {"method": "psi", "level": "threshold", "score": 0.17, "over": ["alcohol"]},
        }
    )
    assert re.search(r"error rate\s+0\.2%\s+<= 1\.0%\s+FAIL", screen)
    assert re.search(r"p95 latency\s+41ms\s+<= 250ms\s+ok", screen)
    assert re.search(r"drift \(psi\)\s+0\.170\s+< 0\.2\s+FAIL", screen)


def test_drift_over_its_threshold_with_too_few_requests_to_judge_is_not_a_fail() -> None:
    # The level is computed before the requests are counted: DriftDetected stays Unknown.
    drift = {"method": "psi", "level": "threshold", "score": 15.2, "over": ["alcohol"]}
    unknown = {"type": "DriftDetected", "status": "Unknown", "reason": "InsufficientData"}
    screen = _health_of({"verdict": "InsufficientData", "requests": 20, "drift": drift}, (unknown,))
    assert re.search(r"drift \(psi\)\s+15\.2\d*\s+< 0\.2\s+not surely", screen), screen
    assert "FAIL" not in screen.split("Drift by feature")[0].split("drift (psi)")[1]


def test_realized_performance_fails_only_where_the_operator_found_it_degraded() -> None:
    performance = {"labels": 40, "accuracy": 0.78, "threshold": 0.8835}
    health = {"verdict": "Healthy", "requests": 500, "errorRate": 0.0, "performance": performance}
    waiting = {"type": "PerformanceDegraded", "status": "Unknown", "reason": "InsufficientLabels"}
    screen = _health_of(health, (waiting,))
    assert re.search(r"realized accuracy\s+0\.780\s+>= 0\.8835\s+not surely\n", screen)
    degraded = {**waiting, "status": "True", "reason": "PerformanceBelowThreshold"}
    screen = _health_of(health, (degraded,))
    assert re.search(r"realized accuracy\s+0\.780\s+>= 0\.8835\s+FAIL\n", screen)


def test_drift_bars_worst_first() -> None:
    lines = render(MD, EVENTS, now=NOW).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Drift by feature"))
    assert lines[start + 1].split()[0] == "alcohol"
    assert "█" in lines[start + 1] and "░" in lines[start + 1]


def test_events_and_history() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "RolloutStarted" in screen and "StepAdvanced" in screen
    assert "RolledBack" in screen and "AnalysisFailed: agreement 0.810 [0.703, 0.892]" in screen


def test_colour_only_adds_escape_codes() -> None:
    plain = render(MD, EVENTS, now=NOW)
    coloured = render(MD, EVENTS, now=NOW, colour=True)
    assert "\033[" in coloured
    assert ANSI.sub("", coloured) == plain


def test_a_new_object_without_status_renders() -> None:
    screen = render({"metadata": {"name": "x", "namespace": "n"}, "spec": {}}, now=NOW)
    assert "stable     (none yet)" in screen and "Phase:    Pending" in screen


def test_names_the_features_a_candidate_adds_and_drops() -> None:
    md = {**MD, "status": {**MD["status"]}}
    md["status"]["candidate"] = {
        **MD["status"]["candidate"],
        "featuresAdded": ["color_intensity_log"],
        "featuresDropped": ["ash"],
    }
    screen = render(md, EVENTS, now=NOW)
    assert "  features added: color_intensity_log" in screen
    assert "  dropped: ash" in screen
    assert "features added" not in render(MD, EVENTS, now=NOW)


def test_a_long_event_reason_stays_apart_from_its_message() -> None:
    events = [
        {
            "type": "Warning",
            "reason": "MetricsUnavailable",
            "message": "MetricsAvailable is False: no sidecar answered",
            "lastTimestamp": "2026-11-26T07:59:00Z",
        }
    ]
    screen = render(MD, events, now=NOW)
    assert "MetricsUnavailable MetricsAvailable is False" in screen


def test_figures_of_the_previous_stable_say_whose_they_are() -> None:
    md = json.loads(json.dumps(MD))
    md["status"]["health"]["revision"] = "7f3c2a1"  # the stable's: nothing said
    assert "figures:" not in render(md, EVENTS, now=NOW)
    md["status"]["health"]["revision"] = "5e0d9b4"  # judged before 7f3c2a1 took over
    screen = render(md, EVENTS, now=NOW)
    assert "  revision 5e0d9b4's figures: 7f3c2a1 took over since\n" in screen


def test_too_few_labels_wait_rather_than_fail() -> None:
    waiting = {
        "type": "PerformanceDegraded",
        "status": "Unknown",
        "reason": "InsufficientLabels",
        "message": "0 labels < 100 needed over 30s",
    }
    screen = _health_of({"performance": {"window": "30s", "labels": 0}}, (waiting,))
    assert re.search(r"labels joined\s+0\s+>= 100\s+too few\n", screen)
    unscored = {"performance": {"window": "1h", "labels": 500, "scored": 0}}
    screen = _health_of(unscored, (waiting,))  # joined, none scored: what the condition counts
    assert re.search(r"labels joined\s+500\n", screen)
    assert re.search(r"labels scored\s+0\s+>= 100\s+too few\n", screen)


def test_realized_performance_beside_its_threshold_with_labels_and_delay() -> None:
    md = json.loads(json.dumps(MD))
    md["status"]["health"]["performance"] = {
        "window": "1h",
        "labels": 512,
        "accuracy": 0.781,
        "baseline": 0.93,
        "threshold": 0.8835,
        "labelDelayP50": 1830.0,
        "labelDelayP95": 3290.0,
        "notJoined": {"duplicate": 25, "unknown": 51},
    }
    md["status"]["conditions"].append(
        {
            "type": "PerformanceDegraded",
            "status": "True",
            "reason": "PerformanceBelowThreshold",
            "message": "accuracy 0.781 (95% CI 0.742-0.816) < threshold 0.8835",
        }
    )
    screen = render(md, EVENTS, now=NOW)
    assert re.search(r"realized accuracy\s+0\.781\s+>= 0\.8835\s+FAIL", screen)
    assert re.search(r"baseline \(validation\)\s+0\.930\n", screen)
    assert re.search(r"labels joined\s+512\s+>= 100\s+ok", screen)
    assert re.search(r"label delay p50 / p95\s+30\.5m / 54\.8m", screen)
    assert "labels not joined         duplicate 25, unknown 51" in screen
    assert "PerformanceDegraded True    PerformanceBelowThreshold" in screen
    assert "  Healthy          " in screen  # the other conditions keep their columns
    assert max(len(line) for line in screen.splitlines()) <= 80


def _ended(outcome: str, reason: str) -> dict[str, Any]:
    """The fixture once its candidate ended at step 3/4 (the operator's summary then)."""
    md = json.loads(json.dumps(MD))
    md["status"]["phase"] = outcome
    md["status"]["candidate"].update(
        weight=0,
        shadowPercent=None,
        replicas=0,
        readyReplicas=0,
        failedChecks=2,
        outcome=outcome,
        reason=reason,
        message="revision 9b1e4d0 rolled back at step 3 (AnalysisFailed): p95 298ms",
    )
    return md


def test_an_ended_attempt_shows_its_outcome_not_a_running_rollout() -> None:
    screen = render(_ended("RolledBack", "AnalysisFailed"), EVENTS, now=NOW)
    lines = screen.splitlines()
    at = lines.index("  candidate  9b1e4d0  v3      replacement   RolledBack (AnalysisFailed)")
    assert lines[at + 1] == "             ended at step 3/4 (canary 20%), failed checks 2/2"
    steps = screen[screen.index("Steps (") : screen.index("Gates (")]
    assert "►" not in steps  # no step is under way
    assert "✔ 2 shadow 100%" in steps and "✘ 3 canary 20%" in steps and "· 4 canary 50%" in steps
    assert "Traffic" not in screen and "candidate 0%" not in screen
    assert re.search(r"p95 latency\s+298ms\s+\[250ms, inf\]\s+<= 250ms\s+FAIL", screen)
    assert max(len(line) for line in lines) <= 80
    failed = render(_ended("Failed", "ProgressDeadlineExceeded"), EVENTS, now=NOW, colour=True)
    assert "\033[31mFailed (ProgressDeadlineExceeded)\033[0m" in failed
    assert "\033[31m✘\033[0m 3 canary 20%" in failed


@pytest.mark.parametrize("step", [None, 0, 4], ids=["as-written", "zero", "past-the-steps"])
def test_a_promoted_revision_that_failed_its_bake_failed_no_step(step: int | None) -> None:
    # Old code: the operator's summary after a failed bake has no step, read as 0: "ended
    # at step 1/4 (validate (golden set))" and a ✘ on step 1, though every step passed.
    md = _ended("RolledBack", "BakeFailed")
    del md["status"]["candidate"]["step"]
    if step is not None:
        md["status"]["candidate"]["step"] = step
    screen = render(md, EVENTS, now=NOW)
    lines = screen.splitlines()
    at = lines.index("  candidate  9b1e4d0  v3      replacement   RolledBack (BakeFailed)")
    assert lines[at + 1] == "             ended in its bake after promotion (all 4 steps passed)"
    steps = screen[screen.index("Steps (") : screen.index("Gates (")]
    assert "✔ 1 validate (golden set)" in steps and "✔ 4 canary 50%" in steps
    assert "✘" not in screen and "►" not in screen and "ended at step" not in screen


def test_an_attempt_ended_past_its_steps_names_no_step() -> None:
    md = _ended("RolledBack", "AnalysisFailed")
    md["status"]["candidate"]["step"] = 4
    screen = render(md, EVENTS, now=NOW)
    assert "\n             failed checks 2/2\n" in screen
    assert "✔ 4 canary 50%" in screen and "ended at step" not in screen


def test_a_running_rollout_keeps_its_candidate_line_marker_and_traffic() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "candidate  9b1e4d0  v3      replacement   failed checks 1/2\n\n" in screen
    assert "✘" not in screen and "► 3 canary 20%" in screen and "Traffic" in screen


def _with(**health: Any) -> dict[str, Any]:
    """The fixture with an SLO of 0.25% errors and a p95 of 12.5ms, and these health figures."""
    md = json.loads(json.dumps(MD))
    md["spec"]["monitoring"]["slo"] = {"maxErrorRate": 0.0025, "maxLatencyP95": "12.5ms"}
    md["status"]["health"].update(health)
    return md


def test_a_limit_prints_every_digit_it_has_and_its_figures_read_on_their_side_of_it() -> None:
    # "0.22% [0.2%, 0.2%] <= 0.2% pass" and "12.3ms <= 12ms ok" read as wrong verdicts.
    md = _with(errorRate=0.0022, latencyP95=0.0123)
    md["status"]["candidate"]["gates"] = [
        {
            "name": "errorRate",
            "verdict": "pass",
            "value": 0.0022,
            "low": 0.0019,
            "high": 0.0024,
            "threshold": 0.0025,
        },
        {
            "name": "latencyP95",
            "verdict": "pass",
            "value": 0.0123,
            "low": 0.0121,
            "high": 0.0124,
            "threshold": 0.0125,
        },
        # An interval end just above the limit must not read as under it ("0.2%").
        {
            "name": "errorRate",
            "verdict": "undecided",
            "value": 0.002,
            "low": 0.0015,
            "high": 0.00246,
            "threshold": 0.0024,
        },
    ]
    screen = render(md, EVENTS, now=NOW)
    gates = screen[screen.index("Gates (") : screen.index("Health ")]
    assert re.search(r"error rate\s+0\.22% \[0\.19%, 0\.24%\]\s+<= 0\.25%\s+pass", gates)
    assert re.search(r"p95 latency\s+12\.3ms \[12\.1ms, 12\.4ms\] <= 12\.5ms pass", gates)
    assert re.search(r"error rate\s+0\.20% \[0\.15%, 0\.25%\]\s+<= 0\.24%\s+undecided", gates)
    assert re.search(r"error rate\s+0\.22%\s+<= 0\.25%\s+ok", screen)
    assert re.search(r"p95 latency\s+12\.3ms\s+<= 12\.5ms\s+ok", screen)
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_a_p95_under_a_millisecond_reads_from_its_first_digit() -> None:
    md = _with(latencyP95=0.0004)
    md["spec"]["monitoring"]["slo"]["maxLatencyP95"] = "0.5ms"
    assert re.search(r"p95 latency\s+0\.4ms\s+<= 0\.5ms\s+ok", render(md, EVENTS, now=NOW))


STEP_NAMES = ["validate", "shadow 100%", "canary 20%", "canary 50%"]


def test_the_steps_are_the_operators_while_the_spec_cannot_be_read() -> None:
    md = json.loads(json.dumps(MD))
    md["spec"]["rollout"]["replacement"]["steps"][2] = {"canary": {"duration": "5m"}}  # no weight
    md["status"]["candidate"]["stepNames"] = STEP_NAMES
    steps = render(md, EVENTS, now=NOW).split("Steps (replacement)")[1].split("Traffic")[0]
    assert "✔ 2 shadow 100%" in steps and "► 3 canary 20%" in steps and "· 4 canary 50%" in steps


def test_the_steps_are_the_operators_after_a_spec_edit_and_in_the_specs_words_if_alike() -> None:
    md = json.loads(json.dumps(MD))
    md["status"]["candidate"]["stepNames"] = STEP_NAMES
    # The same steps: the spec's fuller words ("validate (golden set)").
    assert "✔ 1 validate (golden set)" in render(md, EVENTS, now=NOW)
    md["spec"]["rollout"]["replacement"]["steps"] = [{"canary": {"weight": 10}}]  # edited since
    screen = render(md, EVENTS, now=NOW)
    assert "✔ 1 validate\n" in screen and "► 3 canary 20%" in screen and "10%" not in screen


def test_a_spec_the_operator_cannot_read_shows_the_defaults_and_says_so() -> None:
    md = json.loads(json.dumps(MD))
    md["spec"]["rollout"]["replacement"]["steps"][2] = {"canary": {"duration": "5m"}}  # no weight
    md["spec"]["rollout"]["analysis"]["failureLimit"] = 4
    screen = render(md, EVENTS, now=NOW)
    said = "spec.rollout cannot be read (spec.rollout.replacement.steps[2] has no weight): the"
    assert f"Spec: {said} limits shown are its defaults" in " ".join(screen.split())
    assert "failed checks 1/2" in screen and "Steps (" not in screen  # the defaults'
    md = json.loads(json.dumps(MD))
    md["spec"]["rollout"]["analysis"]["confidence"] = 1
    md["spec"]["monitoring"]["drift"]["confidence"] = 1
    lines = render(md, EVENTS, now=NOW).splitlines()
    notes = " ".join(line.strip() for line in lines[4:8])
    assert "spec.rollout cannot be read (spec.rollout.analysis.confidence 1 must" in notes
    assert "spec.monitoring cannot be read (spec.monitoring.drift.confidence 1" in notes
    assert max(len(line) for line in lines) <= 80


def test_a_pending_request_and_the_last_answer_show_with_their_ids() -> None:
    # The refusal of a second request sends the person here (kubectl vigil status).
    md = json.loads(json.dumps(MD))
    md["metadata"]["annotations"] = {
        "vigil.dev/request": "pause",
        "vigil.dev/request-id": "0b6f",
        "vigil.dev/request-revision": "9b1e4d0",
    }
    md["status"]["lastRequest"] = {
        "id": "5c1e",
        "verb": "promote",
        "answer": "Refused",
        "message": "no rollout with steps under way",
        "at": "2026-11-26T07:59:00Z",
    }
    lines = render(md, EVENTS, now=NOW).splitlines()
    at = lines.index("Request")
    assert lines[at + 1 : at + 5] == [
        "  pending   pause for revision 9b1e4d0: not answered yet",
        "            id 0b6f",
        "  answered  promote: Refused 60s ago: no rollout with steps under way",
        "            id 5c1e",
    ]
    # Answered, not cleared yet: one answer, nothing pending.
    md["metadata"]["annotations"]["vigil.dev/request-id"] = "5c1e"
    screen = render(md, EVENTS, now=NOW)
    assert "pending" not in screen and "answered  promote: Refused" in screen
    assert "Request" not in render(MD, EVENTS, now=NOW)


def test_drift_bars_with_a_threshold_of_zero_and_no_drift() -> None:
    md = json.loads(json.dumps(MD))
    md["spec"]["monitoring"]["drift"] = {"method": "psi", "threshold": 0}  # the CRD's minimum
    md["status"]["health"]["drift"] = {
        "method": "psi",
        "score": 0.0,
        "features": {"alcohol": 0.0, "proline": 0.0},
    }
    screen = render(md, EVENTS, now=NOW)
    assert f"  alcohol                   0.000 {'░' * 20}" in screen


def test_events_of_one_second_keep_their_order() -> None:
    # As the API server lists them: by name, lastTimestamp cut to the second.
    events = [
        {
            "metadata": {"name": "wine.0a1f"},
            "type": "Normal",
            "reason": "RolloutStarted",
            "message": "second",
            "lastTimestamp": "2026-11-26T07:58:00Z",
            "eventTime": "2026-11-26T07:58:00.912000Z",
        },
        {
            "metadata": {"name": "wine.7c3e"},
            "type": "Normal",
            "reason": "RolloutRetried",
            "message": "first",
            "lastTimestamp": "2026-11-26T07:58:00Z",
            "eventTime": "2026-11-26T07:58:00.104000Z",
        },
        {"type": "Normal", "reason": "Old", "message": "third", "lastTimestamp": "07:00"},
        {
            "type": "Normal",
            "reason": "Older",
            "message": "zeroth",
            "firstTimestamp": "2026-11-26T07:57:59Z",
        },
    ]
    screen = render(MD, events, now=NOW)
    listed = screen[screen.index("Events (newest last)") :].splitlines()[1:5]
    assert [line.split()[-1] for line in listed] == ["third", "zeroth", "first", "second"]


def test_the_operators_summary_of_a_failed_bake_reads_as_every_step_passed() -> None:
    # The same from the decisions themselves: a two-step rollout promoted, then its bake
    # failed on realized performance (what status.candidate holds then).
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
    from core_world import RolloutWorld, judged, serving, spec

    from vigil.core.candidate import Request, RolloutInputs

    steps = [
        {"canary": {"weight": 50, "duration": "1h"}},
        {"canary": {"weight": 80, "duration": "1h"}},
    ]
    rollout = {"bake": {"duration": "10m"}, "replacement": {"steps": steps}}
    world, previous = serving(rollout, RolloutWorld())
    world.set_spec(spec("2", 2, rollout=rollout))
    world.inputs = RolloutInputs(metrics_available=False, metrics_error="none")
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    world.pods_ready(candidate)
    world.reconcile()
    world.request = Request("promote", "id-1", candidate)
    for _ in range(4):
        world.reconcile()
        world.pods_ready(candidate)
    assert world.status["stable"]["revision"] == candidate and world.status.get("bake")
    world.inputs = None
    world.reconcile(30)
    judged(world, "PerformanceDegraded", True, "PerformanceBelowThreshold", "accuracy 0.874 < 0.95")
    world.reconcile(1)
    world.pods_ready(previous)
    world.reconcile(1)
    assert world.status["candidate"]["reason"] == "BakeFailed"
    md = {
        "metadata": {"name": "wine", "namespace": "ml", "generation": world.generation},
        "spec": world.spec,
        "status": json.loads(json.dumps(world.status, default=str)),
    }
    screen = render(md, [], now=world.now)
    assert "ended in its bake after promotion (all 2 steps passed)" in screen
    assert "✔ 1 canary 50%" in screen and "✔ 2 canary 80%" in screen and "✘" not in screen


def test_a_candidate_without_a_step_index_renders() -> None:
    md = json.loads(json.dumps(MD))
    md["status"]["candidate"]["step"] = None
    assert "candidate" in render(md, EVENTS, now=NOW)


def test_drift_held_by_drift_detected_through_too_few_requests_fails() -> None:
    # The health loop holds DriftDetected True through a window too small to judge: the
    # screen read "ok" beside a True condition and phase Degraded.
    drift = {"method": "psi", "level": "warning", "score": 0.12, "over": ["alcohol"]}
    held = {"type": "DriftDetected", "status": "True", "reason": "DriftAboveThreshold"}
    screen = _health_of({"verdict": "InsufficientData", "requests": 20, "drift": drift}, (held,))
    assert re.search(r"drift \(psi\)\s+0\.120\s+< 0\.2\s+FAIL", screen), screen


def test_shadow_agreement_under_its_minimum_is_not_surely_under_it_never_fail() -> None:
    # The health loop never judges agreement (the rollout's gates do): no breach to show.
    screen = _health_of({"verdict": "Healthy", "requests": 500, "agreement": 0.81})
    assert re.search(r"shadow agreement\s+0\.810\s+>= 0\.95\s+not surely\n", screen), screen
    assert "FAIL" not in screen.split("Conditions")[0]


@pytest.mark.parametrize(("duration", "label"), [("0s", "pause 0s"), ("90s", "pause 90s")])
def test_a_timed_pause_step_shows_its_duration_even_zero(duration: str, label: str) -> None:
    # The operator runs "0s" as a timed pause that ends at once, not one until resumed.
    md = json.loads(json.dumps(MD))
    md["spec"]["rollout"]["replacement"]["steps"][3] = {"pause": {"duration": duration}}
    steps = render(md, EVENTS, now=NOW).split("Steps (replacement)")[1].split("Traffic")[0]
    assert f"· 4 {label}\n" in steps and "until resumed" not in steps


def test_a_pause_step_without_duration_waits_until_resumed() -> None:
    md = json.loads(json.dumps(MD))
    md["spec"]["rollout"]["replacement"]["steps"][3] = {"pause": {}}
    assert "· 4 pause (until resumed)\n" in render(md, EVENTS, now=NOW)


#: What anyone allowed to write Events or annotations in the namespace could send: clear
#: the screen (ESC c), set the clipboard (OSC 52), a C1 CSI (0x9b), a bell and a newline.
HOSTILE = "\x1bc\x1b]52;c;ZWNobyBwd25lZA==\x07\x9b2J\r\nfake"


def _hostile_screen(colour: bool) -> str:
    md = json.loads(json.dumps(MD))
    md["metadata"]["name"] = f"wine{HOSTILE}"
    md["metadata"]["annotations"] = {
        "vigil.dev/request": f"pause{HOSTILE}",
        "vigil.dev/request-id": f"0b6f{HOSTILE}",
    }
    md["status"]["conditions"][0]["message"] = f"ready{HOSTILE}"
    md["status"]["health"]["drift"]["features"] = {f"alcohol{HOSTILE}": 0.31}
    at = "2026-11-26T07:59:00Z"
    events = [
        {"type": "Warning", "reason": f"Odd{HOSTILE}", "message": "x", "lastTimestamp": at},
        {"type": "Warning", "reason": "Odd", "message": f"said{HOSTILE}", "lastTimestamp": at},
    ]
    return render(md, events, now=NOW, colour=colour)


@pytest.mark.parametrize("colour", [False, True])
def test_control_characters_from_the_cluster_are_shown_not_sent_to_the_terminal(
    colour: bool,
) -> None:
    screen = _hostile_screen(colour)
    # Only the view's own colour codes reach the terminal; nothing else controls it.
    plain = ANSI.sub("", screen)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", plain), repr(plain)
    assert "\nfake" not in plain  # a newline in a message draws no line of its own
    for where in ("wine", "pause", "0b6f", "ready", "alcohol", "Odd", "said"):
        assert f"{where}\\x1bc\\x1b]" in plain, where
    assert r"0b6f\x1bc\x1b]52;c;ZWNobyBwd25lZA==\x07\x9b2J\r\nfake" in plain


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_a_terminal_that_cannot_show_the_marks_gets_the_screen_not_a_traceback(
    tmp_path: Path, encoding: str
) -> None:
    """A Latin-1 locale, or Windows writing to a pipe: ✔, █ and … raised UnicodeEncodeError."""
    import os
    import subprocess
    import sys

    (tmp_path / "md.json").write_text(json.dumps(MD))
    (tmp_path / "events.json").write_text(json.dumps({"items": EVENTS}))
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(
        f'#!/bin/sh\ncase "$*" in *events*) cat {tmp_path}/events.json;; '
        f"*) cat {tmp_path}/md.json;; esac\n"
    )
    kubectl.chmod(0o755)
    env = {**os.environ, "VIGIL_KUBECTL": str(kubectl), "PYTHONIOENCODING": encoding}
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "status", "wine", "-n", "ml"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Steps" in done.stdout and b"?" in done.stdout
