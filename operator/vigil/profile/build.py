"""Build a reference profile from a NumPy array or a pandas DataFrame.

Why quantile bins: with ~10 equally populated bins every bin holds ~10 %
of the reference, so PSI is sensitive across the whole range and no bin is
empty by construction. The edges are kept in the profile so that sidecars
and the operator count and compare against the very same bins.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import numbers
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.common.labels import class_key
from vigil.common.times import format_time
from vigil.profile import model
from vigil.profile.bins import bin_index, float32_bounds
from vigil.profile.model import ProfileError

__all__ = [
    "build_profile",
    "check_unique_columns",
    "frame_column",
    "infer_task",
    "profile_column",
    "validation_score",
]

#: Default number of quantile bins per numeric feature (plus underflow/overflow).
DEFAULT_BINS = 10
#: Default number of categories kept per categorical feature (plus "other").
DEFAULT_TOP_K = 10
#: Categorical features with at most this many distinct values list them all
#: as the allowed set; above it the set is open (no out-of-set counting).
DEFAULT_MAX_ALLOWED = 1000
#: A prediction column of whole numbers with at most this many distinct values
#: is taken as class labels when ``task`` is not given (see :func:`infer_task`).
MAX_CLASSES_GUESS = 50


def _is_numeric_array(values: npt.NDArray[Any]) -> bool:
    return values.dtype.kind in "iuf" and values.dtype.kind != "b"


def _number(value: object) -> float | None:
    """A number's float (Decimal too: pyarrow's decimal128); None for anything else."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | decimal.Decimal):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):  # a signalling Decimal NaN, a Fraction past 1e308
        return None


def _to_float(values: npt.NDArray[Any]) -> npt.NDArray[np.float64] | None:
    """Float view of a column, or ``None`` when it holds non-numbers."""
    if _is_numeric_array(values):
        return values.astype(np.float64)
    if values.dtype.kind != "O":
        return None
    out = np.empty(values.shape[0], dtype=np.float64)
    for i, v in enumerate(values):
        number = np.nan if v is None else _number(v)
        if number is None:
            return None
        out[i] = number
    return out


def reads_as_number(value: object) -> bool:
    """Whether a value is a number, or text that reads as one."""
    if _number(value) is not None:
        return True
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_not_numbers_with_words(source: str, values: npt.NDArray[Any]) -> None:
    """Refuse a column of numbers with a few words in it (a missing-value marker such as "?").

    Read as categorical it would be unmonitored as a number without a word; which the
    words are (missing values or categories) only the user knows. Text that is mostly
    words, or only numbers written as text (zip codes), stays categorical.
    """
    if values.dtype.kind != "O":
        return
    try:
        counts = Counter(v for v in values if v is not None)
    except TypeError:  # lists or dicts in it: no column of numbers
        return
    present = sum(counts.values())
    words: Counter[Any] = Counter()
    held = 0
    for value, n in counts.items():  # distinct values: a text column has few
        if not reads_as_number(value):
            words[value] = n
            held += n
            if held * 2 >= present:  # mostly words: categorical, as it reads
                return
    if not words:
        return
    shown = ", ".join(
        f"{word!r} ({n} row{'s' if n > 1 else ''})" for word, n in words.most_common(5)
    )
    more = f" and {len(words) - 5} more" if len(words) > 5 else ""
    # --missing-values splits at commas: a value holding one cannot be named there.
    named = [str(word) for word, _ in words.most_common(5) if "," not in str(word)]
    option = f"vigil profile build --missing-values '{','.join(named)}', " if named else ""
    thousands = any(
        "," in str(word) and reads_as_number(str(word).replace(",", "")) for word in words
    )
    separators = (
        "; numbers written with a thousands separator ('1,234') must be written without"
        if thousands
        else ""
    )
    # --missing-values reads CSV only: a Parquet file or a DataFrame is rewritten instead.
    raise ProfileError(
        f"column {source!r} holds numbers and {held} "
        f"{'values that are' if held > 1 else 'value that is'} not: {shown}{more}"
        f"{separators}; if they mark missing values, read them as "
        f"missing (a CSV file: {option}pandas: na_values; a Parquet file or a DataFrame: "
        "store the column as numbers with nulls, pandas.to_numeric(column, errors='coerce')), "
        f"if they are categories, declare the column categorical (--categorical {source})"
    )


