#!/usr/bin/env bash
# make kind-up: a kind cluster with Vigil's image loaded, an in-cluster
# Prometheus using the project's scrape job, and the operator installed from
# manifests/overlays/kind. Needs Docker, kind and kubectl on PATH.
# Idempotent: an existing cluster of that name is reused, images are loaded
# again (kind skips what the nodes already hold), manifests re-applied.
#
# From kind's documentation: `kind load docker-image` copies a local image
# into every node's containerd; a pod uses it only if its pull policy does
# not force a pull (Always, the default for :latest), hence fixed tags.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
KIND_CLUSTER=${KIND_CLUSTER:-vigil}
IMAGE=${IMAGE:?IMAGE is required (make kind-up sets it)}
MLSERVER_IMAGE=${MLSERVER_IMAGE:-seldonio/mlserver:1.7.1-sklearn}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-prom/prometheus:v3.6.0}
# The name manifests/overlays/kind runs (operator and sidecar), whatever IMAGE is.
KIND_IMAGE=vigil.local/vigil:kind
# The sidecar image the e2e suite's operator injects (tests/e2e/kit/operator.py).
E2E_SIDECAR_IMAGE=ghcr.io/vigil-dev/vigil:e2e

step() { echo "kind-up: [$SECONDS s] $*"; }
need() { command -v "$1" >/dev/null || { echo "kind-up: $1 is required on PATH" >&2; exit 1; }; }
# No Docker engine of the user's and no registry (this project's own
# machines): hack/kind/local.sh builds everything here and comes back here
# with DOCKER_HOST pointing at its private engine.
if ! docker info >/dev/null 2>&1 && [[ -z "${DOCKER_HOST:-}" ]]; then
  echo "kind-up: no Docker engine reachable (docker info failed): building the node and images here (hack/kind/local.sh)" >&2
  exec bash hack/kind/local.sh up
fi
need docker; need kind; need kubectl
docker info >/dev/null 2>&1 || { echo "kind-up: no Docker engine reachable (docker info failed)" >&2; exit 1; }

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  step "reusing kind cluster $KIND_CLUSTER"
else
  step "creating kind cluster $KIND_CLUSTER (hack/kind/cluster.yaml)"
  kind create cluster --name "$KIND_CLUSTER" --config hack/kind/cluster.yaml --wait 180s
fi
mkdir -p "$root/.vigil"
kubeconfig="$root/.vigil/kind-kubeconfig"
# local.sh wrote it already (the node's address: its network publishes no ports).
[[ "${KUBECONFIG_READY:-0}" == 1 ]] || kind get kubeconfig --name "$KIND_CLUSTER" > "$kubeconfig"
export KUBECONFIG=$kubeconfig

if [[ "${IMAGE_PREBUILT:-0}" == 1 ]]; then
  step "$IMAGE: built by hack/build-images.sh (local.sh)"
else
  step "building $IMAGE"
  make image IMAGE="$IMAGE"
fi
step "loading images into the nodes"
docker tag "$IMAGE" "$KIND_IMAGE"
docker tag "$IMAGE" "$E2E_SIDECAR_IMAGE"
kind load docker-image "$KIND_IMAGE" "$E2E_SIDECAR_IMAGE" --name "$KIND_CLUSTER"
for extra in "$MLSERVER_IMAGE" "$PROMETHEUS_IMAGE"; do
  docker image inspect "$extra" >/dev/null 2>&1 || docker pull "$extra"
  kind load docker-image "$extra" --name "$KIND_CLUSTER"
done

step "installing Prometheus (namespace vigil-monitoring, host port 30090) with the project's scrape job"
kubectl apply -f hack/kind/prometheus.yaml
kubectl apply -f manifests/monitoring/prometheus-rbac.yaml
kubectl create configmap prometheus-config -n vigil-monitoring \
  --from-literal=prometheus.yml="$(printf 'global: {scrape_interval: 5s}\nscrape_configs:\n'; sed 's/^/  /' manifests/monitoring/prometheus-scrape-config.yaml)" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl set image -n vigil-monitoring deployment/prometheus prometheus="$PROMETHEUS_IMAGE"
kubectl rollout status -n vigil-monitoring deployment/prometheus --timeout=180s

step "installing the CRD and the operator (manifests/overlays/kind)"
kubectl apply -k manifests/overlays/kind
kubectl wait --for=condition=Established crd/modeldeployments.vigil.dev --timeout=60s
# Back to one replica if kind-e2e was interrupted before it could restore it.
kubectl scale -n vigil-system deployment/vigil-operator --replicas=1
kubectl rollout status -n vigil-system deployment/vigil-operator --timeout=180s

step "ready: export KUBECONFIG=$kubeconfig"
echo "  the example reads s3://models/wine/1/model.tar.gz with the Secret wine-artifacts:"
echo "  upload the model and create the Secret first (manifests/README.md), then"
echo "  kubectl apply -n default -k manifests/examples/new-model   # then: kubectl get md"
echo "  Prometheus: http://127.0.0.1:30090"
