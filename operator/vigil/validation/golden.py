"""Golden sets: "does production reproduce research?", checked before any live traffic.

A golden set is a JSON document (kept in a ConfigMap, referenced by a
``validate`` rollout step) holding inputs in the model's protocol and the
outputs the research environment produced for them::

    {
      "format": "vigil.dev/golden-set/v1",
      "model": "wine",                 # model name in the inference URL (optional)
      "protocol": "v2",                # v2 (Open Inference Protocol) | v1 (KServe V1)
      "task": "classification",        # classification | regression
      "tolerance": 0.0,                # regression: |got - expected| <= tolerance agrees
      "features": ["alcohol", "..."],  # optional: column names, in input order
      "input": {"name": "input-0", "datatype": "FP64"},   # v2 tensor name/type (optional)
      "inputs":   [[14.23, 1.71, ...], [13.2, 1.78, ...]],  # one row per case
      "expected": [0, 0]                                     # one output per case
    }

Replaying sends the rows in batches (``batch_size`` rows per request) to the
candidate -- v2: ``POST {url}/v2/models/{model}/infer`` with one ``[N, F]``
tensor; v1: ``POST {url}/v1/models/{model}:predict`` with ``{"instances":
rows}`` -- and compares each answer with the expected output (:func:`compare`):
class labels exactly, by value (``1`` == ``1.0``; ``true`` == ``1``), a score
where a label was expected being a mismatch; scores only where the expected
outputs are scores (by their decision at 0.5); numbers within ``tolerance``
(``task: regression`` requires one); a ``[N, C]`` output becomes the arg-max
(classification) or its first column.

The model's answer is judged: its predictions, or a refusal of the input
(4xx but 401, 403, 408 and 429), whose rows count as not reproduced. A 401 or
403 asks for credentials the replay cannot send: no result, said so
(``ReplayReport.denied``). No answer (a
timeout, a 5xx, a dropped or refused connection, the time budget spent) is no
evidence: the batch is sent once more, one at a time; rows still without an
answer make the replay incomplete (``ReplayReport.unanswered``), which the
operator takes as no result. At most ``concurrency`` batches go at once,
halved on each timeout. The whole replay is bounded by ``timeout_seconds``; with a
:class:`ReplayProgress` (the operator keeps one per candidate) the batches answered stay
answered, and the next replay sends only the rest.

A ConfigMap holds at most 1 MiB: a few thousand rows of tens of features
fit (``vigil golden build`` refuses more than :data:`MAX_BYTES`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from vigil.common.labels import class_key
from vigil.common.objects import body
from vigil.common.text import without_bom
from vigil.core.rollout import GoldenResult
from vigil.core.spec import GoldenSetRef
from vigil.profile.model import category_key
from vigil.sidecar.monitor import holds_scores, score_decision
from vigil.sidecar.payload import parse_response

FORMAT = "vigil.dev/golden-set/v1"
PROTOCOLS = ("v2", "v1")
TASKS = ("classification", "regression")
#: The tensor datatypes of the Open Inference Protocol (KServe v2), as a model server
#: spells them: any other name makes it refuse every batch (a rollback mid-rollout).
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
#: What fits a ConfigMap with room for its metadata.
MAX_BYTES = 900 * 1024
DEFAULT_BATCH_SIZE = 32
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0
DEFAULT_CONCURRENCY = 4
USER_AGENT = "vigil-golden-set"


class GoldenSetError(ValueError):
    """The golden set is missing or malformed; the message says what and where."""


class GoldenSetNotFound(GoldenSetError):
    """The golden set's ConfigMap does not exist (yet: GitOps may apply it after the
    ModelDeployment): no result, the validate step waits for it within progressDeadline."""


@dataclass(frozen=True)
class GoldenSet:
    """A parsed, validated golden set."""

    inputs: tuple[tuple[Any, ...], ...]
    expected: tuple[Any, ...]
    protocol: str = "v2"
    task: str = "classification"
    tolerance: float = 0.0
    model: str = ""
    features: tuple[str, ...] = ()
    input_name: str = "input-0"
    datatype: str = "FP64"

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "protocol": self.protocol,
            "task": self.task,
            "tolerance": self.tolerance,
            "input": {"name": self.input_name, "datatype": self.datatype},
            "inputs": [list(row) for row in self.inputs],
            "expected": list(self.expected),
        }
        if self.model:
            doc["model"] = self.model
        if self.features:
            doc["features"] = list(self.features)
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_document(), separators=(",", ":")) + "\n"


def _number_or_value(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise GoldenSetError(f"{where}: not a finite number")
    if isinstance(value, dict | list):
        raise GoldenSetError(f"{where}: expected a scalar")
    return value


def _expected_value(value: Any, where: str) -> Any:
    # pandas' to_json writes NaN as null: a case that no answer could ever agree with.
    if value is None:
        raise GoldenSetError(f"{where}: null (no expected output): fill or drop the case")
    return _number_or_value(value, where)


def regression_output(value: Any, where: str) -> int | float:
    """An expected output of a regression: a finite number. Text or a boolean is none: no
    answer is ever within the tolerance of it, and every case would be a mismatch."""
    value = _expected_value(value, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GoldenSetError(
            f"{where}: {value!r} is not a number (task regression compares "
            "|got - expected| with the tolerance)"
        )
    return value


def v2_datatype(value: Any, where: str) -> str:
    """An Open Inference Protocol datatype (:data:`DATATYPES`), in upper case as model servers
    take it; GoldenSetError naming ``where`` for any other."""
    if isinstance(value, str) and value.upper() in DATATYPES:
        return value.upper()
    raise GoldenSetError(
        f"{where}: {value!r} is not an Open Inference Protocol (v2) datatype: one of "
        f"{', '.join(DATATYPES)}"
    )


def numeric_datatype(protocol: str, datatype: str) -> bool:
    """Whether the rows go out as a numeric tensor (v2 FP*/INT*/UINT*), which holds no text."""
    return protocol == "v2" and datatype.upper().startswith(("FP", "INT", "UINT"))


def check_tensor_value(value: Any, datatype: str, where: str) -> None:
    """Refuse text or null in a numeric tensor: the model server rejects the whole batch it
    is in (a rollout's validate step would then fail every case and roll the candidate back)."""
    if value is None:
        raise GoldenSetError(
            f"{where}: null is not a number (input datatype {datatype}; "
            "a case needs every value: fill or drop it)"
        )
    if isinstance(value, str):
        raise GoldenSetError(
            f"{where}: {value!r} is not a number (input datatype {datatype}; "
            "a model that takes text needs datatype BYTES or protocol v1)"
        )


def tensor_value(value: Any, datatype: str, where: str) -> Any:
    """``value`` as a v2 tensor of ``datatype`` holds it: a BOOL is true or false (a CSV's
    ``True``, ``false``, 1 or 0), an INT or UINT a whole number (a pandas ``1.0`` is 1).
    Refused otherwise, naming ``where``: Triton refuses such a batch, and numpy reads the
    text "False" as true."""
    kind = datatype.upper()
    if kind == "BOOL":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise GoldenSetError(f"{where}: {value!r} is not a boolean (input datatype BOOL)")
    if kind.startswith(("INT", "UINT")) and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or (kind.startswith("UINT") and value < 0):
            whole = "a whole number of at least 0" if kind.startswith("UINT") else "a whole number"
            raise GoldenSetError(f"{where}: {value!r} is not {whole} (input datatype {kind})")
    return value


def parse_golden_set(source: str | bytes | Mapping[str, Any]) -> GoldenSet:
    """Read and validate a golden set document (JSON text or decoded).

    A v2 numeric tensor (FP*/INT*/UINT*) holds no text and no null, a datatype is one of
    the protocol's and a regression's expected outputs are numbers: such a set is refused
    here, not by the model server or the comparison in the middle of a rollout.
    """
    if isinstance(source, str | bytes):
        try:
            doc = json.loads(without_bom(source))
        except ValueError as error:
            raise GoldenSetError(f"golden set is not JSON: {error}") from error
        except RecursionError:  # "[[[[...": a few KB reach the parser's stack limit
            raise GoldenSetError("golden set is not JSON: nested too deeply") from None
    else:
        doc = source
    if not isinstance(doc, Mapping):
        raise GoldenSetError("golden set must be a JSON object")
    known = {
        "format",
        "model",
        "protocol",
        "task",
        "tolerance",
        "features",
        "input",
        "inputs",
        "expected",
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise GoldenSetError(f"unknown keys: {', '.join(unknown)}")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise GoldenSetError(f"format: expected {FORMAT!r}, got {fmt!r}")
    protocol = str(doc.get("protocol", "v2"))
    if protocol not in PROTOCOLS:
        raise GoldenSetError(f"protocol: one of {PROTOCOLS} (raw payloads cannot be compared)")
    task = str(doc.get("task", "classification"))
    if task not in TASKS:
        raise GoldenSetError(f"task: one of {TASKS}")
    if task == "regression" and doc.get("tolerance") is None:
        # No safe default: 0 asks for exact equality, which float32 answers never give.
        raise GoldenSetError(
            'tolerance: required for task regression: set "tolerance" to the allowed '
            "|got - expected| (the model server's float32 answers differ from the research "
            "run's floats in the last digits: 1e-6 x the outputs' magnitude is a start)"
        )
    try:
        tolerance = float(doc.get("tolerance", 0.0))
    except (TypeError, ValueError) as error:
        raise GoldenSetError("tolerance: expected a number") from error
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise GoldenSetError("tolerance: must be a finite number >= 0")
    inputs = doc.get("inputs")
    expected = doc.get("expected")
    if not isinstance(inputs, list) or not inputs:
        raise GoldenSetError("inputs: expected a non-empty list of rows")
    if not isinstance(expected, list) or len(expected) != len(inputs):
        raise GoldenSetError("expected: one output per input row")
    tensor = doc.get("input") or {}
    if not isinstance(tensor, Mapping):
        raise GoldenSetError("input: expected {name, datatype}")
    written = tensor.get("datatype") or "FP64"
    # v1 sends rows as they are: no tensor, so no datatype to hold to the protocol's.
    datatype = v2_datatype(written, "input.datatype") if protocol == "v2" else str(written)
    numeric = numeric_datatype(protocol, datatype)
    rows: list[tuple[Any, ...]] = []
    width = None
    for i, row in enumerate(inputs):
        if not isinstance(row, list) or not row:
            raise GoldenSetError(f"inputs[{i}]: expected a non-empty list")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise GoldenSetError(f"inputs[{i}]: {len(row)} values, the first row has {width}")
        if numeric:
            for j, value in enumerate(row):
                check_tensor_value(value, datatype, f"inputs[{i}][{j}]")
        rows.append(tuple(_number_or_value(v, f"inputs[{i}]") for v in row))
    output = regression_output if task == "regression" else _expected_value
    outputs = tuple(output(v, f"expected[{i}]") for i, v in enumerate(expected))
    features = tuple(str(f) for f in doc.get("features") or ())
    if features and len(features) != width:
        raise GoldenSetError(f"features: {len(features)} names for {width} input columns")
    return GoldenSet(
        inputs=tuple(rows),
        expected=outputs,
        protocol=protocol,
        task=task,
        tolerance=tolerance,
        model=str(doc.get("model") or ""),
        features=features,
        input_name=str(tensor.get("name") or "input-0"),
        datatype=datatype,
    )


class ObjectReader(Protocol):
    """The one API call a golden set needs (vigil.operator.api.Api has it)."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


def golden_from_configmap(configmap: Mapping[str, Any] | None, ref: GoldenSetRef) -> GoldenSet:
    """The golden set stored under ``ref.key`` of a ConfigMap (``data`` or ``binaryData``)."""
    if configmap is None:
        raise GoldenSetNotFound(f"ConfigMap {ref.name} (golden set) does not exist")
    try:
        value = body(configmap).value(ref.key)
    except ValueError as error:  # binaryData that is no base64
        raise GoldenSetError(f"ConfigMap {ref.name} key {ref.key}: {error}") from error
    if value is None:
        raise GoldenSetError(f"ConfigMap {ref.name} has no key {ref.key!r} (golden set)")
    try:
        return parse_golden_set(value)
    except GoldenSetError as error:
        raise GoldenSetError(f"ConfigMap {ref.name} key {ref.key}: {error}") from error


async def load_golden_set(api: ObjectReader, namespace: str, ref: GoldenSetRef) -> GoldenSet:
    """Read the golden set through the kube adapter (anything with ``get(kind, ns, name)``)."""
    return golden_from_configmap(await api.get("ConfigMap", namespace, ref.name), ref)


def configmap_manifest(golden: GoldenSet, name: str, key: str = "golden.json") -> dict[str, Any]:
    """A ConfigMap holding the golden set (what ``vigil golden build --configmap`` writes)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"vigil.dev/golden-set": "true"}},
        "data": {key: golden.to_json()},
    }


