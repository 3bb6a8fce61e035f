#!/bin/bash
# vigil-images.service: import /kind/images/*.tar (docker archives built
# with the node image) into containerd's Kubernetes namespace.
set -o errexit -o nounset -o pipefail
for _ in $(seq 1 60); do
  ctr version >/dev/null 2>&1 && break
  sleep 0.5
done
for archive in /kind/images/*.tar; do
  ctr --namespace k8s.io images import "$archive"
done
