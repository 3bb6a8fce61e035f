"""The image and the kind path, checked as far as a machine without Docker can.

The kind path cannot run here (no Docker engine): its scripts must parse,
its YAML must load, and the Dockerfile must keep its promises (non-root,
pinned dependencies, the entry points). The e2e suite dry-runs the kind
manifests against the API server (tests/e2e/cluster/test_kind_manifests.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml_kit

ROOT = Path(__file__).resolve().parents[3]


def test_kind_scripts_parse() -> None:
    for script in (
        "hack/kind/up.sh",
        "hack/kind/e2e.sh",
        "hack/kind/local.sh",
        "hack/kind/build-tools.sh",
        "hack/kind/node/import-images.sh",
        "hack/image/lock.sh",
    ):
        result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_kind_yaml_loads() -> None:
    cluster = yaml_kit.load((ROOT / "hack/kind/cluster.yaml").read_text())
    assert cluster["kind"] == "Cluster" and len(cluster["nodes"]) == 3
    kinds = [d["kind"] for d in yaml_kit.load_all((ROOT / "hack/kind/prometheus.yaml").read_text())]
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRoleBinding", "Deployment", "Service"]


def test_dockerfile_runs_as_non_root_from_pinned_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 65532:65532$", dockerfile, re.M)
    assert re.search(r"ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim", dockerfile)
    assert "-r requirements.txt" in dockerfile and "--no-deps" in dockerfile
    assert 'ENTRYPOINT ["vigil-operator"]' in dockerfile


def test_image_requirements_are_exact_and_cover_runtime_dependencies() -> None:
    lines = [
        line
        for line in (ROOT / "hack/image/requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^ ]*", line) for line in lines), lines
    names = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    pyproject = (ROOT / "pyproject.toml").read_text()
    runtime = re.search(r"^dependencies = \[(.*?)\]", pyproject, re.S | re.M)
    assert runtime
    for requirement in re.findall(r'"([A-Za-z0-9_.\-]+)', runtime.group(1)):
        assert requirement.lower().replace("_", "-") in names, requirement
