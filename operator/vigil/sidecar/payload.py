"""Turn inference request/response bodies into feature columns and predictions.

Pure functions, no I/O: they run in the monitoring task on a *copy* of the
bodies after the client already has its answer. Any problem is reported as
a violation kind (a metric label), never raised to the proxy.

Supported payloads:

* Open Inference Protocol v2: ``{"inputs": [{"name", "shape", "datatype",
  "data"}]}``. One tensor of shape ``[N, F]`` maps its columns to the
  reference's features in order; several tensors of shape ``[N]`` or
  ``[N, 1]`` map by tensor name to feature name. Response: the first entry
  of ``outputs`` (:func:`prediction_output`; a shadow comparison reads the
  other answer's output of the same name).
* KServe V1: ``{"instances": [...]}`` (or ``"inputs"``), rows as lists (in
  feature order) or objects (by feature name). Response ``{"predictions":
  [...]}``.
* The v2 binary tensor extension (:mod:`vigil.sidecar.binary_tensors`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from vigil.sidecar.binary_tensors import fill_binary_data

__all__ = [
    "ArgMaxes",
    "ParsedInput",
    "ParsedOutput",
    "endpoint_of",
    "parse_request",
    "parse_response",
    "prediction_output",
]

_V2_INFER = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
_V1_PREDICT = re.compile(r"^/v1/models/[^/:]+:predict$")

# Violation kinds (label values of vigil_input_schema_violations_total).
MALFORMED_JSON = "malformed_json"
CONTENT_TYPE = "content_type"
CONTENT_ENCODING = "content_encoding"
UNKNOWN_PAYLOAD = "unknown_payload"
SHAPE = "shape"
TYPE = "type"
FEATURE_COUNT = "feature_count"


def endpoint_of(protocol: str, method: str, path: str) -> str:
    """``infer`` for the protocol's inference route, ``other`` for the rest.

    For ``raw`` every POST counts as inference (the sidecar cannot know more).
    """
    if method != "POST":
        return "other"
    if protocol == "v2":
        return "infer" if _V2_INFER.match(path) else "other"
    if protocol == "v1":
        return "infer" if _V1_PREDICT.match(path) else "other"
    return "infer"


@dataclass(slots=True)
class ParsedInput:
    """Feature columns (aligned with ``names``) of one request, or why not."""

    rows: int = 0
    columns: dict[str, list[Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ParsedOutput:
    """One prediction per row (class labels or numbers), or why not."""

    values: list[Any] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: The ``name`` of the v2 output the values came from (None: unnamed, or not v2).
    output: str | None = None


class ArgMaxes(list[int]):
    """A classifier's predictions read as the arg-max column of one score per class
    (``[N, C]``): column indices, not class labels, and ``columns`` (C).

    A list, so every reader of predictions takes them as before; the join store looks
    for the type (feedback.prediction_values): an index names a class only where the
    classes are the indices 0..C-1, and which column is which other class no answer says.
    """

    __slots__ = ("columns",)

    def __init__(self, indices: list[int], columns: int) -> None:
        super().__init__(indices)
        self.columns = columns


#: ``_loads`` marks: digits become ``0``, ``[`` and ``{`` become ``[``, the rest a blank.
_MARKS = bytes(
    ord("0") if c in b"0123456789" else ord("[") if c in b"[{" else ord(" ") for c in range(256)
)
#: orjson reads an integer beyond 64 bits as a float (json keeps it exact); any such
#: integer has at least 19 digits in a row.
_LONG_DIGITS = b"0" * 19
#: json raises RecursionError at a depth that depends on the caller's stack (about
#: 1000 minus it), orjson at 1024: documents with this many ``[``/``{`` go to json.
_MAX_ORJSON_NESTING = 512


def _loads(body: bytes) -> Any:
    """``json.loads(body)``, through orjson (about 6x faster) wherever it gives the same.

    orjson differs from json in what it refuses (NaN, Infinity, numbers beyond
    float range, lone surrogate escapes, a UTF-8 BOM, UTF-16/32 bodies, nesting
    over 1024): those go to json, which decides as before. It also reads
    integers beyond 64 bits as floats, and json may hit its recursion limit
    below orjson's: bodies that could hold either go straight to json. So
    every body gets json's value and json's verdict (payload tests compare both).
    """
    if not isinstance(body, bytes | bytearray):  # str: json as before
        return json.loads(body)
    marks = body.translate(_MARKS)
    if _LONG_DIGITS in marks or marks.count(b"[") >= _MAX_ORJSON_NESTING:
        return json.loads(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _decode(body: bytes, content_type: str, json_length: int | None) -> tuple[Any, list[str]]:
    """The body's document and its violations; ``json_length``: the binary tensor
    extension's JSON part (:mod:`vigil.sidecar.binary_tensors`), the tensors' bytes after."""
    violations: list[str] = []
    if json_length is not None:
        if json_length > len(body):
            return None, [MALFORMED_JSON]
        body, binary = body[:json_length], body[json_length:]
    elif content_type and "json" not in content_type:
        violations.append(CONTENT_TYPE)
    try:
        doc = _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack ("[[[[...").
        return None, [*violations, MALFORMED_JSON]
    if json_length is not None:
        fill_binary_data(doc, binary)
    return doc, violations


def _size(shape: Any) -> int | None:
    if not isinstance(shape, list) or not shape:
        return None
    total = 1
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            return None
        total *= dim
    return total


def _flatten(data: Any) -> list[Any] | None:
    """Row-major flattening of nested lists (v2 allows nested ``data``).

    None for ragged nesting (rows of unequal length, lists beside values): its
    values cannot be told apart by row and column, even when their total fits.
    """
    if not isinstance(data, list) or not data or not isinstance(data[0], list):
        return data if isinstance(data, list) else [data]
    level: list[Any] = data
    while level and type(level[0]) is list:
        width = len(level[0])
        if any(type(row) is not list or len(row) != width for row in level):
            return None
        level = list(chain.from_iterable(level))
    if any(type(value) is list for value in level):
        return None
    return level


def _v2_tensor(tensor: Any) -> tuple[list[Any] | None, list[int] | None, str | None]:
    """(flat data, shape, violation) of one v2 tensor."""
    if not isinstance(tensor, dict):
        return None, None, UNKNOWN_PAYLOAD
    shape = tensor.get("shape")
    data = tensor.get("data")
    total = _size(shape)
    if total is None or data is None:
        return None, None, SHAPE
    flat = _flatten(data)
    if flat is None or len(flat) != total:
        return None, None, SHAPE
    return flat, shape, None


def parse_request(
    protocol: str,
    body: bytes,
    content_type: str,
    features: tuple[str, ...],
    json_length: int | None = None,
) -> ParsedInput:
    """Extract columns for ``features`` (model input order) from a request body
    (``json_length``: its Inference-Header-Content-Length)."""
    out = ParsedInput()
    doc, out.violations = _decode(body, content_type, json_length)
    if MALFORMED_JSON in out.violations:  # not "doc is None": a JSON null is a document
        return out
    if protocol == "v2":
        _parse_v2_request(doc, features, out)
    elif protocol == "v1":
        _parse_v1_request(doc, features, out)
    return out


def _parse_v2_request(doc: Any, features: tuple[str, ...], out: ParsedInput) -> None:
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs:
        out.violations.append(UNKNOWN_PAYLOAD)
        return
    nfeat = len(features)
    if len(inputs) == 1:
        flat, shape, bad = _v2_tensor(inputs[0])
        if bad is not None or flat is None or shape is None:
            out.violations.append(bad or SHAPE)
            return
        if len(shape) > 2:
            out.violations.append(SHAPE)
            return
        # From the shape, not the data: an empty batch ([0, F]) still has F columns.
        rows, width = shape[0], shape[1] if len(shape) == 2 else 1
        if nfeat == 1 and (len(shape) == 1 or width == 1):
            out.rows = rows
            out.columns = {features[0]: flat}
            return
        if nfeat and width != nfeat:
            out.rows = rows
            out.violations.append(FEATURE_COUNT)
            return
        out.rows = rows
        out.columns = {name: flat[i::width] for i, name in enumerate(features)}
        return
    # One tensor per feature, matched by name.
    by_name: dict[str, list[Any]] = {}
    rows: int | None = None
    for tensor in inputs:
        flat, shape, bad = _v2_tensor(tensor)
        if bad is not None or flat is None or shape is None:
            out.violations.append(bad or SHAPE)
            return
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            out.violations.append(SHAPE)
            return
        if rows is not None and shape[0] != rows:
            out.violations.append(SHAPE)
            return
        rows = shape[0]
        by_name[str(tensor.get("name"))] = flat
    out.rows = rows or 0
    if nfeat and any(name not in by_name for name in features):
        out.violations.append(FEATURE_COUNT)
        return
    out.columns = {name: by_name[name] for name in features}


def _parse_v1_request(doc: Any, features: tuple[str, ...], out: ParsedInput) -> None:
    instances = None
    if isinstance(doc, dict):
        instances = doc.get("instances", doc.get("inputs"))
    if not isinstance(instances, list):
        out.violations.append(UNKNOWN_PAYLOAD)
        return
    out.rows = len(instances)
    if not features or not instances:
        return
    nfeat = len(features)
    columns: list[list[Any]] = [[] for _ in features]
    bad_count = False
    for row in instances:
        if isinstance(row, list):
            if len(row) != nfeat:
                bad_count = True
                continue
            for col, value in zip(columns, row, strict=True):
                col.append(value)
        elif isinstance(row, dict):
            # A key left out is a missing value (JSON clients drop null fields).
            for col, name in zip(columns, features, strict=True):
                col.append(row.get(name))
        elif nfeat == 1:
            columns[0].append(row)
        else:
            bad_count = True
    if bad_count:
        out.violations.append(FEATURE_COUNT)
    out.columns = dict(zip(features, columns, strict=True))


def _reduce_rows(values: list[Any], shape: list[int], classification: bool) -> list[Any]:
    """One prediction per row from an ``[N]``, ``[N, 1]`` or ``[N, C]`` output: for a
    classifier whose rows are all numbers, their arg-maxes as :class:`ArgMaxes`."""
    if len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1):
        return values
    rows, width = shape[0], (len(values) // shape[0] if shape[0] else 0)
    out: list[Any] = []
    scores = classification
    for r in range(rows):
        row = values[r * width : (r + 1) * width]
        if classification:
            try:
                index = max(range(width), key=row.__getitem__)
            except TypeError:
                out.append(row[0])
                scores = False
                continue
            out.append(index)
            # Numbers do not compare with text or null: a number at the top, all are.
            scores = scores and isinstance(row[index], int | float)
        else:
            out.append(row[0])
    return ArgMaxes(out, width) if scores and width > 1 else out


def prediction_output(outputs: list[Any], name: str | None = None) -> Any:
    """The v2 output that holds the prediction: the first one (the monitor's rule).

    ``name``: the output another answer's prediction came from (a shadow comparison):
    the output so named, or the first when this answer names none of its outputs.
    None when it names them but none so: it lacks the output compared.
    """
    if name is None:
        return outputs[0]
    unnamed = True
    for output in outputs:
        found = output.get("name") if isinstance(output, dict) else None
        if found == name:
            return output
        unnamed = unnamed and found is None
    return outputs[0] if unnamed else None


def parse_response(
    protocol: str,
    body: bytes,
    content_type: str,
    classification: bool,
    output_name: str | None = None,
    json_length: int | None = None,
) -> ParsedOutput:
    """Extract one prediction per row from a response body.

    A 2-D output ``[N, C]`` with ``C > 1`` (probabilities or scores) becomes
    the arg-max index for classification (:class:`ArgMaxes`) and the first column
    otherwise.
    ``output_name``: read the v2 output of this name (:func:`prediction_output`);
    an answer that names its outputs but none so is an ``unknown_payload``.
    ``json_length``: the answer's Inference-Header-Content-Length.
    """
    out = ParsedOutput()
    doc, out.violations = _decode(body, content_type, json_length)
    if MALFORMED_JSON in out.violations:  # not "doc is None": a JSON null is a document
        return out
    if protocol == "v2":
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        if not isinstance(outputs, list) or not outputs:
            out.violations.append(UNKNOWN_PAYLOAD)
            return out
        tensor = prediction_output(outputs, output_name)
        if tensor is None:
            out.violations.append(UNKNOWN_PAYLOAD)
            return out
        flat, shape, bad = _v2_tensor(tensor)
        if bad is None and shape is not None and 0 in shape[1:]:
            bad = SHAPE  # rows of no values ([2, 0]): no prediction to read in any of them
        if bad is not None or flat is None or shape is None:
            out.violations.append(bad or SHAPE)
            return out
        out.values = _reduce_rows(flat, shape, classification)
        name = tensor.get("name")
        out.output = name if isinstance(name, str) else None
    elif protocol == "v1":
        preds = doc.get("predictions") if isinstance(doc, dict) else None
        if not isinstance(preds, list):
            out.violations.append(UNKNOWN_PAYLOAD)
            return out
        values: list[Any] = []
        #: Each row's columns when read as an arg-max, else 0.
        widths: set[int] = set()
        for p in preds:
            if isinstance(p, list):
                if not p:
                    out.violations.append(SHAPE)
                    return out
                reduced = _reduce_rows(p, [1, len(p)], classification) if len(p) > 1 else p
                values.append(reduced[0])
                widths.add(reduced.columns if isinstance(reduced, ArgMaxes) else 0)
            elif isinstance(p, dict):
                out.violations.append(TYPE)
                return out
            else:
                values.append(p)
                widths.add(0)
        columns = widths.pop() if len(widths) == 1 else 0
        out.values = ArgMaxes(values, columns) if columns else values
    return out
