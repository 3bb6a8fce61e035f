"""The helm command, built from its Go module (hack/build-helm.sh), and kubectl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from operator_e2e import ROOT

from vigil.devcluster.cluster import ClusterError, build_binaries


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