# -- replay ----------------------------------------------------------------------------


def infer_url(base_url: str, protocol: str, model: str) -> str:
    base = base_url.rstrip("/")
    if protocol == "v1":
        return f"{base}/v1/models/{model}:predict"
    return f"{base}/v2/models/{model}/infer"


def request_body(golden: GoldenSet, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """One inference request for a batch of rows, in the golden set's protocol."""
    if golden.protocol == "v1":
        return {"instances": [list(r) for r in rows]}
    width = len(rows[0]) if rows else 0
    return {
        "inputs": [
            {
                "name": golden.input_name,
                "shape": [len(rows), width],
                "datatype": golden.datatype,
                "data": [list(r) for r in rows],
            }
        ]
    }


@dataclass(frozen=True)
class Mismatch:
    """One case that did not reproduce: its index, what was expected and what came."""

    index: int
    expected: Any
    got: Any


@dataclass(frozen=True)
class ReplayReport:
    """A replay's outcome with the evidence for a status message."""

    result: GoldenResult
    mismatches: tuple[Mismatch, ...] = ()
    errors: tuple[str, ...] = ()
    elapsed_seconds: float = 0.0
    #: No batch could connect: the model was never asked (the rollout replays again).
    unreachable: bool = False
    #: Rows that got no answer, even on a retry (a timeout, a 5xx, a dropped connection,
    #: the time budget spent): no evidence either way, so the replay is no result.
    unanswered: int = 0
    #: Why the candidate's server asked for credentials ("HTTP 401: ..."; "": it did not).
    #: The replay has none to send: no result, however the model would have answered.
    denied: str = ""
    #: The golden set's protocol is not the server's (:func:`protocol_mismatch`; "": it is).
    protocol_note: str = ""
    #: The answers are kept for the next replay (:class:`ReplayProgress`), which sends
    #: only the rows without one.
    resumable: bool = False

    @property
    def complete(self) -> bool:
        """Every row got the model's answer (a prediction, or a refusal of its input)."""
        return self.unanswered == 0 and not self.unreachable

    def summary(self, limit: int = 3) -> str:
        if self.denied:
            return (
                f"the candidate refused the replay for want of credentials ({self.denied}): "
                "the golden replay sends none, so the model was never judged; let its "
                "server answer unauthenticated requests from the operator, or remove the "
                "validate step"
            )
        text = f"{self.result.agreed}/{self.result.total} golden outputs reproduced"
        if self.unanswered:
            text += f", {self.unanswered} row(s) got no answer"
            if self.resumable:
                answered = self.result.total - self.unanswered
                text += f" ({answered} of {self.result.total} answered so far)"
        if self.mismatches:
            shown = ", ".join(
                f"#{m.index}: expected {m.expected!r}, got {m.got!r}"
                for m in self.mismatches[:limit]
            )
            text += f"; first mismatches: {shown}"
        if self.errors:
            text += f"; {len(self.errors)} failed request(s), e.g. {self.errors[0]}"
        if self.protocol_note and self.result.agreed < self.result.total:
            text += f"; {self.protocol_note}"
        return text


#: 4xx statuses that say nothing of the model: the request timed out or was throttled
#: on its way, or asked for credentials (the other 4xx are the model refusing its input:
#: its answer).
NO_ANSWER_4XX = frozenset({401, 403, 408, 429})
#: Of those, the ones a retry will not change: the replay sends no credentials.
DENIED = frozenset({401, 403})


def model_answered(status: int) -> bool:
    """Whether an HTTP status is the model's answer (judged) rather than no answer (retried).

    2xx: its predictions (an unreadable body is its answer too); 4xx but 401, 403, 408 and
    429: the model refused the input (a regression). 5xx, 3xx, 401, 403, 408, 429: no
    answer (a server warming up or restarting, an overloaded or misrouted request, one that
    wants credentials: :data:`DENIED`).
    """
    return 200 <= status < 300 or (400 <= status < 500 and status not in NO_ANSWER_4XX)


@dataclass
class _Batch:
    start: int
    rows: Sequence[Sequence[Any]]
    predictions: list[Any] | None = None
    error: str = ""
    #: The model answered (predictions, or a refusal of the input): judged, never retried.
    answered: bool = False
    #: No connection could be made (refused, reset, no route): the model was never asked.
    unreachable: bool = False
    #: The request timed out (the server queues: fewer requests at once).
    timed_out: bool = False
    #: Refused for want of credentials (:data:`DENIED`): not sent again.
    denied: bool = False

    def reset(self) -> None:
        self.error, self.unreachable, self.timed_out = "", False, False


@dataclass
class ReplayProgress:
    """The batches one revision has answered of one golden set, kept between replays: one
    that ran out of time sends only the rest the next time, so a slow model answers a large
    set over several replays instead of none."""

    golden: GoldenSet
    revision: str
    batch_size: int = DEFAULT_BATCH_SIZE
    #: By first row: predictions, or the model's refusal of the input (never sent again).
    answered: dict[int, _Batch] = field(default_factory=dict)

    def fits(self, golden: GoldenSet, revision: str) -> bool:
        """Whether these answers are of this set and revision (else they start again)."""
        return revision == self.revision and golden == self.golden

    @property
    def rows(self) -> int:
        return sum(len(batch.rows) for batch in self.answered.values())


async def _send(
    session: aiohttp.ClientSession, url: str, golden: GoldenSet, batch: _Batch, timeout: float
) -> None:
    encoded = json.dumps(request_body(golden, batch.rows)).encode()
    batch.reset()
    try:
        # A 3xx is no answer (model_answered): followed, the POST became a GET whose page
        # was judged as the model's.
        async with session.post(
            url,
            data=encoded,
            allow_redirects=False,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            payload = await response.read()
            if response.status >= 300:
                batch.error = f"HTTP {response.status}: {payload[:200].decode(errors='replace')}"
                batch.answered = model_answered(response.status)
                batch.denied = response.status in DENIED
                return
            parsed = parse_response(
                golden.protocol,
                payload,
                response.headers.get("Content-Type", "application/json"),
                golden.classification,
            )
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        batch.error = f"{type(error).__name__}: {error}"
        batch.unreachable = isinstance(error, aiohttp.ClientConnectorError)
        batch.timed_out = isinstance(error, TimeoutError)
        return
    batch.answered = True
    if parsed.values is None or len(parsed.values) != len(batch.rows):
        count = "no" if parsed.values is None else str(len(parsed.values))
        batch.error = f"unreadable answer: {count} predictions for {len(batch.rows)} rows"
        return
    batch.predictions = list(parsed.values)


async def predict(
    golden: GoldenSet, base_url: str, **options: Any
) -> tuple[list[Any | None], list[str]]:
    """Send every input row; one prediction per row (None where its batch failed) and errors.

    ``options``: those of :func:`replay`.
    """
    return _predictions(golden, await _send_batches(golden, base_url, **options))


async def _send_batches(
    golden: GoldenSet,
    base_url: str,
    *,
    model: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    session: aiohttp.ClientSession | None = None,
    progress: ReplayProgress | None = None,
) -> list[_Batch]:
    """Every input row sent in batches (each with its predictions, or its error).

    Up to ``concurrency`` batches at once, halved on each timeout (a server that queues
    them, one worker on one replica, times the waiting ones out); then each batch that got
    no answer is sent once more, one at a time, within what is left of the time budget.
    With ``progress``, the batches answered in earlier replays are not sent again, and
    those answered now join them.
    """
    name = model or golden.model
    if not name:  # the CLI asks for --model before it gets here
        raise GoldenSetError("no model name: pass model= or set 'model' in the golden set")
    url = infer_url(base_url, golden.protocol, name)
    size = max(1, progress.batch_size if progress is not None else batch_size)
    done = progress.answered if progress is not None else {}
    batches = [
        done.get(start) or _Batch(start, golden.inputs[start : start + size])
        for start in range(0, len(golden.inputs), size)
    ]
    deadline = time.monotonic() + timeout_seconds
    spent = f"replay time budget of {timeout_seconds:g}s spent"
    own = session is None
    client = session or aiohttp.ClientSession()
    waiting = deque(batch for batch in batches if not batch.answered)
    limit = max(1, concurrency)

    async def attempt(batch: _Batch) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            batch.error = spent
            return
        await _send(client, url, golden, batch, min(request_timeout_seconds, left))

    async def worker(index: int) -> None:
        nonlocal limit
        while waiting and index < limit:  # a worker above the limit stops
            batch = waiting.popleft()
            await attempt(batch)
            if batch.timed_out:
                limit = max(1, limit // 2)

    async def run() -> None:
        await asyncio.gather(*(worker(i) for i in range(limit)))
        for batch in batches:  # once more, one at a time: no answer is no evidence
            if not batch.answered and not batch.denied:
                await attempt(batch)

    try:
        try:
            await asyncio.wait_for(run(), timeout=timeout_seconds + 1)
        except TimeoutError:
            for batch in batches:
                if not batch.answered and not batch.error:
                    batch.error = spent
    finally:
        if own:
            await client.close()
        done.update((batch.start, batch) for batch in batches if batch.answered)
    return batches


def _predictions(
    golden: GoldenSet, batches: Sequence[_Batch]
) -> tuple[list[Any | None], list[str]]:
    """One prediction per row (None where its batch failed) and the batches' errors."""
    predictions: list[Any | None] = [None] * len(golden.inputs)
    errors: list[str] = []
    for batch in batches:
        if batch.predictions is None:
            errors.append(f"rows {batch.start}..{batch.start + len(batch.rows) - 1}: {batch.error}")
            continue
        predictions[batch.start : batch.start + len(batch.rows)] = batch.predictions
    return predictions, errors


def label_key(value: Any) -> str | None:
    """A class label's key: :func:`vigil.profile.model.category_key` (``1`` == ``1.0``), with
    a boolean's forms one label (:func:`vigil.common.labels.class_key`, the shadow
    comparison's rule too): ``True``, ``1``, ``"true"`` (any case) and ``"1"`` are ``"true"``."""
    return class_key(category_key(value))


def _finite(value: Any) -> float | None:
    """A number (a boolean is none) that is finite; None otherwise."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    return None if number is None or not math.isfinite(number) else float(number)


def _agrees(golden: GoldenSet, expected: Any, got: Any, scores: bool) -> bool:
    if not golden.classification:
        a, b = _finite(expected), _finite(got)
        return a is not None and b is not None and abs(a - b) <= golden.tolerance
    if scores:  # the research outputs were scores: compared by the class each stands for
        expected, got = score_decision(expected), score_decision(got)
    key = label_key(expected)
    return key is not None and key == label_key(got)


def compare(golden: GoldenSet, predictions: Sequence[Any | None]) -> tuple[int, list[Mismatch]]:
    """Agreed cases and the mismatches (a missing prediction never agrees).

    Classification compares labels exactly (:func:`label_key`): an answer that is no label
    (a logit, a probability where labels were expected) is a mismatch. Only a golden set
    whose expected outputs are scores (any non-whole float) compares decisions, at 0.5.
    Regression: ``|got - expected| <= tolerance``, numbers only.
    """
    scores = golden.classification and holds_scores(golden.expected)
    agreed = 0
    mismatches: list[Mismatch] = []
    for index, (expected, got) in enumerate(zip(golden.expected, predictions, strict=True)):
        if got is not None and _agrees(golden, expected, got, scores):
            agreed += 1
        elif got is not None:
            mismatches.append(Mismatch(index, expected, got))
    return agreed, mismatches


async def replay_report(
    golden: GoldenSet, base_url: str, *, server_protocol: str = "", **options: Any
) -> ReplayReport:
    """Replay the golden set against ``base_url`` and keep the evidence.

    ``server_protocol``: the one the server speaks (``spec.server.protocol``; "": unknown);
    a golden set of another is replayed all the same, a failure's words saying so
    (:func:`protocol_mismatch`).
    """
    started = time.monotonic()
    batches = await _send_batches(golden, base_url, **options)
    predictions, errors = _predictions(golden, batches)
    agreed, mismatches = compare(golden, predictions)
    return ReplayReport(
        GoldenResult(total=len(golden.inputs), agreed=agreed),
        tuple(mismatches),
        tuple(errors),
        round(time.monotonic() - started, 3),
        unreachable=bool(batches) and all(batch.unreachable for batch in batches),
        unanswered=sum(len(batch.rows) for batch in batches if not batch.answered),
        denied=next((batch.error for batch in batches if batch.denied), ""),
        protocol_note=protocol_mismatch(golden, server_protocol),
        resumable=options.get("progress") is not None,
    )


def protocol_mismatch(golden: GoldenSet, server_protocol: str) -> str:
    """Words for a golden set of another protocol than ``spec.server.protocol`` ("": the
    same, or raw, which says nothing). Not refused: a server may speak both (KServe's);
    one that does not answers every request 404, read as the model refusing its input."""
    if server_protocol in PROTOCOLS and golden.protocol != server_protocol:
        return (
            f"the golden set is {golden.protocol} but spec.server.protocol is "
            f"{server_protocol}: a server that speaks only {server_protocol} refuses its "
            f"requests (build it again with --protocol {server_protocol})"
        )
    return ""


async def replay(golden: GoldenSet, base_url: str, **options: Any) -> GoldenResult:
    """Replay the golden set against a candidate endpoint: ``GoldenResult(total, agreed)``.

    ``base_url`` is the candidate's address (its per-revision Service,
    ``http://<name>-<revision>.<namespace>.svc``); options: ``model``,
    ``batch_size``, ``timeout_seconds`` (whole replay), ``request_timeout_seconds``,
    ``concurrency``, ``session``.
    """
    return (await replay_report(golden, base_url, **options)).result
