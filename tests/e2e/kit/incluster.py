"""The operator in the cluster and model pods on the real node, as on a user's cluster.

- :class:`RealNamespace`: a test's namespace pinned to the real node (PodSecurity
  ``restricted``), the locally built images imported into the node, and a local
  PersistentVolume (claim ``models``) whose folder models are trained into, so a
  ModelDeployment names them ``pvc://models/<folder>``; :meth:`RealNamespace.place`
  turns the kit's manifests into that.
- :class:`InClusterOperator`: the Deployment of ``manifests/overlays/local`` (its
  image, its ServiceAccount, only its RBAC) in a namespace of its own (``op-<suffix>``), watching
  the test's namespace; it offers what ``kit.operator.OperatorProcess`` does
  (``start``, ``kill``, metrics, log), so a test can take either. ``kill`` kills
  the pod as a crash would: its process SIGKILLed, the pod force-deleted, and
  the Deployment's next pod started.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kit import modeldeployment
from kit.kube import Kube
from kit.modeldeployment import SERVER_RESOURCES, ModelStore, Setup, serve
from kit.operator import OperatorReadings
from kit.status import status
from kit.traffic import LiveTraffic
from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient, ClusterError
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.images import ImageArchive, ensure_images
from vigil.devcluster.incluster import (
    InClusterOperator as OverlayOperator,
)
from vigil.devcluster.incluster import (
    local_volume,
    real_node_namespace,
    volume_dir,
)
from vigil.devcluster.models import TrainedModel, train_wine

CLAIM = "models"
OPERATOR_METRICS_PORT = 9090  # base's --metrics-port


@dataclass(frozen=True)
class RealNamespace:
    """A namespace whose pods run on the real node, with a model volume and the images."""

    cluster: ClusterClient
    local: LocalCluster
    name: str
    images: Mapping[str, ImageArchive]
    #: The volume's folder on this machine: train models into it.
    folder: Path

    @property
    def server_image(self) -> str:
        return self.images["mlserver-sklearn"].ref

    @property
    def vigil_image(self) -> str:
        return self.images["vigil"].ref

    def uri(self, model: TrainedModel) -> str:
        """``pvc://models/<path>`` of a model trained into the volume's folder."""
        return f"pvc://{CLAIM}/{model.folder.relative_to(self.folder)}"

    def place(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """A kit ModelDeployment served from the volume by the image built here: the
        model's readiness (not only the server's), a read-only root, requests and limits."""
        placed = copy.deepcopy(dict(document))
        spec = placed["spec"]
        folder = Path(spec["model"]["uri"].removeprefix("file://"))
        spec["model"]["uri"] = f"pvc://{CLAIM}/{folder.relative_to(self.folder)}"
        spec["server"] = {
            **spec["server"],
            "image": self.server_image,
            "readinessPath": f"/v2/models/{spec['model']['name']}/ready",
            "readOnlyRootFilesystem": True,
            "resources": SERVER_RESOURCES,
        }
        return placed

    def manifest(
        self, model: TrainedModel, steps: list[dict[str, Any]] | None = None, **options: Any
    ) -> dict[str, Any]:
        """``kit.modeldeployment.manifest``, placed here."""
        return self.place(modeldeployment.manifest(model, steps, **options))

    def deploy(
        self, kube: Kube, steps: list[dict[str, Any]] | None = None, **options: Any
    ) -> Setup:
        """Stable wine model v1 serving on every replica, live traffic flowing through its
        Service (ClusterIP, kube-proxy), as a client's would. ``options`` go to ``manifest``."""
        started = time.monotonic()
        stable = train_wine(self.folder / "wine-1", version="1", seed=0)
        endpoint = serve(kube, stable, self.manifest(stable, steps, **options))
        traffic = LiveTraffic(
            kube.cluster, kube.namespace, endpoint.service, endpoint.model, stable.X,
            rate=15.0, seed=3, through_service=True,
        )  # fmt: skip
        traffic.start()
        revision = str(status(kube)["stable"]["revision"])
        store = ModelStore(self.folder, self.server_image)
        return Setup(kube, stable, endpoint, store, traffic, revision, started)


@contextmanager
def real_namespace(
    cluster: ClusterClient, local: LocalCluster, name: str
) -> Iterator[RealNamespace]:
    """Pin ``name`` (created already) to the real node, import the images, make the volume;
    remove the volume afterwards (the namespace goes with its own fixture)."""
    folder = volume_dir(local, name)
    try:
        images = ensure_images(["vigil", "mlserver-sklearn"])
        local.node().load_images(list(images.values()))
        cluster.apply(real_node_namespace(name, {"vigil.dev/e2e": "true"}))
        cluster.apply(local_volume(CLAIM, folder, namespace=name))
        yield RealNamespace(cluster, local, name, images, folder)
    finally:
        cluster.kubectl("delete", "pv", f"{CLAIM}-{name}", "--wait=false", check=False)
        shutil.rmtree(folder, ignore_errors=True)


def service_for_pods(space: RealNamespace, name: str, port: int) -> str:
    """A Service ``name`` in the namespace whose one endpoint is this machine's ``port`` at
    the end of the node link (a server listening there, such as the tests' Prometheus):
    pods reach it by name, as a user's pods reach an in-cluster one. Its URL for pods."""
    host = space.local.network.host_ip
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }
    space.cluster.apply(kube_yaml.dump_all([service, endpoints]), namespace=space.name)
    return f"http://{name}.{space.name}.svc:{port}"


