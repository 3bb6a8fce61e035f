#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok), the real node's kubelet, kube-proxy and
# CoreDNS, and Prometheus from Go modules, once, and cache the binaries by
# version under the user's cache folder.
#
# Usage: hack/build-cluster.sh            build what is missing, print the bin dir
#        hack/build-cluster.sh --print    only print the bin dir
#
# The versions below are the single source of truth; the wrapper go.mod files
# under hack/{k8s,etcd,kwok,prometheus,coredns} pin the same ones.
set -euo pipefail

K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.10
KWOK_VERSION=v0.8.0
# Prometheus' Go module is versioned v0.<major><minor>.<patch>: v0.316.0 is 3.16.0.
PROMETHEUS_MODULE_VERSION=v0.316.0
PROMETHEUS_VERSION=3.16.0
COREDNS_VERSION=v1.14.7

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
bindir="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-prometheus-$PROMETHEUS_VERSION"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bindir"
  exit 0
fi

command -v go >/dev/null || {
  echo "build-cluster: Go is required (1.26+) to build the local control plane; install it and retry" >&2
  exit 1
}

mkdir -p "$bindir"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

export CGO_ENABLED=0
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build() { # build <binary> <module dir> <package> [ldflags] [tags]
  local name=$1 dir=$2 pkg=$3 ldflags=${4:--s -w} tags=${5:-}
  if [[ -x "$bindir/$name" ]]; then
    echo "build-cluster: [$(elapsed)] $name cached"
    return
  fi
  echo "build-cluster: [$(elapsed)] building $name ($pkg) ..."
  (cd "$here/$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bindir/$name.tmp" "$pkg")
  mv "$bindir/$name.tmp" "$bindir/$name"
  echo "build-cluster: [$(elapsed)] built $name"
}

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kubectl k8s k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager k8s k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler k8s k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
# The real node (operator/vigil/devcluster/node.py).
build kubelet k8s k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags"
build kube-proxy k8s k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags"
# CoreDNS's version is not in the folder's name (a new one would rebuild
# everything): its binary is named by version and `coredns` links to it.
build "coredns-$COREDNS_VERSION" coredns vigil.dev/hack/coredns \
  "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
ln -sfn "coredns-$COREDNS_VERSION" "$bindir/coredns"
# Only the Kubernetes service discovery is compiled in (upstream's plugin tags).
build prometheus prometheus github.com/prometheus/prometheus/cmd/prometheus \
  "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
  "remove_all_sd,enable_kubernetes_sd"
# promtool checks and unit-tests the alert rules (manifests/monitoring/).
build promtool prometheus github.com/prometheus/prometheus/cmd/promtool \
  "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
  "remove_all_sd,enable_kubernetes_sd"

echo "build-cluster: [$(elapsed)] all binaries in $bindir ($(du -sh "$bindir" | cut -f1))"
