"""The interface every metrics source implements, and what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vigil.core.window import RevisionWindow

#: (namespace, ModelDeployment name, revision)
RevisionKey = tuple[str, str, str]


@dataclass(frozen=True)
class PodTarget:
    """A pod's sidecar metrics endpoint."""

    name: str
    ip: str
    port: int = 9090


@dataclass(frozen=True)
class RevisionTarget:
    """One revision to measure, over its ModelDeployment's window."""

    namespace: str
    name: str
    revision: str
    window_seconds: float
    pods: tuple[PodTarget, ...] = ()
    #: The window of label arrival for realized performance (None: ``window_seconds``).
    labels_window_seconds: float | None = None
    #: Pods being deleted, still up: scraped for their last figures where the source
    #: scrapes pods (the direct one); one that does not answer has stopped, no error.
    leaving: tuple[PodTarget, ...] = ()

    @property
    def key(self) -> RevisionKey:
        return (self.namespace, self.name, self.revision)

    @property
    def labels_window(self) -> float:
        return (
            self.window_seconds
            if self.labels_window_seconds is None
            else self.labels_window_seconds
        )

    @property
    def retention_seconds(self) -> float:
        """How far back this target's figures reach. Not read here any more: the direct.py
        of earlier commits, which bench/health/retention.py runs as its baseline, reads it."""
        return max(self.window_seconds, self.labels_window)


@dataclass
class SourceCalls:
    """What a cycle asked of the metrics sources: queries, scrapes and the failed ones."""

    queries: int = 0
    scrapes: int = 0
    scrape_failures: int = 0

    def add(self, other: SourceCalls) -> None:
        """Count ``other``'s calls in these."""
        self.queries += other.queries
        self.scrapes += other.scrapes
        self.scrape_failures += other.scrape_failures


@dataclass
class Collection(SourceCalls):
    """One cycle's result: figures per revision, or the reason there are none."""

    windows: dict[RevisionKey, RevisionWindow] = field(default_factory=dict)
    errors: dict[RevisionKey, str] = field(default_factory=dict)
    #: Of the revisions with a window: which pods' sidecars did not answer, when some did.
    unanswered: dict[RevisionKey, str] = field(default_factory=dict)


class MetricsSource(Protocol):
    """Collect every revision's window in one cycle."""

    name: str

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection: ...

    def forget(self, namespace: str, name: str) -> None:
        """A ModelDeployment was deleted: drop what was kept of it (one created again under
        its name must not count the old one's figures)."""

    async def close(self) -> None: ...
