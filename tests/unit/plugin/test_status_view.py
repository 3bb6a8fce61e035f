"""`kubectl vigil status`: the screen, rendered from fixtures (80 columns, colour off/on)."""

from __future__ import annotations

import datetime
import re

from vigil.plugin.status import render

NOW = datetime.datetime(2026, 11, 26, 8, 0, tzinfo=datetime.UTC)

MD = {
    "metadata": {"name": "wine", "namespace": "ml", "generation": 4},
    "spec": {
        "model": {"name": "wine", "version": "3"},
        "replicas": 2,
        "monitoring": {
            "slo": {"maxErrorRate": 0.01, "maxLatencyP95": "250ms"},
            "drift": {"method": "psi", "threshold": 0.2},
        },
        "rollout": {
            "replacement": {
                "steps": [
                    {"validate": {"goldenSet": {"configMapKeyRef": {"name": "g", "key": "k"}}}},
                    {"shadow": {"percent": 100}},
                    {"canary": {"weight": 20}},
                    {"canary": {"weight": 50}},
                ]
            },
            "analysis": {"failureLimit": 2, "minAgreement": 0.95},
        },
    },
    "status": {
        "observedGeneration": 4,
        "phase": "Progressing",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "RolloutInProgress",
                "message": "canary 20% of revision 9b1e4d0",
            },
            {
                "type": "Healthy",
                "status": "True",
                "reason": "SLOsMet",
                "message": "error rate 0.2% <= 1.0%, p95 41ms <= 250ms over 5m (1532 requests)",
            },
            {
                "type": "DriftDetected",
                "status": "True",
                "reason": "DriftAboveThreshold",
                "message": "psi 0.31 >= 0.2 over 5m: alcohol 0.31",
            },
        ],
        "stable": {
            "revision": "7f3c2a1",
            "modelVersion": "2",
            "replicas": 2,
            "readyReplicas": 2,
            "since": "2026-11-26T06:00:00Z",
        },
        "candidate": {
            "revision": "9b1e4d0",
            "modelVersion": "3",
            "change": "replacement",
            "step": 2,
            "weight": 20,
            "failedChecks": 1,
        },
        "health": {
            "window": "5m",
            "requests": 1532,
            "verdict": "DriftDetected",
            "errorRate": 0.002,
            "latencyP95": 0.041,
            "agreement": 0.98,
            "prediction": {"mean": 0.93, "std": 0.71},
            "drift": {
                "method": "psi",
                "score": 0.31,
                "features": {
                    "alcohol": 0.31,
                    "proline": 0.07,
                    "od280/od315_of_diluted_wines": 0.01,
                },
            },
        },
        "history": [
            {
                "revision": "1a2b3c4",
                "modelVersion": "3",
                "change": "replacement",
                "outcome": "RolledBack",
                "reason": "agreement 0.81 < 0.95 in 2 checks",
                "at": "2026-11-26T07:00:00Z",
            },
            {
                "revision": "7f3c2a1",
                "modelVersion": "2",
                "change": "replacement",
                "outcome": "Promoted",
                "at": "2026-11-26T06:00:00Z",
            },
        ],
    },
}
EVENTS = [
    {
        "type": "Normal",
        "reason": "StepAdvanced",
        "message": "step 2/4 passed; now canary 20%",
        "lastTimestamp": "2026-11-26T07:58:00Z",
    },
    {
        "type": "Warning",
        "reason": "CheckFailed",
        "message": "p95 300ms vs 250ms (1/2)",
        "lastTimestamp": "2026-11-26T07:59:00Z",
    },
]
ANSI = re.compile(r"\033\[[0-9;]*m")


def test_fits_80_columns_without_colour() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "\033[" not in screen
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_shows_revisions_steps_and_traffic() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "stable     7f3c2a1  v2      2/2 ready   since 2h" in screen
    assert "candidate  9b1e4d0  v3      replacement   failed checks 1/2" in screen
    assert "✔ 1 validate (golden set)" in screen and "✔ 2 shadow 100%" in screen
    assert "► 3 canary 20%" in screen and "· 4 canary 50%" in screen
    assert "stable  80%" in screen and "candidate 20%" in screen


def test_every_health_figure_beside_its_threshold() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert re.search(r"error rate\s+0\.2%\s+<= 1\.0%\s+ok", screen)
    assert re.search(r"p95 latency\s+41ms\s+<= 250ms\s+ok", screen)
    assert re.search(r"drift \(psi\)\s+0\.310\s+< 0\.2\s+FAIL", screen)
    assert re.search(r"shadow agreement\s+0\.980\s+>= 0\.95\s+ok", screen)


def test_drift_bars_worst_first() -> None:
    lines = render(MD, EVENTS, now=NOW).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Drift by feature"))
    assert lines[start + 1].split()[0] == "alcohol"
    assert "█" in lines[start + 1] and "░" in lines[start + 1]


def test_events_and_history() -> None:
    screen = render(MD, EVENTS, now=NOW)
    assert "CheckFailed" in screen and "StepAdvanced" in screen
    assert "RolledBack" in screen and "agreement 0.81 < 0.95 in 2 checks" in screen


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
