#!/usr/bin/env bash
# Re-resolve the image's pinned runtime dependencies (hack/image/requirements.txt).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q --dry-run --ignore-installed --report "$tmp/report.json" "$root" uvloop
{
  echo "# Exact runtime dependencies of the vigil image (operator, sidecar, CLI)."
  echo "# Regenerate: hack/image/lock.sh (resolves pyproject's runtime dependencies"
  echo "# plus uvloop in a clean virtual environment)."
  python3 - "$tmp/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    meta = item["metadata"]
    if meta["name"] != "vigil":
        print(f"{meta['name']}=={meta['version']}")
PY
} > "$root/hack/image/requirements.txt"
echo "wrote hack/image/requirements.txt"
