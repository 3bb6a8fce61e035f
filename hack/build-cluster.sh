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
# under hack/{k8s,etcd,prometheus,coredns} pin the same ones, and kwok's is
# hack/flux/controllers/go.mod (it shares Flux's Kubernetes libraries).
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

mkdir -p "$bindir" "$cache/locks"
module_lock() { echo "$cache/locks/${1//\//-}.lock"; } # module_lock <dir under hack/>
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

export CGO_ENABLED=0
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

# build <module dir> <ldflags> <tags> <binary>=<package>...: the missing binaries of one
# module, by one `go build` (its links run side by side; a package's name is its binary's).
# A module's builds take turns (its lock, which hack/build-flux.sh takes too): two at once
# would each compile the packages they share, as Go's build cache does not wait for the other.
build() {
  local dir=$1 ldflags=$2 tags=$3 pair names=() packages=() out tmp
  shift 3
  for pair in "$@"; do
    if [[ -x "$bindir/${pair%%=*}" ]]; then
      echo "build-cluster: [$(elapsed)] ${pair%%=*} cached"
    else
      names+=("${pair%%=*}") && packages+=("${pair#*=}")
    fi
  done
  ((${#names[@]})) || return 0
  echo "build-cluster: [$(elapsed)] building ${names[*]} ..."
  tmp=$(mktemp -d "$bindir/.build-XXXXXX")
  out="$tmp/"
  ((${#names[@]} > 1)) || out="$tmp/${names[0]}"
  (
    exec 9>"$(module_lock "$dir")"
    flock -n 9 || { echo "build-cluster: [$(elapsed)] ${names[*]}: waiting for the other build from hack/$dir" && flock 9; }
    cd "$here/$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out" "${packages[@]}"
  )
  for name in "${names[@]}"; do mv "$tmp/$name" "$bindir/$name"; done
  rmdir "$tmp"
  echo "build-cluster: [$(elapsed)] built ${names[*]}"
}

# The modules build side by side: one module's build alone leaves a core idle while it
# loads packages or links, and on two cores this build is the longest of `make builds`.
prometheus_ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
groups=(
  "etcd|-s -w||etcd=go.etcd.io/etcd/server/v3"
  # kwok from Flux's wrapper module: it compiles 4 MB of Go source of its own there, 44 MB alone.
  "flux/controllers|-s -w||kwok=sigs.k8s.io/kwok/cmd/kwok"
  # The real node's kubelet and kube-proxy too (operator/vigil/devcluster/node.py).
  "k8s|$k8s_ldflags||kubectl=k8s.io/kubernetes/cmd/kubectl kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubelet=k8s.io/kubernetes/cmd/kubelet kube-proxy=k8s.io/kubernetes/cmd/kube-proxy"
  # CoreDNS's version is not in the folder's name (a new one would rebuild everything):
  # its binary is named by version and `coredns` links to it.
  "coredns|-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION||coredns-$COREDNS_VERSION=vigil.dev/hack/coredns"
  # Only the Kubernetes service discovery is compiled in (upstream's plugin tags);
  # promtool checks and unit-tests the alert rules (manifests/monitoring/).
  "prometheus|$prometheus_ldflags|remove_all_sd,enable_kubernetes_sd|prometheus=github.com/prometheus/prometheus/cmd/prometheus promtool=github.com/prometheus/prometheus/cmd/promtool"
)
pids=() failed=()
for group in "${groups[@]}"; do
  IFS="|" read -r dir ldflags tags binaries <<<"$group"
  read -ra binaries <<<"$binaries"
  build "$dir" "$ldflags" "$tags" "${binaries[@]}" &
  pids+=("$!")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${groups[$i]%%|*}")
done
if ((${#failed[@]})); then
  echo "build-cluster: the build of ${failed[*]} failed (its output above)" >&2
  exit 1
fi
ln -sfn "coredns-$COREDNS_VERSION" "$bindir/coredns"

echo "build-cluster: [$(elapsed)] all binaries in $bindir ($(du -sh "$bindir" | cut -f1))"
