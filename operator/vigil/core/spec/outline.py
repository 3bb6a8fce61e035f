"""What ``kubectl vigil`` shows of a spec: read leniently, for objects that may not parse.

A screen must describe the ModelDeployment the operator refuses too (no model
version, an unknown protocol), so nothing here raises; the rules are the
parser's (:mod:`vigil.core.spec.parse`), the defaults its.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vigil.core.spec.defaults import DEFAULT_REPLICAS
from vigil.core.spec.model import ConfigMapKeyRef


@dataclass(frozen=True)
class SpecOutline:
    """The model's name and version, the replicas and the reference profile, as written."""

    model_name: str
    #: None: the spec names no version (the operator reports InvalidSpec).
    model_version: str | None
    replicas: int
    #: ``monitoring.reference.configMapKeyRef``; None without a name.
    reference: ConfigMapKeyRef | None


def _section(source: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        value = source.get(key)
        source = value if isinstance(value, Mapping) else {}
    return source


def outline_spec(name: str, spec: Mapping[str, Any] | None) -> SpecOutline:
    """The outline of ModelDeployment ``name``'s ``.spec``; never raises."""
    spec = spec if isinstance(spec, Mapping) else {}
    model = _section(spec, "model")
    version = model.get("version")
    replicas = spec.get("replicas")
    ref = _section(spec, "monitoring", "reference", "configMapKeyRef")
    return SpecOutline(
        model_name=str(model.get("name") or name),
        model_version=None if version is None else str(version),
        replicas=replicas if isinstance(replicas, int) else DEFAULT_REPLICAS,
        reference=ConfigMapKeyRef(str(ref["name"]), str(ref.get("key") or ""))
        if ref.get("name")
        else None,
    )
