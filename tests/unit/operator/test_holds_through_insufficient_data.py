"""What a judged verdict holds until surely back stays held through windows that judge nothing.

A breached SLO, a feature over the drift threshold and a PerformanceDegraded
True each hold until a window shows them surely back (docs/health.md). One
window of too few requests (or labels) between wrote Unknown and dropped the
hold: the next window, neither surely bad nor surely back, read Healthy. The
holds are carried in status.health (an operator restart reads them back) and
written only when something changed.

Nor does such a window read as a recovery: Unknown made the phase Healthy while
the breach held, the next judged window Degraded again with a new Warning
Event (50 requests per 5m crosses minRequests ~400 times a day), and dropped
the verdict gauges (restarting the alerts' ``for``). The condition stays at the
judged verdict, its message saying why it is held.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import numpy as np
import pytest
from test_health_loop import Loop, md, pod

from vigil.core.window import RealizedPerformance, RevisionWindow
from vigil.profile import build_profile

KEY = ("ml", "wine", "r1")
#: Past the monitoring window (30s) and the labels' (1m): no warm-up hold after a start.
LATER = datetime.timedelta(minutes=2)


@pytest.fixture
def loop() -> Loop:
    return Loop()


def errors(requests: float, failed: float) -> RevisionWindow:
    return RevisionWindow(
        requests_by_outcome={"success": requests - failed, "model_error": failed},
        latency_buckets=((0.05, requests), (math.inf, requests)),
    )


BREACHED = errors(1000, 30)  # 3 % against 1 %: surely over
DIP = errors(10, 0)  # fewer than minRequests (20)
BORDERLINE = errors(300, 5)  # 1.7 %: neither surely over nor surely within


async def judge(loop: Loop, window: RevisionWindow) -> int:
    """One cycle on ``window``, past any warm-up; the status writes it made."""
    loop._source(("direct", "")).windows[KEY] = window
    loop.now += LATER
    return (await loop.cycle()).written


async def test_a_breached_slo_stays_breached_through_too_few_requests(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    await judge(loop, BREACHED)
    assert loop.status()["health"]["breached"] == ["ErrorRateHigh"]
    assert await judge(loop, DIP) == 1
    assert loop.condition("Healthy")["status"] == "False"
    assert loop.status()["health"]["breached"] == ["ErrorRateHigh"]
    assert await judge(loop, DIP) == 0  # nothing new: nothing written
    await judge(loop, BORDERLINE)
    healthy = loop.condition("Healthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "ErrorRateHigh")
    assert "not surely within" in healthy["message"]


async def test_a_restarted_operator_reads_the_hold_back_from_status(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    await judge(loop, BREACHED)
    await judge(loop, DIP)
    restarted = Loop()
    restarted.api = loop.api
    restarted.now = loop.now
    restarted.loop.observe_model("ADDED", loop.api.objects[("ModelDeployment", "ml", "wine")])
    restarted.loop.observe_pod("ADDED", pod("wine-a"))
    await judge(restarted, BORDERLINE)
    assert restarted.condition("Healthy")["status"] == "False"


async def test_a_window_surely_within_after_the_dip_clears_the_breach(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    await judge(loop, BREACHED)
    await judge(loop, DIP)
    await judge(loop, errors(3000, 3))
    assert loop.condition("Healthy")["status"] == "True"
    assert "breached" not in loop.status()["health"]
    await judge(loop, DIP)
    await judge(loop, BORDERLINE)
    assert loop.condition("Healthy")["status"] == "True"


REFERENCE = build_profile(np.random.default_rng(1).normal(size=(20000, 1)), feature_names=["a"])


def inputs(rows: float, moved: float) -> RevisionWindow:
    """``rows`` requests whose feature ``a`` has a share ``moved`` shifted by 3 bins."""
    proportions = np.array(REFERENCE.features[0].proportions)
    mixed = (1 - moved) * proportions + moved * np.roll(proportions, 3)
    bins = {str(slot): float(count) for slot, count in enumerate(np.round(mixed * rows))}
    return dataclasses.replace(errors(rows, 0), input_rows=float(rows), feature_bins={"a": bins})


async def test_a_drifted_feature_stays_named_through_too_few_requests(loop: Loop) -> None:
    ref = {"configMapKeyRef": {"name": "ref", "key": "profile.json"}}
    loop.add(md(reference=ref), pod("wine-a"))
    loop.api.add(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "ref", "namespace": "ml", "resourceVersion": "1"},
            "data": {"profile.json": REFERENCE.to_json()},
        }
    )
    await judge(loop, inputs(300, 1.0))
    assert loop.condition("DriftDetected")["status"] == "True"
    await judge(loop, DIP)
    drift = loop.condition("DriftDetected")
    assert (drift["status"], drift["reason"]) == ("True", "DriftAboveThreshold")
    assert drift["message"].endswith(" (held: 10 requests < 20 needed over 30s)")
    assert loop.status()["health"]["drift"]["over"] == ["a"]
    await judge(loop, inputs(300, 0.2))  # psi about 0.2: not surely under the threshold
    drift = loop.condition("DriftDetected")
    assert (drift["status"], drift["reason"]) == ("True", "DriftAboveThreshold")
    assert "held until it is: a" in drift["message"]


def labelled(scored: float, correct: float) -> RevisionWindow:
    realized = RealizedPerformance(
        labels_by_outcome={"joined": scored},
        scored_by_class={"0": scored},
        correct_by_class={"0": correct},
    )
    return dataclasses.replace(errors(100, 0), realized=realized)


async def test_performance_degraded_stays_true_through_too_few_labels(loop: Loop) -> None:
    performance = {"window": "1m", "minAccuracy": 0.855, "minLabels": 50}
    loop.add(md(performance=performance), pod("wine-a"))
    await judge(loop, labelled(400, 300))
    assert loop.condition("PerformanceDegraded")["status"] == "True"
    await judge(loop, labelled(5, 5))
    assert loop.condition("PerformanceDegraded")["status"] == "True"
    assert loop.status()["health"]["performance"]["degraded"] is True
    await judge(loop, labelled(400, 344))  # 0.86, 95% CI 0.823-0.891: not surely back
    condition = loop.condition("PerformanceDegraded")
    assert condition["status"] == "True" and condition["message"].endswith("held until it is")
    await judge(loop, labelled(400, 380))
    assert loop.condition("PerformanceDegraded")["status"] == "False"
    await judge(loop, labelled(5, 5))
    assert "degraded" not in loop.status()["health"]["performance"]


# -- a window that judges nothing is no recovery ---------------------------------------


def verdict_gauges(loop: Loop) -> tuple[float | None, ...]:
    """slo_breached{errorRate}, slo_breached{latencyP95}, drift_detected, performance_degraded."""
    where = {"namespace": "ml", "name": "wine"}
    return (
        loop.sample("vigil_modeldeployment_slo_breached", **where, slo="errorRate"),
        loop.sample("vigil_modeldeployment_slo_breached", **where, slo="latencyP95"),
        loop.sample("vigil_modeldeployment_drift_detected", **where),
        loop.sample("vigil_modeldeployment_performance_degraded", **where),
    )


async def test_a_dip_in_traffic_keeps_the_breach_phase_and_event_as_judged(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    await judge(loop, BREACHED)
    judged = loop.condition("Healthy")
    posted = len(loop.events)
    for window in (DIP, BREACHED, DIP, BREACHED):
        await judge(loop, window)
        healthy = loop.condition("Healthy")
        held = judged["message"] + " (held: 10 requests < 20 needed over 30s)"
        assert (healthy["status"], healthy["reason"]) == ("False", "ErrorRateHigh")
        assert healthy["message"] == (held if window is DIP else judged["message"])
        assert healthy["lastTransitionTime"] == judged["lastTransitionTime"]
        assert loop.status()["phase"] == "Degraded"
        assert verdict_gauges(loop)[:2] == (1, 0)
    assert loop.events[posted:] == []  # no InsufficientData, no second ErrorRateHigh
    await judge(loop, DIP)
    assert await judge(loop, DIP) == 0  # the same dip again: nothing to write


async def test_a_dip_holds_the_drift_and_performance_gauges(loop: Loop) -> None:
    ref = {"configMapKeyRef": {"name": "ref", "key": "profile.json"}}
    performance = {"window": "1m", "minAccuracy": 0.855, "minLabels": 50}
    loop.add(md(reference=ref, performance=performance), pod("wine-a"))
    loop.api.add(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "ref", "namespace": "ml", "resourceVersion": "1"},
            "data": {"profile.json": REFERENCE.to_json()},
        }
    )
    labels = labelled(400, 300).realized
    await judge(loop, dataclasses.replace(inputs(300, 1.0), realized=labels))
    assert verdict_gauges(loop) == (0, 0, 1, 1)
    few = dataclasses.replace(DIP, realized=labelled(5, 5).realized)
    await judge(loop, few)
    assert loop.condition("DriftDetected")["status"] == "True"
    assert loop.condition("PerformanceDegraded")["status"] == "True"
    assert loop.status()["phase"] == "Degraded"
    # Healthy held nothing: Unknown, no series; the others as held.
    assert verdict_gauges(loop) == (None, None, 1, 1)


async def test_the_verdict_gauges_say_what_the_conditions_say(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    await judge(loop, DIP)  # nothing judged, nothing held
    assert verdict_gauges(loop) == (None, None, None, None)
    await judge(loop, errors(3000, 3))
    assert verdict_gauges(loop)[:2] == (0, 0)
    await judge(loop, BREACHED)
    assert verdict_gauges(loop)[:2] == (1, 0)
    loop._source(("direct", "")).windows.pop(KEY)  # metrics unavailable: the verdict stays
    loop.now += LATER
    await loop.cycle()
    assert loop.condition("MetricsAvailable")["status"] == "False"
    assert verdict_gauges(loop)[:2] == (1, 0)


async def test_a_reference_profile_that_cannot_be_read_is_said_as_such(loop: Loop) -> None:
    ref = {"configMapKeyRef": {"name": "ref", "key": "profile.json"}}
    loop.add(md(reference=ref), pod("wine-a"))
    configmap = {"kind": "ConfigMap", "metadata": {"name": "ref", "namespace": "ml"}}
    configmap["metadata"]["resourceVersion"] = "1"
    loop.api.add({**configmap, "data": {"other.json": "{}"}})
    await judge(loop, inputs(300, 1.0))
    drift = loop.condition("DriftDetected")
    assert (drift["status"], drift["reason"]) == ("Unknown", "NoReference")
    assert drift["message"].startswith("reference ConfigMap ref has no key profile.json; ")
    configmap["metadata"]["resourceVersion"] = "2"
    loop.api.add({**configmap, "data": {"profile.json": "{not json"}})
    await judge(loop, inputs(300, 1.0))
    drift = loop.condition("DriftDetected")
    assert drift["message"].startswith("reference ConfigMap ref/profile.json: ")
    assert "no reference profile" not in drift["message"]


async def test_an_idle_model_holds_no_breach(loop: Loop) -> None:
    # No request at all: held, the breach stayed forever (Degraded, the SLO alert firing
    # on a model nobody calls). Unknown as before; status.health still carries the hold.
    loop.add(md(), pod("wine-a"))
    await judge(loop, BREACHED)
    await judge(loop, errors(0, 0))
    assert loop.condition("Healthy")["status"] == "Unknown"
    assert loop.status()["phase"] != "Degraded"
    assert loop.status()["health"]["breached"] == ["ErrorRateHigh"]
    assert verdict_gauges(loop)[:2] == (None, None)


async def test_a_restarted_operator_exports_the_held_verdicts_while_it_warms_up(
    loop: Loop,
) -> None:
    # Its registry empty for a window, the SLO alert resolved and fired again after 5m.
    body = md()
    body["status"]["health"] = {"revision": "r1", "verdict": "Degraded"}
    body["status"]["health"]["evaluatedAt"] = "2025-12-31T23:59:00Z"
    body["status"]["health"]["breached"] = ["ErrorRateHigh"]
    body["status"]["conditions"] += [
        {"type": "Healthy", "status": "False", "reason": "ErrorRateHigh", "message": "3%"},
        {"type": "DriftDetected", "status": "True", "reason": "DriftAboveThreshold"},
    ]
    loop.add(body, pod("wine-a"))
    loop._source(("direct", "")).windows[KEY] = DIP
    result = await loop.cycle()  # watched for less than a window: held, nothing written
    assert result.held == 1 and not loop.api.writes
    assert verdict_gauges(loop)[:3] == (1, 0, 1)
