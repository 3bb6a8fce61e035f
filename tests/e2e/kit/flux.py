"""Flux's source-controller and kustomize-controller, real, as host processes.

``hack/build-flux.sh`` (``make flux``) builds both from their Go modules at
pinned versions and caches them, with Flux's CRDs from the same module
versions. They run here as processes of this machine with the cluster's
admin kubeconfig, as the issue allows: in the cluster they would need
images of them built here (a later step). They reach the Git server on
127.0.0.1 as any host process does; the kustomize-controller fetches the
source-controller's artifacts from its storage server on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kit.kube import ROOT
from vigil.devcluster import ClusterClient
from vigil.devcluster.common import free_port, stop_process

SOURCE_CRDS = (
    "buckets",
    "externalartifacts",
    "gitrepositories",
    "helmcharts",
    "helmrepositories",
    "ocirepositories",
)


def flux_binaries() -> Path:
    """The folder with both controllers and their CRDs, built (once) by hack/build-flux.sh."""
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-flux.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            "cannot build Flux's controllers (hack/build-flux.sh, `make flux`): "
            f"{result.stderr[-2000:]}",
            pytrace=False,
        )
    folder = Path(result.stdout.strip().splitlines()[-1])
    missing = [
        name
        for name in ("source-controller", "kustomize-controller")
        if not (folder / name).is_file()
    ]
    if missing or not sorted(folder.glob("crds/*.yaml")):
        pytest.fail(f"Flux's build in {folder} lacks {missing or 'its CRDs'}", pytrace=False)
    return folder


def install_flux_crds(cluster: ClusterClient, folder: Path) -> None:
    """Flux's CRDs of the built versions, server-side applied (they replace any other
    version's), Established."""
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in sorted(folder.glob("crds/*.yaml")):
        args += ["-f", str(path)]
    cluster.kubectl(*args)
    cluster.wait_established(
        *(f"{name}.source.toolkit.fluxcd.io" for name in SOURCE_CRDS),
        "kustomizations.kustomize.toolkit.fluxcd.io",
    )


@dataclass
class FluxControllers:
    """The two running controllers: their logs and their metrics endpoints."""

    logs: dict[str, Path]
    metrics: dict[str, str]

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def metrics_text(self, name: str) -> str:
        with urllib.request.urlopen(self.metrics[name], timeout=5) as response:
            return str(response.read().decode())


def _wait_healthy(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"{name} exited ({process.returncode}) at start:\n"
                f"{log.read_text(errors='replace')[-3000:]}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    pytest.fail(f"{name} not healthy at {url} after 60s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_flux(cluster: ClusterClient, folder: Path, work: Path) -> Iterator[FluxControllers]:
    """source-controller and kustomize-controller against ``cluster`` (its kubeconfig),
    all namespaces, no leader election; logs and artifact storage under ``work``."""
    (work / "storage").mkdir(parents=True, exist_ok=True)
    storage = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "RUNTIME_NAMESPACE": "flux-system",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    common = ["--enable-leader-election=false", "--log-level=debug", "--log-encoding=console"]
    commands: dict[str, list[str]] = {
        "source-controller": [
            f"--storage-path={work / 'storage'}",
            f"--storage-addr=127.0.0.1:{storage}",
            f"--storage-adv-addr=127.0.0.1:{storage}",
        ],
        "kustomize-controller": ["--no-remote-bases=true"],
    }
    logs: dict[str, Path] = {}
    metrics: dict[str, str] = {}
    with ExitStack() as stack:
        for name, args in commands.items():
            metrics_port, health_port = free_port(), free_port()
            logs[name] = work / f"{name}.log"
            out: Any = stack.enter_context(logs[name].open("wb"))
            process = subprocess.Popen(
                [
                    str(folder / name),
                    *common,
                    *args,
                    f"--metrics-addr=127.0.0.1:{metrics_port}",
                    f"--health-addr=127.0.0.1:{health_port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            stack.callback(stop_process, process, 15)
            metrics[name] = f"http://127.0.0.1:{metrics_port}/metrics"
            _wait_healthy(name, f"http://127.0.0.1:{health_port}/readyz", process, logs[name])
        yield FluxControllers(logs, metrics)
