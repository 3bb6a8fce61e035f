"""Metric families that share a collector's base labels (model, version, revision ...).

The sidecar's custom collectors build every family on the same base label
names and values; these helpers say which series a family holds and leave
the labels to one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class Families:
    """Families of one collector: each on the base labels, plus its own ``extra`` ones."""

    def __init__(self, base: Mapping[str, str]) -> None:
        self.names = list(base)
        self.values = list(base.values())

    def counter(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=[*self.names, *extra])

    def gauge(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*self.names, *extra])

    def counter_of(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        """A counter with one series: ``value`` at the base labels."""
        family = self.counter(name, doc)
        family.add_metric(self.values, value)
        return family

    def gauge_of(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        """A gauge with one series: ``value`` at the base labels."""
        family = self.gauge(name, doc)
        family.add_metric(self.values, value)
        return family

    def counter_by(
        self, name: str, doc: str, label: str, counts: Mapping[str, float]
    ) -> CounterMetricFamily:
        """A counter with a series per key of ``counts`` (the ``label``'s value), sorted."""
        family = self.counter(name, doc, (label,))
        for key, n in sorted(counts.items()):
            family.add_metric([*self.values, key], n)
        return family
