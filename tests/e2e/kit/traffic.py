"""What a client of a model does: HTTP requests, v2 bodies, and where they go.

``ModelEndpoint`` is the one place that knows how a request reaches the model
behind a Service: a client sends to the Service's ClusterIP and kube-proxy
picks a pod on the real node, as a user's client would.

Requests that are about one pod (its metrics, its sidecar's probes) go to the
pod's IP: ``sidecar_url`` and ``pod_metrics``.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kit.kube import Kube
from kit.metrics import total
from kit.waits import wait_for
from vigil.core.desired import FEEDBACK_PORT, METRICS_PORT, SIDECAR_PORT, SIDECAR_READY_PATH
from vigil.core.metric_names import SIDECAR_START_TIME
from vigil.devcluster.traffic import ReadFailed, TrafficGenerator, service_address, v2_body
from vigil.sidecar.feedback import FEEDBACK_PATH


def http(
    url: str, body: bytes | None = None, timeout: float = 10, request_id: str = ""
) -> tuple[int, bytes]:
    """GET (or POST a JSON ``body``, under ``request_id`` if given): (status, body);
    (0, b"") when nothing answered."""
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body:
        request.add_header("Content-Type", "application/json")
    if request_id:
        request.add_header("X-Request-Id", request_id)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def infer_body(rows: Sequence[Sequence[float]] | npt.NDArray[np.float64]) -> bytes:
    """A v2 inference request over ``rows`` (one FP64 tensor; NaN is written as NaN)."""
    return v2_body([[float(x) for x in row] for row in rows])


def sidecar_url(ip: str, path: str = "") -> str:
    """A pod's sidecar (its live traffic port), at the pod's IP."""
    return f"http://{ip}:{SIDECAR_PORT}{path}"


def feedback_url(ip: str) -> str:
    """A pod's sidecar's feedback port, where labels are posted."""
    return f"http://{ip}:{FEEDBACK_PORT}{FEEDBACK_PATH}"


def answers_ready(ip: str) -> bool:
    """The pod's sidecar answers ready (its model server is ready behind it)."""
    return http(sidecar_url(ip, SIDECAR_READY_PATH))[0] == 200


def pod_metrics(ip: str) -> str:
    """The pod sidecar's /metrics text ("" when it does not answer)."""
    status, body = http(f"http://{ip}:{METRICS_PORT}/metrics", timeout=5)
    return body.decode(errors="replace") if status == 200 else ""


def sidecar_started_at(ip: str) -> float:
    """The serving sidecar's start time at this pod IP (0 when it does not answer): a
    restarted container's sidecar shows a later one."""
    return total(pod_metrics(ip), SIDECAR_START_TIME)


class ModelEndpoint:
    """How a client reaches model ``model`` behind Service ``service``: its ClusterIP."""

    def __init__(self, kube: Kube, service: str = "wine", model: str | None = None) -> None:
        self.kube = kube
        self.service = service
        self.model = model or service

    def pod_ips(self) -> list[str]:
        """IPs of the Ready pods the Service selects (where kube-proxy sends)."""
        return list(self.kube.service_view(self.service).ready or ())

    def url(self) -> str:
        """The base URL a client sends to: the Service's ClusterIP and port."""
        address = service_address(self.kube.cluster, self.kube.namespace, self.service)
        assert address, f"Service {self.service} has no ClusterIP"
        return f"http://{address}"

    def infer_url(self) -> str:
        return f"{self.url()}/v2/models/{self.model}/infer"

    def serving(self, replicas: int | None = None) -> list[str]:
        """The pods' IPs once the model answers ready at every one of them (``replicas``
        of them, if given) and through the Service; [] before.

        A pod's readiness may be the server's, not the model's.
        """
        ips = self.pod_ips()
        if not ips or (replicas is not None and len(ips) != replicas):
            return []
        path = f"/v2/models/{self.model}/ready"
        if not all(http(sidecar_url(ip, path))[0] == 200 for ip in ips):
            return []
        if http(f"{self.url()}{path}")[0] != 200:
            return []
        return ips

    def answering(self, replicas: int | None = None) -> list[str]:
        """``serving``, and [] when a read failed on a busy machine (look again)."""
        try:
            return self.serving(replicas)
        except (AssertionError, subprocess.SubprocessError, OSError, ReadFailed):
            return []

    def wait_serving(self, replicas: int | None = None, timeout: float = 120) -> list[str]:
        """Wait until the model serves behind the Service; the pods' IPs."""
        return wait_for(
            lambda: self.answering(replicas),
            timeout=timeout,
            what=f"the model to serve behind Service {self.service}",
        )

    def traffic(
        self,
        X: npt.NDArray[np.float64],
        *,
        rate: float = 15.0,
        seed: int = 3,
        http_route: str | None = None,
        labels: npt.NDArray[Any] | None = None,
    ) -> LiveTraffic:
        """Live traffic to this model from the rows of ``X``, started.

        With ``http_route`` it plays the gateway: each request goes to one of the
        HTTPRoute's backend Services, chosen by the route's weights. With ``labels``
        (one per row of ``X``) each answered request's truth goes to the Service's
        feedback port. ``stats.by_revision`` counts the answers
        by the revision that served them.
        """
        generator = LiveTraffic(
            self.kube.cluster,
            self.kube.namespace,
            self.service,
            self.model,
            X,
            rate=rate,
            seed=seed,
            http_route=http_route,
            labels=labels,
            through_service=True,
        )
        return generator.start()  # type: ignore[return-value]


class LiveTraffic(TrafficGenerator):
    """The TrafficGenerator, whose route reads never end it.

    A read that fails in any way (the API server away or slow, kubectl timing
    out) keeps traffic going where the last good read said, as kube-proxy
    would; the generator's own loop only tolerates ``ReadFailed``.
    """

    def _backends(self) -> list[tuple[list[str], int]]:
        try:
            return super()._backends()
        except (subprocess.SubprocessError, OSError, ValueError) as error:
            raise ReadFailed(str(error)) from error
