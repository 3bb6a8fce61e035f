"""Write pytest's assertion-rewritten test modules to __pycache__ once, on every core.

The unit suite's workers start together and each rewrites every test module it imports that
has no rewritten copy for this pytest yet: on a fresh clone about 5 s of each worker's
collection, the same work done twice. Here it is done once, the modules shared out among the
cores, without importing them. Modules already rewritten are skipped; with only a few left (a
developer's edits) the workers do those themselves. A copy pytest would not have written
alike (another pytest, another format) is one it refuses and rewrites: never a wrong test.

    python hack/rewrite_tests.py tests/unit
"""

from __future__ import annotations

import ast
import importlib.util
import marshal
import os
import struct
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _pytest.assertion.rewrite import PYTEST_TAG, get_cache_dir, rewrite_asserts

#: Fewer stale modules than this are left to the workers (each rewrites a module in ~20 ms).
FEW = 20


def rewritten_copy(path: Path) -> Path:
    """Where pytest keeps ``path``'s rewritten module."""
    return get_cache_dir(path) / f"{path.stem}.{PYTEST_TAG}.pyc"


def stale_test_modules(root: Path) -> list[Path]:
    """Test modules and conftests under ``root`` with no rewritten copy newer than their text."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if not (path.name.startswith("test_") or path.name == "conftest.py"):
            continue
        copy = rewritten_copy(path)
        if not copy.exists() or copy.stat().st_mtime < path.stat().st_mtime:
            found.append(path)
    return found


def rewrite(path: Path) -> None:
    """What pytest's import hook writes for ``path``: its header (the interpreter's magic
    number, no flags, the source's mtime and size), then the rewritten code. A module that
    does not parse is left to the run, which says why."""
    stat = path.stat()
    source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return
    rewrite_asserts(tree, source, str(path))
    code = compile(tree, str(path), "exec", dont_inherit=True)
    copy = rewritten_copy(path)
    copy.parent.mkdir(exist_ok=True)
    partial = copy.with_name(f"{copy.name}.{os.getpid()}")
    header = struct.pack("<LL", int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)
    partial.write_bytes(importlib.util.MAGIC_NUMBER + b"\0\0\0\0" + header + marshal.dumps(code))
    partial.replace(copy)


def main(root: str) -> int:
    stale = stale_test_modules(Path(root))
    if len(stale) >= FEW:
        with ProcessPoolExecutor(os.cpu_count() or 1) as cores:
            list(cores.map(rewrite, stale, chunksize=8))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
