"""Metrics sources: where the operator gets what the sidecars counted.

One small interface (:class:`MetricsSource`), one file per backend:

- ``direct`` (default, no Prometheus needed): scrapes every sidecar at its
  pod IP each cycle and computes the window itself;
- ``prometheus``: PromQL over the HTTP API, one query of every metric
  family per window per cycle, whatever the number of ModelDeployments.

Both return per-revision :class:`~vigil.core.window.RevisionWindow` figures
that the pure health evaluation judges.
"""

from vigil.metrics.source import (
    Collection,
    MetricsSource,
    PodTarget,
    RevisionKey,
    RevisionTarget,
    SourceCalls,
)

__all__ = [
    "Collection",
    "MetricsSource",
    "PodTarget",
    "RevisionKey",
    "RevisionTarget",
    "SourceCalls",
]
