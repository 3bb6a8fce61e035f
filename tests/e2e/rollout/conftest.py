"""Fixtures for the rollout e2e tests: the operator with short intervals.

Every test here runs its models on the real node (it uses ``store``), and the
operator reaches them as a cluster would: a candidate at its per-revision
Service, by name, through the cluster's DNS. The shared fixtures live in
tests/e2e/conftest.py.
"""

from __future__ import annotations

import pytest

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL))
