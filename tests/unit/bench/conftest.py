"""The gate simulator (bench/gates) is a script directory, not an installed package."""

from __future__ import annotations

import sys
from pathlib import Path

GATES = Path(__file__).resolve().parents[3] / "bench" / "gates"
if str(GATES) not in sys.path:
    sys.path.insert(0, str(GATES))
