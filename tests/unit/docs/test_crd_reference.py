"""docs/crd-reference.md is generated from the CRD and must not go stale."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml_kit

ROOT = Path(__file__).resolve().parents[3]


def test_crd_reference_matches_the_crd() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_crd_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_spec_field_has_a_description() -> None:
    rows = [
        line
        for line in (ROOT / "docs" / "crd-reference.md").read_text().splitlines()
        if line.startswith("| `spec")
    ]
    assert rows
    undocumented = [row.split("|")[1].strip() for row in rows if row.split("|")[4].strip() == ""]
    assert undocumented == []


def crd_defaults() -> dict[str, object]:
    """``{"spec.replicas": 1, ...}``: every default the CRD's schema declares, by field."""
    crd = yaml_kit.load((ROOT / "crds" / "modeldeployments.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    found: dict[str, object] = {}

    def walk(path: str, schema: dict) -> None:
        for name, child in (schema.get("properties") or {}).items():
            field = f"{path}.{name}" if path else name
            if "default" in child:
                found[field] = child["default"]
            nested = child.get("items", {}) if child.get("type") == "array" else child
            walk(field + ("[]" if child.get("type") == "array" else ""), nested)

    walk("", version["schema"]["openAPIV3Schema"])
    return found


def test_every_default_is_shown_whole_on_its_row() -> None:
    rows = {}
    for line in (ROOT / "docs" / "crd-reference.md").read_text().splitlines():
        if line.startswith("| `spec") or line.startswith("| `status"):
            rows[line.split("|")[1].strip().strip("`")] = line
    defaults = crd_defaults()
    assert defaults, "the CRD declares no default: did the schema move?"
    wrong = {}
    for field, default in defaults.items():
        shown = re.search(r"default `([^`]*)`", rows.get(field, ""))
        if shown is None or yaml_kit.load(shown.group(1)) != default:
            wrong[field] = (default, shown.group(1) if shown else rows.get(field))
    assert not wrong, f"defaults missing or wrong in docs/crd-reference.md: {wrong}"
