#!/usr/bin/env bash
# Build Flux's source-controller and kustomize-controller from their Go
# modules (the wrapper modules hack/flux/{source,kustomize}-controller pin
# them), once, and cache the binaries by version under the user's cache
# folder with Flux's CRDs from the same module versions (config/crd/bases),
# as hack/build-cluster.sh does for the control plane. The GitOps e2e tests
# (tests/e2e/gitops) run them as host processes against the local cluster.
#
# Upstream's go.mod files replace their ./api modules with local folders,
# which `go install pkg@version` refuses: the wrapper modules require the
# api modules at the versions upstream builds with and copy its other
# replaces, so the build list is upstream's.
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
dir="$cache/bin/flux-source-$SOURCE_CONTROLLER_VERSION-kustomize-$KUSTOMIZE_CONTROLLER_VERSION"

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
mkdir -p "$dir/crds"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

build() { # build <name> <version>
  local name=$1 version=$2 module="github.com/fluxcd/$1" moddir
  if [[ ! -x "$dir/$name" ]]; then
    echo "build-flux: [$(elapsed)] building $name $version ..." >&2
    (cd "$here/flux/$name" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o "$dir/$name.tmp" "$module") >&2
    mv "$dir/$name.tmp" "$dir/$name"
    echo "build-flux: [$(elapsed)] built $name" >&2
  fi
  moddir=$(cd "$here/flux/$name" && go mod download -json "$module@$version" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d "$moddir/config/crd/bases" ]] || {
    echo "build-flux: no config/crd/bases in $module@$version ($moddir)" >&2
    exit 1
  }
  cp "$moddir"/config/crd/bases/*.yaml "$dir/crds/"
  chmod u+w "$dir"/crds/*.yaml
}

build source-controller "$SOURCE_CONTROLLER_VERSION"
build kustomize-controller "$KUSTOMIZE_CONTROLLER_VERSION"
touch "$dir/crds/.complete"
echo "build-flux: [$(elapsed)] $dir ($(du -sh "$dir" | cut -f1))" >&2
echo "$dir"