def pod_pids(uid: str, command: str) -> list[int]:
    """Pids of this machine's processes in pod ``uid``'s cgroups running ``command``
    (the real node's containers share the machine's process table)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if f"/pod{uid}/" not in (entry / "cgroup").read_text():
                continue
            if command.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def kill_container(pod: Mapping[str, Any], command: str) -> list[int]:
    """SIGKILL the processes of ``pod`` that run ``command`` (a crash: nothing cleaned up);
    their pids. The kubelet restarts the container, as after any crash."""
    pids = pod_pids(str(pod["metadata"]["uid"]), command)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


class InClusterOperator(OperatorReadings):
    """The manifests' operator Deployment in ``op-<suffix>``, watching the namespace
    ``<name>-<suffix>`` (the overlay's Service name, with the namespace's, must stay
    within 63 characters)."""

    def __init__(self, space: RealNamespace) -> None:
        self.space = space
        suffix = space.name.rsplit("-", 1)[-1]
        self.overlay = OverlayOperator(space.cluster, namespace=f"op-{suffix}", watch=(space.name,))
        self.namespace = space.name
        #: Pods started so far (1 after ``start``; each ``kill`` and ``start`` adds one).
        self.starts = 0
        self._pod: dict[str, Any] = {}

    @property
    def pod_name(self) -> str:
        return str(self._pod["metadata"]["name"])

    def start(self) -> None:
        """Deploy it (the first time) or wait for the Deployment's next pod; return once its
        /healthz answers."""
        try:
            if self.starts == 0:
                self.overlay.deploy(self.space.local, self.space.images["vigil"])
            else:
                self.overlay.wait_ready()
        except ClusterError as error:
            pytest.fail(str(error), pytrace=False)
        self.starts += 1
        self._pod = self.overlay.pod()

    def kill(self) -> None:
        """SIGKILL the operator in its pod and force-delete the pod, so the next pod starts
        at once (no crash back-off) and never beside a live one."""
        pod = self.overlay.pod()
        killed = kill_container(pod, "vigil-operator")
        assert killed, f"no vigil-operator process in pod {pod['metadata']['name']}"
        self.space.cluster.kubectl(
            "delete", "pod", pod["metadata"]["name"], "-n", self.overlay.namespace,
            "--grace-period=0", "--force", "--wait=false",
        )  # fmt: skip

    def stop(self) -> None:
        """Remove it: its namespace and its cluster-wide RBAC."""
        self.space.cluster.kubectl(
            "delete", "namespace", self.overlay.namespace, "--wait=false", check=False
        )
        self.overlay.remove_cluster_objects()

    def log(self) -> str:
        """The end of the current pod's log."""
        result = self.space.cluster.kubectl(
            "logs", self.pod_name, "-n", self.overlay.namespace, "--tail=2000", check=False
        )
        return (result.stdout + result.stderr)[-20000:]

    def metrics_url(self) -> str:
        ip = self.overlay.pod()["status"].get("podIP")
        return f"http://{ip}:{OPERATOR_METRICS_PORT}/metrics"


@contextmanager
def running_incluster_operator(
    space: RealNamespace, request: pytest.FixtureRequest | None = None
) -> Iterator[InClusterOperator]:
    """The in-cluster operator for the block; its log is printed if the test failed."""
    operator = InClusterOperator(space)
    try:
        operator.start()
        yield operator
    finally:
        report = getattr(request.node, "rep_call", None) if request is not None else None
        if report is not None and report.failed and operator.starts:
            print(f"--- operator log (pod {operator.pod_name}) ---\n{operator.log()}")
        operator.stop()
