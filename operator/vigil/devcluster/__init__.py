"""A real, Docker-free Kubernetes cluster for tests and the demo.

Development tooling only: never shipped to clusters. It runs etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
controller (built by ``hack/build-cluster.sh``) as local processes on
127.0.0.1, with kwok simulating nodes, so that Deployments get Pods that
become Ready, garbage collection runs and namespaces finish deleting; and a
real node (containerd, kubelet, kube-proxy, CoreDNS in a network namespace
of its own: ``node.py``) whose pods are real containers.
"""

from vigil.devcluster.cluster import (
    ClusterClient,
    ClusterError,
    LocalCluster,
    connect,
    existing_kubeconfig,
)

__all__ = ["ClusterClient", "ClusterError", "LocalCluster", "connect", "existing_kubeconfig"]
