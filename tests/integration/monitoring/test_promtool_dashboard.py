"""The Grafana dashboard's queries under the real promtool: every one parses as
PromQL, and the rollouts panel counts what it says on input series.

tests/e2e/monitoring/test_dashboard_queries.py runs the same queries against a real
Prometheus scraping real sidecars.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from monitoring_kit import LABEL_VALUES, dashboard, panel_expr, substitute, targets

pytestmark = pytest.mark.integration


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    board = dashboard()
    values = {v["name"]: ".*" for v in board["templating"]["list"]}
    values["__rate_interval"] = "15s"
    queries = [target["expr"] for _, target in targets(board)]
    queries += [
        LABEL_VALUES.match(v["definition"]).group(1)  # type: ignore[union-attr]
        for v in board["templating"]["list"]
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


def run_promtool_test(promtool: str, tmp_path: Path, case: dict[str, Any]) -> None:
    """One ``promtool test rules`` case without rules (instant queries on input series)."""
    path = tmp_path / "dashboard.test.yaml"
    path.write_text(json.dumps({"rule_files": [], "evaluation_interval": "1m", "tests": [case]}))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rollouts_in_the_last_hour_count_a_first_outcome_and_none_from_before(
    promtool: str, tmp_path: Path
) -> None:
    # The operator exports vigil_rollouts_total{outcome} at 0 from its first sight of a
    # model (wine, at minute 10); iris' counter is met at 1 (scraping began later).
    expr = substitute(
        panel_expr("Rollouts in the last hour"), {"namespace": "ml", "model_deployment": ".*"}
    )
    series = 'vigil_rollouts_total{{namespace="ml",name="{}",outcome="{}",instance="op"}}'
    case = {
        "interval": "1m",
        "input_series": [
            {"series": series.format("wine", "Promoted"), "values": "_x10 0x5 1x104"},
            {"series": series.format("wine", "RolledBack"), "values": "_x10 0x5 1x45 2x58"},
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
                    [("wine", "Promoted", 1), ("wine", "RolledBack", 1), ("iris", "Promoted", 0)],
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
