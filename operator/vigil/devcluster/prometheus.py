"""A real Prometheus (built from its Go module, see below) for e2e tests and the demo.

It runs on 127.0.0.1 outside the cluster and finds the sidecars exactly as
the project's manifests tell an in-cluster Prometheus to
(``manifests/monitoring/prometheus-scrape-config.yaml``, Kubernetes service
discovery with role pod); only the API server address and credentials are
added, since it is not in a pod. Its identity is a ServiceAccount token bound
to ``manifests/monitoring/prometheus-rbac.yaml``'s ClusterRole, so discovery
works with the RBAC the project documents and nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vigil.common import kube_yaml
from vigil.devcluster.cluster import (
    ClusterClient,
    ClusterError,
    build_binaries,
    cluster_endpoint,
    repo_root,
)
from vigil.devcluster.common import free_port

MONITORING_NAMESPACE = "vigil-monitoring"
SERVICE_ACCOUNT = "prometheus"


def prometheus_binary() -> str:
    """Prometheus built by hack/build-cluster.sh (with Kubernetes service discovery).

    Debian's package (2.42.0+ds) lacks Kubernetes service discovery, so it
    cannot discover pods the way the manifests configure it.
    """
    binary = build_binaries() / "prometheus"
    if not binary.is_file():
        raise ClusterError(f"{binary} missing: run hack/build-cluster.sh")
    return str(binary)


def scrape_configs(
    api_server: str,
    ca_file: Path,
    token_file: Path,
    scrape_interval: str,
    namespaces: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The project's scrape job, pointed at an API server from outside the cluster;
    discovering pods in ``namespaces`` only, when given."""
    root = repo_root()
    if root is None:
        raise ClusterError("manifests/monitoring/prometheus-scrape-config.yaml not found")
    jobs: list[dict[str, Any]] = yaml.safe_load(
        (root / "manifests" / "monitoring" / "prometheus-scrape-config.yaml").read_text()
    )
    for job in jobs:
        job["scrape_interval"] = scrape_interval
        for sd in job.get("kubernetes_sd_configs", []):
            sd["api_server"] = api_server
            sd["tls_config"] = {"ca_file": str(ca_file)}
            sd["authorization"] = {"credentials_file": str(token_file)}
            if namespaces:
                sd["namespaces"] = {"names": list(namespaces)}
    return jobs


class LocalPrometheus:
    """Start, stop and query one Prometheus process."""

    def __init__(
        self,
        cluster: ClusterClient,
        state_dir: Path,
        port: int | None = None,
        scrape_interval: str = "2s",
        extra_scrape_configs: list[dict[str, Any]] | None = None,
        listen_host: str = "127.0.0.1",
        namespaces: Sequence[str] = (),
    ) -> None:
        """``listen_host``: where it serves queries (the real node's pods reach the
        machine's end of the node link, never its loopback). ``namespaces``: the only ones
        whose pods it scrapes (every one when empty): a scrape is a read of a sidecar's
        ``/metrics``, which a stopping pod's label handoff counts from (ground-truth design)."""
        self.cluster = cluster
        self.listen_host = listen_host
        self.state_dir = state_dir
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.extra_scrape_configs = extra_scrape_configs or []
        self.namespaces = tuple(namespaces)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "prometheus.log"

    def _grant_discovery(self) -> tuple[Path, Path]:
        """A ServiceAccount with the documented discovery RBAC; its token and the CA."""
        root = repo_root()
        if root is None:
            raise ClusterError("manifests/monitoring/prometheus-rbac.yaml not found")
        # Cluster-wide objects every Prometheus of this cluster shares: created by one
        # process at a time (parallel test workers each start one).
        with self.cluster.setup_lock():
            self._apply_discovery_objects(root)
        token = self.cluster.kubectl(
            "create", "token", SERVICE_ACCOUNT, "-n", MONITORING_NAMESPACE, "--duration=24h"
        ).stdout.strip()
        token_file = self.state_dir / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        _, ca_data = cluster_endpoint(Path(self.cluster.kubeconfig))
        ca_file = self.state_dir / "ca.crt"
        ca_file.write_bytes(base64.b64decode(ca_data))
        return token_file, ca_file

    def _apply_discovery_objects(self, root: Path) -> None:
        """The monitoring namespace, Prometheus' ServiceAccount, the documented discovery
        ClusterRole and its binding."""
        self.cluster.apply(
            f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {MONITORING_NAMESPACE}}}\n"
        )
        self.cluster.apply(
            f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {SERVICE_ACCOUNT}}}\n",
            namespace=MONITORING_NAMESPACE,
        )
        self.cluster.apply((root / "manifests" / "monitoring" / "prometheus-rbac.yaml").read_text())
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "vigil-prometheus-discovery"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "vigil-prometheus-discovery",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": SERVICE_ACCOUNT,
                    "namespace": MONITORING_NAMESPACE,
                }
            ],
        }
        self.cluster.apply(json.dumps(binding))

    def start(self, timeout: float = 30) -> None:
        binary = prometheus_binary()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token_file, ca_file = self._grant_discovery()
        server, _ = cluster_endpoint(Path(self.cluster.kubeconfig))
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": scrape_configs(
                server, ca_file, token_file, self.scrape_interval, self.namespaces
            )
            + self.extra_scrape_configs,
        }
        config_path = self.state_dir / "prometheus.yml"
        config_path.write_text(kube_yaml.dump(config, sort_keys=False))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.state_dir / 'data'}",
                    f"--web.listen-address={self.listen_host}:{self.port}",
                    "--web.enable-lifecycle",
                    "--storage.tsdb.retention.time=2h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ClusterError(
                    f"prometheus exited at start (code {self.process.returncode}); "
                    f"see {self.log_path}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise ClusterError(f"prometheus not ready within {timeout:.0f}s; see {self.log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the data folder stays for post-mortems."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, timeout: float = 30) -> None:
        self.stop()
        self.start(timeout=timeout)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; raises on an error answer."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ClusterError(f"query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as response:
            return list(json.loads(response.read())["data"]["activeTargets"])
