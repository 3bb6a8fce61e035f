"""``kubectl vigil report`` as a person runs it: kubectl for the object, Prometheus for the hour.

The ModelDeployment (its status written through the status subresource, as
the operator would) and its reference profile ConfigMap live in the test's
namespace; a real Prometheus holds that namespace's hour (history.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import history
import pytest

from vigil.core.window import FAMILY_LABELS
from vigil.devcluster import ClusterClient

VIGIL = str(Path(sys.executable).parent / "vigil")


@pytest.fixture(autouse=True)
def crd(crd_installed: None) -> None:
    """Every test here reads a ModelDeployment (installed once, under the setup lock: two
    workers applying it at once, one was refused AlreadyExists)."""


def test_the_command_writes_the_page_and_the_numbers(
    cluster: ClusterClient, namespace, tmp_path, serve_history
) -> None:
    with serve_history(tmp_path, namespace) as (url, end):
        md = history.model_deployment(end, namespace)
        profile, _, _ = history.reference()
        cluster.kubectl(
            "-n", namespace, "create", "configmap", "wine-reference-2",
            f"--from-literal=profile.json={profile.to_json()}",
        )  # fmt: skip
        cluster.apply(
            json.dumps({k: v for k, v in md.items() if k != "status"}), namespace=namespace
        )
        cluster.kubectl(
            "-n", namespace, "patch", "modeldeployment", "wine", "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": md["status"]}),
        )  # fmt: skip
        page, numbers = tmp_path / "wine.html", tmp_path / "wine.json"
        result = subprocess.run(
            [
                VIGIL, "report", "wine", "-n", namespace, f"--kubeconfig={cluster.kubeconfig}",
                f"--prometheus={url}", "--since=1h", f"--output={page}", f"--json={numbers}",
            ],
            capture_output=True,
            text=True,
            env={"VIGIL_KUBECTL": cluster.kubectl_binary, "PATH": "/usr/bin:/bin"},
            check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(page.resolve())
    queries = 2 * len(FAMILY_LABELS) + 2  # a range and a whole-range query per family, and pods
    assert f"report: prometheus {queries}/{queries}" in result.stderr
    assert "report: wrote" in result.stderr
    written = json.loads(numbers.read_text())
    assert written["features"][0]["name"] == "alcohol"
    assert {r["revision"]: r["outcome"] for r in written["rollouts"]} == {
        "c2": "Promoted",
        "b2": "RolledBack",
        "a1": "Deployed",
    }
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_a_missing_model_deployment_is_one_clear_line(cluster: ClusterClient, namespace) -> None:
    result = subprocess.run(
        [
            VIGIL,
            "report",
            "nothing",
            "-n",
            namespace,
            f"--kubeconfig={cluster.kubeconfig}",
            "--direct",
        ],
        capture_output=True,
        text=True,
        env={"VIGIL_KUBECTL": cluster.kubectl_binary, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 1
    assert "vigil report:" in result.stderr and "not found" in result.stderr