def _check_float32_edges(source: str, edges: npt.NDArray[np.float64]) -> None:
    """Warn when bin edges are one number in float32, the precision values are binned at.

    Bins between such edges stay empty (a range about 1e-7 of the values' magnitude or
    narrower falls in one bin), so drift inside them is not seen; binning is kept as is.
    """
    low, _ = float32_bounds(edges)
    distinct = int(np.unique(low).size)
    if edges[0] == edges[-1] or distinct == edges.size:
        return  # a constant feature has its two equal edges by design
    warnings.warn(
        model.ProfileWarning(
            f"column {source!r}: its {edges.size - 1} bins ({edges[0]:.10g} .. "
            f"{edges[-1]:.10g}) merge into {max(distinct - 1, 1)} in float32, the precision "
            "values are binned at (about 7 significant digits): drift within them goes "
            "unseen; subtract an offset or rescale the column"
        ),
        stacklevel=3,
    )


def _midpoints(low: npt.NDArray[np.float64], high: npt.NDArray[np.float64]) -> Any:
    # Halves first: (low + high) / 2 overflows for values near the float limit.
    return low / 2 + high / 2


def _quantile_edges(x: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    """Bin edges for the values ``x``, binned as :func:`~vigil.profile.bins.bin_index` bins.

    At most ``bins`` distinct values get one bin each (edges at the smallest value, the
    midpoints, the largest). Else quantile edges, where a value that holds more than a
    bin's share of the rows (it fills a quantile edge or more) gets a bin of its own:
    sharing one, a shift between it and its neighbours (no refund to a refund) read as
    no drift.
    """
    distinct, counts = np.unique(x, return_counts=True)
    if distinct.size == 1:  # a constant: one bin that holds exactly it
        return np.array([distinct[0], distinct[0]])
    if distinct.size <= bins:
        inner = _midpoints(distinct[:-1], distinct[1:])
        return np.unique(np.concatenate([distinct[:1], inner, distinct[-1:]]))
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)))
    heavy = np.flatnonzero(counts * bins > x.size)
    return np.unique(np.concatenate([edges, _own_bins(heavy, distinct, edges)]))


def _own_bins(heavy: Any, distinct: Any, edges: npt.NDArray[np.float64]) -> list[float]:
    """Edges that put each value ``distinct[heavy]`` in a bin of its own.

    One half-way to each neighbour value that shares its bin under the binning rule
    (quantile edges are interpolated: a few ulps off the value, equal in float32).
    """
    slots = bin_index(distinct, edges)
    split = []
    for at in heavy:
        for near in (at - 1, at + 1):
            if 0 <= near < distinct.size and slots[near] == slots[at]:
                low, high = sorted((distinct[at], distinct[near]))
                split.append(float(_midpoints(low, high)))
    return split


def _rows(indices: Sequence[int]) -> str:
    """Data rows (0-based positions) as a user counts them, from 1; the first few."""
    shown = ", ".join(str(i + 1) for i in indices[:5])
    more = f" (and {len(indices) - 5} more)" if len(indices) > 5 else ""
    return f"data row{'s' if len(indices) > 1 else ''} {shown}{more}"


def _check_finite(source: str, numeric: npt.NDArray[np.float64]) -> None:
    """Refuse +-inf: bins, mean and std would be infinite, and JSON has no infinity."""
    infinite = np.flatnonzero(np.isinf(numeric))
    if infinite.size:
        first = int(infinite[0])
        raise ProfileError(
            f"column {source!r}: {_rows([first])} holds {numeric[first]:g} (not a finite number)"
        )


def _summary(x: npt.NDArray[np.float64], source: str) -> model.Summary:
    # Sorted: a float sum depends on the order, and the fingerprint must not on row order.
    x = np.sort(x)
    # Finite values near the float limit (about 1e154 and up) overflow the std's squares.
    with np.errstate(over="ignore", invalid="ignore"):
        summary = model.Summary(
            mean=float(np.mean(x)),
            std=float(np.std(x)),
            min=float(np.min(x)),
            max=float(np.max(x)),
            median=float(np.median(x)),
        )
    for figure, value in summary.to_dict().items():
        if not math.isfinite(value):
            raise ProfileError(
                f"column {source!r}: its {figure} does not fit a float (values up to "
                f"{float(np.max(np.abs(x))):g}): rescale the column"
            )
    return summary


