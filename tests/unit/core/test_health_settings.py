"""Settings from the spec, the status.health to write, and condition transitions."""

from __future__ import annotations

import pytest

from vigil.core.health import HealthPolicy, HealthReport
from vigil.core.health_status import next_health, same_figures, transitions
from vigil.core.spec import monitoring_settings
from vigil.core.status import ConditionState

POLICY = HealthPolicy(window_seconds=30)


def test_defaults_match_the_crd() -> None:
    settings = monitoring_settings({})
    assert settings.policy == HealthPolicy()
    assert settings.source_key == ("direct", "")
    assert settings.reference is None


def test_every_field_is_read() -> None:
    settings = monitoring_settings(
        {
            "monitoring": {
                "window": "1m30s",
                "slo": {"maxErrorRate": 0.02, "maxLatencyP95": "250ms"},
                "drift": {"method": "jsd", "warning": 0.05, "threshold": 0.1},
                "metrics": {"source": "prometheus", "prometheusURL": "http://p:9090/"},
                "reference": {"configMapKeyRef": {"name": "ref", "key": "profile.json"}},
            },
            "rollout": {"analysis": {"minRequests": 0}},
        }
    )
    assert settings.policy == HealthPolicy(90, 0.02, 0.25, "jsd", 0.05, 0.1, 0)
    assert settings.source_key == ("prometheus", "http://p:9090")
    assert settings.reference == ("ref", "profile.json")


@pytest.mark.parametrize(
    "monitoring",
    [
        {"window": "soon"},
        {"window": "0s"},
        {"drift": {"method": "ks"}},
        {"metrics": {"source": "prometheus"}},
    ],
)
def test_values_the_schema_should_refuse_raise(monitoring: dict) -> None:
    with pytest.raises(ValueError):
        monitoring_settings({"monitoring": monitoring})


REPORT = HealthReport(verdict="Healthy", requests=100, error_rate=0.0, latency_p95=0.02)


def test_unchanged_figures_keep_the_previous_evaluation_time() -> None:
    first = next_health(None, REPORT, POLICY, "2026-01-01T00:00:00Z")
    again = next_health(first, REPORT, POLICY, "2026-01-01T00:00:03Z")
    assert again == first
    changed = next_health(first, HealthReport("Healthy", 101), POLICY, "2026-01-01T00:00:06Z")
    assert changed["evaluatedAt"] == "2026-01-01T00:00:06Z" and changed["requests"] == 101
    assert same_figures(first, {**first, "evaluatedAt": "later"})
    assert not same_figures(None, first)


def test_a_failed_source_keeps_the_last_figures_marked_stale() -> None:
    unavailable = HealthReport(verdict="MetricsUnavailable", requests=0, message="down")
    first = next_health(None, REPORT, POLICY, "2026-01-01T00:00:00Z")
    stale = next_health(first, unavailable, POLICY, "2026-01-01T00:00:03Z")
    assert stale == {**first, "stale": True}
    # Nothing measured yet: the verdict alone, never NaN or made-up figures.
    assert next_health(None, unavailable, POLICY, "t") == {
        "evaluatedAt": "t",
        "window": "30s",
        "verdict": "MetricsUnavailable",
        "requests": 0,
    }
    # Back: the stale mark goes.
    assert "stale" not in next_health(stale, REPORT, POLICY, "2026-01-01T00:00:06Z")


def test_transitions_are_status_flips_and_say_which_call_for_attention() -> None:
    previous = [
        {"type": "Healthy", "status": "True"},
        {"type": "MetricsAvailable", "status": "True"},
    ]
    wanted = [
        ConditionState("Healthy", False, "ErrorRateHigh", "error rate 3.0% > 1.0%"),
        ConditionState("DriftDetected", None, "InsufficientData", ""),
        ConditionState("MetricsAvailable", True, "MetricsCollected", "100 requests"),
    ]
    assert [(s.type, bad) for s, bad in transitions(previous, wanted)] == [("Healthy", True)]
    recovered = [ConditionState("Healthy", True, "SLOsMet", "")]
    assert [(s.type, bad) for s, bad in transitions(previous[:0], recovered)] == [
        ("Healthy", False)
    ]
    drift = [ConditionState("DriftDetected", True, "DriftAboveThreshold", "")]
    assert transitions([{"type": "DriftDetected", "status": "False"}], drift)[0][1] is True


def test_no_figures_ever_are_not_marked_stale() -> None:
    unavailable = HealthReport(verdict="MetricsUnavailable", requests=0, message="down")
    first = next_health(None, unavailable, POLICY, "t0")
    assert next_health(first, unavailable, POLICY, "t1") == first


@pytest.mark.parametrize(
    "rollout",
    [
        {"tweak": {"steps": [{"canary": {"duration": "1m"}}]}},  # no weight: KeyError
        {"analysis": {"confidence": 1, "minRequests": 7}},
    ],
)
def test_a_rollout_the_operator_cannot_use_leaves_monitoring_its_defaults(rollout: dict) -> None:
    # The rollout waits for a fix (rollout.problem); the model is judged meanwhile.
    settings = monitoring_settings({"monitoring": {"window": "1m"}, "rollout": rollout})
    assert settings.policy.window_seconds == 60 and settings.policy.min_requests == 50
