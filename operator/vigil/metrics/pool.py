"""One metrics source per kind and URL, shared by everyone in the operator who reads.

Why shared: a sidecar hands a peer, when it stops, the label figures no read of
its ``/metrics`` has returned yet (docs/design/ground-truth.md). With the health
loop and the rollouts each scraping through a source of their own, what one of
them read was handed over for neither, and the other never counted it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vigil.core.spec import SOURCE_PROMETHEUS
from vigil.metrics.direct import DirectSource
from vigil.metrics.prometheus import PrometheusSource
from vigil.metrics.source import MetricsSource

#: (kind, URL): ``("direct", "")`` or ``("prometheus", <url>)``.
SourceKey = tuple[str, str]
SourceFactory = Callable[[SourceKey], MetricsSource]


def default_source(key: SourceKey) -> MetricsSource:
    """A direct source, or a Prometheus source for the URL in the key."""
    kind, url = key
    if kind == SOURCE_PROMETHEUS:
        return PrometheusSource(url)
    return DirectSource()


class SourcePool:
    """The sources in use, made on first use; closed once nobody names or uses them."""

    def __init__(self, factory: SourceFactory = default_source) -> None:
        self._factory = factory
        self._sources: dict[SourceKey, MetricsSource] = {}
        #: Keys asked for since the last :meth:`close_unnamed`.
        self._used: set[SourceKey] = set()

    def get(self, key: SourceKey) -> MetricsSource:
        self._used.add(key)
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = self._factory(key)
        return source

    def forget(self, namespace: str, name: str) -> None:
        """A ModelDeployment was deleted: every source drops what it kept of it."""
        for source in self._sources.values():
            source.forget(namespace, name)

    async def close_unnamed(self, named: Iterable[SourceKey]) -> None:
        """Close the sources of keys not in ``named`` (URLs no ModelDeployment names any
        more) that nobody asked for since the last call (a rollout reads between)."""
        keep = set(named) | self._used
        self._used = set()
        for key in [k for k in self._sources if k not in keep]:
            await self._sources.pop(key).close()

    async def close(self) -> None:
        self._used = set()
        for key in list(self._sources):
            await self._sources.pop(key).close()
