"""Time ``kubectl vigil report`` over one hour of a demo-like model, and size its file.

The hour is tests/e2e/report/history.py's (three revisions, 13 wine features,
a drift episode, a rolled-back and a promoted replacement, labels), loaded
into a fresh TSDB with ``promtool tsdb create-blocks-from openmetrics`` and
served by the cached Prometheus on a loopback port. Each repeat runs the
report's own code path: the range and instant queries, the numbers, the page.

    .venv/bin/python bench/report/run.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vigil.devcluster.cluster import build_binaries
from vigil.plugin.report.figures import Context, build
from vigil.plugin.report.page import render

ROOT = Path(__file__).resolve().parents[2]
# The hour the report's browser test reads (tests/e2e/report/history.py).
sys.path.insert(0, str(ROOT / "tests" / "e2e" / "report"))
history = importlib.import_module("history")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--port", type=int, default=26990)
    args = parser.parse_args()
    bin_dir = build_binaries()
    profile, _, _ = history.reference()
    runs = []
    with (
        tempfile.TemporaryDirectory() as folder,
        history.serve(bin_dir, Path(folder), args.port) as (url, end),
    ):
        for _ in range(args.repeats):
            started = time.monotonic()
            measured = history.measure(url, end)
            queried = time.monotonic()
            context = Context(history.model_deployment(end), history.events(end), profile)
            numbers = build(context, measured)
            built = time.monotonic()
            page = render(numbers)
            rendered = time.monotonic()
            runs.append(
                {
                    "query": queried - started,
                    "numbers": built - queried,
                    "page": rendered - built,
                    "total": rendered - started,
                    "html_bytes": len(page.encode()),
                    "json_bytes": len(json.dumps(numbers).encode()),
                    "points": len(measured.points),
                }
            )
    for key in ("query", "numbers", "page", "total"):
        values = [run[key] for run in runs]
        low, high = min(values), max(values)
        print(f"{key:8s} median {statistics.median(values):.2f} s (min {low:.2f}, max {high:.2f})")
    first = runs[0]
    html_mb, json_mb = first["html_bytes"] / 1e6, first["json_bytes"] / 1e6
    print(f"html {html_mb:.2f} MB, json {json_mb:.2f} MB, {first['points']} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
