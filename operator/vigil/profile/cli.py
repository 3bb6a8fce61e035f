"""``vigil profile build`` and ``vigil profile show``.

Reading CSV and Parquet needs pandas (and pyarrow for Parquet); they are
imported only when a command needs them, so the operator image can carry
the CLI without them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from vigil.common.cells import BOOLEAN, BOOLEANS, TEXT, column_kind
from vigil.common.commands import command_group, split_names
from vigil.common.text import not_utf8
from vigil.profile.build import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    build_profile,
    check_unique_columns,
    frame_column,
    infer_task,
    reads_as_number,
    validation_score,
)
from vigil.profile.model import (
    OTHER,
    DriftDefaults,
    FeatureProfile,
    ProfileError,
    ProfileWarning,
    ReferenceProfile,
    Task,
    Validation,
    ValidationMethod,
    check_size,
    load_profile,
    parse_profile,
)

#: Files larger than this show a progress line on stderr while they load.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
CSV_CHUNK_ROWS = 50_000
#: File extensions (and ``--format``) read as Parquet; anything else is CSV.
PARQUET = ("parquet", "pq")


def register(subparsers: Any) -> None:
    """Add the ``profile`` command group (see :mod:`vigil.cli`)."""
    sub = command_group(subparsers, "profile", "build and inspect reference profiles")

    build = sub.add_parser(
        "build",
        help="build a reference profile from a CSV or Parquet file",
        description="Build a reference profile (JSON) from training data in CSV or Parquet.",
    )
    build.add_argument("input", help="CSV or Parquet file, one row per example")
    build.add_argument("-o", "--output", help="output file (default: stdout)")
    build.add_argument("--format", choices=("csv", "parquet"), help="default: by extension")
    build.add_argument(
        "--prediction-column", help="column holding the model's output (not a feature)"
    )
    build.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="how predictions are compared (default: classification when --categorical names "
        "the prediction or label column, else inferred from the prediction column)",
    )
    build.add_argument(
        "--label-column",
        help="column holding the true outcome (not a feature): records the validation score, "
        "the baseline realized performance is held to",
    )
    build.add_argument(
        "--holdout",
        help="CSV or Parquet file of rows the model did not learn from, with the prediction "
        "and label columns: the validation score comes from it",
    )
    build.add_argument(
        "--out-of-fold",
        action="store_true",
        help="the prediction column holds cross-validated (out-of-fold) predictions: "
        "the score from the input rows is a cross-validation score",
    )
    build.add_argument("--model-name", default="")
    build.add_argument("--model-version", default="")
    build.add_argument(
        "--features", help="comma-separated feature columns in model input order (default: all)"
    )
    build.add_argument(
        "--categorical",
        default="",
        help="comma-separated categorical columns (in a CSV, numbers written with leading "
        "zeros, such as zip codes, are read as text); naming the prediction or label column "
        "reads both so (class codes such as 01)",
    )
    build.add_argument(
        "--missing-values",
        default="",
        help="comma-separated CSV cell values that mean missing, such as '?' "
        "(besides empty cells, NA, NaN, null)",
    )
    build.add_argument("--bins", type=int, default=DEFAULT_BINS, help="quantile bins per feature")
    build.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="categories kept")
    # Kept in the profile's "drift" as before; said so, as nothing reads them.
    noted = build.add_argument_group(
        "drift settings (informational)",
        "recorded in the profile for information only: the operator judges drift with the "
        "ModelDeployment's spec.monitoring.drift",
    )
    noted.add_argument("--method", choices=("psi", "jsd"), default="psi")
    noted.add_argument("--warning", type=float, default=0.1)
    noted.add_argument("--threshold", type=float, default=0.2)
    build.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help=f"progress on stderr (auto: files over {PROGRESS_MIN_BYTES // 2**20} MiB)",
    )
    build.set_defaults(func=_cmd_build)

    show = sub.add_parser("show", help="print a reference profile readably")
    show.add_argument("path", help="profile JSON file ('-' for stdin)")
    show.add_argument("--json", action="store_true", help="print the validated JSON instead")
    show.set_defaults(func=_cmd_show)


# ------------------------------------------------------------------- reading


class _Progress:
    """A single rewritten stderr line; silent when disabled."""

    def __init__(self, label: str, total: float, enabled: bool, stream: TextIO) -> None:
        self.label, self.total, self.enabled, self.stream = label, total, enabled, stream
        self.start = time.monotonic()

    def update(self, done: float, rows: int) -> None:
        if not self.enabled:
            return
        share = min(done / self.total, 1.0) if self.total else 1.0
        elapsed = time.monotonic() - self.start
        self.stream.write(f"\r{self.label}: {share:6.1%}  {rows:,} rows  {elapsed:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def read_table(
    path: str,
    fmt: str | None = None,
    progress: str = "auto",
    stream: TextIO | None = None,
    missing: Sequence[str] = (),
    text_columns: Sequence[str] = (),
    coded: Sequence[str] = (),
) -> Any:
    """Load a CSV or Parquet file into a DataFrame, chunk by chunk with progress.

    ``missing``: CSV cell values read as missing besides pandas' own (empty, NA, ...);
    ``text_columns``: CSV columns read as text, each cell as the file writes it; in other
    text columns too only empty cells and ``missing`` are missing, except in ``coded``
    (the prediction and label columns: an "NA" label is no label). Parquet has typed
    columns and ignores them all.
    """
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the dev extras
        raise ProfileError("reading CSV/Parquet needs pandas: pip install pandas pyarrow") from exc
    file = Path(path)
    if not file.is_file():
        raise ProfileError(f"no such file: {path}")
    fmt = fmt or ("parquet" if file.suffix.lower().lstrip(".") in PARQUET else "csv")
    if fmt == "csv":
        _check_not_another_kind(file)
    size = file.stat().st_size
    enabled = progress == "always" or (progress == "auto" and size >= PROGRESS_MIN_BYTES)
    bar = _Progress(f"reading {file.name}", 1.0, enabled, stream or sys.stderr)
    if fmt == "parquet":
        frames = _read_parquet(file, bar)
    else:
        frames = _read_csv(file, size, bar, missing, (text_columns, coded))
    bar.update(1.0, sum(len(frame) for frame in frames))
    bar.close()
    if not frames:
        raise ProfileError(f"{path} has no rows")
    check_unique_columns(frames[0].columns, path)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


#: Files that are no CSV, by their first bytes, and what they are.
_MAGIC = ((b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "a zip archive (an Excel workbook?)"))
#: Extensions of files that are no CSV, whatever their bytes.
_NOT_CSV = {
    "json": "JSON",
    "jsonl": "JSON lines",
    "ndjson": "JSON lines",
    "xlsx": "Excel",
    "xls": "Excel",
}


def _check_not_another_kind(file: Path) -> None:
    """Refuse a file that is no CSV: read as one, JSON lines made a feature of each
    "{"a": 0.84" and the profile looked fine (exit 0)."""
    try:
        with file.open("rb") as handle:
            start = handle.read(4)
    except OSError as error:
        raise ProfileError(f"cannot read {file}: {error.strerror or error}") from None
    kind = _NOT_CSV.get(file.suffix.lower().lstrip("."))
    kind = kind or next((what for magic, what in _MAGIC if start.startswith(magic)), None)
    if kind is not None:
        raise ProfileError(
            f"{file} is {kind}, not CSV: vigil profile build reads CSV (comma-separated, "
            "with a header) or Parquet; with pandas: df.to_csv(path, index=False) or "
            "df.to_parquet(path)"
        )


def _read_parquet(file: Path, bar: _Progress) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        raise ProfileError("reading Parquet needs pyarrow: pip install pyarrow") from exc
    import pyarrow as pa

    frames, rows = [], 0
    nullable = _nullable_integers()
    try:
        pfile = pq.ParquetFile(file)
        total_rows = pfile.metadata.num_rows or 1
        for batch in pfile.iter_batches(batch_size=CSV_CHUNK_ROWS):
            frames.append(batch.to_pandas(types_mapper=nullable.get))
            rows += batch.num_rows
            bar.update(rows / total_rows, rows)
    except (pa.ArrowException, OSError) as error:
        raise ProfileError(f"{file} is not a readable Parquet file: {error}") from None
    return frames


def _nullable_integers() -> dict[Any, Any]:
    """pandas' nullable dtype for each Arrow integer type: to_pandas() makes an integer
    column with a null float64, and a 64-bit id past 2**53 lost its last digits."""
    import pandas as pd
    import pyarrow as pa

    return {
        pa_type(): pd_type()
        for pa_type, pd_type in (
            (pa.int8, pd.Int8Dtype),
            (pa.int16, pd.Int16Dtype),
            (pa.int32, pd.Int32Dtype),
            (pa.int64, pd.Int64Dtype),
            (pa.uint8, pd.UInt8Dtype),
            (pa.uint16, pd.UInt16Dtype),
            (pa.uint32, pd.UInt32Dtype),
            (pa.uint64, pd.UInt64Dtype),
        )
    }


def _read_csv(
    file: Path,
    size: int,
    bar: _Progress,
    missing: Sequence[str],
    columns: tuple[Sequence[str], Sequence[str]],
) -> list[Any]:
    """The CSV's chunks, each column typed once for the whole file: pandas types each
    chunk by itself, and "1.0" was text in a chunk holding a word, the number 1 in others."""
    import pandas as pd

    frames, rows = [], 0
    try:
        with file.open("rb") as handle:
            header = _csv_header(handle)
            check_unique_columns(header, str(file))
            _check_comma_separated(header, file)
            handle.seek(0)
            text_columns, coded = columns
            text = {name: str for name in text_columns if name in header}
            for chunk in _csv_chunks(handle, missing, dtype=text or None):
                frames.append(chunk)
                rows += len(chunk)
                bar.update(handle.tell() / max(size, 1), rows)
            kinds = _column_kinds(frames)
            # Text columns read again, each cell as written: "NA" or "None" is a category
            # there (North America, no discount), as it is live. Not a column of numbers
            # with a stray word, whose "NA" cells are missing numbers.
            verbatim = [
                c
                for c in frames[0].columns
                if c not in coded and (c in text or ("text" in kinds[c] and _words(frames, c)))
            ]
            # Mixed (numbers in one chunk, words in another): read again as text, as pandas
            # reads a column with a word in it whole.
            mixed = [c for c in frames[0].columns if len(kinds[c]) > 1 and c not in verbatim]
            for again, verbatim_read in ((verbatim, True), (mixed, False)):
                if again:
                    handle.seek(0)
                    read = _csv_chunks(
                        handle, missing, dtype=str, usecols=again, verbatim=verbatim_read
                    )
                    for frame, texts in zip(frames, list(read), strict=True):
                        frame[again] = texts[again]
            _say_markers_kept(frames, verbatim)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
        raise ProfileError(f"{file} is not a readable CSV: {error}") from None
    except UnicodeDecodeError:
        where = not_utf8(file.read_bytes())
        raise ProfileError(f"{file} is not UTF-8 text ({where}): save it as UTF-8") from None
    except OSError as error:
        raise ProfileError(f"cannot read {file}: {error.strerror or error}") from None
    return frames


def _csv_chunks(
    handle: BinaryIO, missing: Sequence[str], *, verbatim: bool = False, **options: Any
) -> Any:
    """The CSV in chunks: missing are empty cells, ``missing`` and, unless ``verbatim``
    (text columns), pandas' markers (NA, NaN, null, None, N/A...)."""
    import pandas as pd

    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark.
    return pd.read_csv(
        handle,
        chunksize=CSV_CHUNK_ROWS,
        encoding="utf-8-sig",
        na_values=["", *missing] if verbatim else (list(missing) or None),
        keep_default_na=not verbatim,
        skipinitialspace=True,  # "age, income": the feature is "income"
        **options,
    )


