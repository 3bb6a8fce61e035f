"""The operator under test: its installation, a real process with its own RBAC, and
``kubectl vigil``.

The operator runs as a subprocess (``.venv/bin/vigil-operator``) with a
kubeconfig holding only its ServiceAccount's token, so a missing RBAC rule
fails a test instead of hiding behind admin rights. Given ``resolv_conf``
(``cluster_resolv_conf``), it resolves names as it would in a pod, with the
cluster's DNS (a mount namespace of its own, that file on /etc/resolv.conf):
it reaches a candidate at its per-revision Service's name, as in a cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.samples import Sample

from kit import metrics
from kit.kube import ROOT, Kube
from kit.waits import wait_for
from vigil.common import objects
from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.common import free_port
from vigil.devcluster.operator_process import OPERATOR_BIN, operator_command
from vigil.plugin.requests import Request, parse_request

BIN = Path(sys.executable).parent
SIDECAR_IMAGE = "ghcr.io/vigil-dev/vigil:e2e"
LOG_DIR = ROOT / ".vigil" / "e2e-logs"


def install_vigil(cluster: ClusterClient) -> str:
    """The CRD, the operator's namespace, ServiceAccount and RBAC; returns its kubeconfig."""
    cluster.kubectl("apply", "-f", str(ROOT / "crds" / "modeldeployments.yaml"))
    cluster.wait_established("modeldeployments.vigil.dev")
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / name))
    return cluster.serviceaccount_kubeconfig("vigil-system", "vigil-operator")


def cluster_resolv_conf(local: LocalCluster, folder: Path) -> Path:
    """A resolv.conf naming the real node's cluster DNS, with a pod's search domains."""
    path = folder / "resolv.conf"
    path.write_text(
        f"nameserver {local.network.dns_service_ip}\n"
        "search svc.cluster.local cluster.local\noptions ndots:5\n"
    )
    return path


def with_resolv_conf(command: list[str], resolv_conf: Path) -> list[str]:
    """``command`` in a mount namespace of its own where ``resolv_conf`` is /etc/resolv.conf
    (the same process: unshare and sh exec it)."""
    mount = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mount,
            str(resolv_conf), *command]  # fmt: skip


class OperatorReadings:
    """What a test reads of an operator, wherever it runs: its metrics and its log."""

    def metrics_url(self) -> str:
        raise NotImplementedError

    def log(self) -> str:
        raise NotImplementedError

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url(), timeout=5) as response:
            return str(response.read().decode())

    def samples(self, name: str, /, **labels: str) -> list[Sample]:
        """The operator's samples named ``name`` whose labels include ``labels``."""
        return metrics.samples(self.metrics_text(), name, **labels)

    def total(self, name: str, /, **labels: str) -> float:
        """The sum of those samples (0 when there is none)."""
        return sum(sample.value for sample in self.samples(name, **labels))

    def wait_total(self, name: str, expected: float, /, timeout: float = 15, **labels: str) -> None:
        """Until those samples sum to ``expected``. The operator moves its counters and
        phase gauges once its status write has returned (after clearing a request
        annotation, for a rollout's outcome): a test that saw the status can be early."""
        wait_for(
            lambda: self.total(name, **labels) == expected,
            timeout=timeout,
            what=lambda: f"{name}{labels} to sum to {expected}: {self.samples(name, **labels)}",
        )

    def value(self, name: str, /, **labels: str) -> float:
        """The value of the one sample named ``name`` with ``labels``."""
        values = [sample.value for sample in self.samples(name, **labels)]
        assert len(values) == 1, f"{name}{labels}: {values}"
        return values[0]

    def assert_no_errors(self) -> None:
        log = self.log()
        for marker in ("Traceback", "Patching failed with inconsistencies", "Forbidden"):
            assert marker not in log, f"operator log shows {marker!r}:\n{log}"


