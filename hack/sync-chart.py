"""Copy into the Helm chart (charts/vigil) the files it shares with manifests/.

Helm reads only files inside the chart's folder, so the CRD, the alert rules
and the Grafana dashboard are copied there from their one source:

    python hack/sync-chart.py           # rewrite the copies
    python hack/sync-chart.py --check   # exit 1 if a copy is stale

tests/unit/packaging/test_chart_files.py runs ``--check``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "vigil"
#: source -> copy in the chart
COPIES = {
    ROOT / "crds" / "modeldeployments.yaml": CHART / "crds" / "modeldeployments.yaml",
    ROOT / "manifests/monitoring/rules/vigil-rules.yaml": CHART / "files" / "vigil-rules.yaml",
    ROOT / "manifests/monitoring/dashboards/vigil.json": CHART / "files" / "vigil-dashboard.json",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the copies")
    args = parser.parse_args()
    stale = []
    for source, copy in COPIES.items():
        text = source.read_bytes()
        if copy.exists() and copy.read_bytes() == text:
            continue
        stale.append(copy.relative_to(ROOT))
        if not args.check:
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(text)
    if stale and args.check:
        names = ", ".join(str(path) for path in stale)
        print(f"stale chart copies: {names}: run python hack/sync-chart.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
