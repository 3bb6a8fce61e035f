"""Small readers of a raw spec section shared by the section parsers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.core.spec.defaults import SpecError


def section(value: Any) -> Mapping[str, Any]:
    """A section that is absent or not an object reads as empty."""
    return value if isinstance(value, Mapping) else {}


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object")
    return value


def required_str(source: Mapping[str, Any], key: str, where: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}.{key} is required")
    return value


def one_limit(raw: Mapping[str, Any], where: str) -> None:
    """A performance section names one task's limit: accuracy or MAE."""
    if raw.get("minAccuracy") is not None and raw.get("maxMAE") is not None:
        raise ValueError(
            f"{where} takes minAccuracy (a classifier) or maxMAE (a regressor), not both"
        )
