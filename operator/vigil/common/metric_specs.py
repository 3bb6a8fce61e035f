"""Prometheus metric families declared from a table: one row a family, made in one loop.

A holder of metrics (the operator's, the sidecar's) lists its families as
:class:`MetricSpec` rows and :func:`declare` sets each on it, as the attribute the row
names; the holder annotates those attributes, so that readers still find them there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class MetricSpec:
    """One family: the attribute that holds it, its kind, name, help and own labels."""

    attribute: str
    kind: type[Counter | Gauge | Histogram]
    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    #: A histogram's bucket bounds (None: prometheus_client's defaults).
    buckets: tuple[float, ...] | None = None


def declare(
    holder: object,
    specs: Iterable[MetricSpec],
    registry: CollectorRegistry,
    labels: Sequence[str] = (),
) -> None:
    """Make each spec's family in ``registry`` (``labels`` before its own) as an attribute
    of ``holder``."""
    for spec in specs:
        buckets = {} if spec.buckets is None else {"buckets": spec.buckets}
        family = spec.kind(
            spec.name, spec.documentation, [*labels, *spec.labels], registry=registry, **buckets
        )
        setattr(holder, spec.attribute, family)