def profile_column(
    name: str,
    values: npt.ArrayLike,
    *,
    index: int = 0,
    categorical: bool | None = None,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    max_allowed: int = DEFAULT_MAX_ALLOWED,
    source: str | None = None,
    prediction: bool = False,
) -> model.FeatureProfile:
    """Profile one column. ``categorical=None`` decides from the data type.

    ``source``: the column's name in the data for error messages (default ``name``);
    ``prediction``: the column holds the model's outputs, not a feature (said in them).
    Missing values (NaN, None) are counted apart; an infinite one is an error.
    """
    source = source or name
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ProfileError(f"column {source!r} must be one-dimensional")
    if arr.size == 0:
        raise ProfileError(f"column {source!r} is empty")
    if arr.dtype.kind == "O":
        _check_scalars(source, arr, prediction)
    numeric = _to_float(arr)
    if categorical is None:
        if numeric is None:
            _check_not_numbers_with_words(source, arr)
        categorical = numeric is None
    if not categorical and numeric is None:
        raise ProfileError(f"column {source!r} holds non-numeric values")
    total = arr.shape[0]
    if numeric is not None:
        _check_finite(source, numeric)

    if not categorical:
        assert numeric is not None
        present = numeric[~np.isnan(numeric)]
        if present.size == 0:
            raise _no_values(source, prediction)
        summary = _summary(present, source)
        with np.errstate(over="ignore", invalid="ignore"):
            edges = _quantile_edges(present, bins)
        if not np.isfinite(edges).all():
            # Interpolating between values near -1e308 and 1e308 overflows.
            raise ProfileError(f"column {source!r}: its bin edges do not fit a float: rescale it")
        _check_float32_edges(source, edges)
        counts = np.bincount(bin_index(present, edges), minlength=edges.size + 1)
        return model.FeatureProfile(
            name=name,
            index=index,
            type="numeric",
            count=int(present.size),
            null_rate=float(1.0 - present.size / total),
            nullable=bool(present.size < total),
            proportions=tuple(float(c) for c in counts / present.size),
            summary=summary,
            edges=tuple(float(e) for e in edges),
        )

    keys = _category_keys(arr)
    present_keys = [k for k in keys if k is not None]
    if not present_keys:
        raise _no_values(source, prediction)
    if model.OTHER in present_keys:
        raise ProfileError(f"column {source!r}: the value {model.OTHER!r} is reserved")
    counter = Counter(present_keys)
    # Most common first; ties by name so that the profile is deterministic.
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [k for k, _ in ranked[:top_k]]
    n = len(present_keys)
    props = [counter[k] / n for k in top]
    props.append(1.0 - sum(counter[k] for k in top) / n)
    summary = None
    if numeric is not None:
        present_num = numeric[~np.isnan(numeric)]
        summary = _summary(present_num, source)
    allowed = tuple(sorted(counter)) if len(counter) <= max_allowed else None
    return model.FeatureProfile(
        name=name,
        index=index,
        type="categorical",
        count=n,
        null_rate=float(1.0 - n / total),
        nullable=bool(n < total),
        proportions=tuple(max(p, 0.0) for p in props),
        summary=summary,
        categories=tuple(top),
        allowed=allowed,
    )


#: Values JSON carries as arrays or objects (Parquet list, struct and map columns).
_NESTED = (list, tuple, dict, set, frozenset, np.ndarray)


def _check_scalars(source: str, values: npt.NDArray[Any], prediction: bool) -> None:
    """Refuse a column of lists, structs or maps: keyed as text such as "[1 2]", which no
    JSON value matches (the sidecar counts a JSON array or object as a type violation)."""
    nested = next((v for v in values if isinstance(v, _NESTED)), None)
    if nested is None:
        return
    remedy = (
        "a prediction column holds one class label or number per row"
        if prediction
        else "a profile has no type for them: leave it out of the features (vigil profile "
        "build --features) or split it into columns of numbers or text"
    )
    raise ProfileError(
        f"column {source!r} holds lists or records (such as {_shorten(repr(nested))}), "
        f"not one number or text per row; {remedy}"
    )


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_values(source: str, prediction: bool) -> ProfileError:
    """A column without a value has nothing to profile: what to do instead."""
    remedy = (
        "fill it with the model's outputs, or build without it (no --prediction-column)"
        if prediction
        else "leave it out of the features (vigil profile build --features), or fill it"
    )
    return ProfileError(f"column {source!r} has no values (all missing): {remedy}")


