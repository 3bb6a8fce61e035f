#!/usr/bin/env bash
# Build Flux's source-controller and kustomize-controller from their Go
# modules (the wrapper module hack/flux/controllers pins both), once, and cache
# the binaries under the user's cache folder, keyed by the versions and a hash
# of the wrapper's go.mod, go.sum and Go files and this script, with Flux's
# CRDs from the same module versions (config/crd/bases), as
# hack/build-cluster.sh does for the control plane. The GitOps e2e tests
# (tests/e2e/gitops) run them as host processes against the local cluster.
#
# Upstream's go.mod files replace their ./api modules with local folders,
# which `go install pkg@version` refuses: the wrapper requires the api modules
# at the versions upstream builds with and keeps upstream's other replaces.
# One module and one `go build` for both controllers: the packages they share
# are compiled once (hack/flux/README.md). kwok builds from the same module
# (hack/build-cluster.sh), taking turns with this build.
#
# Usage: hack/build-flux.sh            build what is missing, print the folder
#        hack/build-flux.sh --print    only print the folder
# The folder holds source-controller, kustomize-controller and crds/*.yaml.
set -euo pipefail

# The v1.9 line builds with the Go this project uses (1.26). v1.10.x asks for
# Go 1.27, which GOTOOLCHAIN=go1.27.3 brings, but neither controller of it
# builds: its build lists need fluxcd/pkg modules the module proxy refuses
# (403 "This module version is not available"; hack/flux/README.md lists them).
# source-controller v1.9.4 to v1.9.6 likewise need github.com/fluxcd/pkg/artifact
# v0.18.2/v0.18.3 (403); v1.9.0 needs v0.18.0, which is served.
# kustomize-controller v1.9.6 itself builds against source-controller/api
# v1.9.0, the same API.
SOURCE_CONTROLLER_VERSION=v1.9.0
KUSTOMIZE_CONTROLLER_VERSION=v1.9.6

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
module_dir="$here/flux/controllers"
# The folder's name: the versions, and a hash of everything else the binaries are made from (this
# script's commands, its comment lines left out, and the module's go.mod, go.sum and Go files):
# a changed go.sum or replace directive builds a new folder, never reuses a stale binary.
key=$(sha256sum "$module_dir/go.mod" "$module_dir/go.sum" "$module_dir"/*.go \
  <(sed '/^[[:space:]]*#/d' "${BASH_SOURCE[0]}") | cut -c1-64 | sha256sum | cut -c1-12)
dir="$cache/bin/flux-source-$SOURCE_CONTROLLER_VERSION-kustomize-$KUSTOMIZE_CONTROLLER_VERSION-$key"

if [[ "${1:-}" == "--print" ]]; then
  echo "$dir"
  exit 0
fi
if [[ -x "$dir/source-controller" && -x "$dir/kustomize-controller" && -f "$dir/crds/.complete" ]]; then
  echo "$dir"
  exit 0
fi
command -v go >/dev/null || {
  echo "build-flux: Go is required (1.26+) to build Flux's controllers; install it and retry" >&2
  exit 1
}
mkdir -p "$dir/crds" "$cache/locks"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }
# One build of this entry at a time (make demo's builds beside CI's make builds): the
# second finds it built, and no build removes another's scratch folder (.tmp) mid-build.
exec 8>"$cache/locks/$(basename "$dir").lock"
flock -n 8 || { echo "build-flux: [$(elapsed)] waiting for the other build of $dir" >&2 && flock 8; }
if [[ -x "$dir/source-controller" && -x "$dir/kustomize-controller" && -f "$dir/crds/.complete" ]]; then
  echo "$dir"
  exit 0
fi

controllers=(github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller)
if [[ ! -x "$dir/source-controller" || ! -x "$dir/kustomize-controller" ]]; then
  echo "build-flux: [$(elapsed)] building source-controller $SOURCE_CONTROLLER_VERSION" \
    "and kustomize-controller $KUSTOMIZE_CONTROLLER_VERSION ..." >&2
  # Holding the entry's lock: a .tmp here is a killed build's.
  rm -rf "$dir/.tmp" && mkdir -p "$dir/.tmp"
  # The module's lock, as hack/build-cluster.sh's build of kwok from it takes it: one at a
  # time, the second finds the packages they share compiled.
  (
    exec 9>"$cache/locks/flux-controllers.lock"
    flock -n 9 || { echo "build-flux: [$(elapsed)] waiting for kwok's build from the same module" && flock 9; }
    cd "$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/.tmp/" "${controllers[@]}"
  ) >&2
  for module in "${controllers[@]}"; do mv "$dir/.tmp/${module##*/}" "$dir/"; done
  rmdir "$dir/.tmp"
  echo "build-flux: [$(elapsed)] built both" >&2
fi

crds() { # crds <module> <version>: copy its config/crd/bases
  local module=$1 version=$2 moddir
  moddir=$(cd "$module_dir" && go mod download -json "$module@$version" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d "$moddir/config/crd/bases" ]] || {
    echo "build-flux: no config/crd/bases in $module@$version ($moddir)" >&2
    exit 1
  }
  cp "$moddir"/config/crd/bases/*.yaml "$dir/crds/"
  chmod u+w "$dir"/crds/*.yaml
}

crds github.com/fluxcd/source-controller "$SOURCE_CONTROLLER_VERSION"
crds github.com/fluxcd/kustomize-controller "$KUSTOMIZE_CONTROLLER_VERSION"
touch "$dir/crds/.complete"
echo "build-flux: [$(elapsed)] $dir ($(du -sh "$dir" | cut -f1))" >&2
echo "$dir"
