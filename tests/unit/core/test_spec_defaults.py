"""Every default of the CRD is the operator's; the typed spec reads every section.

(tests/unit/docs/test_doc_claims.py checks that a spec reads the same with or
without the API server's defaults.)

``vigil.core.spec.CRD_DEFAULTS`` names each default by its path; the CRD's
schema is walked for every ``default:`` so that a default added to one side
only fails here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml_kit
from vigil.core import spec as spec_module
from vigil.core.spec import parse_spec

ROOT = Path(__file__).resolve().parents[3]


def spec_schema() -> Mapping[str, Any]:
    crd = yaml_kit.load((ROOT / "crds" / "modeldeployments.yaml").read_text())
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


def test_every_crd_default_is_the_operators() -> None:
    assert dict(crd_defaults(spec_schema())) == dict(spec_module.CRD_DEFAULTS)


def test_every_step_kind_and_the_route_are_read() -> None:
    steps = [
        {"validate": {"goldenSet": {"configMapKeyRef": {"name": "g", "key": "k"}}}},
        {"shadow": {}},
        {"pause": {}},
        {"canary": {"weight": 20}},
    ]
    written = {
        "model": {"version": "1"},
        "server": {"image": "img"},
        "rollout": {
            "replacement": {"steps": steps},
            "tweak": {"steps": steps[1:]},
            "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        },
    }
    parsed = parse_spec("wine", written)
    assert parsed.rollout.problem is None and parsed.monitoring.problem is None
    assert parsed.rollout.http_route == "r"
    assert [s.kind for s in parsed.rollout.steps_for("replacement")] == [
        "validate",
        "shadow",
        "pause",
        "canary",
    ]
    assert [s.kind for s in parsed.rollout.steps_for("tweak")] == ["shadow", "pause", "canary"]


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
    assert parsed.rollout.problem == "spec.rollout.replacement.steps[0] has no weight"
    assert parsed.rollout.steps_for("replacement") == ()