#: pandas' own missing-value markers (besides the empty cell): in a text column, categories.
PANDAS_MARKERS = frozenset((
    "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>",
    "#N/A", "#N/A N/A", "#NA", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN",
))  # fmt: skip


def _say_markers_kept(frames: Sequence[Any], columns: Sequence[str]) -> None:
    """Warn of text cells that pandas would have made missing, read as categories: the
    user says which they are (North America, or R's NA)."""
    for column in columns:
        counts = {str(v): n for v, n in _cell_counts(frames, column).items() if v in PANDAS_MARKERS}
        if counts:
            cells = ", ".join(f"{n} {marker!r}" for marker, n in sorted(counts.items()))
            warnings.warn(
                ProfileWarning(
                    f"column {column!r} holds text, whose cells are categories as written "
                    f"(as the sidecar reads them live): {cells}; if they mark missing "
                    f"values, say so: --missing-values {','.join(sorted(counts))}"
                ),
                stacklevel=2,
            )


def _cell_counts(frames: Sequence[Any], column: str) -> dict[Any, int]:
    """How many times each value stands in the column, over the chunks (missing ones not)."""
    counts: dict[Any, int] = {}
    for frame in frames:
        for value, n in frame[column].value_counts().items():
            counts[value] = counts.get(value, 0) + int(n)
    return counts


