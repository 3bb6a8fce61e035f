#!/usr/bin/env bash
# Build Argo CD's repo-server and application controller (one binary, the component chosen
# by ARGOCD_BINARY_NAME) from its Go module through the wrapper module hack/argocd/argocd,
# once, and cache it by version and a hash of its inputs under the user's cache folder with
# Argo CD's CRDs of the same version (manifests/crds), as hack/build-flux.sh does for Flux.
# The GitOps e2e tests (tests/e2e/gitops) run its application controller and repo-server as
# host processes.
#
# Argo CD v3.6 asks for Go 1.27: GOTOOLCHAIN=go1.27.3 makes the go command fetch that
# toolchain from the module proxy (about 76 MB, once) for this build only; the rest of
# the project builds with the machine's Go 1.26.
#
# Usage: hack/build-argocd.sh            build what is missing, print the folder
#        hack/build-argocd.sh --print    only print the folder
# The folder holds argocd, the repo-server's helper scripts and crds/*.yaml.
set -euo pipefail

ARGOCD_VERSION=v3.6.1
export GOTOOLCHAIN=go1.27.3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
module_dir="$here/argocd/argocd"
# The folder's name: the version, and a hash of everything else the binary is made from (this
# script's commands, GOTOOLCHAIN above among them, its comment lines left out, and the module's
# go.mod, go.sum and Go files): a changed go.sum or replace directive builds a new folder,
# never reuses a stale binary.
key=$(sha256sum "$module_dir/go.mod" "$module_dir/go.sum" "$module_dir"/*.go \
  <(sed '/^[[:space:]]*#/d' "${BASH_SOURCE[0]}") | cut -c1-64 | sha256sum | cut -c1-12)
dir="$cache/bin/argocd-$ARGOCD_VERSION-$key"
module=github.com/argoproj/argo-cd/v3

if [[ "${1:-}" == "--print" ]]; then
  echo "$dir"
  exit 0
fi
if [[ -x "$dir/argocd" && -f "$dir/crds/.complete" && -x "$dir/git-verify-wrapper.sh" ]]; then
  echo "$dir"
  exit 0
fi
command -v go >/dev/null || {
  echo "build-argocd: Go is required (1.26+; it fetches Go 1.27.3 itself) to build Argo CD; install it and retry" >&2
  exit 1
}
mkdir -p "$dir/crds" "$cache/locks"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }
# One build of this entry at a time (make demo's builds beside CI's make builds): the
# second finds it built. The binary is written aside and renamed into place whole.
exec 9>"$cache/locks/$(basename "$dir").lock"
flock -n 9 || { echo "build-argocd: [$(elapsed)] waiting for the other build of $dir" >&2 && flock 9; }
if [[ -x "$dir/argocd" && -f "$dir/crds/.complete" && -x "$dir/git-verify-wrapper.sh" ]]; then
  echo "$dir"
  exit 0
fi

if [[ ! -x "$dir/argocd" ]]; then
  echo "build-argocd: [$(elapsed)] building argocd $ARGOCD_VERSION ..." >&2
  # Holding the lock, any scratch folder here is a killed build's.
  rm -rf "$dir"/.build-* "$dir/argocd.tmp"
  tmp=$(mktemp -d "$dir/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
    -o "$tmp/argocd" .) >&2
  mv "$tmp/argocd" "$dir/argocd"
  echo "build-argocd: [$(elapsed)] built argocd" >&2
fi
# `go mod download` of the module itself reports its go.mod's Go version as an error
# under some toolchains; the build above already put it in the module cache.
moddir=$(cd "$module_dir" && go list -m -f '{{.Dir}}' "$module")
for crd in application appproject; do
  [[ -f "$moddir/manifests/crds/$crd-crd.yaml" ]] || {
    echo "build-argocd: no manifests/crds/$crd-crd.yaml in $module@$ARGOCD_VERSION ($moddir)" >&2
    exit 1
  }
  cp "$moddir/manifests/crds/$crd-crd.yaml" "$dir/crds/"
done
chmod u+w "$dir"/crds/*.yaml
# The repo-server runs these helpers by name for every revision it renders (its image puts
# them in /usr/local/bin): git-verify-wrapper.sh even with GPG verification off.
for helper in git-verify-wrapper.sh gpg-wrapper.sh; do
  install -m 0755 "$moddir/hack/$helper" "$dir/$helper"
done
touch "$dir/crds/.complete"
echo "build-argocd: [$(elapsed)] $dir ($(du -sh "$dir" | cut -f1))" >&2
echo "$dir"
