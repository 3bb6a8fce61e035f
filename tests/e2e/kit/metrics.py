"""Metrics: samples out of Prometheus text, and a real Prometheus for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from vigil.devcluster import ClusterClient, ClusterError
from vigil.devcluster.prometheus import LocalPrometheus


def samples(text: str, name: str, /, **labels: str) -> list[Sample]:
    """The samples named ``name`` (``x_total``, ``x_count``: as exposed) whose labels
    include ``labels``."""
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def total(text: str, name: str, /, **labels: str) -> float:
    """The sum of those samples (0 when there is none)."""
    return sum(sample.value for sample in samples(text, name, **labels))


def started_prometheus(
    cluster: ClusterClient, state_dir: Path, namespace: str, **options: Any
) -> LocalPrometheus:
    """A real Prometheus discovering pods as the manifests say, in ``namespace`` only (a
    parallel test's pods are not its to read), 1 s scrapes; started."""
    server = LocalPrometheus(
        cluster, state_dir, namespaces=[namespace], **{"scrape_interval": "1s", **options}
    )
    try:
        server.start()  # its cluster-wide RBAC under the cluster's setup lock
    except ClusterError as error:
        server.stop()
        pytest.fail(f"the e2e Prometheus did not start: {error}", pytrace=False)
    return server


@contextmanager
def running_prometheus(
    cluster: ClusterClient, state_dir: Path, namespace: str, **options: Any
) -> Iterator[LocalPrometheus]:
    server = started_prometheus(cluster, state_dir, namespace, **options)
    try:
        yield server
    finally:
        server.stop()
