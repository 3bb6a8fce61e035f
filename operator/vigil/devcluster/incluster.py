"""What runs on the local cluster's real node as it would on any cluster.

- :class:`InClusterOperator`: the operator as a Deployment, from
  ``manifests/overlays/local`` (its image, its ServiceAccount, only its
  RBAC), rendered by ``kubectl kustomize`` with the image built here. In
  another namespace than the overlay's (a test's own), kustomize moves the
  namespaced objects there and suffixes the cluster-wide ones (ClusterRole
  and binding) with the namespace's name, so two copies never share one.
- :func:`real_node_namespace`: a namespace whose pods all land on the real
  node (PodSecurity ``restricted`` enforced), by the overlay's annotations
  for the API server's PodNodeSelector and PodTolerationRestriction.
- :func:`local_volume`: a ``local`` PersistentVolume on the real node's file
  system (a folder of :func:`volume_dir`, or any readable one) and the claim
  bound to it, for models named ``pvc://<claim>/<path>``.

Development tooling only: never shipped to clusters.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vigil.common import kube_yaml
from vigil.devcluster.cluster import (
    ClusterClient,
    ClusterError,
    LocalCluster,
    existing_kubeconfig,
    repo_root,
)
from vigil.devcluster.images import ImageArchive, ensure_images
from vigil.devcluster.node import NODE_NAME

OVERLAY = Path("manifests") / "overlays" / "local"
#: The overlay's own namespace (base's) and the image tag it leaves to us.
OVERLAY_NAMESPACE = "vigil-system"
PLACEHOLDER_REPOSITORY = "vigil.local/vigil"
PLACEHOLDER_IMAGE = f"{PLACEHOLDER_REPOSITORY}:local"
OPERATOR = "vigil-operator"
HEALTH_PORT = 8080  # base's --health-port
#: What every pod of a namespace on the real node gets: base's PodSecurity level.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def running_real_node() -> LocalCluster:
    """This checkout's local cluster, which must run its real node (ClusterError: why not)."""
    if existing_kubeconfig() is not None:
        raise ClusterError("the real node is the local cluster's (VIGIL_KUBECONFIG is set)")
    cluster = LocalCluster(real_node=True)
    if not (cluster._read_state() or {}).get("real_node"):
        raise ClusterError(
            "the local cluster has no real node (started with VIGIL_REAL_NODE=0?): "
            "make cluster-down, then run again without VIGIL_REAL_NODE=0"
        )
    return cluster


def _overlay_dir() -> Path:
    root = repo_root()
    if root is None or not (root / OVERLAY).is_dir():
        raise ClusterError(f"{OVERLAY} not found: run from a Vigil checkout")
    return root / OVERLAY


def real_node_annotations() -> dict[str, str]:
    """The overlay's namespace annotations that pin a namespace's pods to the real node."""
    patch = yaml.safe_load((_overlay_dir() / "namespace-patch.yaml").read_text())
    return {str(k): str(v) for k, v in patch["metadata"]["annotations"].items()}


def real_node_namespace(name: str, labels: dict[str, str] | None = None) -> str:
    """A Namespace manifest: its pods on the real node, PodSecurity ``restricted`` enforced."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {**RESTRICTED, **(labels or {})},
                "annotations": real_node_annotations(),
            },
        }
    )


def volume_dir(local: LocalCluster, name: str) -> Path:
    """A folder for a local volume in the cluster's state folder (removed with the cluster;
    the node's mounts of it are unmounted by its teardown)."""
    folder = local.state_dir / "volumes" / name
    folder.mkdir(parents=True, exist_ok=True)
    for path in (folder, folder.parent):
        path.chmod(0o755)
    return folder


def local_volume(name: str, path: Path, *, namespace: str, size: str = "1Gi") -> str:
    """A ``local`` PersistentVolume at ``path`` on the real node, and the claim ``name``
    in ``namespace`` bound to it (both named ``name``; the volume's name is suffixed with
    the namespace, volumes being cluster-wide). Mounted read-only by model pods.

    The folder must be readable by the pods' users (MLServer's is 1000): every folder
    above it must let others through.
    """
    path = path.resolve()
    blocked = [p for p in (path, *path.parents) if not os.stat(p).st_mode & 0o001]
    if blocked:
        raise ClusterError(
            f"{blocked[-1]} does not let other users through (mode "
            f"{oct(os.stat(blocked[-1]).st_mode & 0o777)}): the pods' non-root users cannot "
            f"read {path}; chmod o+x it or move the checkout"
        )
    volume = f"{name}-{namespace}"
    storage_class = "vigil-local"
    return kube_yaml.dump_all(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": volume, "labels": {"vigil.dev/volume": volume}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": storage_class,
                    "local": {"path": str(path)},
                    # A local volume is where its node is: pods using it go there.
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": [NODE_NAME],
                                        }
                                    ]
                                }
                            ]
                        }
                    },
                    # Bound to this claim only, at once (no provisioner, no waiting).
                    "claimRef": {"namespace": namespace, "name": name},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": storage_class,
                    "volumeName": volume,
                    "resources": {"requests": {"storage": size}},
                },
            },
        ]
    )