def _category_keys(arr: npt.NDArray[Any]) -> list[str | None]:
    """Each value's :func:`~vigil.profile.model.category_key`.

    A float32 (float16) value is keyed as the float32 it is, not as the float64 it
    widens to (see ``category_key``); such a column is keyed once per distinct value.
    """
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        distinct, inverse = np.unique(arr, return_inverse=True)
        keys = [model.category_key(v) for v in distinct]
        return [keys[i] for i in inverse.reshape(-1)]
    return [
        model.category_key(
            v
            if isinstance(v, np.float16 | np.float32)
            else v.item()
            if isinstance(v, np.generic)
            else v
        )
        for v in arr
    ]


def infer_task(values: npt.ArrayLike) -> tuple[model.Task, str]:
    """The task a prediction (or target) column suggests, and why, in words.

    Text and booleans are class labels; numbers with a fractional part are a
    regression target; whole numbers are class labels only when there are
    few distinct values (at most :data:`MAX_CLASSES_GUESS`): a count or a
    score in whole units with hundreds of values is a regression target.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "b" or (
        arr.dtype.kind == "O"
        and any(v is not None for v in arr)
        and all(isinstance(v, bool | np.bool_) for v in arr if v is not None)
    ):
        return "classification", "boolean values"
    numeric = _to_float(arr)
    if numeric is None:
        return "classification", "non-numeric values (class labels)"
    present = numeric[~np.isnan(numeric)]
    if present.size == 0:
        return "regression", "no values (all missing)"
    with np.errstate(invalid="ignore"):  # inf has no remainder; building then refuses it
        fractional = present[np.mod(present, 1) != 0]
    if fractional.size:
        return "regression", f"numbers with a fractional part (e.g. {fractional[0]:g})"
    distinct = int(np.unique(present).size)
    if distinct <= MAX_CLASSES_GUESS:
        return (
            "classification",
            f"{distinct} distinct whole numbers (at most {MAX_CLASSES_GUESS}: class labels)",
        )
    return (
        "regression",
        f"{distinct} distinct whole numbers (more than {MAX_CLASSES_GUESS}: not class labels)",
    )


def build_profile(
    data: Any,
    *,
    predictions: npt.ArrayLike | None = None,
    prediction_column: str | None = None,
    feature_names: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    task: model.Task | None = None,
    model_name: str = "",
    model_version: str = "",
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    max_allowed: int = DEFAULT_MAX_ALLOWED,
    drift: model.DriftDefaults | None = None,
    created_at: dt.datetime | None = None,
) -> model.ReferenceProfile:
    """Build a profile from a 2-D NumPy array or a pandas DataFrame.

    ``data`` holds one row per example and the features in model input
    order. Predictions come from ``predictions`` (array) or from the
    DataFrame column ``prediction_column`` (removed from the features).
    ``task`` defaults to what :func:`infer_task` finds in the predictions
    (regression without predictions).
    """
    if bins < 1 or top_k < 1:
        raise ProfileError("bins and top_k must be at least 1")
    columns: list[tuple[str, npt.NDArray[Any]]]
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # a pandas DataFrame
        frame = data
        check_unique_columns(frame.columns)
        if prediction_column is not None:
            if prediction_column not in frame.columns:
                raise ProfileError(f"prediction column {prediction_column!r} not found")
            if predictions is not None:
                raise ProfileError("give predictions or prediction_column, not both")
            predictions = frame_column(frame[prediction_column])
            frame = frame.drop(columns=[prediction_column])
        names = [str(c) for c in frame.columns]
        if feature_names is None:
            _check_named(names)
        columns = [(n, frame_column(frame[c])) for n, c in zip(names, frame.columns, strict=True)]
    else:
        if prediction_column is not None:
            raise ProfileError("prediction_column needs a DataFrame")
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise ProfileError(f"data must be 2-D (rows x features), got shape {arr.shape}")
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"f{i}" for i in range(arr.shape[1])]
        )
        if len(names) != arr.shape[1]:
            raise ProfileError(f"{len(names)} feature names for {arr.shape[1]} columns")
        columns = [(n, arr[:, i]) for i, n in enumerate(names)]
    if feature_names is not None and hasattr(data, "columns"):
        if len(feature_names) != len(columns):
            raise ProfileError(f"{len(feature_names)} feature names for {len(columns)} columns")
        columns = [(str(n), col) for n, (_, col) in zip(feature_names, columns, strict=True)]
    if not columns:
        raise ProfileError("no feature columns")
    _check_names([n for n, _ in columns])
    if len({n for n, _ in columns}) != len(columns):
        raise ProfileError("duplicate feature names")
    unknown = set(categorical) - {n for n, _ in columns}
    if unknown:
        raise ProfileError(f"categorical features not in the data: {sorted(unknown)}")
    row_count = int(columns[0][1].shape[0])
    features = tuple(
        profile_column(
            name,
            col,
            index=i,
            categorical=True if name in categorical else None,
            bins=bins,
            top_k=top_k,
            max_allowed=max_allowed,
        )
        for i, (name, col) in enumerate(columns)
    )
    prediction = None
    resolved_task: model.Task = task or "regression"
    if predictions is not None:
        pred = np.asarray(predictions)
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.ndim != 1 or pred.shape[0] != row_count:
            raise ProfileError(f"predictions need shape ({row_count},), got {pred.shape}")
        resolved_task = task or infer_task(pred)[0]
        prediction = profile_column(
            "prediction",
            pred,
            categorical=resolved_task == "classification",
            bins=bins,
            top_k=max(top_k, MAX_CLASSES_GUESS) if resolved_task == "classification" else top_k,
            max_allowed=max_allowed,
            source=prediction_column or "predictions",
            prediction=True,
        )
    when = created_at or dt.datetime.now(dt.UTC)
    return model.ReferenceProfile(
        model_name=model_name,
        model_version=model_version,
        row_count=row_count,
        created_at=format_time(when),
        task=resolved_task,
        features=features,
        prediction=prediction,
        drift=drift or model.DriftDefaults(),
    )


def validation_score(
    predictions: npt.ArrayLike,
    truths: npt.ArrayLike,
    task: model.Task,
    method: model.ValidationMethod,
    *,
    prediction_column: str | None = None,
) -> model.Validation:
    """The model's score on labelled rows (rows without a truth are skipped).

    Classes are compared as the sidecar compares a label with its prediction
    (:func:`~vigil.profile.model.category_key`: ``1`` and ``1.0`` are one class, and
    :func:`~vigil.common.labels.class_key`: ``True`` and ``1`` too);
    a labelled row without a prediction counts as a wrong answer. A regressor's
    labelled row without a prediction is an error (``ProfileError`` naming the
    rows): it has no error to average, and skipping it would flatter the score.
    ``prediction_column`` names the column in error messages.
    """
    pred = np.asarray(predictions, dtype=object).reshape(-1)
    truth = np.asarray(truths, dtype=object).reshape(-1)
    if pred.shape != truth.shape:
        raise ProfileError(f"{pred.shape[0]} predictions for {truth.shape[0]} labels")
    labelled = [
        (i, p, t)
        for i, (p, t) in enumerate(zip(pred, truth, strict=True))
        if model.category_key(t) is not None
    ]
    if not labelled:
        raise ProfileError("no labelled rows to compute the validation score from")
    if task == "classification":
        # One class whatever its form (True, 1, "true"): as the live labels are scored.
        correct = sum(
            1
            for _, p, t in labelled
            if class_key(model.category_key(p)) == class_key(model.category_key(t))
        )
        return model.Validation(method, len(labelled), accuracy=round(correct / len(labelled), 6))
    where = f"column {prediction_column!r}: " if prediction_column else ""
    unanswered = [i for i, p, _ in labelled if model.category_key(p) is None]
    if unanswered:
        verb = "have" if len(unanswered) > 1 else "has"
        raise ProfileError(
            f"{where}{_rows(unanswered)} {verb} a label but no prediction "
            "(a regressor's error cannot be scored without one: fill or drop the row)"
        )
    try:
        errors = np.asarray([float(p) - float(t) for _, p, t in labelled])
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"a regressor's predictions and labels must be numbers: {exc}") from exc
    infinite = [labelled[k] for k in np.flatnonzero(~np.isfinite(errors))]
    if infinite:
        _, p, t = infinite[0]
        raise ProfileError(
            f"{where}{_rows([i for i, _, _ in infinite])}: a prediction or label is not a "
            f"finite number ({float(p):g} predicted for {float(t):g})"
        )
    with np.errstate(over="ignore"):
        mae = float(np.mean(np.abs(errors)))
        rmse = float(np.sqrt(np.mean(errors**2)))
    if not (math.isfinite(mae) and math.isfinite(rmse)):
        raise ProfileError(
            f"{where}the validation errors (up to {float(np.max(np.abs(errors))):g}) overflow "
            "a float's MAE/RMSE: rescale the target"
        )
    return model.Validation(method, len(labelled), mae=_significant(mae), rmse=_significant(rmse))


def _significant(value: float) -> float:
    """Six significant digits: six decimals made a small-unit target's MAE 0 (a 0 baseline)."""
    return float(f"{value:.6g}")


