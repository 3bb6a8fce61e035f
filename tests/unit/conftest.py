"""Every unit test gets a 60 s timeout unless it asks for its own (pytest-timeout); the
cyclic garbage collector is tuned for a run of short tests after one long collection, and
an xdist worker leaves without tearing its interpreter down."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path

import pytest

UNIT_TEST_TIMEOUT_SECONDS = 60
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees every collected item, the e2e suites' too when both run.
    for item in items:
        if item.path.is_relative_to(HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TEST_TIMEOUT_SECONDS))


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported lives to the end: out of the cyclic collector's sight, and
    # it runs a tenth as often (3 000-odd passes, 3 s of a run's CPU, became 800 and 1.7 s).
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _leave_at_once() -> None:
    # A worker's results are with the controller by now; freeing its heap object by object
    # held the run's end back by a second. Handlers registered after this one still run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_leave_at_once)