@dataclass(frozen=True)
class InClusterOperator:
    """The operator Deployment of ``manifests/overlays/local`` in ``namespace``,
    watching ``watch`` (the overlay's own: vigil-demo)."""

    cluster: ClusterClient
    namespace: str = OVERLAY_NAMESPACE
    watch: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        return "" if self.namespace == OVERLAY_NAMESPACE else f"-{self.namespace}"

    @property
    def name(self) -> str:
        return OPERATOR + self.suffix

    def render(self, image: str) -> list[dict[str, Any]]:
        """The overlay's objects, in this namespace, with ``image`` for the operator and
        its sidecars and ``watch`` as the namespaces it serves."""
        name, _, tag = image.rpartition(":")
        with tempfile.TemporaryDirectory(prefix="vigil-operator-") as work:
            kustomization: dict[str, Any] = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(_overlay_dir(), work)],
                "images": [{"name": PLACEHOLDER_REPOSITORY, "newName": name, "newTag": tag}],
            }
            if self.suffix:
                kustomization |= {"namespace": self.namespace, "nameSuffix": self.suffix}
            (Path(work) / "kustomization.yaml").write_text(kube_yaml.dump(kustomization))
            rendered = self.cluster.kubectl("kustomize", work).stdout
        objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            # kustomize sets images, not the variable that names the sidecar's.
            for variable in container.get("env", []):
                if variable.get("value") == PLACEHOLDER_IMAGE:
                    variable["value"] = image
            if self.watch:
                command = [a for a in container["command"] if not a.startswith("--namespace=")]
                container["command"] = command + [f"--namespace={ns}" for ns in self.watch]
        return objects

    def deploy(
        self, local: LocalCluster, archive: ImageArchive | None = None, timeout: float = 180
    ) -> ImageArchive:
        """Build (or find) the image unless given, import it into the real node, apply,
        wait until the operator's pod is Ready; return the image."""
        archive = archive or ensure_images(["vigil"], local.log)["vigil"]
        local.node().load_images([archive])
        with self.cluster.setup_lock():  # the CRD, a ClusterRole: created once
            self.cluster.apply(kube_yaml.dump_all(self.render(archive.ref)))
        self.wait_ready(timeout)
        return archive

    def wait_ready(self, timeout: float = 180) -> None:
        result = self.cluster.kubectl(
            "rollout", "status", f"deployment/{self.name}", "-n", self.namespace,
            f"--timeout={timeout:.0f}s", check=False, timeout=timeout + 30,
        )  # fmt: skip
        # Ready is only "started" (no readiness probe): kopf runs once /healthz answers.
        deadline = time.monotonic() + timeout
        while result.returncode == 0 and not self._answers_healthz():
            if time.monotonic() > deadline:
                result = subprocess.CompletedProcess([], 1, "", "its /healthz never answered")
            time.sleep(1)
        if result.returncode != 0:
            pods = self.cluster.kubectl(
                "get", "pods", "-n", self.namespace, "-o", "wide", check=False
            ).stdout
            raise ClusterError(
                f"the in-cluster operator {self.namespace}/{self.name} is not Ready after "
                f"{timeout:.0f}s: {result.stderr.strip() or result.stdout.strip()}\n{pods}"
                f"(kubectl logs -n {self.namespace} deploy/{self.name})"
            )

    def _answers_healthz(self) -> bool:
        """The operator's liveness endpoint answers at its pod IP (this machine routes pods)."""
        ip = self.pod()["status"].get("podIP")
        try:
            with urllib.request.urlopen(f"http://{ip}:{HEALTH_PORT}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def pod(self) -> dict[str, Any]:
        """The operator's running pod (the newest, if one is terminating)."""
        deadline = time.monotonic() + 60
        while True:
            pods = [
                p
                for p in self.cluster.get_json(
                    "pods", "-n", self.namespace, "-l", "app.kubernetes.io/component=operator"
                )["items"]  # type: ignore[union-attr]
                if not p["metadata"].get("deletionTimestamp")
            ]
            if pods:
                return dict(max(pods, key=lambda p: p["metadata"]["creationTimestamp"]))
            if time.monotonic() > deadline:
                raise ClusterError(f"no operator pod in {self.namespace}")
            time.sleep(0.5)

    def remove_cluster_objects(self) -> None:
        """Its ClusterRole and binding (the namespaced objects go with their namespace)."""
        for kind in ("clusterrolebinding", "clusterrole"):
            self.cluster.kubectl("delete", kind, self.name, "--ignore-not-found", check=False)