def _words(frames: Sequence[Any], column: str) -> bool:
    """Whether the column's cells are mostly words (not numbers with a few words)."""
    counts = _cell_counts(frames, column)
    numbers = sum(n for value, n in counts.items() if reads_as_number(value))
    return numbers * 2 <= sum(counts.values())  # as build.py calls a column categorical


def _column_kinds(frames: Sequence[Any]) -> dict[str, set[str]]:
    """What each column holds, chunk by chunk: text, bool or number; a column typed apart
    by chunk has more than one (read whole, pandas makes it text); chunks without a value
    do not count."""
    from pandas.api.types import infer_dtype

    def kind(series: Any) -> str:
        # Inferred, not the dtype: booleans beside a missing cell are an object column.
        inferred = infer_dtype(series, skipna=True)
        if inferred == "boolean":
            return "bool"
        return "number" if inferred in _NUMBER_KINDS else "text"

    return {
        column: {kind(frame[column]) for frame in frames if frame[column].notna().any()}
        for column in frames[0].columns
    }


#: What pandas.api.types.infer_dtype calls a column of numbers.
_NUMBER_KINDS = frozenset(("integer", "floating", "mixed-integer-float", "decimal"))


def _check_comma_separated(header: Sequence[str], file: Path) -> None:
    """Refuse a file separated by ';' or tabs: read with commas it made one text column."""
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        separator = "';'" if ";" in header[0] else "a tab"
        raise ProfileError(
            f"{file}: its header {header[0]!r} is one column holding {separator}: the file "
            "must be comma-separated (pandas: df.to_csv(path, index=False))"
        )


