"""Fixtures for the health e2e tests: the operator with a short health interval.

The shared fixtures (`operator`, `kube`, `vigil_installed`) live in
tests/e2e/conftest.py; only the operator's flags differ here.
"""

from __future__ import annotations

import pytest

#: Seconds between two health cycles in these tests (production default: 30).
HEALTH_INTERVAL = 3


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--health-interval", str(HEALTH_INTERVAL))
