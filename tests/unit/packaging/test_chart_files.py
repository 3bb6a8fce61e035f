"""The Helm chart's own files: its copies of the shared ones, its version, its helm pin.

Rendering, lint, installs and the schema's verdicts need the helm binary: tests/e2e/chart.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml_kit
from vigil.core.desired import PULL_POLICIES
from vigil.operator.main import build_parser

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "vigil"


def test_chart_copies_of_the_crd_rules_and_dashboard_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "sync-chart.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_chart_version_follows_the_operator() -> None:
    chart = yaml_kit.load((CHART / "Chart.yaml").read_text())
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert chart["version"] == chart["appVersion"] == version.group(1)
    values = yaml_kit.load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/vigil-dev/vigil"


def test_helm_is_pinned_once() -> None:
    script = (ROOT / "hack" / "build-helm.sh").read_text()
    pinned = re.search(r"^HELM_VERSION=(v\S+)$", script, re.M)
    assert pinned is not None
    go_mod = (ROOT / "hack" / "helm" / "go.mod").read_text()
    assert f"require helm.sh/helm/v3 {pinned.group(1)}" in go_mod


def test_gitops_chart_variants_point_at_the_chart_and_its_values() -> None:
    argo = yaml_kit.load((ROOT / "manifests/gitops/argocd/application-chart.yaml").read_text())
    source = argo["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    assert all((ROOT / source["path"] / f).is_file() for f in source["helm"]["valueFiles"])
    flux = yaml_kit.load((ROOT / "manifests/gitops/flux/helmrelease.yaml").read_text())
    chart = flux["spec"]["chart"]["spec"]
    assert (ROOT / chart["chart"] / "Chart.yaml").is_file()
    assert all((ROOT / f).is_file() for f in chart["valuesFiles"])
    # Flux's source-controller uses the listed files instead of the chart's defaults.
    assert chart["valuesFiles"][0] == f"{chart['chart']}/values.yaml"
    assert flux["spec"]["install"]["crds"] == flux["spec"]["upgrade"]["crds"] == "CreateReplace"
    repository = yaml_kit.load((ROOT / "manifests/gitops/flux/gitrepository.yaml").read_text())
    assert "!/charts/" in repository["spec"]["ignore"].split()


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["definitions"][ref.rsplit("/", 1)[1]] if ref else node


def test_the_values_schema_names_every_value_and_refuses_unknown_ones() -> None:
    """values.schema.json and values.yaml list the same values; a misspelt one is refused
    (additionalProperties false), not ignored. Maps of free keys (labels) stop the walk."""
    schema = _schema()
    values = yaml_kit.load((CHART / "values.yaml").read_text())
    unknown: list[str] = []
    undocumented: list[str] = []
    open_ended: list[str] = []

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        node = _resolved(schema, node)
        if not isinstance(value, dict) or "properties" not in node:
            return
        if node.get("additionalProperties") is not False:
            open_ended.append(path or "(top)")
        # Helm hands a subchart the parent's `global`: no value of this chart.
        extra = set(node["properties"]) - set(value) - ({"global"} if not path else set())
        undocumented.extend(f"{path}{key}" for key in sorted(extra))
        for key, item in value.items():
            if key in node["properties"]:
                walk(item, node["properties"][key], f"{path}{key}.")
            else:
                unknown.append(f"{path}{key}")

    walk(values, schema, "")
    assert unknown == [], "values.yaml values the schema does not know"
    assert undocumented == [], "schema entries values.yaml does not have"
    assert open_ended == [], "objects that would accept a misspelt key"


def test_the_values_schema_offers_what_the_operator_accepts() -> None:
    properties = _schema()["properties"]
    assert properties["image"]["properties"]["pullPolicy"]["enum"] == list(PULL_POLICIES)
    (log_format,) = [a for a in build_parser()._actions if a.dest == "log_format"]
    assert log_format.choices is not None
    assert sorted(properties["logFormat"]["enum"]) == sorted(log_format.choices)
