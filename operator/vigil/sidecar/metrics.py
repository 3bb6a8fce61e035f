"""Operations metrics of the sidecar (all names start with ``vigil_``).

Every series carries ``model``, ``version``, ``revision`` and ``role``;
nothing carries request or user identifiers. The sidecar uses its own
registry (no default process/platform collectors) so that the prefix rule
holds for every series it exposes. The data-science metrics live in
:mod:`vigil.sidecar.monitor`, the shadow metrics in
:mod:`vigil.sidecar.shadow`; the full list is in ``docs/sidecar.md``.
"""

from __future__ import annotations

import math
import os
import resource
import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from vigil.common.metric_specs import MetricSpec, declare
from vigil.core import metric_names
from vigil.sidecar.exposition import Families

__all__ = ["BASE_LABELS", "LATENCY_BUCKETS", "OUTCOMES", "OpsMetrics", "origin_of"]

BASE_LABELS = ("model", "version", "revision", "role")
#: Around typical model-serving SLOs (the API's example is p95 <= 250 ms).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _le(bound: float) -> str:
    return floatToGoString(bound)


LIVE = metric_names.ORIGIN_LIVE
#: Every ``outcome`` of a request (:func:`outcome_of`, and the sidecar's own answers).
OUTCOMES = ("success", "client_error", "model_error", "rejected", "upstream_error")
#: The series the operator reads exist from the start, at 0 (``metric_names.REQUESTS``):
#: inference requests, live and shadow copies. Prometheus' ``increase()`` cannot count
#: the first sample of a series, so one born at its first request would lose that one.
ZEROED_ORIGINS = (metric_names.ORIGIN_LIVE, metric_names.ORIGIN_SHADOW)
ZEROED_ENDPOINT = "infer"


def origin_of(shadow_copy: bool) -> str:
    """The ``origin`` label: a shadow copy (``X-Vigil-Shadow``) or a live request."""
    return metric_names.ORIGIN_SHADOW if shadow_copy else metric_names.ORIGIN_LIVE


def outcome_of(status: int) -> str:
    """``success`` | ``client_error`` (model 4xx) | ``model_error`` (model 5xx)."""
    if status < 400:
        return "success"
    if status < 500:
        return "client_error"
    return "model_error"


def _empty_histogram() -> list[float]:
    """Bucket counts (``LATENCY_BUCKETS`` and +Inf) and the sum, all 0."""
    return [0.0] * (len(LATENCY_BUCKETS) + 2)


class _ProcessCollector(Collector):
    """The sidecar's own CPU, memory and start time, under the vigil_ prefix."""

    def __init__(self, base: dict[str, str], ops: OpsMetrics) -> None:
        self.base = base
        self.ops = ops
        self.start = time.time()

    def collect(self) -> Iterator[Metric]:
        families = Families(self.base)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        yield families.counter_of(
            "vigil_sidecar_cpu_seconds",
            "CPU time used by the sidecar process.",
            usage.ru_utime + usage.ru_stime,
        )
        try:
            with open("/proc/self/statm", "rb") as fh:
                rss = int(fh.read().split()[1]) * _PAGE
        except OSError:
            rss = usage.ru_maxrss * 1024
        yield families.gauge_of(
            "vigil_sidecar_resident_memory_bytes", "Resident memory of the sidecar.", rss
        )
        yield families.gauge_of(
            metric_names.SIDECAR_START_TIME,
            "Unix time the sidecar started (detects restarts / counter resets).",
            self.start,
        )
        yield families.gauge_of(
            "vigil_requests_in_flight", "Requests being proxied right now.", self.ops.in_flight
        )
        yield from self.ops.hot_path_metrics()


#: The families kept by prometheus_client (the per-request ones are plain numbers: see
#: :class:`OpsMetrics`), each labelled with :data:`BASE_LABELS` before its own.
_FAMILIES = (
    MetricSpec(
        "upstream_failures",
        Counter,
        "vigil_upstream_failures",
        "Requests the model server did not answer: refused, timeout, reset, protocol, "
        "body_too_large, memory_budget.",
        ("reason",),
    ),
    MetricSpec(
        "rejected",
        Counter,
        "vigil_rejected_requests",
        "Requests the sidecar answered itself with a 4xx or a 503: body_too_large, "
        "bad_request, body_timeout, headers_too_large, memory_budget.",
        ("reason",),
    ),
    MetricSpec(
        "upstream_ready",
        Gauge,
        "vigil_upstream_ready",
        "1 when the model server's readiness check last succeeded.",
    ),
    MetricSpec(
        "settings_reloads",
        Counter,
        "vigil_settings_reloads",
        "Run-time settings reloads by outcome (applied, error).",
        ("outcome",),
    ),
    MetricSpec(
        "info",
        Gauge,
        "vigil_model_info",
        "Which model, version, revision, protocol and reference this sidecar serves.",
        ("protocol", "reference_fingerprint", "sidecar_version"),
    ),
)


