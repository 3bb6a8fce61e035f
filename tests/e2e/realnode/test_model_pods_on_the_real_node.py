"""What only a container runtime can prove, on the local cluster's real node.

One ModelDeployment, reconciled by the operator running IN the cluster (the
Deployment of ``manifests/overlays/local``, in this module's namespace, with
its ServiceAccount and only its RBAC), serves a model from a local
PersistentVolume named ``pvc://models/wine-1``; its pods are real containers
(vigil.local/mlserver-sklearn behind the vigil.local/vigil sidecar) in a
namespace under PodSecurity ``restricted``. The tests exec into the running
containers and read what the kernel enforces: users, read-only root file
systems, the read-only model volume, cgroup limits; readiness driven by the
probes; and no failed request through the Service during a blue/green switch
(the old pods' ``preStop``). The module shares one namespace, one operator and
one ModelDeployment (starting MLServer is the slow part); every test starts
from the model Ready and leaves it Ready. Traffic goes only to pod and Service
addresses of this cluster.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from kit.kube import MD_LABEL, Kube, ready
from kit.modeldeployment import SERVER_RESOURCES
from kit.status import condition
from kit.traffic import ModelEndpoint
from kit.waits import wait_for

from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.images import ensure_images
from vigil.devcluster.incluster import (
    InClusterOperator,
    local_volume,
    volume_dir,
)
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.devcluster.node import NODE_NAME
from vigil.devcluster.traffic import TrafficGenerator, service_address, v2_body

NAME = "wine"
CLAIM = "models"
SERVER_USER = 1000  # the MLServer image's USER
VIGIL_USER = 65532  # the vigil image's USER: sidecar and operator


@dataclass(frozen=True)
class Deployed:
    cluster: ClusterClient
    namespace: str
    operator: InClusterOperator
    model: TrainedModel
    server_image: str

    @property
    def kube(self) -> Kube:
        return Kube(self.cluster, self.namespace)

    def get(self, *args: str) -> dict[str, Any]:
        found = self.kube.get(*args)
        assert found is not None, f"{' '.join(args)} not found"
        return found

    def model_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.kube.pods(f"{MD_LABEL}={NAME}")
            if not p["metadata"].get("deletionTimestamp")
        ]

    def exec(self, pod: str, container: str, *command: str) -> subprocess.CompletedProcess[str]:
        return self.kube.run("exec", pod, "-c", container, "--", *command, check=False)

    def condition(self, kind: str) -> dict[str, Any]:
        return condition(self.get("md", NAME).get("status") or {}, kind)


def model_deployment(uri: str, image: str, config: dict[str, str] | None = None) -> str:
    return kube_yaml.dump(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "model": {"name": NAME, "version": "1", "uri": uri},
                "server": {
                    "image": image,
                    # This model loaded, not only the server up: MLServer's
                    # /v2/health/ready stays 200 with no model at all.
                    "readinessPath": f"/v2/models/{NAME}/ready",
                    "readOnlyRootFilesystem": True,
                    "resources": SERVER_RESOURCES,
                },
                "replicas": 1,
                "config": config or {},
            },
        }
    )


def serving(deployed: Deployed) -> list[dict[str, Any]]:
    """The model's pods once it is Ready with one pod Ready and answering through the
    Service (else []): a Ready pod is not yet in kube-proxy's rules."""
    if deployed.condition("Ready").get("status") != "True":
        return []
    pods = deployed.model_pods()
    ready_pods = [p for p in pods if ready(p)]
    if not len(ready_pods) == len(pods) == 1:
        return []
    return ready_pods if ModelEndpoint(deployed.kube, NAME).answering(replicas=1) else []


@pytest.fixture(scope="module")
def deployed(cluster: ClusterClient, real_node: LocalCluster) -> Iterator[Deployed]:
    """The in-cluster operator and a Ready ModelDeployment in a namespace of this module's."""
    namespace = f"e2e-realnode-{secrets.token_hex(3)}"
    operator = InClusterOperator(cluster, namespace=namespace, watch=(namespace,))
    folder = volume_dir(real_node, namespace)
    try:
        images = ensure_images(["vigil", "mlserver-sklearn"])
        real_node.node().load_images(list(images.values()))
        # The overlay brings the namespace: PodSecurity restricted, pods on the real node.
        operator.deploy(real_node, images["vigil"])
        cluster.kubectl("label", "namespace", namespace, "vigil.dev/e2e=true", "--overwrite")
        model = train_wine(folder / "wine-1", version="1", seed=0)
        cluster.apply(local_volume(CLAIM, folder, namespace=namespace))
        server_image = images["mlserver-sklearn"].ref
        cluster.apply(model_deployment(f"pvc://{CLAIM}/wine-1", server_image), namespace)
        result = Deployed(cluster, namespace, operator, model, server_image)
        wait_for(
            lambda: serving(result),
            timeout=240,
            what="the ModelDeployment Ready on one answering pod",
        )
        yield result
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        operator.remove_cluster_objects()
        cluster.kubectl("delete", "pv", f"{CLAIM}-{namespace}", "--wait=false", check=False)
        shutil.rmtree(folder, ignore_errors=True)


