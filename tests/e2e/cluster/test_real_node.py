"""The local cluster's real node runs real containers: the real-node acceptance.

Pods here select the real node (label and toleration ``vigil.dev/node=real``)
and run Debian's static busybox, imported into the node's containerd: its
``httpd`` serves a page, its ``wget`` and ``nslookup`` are the clients in pods.
Traffic goes only to the cluster's pod and Service ranges.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.node import NODE_LABEL, NODE_NAME
from vigil.devcluster.node_images import BUSYBOX_PAGE, busybox_image

KEY, VALUE = NODE_LABEL


@pytest.fixture(scope="module")
def image(real_node: LocalCluster) -> str:
    archive = busybox_image()
    real_node.node().load_images([archive])
    return archive.ref


def restricted_pod(name: str, image: str, command: list[str], labels: str = "") -> str:
    """A pod PodSecurity `restricted` admits, pinned to the real node."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": labels or name}},
            "spec": {
                "nodeSelector": {KEY: VALUE},
                "tolerations": [{"key": KEY, "value": VALUE, "effect": "NoSchedule"}],
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )


def web_pod(image: str) -> str:
    return restricted_pod("web", image, ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"])


def client_pod(image: str) -> str:
    return restricted_pod("client", image, ["sleep", "3600"])


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture
def restricted(cluster: ClusterClient, namespace: str) -> str:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    return namespace


def run_pods(cluster: ClusterClient, namespace: str, *manifests: str) -> None:
    for manifest in manifests:
        cluster.apply(manifest, namespace=namespace)
    cluster.kubectl(
        "wait", "pod", "--all", "-n", namespace, "--for=condition=Ready", "--timeout=90s"
    )


def exec_in(
    cluster: ClusterClient, namespace: str, pod: str, *command: str, check: bool = True
) -> str:
    result = cluster.kubectl("exec", "-n", namespace, pod, "--", *command, check=check)
    return result.stdout + result.stderr


def get_from_host(url: str, timeout: float = 30) -> str:
    """GET ``url`` until it answers: a Service answers once kube-proxy has written its
    rules, a moment after its pod is Ready (until then its address refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except (OSError, urllib.error.URLError) as error:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within {timeout:.0f}s: {error}")
            time.sleep(0.2)


@pytest.fixture
def web(cluster: ClusterClient, restricted: str, image: str) -> Iterator[str]:
    """A web pod, a client pod and a ClusterIP Service in front of the web pod, answering."""
    cluster.apply(SERVICE, namespace=restricted)
    run_pods(cluster, restricted, web_pod(image), client_pod(image))
    service_ip = cluster.get_json("service", "web", "-n", restricted)["spec"]["clusterIP"]
    get_from_host(f"http://{service_ip}/")
    yield restricted


def test_the_real_node_is_ready_and_runs_containerd(
    cluster: ClusterClient, real_node: LocalCluster
) -> None:
    node = cluster.get_json("node", NODE_NAME)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://"), info
    assert info["kubeletVersion"] == "v1.34.4"
    assert node["metadata"]["labels"][KEY] == VALUE
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.network.node_ip


def test_a_restricted_pod_runs_as_non_root_with_a_read_only_root(
    cluster: ClusterClient, web: str
) -> None:
    pod = cluster.get_json("pod", "web", "-n", web)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert exec_in(cluster, web, "web", "id", "-u").strip() == "10001"
    write = cluster.kubectl("exec", "-n", web, "web", "--", "touch", "/written", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr


def test_a_cluster_ip_service_answers_from_the_host_and_from_a_pod(
    cluster: ClusterClient, web: str
) -> None:
    service_ip = cluster.get_json("service", "web", "-n", web)["spec"]["clusterIP"]
    with urllib.request.urlopen(f"http://{service_ip}/", timeout=10) as response:
        assert response.read().decode() == BUSYBOX_PAGE
    page = exec_in(cluster, web, "client", "wget", "-q", "-O", "-", f"http://{service_ip}/")
    assert page == BUSYBOX_PAGE


def test_service_names_resolve_in_pods(cluster: ClusterClient, web: str) -> None:
    service_ip = cluster.get_json("service", "web", "-n", web)["spec"]["clusterIP"]
    name = f"web.{web}.svc.cluster.local"
    assert service_ip in exec_in(cluster, web, "client", "nslookup", name)
    page = exec_in(cluster, web, "client", "wget", "-q", "-O", "-", f"http://web.{web}.svc/")
    assert page == BUSYBOX_PAGE


def test_the_kubernetes_service_reaches_the_api_server_from_a_pod(
    cluster: ClusterClient, web: str
) -> None:
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    answer = exec_in(
        cluster,
        web,
        "client",
        "sh",
        "-c",
        f'wget -q -O - --no-check-certificate --header "Authorization: Bearer $(cat {token})"'
        " https://kubernetes.default.svc/api",
    )
    assert json.loads(answer)["kind"] == "APIVersions"


def test_logs_show_what_the_container_wrote(cluster: ClusterClient, web: str) -> None:
    exec_in(cluster, web, "client", "wget", "-q", "-O", "-", "http://web/")
    client_ip = cluster.get_json("pod", "client", "-n", web)["status"]["podIP"]
    logs = cluster.kubectl("logs", "-n", web, "web").stdout
    # busybox httpd -v logs each answer with the client's address.
    assert f"{client_ip}]" in logs and "response:200" in logs, logs
