"""The operator as a host process with a kubeconfig, as tests and benchmarks start it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

#: Installed beside this interpreter by `make install`.
OPERATOR_BIN = Path(sys.executable).parent / "vigil-operator"


def operator_command(
    namespaces: Sequence[str],
    *,
    sidecar_image: str,
    metrics_port: int,
    health_port: int,
    standalone: bool = True,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """`vigil-operator` watching ``namespaces``, its metrics and health on loopback ports."""
    return [
        str(OPERATOR_BIN),
        *[arg for namespace in namespaces for arg in ("--namespace", namespace)],
        *(["--standalone"] if standalone else []),
        "--sidecar-image",
        sidecar_image,
        "--metrics-port",
        str(metrics_port),
        "--metrics-address",
        "127.0.0.1",
        "--health-port",
        str(health_port),
        *extra_args,
    ]
