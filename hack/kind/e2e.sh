#!/usr/bin/env bash
# make kind-e2e: the e2e suite against the kind cluster's real pods.
# Tests that run pods' containers as local processes on loopback pod IPs
# (marker local_processes: the workload runner of the Docker-free cluster)
# are deselected: on kind the containers really run in the pods.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
kubeconfig="$root/.vigil/kind-kubeconfig"
[[ -f "$kubeconfig" ]] || { echo "kind-e2e: $kubeconfig missing: run make kind-up" >&2; exit 1; }
export VIGIL_KUBECONFIG=$kubeconfig VIGIL_REAL_PODS=1
exec .venv/bin/python -m pytest tests/e2e -m "not local_processes" "$@"
