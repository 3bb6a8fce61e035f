"""The monitoring assets as the tests read them: the Prometheus rules, their promtool
tests and the Grafana dashboard's queries (checked as text by the unit tests, run by
the real promtool in tests/integration/monitoring)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml_kit

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "manifests" / "monitoring" / "rules" / "vigil-rules.yaml"
RULE_TESTS = sorted((RULES.parent / "tests").glob("*.test.yaml"))
DASHBOARD = ROOT / "manifests" / "monitoring" / "dashboards" / "vigil.json"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)


def rules() -> list[dict[str, Any]]:
    groups = yaml_kit.load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query target of the dashboard's panels."""
    return [
        (panel["title"], target) for panel in board["panels"] for target in panel.get("targets", [])
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    """The query with its template variables replaced by ``values``."""
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def panel_expr(title: str) -> str:
    (target,) = [target for name, target in targets(dashboard()) if name == title]
    return str(target["expr"])
