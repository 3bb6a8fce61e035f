#!/usr/bin/env bash
# make kind-up: a kind cluster with Vigil's image loaded, an in-cluster
# Prometheus using the project's scrape job, and the operator installed with
# the project's manifests. Needs Docker, kind and kubectl on PATH.
# Idempotent: an existing cluster of that name is reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
KIND_CLUSTER=${KIND_CLUSTER:-vigil}
IMAGE=${IMAGE:?IMAGE is required (make kind-up sets it)}
MLSERVER_IMAGE=${MLSERVER_IMAGE:-seldonio/mlserver:1.7.1-sklearn}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-prom/prometheus:v3.6.0}
KIND_IMAGE=vigil.local/vigil:kind

step() { echo "kind-up: [$SECONDS s] $*"; }
need() { command -v "$1" >/dev/null || { echo "kind-up: $1 is required on PATH" >&2; exit 1; }; }
need docker; need kind; need kubectl
docker info >/dev/null 2>&1 || { echo "kind-up: no Docker engine reachable (docker info failed)" >&2; exit 1; }

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  step "reusing kind cluster $KIND_CLUSTER"
else
  step "creating kind cluster $KIND_CLUSTER"
  kind create cluster --name "$KIND_CLUSTER" --config hack/kind/cluster.yaml --wait 180s
fi
kubeconfig=$(mktemp)
kind get kubeconfig --name "$KIND_CLUSTER" > "$kubeconfig"
export KUBECONFIG=$kubeconfig

step "building $IMAGE"
make image IMAGE="$IMAGE"
step "loading images into the nodes"
# The kind overlay names this image (manifests/overlays/kind): one name, whatever IMAGE is.
docker tag "$IMAGE" "$KIND_IMAGE"
kind load docker-image "$KIND_IMAGE" --name "$KIND_CLUSTER"
for extra in "$MLSERVER_IMAGE" "$PROMETHEUS_IMAGE"; do
  docker image inspect "$extra" >/dev/null 2>&1 || docker pull "$extra"
  kind load docker-image "$extra" --name "$KIND_CLUSTER"
done

step "installing Prometheus (namespace vigil-monitoring) with the project's scrape job"
kubectl apply -f hack/kind/prometheus.yaml
kubectl apply -f manifests/monitoring/prometheus-rbac.yaml
kubectl create configmap prometheus-config -n vigil-monitoring \
  --from-literal=prometheus.yml="$(printf 'global: {scrape_interval: 5s}\nscrape_configs:\n'; sed 's/^/  /' manifests/monitoring/prometheus-scrape-config.yaml)" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl set image -n vigil-monitoring deployment/prometheus prometheus="$PROMETHEUS_IMAGE"
kubectl rollout status -n vigil-monitoring deployment/prometheus --timeout=180s

step "installing the CRD and the operator"
kubectl apply -k manifests/overlays/kind
kubectl rollout status -n vigil-system deployment/vigil-operator --timeout=180s

cp "$kubeconfig" "$root/.vigil/kind-kubeconfig" 2>/dev/null || { mkdir -p "$root/.vigil"; cp "$kubeconfig" "$root/.vigil/kind-kubeconfig"; }
step "ready: export KUBECONFIG=$root/.vigil/kind-kubeconfig"
