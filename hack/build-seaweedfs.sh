#!/usr/bin/env bash
# Build SeaweedFS's `weed` (the S3-compatible store of the artifact fetcher's
# tests and benchmark) from its Go module, once, and cache it by version and a
# hash of its inputs.
#
# Usage: hack/build-seaweedfs.sh            build if missing, print the binary's path
#        hack/build-seaweedfs.sh --print    only print the binary's path
#
# The version is the one hack/seaweedfs/go.mod pins (a commit: SeaweedFS tags
# no semantic versions).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
module_dir="$here/seaweedfs"
version=$(sed -n 's|^require github.com/seaweedfs/seaweedfs \(.*\)$|\1|p' "$module_dir/go.mod")
[[ -n "$version" ]] || { echo "build-seaweedfs: no version in $module_dir/go.mod" >&2; exit 1; }
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
# The folder's name: the version, and a hash of everything else the binary is made from (this
# script's commands, its comment lines left out, and the module's go.mod, go.sum and Go files):
# a changed go.sum or replace directive builds a new folder, never reuses a stale binary.
key=$(sha256sum "$module_dir/go.mod" "$module_dir/go.sum" "$module_dir"/*.go \
  <(sed '/^[[:space:]]*#/d' "${BASH_SOURCE[0]}") | cut -c1-64 | sha256sum | cut -c1-12)
bin="$cache/bin/seaweedfs-$version-$key/weed"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || {
  echo "build-seaweedfs: Go is required (1.26.6+, its go.mod's) to build SeaweedFS; install it and retry" >&2
  exit 1
}
mkdir -p "$(dirname "$bin")" "$cache/locks"
# One build of this entry at a time (make demo's builds beside CI's make builds): the
# second finds the binary built. Each writes a file of its own, renamed into place whole.
exec 9>"$cache/locks/$(basename "$(dirname "$bin")").lock"
flock -n 9 || { echo "build-seaweedfs: waiting for the other build of weed $version" >&2 && flock 9; }
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
start=$(date +%s)
echo "build-seaweedfs: building weed $version ..." >&2
# Holding the lock, any scratch folder here is a killed build's.
rm -rf "$(dirname "$bin")"/.build-*
tmp=$(mktemp -d "$(dirname "$bin")/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/weed" github.com/seaweedfs/seaweedfs/weed) >&2
mv "$tmp/weed" "$bin"
echo "build-seaweedfs: built weed in $(( $(date +%s) - start ))s ($(du -h "$bin" | cut -f1))" >&2
echo "$bin"