def check_unique_columns(columns: Sequence[Any], where: str = "the data") -> None:
    """Refuse a column name given twice: selecting it gives two columns, not one."""
    seen: set[str] = set()
    for column in columns:
        if str(column) in seen:
            raise ProfileError(f"column {str(column)!r} appears twice in {where}: rename one")
        seen.add(str(column))


def _check_names(names: Sequence[str]) -> None:
    """Refuse an empty feature name: the sidecar and the operator reject such a profile."""
    for position, name in enumerate(names):
        if not name:
            raise ProfileError(
                f"feature {position} has an empty name: name its column (the sidecar and the "
                "operator look features up by name)"
            )


#: pandas' name for a CSV column without a header, such as the index ``df.to_csv()`` writes.
_UNNAMED = re.compile(r"Unnamed: \d+")


def _check_named(names: Sequence[str]) -> None:
    """Refuse a column pandas named for want of a header: a feature the model does not take.

    Almost always the index written by ``df.to_csv(path)``; dropping it unasked would
    hide the rare column that is one, so the user says which it is.
    """
    unnamed = [n for n in names if _UNNAMED.fullmatch(n)]
    if unnamed:
        raise ProfileError(
            f"column {unnamed[0]!r} has no name in the header (pandas names it so), most "
            "likely the index df.to_csv() writes: write the CSV with index=False, or name "
            "the feature columns (vigil profile build --features a,b,c)"
        )


