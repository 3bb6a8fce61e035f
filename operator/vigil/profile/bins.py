"""Which slot a value falls in, against a profile's bin edges.

The one binning rule shared by the profile builder, the sidecar (which
counts live values in these slots) and the drift statistics
(:mod:`vigil.core.drift`, whose docstring states the convention): slot 0 is
underflow, ``len(edges)`` overflow, an inner bin includes its lower edge and
the last one also its upper edge.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def bin_index(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Slot of each value against reference edges (see the module docstring).

    ``edges`` needs at least two values (a constant feature uses ``[c, c]``:
    one inner bin that holds exactly ``c``). Returns indices in
    ``0 .. len(edges)`` (always an array, also for a single value): 0 = underflow,
    ``len(edges)`` = overflow. NaN values get ``-1`` (missing, not binned).
    """
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError("edges must be a vector of at least 2 values")
    idx = np.searchsorted(e, v, side="right")
    idx[v == e[-1]] = e.size - 1
    idx[np.isnan(v)] = -1
    return idx
