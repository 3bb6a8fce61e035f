"""Every unit test gets a 60 s timeout unless it asks for its own (pytest-timeout); a
plain `pytest tests/unit` runs on every core as `make test-unit` does; the cyclic garbage
collector is tuned for a run of short tests after one long collection, and an xdist
worker leaves without tearing its interpreter down."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path

import pytest

UNIT_TEST_TIMEOUT_SECONDS = 60
HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Ahead of pytest-xdist's own hook, which turns "auto" into one worker per core.
    if _should_start_workers(config):
        config.option.numprocesses = "auto"


def _should_start_workers(config: pytest.Config) -> bool:
    """True for `pytest tests/unit` (or folders in it) with no -n, -p no:xdist or --pdb,
    on more than one core: single files and node ids stay in one process, as does a
    run that reaches past the unit tests (the e2e suites choose their own workers)."""
    if getattr(config.option, "numprocesses", 0) is not None or config.option.usepdb:
        return False
    if os.environ.get("PYTEST_XDIST_WORKER") or (os.cpu_count() or 1) < 2:
        return False
    invoked_in = config.invocation_params.dir
    paths = [(invoked_in / arg.split("::")[0]).resolve() for arg in config.args]
    return (
        bool(paths)
        and all(path.is_relative_to(HERE) for path in paths)
        and any(path.is_dir() for path in paths)
    )


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
