"""promtool for the monitoring tests: built by hack/build-cluster.sh (with Prometheus)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool 3.16; fails (never skips) with what to do when it is missing."""
    if env := os.environ.get("VIGIL_BIN_DIR"):
        bin_dir = Path(env)
    else:
        bin_dir = Path(
            subprocess.run(
                ["bash", str(ROOT / "hack" / "build-cluster.sh"), "--print"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    binary = bin_dir / "promtool"
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"promtool is missing ({binary} is not an executable): build it with "
            "`make cluster-build` (hack/build-cluster.sh builds it with Prometheus)",
            pytrace=False,
        )
    return str(binary)
