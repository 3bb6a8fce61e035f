"""Vigil's Prometheus rules: every alert and recording rule tested, alerts that say
what to do.

The rule tests live next to the rules (manifests/monitoring/rules/tests/*.test.yaml);
tests/integration/monitoring/test_promtool_rules.py runs them with the real promtool.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import yaml_kit
from monitoring_kit import RULE_TESTS, alerts, rules
from vigil.core import metric_names
from vigil.core.metric_names import bucket, total
from vigil.core.vocabulary import Phase
from vigil.operator.health import SLO_NAMES
from vigil.operator.metrics import HealthFigures, OperatorMetrics

RUNBOOK = "https://github.com/vigil-dev/vigil/blob/main/docs/troubleshooting.md#"


def test_rule_test_files_exist() -> None:
    assert RULE_TESTS, "no *.test.yaml next to the rules"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml_kit.load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"


def test_every_recording_rule_is_tested() -> None:
    tested = " ".join(
        check["expr"]
        for path in RULE_TESTS
        for case in yaml_kit.load(path.read_text())["tests"]
        for check in case.get("promql_expr_test", [])
    )
    missing = {rule["record"] for rule in rules() if "record" in rule} - set(
        re.findall(r"vigil:[a-z0-9_:]+", tested)
    )
    assert missing == set()


@pytest.mark.parametrize("alert", alerts(), ids=[rule["alert"] for rule in alerts()])
def test_alert_has_severity_summary_description_and_runbook(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = alert["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert "$labels.namespace" in annotations["summary"]
    assert re.fullmatch(re.escape(RUNBOOK) + r"[a-z0-9-]+", annotations["runbook_url"])


def test_runbook_anchors_are_distinct() -> None:
    urls = [rule["annotations"]["runbook_url"] for rule in alerts()]
    assert len(urls) == len(set(urls))


def test_sidecar_metrics_absent_covers_every_serving_phase() -> None:
    # After a rollback the stable serves for days in phase RolledBack.
    (rule,) = [rule for rule in alerts() if rule["alert"] == "VigilSidecarMetricsAbsent"]
    (pattern,) = re.findall(r'vigil_modeldeployment_phase\{phase=~"([^"]+)"\}', rule["expr"])
    serving = {phase.value for phase in Phase} - {Phase.PENDING.value, Phase.FAILED.value}
    assert set(pattern.split("|")) == serving


def test_rules_count_requests_with_the_series_that_exist_from_the_start() -> None:
    # vigil_requests_total{code} series appear with their first request: rate() misses it.
    for rule in rules():
        assert "vigil_requests_total" not in rule["expr"], rule.get("record", rule.get("alert"))
    (errors,) = [rule for rule in rules() if rule.get("record") == "vigil:request_errors:rate5m"]
    assert total(metric_names.REQUESTS) in errors["expr"]


def exported_by_the_operator() -> set[str]:
    """The per-ModelDeployment series names the operator exports for a judged model."""
    metrics = OperatorMetrics()
    figures = HealthFigures("r1", error_rate=0.05, drift_score=0.3, drift_threshold=0.2)
    figures.slo_breached = {name: True for name in SLO_NAMES.values()}
    figures.drift_detected = figures.performance_degraded = True
    metrics.set_health("ml", "wine", figures)
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


@pytest.mark.parametrize(
    ("alert", "verdict"),
    [
        ("VigilErrorRateSLOBreach", 'vigil_modeldeployment_slo_breached{slo="errorRate"}'),
        ("VigilLatencySLOBreach", 'vigil_modeldeployment_slo_breached{slo="latencyP95"}'),
        ("VigilInputDrift", "vigil_modeldeployment_drift_detected"),
        ("VigilPerformanceDegraded", "vigil_modeldeployment_performance_degraded"),
    ],
)
def test_health_alerts_fire_on_the_operators_verdict(alert: str, verdict: str) -> None:
    # The raw 5m ratio (or the drift estimate) against the limit fired where the
    # operator, judging on an interval, said Healthy, and stayed silent where it did not.
    (rule,) = [rule for rule in alerts() if rule["alert"] == alert]
    assert f"({verdict}) == 1" in rule["expr"]
    assert "vigil:" not in rule["expr"] and "drift_score" not in rule["expr"]
    assert verdict.split("{")[0] in exported_by_the_operator()
    assert set(re.findall(r'slo="(\w+)"', verdict)) <= set(SLO_NAMES.values())


def test_request_rules_count_live_requests_not_shadow_copies() -> None:
    # A candidate's shadow copies carry origin="shadow" under endpoint="infer".
    families = (total(metric_names.REQUESTS), bucket(metric_names.REQUEST_DURATION))
    checked = 0
    for rule in rules():
        for family in families:
            for selector in re.findall(rf"{family}\{{([^}}]*)\}}", rule["expr"]):
                assert f'origin="{metric_names.ORIGIN_LIVE}"' in selector, rule.get("record")
                checked += 1
    assert checked >= 3