def _csv_header(handle: BinaryIO) -> list[str]:
    """A CSV file's header as written (pandas renames a second "a" to "a.1"), blanks left
    out (pandas names each "Unnamed: N")."""
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    try:
        header = next(csv.reader(text, skipinitialspace=True), [])
    finally:
        text.detach()
    return [name for name in header if name]


#: Text pandas reads as a number: an integer, else a decimal (exponent allowed).
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _typed_categories(
    frame: Any, path: str, fmt: str | None, categorical: Sequence[str]
) -> list[str]:
    """Type the categorical CSV columns, read as text, once for the whole file.

    A column holding numbers written with leading zeros (the zip code "02134", keyed
    "2134" as a number while clients send "02134") stays text, every cell as the file
    writes it; its name is returned. In the others a cell that is a number is read as
    one ("1.0" the number 1, keyed "1" as a client's 1 or 1.0; an integer whole, so a
    64-bit id keeps every digit), the rest stays text; a column of True/False only is
    read as booleans, as pandas reads one.
    """
    if (fmt or Path(path).suffix.lower().lstrip(".")) in PARQUET:
        return []  # Parquet columns have their type: a zip code stored as text stays text
    import pandas as pd

    padded = []
    for column in categorical:
        if column not in frame.columns or frame[column].dtype.kind != "O":
            continue
        texts = frame[column].to_numpy(dtype=object)
        kind = column_kind(text for text in texts if isinstance(text, str))
        if kind == TEXT:
            padded.append(column)
            continue
        if kind == BOOLEAN:
            values = [BOOLEANS[t.strip()] if isinstance(t, str) else None for t in texts]
        else:
            values = [_cell_value(text) for text in texts]
        # As objects: pandas would make whole numbers with a gap floats (ids losing digits).
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return padded