#: Integers up to this size (either sign) are exact as float64s.
_EXACT_FLOAT_INT = 2**53


def _exact_as_floats(series: Any) -> bool:
    """Whether every integer of a column with missing values is exact as a float64."""
    present = series.dropna()
    # Compared as Python ints: -(-2**63) overflows an int64.
    return present.empty or (
        int(present.max()) <= _EXACT_FLOAT_INT and int(present.min()) >= -_EXACT_FLOAT_INT
    )


def frame_column(series: Any) -> npt.NDArray[Any]:
    """A DataFrame column as an array: integers without missing values as integers, other
    numbers as floats (missing: NaN), anything else, nullable booleans included, as
    objects with ``None`` where a value is missing (a ``pd.NA`` left in became the
    category ``"<NA>"``). A float32 (float16) column stays one: as a category, its 0.1 is
    keyed ``"0.1"``, not as the float64 it widens to. Integers with missing values beyond
    a float64's exact range (2**53) are Python ints and ``None``; a sparse column is read
    as the dense column it stands for.
    """
    import pandas as pd

    if isinstance(series.dtype, pd.SparseDtype):  # no itemsize: read as the dense column
        series = series.sparse.to_dense()
    kind = getattr(series.dtype, "kind", "O")
    if kind == "f" and series.dtype.itemsize < 8:
        return series.to_numpy(dtype=series.dtype.type, na_value=np.nan)
    if kind in "iu" and not series.hasnans:
        # Kept whole: a 64-bit id as a float64 loses its last digits (its category key too).
        return series.to_numpy(dtype=getattr(series.dtype, "numpy_dtype", series.dtype))
    if kind in "iu" and not _exact_as_floats(series):
        # Python ints and None: one missing id no longer rounds every id to a float64's.
        return series.to_numpy(dtype=object, na_value=None)
    if kind in "iuf":
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series.astype(object).to_numpy(copy=True)
    mask = series.isna().to_numpy()
    values[mask] = None
    return values
