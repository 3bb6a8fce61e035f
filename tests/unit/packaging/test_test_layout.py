"""The test tree itself: pytest imports test modules by basename (rootdir mode)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_every_test_module_basename_is_unique() -> None:
    # Without __init__.py files, two test modules with one basename make the
    # whole collection fail ("import file mismatch"), not just one folder.
    paths: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        paths[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: found for name, found in paths.items() if len(found) > 1}
    assert not clashes, f"test modules sharing a basename: {clashes}"
