"""Returning freed heap memory to the system after a burst."""

from __future__ import annotations

import platform

from vigil.operator.memory import release_free_memory


def test_freed_memory_is_returned_on_glibc_and_nothing_breaks_elsewhere() -> None:
    garbage = [bytes(1000) for _ in range(50_000)]  # 50 MB of small blocks, then freed
    del garbage
    released = release_free_memory()
    if platform.libc_ver()[0] == "glibc":
        assert released
    else:
        assert released is False
