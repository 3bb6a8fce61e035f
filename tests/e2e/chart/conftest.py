"""The helm command, built from its Go module (hack/build-helm.sh), and renders of the chart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_e2e import ROOT

from vigil.devcluster.cluster import ClusterError, build_binaries

CHART = ROOT / "charts" / "vigil"


@pytest.fixture(scope="session")
def helm() -> Path:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-helm.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"cannot build helm (hack/build-helm.sh): {result.stderr[-2000:]}", pytrace=False
        )
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def kubectl() -> Path:
    try:
        return build_binaries(log=lambda line: print(line, flush=True)) / "kubectl"
    except ClusterError as error:
        pytest.fail(f"kubectl is not built: {error}", pytrace=False)


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
    "--set=metrics.prometheusRule.enabled=true",
    "--set=metrics.dashboard.enabled=true",
    "--set=networkPolicy.enabled=true",
    "--set=podDisruptionBudget.enabled=true",
)
