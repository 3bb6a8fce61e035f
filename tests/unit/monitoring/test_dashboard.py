"""The Grafana dashboard: well formed, its queries written the way the operator's are.

tests/integration/monitoring/test_promtool_dashboard.py parses and evaluates its
queries with the real promtool; tests/e2e/monitoring/test_dashboard_queries.py runs
them against a real Prometheus scraping real sidecars.
"""

from __future__ import annotations

import json
import re

from monitoring_kit import LABEL_VALUES, VARIABLE, dashboard, targets
from vigil.metrics.prometheus import DELTA_FAMILIES
from vigil.operator.metrics import PER_OBJECT_GAUGES, PER_REVISION_GAUGES

GAUGE_BY = re.compile(r"by \(([^)]*)\) \((vigil_modeldeployment_\w+)\{")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def test_template_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "model_deployment", "revision", "feature"}
    for name in ("namespace", "model_deployment", "revision"):
        assert variables[name]["multi"] and variables[name]["includeAll"]
        assert variables[name]["allValue"] == ".*"
        assert LABEL_VALUES.match(variables[name]["definition"])


def test_every_variable_used_is_defined() -> None:
    board = dashboard()
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval"}
    text = json.dumps(board["panels"]) + " ".join(
        v.get("definition", "") for v in board["templating"]["list"]
    )
    used = {a or b for a, b in VARIABLE.findall(text)}
    assert used <= defined


def test_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_rates_use_the_rate_interval() -> None:
    for title, target in targets(dashboard()):
        for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
            assert window in {"$__rate_interval", "1h"}, (title, window)


def test_the_brief_s_panels_are_there() -> None:
    titles = " / ".join(panel["title"] for panel in dashboard()["panels"]).lower()
    for words in (
        "requests/s by outcome",
        "error rate vs slo",
        "p50 / p95 / p99",
        "in-flight",
        "upstream failures",
        "drift score",
        "feature bin distribution",
        "missing values",
        "out-of-range",
        "class distribution",
        "prediction mean",
        "shadow agreement",
        "shadow copies dropped",
        "realized accuracy",
        "label delay",
        "phase",
        "rollouts",
    ):
        assert words in titles


def test_error_rates_count_requests_with_the_series_that_exist_from_the_start() -> None:
    # vigil_requests_total{code} series appear with their first request: rate() misses it.
    checked = 0
    for title, target in targets(dashboard()):
        if 'outcome!="success"' in target["expr"]:
            assert "vigil_requests_total" not in target["expr"], title
            assert "vigil_request_outcomes_total" in target["expr"], title
            checked += 1
    assert checked


def test_prediction_moments_share_one_function_as_the_operator_s() -> None:
    # Mean and std are ratios: they cancel the extrapolation only if count, sum and
    # squares are read alike (vigil.metrics.prometheus.DELTA_FAMILIES).
    checked = 0
    for title, target in targets(dashboard()):
        for family in DELTA_FAMILIES:
            for function in re.findall(rf"(\w+)\({family}\{{", target["expr"]):
                assert function == "delta", (title, family)
                checked += 1
    assert checked >= 5


def test_operator_gauges_are_grouped_by_labels_they_have() -> None:
    # vigil_modeldeployment_drift_score has no feature label: it is the largest feature's.
    have = {metric: {"namespace", "name", "revision"} for _, metric, _ in PER_REVISION_GAUGES}
    have |= {metric: {"namespace", "name"} for _, metric, _ in PER_OBJECT_GAUGES}
    checked = 0
    for title, target in targets(dashboard()):
        for by, metric in GAUGE_BY.findall(target["expr"]):
            if metric not in have:
                continue
            labels = {label.strip() for label in by.split(",")}
            assert labels <= have[metric], (title, metric, labels - have[metric])
            if target["expr"].startswith(f"max by ({by}) ({metric}"):
                assert set(LEGEND.findall(target["legendFormat"])) <= labels, title
            checked += 1
    assert checked >= 5
