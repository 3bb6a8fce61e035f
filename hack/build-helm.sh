#!/usr/bin/env bash
# Build helm from its Go module (hack/helm pins it), once, and cache the
# binary by version and inputs under the user's cache folder, as hack/build-cluster.sh
# does for the control plane. The chart's tests (tests/unit/chart,
# tests/e2e/chart) run it.
#
# Usage: hack/build-helm.sh            build when missing, print the binary's path
#        hack/build-helm.sh --print    only print the binary's path
set -euo pipefail

HELM_VERSION=v3.19.5
# The Kubernetes version `helm template` assumes without a cluster, as helm's own release
# builds set it (its Makefile, from its client-go): left out, it is v1.20, which the
# chart's kubeVersion (>= 1.29) refuses.
HELM_K8S_MINOR=34

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
module_dir="$here/helm"
# The folder's name: the version, and a hash of everything else the binary is made from (this
# script's commands, its comment lines left out, and the module's go.mod, go.sum and Go files):
# a changed go.sum or replace directive builds a new folder, never reuses a stale binary.
key=$(sha256sum "$module_dir/go.mod" "$module_dir/go.sum" "$module_dir"/*.go \
  <(sed '/^[[:space:]]*#/d' "${BASH_SOURCE[0]}") | cut -c1-64 | sha256sum | cut -c1-12)
binary="$cache/bin/helm-$HELM_VERSION-k8s1.$HELM_K8S_MINOR-$key/helm"

if [[ "${1:-}" == "--print" || -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
command -v go >/dev/null || {
  echo "build-helm: Go is required (1.26.7+, its go.mod's) to build helm $HELM_VERSION; install it and retry" >&2
  exit 1
}
mkdir -p "$(dirname "$binary")" "$cache/locks"
# One build of this entry at a time (make demo's builds beside CI's make builds): the
# second finds the binary built. Each writes a file of its own, renamed into place whole.
exec 9>"$cache/locks/$(basename "$(dirname "$binary")").lock"
flock -n 9 || { echo "build-helm: waiting for the other build of helm $HELM_VERSION" >&2 && flock 9; }
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
start=$(date +%s)
echo "build-helm: building helm $HELM_VERSION ..." >&2
# Holding the lock, any scratch folder here is a killed build's.
rm -rf "$(dirname "$binary")"/.build-*
tmp=$(mktemp -d "$(dirname "$binary")/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$module_dir" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR" \
  -o "$tmp/helm" helm.sh/helm/v3/cmd/helm) >&2
mv "$tmp/helm" "$binary"
echo "build-helm: built $binary in $(( $(date +%s) - start ))s" >&2
echo "$binary"
