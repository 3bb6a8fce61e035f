"""Drift statistics computed from fixed bin counts.

Why bins and not raw samples: the sidecars only export counts per reference
bin (or per reference category) as Prometheus counters. Counts from many
replicas and many scrape windows add up exactly, so every statistic here
takes bin counts (or proportions) and nothing else. Pure NumPy, no I/O: the
operator's health evaluation and the tests call it directly.

Conventions (shared with :mod:`vigil.profile` and the sidecar):

* A numeric feature has reference edges ``e_0 < e_1 < ... < e_K`` (quantile
  edges, ``e_0`` = reference min, ``e_K`` = reference max). Its count vector
  has ``K + 2`` slots: ``[underflow, bin_1, ..., bin_K, overflow]``. A value
  ``v`` falls in slot ``i`` when ``e_{i-1} <= v < e_i`` (NumPy's convention:
  bins include their lower edge); the last inner bin also includes ``e_K``;
  underflow is ``v < e_0`` and overflow ``v > e_K``.
  :func:`vigil.profile.bins.bin_index` implements exactly this (the profile
  builder and the sidecar bin with it too).
* A categorical feature's count vector is ordered like the reference's
  top-K categories, followed by one ``other`` slot.
* Missing values (null, NaN) are never in a bin; they are counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from vigil.core.stats import Bounds, bisect_turn, normal_log_mixture, normal_p_values
from vigil.profile.bins import bin_index

__all__ = [
    "CHI_SQUARE_SCALE",
    "DEFAULT_EPSILON",
    "DriftMethod",
    "bin_index",
    "divergence",
    "drift_score",
    "js_distance",
    "ks_from_bins",
    "merge_category_counts",
    "merge_counts",
    "proportions",
    "psi",
    "rebin",
    "wasserstein_from_bins",
]

#: Floor for empty bins in PSI (the value Evidently uses): without it an
#: empty bin on either side makes ``ln(cur / ref)`` infinite.
DEFAULT_EPSILON: float = 1e-4

DriftMethod = Literal["psi", "jsd", "ks", "wasserstein"]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


def _as_vector(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts or proportions")
    return arr


def proportions(counts: ArrayLike) -> FloatArray:
    """Normalise counts to proportions that sum to 1.

    Raises ``ValueError`` when the total is zero: a window without data has
    no distribution, and callers must treat it as "insufficient data"
    rather than as "no drift".
    """
    arr = _as_vector(counts, "counts")
    total = float(arr.sum())
    if total <= 0.0:
        raise ValueError("counts sum to zero: no data to compare")
    return arr / total


def _pair(reference: ArrayLike, current: ArrayLike) -> tuple[FloatArray, FloatArray]:
    ref = proportions(reference)
    cur = proportions(current)
    if ref.shape != cur.shape:
        raise ValueError(f"bin count mismatch: reference {ref.size} vs current {cur.size}")
    return ref, cur


def psi(reference: ArrayLike, current: ArrayLike, epsilon: float = DEFAULT_EPSILON) -> float:
    """Population Stability Index: ``sum((cur - ref) * ln(cur / ref))``.

    Both inputs may be counts or proportions (each is normalised). Empty
    bins are floored at ``epsilon`` on both sides before the logarithm.
    Reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant shift.
    """
    ref, cur = _pair(reference, current)
    ref_e = np.maximum(ref, epsilon)
    cur_e = np.maximum(cur, epsilon)
    return float(np.sum((cur_e - ref_e) * np.log(cur_e / ref_e)))


def js_distance(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon distance with base-2 logarithms, in ``[0, 1]``.

    This is the square root of the JS divergence, the same quantity as
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``. No epsilon is
    needed: ``0 * log 0`` is taken as 0.
    """
    p, q = _pair(reference, current)
    m = 0.5 * (p + q)

    def _kl(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    divergence = 0.5 * _kl(p) + 0.5 * _kl(q)
    return float(np.sqrt(max(divergence, 0.0)))


def ks_from_bins(reference: ArrayLike, current: ArrayLike) -> float:
    """Largest gap between the two cumulative distributions at bin edges.

    The exact Kolmogorov-Smirnov statistic needs raw samples; evaluated only
    at the edges it is a lower bound of the exact one (the true gap may peak
    inside a bin). Only meaningful for ordered (numeric) bins.
    """
    ref, cur = _pair(reference, current)
    return float(np.max(np.abs(np.cumsum(ref) - np.cumsum(cur))))


def wasserstein_from_bins(
    reference: ArrayLike,
    current: ArrayLike,
    edges: ArrayLike,
    scale: float | None = None,
) -> float:
    """Approximate 1-Wasserstein distance: ``sum |F_ref - F_cur| * bin width``.

    ``reference`` and ``current`` have ``len(edges) + 1`` slots (underflow,
    inner bins, overflow). Each inner bin's mass sits at its centre and the
    underflow/overflow mass on the outer edges (they have no width), so this
    is the exact distance between those two discrete distributions and an
    approximation of the one between the raw samples. With ``scale`` (for
    example the reference standard deviation) the result is divided by it,
    which is Evidently's "normalised Wasserstein".
    """
    ref, cur = _pair(reference, current)
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or ref.size != e.size + 1:
        raise ValueError(f"{ref.size} slots need {ref.size - 1} edges (at least 2), got {e.size}")
    points = np.concatenate(([e[0]], 0.5 * (e[:-1] + e[1:]), [e[-1]]))
    gap = np.abs(np.cumsum(ref) - np.cumsum(cur))[:-1]
    distance = float(np.sum(gap * np.diff(points)))
    if scale is not None:
        if scale <= 0:
            return 0.0 if distance == 0.0 else float("inf")
        distance /= scale
    return distance


def drift_score(
    method: DriftMethod,
    reference: ArrayLike,
    current: ArrayLike,
    *,
    edges: ArrayLike | None = None,
    scale: float | None = None,
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """Dispatch to one method by name (the API's ``monitoring.drift.method``)."""
    if method == "psi":
        return psi(reference, current, epsilon)
    if method == "jsd":
        return js_distance(reference, current)
    if method == "ks":
        return ks_from_bins(reference, current)
    if method == "wasserstein":
        if edges is None:
            raise ValueError("wasserstein needs the bin edges")
        return wasserstein_from_bins(reference, current, edges, scale)
    raise ValueError(f"unknown drift method {method!r}")


def merge_counts(per_replica: Iterable[ArrayLike]) -> FloatArray:
    """Add count vectors from several replicas (or windows) slot by slot.

    Exact because every replica bins against the same reference edges.
    """
    total: FloatArray | None = None
    for counts in per_replica:
        arr = _as_counts(counts)
        if total is None:
            total = arr.copy()
        elif arr.shape != total.shape:
            raise ValueError(f"bin count mismatch: {total.size} vs {arr.size}")
        else:
            total += arr
    if total is None:
        raise ValueError("nothing to merge")
    return total


def _as_counts(values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"counts must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("counts must be finite and non-negative")
    return arr


def merge_category_counts(
    per_replica: Iterable[Mapping[str, float]],
    categories: Sequence[str] | None = None,
    other: str = "__other__",
) -> dict[str, float]:
    """Merge per-category counts from several replicas.

    With ``categories`` (the reference's top-K), labels outside that list
    are folded into ``other`` and every reference category is present (with
    0 if unseen), so the result lines up with the reference proportions.
    """
    merged: dict[str, float] = {}
    known = set(categories) if categories is not None else None
    for counts in per_replica:
        for label, value in counts.items():
            if value < 0:
                raise ValueError(f"negative count for {label!r}")
            key = label if known is None or label in known else other
            merged[key] = merged.get(key, 0.0) + float(value)
    if categories is not None:
        ordered = {c: merged.get(c, 0.0) for c in categories}
        ordered[other] = merged.get(other, 0.0)
        return ordered
    return merged


def _mass_below(
    counts: FloatArray, edges: FloatArray, x: FloatArray, *, inclusive: bool
) -> FloatArray:
    """Mass of a binned distribution below ``x`` (at or below with ``inclusive``).

    Inner bins spread their mass evenly over their width (a zero-width bin of
    a constant profile is a point mass at its edge); underflow sits just
    below the first edge and overflow just above the last: their values
    were never recorded, and that is the nearest they can be.
    """
    below = np.where(x >= edges[0], counts[0], 0.0)
    for i in range(1, edges.size):
        low, high, mass = edges[i - 1], edges[i], counts[i]
        if mass == 0:
            continue
        if high > low:
            below = below + mass * np.clip((x - low) / (high - low), 0.0, 1.0)
        else:
            below = below + np.where((x >= low) if inclusive else (x > low), mass, 0.0)
    return below + np.where(x > edges[-1], counts[-1], 0.0)


def rebin(counts: ArrayLike, edges: ArrayLike, target_edges: ArrayLike) -> FloatArray:
    """Counts recorded in the slots of ``edges``, spread over the slots of ``target_edges``.

    Both follow the module's slot convention (underflow, inner bins,
    overflow; :func:`bin_index`). Two revisions whose reference profiles have
    different bins count their predictions in different slots; comparing
    the slots one by one would compare unrelated ranges. Moving one of them
    onto the other's edges gives a common basis, exact when the edges are
    equal and otherwise an approximation: within an inner bin the values are
    taken as evenly spread.
    """
    source = _as_counts(counts)
    e = np.asarray(edges, dtype=np.float64)
    t = np.asarray(target_edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or source.size != e.size + 1:
        raise ValueError(f"{source.size} slots need {source.size - 1} edges (at least 2)")
    if t.ndim != 1 or t.size < 2:
        raise ValueError("target edges must be a vector of at least 2 values")
    if e.shape == t.shape and np.array_equal(e, t):
        return source.copy()
    # Slot j of the target holds t[j-1] <= v < t[j]; the last inner slot also holds t[-1].
    strictly = _mass_below(source, e, t, inclusive=False)
    at_top = _mass_below(source, e, t[-1:], inclusive=True)[0]
    upper = np.concatenate((strictly[1:-1], [at_top]))
    lower = strictly[:-1]
    out = np.concatenate(([strictly[0]], upper - lower, [source.sum() - at_top]))
    return np.maximum(out, 0.0)


# -- sample-size-aware divergence -------------------------------------------------------------

#: Times the effective sample size, each method's divergence is a chi-square statistic
#: with (slots - 1) degrees of freedom when nothing drifted: PSI ~ sum (p - q)^2 / m,
#: and the Jensen-Shannon divergence (base 2) ~ that / (8 ln 2).
CHI_SQUARE_SCALE: dict[str, float] = {"psi": 1.0, "jsd": 8.0 * math.log(2.0)}
#: Pseudo-count per slot (Jeffreys): an empty slot of a small sample reads as rare, not as
#: a logarithm of zero.
_PSEUDO_COUNT = 0.5
#: The least scale a divergence test mixes over, in PSI (JSD: the same noise), fixed
#: before any data, far under a useful threshold: a threshold of 0 still fails a shift.
MIXING_FLOOR = 0.01
#: Rows per slot before a divergence is judged: the chi-square approximation needs about
#: five expected counts per slot.
ROWS_PER_SLOT = 5.0


@dataclass(frozen=True)
class Divergence:
    """A divergence between two samples, corrected for sample size.

    Two samples of one distribution never show a divergence of 0: PSI over
    ``k + 1`` slots reads about ``k / rows`` on noise alone (``rows`` the
    effective sample size, ``n1 n2 / (n1 + n2)``; a reference profile counts
    as a sample of its own rows). ``estimate`` subtracts that, and tests of
    "the true divergence is above (below) a threshold" use the noncentral
    chi-square variance ``2 (k + 2 rows D) / rows^2`` at the tested value D,
    in a normal-mixture sequential test valid at every look.

    ``raw`` is the method's score on the counts (:func:`drift_score`);
    ``estimate`` and every bound are in the method's units (Jensen-Shannon:
    a distance, so the divergence's square root).
    """

    method: str
    raw: float
    #: Bias-corrected, on the divergence scale (JSD: distance squared).
    corrected: float
    #: Effective sample size n1 n2 / (n1 + n2); rows of the current sample alone.
    rows: float
    df: int
    current_rows: float = 0.0
    #: Rows of a fixed reference profile (inf: exact proportions); None: the reference is
    #: a second sample, growing with traffic like the current one.
    reference_rows: float | None = None

    @property
    def scale(self) -> float:
        return CHI_SQUARE_SCALE[self.method]

    def to_divergence(self, value: float) -> float:
        """A threshold or value in the method's units, on the divergence scale."""
        return value * value if self.method == "jsd" else value

    def from_divergence(self, value: float) -> float:
        value = max(value, 0.0)
        return math.sqrt(value) if self.method == "jsd" else value

    @property
    def estimate(self) -> float:
        return self.from_divergence(self.corrected)

    def variance(self, divergence: float) -> float:
        """Variance of the corrected estimate when the true divergence is ``divergence``."""
        n = self.rows * self.scale
        return 2.0 * (self.df + 2.0 * n * max(divergence, 0.0)) / (n * n)

    def _mixing(self, tested: float, threshold: float) -> float:
        """The normal mixture's variance for testing ``tested`` (divergence scale): deviations
        of the threshold's size (at least :data:`MIXING_FLOOR`'s), or of the tested value's
        far from it (every value far from the data is rejected: the interval is finite)."""
        return max(threshold, tested, MIXING_FLOOR / self.scale) ** 2

    def bounds(self, alpha: float, threshold: float, *, interval: bool = True) -> Bounds:
        """The confidence sequence at ``alpha`` (method's units) and the test of ``threshold``
        (``interval=False``: the test alone). Up to the ``knee`` every value is tested with
        the verdict's mixing, so the interval holds the threshold exactly when the verdict
        does not reject it; each end is searched on that stretch first."""
        tested = self.to_divergence(threshold)
        level = math.log(1.0 / alpha)
        value = self.corrected
        mixing = self._mixing(tested, tested)
        above, below = normal_p_values(value, tested, self.variance(tested), mixing)
        if not interval:
            return Bounds(0.0, math.inf, above, below)

        def rejected(divergence: float) -> bool:
            deviation = value - divergence
            mixing = self._mixing(divergence, tested)
            return normal_log_mixture(deviation, self.variance(divergence), mixing) >= level

        knee = math.sqrt(mixing)
        low = _low_end(rejected, value, knee) if value > 0 and rejected(0.0) else 0.0
        high = _high_end(rejected, max(value, 0.0), knee)
        return Bounds(self.from_divergence(low), self.from_divergence(high), above, below)

    def scaled(self, factor: float) -> Divergence:
        """The same estimate on ``factor`` times the current rows (how many would decide).

        A fixed reference profile does not grow: the effective rows tend to its rows,
        however many current rows come.
        """
        current = self.current_rows * factor
        if self.reference_rows is None:
            return replace(self, rows=self.rows * factor, current_rows=current)
        rows = 1.0 / (1.0 / current + 1.0 / self.reference_rows)
        return replace(self, rows=rows, current_rows=current)


def _low_end(rejected: Callable[[float], bool], value: float, knee: float) -> float:
    """The lowest value kept below ``value`` (0 rejected), up to the ``knee`` first."""
    start, end = (knee, value) if knee < value and rejected(knee) else (0.0, min(value, knee))
    return bisect_turn(lambda d: not rejected(d), start, end)


def _high_end(rejected: Callable[[float], bool], value: float, knee: float) -> float:
    """The highest value kept above ``value``, up to the ``knee`` first (inf: none far)."""
    if value < knee and rejected(knee):
        return bisect_turn(rejected, value, knee)
    start = max(value, knee)
    top = max(start, 1e-3) * 2.0
    while not rejected(top) and top < 1e6:
        top *= 2.0
    return bisect_turn(rejected, start, top) if rejected(top) else math.inf


def _scores(method: str, reference: list[float], current: list[float], floor: float) -> float:
    """PSI or JS distance of two count vectors, each normalised; slots floored at ``floor``
    (PSI). Plain Python: a dozen slots cost less than NumPy's call overhead."""
    ref_total, cur_total = sum(reference), sum(current)
    if method == "psi":
        score = 0.0
        ln = math.log
        for r, c in zip(reference, current, strict=True):
            p, q = r / ref_total, c / cur_total
            if p < floor:
                p = floor
            if q < floor:
                q = floor
            score += (q - p) * ln(q / p)
        return score
    divergence = 0.0
    for r, c in zip(reference, current, strict=True):
        p, q = r / ref_total, c / cur_total
        m = 0.5 * (p + q)
        if p > 0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0:
            divergence += 0.5 * q * math.log2(q / m)
    return math.sqrt(max(divergence, 0.0))


def _counts(values: ArrayLike) -> list[float]:
    """Counts as a flat list of floats (a list or tuple of numbers without NumPy's
    round trip: the gates read a dozen slots per feature, many times a cycle)."""
    if isinstance(values, list | tuple):
        try:
            return [float(x) for x in values]
        except TypeError:  # nested: NumPy flattens it
            pass
    return np.asarray(values, dtype=np.float64).ravel().tolist()


def divergence(
    method: DriftMethod,
    reference: ArrayLike,
    current: ArrayLike,
    *,
    reference_rows: float | None = None,
) -> Divergence | None:
    """The sample-size-aware divergence of ``current`` counts from ``reference``.

    ``reference`` holds counts of a second sample, or with ``reference_rows``
    the proportions of a reference profile built from that many rows
    (``math.inf``: exact proportions). None when ``current`` has fewer than
    :data:`ROWS_PER_SLOT` rows per slot in use, or the method has no
    chi-square form (ks, wasserstein).
    """
    if method not in CHI_SQUARE_SCALE:
        return None
    cur, ref = _counts(current), _counts(reference)
    if len(ref) != len(cur):
        raise ValueError(f"bin count mismatch: reference {len(ref)} vs current {len(cur)}")
    if not all(math.isfinite(x) and x >= 0 for x in (*ref, *cur)):
        raise ValueError("counts must be finite and non-negative")
    exact = reference_rows is not None and math.isinf(reference_rows)
    if reference_rows is not None and not exact:
        total = sum(ref)
        ref = [x / total * reference_rows for x in ref] if total > 0 else ref
    n_cur, n_ref = sum(cur), sum(ref)
    used = [i for i, (r, c) in enumerate(zip(ref, cur, strict=True)) if r > 0 or c > 0]
    slots = len(used)
    if slots < 2 or n_ref <= 0 or n_cur < ROWS_PER_SLOT * slots:
        return None
    rows = n_cur if exact else n_cur * n_ref / (n_cur + n_ref)
    pseudo = 0.0 if exact else _PSEUDO_COUNT
    smooth_ref = [ref[i] + pseudo for i in used]
    smooth_cur = [cur[i] + _PSEUDO_COUNT for i in used]
    score = _scores(method, smooth_ref, smooth_cur, DEFAULT_EPSILON)
    on_scale = score * score if method == "jsd" else score
    df = slots - 1
    corrected = on_scale - df / (CHI_SQUARE_SCALE[method] * rows)
    raw = _scores(method, ref, cur, DEFAULT_EPSILON)
    return Divergence(method, raw, corrected, rows, df, n_cur, reference_rows)
