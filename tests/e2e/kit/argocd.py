"""Argo CD's application controller and repo-server, real, as host processes.

``hack/build-argocd.sh`` (``make argocd``) builds Argo CD's one binary from its Go
module at a pinned version and caches it with Argo CD's CRDs of the same version.
The two components an Application needs run here as processes of this machine, as
Flux's do (``kit/flux.py``): the repo-server (clones the Git repository on 127.0.0.1,
renders the manifests) and the application controller (compares, syncs, and judges
health with the Lua health checks of ``argocd-cm``), with Redis (Debian's
``redis-server``) as their cache. ``ARGOCD_FAKE_IN_CLUSTER`` makes the in-cluster
destination (``https://kubernetes.default.svc``) the cluster of the kubeconfig,
as Argo CD's own Procfile does for its local runs. The API server and UI are not run:
nothing here needs them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit.gitserver import GitRepository
from kit.hostprocesses import HostControllers, built, start_logged, wait_answering
from kit.kube import ROOT
from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient
from vigil.devcluster.common import free_port
from vigil.devcluster.packages import PackageError, ensure_packages, find

#: Argo CD's own namespace: its settings, the AppProject and the Applications.
NAMESPACE = "argocd"
#: How often the controller compares every Application with Git (Argo CD's default: 120 s).
RESYNC_SECONDS = 5
HEALTH_PATCH = ROOT / "manifests" / "gitops" / "argocd" / "argocd-cm-patch.yaml"


def argocd_binaries() -> Path:
    """The folder with ``argocd`` and its CRDs, built (once) by hack/build-argocd.sh."""
    return built("build-argocd.sh", "Argo CD", "argocd", ["argocd"])


def redis_binary() -> str:
    """Debian's redis-server (Argo CD's components cache in Redis), installed when missing."""
    try:
        ensure_packages({"redis-server": "redis-server"})
    except PackageError as error:
        pytest.fail(f"Argo CD needs Redis: {error}", pytrace=False)
    redis = find("redis-server")
    assert redis is not None
    return redis


def install_argocd(cluster: ClusterClient, folder: Path) -> None:
    """Argo CD's CRDs (server-side: the Application CRD is too large for a last-applied
    annotation), its namespace, ``argocd-cm`` with Vigil's health check and diff settings
    (the project's patch, as a user merges it), ``argocd-secret`` and the ``default``
    AppProject (which Argo CD's API server would create)."""
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in sorted(folder.glob("crds/*.yaml")):
        args += ["-f", str(path)]
    cluster.kubectl(*args)
    cluster.wait_established("applications.argoproj.io", "appprojects.argoproj.io")
    settings = yaml.safe_load(HEALTH_PATCH.read_text())["data"]
    labels = {"app.kubernetes.io/part-of": "argocd"}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": NAMESPACE, "labels": labels},
            "data": settings,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": labels},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-",
        input=kube_yaml.dump_all(objects),
    )  # fmt: skip


#: Argo CD's running components (the repo-server and the application controller).
ArgoCD = HostControllers


@contextmanager
def running_argocd(cluster: ClusterClient, folder: Path, work: Path) -> Iterator[ArgoCD]:
    """Redis, the repo-server and the application controller against ``cluster``; logs
    and Argo CD's data folders under ``work``."""
    for part in ("tls", "ssh", "gpg", "tmp"):
        (work / part).mkdir(parents=True, exist_ok=True)
    redis_port, repo_port = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        # The repo-server's helper scripts (hack/build-argocd.sh puts them beside argocd).
        "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
        "ARGOCD_FAKE_IN_CLUSTER": "true",
        "ARGOCD_TLS_DATA_PATH": str(work / "tls"),
        "ARGOCD_SSH_DATA_PATH": str(work / "ssh"),
        "ARGOCD_GNUPGHOME": str(work / "gpg"),
        "ARGOCD_GPG_ENABLED": "false",
        "TMPDIR": str(work / "tmp"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    redis = f"127.0.0.1:{redis_port}"
    common = ["--loglevel", "info", "--logformat", "text", "--redis", redis]
    components: dict[str, list[str]] = {
        "argocd-repo-server": [
            "--address", "127.0.0.1", "--port", str(repo_port),
            "--metrics-address", "127.0.0.1",
            # How long a branch's resolved commit is reused (default 3m): Git's new commits
            # reach the controller's next comparison, as Flux's 2 s source interval does.
            "--revision-cache-expiration", f"{RESYNC_SECONDS}s",
        ],
        "argocd-application-controller": [
            "--namespace", NAMESPACE,
            "--repo-server", f"127.0.0.1:{repo_port}",
            "--app-resync", str(RESYNC_SECONDS),
            "--app-resync-jitter", "0",
            # Each resource's health in the Application's status (v3 keeps it in Redis for
            # its API server, which is not run here): where the tests read health.lua's word.
            "--persist-resource-health",
        ],
    }  # fmt: skip
    logs: dict[str, Path] = {}
    metrics: dict[str, str] = {}
    with ExitStack() as stack:
        logs["redis"] = work / "redis.log"
        redis_server = [
            redis_binary(), "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
            "--appendonly", "no", "--dir", str(work),
        ]  # fmt: skip
        start_logged(stack, redis_server, logs["redis"])
        for name, args in components.items():
            metrics_port = free_port()
            logs[name] = work / f"{name}.log"
            process = start_logged(
                stack,
                [str(folder / "argocd"), *common, *args, "--metrics-port", str(metrics_port)],
                logs[name],
                {**env, "ARGOCD_BINARY_NAME": name},
            )
            metrics[name] = f"http://127.0.0.1:{metrics_port}/metrics"
            wait_answering(name, metrics[name], process, logs[name])
        yield ArgoCD(logs, metrics)


#: The example's Applications (``manifests/gitops/argocd``); the model's is ``wine``.
EXAMPLE = ROOT / "manifests" / "gitops" / "argocd" / "application.yaml"


def example_application(repository_url: str, namespace: str, path: str) -> dict[str, Any]:
    """The example's model Application, with what a test changes: its name (the test's
    namespace: Applications live in Argo CD's), the repository, the model's path (plain
    YAML: this machine has no kustomize binary for the repo-server to run) and the
    destination namespace."""
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    (application,) = [d for d in documents if d["metadata"]["name"] == "wine"]
    application["metadata"]["name"] = namespace
    source = application["spec"]["source"]
    source.update(repoURL=repository_url, targetRevision="main", path=path)
    application["spec"]["destination"]["namespace"] = namespace
    return application


@dataclass
class Application:
    """One Application in Argo CD's namespace, read through the cluster."""

    cluster: ClusterClient
    name: str

    def get(self) -> dict[str, Any]:
        try:
            return self.cluster.get("applications.argoproj.io", self.name, "-n", NAMESPACE) or {}
        except subprocess.CalledProcessError:
            return {}

    def view(self) -> AppView:
        return AppView.of(self.get())

    def delete(self) -> None:
        """The Application alone: the example has no resources finalizer, so what it
        applied stays for the namespace's own deletion."""
        self.cluster.kubectl(
            "delete", "applications.argoproj.io", self.name, "-n", NAMESPACE, "--timeout=60s",
            check=False,
        )  # fmt: skip


@dataclass
class ArgoGitOps:
    """A test's Git repository and the Application that follows it."""

    repository: GitRepository
    application: Application


@dataclass(frozen=True)
class AppView:
    """What Argo CD says of an Application: sync status and revision, health and its
    message (v3: the resource that caused it), the ModelDeployment's own health and
    message in the resource tree (what health.lua returned), the last sync operation's
    phase, and how many syncs it has recorded."""

    sync: str
    revision: str
    health: str
    health_message: str
    model_health: str
    model_message: str
    operation: str
    syncs: int
    #: When the controller last compared the Application with Git (RFC 3339).
    reconciled_at: str

    @classmethod
    def of(cls, application: Mapping[str, Any]) -> AppView:
        status = application.get("status") or {}
        sync = status.get("sync") or {}
        health = status.get("health") or {}
        operation = status.get("operationState") or {}
        model = next(
            (
                resource.get("health") or {}
                for resource in status.get("resources") or []
                if (resource.get("group"), resource.get("kind")) == ("vigil.dev", "ModelDeployment")
            ),
            {},
        )
        return cls(
            sync=str(sync.get("status", "")),
            revision=str(sync.get("revision", "")),
            health=str(health.get("status", "")),
            health_message=str(health.get("message", "")),
            model_health=str(model.get("status", "")),
            model_message=str(model.get("message", "")),
            operation=str(operation.get("phase", "")),
            syncs=len(status.get("history") or []),
            reconciled_at=str(status.get("reconciledAt", "")),
        )

    def at(self, commit: str, health: str) -> bool:
        """Synced to ``commit`` and of ``health``."""
        return self.sync == "Synced" and self.revision == commit and self.health == health
