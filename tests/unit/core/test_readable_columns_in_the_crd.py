"""The printer columns read ``status.health.readable``: the API server prunes every key its
structural schema does not declare, so a key written there but missing from the CRD leaves
its column empty (the Realized column was, with realized accuracy in status)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml_kit
from vigil.core.performance import readable_figures

ROOT = Path(__file__).resolve().parents[3]


def readable_schema(crd: Path) -> dict[str, Any]:
    version = yaml_kit.load(crd.read_text())["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return status["properties"]["health"]["properties"]["readable"]["properties"]


def test_every_readable_figure_has_its_place_in_the_crd_and_every_column_one_there() -> None:
    written = {"errorRate", "latencyP95"}
    written |= set(readable_figures({"accuracy": 0.9, "labelDelayP95": 9.6}))
    written |= set(readable_figures({"mae": 43.0}))
    for crd in (
        ROOT / "crds/modeldeployments.yaml",
        ROOT / "charts/vigil/crds/modeldeployments.yaml",
    ):
        assert written <= set(readable_schema(crd)), crd
        version = yaml_kit.load(crd.read_text())["spec"]["versions"][0]
        for column in version["additionalPrinterColumns"]:
            path = column["jsonPath"]
            if path.startswith(".status.health.readable."):
                assert path.rsplit(".", 1)[1] in written, column


def test_every_status_column_reads_a_declared_key() -> None:
    # A pruned key shows as an empty column, never as an error.
    for crd in (
        ROOT / "crds/modeldeployments.yaml",
        ROOT / "charts/vigil/crds/modeldeployments.yaml",
    ):
        version = yaml_kit.load(crd.read_text())["spec"]["versions"][0]
        for column in version["additionalPrinterColumns"]:
            # ".status.conditions[?(@.type=="Ready")].reason": a list filter walks its items.
            path = re.sub(r"\[[^]]*\]", "[]", column["jsonPath"]).lstrip(".").split(".")
            schema = version["schema"]["openAPIV3Schema"]
            for key in path if path[0] == "status" else ():
                if schema.get("x-kubernetes-preserve-unknown-fields"):
                    break
                name = key.removesuffix("[]")
                assert name in schema.get("properties", {}), (crd.name, column["name"], name)
                schema = schema["properties"][name]
                schema = schema["items"] if key.endswith("[]") else schema
