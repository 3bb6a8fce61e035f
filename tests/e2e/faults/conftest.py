"""Fault tests: the operator, the API server, Prometheus and a sidecar fail mid-rollout.

They run in ``make test`` (marker ``faults``, never deselected by default);
``-m "not faults"`` skips them when iterating on something else. The
operator-kill test runs on the real node with the operator in the cluster
(fixtures ``on_real_node``, ``incluster_operator``); the others still run
the operator as a process on kwok pods (the workload runner): short health
interval, candidates reached at their pod IPs.
Shared fixtures live in tests/e2e/conftest.py; the checks every test ends
with live in fault_checks.py.
"""

from __future__ import annotations

import pytest

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL), "--pod-addressing")
