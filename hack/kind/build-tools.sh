#!/usr/bin/env bash
# Build (once) the kind CLI and kubeadm from their Go modules and cache them
# by version under ~/.cache/vigil/bin/kind-<kind>-k8s-<k8s>; print that folder.
# kubeadm comes from the same wrapper module as the control plane (hack/k8s),
# so its version is the one hack/build-cluster.sh pins; it is built here and
# not there because only the kind node image needs it (make cluster-up and CI
# do not pay for it).
#
# Usage: hack/kind/build-tools.sh [--print]
set -euo pipefail
KIND_VERSION=v0.33.0
K8S_VERSION=$(sed -n 's/^K8S_VERSION=//p' "$(dirname "$0")/../build-cluster.sh")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
bindir="$cache/bin/kind-$KIND_VERSION-k8s-$K8S_VERSION"
if [[ "${1:-}" == "--print" ]]; then
  echo "$bindir"
  exit 0
fi
command -v go >/dev/null || { echo "kind build-tools: Go is required (1.26+); install it and retry" >&2; exit 1; }
mkdir -p "$bindir"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }
export CGO_ENABLED=0
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
# The same version stamping as hack/build-cluster.sh: kubeadm picks the
# control-plane image tags from its own version.
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build() { # build <binary> <module dir> <package> [ldflags]
  local name=$1 dir=$2 pkg=$3 ldflags=${4:--s -w}
  if [[ -x "$bindir/$name" ]]; then
    echo "kind build-tools: [$(elapsed)] $name cached" >&2
    return
  fi
  echo "kind build-tools: [$(elapsed)] building $name ($pkg) ..." >&2
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bindir/$name.tmp" "$pkg")
  mv "$bindir/$name.tmp" "$bindir/$name"
  echo "kind build-tools: [$(elapsed)] built $name" >&2
}
build kind "$here/tool" sigs.k8s.io/kind "-s -w"
build kubeadm "$here/../k8s" k8s.io/kubernetes/cmd/kubeadm "$k8s_ldflags"
echo "$bindir"