class OperatorProcess(OperatorReadings):
    """A real `vigil-operator` process watching some namespaces with its own RBAC."""

    def __init__(
        self,
        kubeconfig: str,
        namespaces: list[str],
        log_dir: Path = LOG_DIR,
        extra_args: Sequence[str] = (),
        resolv_conf: Path | None = None,
        sidecar_image: str = SIDECAR_IMAGE,
    ) -> None:
        if not OPERATOR_BIN.exists():
            pytest.fail(f"{OPERATOR_BIN} is missing: run `make install` first", pytrace=False)
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.namespace = namespaces[0]
        self.extra_args = tuple(extra_args)
        self.resolv_conf = resolv_conf
        self.sidecar_image = sidecar_image
        self.standalone = True
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.namespace}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.metrics_port = free_port()
        health_port = free_port()
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = operator_command(
            self.namespaces,
            sidecar_image=self.sidecar_image,
            metrics_port=self.metrics_port,
            health_port=health_port,
            standalone=self.standalone,
            extra_args=self.extra_args,
        )
        if self.resolv_conf is not None:
            command = with_resolv_conf(command, self.resolv_conf)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            lambda: self._up(f"http://127.0.0.1:{health_port}/healthz"),
            timeout=30,
            what=f"the operator's /healthz (log: {self.log_path})",
        )

    def _up(self, url: str) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(
                f"vigil-operator exited with {self.process.returncode}:\n{self.log()}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is cleaned up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        """The end of this start's log."""
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def gate_values(self, gate: str = "agreement", revision: str | None = None) -> list[float]:
        """Values of a gate the operator judged (its rollout log lines list every gate);
        ``revision`` keeps only the lines about that candidate."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        text = "\n".join(line for line in lines if revision is None or f" of {revision}: " in line)
        found = re.findall(rf"'name': '{gate}', 'passed': \w+, 'value': ([0-9.]+)", text)
        return [float(v) for v in found]


@contextmanager
def running_operator(
    kubeconfig: str,
    namespaces: list[str],
    args: Sequence[str] = (),
    *,
    request: pytest.FixtureRequest | None = None,
    standalone: bool = True,
    resolv_conf: Path | None = None,
    sidecar_image: str = SIDECAR_IMAGE,
) -> Iterator[OperatorProcess]:
    """An operator process for the block; its log is printed if the test failed."""
    process = OperatorProcess(kubeconfig, namespaces, LOG_DIR, args, resolv_conf, sidecar_image)
    process.standalone = standalone
    process.start()
    try:
        yield process
    finally:
        process.stop()
        report = getattr(request.node, "rep_call", None) if request is not None else None
        if report is not None and report.failed:
            print(f"--- operator log ({process.log_path}) ---\n{process.log()[-20000:]}")


# -- kubectl vigil --------------------------------------------------------------------------


def plugin_env(cluster: ClusterClient) -> dict[str, str]:
    """The environment in which kubectl finds the installed plugin, for this cluster."""
    if not (BIN / "kubectl-vigil").is_file():
        pytest.fail(f"kubectl-vigil is not installed in {BIN} (pip install -e .)", pytrace=False)
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": cluster.kubeconfig,
        "VIGIL_KUBECTL": cluster.kubectl_binary,
    }


def run_plugin(cluster: ClusterClient, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubectl vigil ARGS``: the real kubectl finds kubectl-vigil on PATH and runs it."""
    return subprocess.run(
        [cluster.kubectl_binary, "vigil", *args],
        env=plugin_env(cluster),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubectl_vigil(kube: Kube, *args: str, name: str = "wine") -> subprocess.CompletedProcess[str]:
    """``kubectl vigil ARGS NAME -n <namespace>``, which must succeed."""
    result = run_plugin(kube.cluster, *args, name, "-n", kube.namespace)
    assert result.returncode == 0, result.stderr
    return result


def wait_request_cleared(kube: Kube, name: str = "wine", timeout: float = 30) -> None:
    """Until a person's request annotation is gone: the operator answers it in status
    first, then removes it (a patch that tests the request's id)."""

    def pending() -> Request | None:
        return parse_request(objects.body(kube.get("md", name) or {}).meta.annotations)

    wait_for(
        lambda: pending() is None,
        timeout=timeout,
        what=lambda: f"the request annotation of {name} cleared (still {pending()!r})",
    )
