"""Give the heap memory Python freed back to the system (glibc keeps it otherwise).

Why: after a burst of ModelDeployments the RSS stayed at its high-water mark,
glibc keeping the freed pages in its arenas (docs/design/api-traffic.md).
The health loop calls it after each cycle; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_MALLOC_TRIM = _find_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the system; True when some were returned."""
    return _MALLOC_TRIM is not None and bool(_MALLOC_TRIM(0))
