#!/usr/bin/env bash
# make kind-e2e: the e2e suite against the kind cluster's real pods.
#
# One operator at a time: the suite starts its own operator process per test
# (tests/e2e/conftest.py, watching that test's namespace, with the
# ServiceAccount's token), while make kind-up installed one watching every
# namespace. Two standalone operators on the same ModelDeployments would
# fight (kopf has no leader election), so the installed one is scaled to
# zero for the run and back to one on exit, whatever the outcome.
#
# The suite's operator runs on this host and reads the sidecars at their
# pod IPs. kind's pod network is not routed from the host by default; on a
# Linux host set KIND_POD_ROUTES=1 to add a route per node's pod CIDR via
# the node's container IP (needs root or password-less sudo; removed on exit).
# Without routes, tests that wait for health figures fail with
# MetricsAvailable=False.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
kubeconfig="$root/.vigil/kind-kubeconfig"
[[ -f "$kubeconfig" ]] || { echo "kind-e2e: $kubeconfig missing: run make kind-up" >&2; exit 1; }
export KUBECONFIG=$kubeconfig
# The kind cluster of hack/kind/local.sh (no Docker of the user's): its tools
# are in the cache, and this host reaches pods and Services only through a
# route via the node (the suite's operator reads sidecars at pod IPs).
local_services=""
if ! docker info >/dev/null 2>&1; then
  eval "$(bash hack/kind/local.sh env)"
  KIND_POD_ROUTES=${KIND_POD_ROUTES:-1}
  local_services=10.91.0.0/16
fi

routes=()
sudo=""
restore() {
  kubectl scale -n vigil-system deployment/vigil-operator --replicas=1 >/dev/null || true
  for route in "${routes[@]}"; do
    # shellcheck disable=SC2086
    $sudo ip route del $route || true
  done
}
trap restore EXIT
echo "kind-e2e: scaling the installed operator to 0 for the run (restored on exit)"
kubectl scale -n vigil-system deployment/vigil-operator --replicas=0
kubectl wait -n vigil-system --for=delete pod -l app.kubernetes.io/component=operator --timeout=120s

if [[ "${KIND_POD_ROUTES:-0}" == 1 ]]; then
  [[ $(id -u) == 0 ]] || sudo="sudo -n"
  while read -r cidr address; do
    [[ -n "$cidr" && -n "$address" ]] || continue
    echo "kind-e2e: route $cidr via $address"
    $sudo ip route replace "$cidr" via "$address"
    routes+=("$cidr via $address")
    if [[ -n "$local_services" ]]; then
      echo "kind-e2e: route $local_services via $address"
      $sudo ip route replace "$local_services" via "$address"
      routes+=("$local_services via $address")
      local_services=""
    fi
  done < <(kubectl get nodes -o jsonpath='{range .items[*]}{.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
fi

export VIGIL_KUBECONFIG=$kubeconfig
.venv/bin/python -m pytest tests/e2e "$@"
