"""Renders of the chart with helm, for the chart's tests (a module: conftest names clash)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from kit.kube import ROOT

from vigil.common import kube_yaml
from vigil.devcluster.node import NODE_LABEL

CHART = ROOT / "charts" / "vigil"


def run(*command: str | Path) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, command))}: {result.stderr}"
    return result.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _cluster_version() -> str:
    match = re.search(r"^K8S_VERSION=v(\S+)$", (ROOT / "hack/build-cluster.sh").read_text(), re.M)
    assert match, "hack/build-cluster.sh must set K8S_VERSION"
    return match.group(1)


#: The Kubernetes version ``helm template`` checks the chart's kubeVersion against:
#: the local cluster's (a helm built from its Go module, as here, assumes v1.20.0).
KUBE_VERSION = f"--kube-version={_cluster_version()}"

#: What a cluster with the Prometheus Operator's CRDs tells Helm (Capabilities.APIVersions).
WITH_PODMONITOR = "--api-versions=monitoring.coreos.com/v1/PodMonitor"


def template(helm: Path, *values: str, namespace: str = "vigil-system") -> list[dict[str, Any]]:
    """``helm template`` of the chart with its CRD, as an install would create it."""
    command = ["template", "vigil", CHART, "--namespace", namespace, "--include-crds"]
    return documents(run(helm, *command, KUBE_VERSION, *values))


def refused(helm: Path, *values: str) -> str:
    """``helm template`` that must fail: its error message."""
    result = subprocess.run(
        [str(helm), "template", "vigil", str(CHART), KUBE_VERSION, *values],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0, f"rendered with {values}"
    return result.stderr


def install_values(path: Path, image: str, models: str, cluster_role: str) -> Path:
    """The values file test_chart_install.py installs with (the render tests check it
    passes the chart's schema): the image built here, never pulled, on the real node."""
    repository, tag = image.rsplit(":", 1)
    key, value = NODE_LABEL
    path.write_text(
        kube_yaml.dump(
            {
                "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                "watchNamespaces": [models],
                "rbac": {"name": cluster_role},
                "logFormat": "plain",
                "nodeSelector": {key: value},
                "tolerations": [{"key": key, "value": value, "effect": "NoSchedule"}],
            }
        )
    )
    return path


#: Every optional object on: what the dry-run and lint must accept too.
EVERYTHING = (
    "--set=metrics.podMonitor.enabled=true",
    "--set=metrics.serviceMonitor.enabled=true",
    "--set=metrics.prometheusRule.enabled=true",
    "--set=metrics.dashboard.enabled=true",
    "--set=networkPolicy.enabled=true",
    "--set=podDisruptionBudget.enabled=true",
)
