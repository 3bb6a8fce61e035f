"""Measured figures of a run (seeds, seconds, counts), printed and appended for the report."""

from __future__ import annotations

import json
import time
from typing import Any

from kit.kube import ROOT

FIGURES_DIR = ROOT / ".vigil" / "e2e-logs"


class Figures:
    """Appends one JSON line per scenario to ``.vigil/e2e-logs/<name>-figures.jsonl``."""

    def __init__(self, name: str) -> None:
        self.path = FIGURES_DIR / f"{name}-figures.jsonl"

    def record(self, scenario: str, **figures: Any) -> None:
        line = json.dumps({"scenario": scenario, "at": time.time(), **figures})
        print(line, flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(line + "\n")
