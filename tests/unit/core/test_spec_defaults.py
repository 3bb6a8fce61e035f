"""Every default of the CRD is the operator's, and a spec reads the same with or without them.

``vigil.core.spec.CRD_DEFAULTS`` names each default by its path; the CRD's
schema is walked for every ``default:`` so that a default added to one side
only fails here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from vigil.core import spec as spec_module
from vigil.core.spec import parse_spec

ROOT = Path(__file__).resolve().parents[3]


def spec_schema() -> Mapping[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "modeldeployments.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def crd_defaults(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, default) of every scalar default below ``schema`` (``{}`` only makes a section)."""
    for key, child in (schema.get("properties") or {}).items():
        here = f"{path}.{key}" if path else key
        if "default" in child and child["default"] != {}:
            yield here, child["default"]
        yield from crd_defaults(child, here)
        if "items" in child:
            yield from crd_defaults(child["items"], f"{here}.[]")


def stored(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` as the API server stores it: every absent field with a default gets it."""
    if isinstance(value, list):
        return [stored(item, schema.get("items", {})) for item in value]
    if not isinstance(value, dict):
        return value
    out = copy.deepcopy(value)
    for key, child in (schema.get("properties") or {}).items():
        if key not in out and "default" in child:
            out[key] = copy.deepcopy(child["default"])
        if key in out:
            out[key] = stored(out[key], child)
    return out


def test_every_crd_default_is_the_operators() -> None:
    assert dict(crd_defaults(spec_schema())) == dict(spec_module.CRD_DEFAULTS)


def test_a_spec_reads_the_same_with_or_without_the_crds_defaults() -> None:
    steps = [
        {"validate": {"goldenSet": {"configMapKeyRef": {"name": "g", "key": "k"}}}},
        {"shadow": {}},
        {"pause": {}},
        {"canary": {"weight": 20}},
    ]
    written = {
        "model": {"version": "1"},
        "server": {"image": "img"},
        "monitoring": {"drift": {}, "metrics": {}, "sidecar": {}, "slo": {}},
        "rollout": {
            "replacement": {"steps": steps},
            "tweak": {"steps": steps[1:]},
            "analysis": {},
            "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        },
    }
    with_defaults = stored(written, spec_schema())
    assert with_defaults != written
    parsed = parse_spec("wine", written)
    assert parsed == parse_spec("wine", with_defaults)
    assert parsed.rollout.problem is None and parsed.monitoring.problem is None
    assert parsed.rollout.http_route == "r"
    assert [s.kind for s in parsed.rollout.steps_for("replacement")] == [
        "validate",
        "shadow",
        "pause",
        "canary",
    ]


def test_an_unreadable_section_keeps_its_defaults_and_says_why() -> None:
    parsed = parse_spec(
        "wine",
        {
            "model": {"version": "1"},
            "server": {"image": "img"},
            "monitoring": {"metrics": {"source": "prometheus"}},
            "rollout": {"replacement": {"steps": [{"canary": {}}]}},
        },
    )
    assert parsed.monitoring.problem == (
        "spec.monitoring.metrics.prometheusURL is required with source prometheus"
    )
    assert parsed.rollout.problem == "'weight'"
    assert parsed.rollout.steps_for("replacement") == ()
