"""docs/crd-reference.md is generated from the CRD and must not go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
