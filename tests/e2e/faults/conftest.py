"""Fault tests: the operator, the API server, Prometheus and a sidecar fail mid-rollout.

They run in ``make test`` (marker ``faults``, never deselected by default);
``-m "not faults"`` skips them when iterating on something else. The
operator runs as in tests/e2e/rollout: short health interval, candidates
reached at their pod IPs (no Service networking in the local cluster).
Shared fixtures live in tests/e2e/conftest.py; the checks every test ends
with live in fault_checks.py.
"""

from __future__ import annotations

import pytest

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL), "--pod-addressing")
