"""A fresh pod's first error of each kind counts with either source.

Prometheus' ``increase()`` sees growth only between samples of a series: a
series born at its first request (already 1) loses that request. So the
family the operator reads of requests (and the inference latency) exists
from the sidecar's start, at 0, for live requests and shadow copies alike;
the per-code family, born at first use, is for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from vigil.core import metric_names as names
from vigil.core.metric_names import bucket, total
from vigil.core.window import RevisionWindow, SeriesKey
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.prometheus import family_query
from vigil.sidecar.metrics import OUTCOMES, OpsMetrics

BASE = {"model": "wine", "version": "1", "revision": "r2", "role": "candidate"}


def scrape(registry: CollectorRegistry) -> dict[SeriesKey, float]:
    return parse_sidecar_metrics(generate_latest(registry).decode())[0]


def increase_as_prometheus_sees_it(
    before: Mapping[SeriesKey, float], after: Mapping[SeriesKey, float]
) -> dict[SeriesKey, float]:
    """Growth between two samples of a series; a series without an earlier sample has none."""
    return {key: value - before[key] for key, value in after.items() if key in before}


def test_a_fresh_pods_first_errors_are_counted_from_its_first_scrape() -> None:
    registry = CollectorRegistry()
    ops = OpsMetrics(registry, BASE)
    first = scrape(registry)  # Prometheus scraped the pod before any request
    for _ in range(20):
        ops.observe("infer", "success", 200, 0.02, 100, 10)
    ops.observe("infer", "model_error", 500, 0.3, 100, 10)
    ops.observe("infer", "upstream_error", 503, 0.001, 100, 0)
    ops.observe("infer", "model_error", 500, 0.2, 100, 10, origin=names.ORIGIN_SHADOW)
    window = RevisionWindow.from_series(
        increase_as_prometheus_sees_it(first, scrape(registry)), pods=1
    )
    assert window.live_by_outcome["model_error"] == 1
    assert window.live_by_outcome["upstream_error"] == 1
    assert window.copies_by_outcome["model_error"] == 1
    assert window.requests == 23
    assert dict(window.latency_buckets)[float("inf")] == 23
    assert dict(window.copy_latency_buckets)[float("inf")] == 1


def test_every_request_series_read_exists_at_zero_before_the_first_request() -> None:
    registry = CollectorRegistry()
    OpsMetrics(registry, BASE)
    first = scrape(registry)
    requests = {key: value for key, value in first.items() if key[0] == total(names.REQUESTS)}
    assert requests == {
        (total(names.REQUESTS), (("origin", origin), ("outcome", outcome))): 0.0
        for origin in (names.ORIGIN_LIVE, names.ORIGIN_SHADOW)
        for outcome in OUTCOMES
    }
    latency = [key for key in first if key[0] == bucket(names.REQUEST_DURATION)]
    assert {dict(labels)["origin"] for _, labels in latency} == {"live", "shadow"}


def test_the_operator_reads_requests_without_the_status_code() -> None:
    assert family_query(total(names.REQUESTS), 300) == (
        "sum by (namespace, model_deployment, revision, origin, outcome) "
        '(increase(vigil_request_outcomes_total{endpoint="infer"}[300s]))'
    )


def test_sidecars_without_the_family_are_read_by_their_codes() -> None:
    # After an operator upgrade the stable's pods still run the older sidecar (the upgrade
    # rolls every model out as a tweak): its requests must count, or the stable reads 0.
    def key(family: str, outcome: str) -> Any:
        return (total(family), (("origin", "live"), ("outcome", outcome)))

    older = {key(names.REQUESTS_BY_CODE, "success"): 97.0}
    older[key(names.REQUESTS_BY_CODE, "model_error")] = 3.0
    window = RevisionWindow.from_series(older, pods=2)
    assert window.requests_by_outcome == {"success": 97.0, "model_error": 3.0}
    newer = {**older, key(names.REQUESTS, "success"): 10.0, key(names.REQUESTS, "model_error"): 0.0}
    assert RevisionWindow.from_series(newer, pods=2).requests_by_outcome == {
        "success": 10.0,
        "model_error": 0.0,
    }
