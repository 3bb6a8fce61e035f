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
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from vigil.common import kube_yaml
from vigil.common.commands import command_group
from vigil.validation.golden import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_BYTES,
    GoldenSet,
    GoldenSetError,
    configmap_manifest,
    parse_golden_set,
    predict,
    replay_report,
)


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return (
        int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    )


def read_rows(
    path: Path, expected_column: str | None, features: list[str] | None
) -> tuple[list[str], list[list[Any]], list[Any] | None]:
    """(feature names, rows, expected column values or None) from a CSV or JSON file."""
    if path.suffix.lower() == ".json":
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "inputs" in doc:
            doc = doc["inputs"]
        if not isinstance(doc, list) or not doc:
            raise GoldenSetError(f"{path}: expected a non-empty JSON array of rows")
        if all(isinstance(r, dict) for r in doc):
            names = features or [k for k in doc[0] if k != expected_column]
            rows = [[r[n] for n in names] for r in doc]
            expected = [r[expected_column] for r in doc] if expected_column else None
            return names, rows, expected
        if expected_column:
            raise GoldenSetError("--expected-column needs named columns (CSV or JSON objects)")
        return list(features or []), [list(r) for r in doc], None
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        if expected_column and expected_column not in header:
            raise GoldenSetError(f"{path}: no column {expected_column!r} (columns: {header})")
        names = features or [c for c in header if c != expected_column]
        missing = [n for n in names if n not in header]
        if missing:
            raise GoldenSetError(f"{path}: no column(s) {missing}")
        rows: list[list[Any]] = []
        expected_values: list[Any] = []
        for record in reader:
            rows.append([_number(record[n]) for n in names])
            if expected_column:
                expected_values.append(_number(record[expected_column]))
    return names, rows, expected_values if expected_column else None


def build(args: argparse.Namespace) -> GoldenSet:
    features = [f for f in (args.features or "").split(",") if f] or None
    names, rows, expected = read_rows(Path(args.input), args.expected_column, features)
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
        tolerance=args.tolerance,
        model=args.model or "",
        features=tuple(names),
        input_name=args.input_name,
        datatype=args.datatype,
    )
    if args.expected:
        values = json.loads(Path(args.expected).read_text())
        if isinstance(values, dict):
            values = values.get("expected") or values.get("predictions")
        if not isinstance(values, list) or len(values) != len(rows):
            raise GoldenSetError(f"--expected must hold one output per row ({len(rows)})")
        if args.sample:
            raise GoldenSetError("--sample cannot be combined with --expected (rows would shift)")
        golden = replace(golden, expected=tuple(values))
    if args.from_endpoint:
        predictions, errors = asyncio.run(
            predict(
                golden,
                args.from_endpoint,
                model=args.model,
                timeout_seconds=args.timeout,
                batch_size=args.batch_size,
            )
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
        Path(args.output).write_text(text)
        print(f"wrote {len(golden.inputs)} cases to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.golden == "-" else Path(args.golden).read_text()
        # A ConfigMap in YAML (a .yaml file, or on stdin, as `golden build --configmap` writes).
        if args.golden.endswith((".yaml", ".yml")) or (
            args.golden == "-" and not text.lstrip().startswith(("{", "["))
        ):
            text = yaml.safe_load(text)["data"][args.key]
        golden = parse_golden_set(text)
        report = asyncio.run(
            replay_report(
                golden,
                args.endpoint,
                model=args.model,
                batch_size=args.batch_size,
                timeout_seconds=args.timeout,
            )
        )
    except (GoldenSetError, OSError, KeyError, TypeError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
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
    _add_endpoint_arguments(b, model_help="model name (inference URL); stored in the golden set")
    b.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    b.add_argument("--task", choices=("classification", "regression"), default="classification")
    b.add_argument("--tolerance", type=float, default=0.0, help="regression: allowed |delta|")
    b.add_argument("--input-name", default="input-0", help="v2 input tensor name")
    b.add_argument("--datatype", default="FP64", help="v2 input tensor datatype")
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
        "and print the agreement; exit 1 below --min-agreement.",
    )
    c.add_argument("golden", help="golden set JSON or ConfigMap YAML ('-' for stdin)")
    c.add_argument("--endpoint", required=True, help="base URL, e.g. http://wine-9b1e4d0.ml.svc")
    _add_endpoint_arguments(c, model_help="model name (default: the golden set's)")
    c.add_argument("--min-agreement", type=float, default=0.99)
    c.add_argument("--key", default="golden.json", help="ConfigMap key when given a YAML")
    c.set_defaults(func=_cmd_check)