def containers(deployed: Deployed) -> list[tuple[str, str, int]]:
    """(pod, container, expected uid) of every container under test, the operator's too."""
    pod = deployed.model_pods()[0]["metadata"]["name"]
    operator = deployed.operator.pod()["metadata"]["name"]
    return [
        (pod, "server", SERVER_USER),
        (pod, "sidecar", VIGIL_USER),
        (operator, "operator", VIGIL_USER),
    ]


# -- admission and placement ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("pvc://Models_1/wine", "a pvc:// URI is pvc://<claim>/<path>"),
        ("pvc://models/wine/../../etc", "must stay inside the volume (no '..' segment"),
        ("pvc://models//etc", "no '/' right after the claim"),
    ],
)
def test_the_api_server_refuses_a_bad_pvc_uri_naming_the_field(
    deployed: Deployed, uri: str, words: str
) -> None:
    result = deployed.cluster.kubectl(
        "apply", "--dry-run=server", "-n", deployed.namespace, "-f", "-",
        input=model_deployment(uri, deployed.server_image), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.model.uri" in result.stderr and words in result.stderr, result.stderr


def test_every_pod_runs_on_the_real_node_admitted_under_restricted(deployed: Deployed) -> None:
    labels = deployed.cluster.get_json("namespace", deployed.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"  # type: ignore[index]
    for pod in (*deployed.model_pods(), deployed.operator.pod()):
        assert pod["spec"]["nodeName"] == NODE_NAME, pod["metadata"]["name"]
    # The level is enforced, not only labelled: a root pod is refused here.
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": deployed.server_image}]},
    }
    refused = deployed.cluster.kubectl(
        "apply", "--dry-run=server", "-n", deployed.namespace, "-f", "-",
        input=json.dumps(root_pod), check=False,
    )  # fmt: skip
    assert 'violates PodSecurity "restricted' in refused.stderr, refused.stderr


# -- users, file systems, volumes ---------------------------------------------------------------


def test_every_container_runs_as_its_non_root_user(deployed: Deployed) -> None:
    for pod, container, uid in containers(deployed):
        result = deployed.exec(pod, container, "id", "-u")
        assert result.stdout.strip() == str(uid), (container, result.stdout, result.stderr)


def test_a_write_to_the_root_file_system_fails_in_every_container(deployed: Deployed) -> None:
    for pod, container, _ in containers(deployed):
        result = deployed.exec(pod, container, "touch", "/vigil-write-probe")
        assert result.returncode != 0, container
        assert "Read-only file system" in result.stderr, (container, result.stderr)
    # Where the manifests give a writable place, it is writable.
    pod = deployed.model_pods()[0]["metadata"]["name"]
    for container, folder in (("server", "/tmp"), ("sidecar", "/var/lib/vigil/tmp")):
        wrote = deployed.exec(pod, container, "touch", f"{folder}/vigil-write-probe")
        assert wrote.returncode == 0, (container, wrote.stderr)


def test_the_model_comes_read_only_from_the_claim_and_answers_as_trained(
    deployed: Deployed,
) -> None:
    pod = deployed.model_pods()[0]["metadata"]["name"]
    listed = deployed.exec(pod, "server", "ls", "/mnt/models")
    assert {"model.joblib", "model-settings.json"} <= set(listed.stdout.split()), listed.stderr
    refused = deployed.exec(pod, "server", "touch", "/mnt/models/x")
    assert "Read-only file system" in refused.stderr, refused.stderr
    env = deployed.exec(pod, "server", "printenv", "MODEL_PATH", "STORAGE_URI").stdout.split()
    assert env == ["/mnt/models", f"pvc://{CLAIM}/wine-1"]
    # Through the Service, as a client would: the trained model's own answers.
    rows = deployed.model.X[::20]
    address = service_address(deployed.cluster, deployed.namespace, NAME)
    request = urllib.request.Request(
        f"http://{address}/v2/models/{NAME}/infer",
        data=v2_body(rows.tolist()),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    expected = deployed.model.predict(rows)
    assert np.array_equal(np.asarray(answer["outputs"][0]["data"]), expected)


# -- cgroups --------------------------------------------------------------------------------


def cgroup_limits(deployed: Deployed, pod: str, container: str) -> dict[str, int]:
    """memory limit (bytes), CPU quota per 100 ms period (-1: none), CPU shares, from inside."""
    v1 = deployed.exec(
        pod, container, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.shares",
    )  # fmt: skip
    if v1.returncode == 0:
        memory, quota, shares = (int(v) for v in v1.stdout.split())
        return {"memory": memory, "quota": quota, "shares": shares}
    v2 = deployed.exec(pod, container, "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max")
    assert v2.returncode == 0, (v1.stderr, v2.stderr)
    memory, quota, _period = v2.stdout.split()
    return {"memory": int(memory), "quota": -1 if quota == "max" else int(quota), "shares": -1}


def test_requests_and_limits_are_the_containers_cgroups(deployed: Deployed) -> None:
    mib = 1024 * 1024
    pod = deployed.model_pods()[0]["metadata"]["name"]
    operator = deployed.operator.pod()["metadata"]["name"]
    # Kubernetes' conversion: shares = milli-CPU * 1024 / 1000, quota = milli-CPU * 100.
    expected = {
        (pod, "server"): {"memory": 512 * mib, "quota": 100_000, "shares": 102},
        (pod, "sidecar"): {"memory": 256 * mib, "quota": -1, "shares": 51},
        (operator, "operator"): {"memory": 512 * mib, "quota": -1, "shares": 102},
    }
    for (name, container), limits in expected.items():
        found = cgroup_limits(deployed, name, container)
        if found["shares"] == -1:  # cgroup v2: no shares file
            limits = {**limits, "shares": -1}
        assert found == limits, container


# -- probes, preStop ----------------------------------------------------------------------


def ready_addresses(deployed: Deployed) -> set[str]:
    slices = deployed.get("endpointslices", "-l", f"kubernetes.io/service-name={NAME}")["items"]
    return {
        address
        for piece in slices
        for endpoint in piece.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint["addresses"]
    }


def pod_ready(deployed: Deployed, name: str) -> bool:
    return ready(deployed.get("pod", name))


def test_probes_take_an_unready_model_out_of_the_service_and_back(deployed: Deployed) -> None:
    pod = deployed.model_pods()[0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    wait_for(
        lambda: ip in ready_addresses(deployed),
        timeout=60,
        what="the pod among the Service's endpoints",
    )

    def repository(action: str) -> None:
        url = f"http://127.0.0.1:8080/v2/repository/models/{NAME}/{action}"
        call = f"import urllib.request as u; u.urlopen(u.Request({url!r}, method='POST'))"
        result = deployed.exec(name, "server", "python", "-c", call)
        assert result.returncode == 0, result.stderr

    repository("unload")  # MLServer stops serving the model: the sidecar's readiness fails
    try:
        wait_for(
            lambda: not pod_ready(deployed, name),
            timeout=60,
            what="the kubelet marking the pod NotReady",
        )
        wait_for(
            lambda: ip not in ready_addresses(deployed), timeout=30, what="the endpoint not ready"
        )
        assert deployed.get("pod", name)["status"]["phase"] == "Running"  # not restarted
    finally:
        repository("load")
    wait_for(lambda: pod_ready(deployed, name), timeout=60, what="the pod Ready again")
    wait_for(lambda: ip in ready_addresses(deployed), timeout=30, what="the endpoint ready again")
    wait_for(lambda: serving(deployed), timeout=60, what="the ModelDeployment Ready again")


def new_pods_alone(deployed: Deployed, before: set[str]) -> bool:
    pods = serving(deployed)
    return bool(pods) and not before & {p["metadata"]["name"] for p in pods}


def test_no_request_fails_through_a_blue_green_switch(deployed: Deployed) -> None:
    """The old revision's pods keep answering (preStop) while kube-proxy moves the Service."""
    before = {p["metadata"]["name"] for p in deployed.model_pods()}
    traffic = TrafficGenerator(
        deployed.cluster, deployed.namespace, NAME, NAME, deployed.model.X,
        rate=20.0, through_service=True,
    ).start()  # fmt: skip
    try:
        wait_for(
            lambda: traffic.stats.ok >= 40, timeout=60, what="traffic answered through the Service"
        )
        started = time.monotonic()
        config = {"E2E_TWEAK": secrets.token_hex(2)}  # a tweak: new pods, same model
        deployed.cluster.apply(
            model_deployment(f"pvc://{CLAIM}/wine-1", deployed.server_image, config),
            deployed.namespace,
        )
        wait_for(
            lambda: new_pods_alone(deployed, before),
            timeout=240,
            what="the new revision serving alone",
        )
        switched = time.monotonic() - started
        # The old pods are gone only after their preStop: keep sending until then.
        wait_for(
            lambda: not before & {p["metadata"]["name"] for p in deployed.get("pods")["items"]},
            timeout=120,
            what="the old revision's pods removed",
        )
        sent_after = traffic.stats.sent
        wait_for(
            lambda: traffic.stats.sent >= sent_after + 20,
            timeout=30,
            what="traffic after the switch",
        )
    finally:
        stats = traffic.stop()
    print(f"blue/green switch (apply to the new revision alone Ready): {switched:.1f}s; {stats}")
    assert stats.failed == 0, stats.failures
    assert stats.ok >= 100, stats
