"""Every suite needs the project's environment: say so once, not as a collection error."""

from __future__ import annotations

import importlib.util

import pytest

#: What `make install` puts in .venv that every suite imports or configures.
NEEDED = {
    "vigil": "the project itself",
    "pytest_asyncio": "pytest-asyncio",
    "pytest_timeout": "pytest-timeout",
}


def pytest_configure(config: pytest.Config) -> None:
    missing = [what for module, what in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.exit(
            f"this Python lacks {', '.join(missing)}: run `make test-unit` or `make test` "
            "(they install .venv), or `make install` and then `.venv/bin/python -m pytest ...`",
            returncode=4,
        )
