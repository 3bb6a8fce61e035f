"""``vigil golden build`` and ``vigil golden check``.

build: inputs from a CSV or JSON file, expected outputs from a column, a
JSON array (a model's outputs), or a running endpoint (the research model
served somewhere); writes the golden set JSON, or a ConfigMap holding it.
check: replays a golden set against an endpoint and prints the agreement.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import random
import sys
import urllib.parse
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from vigil.common import kube_yaml
from vigil.common.cells import BOOLEAN, BOOLEANS, CELLWISE, TEXT, column_kind
from vigil.common.commands import command_group, split_names
from vigil.common.text import not_utf8
from vigil.core.spec import GoldenSetRef
from vigil.validation.golden import (
    DATATYPES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_BYTES,
    GoldenSet,
    GoldenSetError,
    ReplayReport,
    check_tensor_value,
    configmap_manifest,
    golden_from_configmap,
    numeric_datatype,
    parse_golden_set,
    predict,
    regression_output,
    replay_report,
    tensor_value,
)


def _number(text: str) -> Any:
    """A CSV cell as the JSON value a model takes: a whole number stays an exact int (through
    float, one above 2**53 would change), another number a float, anything else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _label(text: str, where: str) -> Any:
    """An expected-column cell: ``true``/``false`` in any case (pandas writes a bool column
    as ``True``/``False``) is the boolean, compared with the model's ``true`` or ``1``; a
    whole number written otherwise than as one (``01``, ``+1``) is a code, kept as text
    (a model with such labels answers ``"01"``, never ``1``)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    value = _cell(text, where, None)
    if isinstance(value, int) and str(value) != text.strip():
        return text.strip()
    return value


def _expected_cell(text: str, where: str, task: str) -> Any:
    """An expected-column cell: a class label, or a regression's number (``007`` is 7 there;
    ``n/a`` or ``true`` is refused, naming the line: no answer would ever be within the
    tolerance of it)."""
    if task != "regression":
        return _label(text, where)
    return regression_output(_cell(text, where, None), where)


def _cell(text: str, where: str, datatype: str | None, kind: str = "") -> Any:
    """One CSV cell, refused when empty or not a number a numeric tensor (``datatype``) takes;
    ``kind`` (:func:`_column_kinds`): kept as text, or read as a boolean."""
    if not text.strip():
        # A blank cell went out as "" and the model server refused the whole batch.
        raise GoldenSetError(f"{where}: empty cell (a case needs every value: fill or drop it)")
    if kind == TEXT:
        return text
    if kind == BOOLEAN:
        return BOOLEANS[text.strip()]
    value = _number(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise GoldenSetError(f"{where}: {text!r} is not a finite number")
    if datatype:
        check_tensor_value(value, datatype, where)
    return value


def _column_kinds(
    names: Sequence[str],
    records: Sequence[Sequence[str]],
    datatype: str | None,
    text: tuple[bool, Collection[str]],
) -> list[str]:
    """How each column's cells go out where no numeric tensor takes them (``datatype``
    None), as ``vigil profile build`` reads them: as written (``text``: a BYTES tensor, or
    a column declared categorical holding a number written with a leading zero, a zip
    code "02134"), booleans (a column of pandas' True/False only), else each a number or
    text."""
    if datatype is not None:
        return [CELLWISE] * len(names)
    everything, categorical = text
    if everything:
        return [TEXT] * len(names)
    return [
        column_kind(
            (cell for record in records if (cell := record[index]).strip()),
            padded_as_text=name in categorical,
        )
        for index, name in enumerate(names)
    ]


def _unnamed(path: Path, columns: list[str], features: list[str] | None) -> None:
    """Refuse a column with no name when every column is a feature by default: pandas'
    ``df.to_csv()`` writes its index so, which went out as the first feature."""
    if features is None and "" in columns:
        raise GoldenSetError(
            f"{path}: column {columns.index('') + 1} has no name (the index pandas' "
            "to_csv() writes unless index=False): write the file without it, or name the "
            "feature columns with --features"
        )


def _not_utf8(path: Path) -> GoldenSetError:
    where = not_utf8(path.read_bytes())
    return GoldenSetError(f"{path}: not UTF-8 text{f' ({where})' if where else ''}; save as UTF-8")


def _read_text(path: Path) -> str:
    """The file's text; utf-8-sig drops the byte order mark Excel writes before the header."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except ValueError as error:
        if isinstance(error, GoldenSetError):
            raise
        raise GoldenSetError(f"{path}: not JSON: {error}") from None


def _read_json_rows(
    path: Path,
    expected_column: str | None,
    features: list[str] | None,
    datatype: str | None,
    task: str,
) -> tuple[list[str], list[list[Any]], list[Any] | None]:
    doc = _read_json(path)
    if isinstance(doc, dict) and "inputs" in doc:
        doc = doc["inputs"]
    if not isinstance(doc, list) or not doc:
        raise GoldenSetError(f"{path}: expected a non-empty JSON array of rows")
    for i, record in enumerate(doc):
        if not isinstance(record, dict | list):
            raise GoldenSetError(f"{path}: [{i}] is neither a row (array) nor an object")
        if isinstance(record, dict) != isinstance(doc[0], dict):
            raise GoldenSetError(f"{path}: [{i}] and [0] differ: use all arrays or all objects")
    if not isinstance(doc[0], dict):
        if expected_column:
            raise GoldenSetError("--expected-column needs named columns (CSV or JSON objects)")
        if datatype:
            for i, record in enumerate(doc):
                for j, value in enumerate(record):
                    check_tensor_value(value, datatype, f"{path}: [{i}][{j}]")
        return list(features or []), [list(r) for r in doc], None
    names = features or [k for k in doc[0] if k != expected_column]
    _unnamed(path, list(doc[0]), features)
    wanted = [*names, *([expected_column] if expected_column else [])]
    rows: list[list[Any]] = []
    for i, record in enumerate(doc):
        missing = [n for n in wanted if n not in record]
        if missing:
            raise GoldenSetError(f"{path}: [{i}] has no {', '.join(map(repr, missing))}")
        if datatype:
            for name in names:
                check_tensor_value(record[name], datatype, f"{path}: [{i}] column {name!r}")
        rows.append([record[n] for n in names])
    if not expected_column:
        return names, rows, None
    if task != "regression":
        return names, rows, [r[expected_column] for r in doc]
    where = f"{path}: [{{}}] column {expected_column!r}"
    expected = [regression_output(r[expected_column], where.format(i)) for i, r in enumerate(doc)]
    return names, rows, expected


def _read_csv_rows(
    path: Path,
    expected_column: str | None,
    features: list[str] | None,
    datatype: str | None,
    task: str,
    text: tuple[bool, Collection[str]] = (False, ()),
) -> tuple[list[str], list[list[Any]], list[Any] | None]:
    rows: list[list[Any]] = []
    expected_values: list[Any] = []
    records: list[tuple[str, list[str]]] = []
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark, else part of the first name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        # "age, income": the feature is "income", as vigil profile build reads it.
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            header = next(reader, None)
            if header is None:
                raise GoldenSetError(f"{path}: empty file (expected a header line)")
            doubled = sorted({c for c in header if header.count(c) > 1})
            if doubled:
                raise GoldenSetError(f"{path}: columns named twice: {doubled}")
            if expected_column and expected_column not in header:
                raise GoldenSetError(f"{path}: no column {expected_column!r} (columns: {header})")
            names = features or [c for c in header if c != expected_column]
            _unnamed(path, header, features)
            missing = [n for n in names if n not in header]
            if missing:
                raise GoldenSetError(f"{path}: no column(s) {missing}")
            positions = [header.index(n) for n in names]
            label_at = header.index(expected_column) if expected_column else -1
            for record in reader:
                if not record:
                    continue  # a blank line, as csv.DictReader skips it
                line = f"{path}: line {reader.line_num}"
                if len(record) != len(header):
                    raise GoldenSetError(
                        f"{line}: {len(record)} cells, the header has {len(header)}"
                    )
                records.append((line, [record[p] for p in positions]))
                if expected_column:
                    where = f"{line}, column {expected_column!r}"
                    expected_values.append(_expected_cell(record[label_at], where, task))
        except UnicodeDecodeError:
            raise _not_utf8(path) from None
    kinds = _column_kinds(names, [cells for _, cells in records], datatype, text)
    for line, cells in records:
        rows.append(
            [
                _cell(cell, f"{line}, column {name!r}", datatype, kind)
                for name, cell, kind in zip(names, cells, kinds, strict=True)
            ]
        )
    return names, rows, expected_values if expected_column else None


def read_rows(
    path: Path,
    expected_column: str | None,
    features: list[str] | None,
    datatype: str | None = None,
    task: str = "classification",
    text: tuple[bool, Collection[str]] = (False, ()),
) -> tuple[list[str], list[list[Any]], list[Any] | None]:
    """(feature names, rows, expected column values or None) from a CSV or JSON file.

    ``datatype``: the numeric tensor type the rows go out as (None: any value); text in one
    is refused here, where the file's line (CSV) or element (JSON) can be named, as is an
    expected value of a regression (``task``) that is no number. ``text``: whether a CSV's
    cells all go out as written (a BYTES tensor), and the columns declared categorical.
    """
    if path.suffix.lower() == ".json":
        return _read_json_rows(path, expected_column, features, datatype, task)
    return _read_csv_rows(path, expected_column, features, datatype, task, text)


def _endpoint(url: str, option: str) -> str:
    """A model's base URL, refused without an http(s) scheme: every request to it failed
    before leaving, twice, and read as no answer (exit 2, the operator replays again)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    example = f" (e.g. http://{url})" if "://" not in url else ""
    raise GoldenSetError(f"{option} {url!r}: not an http:// or https:// URL{example}")


def _tolerance(args: argparse.Namespace) -> float:
    """The regression tolerance; a classifier compares labels and needs none."""
    if args.tolerance is None:
        if args.task == "regression":
            # No safe default: 0 asks for exact equality, and the scale of the outputs is unknown.
            raise GoldenSetError(
                "--tolerance is required for a regression golden set (the model server's "
                "float32 answers differ from the research run's floats in the last digits; "
                "|got - expected| <= tolerance: 1e-6 x the outputs' magnitude is a start)"
            )
        return 0.0
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise GoldenSetError(f"--tolerance must be a finite number >= 0, not {args.tolerance}")
    return float(args.tolerance)


def _where(path: str, row: int, column: int, names: list[str]) -> str:
    named = repr(names[column]) if column < len(names) else str(column)
    return f"{path}: row {row + 1}, column {named}"


def _features(args: argparse.Namespace) -> list[str] | None:
    """``--features`` as ``vigil profile build`` reads it: names around commas, each once,
    none the model's output (sent as an input, it made the golden set pass anything)."""
    features = split_names(args.features)
    for index, name in enumerate(features):
        if name in features[:index]:
            raise GoldenSetError(f"--features names {name!r} twice")
        if name == args.expected_column:
            raise GoldenSetError(
                f"--features names {name!r}, the --expected-column: it is the model's "
                "output, no input; leave it out of --features"
            )
    return features or None


def build(args: argparse.Namespace) -> GoldenSet:
    tolerance = _tolerance(args)
    features = _features(args)
    if args.sample < 0:
        raise GoldenSetError(f"--sample must be a number of rows >= 1 (0: all), not {args.sample}")
    if args.from_endpoint:
        _endpoint(args.from_endpoint, "--from-endpoint")
        if not args.model:
            raise GoldenSetError("--from-endpoint needs --model (the model name in its URL)")
    numeric = args.datatype if numeric_datatype(args.protocol, args.datatype) else None
    text = (args.protocol == "v2" and args.datatype == "BYTES", split_names(args.categorical))
    names, rows, expected = read_rows(
        Path(args.input), args.expected_column, features, numeric, args.task, text
    )
    if args.protocol == "v2":  # the tensor's own type: no 1.0 in INT64, no "True" in BOOL
        rows = [
            [
                tensor_value(value, args.datatype, _where(args.input, i, j, names))
                for j, value in enumerate(row)
            ]
            for i, row in enumerate(rows)
        ]
    if args.sample and args.sample < len(rows):
        picked = sorted(random.Random(args.seed).sample(range(len(rows)), args.sample))
        rows = [rows[i] for i in picked]
        expected = [expected[i] for i in picked] if expected is not None else None
    sources = [bool(args.expected_column), bool(args.expected), bool(args.from_endpoint)]
    if sum(sources) != 1:
        raise GoldenSetError(
            "give exactly one source of expected outputs: --expected-column, --expected or "
            "--from-endpoint"
        )
    golden = GoldenSet(
        inputs=tuple(tuple(r) for r in rows),
        expected=tuple(expected or [None] * len(rows)),
        protocol=args.protocol,
        task=args.task,
        tolerance=tolerance,
        model=args.model or "",
        features=tuple(names),
        input_name=args.input_name,
        datatype=args.datatype,
    )
    if args.expected:
        values = _read_json(Path(args.expected))
        if isinstance(values, dict):
            values = values.get("expected") or values.get("predictions")
        if not isinstance(values, list) or len(values) != len(rows):
            raise GoldenSetError(f"--expected must hold one output per row ({len(rows)})")
        if args.sample:
            raise GoldenSetError("--sample cannot be combined with --expected (rows would shift)")
        if args.task == "regression":
            values = [regression_output(v, f"{args.expected}: [{i}]") for i, v in enumerate(values)]
        golden = replace(golden, expected=tuple(values))
    if args.from_endpoint:
        predictions, errors = asyncio.run(
            predict(golden, args.from_endpoint, **_endpoint_options(args))
        )
        if errors:
            raise GoldenSetError(f"the endpoint failed: {errors[0]}")
        golden = replace(golden, expected=tuple(predictions))
    # Validate what we wrote exactly as the operator will read it.
    return parse_golden_set(golden.to_json())


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        golden = build(args)
    except (GoldenSetError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = golden.to_json()
    if len(text.encode()) > MAX_BYTES:
        print(
            f"error: the golden set is {len(text) // 1024} KiB; a ConfigMap holds at most "
            f"{MAX_BYTES // 1024} KiB here: use --sample N",
            file=sys.stderr,
        )
        return 1
    if args.configmap:
        text = kube_yaml.dump(configmap_manifest(golden, args.configmap, args.key), sort_keys=False)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as error:
            print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
            return 1
        print(f"wrote {len(golden.inputs)} cases to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _read_stdin() -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as error:
        raise GoldenSetError(f"stdin: not UTF-8 text ({error.reason})") from None


def _from_configmap_yaml(text: str, key: str) -> GoldenSet:
    """The golden set in a ConfigMap manifest (``data`` or ``binaryData``), as the operator
    reads it."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("kind", "ConfigMap") != "ConfigMap":
        raise GoldenSetError("expected a golden set (JSON) or a ConfigMap (YAML)")
    name = str((doc.get("metadata") or {}).get("name") or "(unnamed)")
    return golden_from_configmap(doc, GoldenSetRef(name, key))


def _no_answer(report: ReplayReport, endpoint: str) -> str:
    """Why a replay is no verdict: rows the endpoint never answered, even on a retry."""
    total = report.result.total
    if report.denied:
        return f"{endpoint} asked for credentials ({report.denied}): the replay sends none"
    if report.unreachable or report.unanswered >= total:
        what = f"no answer from {endpoint}"
    else:
        what = f"{report.unanswered}/{total} rows got no answer from {endpoint} (no verdict)"
    return f"{what}: {report.errors[0] if report.errors else 'no request was sent'}"


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        if not 0.0 <= args.min_agreement <= 1.0:  # NaN too: no agreement could pass it
            raise GoldenSetError(
                f"--min-agreement must be a share from 0 to 1, not {args.min_agreement}"
            )
        _endpoint(args.endpoint, "--endpoint")
        text = _read_stdin() if args.golden == "-" else _read_text(Path(args.golden))
        # A ConfigMap in YAML (a .yaml file, or on stdin, as `golden build --configmap` writes).
        if args.golden.endswith((".yaml", ".yml")) or (
            args.golden == "-" and not text.lstrip().startswith(("{", "["))
        ):
            golden = _from_configmap_yaml(text, args.key)
        else:
            golden = parse_golden_set(text)
        if not (args.model or golden.model):
            raise GoldenSetError('no model name: pass --model or set "model" in the golden set')
        report = asyncio.run(replay_report(golden, args.endpoint, **_endpoint_options(args)))
    except (GoldenSetError, OSError, KeyError, TypeError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not report.complete:
        # No answer is no verdict (the operator replays again): neither PASS nor FAIL.
        print(f"error: {_no_answer(report, args.endpoint)}", file=sys.stderr)
        return 2
    agreement = report.result.agreement
    verdict = "PASS" if agreement >= args.min_agreement else "FAIL"
    print(f"{verdict}: agreement {agreement:.4f} (min {args.min_agreement}); {report.summary()}")
    return 0 if verdict == "PASS" else 1


def _add_endpoint_arguments(parser: argparse.ArgumentParser, model_help: str) -> None:
    """How a command asks a running model (build --from-endpoint, check --endpoint): both
    hand these three to the same client (vigil.validation.golden)."""
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)


def _endpoint_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`_add_endpoint_arguments`, as the client takes them."""
    return {"model": args.model, "batch_size": args.batch_size, "timeout_seconds": args.timeout}


def register(subparsers: Any) -> None:
    """Add the ``golden`` command group (see :mod:`vigil.cli`)."""
    sub = command_group(subparsers, "golden", "build and check golden sets (validate step)")

    b = sub.add_parser(
        "build",
        help="make a golden set from inputs and a model's outputs",
        description="Make a golden set (docs/rollouts.md) from a CSV/JSON file of inputs and "
        "the research model's outputs: a column, a JSON array, or a running endpoint.",
    )
    b.add_argument("input", help="CSV (with header) or JSON (array of rows or of objects)")
    b.add_argument("--expected-column", help="column holding the expected output")
    b.add_argument("--expected", help="JSON file: array of expected outputs, one per row")
    b.add_argument("--from-endpoint", help="ask this running model (base URL) for the outputs")
    b.add_argument("--features", help="comma-separated input columns, in model order")
    b.add_argument(
        "--categorical",
        help="comma-separated columns clients send as text, as vigil profile build "
        "--categorical reads them: a number written with a leading zero (zip code) stays text",
    )
    _add_endpoint_arguments(b, model_help="model name (inference URL); stored in the golden set")
    b.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    b.add_argument("--task", choices=("classification", "regression"), default="classification")
    b.add_argument(
        "--tolerance",
        type=float,
        help="regression (required there): allowed |got - expected|; classification: unused",
    )
    b.add_argument("--input-name", default="input-0", help="v2 input tensor name")
    b.add_argument(
        "--datatype",
        type=str.upper,  # the protocol's names are upper case; fp32 means FP32
        choices=DATATYPES,
        default="FP64",
        metavar="DATATYPE",
        help=f"v2 input tensor datatype, one of {', '.join(DATATYPES)} (default FP64)",
    )
    b.add_argument("--sample", type=int, default=0, help="keep N random rows")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--configmap", metavar="NAME", help="write a ConfigMap manifest instead")
    b.add_argument("--key", default="golden.json", help="ConfigMap key (default golden.json)")
    b.add_argument("-o", "--output", help="output file (default: stdout)")
    b.set_defaults(func=_cmd_build)

    c = sub.add_parser(
        "check",
        help="replay a golden set against an endpoint",
        description="Replay a golden set (JSON, or a ConfigMap YAML) against a running model "
        "and print the agreement; exit 1 below --min-agreement or on an error in the input "
        "(the golden set, --endpoint without http:// or https://, no model name), 2 when rows "
        "got no answer (an unreachable endpoint, timeouts: no verdict).",
    )
    c.add_argument("golden", help="golden set JSON or ConfigMap YAML ('-' for stdin)")
    c.add_argument("--endpoint", required=True, help="base URL, e.g. http://wine-9b1e4d0.ml.svc")
    _add_endpoint_arguments(c, model_help="model name (default: the golden set's)")
    c.add_argument("--min-agreement", type=float, default=0.99)
    c.add_argument("--key", default="golden.json", help="ConfigMap key when given a YAML")
    c.set_defaults(func=_cmd_check)
