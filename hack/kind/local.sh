#!/usr/bin/env bash
# The kind path on a machine with no Docker of its own and no registry
# (make kind-up / kind-e2e / kind-down call it when `docker info` fails).
#
#   hack/kind/local.sh up     build what is missing, start a private dockerd,
#                             create the cluster, then run hack/kind/up.sh
#   hack/kind/local.sh env    print the exports that point docker/kind at it
#   hack/kind/local.sh down   delete the cluster, stop the engine, leave nothing
#
# Everything is built here (see docs/development.md, "kind"):
# - kind v0.33.0 and kubeadm from their Go modules (hack/kind/build-tools.sh);
# - the node image vigil.local/kind-node, the pause and Prometheus images
#   (python -m vigil.devcluster.kind_node); vigil and mlserver-sklearn
#   (hack/build-images.sh), all cached under ~/.cache/vigil/images.
# The engine is Debian's dockerd with its own data root
# (~/.cache/vigil/kind/docker) and socket, no default bridge, no iptables rules
# and no IP forwarding on the host (as operator/vigil/devcluster/engine.py).
# The node sits on the Docker network vigil-kind, created --internal with
# masquerading off: it has no default route, and the host reaches it on the
# bridge vigil-kind0 (10.89.0.1 -> node 10.89.0.2). The API server is reached
# at the node's address (an internal network publishes no ports).
# Containers run through hack/kind/runc-bounded: Docker 20.10 gives a
# privileged container (kind's nodes) capabilities root may not have here.
# Needs root (dockerd, debootstrap).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
KIND_CLUSTER=${KIND_CLUSTER:-vigil}
cache=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
state=$cache/kind
run_dir=/run/vigil-kind
socket=$run_dir/docker.sock
network=vigil-kind
bridge=vigil-kind0
subnet=10.89.0.0/24
gateway=10.89.0.1

say() { echo "kind-local: [$SECONDS s] $*" >&2; }
die() { echo "kind-local: $*" >&2; exit 1; }

engine_env() {
  echo "export DOCKER_HOST=unix://$socket KIND_EXPERIMENTAL_DOCKER_NETWORK=$network"
  echo "export PATH=$(bash hack/kind/build-tools.sh --print):$(bash hack/build-cluster.sh --print):\$PATH"
}

docker_() { docker --host "unix://$socket" "$@"; }

start_engine() {
  if docker_ version >/dev/null 2>&1; then
    say "private dockerd already running ($socket)"
    return
  fi
  command -v dockerd >/dev/null || die "dockerd is missing: apt-get install docker.io"
  # hack/kind/runc-bounded edits each container's spec with jq; without it runc fails in dockerd.log only.
  command -v jq >/dev/null || die "jq is missing (hack/kind/runc-bounded needs it): apt-get install jq"
  mkdir -p "$run_dir" "$state"
  say "starting a private dockerd (data root $state/docker, log $state/dockerd.log)"
  # The engine outlives this script: it must not keep any descriptor it
  # inherited open, above all the lock of `flock /tmp/vigil-heavy.lock make
  # kind-up`, which would stay held for as long as the engine runs (a
  # subshell closes them, so this script keeps its own).
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid dockerd \
      --data-root="$state/docker" \
      --exec-root="$run_dir/exec" \
      --pidfile="$run_dir/dockerd.pid" \
      --host="unix://$socket" \
      --bridge=none \
      --iptables=false \
      --ip-forward=false \
      --ip-masq=false \
      --add-runtime="vigil-runc=$root/hack/kind/runc-bounded" \
      --default-runtime=vigil-runc \
      --log-level=warn \
      >>"$state/dockerd.log" 2>&1 </dev/null
  ) &
  for _ in $(seq 1 180); do
    docker_ version >/dev/null 2>&1 && return
    sleep 0.5
  done
  die "dockerd did not answer on $socket in 90 s (log: $state/dockerd.log)"
}

