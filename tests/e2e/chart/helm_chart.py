"""Renders of the chart with helm, for the chart's tests (a module: conftest names clash)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from kit.kube import ROOT

CHART = ROOT / "charts" / "vigil"


def run(*command: str | Path) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, command))}: {result.stderr}"
    return result.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template(helm: Path, *values: str, namespace: str = "vigil-system") -> list[dict[str, Any]]:
    """``helm template`` of the chart with its CRD, as an install would create it."""
    return documents(
        run(helm, "template", "vigil", CHART, "--namespace", namespace, "--include-crds", *values)
    )


#: Every optional object on: what the dry-run and lint must accept too.
EVERYTHING = (
    "--set=metrics.podMonitor.enabled=true",
    "--set=metrics.serviceMonitor.enabled=true",
    "--set=metrics.prometheusRule.enabled=true",
    "--set=metrics.dashboard.enabled=true",
    "--set=networkPolicy.enabled=true",
    "--set=podDisruptionBudget.enabled=true",
)
