"""Every unit test gets a 60 s timeout unless it asks for its own (pytest-timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_TEST_TIMEOUT_SECONDS = 60
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees every collected item, the e2e suites' too when both run.
    for item in items:
        if item.path.is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TEST_TIMEOUT_SECONDS))
