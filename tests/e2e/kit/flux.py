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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from kit.hostprocesses import HostControllers, built, start_logged, wait_answering
from vigil.devcluster import ClusterClient
from vigil.devcluster.common import free_port

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
    return built(
        "build-flux.sh",
        "Flux's controllers",
        "flux",
        ["source-controller", "kustomize-controller"],
    )


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


#: Flux's running controllers (source-controller and kustomize-controller).
FluxControllers = HostControllers


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
            process = start_logged(
                stack,
                [
                    str(folder / name),
                    *common,
                    *args,
                    f"--metrics-addr=127.0.0.1:{metrics_port}",
                    f"--health-addr=127.0.0.1:{health_port}",
                ],
                logs[name],
                env,
            )
            metrics[name] = f"http://127.0.0.1:{metrics_port}/metrics"
            wait_answering(name, f"http://127.0.0.1:{health_port}/readyz", process, logs[name])
        yield FluxControllers(logs, metrics)