def _cell_value(text: object) -> object:
    """A CSV cell read as text: a number when it reads as one, None when missing."""
    if not isinstance(text, str):
        return None  # pandas' NaN for a missing cell
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    if _DECIMAL.fullmatch(stripped):
        return float(stripped)
    return text


def _check_column_options(args: argparse.Namespace, features: Sequence[str]) -> None:
    """Refuse options that name one column twice, or the model's output as an input.

    Each made a DataFrame where a column was expected (a traceback), or a misleading
    "not found" once the first option had taken the column away.
    """
    output, label = args.prediction_column, args.label_column
    if output and output == label:
        raise ProfileError(
            f"--prediction-column and --label-column both name {output!r}: the prediction "
            "column holds the model's outputs, the label column the true outcomes"
        )
    seen: set[str] = set()
    for column in features:
        if column in seen:
            raise ProfileError(f"--features names {column!r} twice")
        seen.add(column)
        for option, name in (("--prediction-column", output), ("--label-column", label)):
            if column == name:
                raise ProfileError(
                    f"--features names {column!r}, the {option}: it is no feature of the "
                    "model; leave it out of --features"
                )


def _select(frame: Any, args: argparse.Namespace, features: Sequence[str]) -> Any:
    """The ``--features`` columns, in their order, and the prediction and label columns."""
    if not features:
        return frame
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ProfileError(f"feature columns not found: {missing}")
    keep = [*features, *(c for c in (args.prediction_column, args.label_column) if c)]
    absent = [column for column in keep if column not in frame.columns]
    if absent:
        raise ProfileError(f"prediction or label column not found: {absent}")
    return frame[keep]


