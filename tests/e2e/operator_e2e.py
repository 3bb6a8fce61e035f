"""Helpers for the operator's e2e tests: kubectl per namespace, a real operator process.

The operator runs as a subprocess (`.venv/bin/vigil-operator`) with a
kubeconfig holding only its ServiceAccount's token, so a missing RBAC rule
fails a test instead of hiding behind admin rights.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigil.devcluster import ClusterClient

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_BIN = Path(sys.executable).parent / "vigil-operator"
SIDECAR_IMAGE = "ghcr.io/vigil-dev/vigil:e2e"


def wait_for(
    check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.5, what: str = ""
) -> Any:
    """Poll until `check()` returns something truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Kube:
    """kubectl helpers bound to one namespace."""

    def __init__(self, cluster: ClusterClient, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def run(self, *args: str, input: str | None = None, check: bool = True):
        return self.cluster.kubectl(*args, "-n", self.namespace, input=input, check=check)

    def get(self, *args: str) -> dict[str, Any] | None:
        result = self.run("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {' '.join(args)}: {result.stderr}")
        return json.loads(result.stdout)

    def items(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = [kind] + (["-l", selector] if selector else [])
        return list((self.get(*args) or {}).get("items") or [])

    def apply(self, yaml_text: str) -> str:
        return self.cluster.apply(yaml_text, namespace=self.namespace)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        events = self.items("events")
        return [
            event
            for event in events
            if event.get("involvedObject", {}).get("kind") == "ModelDeployment"
            and (reason is None or event.get("reason") == reason)
        ]


class OperatorProcess:
    """A real `vigil-operator` process watching one namespace with its own RBAC."""

    def __init__(
        self,
        kubeconfig: str,
        namespaces: list[str],
        log_dir: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if not OPERATOR_BIN.exists():
            pytest.fail(f"{OPERATOR_BIN} is missing: run `make install` first", pytrace=False)
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.namespace = namespaces[0]
        self.extra_args = extra_args
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
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(OPERATOR_BIN),
                    *[arg for ns in self.namespaces for arg in ("--namespace", ns)],
                    *self.extra_args,
                    *(["--standalone"] if self.standalone else []),
                    "--sidecar-image",
                    SIDECAR_IMAGE,
                    "--metrics-port",
                    str(self.metrics_port),
                    "--metrics-address",
                    "127.0.0.1",
                    "--health-port",
                    str(health_port),
                ],
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
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def metrics(self) -> dict[str, float]:
        """The operator's /metrics as {'name{labels}': value}."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def assert_no_errors(self) -> None:
        log = self.log()
        for marker in ("Traceback", "Patching failed with inconsistencies", "Forbidden"):
            assert marker not in log, f"operator log shows {marker!r}:\n{log}"


def kubectl_vigil(kube: Kube, *args: str, name: str = "wine") -> subprocess.CompletedProcess[str]:
    """``kubectl vigil ARGS NAME -n <namespace>``, found by the real kubectl's plugin lookup."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "kubectl-vigil").is_file():
        pytest.fail(
            f"kubectl-vigil is not installed in {bin_dir} (pip install -e .)", pytrace=False
        )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": kube.cluster.kubeconfig,
        "VIGIL_KUBECTL": kube.cluster.kubectl_binary,
    }
    result = subprocess.run(
        [kube.cluster.kubectl_binary, "vigil", *args, name, "-n", kube.namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result
