"""Objects as the API server stores them under a CRD's structural schema."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def with_crd_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` as the API server stores it: every absent field with a default gets it."""
    if isinstance(value, list):
        return [with_crd_defaults(item, schema.get("items", {})) for item in value]
    if not isinstance(value, dict):
        return value
    out = copy.deepcopy(value)
    for key, child in (schema.get("properties") or {}).items():
        if key not in out and "default" in child:
            out[key] = copy.deepcopy(child["default"])
        if key in out:
            out[key] = with_crd_defaults(out[key], child)
    return out
