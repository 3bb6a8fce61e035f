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
from vigil.core.metric_names import total
from vigil.core.vocabulary import Phase

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
