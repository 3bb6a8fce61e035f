"""promtool for the monitoring tests: built by hack/build-cluster.sh (with Prometheus)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigil.devcluster.cluster import cached_bin_dir


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool 3.16; fails (never skips) with what to do when it is missing."""
    env = os.environ.get("VIGIL_BIN_DIR")
    bin_dir = Path(env) if env else cached_bin_dir()
    assert bin_dir is not None, "run the tests from a Vigil checkout (hack/build-cluster.sh)"
    binary = bin_dir / "promtool"
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"promtool is missing ({binary} is not an executable): build it with "
            "`make cluster-build` (hack/build-cluster.sh builds it with Prometheus)",
            pytrace=False,
        )
    return str(binary)
