"""Write pytest's assertion-rewritten test modules to __pycache__ once, on every core.

The unit suite's workers start together and each rewrites every test module it imports that
has no rewritten copy for this pytest yet: on a fresh clone about 5 s of each worker's
collection, the same work done twice. Here it is done once, the modules shared out among
one collecting process per core. Modules already rewritten are skipped; with only a few left
(a developer's edits) the workers do those themselves. A module that fails to import is left
to the run itself to report.

    python hack/rewrite_tests.py tests/unit
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Fewer stale modules than this are left to the workers (each rewrites a module in ~20 ms).
FEW = 20


def stale_test_modules(root: Path) -> list[Path]:
    """Test modules and conftests under ``root`` with no rewritten copy newer than their text."""
    tag = f"{sys.implementation.cache_tag}-pytest-{pytest.__version__}"
    found = []
    for path in sorted(root.rglob("*.py")):
        if not (path.name.startswith("test_") or path.name == "conftest.py"):
            continue
        rewritten = path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc"
        if not rewritten.exists() or rewritten.stat().st_mtime < path.stat().st_mtime:
            found.append(path)
    return found


def main(root: str) -> int:
    stale = stale_test_modules(Path(root))
    if len(stale) < FEW:
        return 0
    cores = max(1, min(os.cpu_count() or 1, len(stale) // FEW))
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist"]
    collecting = [
        subprocess.Popen(
            [*collect, "-p", "no:cacheprovider", *map(str, stale[core::cores])],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for core in range(cores)
    ]
    for process in collecting:
        process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
