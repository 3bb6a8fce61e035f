"""The reference profile: data classes, JSON (de)serialisation, fingerprint.

A reference profile summarises the training (or research-time) data of one
model: per feature its type, nullability, allowed range or set, summary
statistics, and the fixed bins (numeric) or top categories (categorical)
that the sidecars count live traffic into. The same block describes the
model's prediction output. The format is documented in
``docs/reference-profile.md``; bump :data:`SCHEMA_VERSION` on any
incompatible change.

Pure Python + NumPy-free on purpose: the operator loads profiles from
ConfigMaps and should not need more than the standard library for that.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from vigil.common.text import not_utf8, without_bom

#: Identifies the document type (a profile is plain JSON, often in a ConfigMap).
FORMAT = "vigil.dev/reference-profile"
#: Incremented on incompatible changes of the JSON layout.
SCHEMA_VERSION = 1
#: Label of the category bucket that holds everything outside the top-K.
OTHER = "__other__"

FeatureType = Literal["numeric", "categorical"]
Task = Literal["classification", "regression"]


class ProfileError(ValueError):
    """A profile is missing, unreadable or does not follow the format."""


class ProfileWarning(UserWarning):
    """A profile was built, but part of it will monitor less than it seems to (or it is
    too large for ``kubectl apply``'s client-side annotation: :func:`check_size`)."""


def category_key(value: object) -> str | None:
    """Canonical string for a categorical value (``None`` for missing).

    One value, one key, whatever its type: class labels arrive as ``1`` from one
    runtime and ``1.0`` from another, so integral numbers become ints (a
    ``Decimal('11.00')`` too); a non-integral ``Decimal`` is keyed as the float a
    client sends for it (``Decimal('0.10')`` as ``0.1``); a NumPy float32 (or
    float16) as the float32 it is, written shortest (``float32(0.1)`` as ``"0.1"``,
    not ``"0.10000000149011612"``); a datetime as its ISO text (``2024-01-01T00:00:00``).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):  # inline: the sidecar's hot path
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value) if type(value) is float else float.__repr__(value)
    if type(value) is str:
        return _text_key(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        return _float_key(float(value))
    if isinstance(value, datetime):  # pandas' Timestamp too
        # ISO text, as JSON clients send it: str() writes a space for the "T".
        return value.isoformat()
    dtype = getattr(value, "dtype", None) if type(value).__module__ == "numpy" else None
    if dtype is not None:  # a NumPy scalar (NumPy is not imported here)
        if dtype.kind == "b":
            return "true" if value else "false"
        if dtype.kind in ("i", "u"):
            return str(value)
        if dtype.kind == "f" and dtype.itemsize in _NARROW_FLOATS:
            return _float_key(_shortest(float(value), _NARROW_FLOATS[dtype.itemsize]))
    # Text; also float64 beyond a float (longdouble), dates and the like, as before.
    return _text_key(str(value))


def to_float32(value: float) -> float | None:
    """``value`` rounded to float32 (as a float); ``None`` beyond float32's range.

    0.1 and 0.10000000149011612 (float32(0.1) sent as a float64) are one float32: the
    sidecar falls back on it for a float that no reference category matches.
    """
    try:
        return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])
    except OverflowError:
        return None


def _float_key(value: float) -> str | None:
    if math.isnan(value):
        return None
    if value.is_integer():
        return str(int(value))
    return repr(value)


def _text_key(text: str) -> str:
    if text.isascii():
        return text
    # A lone surrogate (JSON allows "\ud800") is no UTF-8: as a metric label it would
    # make every scrape fail.
    return text.encode("utf-8", "replace").decode("utf-8")


_FLOAT32 = struct.Struct("<f")
#: Packers of the floats narrower than float64, by size in bytes (float16, float32).
_NARROW_FLOATS = {2: struct.Struct("<e"), 4: _FLOAT32}


def _shortest(value: float, packer: struct.Struct) -> float:
    """The float64 of the shortest decimal that reads back as ``value`` in a narrow float.

    ``value`` is one in that format (or not finite); of the shortest decimals, the
    nearest: what NumPy prints a float32 as, and what a client writes for it. A
    decimal of n digits that reads back is one of n + 1 digits too: binary search.
    """
    if not math.isfinite(value) or value.is_integer():
        return value
    low, high = 1, 9 if packer.size == 4 else 5  # digits that tell any two apart
    found = value
    while low <= high:
        digits = (low + high) // 2
        candidate = _decimal(value, digits, packer)
        if candidate is None:
            low = digits + 1
        else:
            found, high = candidate, digits - 1
    return found


def _decimal(value: float, digits: int, packer: struct.Struct) -> float | None:
    """The nearest decimal of ``digits`` digits that reads back as ``value``, or None."""
    text = f"{value:.{digits - 1}e}"
    if _reads_back(text, value, packer):
        return float(text)
    if abs(math.frexp(value)[0]) != 0.5:
        return None
    # At a power of two the gap below is half the one above: the nearest decimal can
    # fall short where the next one away from zero does not.
    mantissa, exponent = text.split("e")
    step = Decimal(1).scaleb(int(exponent) - digits + 1).copy_sign(Decimal(mantissa))
    further = str(Decimal(text) + step)
    return float(further) if _reads_back(further, value, packer) else None


def _reads_back(text: str, value: float, packer: struct.Struct) -> bool:
    try:
        return bool(packer.unpack(packer.pack(float(text)))[0] == value)
    except OverflowError:  # past the format's largest value
        return False


@dataclass(frozen=True)
class Summary:
    """Summary statistics over the non-missing values (std with ddof=0)."""

    mean: float
    std: float
    min: float
    max: float
    median: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureProfile:
    """One input feature (or the prediction output) of the reference data.

    ``proportions`` is the reference distribution the live counts are
    compared with, slot by slot:

    * numeric: ``len(edges) + 1`` slots = underflow, ``len(edges) - 1``
      inner bins, overflow (see :mod:`vigil.core.drift` for the edge rule);
    * categorical: one slot per entry of ``categories`` followed by one
      slot for :data:`OTHER`.
    """

    name: str
    index: int
    type: FeatureType
    count: int
    null_rate: float
    nullable: bool
    proportions: tuple[float, ...]
    summary: Summary | None = None
    edges: tuple[float, ...] | None = None
    categories: tuple[str, ...] | None = None
    allowed: tuple[str, ...] | None = None

    @property
    def slot_labels(self) -> tuple[str, ...]:
        """Label of every slot, as the sidecar exports it (``bin`` / ``category``)."""
        if self.type == "numeric":
            return tuple(str(i) for i in range(len(self.proportions)))
        return (*(self.categories or ()), OTHER)

    @property
    def range(self) -> tuple[float, float] | None:
        """Allowed numeric range: the reference min and max."""
        if self.summary is None or self.type != "numeric":
            return None
        return (self.summary.min, self.summary.max)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "index": self.index,
            "type": self.type,
            "count": self.count,
            "nullable": self.nullable,
            "nullRate": self.null_rate,
            "stats": self.summary.to_dict() if self.summary is not None else None,
        }
        if self.type == "numeric":
            assert self.edges is not None and self.summary is not None
            out["range"] = {"min": self.summary.min, "max": self.summary.max}
            out["bins"] = {"edges": list(self.edges), "proportions": list(self.proportions)}
        else:
            assert self.categories is not None
            out["categories"] = {
                "values": list(self.categories),
                "proportions": list(self.proportions[:-1]),
                "other": self.proportions[-1],
            }
            out["allowed"] = list(self.allowed) if self.allowed is not None else None
        return out


@dataclass(frozen=True)
class DriftDefaults:
    """Drift method and thresholds given at build time, kept for information only.

    Nothing in the operator or the sidecar reads them: drift is judged with the
    ModelDeployment's ``spec.monitoring.drift``. Kept in the format (and the fingerprint).
    """

    method: Literal["psi", "jsd"] = "psi"
    warning: float = 0.1
    threshold: float = 0.2
    epsilon: float = 1e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ValidationMethod = Literal["holdout", "cross-validation", "in-sample"]
VALIDATION_METHODS: tuple[ValidationMethod, ...] = ("holdout", "cross-validation", "in-sample")


@dataclass(frozen=True)
class Validation:
    """The model's score on labelled rows: the baseline realized performance is held to.

    ``holdout``: rows the model did not learn from; ``cross-validation``:
    out-of-fold predictions; ``in-sample``: the training rows themselves
    (optimistic). Accuracy for a classifier, MAE and RMSE for a regressor.
    """

    method: ValidationMethod
    rows: int
    accuracy: float | None = None
    mae: float | None = None
    rmse: float | None = None

    @property
    def metric(self) -> Literal["accuracy", "mae"]:
        return "accuracy" if self.accuracy is not None else "mae"

    @property
    def score(self) -> float:
        """The baseline: accuracy, or MAE for a regressor."""
        value = self.accuracy if self.accuracy is not None else self.mae
        assert value is not None
        return value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "rows": self.rows}
        for key, value in (("accuracy", self.accuracy), ("mae", self.mae), ("rmse", self.rmse)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class ReferenceProfile:
    """A whole reference profile; see ``docs/reference-profile.md``."""

    model_name: str
    model_version: str
    row_count: int
    created_at: str
    task: Task
    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None
    drift: DriftDefaults = field(default_factory=DriftDefaults)
    #: The validation score (optional): the baseline of realized performance.
    validation: Validation | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in model input order (column order of v1 rows / v2 tensors)."""
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def content_dict(self) -> dict[str, Any]:
        """Everything that the fingerprint covers (all but ``createdAt``).

        ``validation`` only when present: profiles built without it keep their
        fingerprint (and their revision).
        """
        out = {
            "format": FORMAT,
            "schemaVersion": self.schema_version,
            "model": {"name": self.model_name, "version": self.model_version},
            "rowCount": self.row_count,
            "task": self.task,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
            "drift": self.drift.to_dict(),
        }
        if self.validation is not None:
            out["validation"] = self.validation.to_dict()
        return out

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical JSON of :meth:`content_dict`.

        ``createdAt`` is left out so that rebuilding a profile from the same
        data gives the same fingerprint (and no needless rollout).
        """
        canonical = json.dumps(
            self.content_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        out = self.content_dict()
        out["createdAt"] = self.created_at
        out["fingerprint"] = self.fingerprint
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"

    def with_model(self, name: str, version: str) -> ReferenceProfile:
        return replace(self, model_name=name, model_version=version)


#: ``kubectl apply`` (client-side) keeps a copy of the object, JSON-escaped, in its
#: last-applied-configuration annotation; an object's annotations hold at most 256 KiB.
APPLY_ANNOTATION_BYTES = 256 * 1024
#: What a ConfigMap's data holds at most (all keys together).
CONFIGMAP_BYTES = 1024 * 1024


def check_size(profile: ReferenceProfile, text: str) -> None:
    """Refuse profile JSON no ConfigMap holds; warn when ``kubectl apply`` cannot store it.

    ``text`` is the profile's JSON as written. Above :data:`CONFIGMAP_BYTES` raises
    :class:`ProfileError`; above :data:`APPLY_ANNOTATION_BYTES` once JSON-escaped (as
    the annotation holds it) warns :class:`ProfileWarning`. Both name the largest features.
    """
    size = len(text.encode())
    escaped = len(json.dumps(text, ensure_ascii=False).encode())
    if escaped <= APPLY_ANNOTATION_BYTES and size <= CONFIGMAP_BYTES:
        return
    smaller = (
        f"make it smaller: fewer features (largest: {_largest(profile)}), bins (--bins) "
        "or categories (--top-k)"
    )
    if size > CONFIGMAP_BYTES:
        raise ProfileError(
            f"the profile is {_kib(size)} of JSON, more than a ConfigMap holds (1 MiB): {smaller}"
        )
    warnings.warn(
        ProfileWarning(
            f"the profile is {_kib(size)} of JSON ({_kib(escaped)} escaped): kubectl apply "
            "(client-side) copies it into its last-applied-configuration annotation, which "
            "holds at most 256 KiB, and fails; create the ConfigMap with kubectl create "
            f"configmap or apply it server-side (kubectl apply --server-side), or {smaller}"
        ),
        stacklevel=2,
    )


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"


def _largest(profile: ReferenceProfile, shown: int = 3) -> str:
    """The features taking the most JSON, with what they hold."""
    blocks = [*profile.features, *([profile.prediction] if profile.prediction else [])]
    sized = sorted(blocks, key=lambda f: -len(json.dumps(f.to_dict(), indent=2)))[:shown]
    return ", ".join(
        f"{f.name!r} ({_kib(len(json.dumps(f.to_dict(), indent=2)))}: {_holds(f)})" for f in sized
    )


def _holds(feature: FeatureProfile) -> str:
    if feature.type == "numeric":
        return f"{len(feature.proportions) - 2} bins"
    allowed = f", {len(feature.allowed)} allowed values" if feature.allowed is not None else ""
    return f"{len(feature.categories or ())} categories{allowed}"


# --------------------------------------------------------------------- parsing


def _validation(doc: Any) -> Validation | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ProfileError("validation must be an object")
    validation = Validation(
        method=_choice(doc.get("method"), VALIDATION_METHODS, "validation.method"),
        rows=int(_num(doc.get("rows"), "validation.rows")),
        **{
            key: _num(doc[key], f"validation.{key}")
            for key in ("accuracy", "mae", "rmse")
            if doc.get(key) is not None
        },
    )
    if (validation.accuracy is None) == (validation.mae is None):
        raise ProfileError("validation holds accuracy (a classifier) or mae (a regressor)")
    if validation.accuracy is not None and not 0.0 <= validation.accuracy <= 1.0:
        raise ProfileError("validation.accuracy must be within 0..1")
    return validation


def load_profile(path: str | Path, *, verify: bool = True) -> ReferenceProfile:
    """Read and validate a profile file; raises :class:`ProfileError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read reference profile {path}: {exc.strerror or exc}") from exc
    where = not_utf8(data)
    if where:
        raise ProfileError(f"reference profile {path} is not UTF-8 text ({where})")
    return parse_profile(data.decode("utf-8"), verify=verify)


def parse_profile(text: str | bytes | dict[str, Any], *, verify: bool = True) -> ReferenceProfile:
    """Validate a profile given as JSON text or an already decoded dict.

    With ``verify`` a ``fingerprint`` that does not match the content is an
    error: a hand-edited profile must be rebuilt (or its fingerprint
    removed) so that the ``_info`` metric never lies about the reference.
    """
    if isinstance(text, dict):
        doc: Any = text
    else:
        try:
            doc = json.loads(without_bom(text))
        except ValueError as exc:
            raise ProfileError(f"reference profile is not valid JSON: {exc}") from exc
        except RecursionError:  # "[[[[...": 2 KB reach the parser's stack limit
            raise ProfileError("reference profile is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ProfileError("reference profile must be a JSON object")
    if doc.get("format", FORMAT) != FORMAT:
        raise ProfileError(f"not a reference profile: format is {doc.get('format')!r}")
    version = doc.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"unsupported schemaVersion {version!r} (this Vigil reads {SCHEMA_VERSION})"
        )
    try:
        model = _obj(doc, "model")
        features = tuple(
            _feature(f, i, f"features[{i}]") for i, f in enumerate(_list(doc, "features"))
        )
        pred_doc = doc.get("prediction")
        prediction = _feature(pred_doc, 0, "prediction") if pred_doc is not None else None
        drift_doc = _optional_obj(doc, "drift", "drift")
        drift = DriftDefaults(
            method=_choice(drift_doc.get("method", "psi"), ("psi", "jsd"), "drift.method"),
            warning=_num(drift_doc.get("warning", 0.1), "drift.warning"),
            threshold=_num(drift_doc.get("threshold", 0.2), "drift.threshold"),
            epsilon=_num(drift_doc.get("epsilon", 1e-4), "drift.epsilon"),
        )
        profile = ReferenceProfile(
            model_name=str(model.get("name", "")),
            model_version=str(model.get("version", "")),
            row_count=int(_num(doc.get("rowCount"), "rowCount")),
            created_at=str(doc.get("createdAt", "")),
            task=_choice(doc.get("task"), ("classification", "regression"), "task"),
            features=features,
            prediction=prediction,
            drift=drift,
            validation=_validation(doc.get("validation")),
        )
    # AttributeError and ArithmeticError too: a field of an unexpected type or size this
    # parser does not check by name must read as an invalid profile, never escape to the
    # health loop or stop a sidecar.
    except (AttributeError, ArithmeticError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"invalid reference profile: {exc}") from exc
    names = profile.feature_names
    if len(set(names)) != len(names):
        raise ProfileError("invalid reference profile: duplicate feature names")
    stated = doc.get("fingerprint")
    if verify and stated is not None and stated != profile.fingerprint:
        raise ProfileError(
            "reference profile fingerprint does not match its content "
            "(edited by hand? rebuild it, or remove the fingerprint field)"
        )
    return profile


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ProfileError(f"invalid reference profile: {key} must be an object")
    return value


def _optional_obj(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """An optional object field: {} when absent or null."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(f"invalid reference profile: {where} must be an object")
    return value


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise ProfileError(f"invalid reference profile: {key} must be a list")
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"invalid reference profile: {where} must be a finite number")
    try:
        number = float(value)
    except OverflowError:  # JSON allows an integer of 400 digits; a float holds none
        number = math.inf
    if not math.isfinite(number):
        raise ProfileError(f"invalid reference profile: {where} must be a finite number")
    return number


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> Any:
    if value not in allowed:
        raise ProfileError(f"invalid reference profile: {where} must be one of {allowed}")
    return value


def _proportions(values: Any, where: str) -> tuple[float, ...]:
    if not isinstance(values, list) or not values:
        raise ProfileError(f"invalid reference profile: {where} must be a non-empty list")
    out = tuple(_num(v, where) for v in values)
    if any(v < 0 for v in out):
        raise ProfileError(f"invalid reference profile: {where} has negative proportions")
    total = sum(out)
    if total > 0 and abs(total - 1.0) > 1e-6:
        raise ProfileError(f"invalid reference profile: {where} sums to {total}, not 1")
    return out


def _feature(doc: Any, position: int, where: str) -> FeatureProfile:
    if not isinstance(doc, dict):
        raise ProfileError(f"invalid reference profile: {where} must be an object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"invalid reference profile: {where}.name must be a non-empty string")
    ftype = _choice(doc.get("type"), ("numeric", "categorical"), f"{where}.type")
    stats_doc = (
        _optional_obj(doc, "stats", f"{where}.stats") if doc.get("stats") is not None else None
    )
    summary = None
    if stats_doc is not None:
        summary = Summary(
            **{k: _num(stats_doc.get(k), f"{where}.stats.{k}") for k in Summary.__annotations__}
        )
    common: dict[str, Any] = {
        "name": name,
        "index": int(_num(doc.get("index", position), f"{where}.index")),
        "type": ftype,
        "count": int(_num(doc.get("count", 0), f"{where}.count")),
        "null_rate": _num(doc.get("nullRate", 0.0), f"{where}.nullRate"),
        "nullable": bool(doc.get("nullable", False)),
        "summary": summary,
    }
    if ftype == "numeric":
        if summary is None:
            raise ProfileError(f"invalid reference profile: {where}.stats is required (numeric)")
        bins = doc.get("bins")
        if not isinstance(bins, dict):
            raise ProfileError(f"invalid reference profile: {where}.bins must be an object")
        edges_raw = bins.get("edges")
        if not isinstance(edges_raw, list) or len(edges_raw) < 2:
            raise ProfileError(f"invalid reference profile: {where}.bins.edges needs >= 2 values")
        edges = tuple(_num(e, f"{where}.bins.edges") for e in edges_raw)
        # Strictly increasing; a constant feature has exactly two equal edges.
        strict = len(edges) > 2
        if any((b <= a) if strict else (b < a) for a, b in pairwise(edges)):
            raise ProfileError(f"invalid reference profile: {where}.bins.edges must increase")
        props = _proportions(bins.get("proportions"), f"{where}.bins.proportions")
        if len(props) != len(edges) + 1:
            raise ProfileError(
                f"invalid reference profile: {where}.bins.proportions needs "
                f"{len(edges) + 1} values (underflow, {len(edges) - 1} bins, overflow)"
            )
        return FeatureProfile(**common, proportions=props, edges=edges)
    cats = doc.get("categories")
    if not isinstance(cats, dict):
        raise ProfileError(f"invalid reference profile: {where}.categories must be an object")
    values = cats.get("values")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ProfileError(f"invalid reference profile: {where}.categories.values: strings")
    if OTHER in values:
        raise ProfileError(f"invalid reference profile: {where}: {OTHER!r} is reserved")
    props = _proportions(
        [*list(cats.get("proportions") or []), cats.get("other", 0.0)],
        f"{where}.categories.proportions",
    )
    if len(props) != len(values) + 1:
        raise ProfileError(
            f"invalid reference profile: {where}.categories.proportions needs one value "
            "per category"
        )
    allowed_raw = doc.get("allowed")
    allowed = tuple(str(v) for v in allowed_raw) if isinstance(allowed_raw, list) else None
    return FeatureProfile(**common, proportions=props, categories=tuple(values), allowed=allowed)