def _check_thresholds(args: argparse.Namespace) -> None:
    """NaN or infinity passes argparse's float() but no JSON writer and no drift comparison."""
    for option, value in (("--warning", args.warning), ("--threshold", args.threshold)):
        if not (math.isfinite(value) and value >= 0):
            raise ProfileError(f"{option} must be a finite number >= 0, not {value}")


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        _check_thresholds(args)
        markers = split_names(args.missing_values)
        if markers and (args.format or Path(args.input).suffix.lower().lstrip(".")) in PARQUET:
            # Markers gone, a Parquet column of text stays text: categorical, not numeric.
            raise ProfileError("--missing-values applies to CSV files, not to Parquet")
        features = split_names(args.features)
        categorical = split_names(args.categorical)
        _check_column_options(args, features)
        classes = _class_columns(args, categorical)
        categorical = [c for c in categorical if c not in classes]
        with warnings.catch_warnings(record=True) as read:
            warnings.simplefilter("always", ProfileWarning)
            frame = read_table(
                args.input,
                args.format,
                args.progress,
                missing=markers,
                text_columns=[*categorical, *classes],
                coded=_coded(args),
            )
        padded = _typed_categories(frame, args.input, args.format, [*categorical, *classes])
        frame = _select(frame, args, features)
        truths = _take_labels(frame, args)
        if truths is not None:
            frame = frame.drop(columns=[args.label_column])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ProfileWarning)
            profile = build_profile(
                frame,
                prediction_column=args.prediction_column,
                categorical=categorical,
                task=args.task or ("classification" if classes else None),
                model_name=args.model_name,
                model_version=args.model_version,
                bins=args.bins,
                top_k=args.top_k,
                drift=DriftDefaults(
                    method=args.method, warning=args.warning, threshold=args.threshold
                ),
            )
        if truths is not None:
            validation = _validation(args, frame, truths, profile.task, (markers, classes))
            profile = replace(profile, validation=validation)
        text = _to_json(profile)
        with warnings.catch_warnings(record=True) as sized:
            warnings.simplefilter("always", ProfileWarning)
            check_size(profile, text)
        caught[:0] = read
        caught.extend(sized)
        if args.output:
            _write(args.output, text)
    except ProfileError as exc:
        print(f"vigil profile build: {exc}", file=sys.stderr)
        return 1
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if padded:
        print(
            f"read as text (numbers written with leading zeros, such as zip codes; "
            f"clients send them as strings): {', '.join(padded)}",
            file=sys.stderr,
        )
    # Said for every feature: a column of numbers profiled as categories is barely monitored.
    for kind in ("numeric", "categorical"):
        names = [f.name for f in profile.features if f.type == kind]
        if names:
            print(f"{kind} ({len(names)}): {', '.join(names)}", file=sys.stderr)
    print(f"task: {profile.task} ({_task_reason(args, frame, classes)})", file=sys.stderr)
    if profile.validation is not None:
        print(f"validation: {_describe_validation(profile.validation)}", file=sys.stderr)
    if args.output:
        print(
            f"wrote {args.output}: {len(profile.features)} features, "
            f"{profile.row_count} rows, {profile.fingerprint[:19]}",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return 0


def _to_json(profile: ReferenceProfile) -> str:
    try:
        text = profile.to_json()
    except ValueError as exc:  # a non-finite figure the checks in build.py did not foresee
        raise ProfileError(f"the profile holds a number JSON cannot carry: {exc}") from None
    # Read back as the sidecar and the operator read it: one they reject is not written.
    parse_profile(text)
    return text


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror or exc}") from None


def _take_labels(frame: Any, args: argparse.Namespace) -> Any:
    """The label column's values (None without ``--label-column``); checks the options."""
    if not args.label_column:
        if args.holdout or args.out_of_fold:
            raise ProfileError("--holdout and --out-of-fold need --label-column")
        return None
    if not args.prediction_column:
        raise ProfileError("--label-column needs --prediction-column (the model's outputs)")
    if args.holdout and args.out_of_fold:
        raise ProfileError("give --holdout or --out-of-fold, not both")
    if args.label_column not in frame.columns:
        raise ProfileError(f"label column {args.label_column!r} not found")
    return frame_column(frame[args.label_column])


def _class_columns(args: argparse.Namespace, categorical: Sequence[str]) -> list[str]:
    """The prediction and label columns, when ``--categorical`` names either: both hold the
    same classes, read as the categorical features are (a class code "01" stays "01")."""
    coded = _coded(args)
    return coded if set(coded) & set(categorical) else []


def _coded(args: argparse.Namespace) -> list[str]:
    """The prediction and label columns: pandas' missing-value markers stay missing there."""
    return [c for c in (args.prediction_column, args.label_column) if c]


def _validation(
    args: argparse.Namespace,
    frame: Any,
    truths: Any,
    task: Task,
    reading: tuple[Sequence[str], Sequence[str]],
) -> Validation:
    """The score on the holdout file, or on the input's rows (out-of-fold or in-sample).
    ``reading``: the missing-value markers, and the class columns read as categorical."""
    if args.holdout:
        markers, classes = reading
        with warnings.catch_warnings():  # said of the input's columns already
            warnings.simplefilter("ignore", ProfileWarning)
            holdout = read_table(
                args.holdout,
                None,
                args.progress,
                missing=markers,
                text_columns=classes,
                coded=_coded(args),
            )
            _typed_categories(holdout, args.holdout, None, classes)
        missing = [c for c in (args.prediction_column, args.label_column) if c not in holdout]
        if missing:
            raise ProfileError(f"--holdout {args.holdout}: columns not found: {missing}")
        try:
            return validation_score(
                frame_column(holdout[args.prediction_column]),
                frame_column(holdout[args.label_column]),
                task,
                "holdout",
                prediction_column=args.prediction_column,
            )
        except ProfileError as exc:
            raise ProfileError(f"--holdout {args.holdout}: {exc}") from None
    method: ValidationMethod = "cross-validation" if args.out_of_fold else "in-sample"
    return validation_score(
        frame_column(frame[args.prediction_column]),
        truths,
        task,
        method,
        prediction_column=args.prediction_column,
    )


