"""Fixtures for the rollout e2e tests: the operator with short intervals.

Tests whose models run on the real node (they use ``store``) reach them as a
cluster would: the operator addresses a candidate at its per-revision
Service. The workload runner's kwok pods have no Service networking, so
tests still on it run the operator with ``--pod-addressing`` (shadow copies
and golden replays to a candidate pod's IP). The shared fixtures live in
tests/e2e/conftest.py.
"""

from __future__ import annotations

import pytest

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    args = ("--health-interval", str(HEALTH_INTERVAL))
    return args if "store" in request.fixturenames else (*args, "--pod-addressing")
