"""Fixtures for the rollout e2e tests: the operator with short intervals and pod addressing.

The Docker-free dev cluster has no Service networking (pods run as local
processes on loopback IPs, no cluster DNS), so the operator runs with
``--pod-addressing``: shadow copies and golden replays go to a candidate
pod's IP instead of its per-revision Service. The shared fixtures live in
tests/e2e/conftest.py.
"""

from __future__ import annotations

import pytest

HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL), "--pod-addressing")
