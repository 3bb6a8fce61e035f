#!/usr/bin/env bash
# Build (once) and cache the local container images under ~/.cache/vigil/images,
# keyed by a hash of their inputs; print "<ref> <archive>" per image. The
# archives are docker-archive tars: `ctr -n k8s.io images import <archive>`.
#
# Usage: hack/build-images.sh [NAME ...]    (default: all; see --help)
# The work is done by operator/vigil/devcluster/images.py.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$root/.venv/bin/python
[[ -x "$python" ]] || { echo "build-images: no $python: run make install first" >&2; exit 1; }
exec "$python" -m vigil.devcluster.images "$@"
