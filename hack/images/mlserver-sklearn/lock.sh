#!/usr/bin/env bash
# Re-resolve the model-server image's pinned packages (requirements.txt here):
# MLServer and its scikit-learn runtime at the Makefile's versions, with every
# dependency, as pip resolves them for Python 3.11 in a clean environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=$(sed -n 's/^MLSERVER_PKGS := //p' "$here/../../../Makefile")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
# shellcheck disable=SC2086 # the package list is split on purpose
"$tmp/venv/bin/pip" install -q --dry-run --ignore-installed --report "$tmp/report.json" $packages
{
  echo "# Exact packages of vigil.local/mlserver-sklearn ($packages and all"
  echo "# their dependencies). Regenerate: hack/images/mlserver-sklearn/lock.sh"
  python3 - "$tmp/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    print(f"{item['metadata']['name']}=={item['metadata']['version']}")
PY
} > "$here/requirements.txt"
echo "wrote hack/images/mlserver-sklearn/requirements.txt"
