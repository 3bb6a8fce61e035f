"""The Grafana dashboard: well formed, and every query parses as PromQL (promtool).

tests/e2e/monitoring/test_dashboard_queries.py runs the same queries against
a real Prometheus scraping real sidecars.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from vigil.metrics.prometheus import DELTA_FAMILIES
from vigil.operator.metrics import PER_OBJECT_GAUGES, PER_REVISION_GAUGES

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "manifests" / "monitoring" / "dashboards" / "vigil.json"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)
GAUGE_BY = re.compile(r"by \(([^)]*)\) \((vigil_modeldeployment_\w+)\{")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def test_template_variables() -> None:
    variables = {v["name"]: v for v in load()["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "model_deployment", "revision", "feature"}
    for name in ("namespace", "model_deployment", "revision"):
        assert variables[name]["multi"] and variables[name]["includeAll"]
        assert variables[name]["allValue"] == ".*"
        assert LABEL_VALUES.match(variables[name]["definition"])


def test_every_variable_used_is_defined() -> None:
    dashboard = load()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | {"__rate_interval"}
    text = json.dumps(dashboard["panels"]) + " ".join(
        v.get("definition", "") for v in dashboard["templating"]["list"]
    )
    used = {a or b for a, b in VARIABLE.findall(text)}
    assert used <= defined


def test_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    panels = load()["panels"]
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
    for title, target in targets(load()):
        for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
            assert window in {"$__rate_interval", "1h"}, (title, window)


def test_the_brief_s_panels_are_there() -> None:
    titles = " / ".join(panel["title"] for panel in load()["panels"]).lower()
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


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    dashboard = load()
    values = {v["name"]: ".*" for v in dashboard["templating"]["list"]}
    values["__rate_interval"] = "15s"
    queries = [target["expr"] for _, target in targets(dashboard)]
    queries += [
        LABEL_VALUES.match(v["definition"]).group(1)  # type: ignore[union-attr]
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    # One promtool run parses them all, a recording rule each (a run per query took a second).
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(query, values)}
        for i, query in enumerate(queries)
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=none", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    listing = "\n".join(f"{rule['record']}: {rule['expr']}" for rule in rules)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{listing}"
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_error_rates_count_requests_with_the_series_that_exist_from_the_start() -> None:
    # vigil_requests_total{code} series appear with their first request: rate() misses it.
    checked = 0
    for title, target in targets(load()):
        if 'outcome!="success"' in target["expr"]:
            assert "vigil_requests_total" not in target["expr"], title
            assert "vigil_request_outcomes_total" in target["expr"], title
            checked += 1
    assert checked


def test_prediction_moments_share_one_function_as_the_operator_s() -> None:
    # Mean and std are ratios: they cancel the extrapolation only if count, sum and
    # squares are read alike (vigil.metrics.prometheus.DELTA_FAMILIES).
    checked = 0
    for title, target in targets(load()):
        for family in DELTA_FAMILIES:
            for function in re.findall(rf"(\w+)\({family}\{{", target["expr"]):
                assert function == "delta", (title, family)
                checked += 1
    assert checked >= 5


def panel_expr(title: str) -> str:
    (target,) = [target for name, target in targets(load()) if name == title]
    return str(target["expr"])


def run_promtool_test(promtool: str, tmp_path: Path, case: dict[str, Any]) -> None:
    """One ``promtool test rules`` case without rules (instant queries on input series)."""
    path = tmp_path / "dashboard.test.yaml"
    path.write_text(json.dumps({"rule_files": [], "evaluation_interval": "1m", "tests": [case]}))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rollouts_in_the_last_hour_count_a_series_first_outcome(
    promtool: str, tmp_path: Path
) -> None:
    # vigil_rollouts_total{outcome} series appear with their first outcome (at 1).
    expr = substitute(
        panel_expr("Rollouts in the last hour"), {"namespace": "ml", "model_deployment": ".*"}
    )
    series = 'vigil_rollouts_total{{namespace="ml",name="{}",outcome="{}",instance="op"}}'
    case = {
        "interval": "1m",
        "input_series": [
            {"series": series.format("wine", "Promoted"), "values": "_x10 1x110"},
            {"series": series.format("wine", "RolledBack"), "values": "_x10 1x50 2x59"},
            # Older than the hour: only what it gained in the hour counts.
            {"series": series.format("iris", "Promoted"), "values": "1x79 3x40"},
        ],
        "promql_expr_test": [
            {
                "expr": f"round({expr})",
                "eval_time": at,
                "exp_samples": [
                    {"labels": f'{{namespace="ml",name="{name}",outcome="{outcome}"}}', "value": n}
                    for name, outcome, n in expected
                ],
            }
            for at, expected in (
                (
                    "30m",
                    [("wine", "Promoted", 1), ("wine", "RolledBack", 1), ("iris", "Promoted", 1)],
                ),
                (
                    "100m",
                    [
                        ("wine", "Promoted", 0),
                        ("wine", "RolledBack", 1),
                        ("iris", "Promoted", 2),
                    ],
                ),
            )
        ],
    }
    run_promtool_test(promtool, tmp_path, case)


def test_operator_gauges_are_grouped_by_labels_they_have() -> None:
    # vigil_modeldeployment_drift_score has no feature label: it is the largest feature's.
    have = {metric: {"namespace", "name", "revision"} for _, metric, _ in PER_REVISION_GAUGES}
    have |= {metric: {"namespace", "name"} for _, metric, _ in PER_OBJECT_GAUGES}
    checked = 0
    for title, target in targets(load()):
        for by, metric in GAUGE_BY.findall(target["expr"]):
            if metric not in have:
                continue
            labels = {label.strip() for label in by.split(",")}
            assert labels <= have[metric], (title, metric, labels - have[metric])
            if target["expr"].startswith(f"max by ({by}) ({metric}"):
                assert set(LEGEND.findall(target["legendFormat"])) <= labels, title
            checked += 1
    assert checked >= 5