stop_engine() {
  local pid
  pid=$(cat "$run_dir/dockerd.pid" 2>/dev/null || true)
  if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
    say "stopping the private dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.5
    done
    [[ -d "/proc/$pid" ]] && kill -KILL "$pid"
  fi
  # dockerd leaves its bind mount of the host's network namespace behind.
  { grep -o " $run_dir/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r point; do
    umount --lazy "$point" || true
  done
  rm -rf "$run_dir"
}

ensure_network() {
  if docker_ network inspect "$network" >/dev/null 2>&1; then
    return
  fi
  say "creating the Docker network $network ($subnet, internal, no masquerading, bridge $bridge)"
  docker_ network create --driver=bridge --internal \
    --subnet="$subnet" --gateway="$gateway" \
    --opt com.docker.network.bridge.name="$bridge" \
    --opt com.docker.network.bridge.enable_ip_masquerade=false \
    "$network" >/dev/null
}

load_archive() { # load_archive <ref> <archive>
  docker_ image inspect "$1" >/dev/null 2>&1 || docker_ load --input "$2" >/dev/null
}

up() {
  [[ $(id -u) == 0 ]] || die "needs root (a private dockerd, debootstrap); run as root"
  [[ -x .venv/bin/python ]] || die "no .venv: run make install first"
  say "kind and kubeadm (hack/kind/build-tools.sh)"
  local tools k8s
  tools=$(bash hack/kind/build-tools.sh)
  bash hack/build-cluster.sh >&2
  k8s=$(bash hack/build-cluster.sh --print)
  export PATH="$tools:$k8s:$PATH"
  say "images (node, pause, prometheus; vigil, mlserver-sklearn)"
  local -A ref path
  local name image archive
  local built
  # Not `< <(...)`: a failed build must stop here, not as an unbound name later.
  built=$(.venv/bin/python -m vigil.devcluster.kind_node) || die "the kind node image did not build (above)"
  while read -r name image archive; do
    ref[$name]=$image; path[$name]=$archive
  done <<< "$built"
  built=$(bash hack/build-images.sh vigil mlserver-sklearn) || die "hack/build-images.sh failed (above)"
  while read -r image archive; do
    name=${image#vigil.local/}; name=${name%%:*}
    ref[$name]=$image; path[$name]=$archive
  done <<< "$built"
  start_engine
  ensure_network
  for name in kind-node prometheus vigil mlserver-sklearn; do
    load_archive "${ref[$name]}" "${path[$name]}"
  done
  export DOCKER_HOST="unix://$socket" KIND_EXPERIMENTAL_DOCKER_NETWORK=$network
  mkdir -p .vigil
  if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    # docker creates a missing bind-mount source: remember whether kind's
    # /lib/modules mount made it, so that down removes it again.
    [[ -e /lib/modules ]] || touch "$state/made-lib-modules"
    sed "s|@NODE_IMAGE@|${ref[kind-node]}|" hack/kind/local-cluster.yaml > .vigil/kind-local-cluster.yaml
    say "creating kind cluster $KIND_CLUSTER (node image ${ref[kind-node]})"
    # kind's last step reads the API server's published port for the host's
    # kubeconfig, and an internal network publishes none: that one error,
    # after the node is Ready, is expected (--retain keeps the node); any
    # other fails here.
    if ! kind create cluster --name "$KIND_CLUSTER" --config .vigil/kind-local-cluster.yaml \
      --wait 300s --retain 2>&1 | tee "$state/create.log"; then :; fi
    if ! grep -q "Ready after" "$state/create.log" \
      || { grep -q "^ERROR" "$state/create.log" \
        && ! grep -q "ERROR: failed to create cluster: failed to get api server port" "$state/create.log"; }; then
      die "kind create cluster failed (log: $state/create.log; node logs: kind export logs --name $KIND_CLUSTER)"
    fi
  fi
  # The internal network publishes no ports: the node's own address.
  local node_ip
  node_ip=$(docker_ inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$KIND_CLUSTER-control-plane")
  kind get kubeconfig --internal --name "$KIND_CLUSTER" \
    | sed "s|server: https://$KIND_CLUSTER-control-plane:6443|server: https://$node_ip:6443|" \
    > .vigil/kind-kubeconfig
  export KUBECONFIG=$root/.vigil/kind-kubeconfig
  # kubeadm's Corefile names plugins this CoreDNS build leaves out (forward,
  # loop, reload, prometheus: hack/coredns): the cluster's names only, as on
  # the local cluster; nothing is forwarded (pods have no route out).
  kubectl -n kube-system create configmap coredns --dry-run=client -o yaml \
    --from-literal=Corefile='.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    cache 30
    loadbalance
}' | kubectl apply -f - >/dev/null
  kubectl -n kube-system rollout restart deployment/coredns >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s
  IMAGE=${IMAGE:?IMAGE is required (make kind-up sets it)}
  docker_ tag "${ref[vigil]}" "$IMAGE"
  IMAGE_PREBUILT=1 KUBECONFIG_READY=1 \
    MLSERVER_IMAGE="${ref[mlserver-sklearn]}" PROMETHEUS_IMAGE="${ref[prometheus]}" \
    bash hack/kind/up.sh
}

down() {
  # A stopped engine still holds the node container and its volume on disk.
  if ! docker_ version >/dev/null 2>&1 && [[ -n "$(ls -A "$state/docker/containers" 2>/dev/null)" ]]; then
    start_engine
  fi
  if docker_ version >/dev/null 2>&1; then
    export DOCKER_HOST="unix://$socket"
    PATH="$(bash hack/kind/build-tools.sh --print):$PATH"
    if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
      say "deleting kind cluster $KIND_CLUSTER"
      kind delete cluster --name "$KIND_CLUSTER"
    fi
    docker_ network rm "$network" >/dev/null 2>&1 || true
    # Node containers' anonymous /var volumes.
    docker_ volume prune --force >/dev/null || true
  fi
  stop_engine
  if [[ -f "$state/made-lib-modules" ]]; then
    rmdir /lib/modules 2>/dev/null || true
    rm -f "$state/made-lib-modules"
  fi
  ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
  say "down: no cluster, no engine, no bridge $bridge"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) engine_env ;;
  *) die "usage: hack/kind/local.sh up|down|env" ;;
esac
