"""Fault tests: the operator, the API server, Prometheus and a sidecar fail mid-rollout.

They run in ``make test`` (marker ``faults``, never deselected by default);
``-m "not faults"`` skips them when iterating on something else. Every one
runs its model pods on a real node, as real containers served from a volume
(fixture ``store``; the API server test on a cluster of its own), and sends
live traffic through the Service's ClusterIP. The operator-kill test runs
the operator in the cluster (fixtures ``on_real_node``,
``incluster_operator``); the others run it as a process with its
ServiceAccount's token and a short health interval, reaching candidates at
their Services through the cluster's DNS.
Shared fixtures live in tests/e2e/conftest.py; the checks every test ends
with live in fault_checks.py.
"""

from __future__ import annotations

import pytest

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL))
