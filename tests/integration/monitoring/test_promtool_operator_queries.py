"""The prometheus source's own PromQL, evaluated by the real promtool.

The prediction mean and std are ratios of three families (count, sum, sum of
squares): they are right only if the three are extrapolated alike, including
for a pod that started inside the window (every candidate pod).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vigil.core import metric_names as names
from vigil.core.metric_names import total
from vigil.metrics.prometheus import combined_query, family_query, pods_query

WINDOW = 300
MOMENTS = {
    "count": total(names.PREDICTIONS),
    "sum": names.PREDICTION_VALUE_SUM,
    "squares": names.PREDICTION_VALUE_SQUARES_SUM,
}
MEAN = "operator:sum / operator:count"

pytestmark = pytest.mark.integration


def test_prediction_mean_and_std_of_a_pod_that_started_inside_the_window(
    promtool: str, tmp_path: Path
) -> None:
    # Every 15 s scrape, 15 predictions: half 5, half 15 (mean 10, std 5). Pod a served
    # since before the window; pod b started 2 minutes before its end.
    per_scrape = {"count": 15, "sum": 150, "squares": 1875}
    series = []
    for name, family in MOMENTS.items():
        for pod, values in (("a", "0+{}x40"), ("b", "_x32 0+{}x8")):
            labels = f'namespace="ml",model_deployment="wine",revision="r2",pod="{pod}"'
            series.append(
                {
                    "series": f"{family}{{{labels}}}",
                    "values": values.format(per_scrape[name]),
                }
            )
    rules = {
        "groups": [
            {
                "name": "operator",
                "rules": [
                    {"record": f"operator:{name}", "expr": family_query(family, WINDOW)}
                    for name, family in MOMENTS.items()
                ],
            }
        ]
    }
    where = '{namespace="ml",model_deployment="wine",revision="r2"}'
    checks = [
        (MEAN, 10.0),
        (f"sqrt(operator:squares / operator:count - ({MEAN}) ^ 2)", 5.0),
    ]
    expected = [(expr, [{"labels": where, "value": value}]) for expr, value in checks]
    _promtool_test(promtool, tmp_path, rules, series, expected)


def _promtool_test(
    promtool: str,
    folder: Path,
    rules: dict[str, Any],
    series: list[dict[str, str]],
    expected: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    """``promtool test rules`` of ``series`` scraped every 15 s: each expression of
    ``expected`` evaluated at 600 s gives exactly its samples."""
    tests = [{"expr": e, "eval_time": "600s", "exp_samples": samples} for e, samples in expected]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": tests}],
    }
    (folder / "rules.yaml").write_text(json.dumps(rules))
    (folder / "queries.test.yaml").write_text(json.dumps(test))
    result = subprocess.run(
        [promtool, "test", "rules", "queries.test.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_query_answers_every_family_each_marked_with_its_part(
    promtool: str, tmp_path: Path
) -> None:
    # The source sends its families as one query (one snapshot of Prometheus's database):
    # each answer must come back whole, told apart by its part's index.
    labels = 'namespace="ml",model_deployment="wine",revision="r2",pod="a"'
    series = [
        {"series": f"{MOMENTS['count']}{{{labels}}}", "values": "0+15x40"},
        {"series": f"{MOMENTS['sum']}{{{labels}}}", "values": "0+150x40"},
        {"series": f"vigil_model_info{{{labels}}}", "values": "1x40"},
    ]
    queries = [family_query(MOMENTS["count"], WINDOW), family_query(MOMENTS["sum"], WINDOW)]
    where = 'namespace="ml",model_deployment="wine",revision="r2"'
    parts = [
        {"labels": f'{{{where},vigil_query_part="{i}"}}', "value": value}
        for i, value in enumerate((300, 3000, 1))
    ]
    expected = [(combined_query([*queries, pods_query()]), parts)]
    _promtool_test(promtool, tmp_path, {"groups": []}, series, expected)
