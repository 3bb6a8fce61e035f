"""Which slot a value falls in, against a profile's bin edges.

The one binning rule shared by the profile builder, the sidecar (which
counts live values in these slots) and the drift statistics
(:mod:`vigil.core.drift`, whose docstring states the convention): slot 0 is
underflow, ``len(edges)`` overflow, an inner bin includes its lower edge and
the last one also its upper edge.

Values and edges are compared as float32: a value equal to an edge in float32
is on that edge. Why: training data stored as float32 (a DataFrame, Parquet)
has edges such as 0.30000001192092896 while clients send 0.3, and an FP32
tensor carries 0.3f against a float64 edge of 0.3; compared exactly, every
such value fell a bin low (false drift, values out of range).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def bin_index(
    values: npt.ArrayLike,
    edges: npt.ArrayLike,
    bounds: tuple[npt.NDArray[np.float64], ...] | None = None,
) -> npt.NDArray[np.intp]:
    """Slot of each value against reference edges (see the module docstring).

    ``edges`` needs at least two values (a constant feature uses ``[c, c]``:
    one inner bin that holds exactly ``c``). Returns indices in
    ``0 .. len(edges)`` (always an array, also for a single value): 0 = underflow,
    ``len(edges)`` = overflow. NaN values get ``-1`` (missing, not binned).
    ``bounds``: :func:`float32_bounds` of the edges, when the caller keeps them.
    """
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError("edges must be a vector of at least 2 values")
    low, high = bounds if bounds is not None else float32_bounds(e)
    idx = np.searchsorted(low, v, side="right")
    on_last = (v < high[-1]) | (v == e[-1])  # the edge itself may round to its neighbour
    idx[(idx == e.size) & on_last] = e.size - 1  # on the last edge: inside
    idx[np.isnan(v)] = -1
    return idx


def float32_bounds(edges: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    """Per edge, the float64 values that are that edge in float32: ``[low, high)``.

    Half-way to the neighbouring float32 values; an edge beyond float32's range keeps
    its own value as both bounds.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # edges beyond float32: kept below
        e32 = edges.astype(np.float32)
        down = np.nextafter(e32, np.float32(-np.inf)).astype(np.float64)
        up = np.nextafter(e32, np.float32(np.inf)).astype(np.float64)
        centre = e32.astype(np.float64)
        low = (centre + down) / 2
        high = (centre + up) / 2
    inside = np.isfinite(centre) & np.isfinite(low) & np.isfinite(high)
    return np.where(inside, low, edges), np.where(inside, high, edges)
