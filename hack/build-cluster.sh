#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok), the real node's kubelet, kube-proxy and
# CoreDNS, and Prometheus from Go modules, once, and cache the binaries under
# the user's cache folder, keyed by version and a hash of their other inputs.
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

export CGO_ENABLED=0
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
prometheus_ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
# One group per module: <dir under hack/>|<ldflags>|<build tags>|<binary>=<package>...
groups=(
  "etcd|-s -w||etcd=go.etcd.io/etcd/server/v3"
  # kwok from Flux's wrapper module: it compiles 4 MB of Go source of its own there, 44 MB alone.
  "flux/controllers|-s -w||kwok=sigs.k8s.io/kwok/cmd/kwok"
  # The real node's kubelet and kube-proxy too (operator/vigil/devcluster/node.py).
  "k8s|$k8s_ldflags||kubectl=k8s.io/kubernetes/cmd/kubectl kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubelet=k8s.io/kubernetes/cmd/kubelet kube-proxy=k8s.io/kubernetes/cmd/kube-proxy"
  # CoreDNS's binary is named by version and `coredns` links to it.
  "coredns|-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION||coredns-$COREDNS_VERSION=vigil.dev/hack/coredns"
  # Only the Kubernetes service discovery is compiled in (upstream's plugin tags);
  # promtool checks and unit-tests the alert rules (manifests/monitoring/).
  "prometheus|$prometheus_ldflags|remove_all_sd,enable_kubernetes_sd|prometheus=github.com/prometheus/prometheus/cmd/prometheus promtool=github.com/prometheus/prometheus/cmd/promtool"
)

# The folder's name carries the versions and a hash of everything else the binaries are
# made from: this script's commands (flags, tags, packages; its comment lines left out),
# the groups as expanded, and each module's go.mod, go.sum and Go files (CoreDNS's plugin
# list is its main.go). A change to any of them builds a new folder, never a stale binary.
inputs() {
  sed '/^[[:space:]]*#/d' "${BASH_SOURCE[0]}"
  printf '%s\n' "${groups[@]}"
  local group file
  for group in "${groups[@]}"; do
    for file in "$here/${group%%|*}"/go.mod "$here/${group%%|*}"/go.sum "$here/${group%%|*}"/*.go; do
      [[ -f "$file" ]] || continue
      echo "== ${file#"$here"/}"
      cat "$file"
    done
  done
}
inputs_hash=$(inputs | sha256sum | cut -c1-12)
bindir="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-prometheus-$PROMETHEUS_VERSION-$inputs_hash"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bindir"
  exit 0
fi

command -v go >/dev/null || {
  echo "build-cluster: Go is required (1.26+) to build the local control plane; install it and retry" >&2
  exit 1
}
# pinned <dir under hack/> <module> <version>: the wrapper module requires the version above.
pinned() {
  grep -Eq "^(require)?[[:space:]]*$2 $3([[:space:]]|$)" "$here/$1/go.mod" || {
    echo "build-cluster: hack/$1/go.mod does not require $2 $3, the version this script names; make them agree" >&2
    exit 1
  }
}
pinned etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
pinned flux/controllers sigs.k8s.io/kwok "$KWOK_VERSION"
pinned k8s k8s.io/kubernetes "$K8S_VERSION"
pinned coredns github.com/coredns/coredns "$COREDNS_VERSION"
pinned prometheus github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"

mkdir -p "$bindir" "$cache/locks"
module_lock() { echo "$cache/locks/${1//\//-}.lock"; } # module_lock <dir under hack/>
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

# build <module dir> <ldflags> <tags> <binary>=<package>...: the missing binaries of one
# module, by one `go build` (its links run side by side; a package's name is its binary's).
# A module's builds take turns (its lock, which hack/build-flux.sh takes too): two at once
# would each compile the packages they share, as Go's build cache does not wait for the other;
# the second finds the binaries built. Run in a subshell of its own (`build ... &`).
build() {
  local dir=$1 ldflags=$2 tags=$3 pair names=() packages=() out tmp scratch
  shift 3
  for pair in "$@"; do
    [[ -x "$bindir/${pair%%=*}" ]] || names+=("${pair%%=*}")
  done
  if ((${#names[@]})); then # not all cached: look again once the module's builds are ours
    names=()
    exec 9>"$(module_lock "$dir")"
    flock -n 9 || { echo "build-cluster: [$(elapsed)] hack/$dir: waiting for the other build from it" && flock 9; }
  fi
  for pair in "$@"; do
    if [[ -x "$bindir/${pair%%=*}" ]]; then
      echo "build-cluster: [$(elapsed)] ${pair%%=*} cached"
    else
      names+=("${pair%%=*}") && packages+=("${pair#*=}")
    fi
  done
  ((${#names[@]})) || return 0
  echo "build-cluster: [$(elapsed)] building ${names[*]} ..."
  # Holding the module's lock, its scratch folders here are killed builds'.
  scratch="$bindir/.build-${dir//\//-}-"
  rm -rf "$scratch"*
  tmp=$(mktemp -d "${scratch}XXXXXX")
  out="$tmp/"
  ((${#names[@]} > 1)) || out="$tmp/${names[0]}"
  (cd "$here/$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out" "${packages[@]}")
  for name in "${names[@]}"; do mv "$tmp/$name" "$bindir/$name"; done
  rmdir "$tmp"
  echo "build-cluster: [$(elapsed)] built ${names[*]}"
}

# The modules build side by side: one module's build alone leaves a core idle while it
# loads packages or links, and on two cores this build is the longest of `make builds`.
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