class OpsMetrics:
    """Request counters, latency histogram, bytes, upstream failures.

    Label children are cached: resolving ``labels(...)`` costs more than
    the increment itself, and this runs on the proxy's hot path.
    """

    # Made from _FAMILIES by declare().
    upstream_failures: Counter
    rejected: Counter
    upstream_ready: Gauge
    settings_reloads: Counter
    info: Gauge

    def __init__(self, registry: CollectorRegistry, base: dict[str, str]) -> None:
        self.base = base
        self.in_flight = 0
        declare(self, _FAMILIES, registry, BASE_LABELS)
        self._base_values = tuple(base.values())
        # Hot-path counters are plain Python numbers, turned into series at
        # scrape time: no locks, no label lookups per request.
        self.request_counts: dict[tuple[str, str, str, int], int] = {}
        # (endpoint, origin) -> bucket counts + [sum]; inference ones from the start.
        self.latency: dict[tuple[str, str], list[float]] = {
            (ZEROED_ENDPOINT, origin): _empty_histogram() for origin in ZEROED_ORIGINS
        }
        self.body_bytes: dict[str, list[int]] = {}  # endpoint -> [request, response]
        self.upstream_ready.labels(*self._base_values).set(0)
        registry.register(_ProcessCollector(base, self))

    def set_info(self, protocol: str, fingerprint: str, version: str) -> None:
        self.info.clear()
        self.info.labels(*self._base_values, protocol, fingerprint, version).set(1)

    def observe(
        self,
        endpoint: str,
        outcome: str,
        status: int,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
        origin: str = LIVE,
    ) -> None:
        """Record one finished request; ``origin`` tells a shadow copy from a live request."""
        key = (endpoint, origin, outcome, status)
        counts = self.request_counts
        counts[key] = counts.get(key, 0) + 1
        hist = self.latency.get((endpoint, origin))
        if hist is None:
            hist = self.latency[endpoint, origin] = _empty_histogram()
        hist[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[-1] += seconds
        sizes = self.body_bytes.get(endpoint)
        if sizes is None:
            sizes = self.body_bytes[endpoint] = [0, 0]
        sizes[0] += request_bytes
        sizes[1] += response_bytes

    def request_families(self) -> Iterator[Metric]:
        """Requests by outcome (summed over codes; the inference ones at 0 from the start),
        and by outcome and code."""
        names = list(BASE_LABELS)
        base = list(self._base_values)
        requests = CounterMetricFamily(
            metric_names.REQUESTS_BY_CODE,
            "Requests by endpoint (infer/other), origin (live, or a shadow copy another "
            "revision's sidecar sent), outcome and HTTP status code.",
            labels=[*names, "endpoint", "origin", "outcome", "code"],
        )
        by_outcome = {
            (ZEROED_ENDPOINT, origin, outcome): 0
            for origin in ZEROED_ORIGINS
            for outcome in OUTCOMES
        }
        for (endpoint, origin, outcome, status), n in sorted(self.request_counts.items()):
            requests.add_metric([*base, endpoint, origin, outcome, str(status)], n)
            key = (endpoint, origin, outcome)
            by_outcome[key] = by_outcome.get(key, 0) + n
        outcomes = CounterMetricFamily(
            metric_names.REQUESTS,
            "Requests by endpoint, origin and outcome, over every status code: the inference "
            "ones exist from the start (at 0), the series the operator reads.",
            labels=[*names, "endpoint", "origin", "outcome"],
        )
        for (endpoint, origin, outcome), n in sorted(by_outcome.items()):
            outcomes.add_metric([*base, endpoint, origin, outcome], n)
        yield outcomes
        yield requests

    def hot_path_metrics(self) -> Iterator[Metric]:
        """The per-request series, built from the plain counters."""
        names = list(BASE_LABELS)
        base = list(self._base_values)
        yield from self.request_families()
        duration = HistogramMetricFamily(
            metric_names.REQUEST_DURATION,
            "Time from the complete request to the complete response, as the client sees it.",
            labels=[*names, "endpoint", "origin"],
        )
        for (endpoint, origin), hist in sorted(self.latency.items()):
            cumulative = 0.0
            buckets = []
            for le, n in zip((*LATENCY_BUCKETS, math.inf), hist[:-1], strict=True):
                cumulative += n
                buckets.append((_le(le), cumulative))
            duration.add_metric([*base, endpoint, origin], buckets, sum_value=hist[-1])
        yield duration
        req_b = CounterMetricFamily(
            "vigil_request_bytes", "Request body bytes.", labels=[*names, "endpoint"]
        )
        resp_b = CounterMetricFamily(
            "vigil_response_bytes", "Response body bytes.", labels=[*names, "endpoint"]
        )
        for endpoint, (rq, rs) in sorted(self.body_bytes.items()):
            req_b.add_metric([*base, endpoint], rq)
            resp_b.add_metric([*base, endpoint], rs)
        yield req_b
        yield resp_b

    def upstream_failure(self, reason: str) -> None:
        self.upstream_failures.labels(*self._base_values, reason).inc()

    def reject(self, reason: str) -> None:
        self.rejected.labels(*self._base_values, reason).inc()

    def set_upstream_ready(self, ready: bool) -> None:
        self.upstream_ready.labels(*self._base_values).set(1 if ready else 0)

    def settings_reload(self, outcome: str) -> None:
        self.settings_reloads.labels(*self._base_values, outcome).inc()
