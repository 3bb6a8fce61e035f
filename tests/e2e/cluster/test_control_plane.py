"""The local control plane behaves like a real cluster: the foundation's acceptance.

Deployments get Ready pods, garbage collection and namespace deletion work,
RBAC grants exactly what a Role says, and PodSecurity is enforced.
"""

from __future__ import annotations

import ipaddress
import json

from kit.waits import wait_for

from vigil.devcluster import ClusterClient

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.example/web:1
"""


def test_nodes_are_kwok_nodes_and_ready(cluster: ClusterClient) -> None:
    nodes = cluster.get_json("nodes")["items"]
    kwok_nodes = [
        n for n in nodes if n["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"
    ]
    assert len(kwok_nodes) >= 2
    for node in kwok_nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]


def test_deployment_gets_three_ready_pods_within_60s(
    cluster: ClusterClient, namespace: str
) -> None:
    cluster.apply(DEPLOYMENT, namespace=namespace)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
    ]
    assert len(ready) == 3


def test_pod_ips_come_from_loopback_pod_cidrs(cluster: ClusterClient, namespace: str) -> None:
    """kwok pods get 127.x addresses: nothing listens there, and nothing sent to one
    leaves the machine."""
    cluster.apply(DEPLOYMENT, namespace=namespace)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3
    assert all(ipaddress.ip_address(ip).is_loopback for ip in ips), ips


def test_deleting_an_owner_garbage_collects_what_it_owns(
    cluster: ClusterClient, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = cluster.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"key": "value"},
    }
    cluster.apply(json.dumps(owned), namespace=namespace)
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def owned_is_gone() -> bool:
        result = cluster.kubectl("get", "configmap", "owned", "-n", namespace, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    wait_for(owned_is_gone, timeout=60, what="the owned ConfigMap to be garbage-collected")


def test_namespace_finishes_deleting(cluster: ClusterClient, namespace: str) -> None:
    name = f"{namespace}-x"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("create", "configmap", "content", "-n", name)
    cluster.kubectl("delete", "namespace", name, "--timeout=90s")
    result = cluster.kubectl("get", "namespace", name, check=False)
    assert result.returncode != 0 and "NotFound" in result.stderr


def test_serviceaccount_token_is_allowed_exactly_what_its_role_grants(
    cluster: ClusterClient, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create",
        "role",
        "configmap-reader",
        "--verb=get,list,watch",
        "--resource=configmaps",
        "-n",
        namespace,
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=configmap-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    kubeconfig = cluster.serviceaccount_kubeconfig(namespace, "reader")

    def can(*args: str) -> bool:
        result = cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
        return result.stdout.strip() == "yes"

    assert can("list", "configmaps", "-n", namespace)
    assert can("get", "configmaps", "-n", namespace)
    assert not can("create", "configmaps", "-n", namespace)
    assert not can("delete", "configmaps", "-n", namespace)
    assert not can("get", "secrets", "-n", namespace)
    assert not can("list", "configmaps", "-n", "default")
    assert not can("list", "pods", "-n", namespace)
    # And the token really works against the API, not just in can-i.
    cluster.kubectl("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig)
    denied = cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
    - name: c
      image: registry.example/c:1
      securityContext: {privileged: true}
"""

RESTRICTED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: restricted}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: c
      image: registry.example/c:1
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
"""


def test_podsecurity_restricted_rejects_a_privileged_pod(
    cluster: ClusterClient, namespace: str
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    rejected = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=PRIVILEGED_POD, check=False
    )
    assert rejected.returncode != 0
    assert "violates PodSecurity" in rejected.stderr and "restricted" in rejected.stderr
    cluster.apply(RESTRICTED_POD, namespace=namespace)