def _describe_validation(validation: Validation) -> str:
    figures = ", ".join(
        f"{name} {value:.4g}"
        for name, value in (
            ("accuracy", validation.accuracy),
            ("MAE", validation.mae),
            ("RMSE", validation.rmse),
        )
        if value is not None
    )
    note = " (in-sample: optimistic; prefer --holdout)" if validation.method == "in-sample" else ""
    return f"{figures} on {validation.rows} rows, {validation.method}{note}"


def _task_reason(args: argparse.Namespace, frame: Any, classes: Sequence[str]) -> str:
    """Why the profile has its task: given, the default, or what the column showed."""
    if args.task:
        return "given by --task"
    if classes:
        return "--categorical names the prediction or label column: class labels"
    if not args.prediction_column:
        return "the default without --prediction-column; --task classification for a classifier"
    task, why = infer_task(frame_column(frame[args.prediction_column]))
    other = "regression" if task == "classification" else "classification"
    return f"inferred from column {args.prediction_column!r}: {why}; --task {other} to override"


# ------------------------------------------------------------------- showing


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def _describe(f: FeatureProfile) -> str:
    if f.type == "numeric":
        assert f.edges is not None
        inner = f.proportions[1:-1]
        return f"{len(inner)} bins, edges {_fmt(f.edges[0])} .. {_fmt(f.edges[-1])}"
    cats = f.categories or ()
    shown = ", ".join(
        f"{c}={p:.0%}" for c, p in zip([*cats, OTHER], f.proportions, strict=True) if p > 0
    )
    return f"{len(cats)} top: {shown}" if len(shown) < 60 else f"{len(cats)} top: {shown[:57]}..."


def render(profile: ReferenceProfile) -> str:
    """A human-readable summary of a profile."""
    lines = [
        f"Reference profile  {profile.fingerprint}",
        f"  model        {profile.model_name or '-'}  version {profile.model_version or '-'}",
        f"  task         {profile.task}",
        f"  rows         {profile.row_count}",
        f"  created      {profile.created_at or '-'}",
        f"  drift        {profile.drift.method}  warning {profile.drift.warning}  "
        f"threshold {profile.drift.threshold}  (informational: the operator judges with "
        "spec.monitoring.drift)",
        *(
            [f"  validation   {_describe_validation(profile.validation)}"]
            if profile.validation is not None
            else []
        ),
        "",
    ]
    header = ("#", "feature", "type", "null%", "mean", "std", "min", "median", "max", "bins")
    rows = [header]
    blocks = list(profile.features)
    if profile.prediction is not None:
        blocks.append(profile.prediction)
    for i, f in enumerate(blocks):
        s = f.summary
        rows.append(
            (
                "out" if f is profile.prediction else str(i),
                f.name,
                f.type,
                f"{f.null_rate * 100:.1f}",
                _fmt(s.mean if s else None),
                _fmt(s.std if s else None),
                _fmt(s.min if s else None),
                _fmt(s.median if s else None),
                _fmt(s.max if s else None),
                _describe(f),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header) - 1)]
    for r in rows:
        cells = [r[c].ljust(widths[c]) for c in range(len(widths))]
        lines.append("  ".join(cells) + "  " + r[-1])
    return "\n".join(lines) + "\n"


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        if args.path == "-":
            try:
                text = sys.stdin.read()
            except UnicodeDecodeError as exc:
                raise ProfileError(f"stdin is not UTF-8 text ({exc.reason})") from None
            profile = parse_profile(text)
        else:
            profile = load_profile(args.path)
    except ProfileError as exc:
        print(f"vigil profile show: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(profile.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(render(profile))
    return 0
