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

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "manifests" / "monitoring" / "dashboards" / "vigil.json"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)


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
        "drift score per feature",
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
