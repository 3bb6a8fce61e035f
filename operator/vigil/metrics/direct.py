"""The ``direct`` source: the operator scrapes every sidecar itself.

No Prometheus needed. Each cycle it GETs ``http://<pod IP>:<metrics port>/metrics``
for every pod of every revision (bounded concurrency, short timeout), keeps
the recent scrapes of each pod in memory, and computes each revision's
window: per-pod increases (counter resets and restarts handled, see
:func:`~vigil.core.window.pod_increase`), summed over the pods. A pod that
went away still counts for the part of the window it was alive; its
scrapes are dropped once they are older than the window. A sidecar that
does not answer is skipped and counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from vigil.core.window import (
    SERVED_REVISION_FAMILIES,
    RevisionWindow,
    Scrape,
    SeriesKey,
    add_series,
    pod_increase,
    served_by,
)
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.session import LazySession
from vigil.metrics.source import Collection, PodTarget, RevisionKey, RevisionTarget

#: Scrapes kept per pod beyond the window, so the baseline before it exists.
EXTRA_RETENTION_SECONDS = 120.0


@dataclass
class _PodHistory:
    scrapes: deque[Scrape]
    last_seen: float


class DirectSource:
    """Scrapes sidecars at their pod IPs; keeps recent samples per pod."""

    name = "direct"

    def __init__(
        self,
        *,
        timeout_seconds: float = 2.0,
        concurrency: int = 64,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.concurrency = concurrency
        self._http = LazySession(session, self._open_session)
        self._history: dict[tuple[RevisionKey, str], _PodHistory] = {}
        #: How long each revision's scrapes are kept, as its last collection asked.
        self._retention: dict[RevisionKey, float] = {}

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=None)
        return aiohttp.ClientSession(connector=connector, timeout=self.timeout)

    async def close(self) -> None:
        await self._http.close()

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        session = self._http.get()
        url = f"http://{pod.ip}:{pod.port}/metrics"
        try:
            async with session.get(url, timeout=self.timeout) as response:
                if response.status != 200:
                    return f"{pod.name}: HTTP {response.status}"
                body = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return f"{pod.name}: {type(error).__name__} {error}".strip()
        values, started_at = parse_sidecar_metrics(body)
        return Scrape(at=now, started_at=started_at, values=values)

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        result = Collection()
        # Before this cycle's scrapes join: a pod last scraped long ago (in an earlier
        # rollout) would otherwise use that old scrape as its window's baseline.
        self._forget_old(targets, now)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def scrape(target: RevisionTarget, pod: PodTarget) -> tuple[str, Scrape | str]:
            async with semaphore:
                return pod.name, await self._scrape(pod, now)

        jobs = [(t, asyncio.gather(*(scrape(t, p) for p in t.pods))) for t in targets]
        answered: dict[RevisionKey, int] = {}
        outcomes = await asyncio.gather(*(job for _, job in jobs))
        for (target, _), pod_results in zip(jobs, outcomes, strict=True):
            failures = []
            for pod_name, scraped in pod_results:
                result.scrapes += 1
                if isinstance(scraped, str):
                    result.scrape_failures += 1
                    failures.append(scraped)
                    continue
                history = self._history.setdefault(
                    (target.key, pod_name), _PodHistory(deque(), now)
                )
                history.scrapes.append(scraped)
                history.last_seen = now
            answered[target.key] = len(target.pods) - len(failures)
            if target.pods and answered[target.key] == 0:
                result.errors[target.key] = (
                    f"no sidecar answered ({len(target.pods)} pods): {failures[0]}"
                )
            elif not target.pods:
                result.errors[target.key] = "the revision has no running pods to scrape"
        # Every scrape first: a revision's labels may be counted on another's pods.
        for target in targets:
            if target.key not in result.errors:
                result.windows[target.key] = self._window(target, now, answered[target.key])
        return result

    def _window(self, target: RevisionTarget, now: float, answered: int) -> RevisionWindow:
        start = now - target.window_seconds
        labels_start = now - target.labels_window
        own: list[dict[SeriesKey, float]] = []
        everyone: list[dict[SeriesKey, float]] = []
        for (key, _), history in self._history.items():
            if key[:2] != target.key[:2] or history.last_seen < min(start, labels_start):
                continue
            scrapes = list(history.scrapes)
            # Labels over their own (longer) window of arrival.
            everyone.append(pod_increase(scrapes, labels_start))
            if key == target.key and history.last_seen >= start:
                own.append(pod_increase(scrapes, start))
        series = {k: v for k, v in add_series(own).items() if k[0] not in SERVED_REVISION_FAMILIES}
        # Labels are counted where the prediction is, against the revision that served
        # it: the ModelDeployment's scraped pods, this revision's series.
        series.update(served_by(add_series(everyone), target.revision))
        return RevisionWindow.from_series(series, pods=answered)

    def _forget_old(self, targets: Sequence[RevisionTarget], now: float) -> None:
        """Drop scrapes older than their window (plus the baseline margin).

        One source serves every ModelDeployment: each revision keeps its scrapes as
        long as its own last collection asked, whoever collects now.
        """
        self._retention.update({t.key: t.retention_seconds for t in targets})
        for key in list(self._history):
            history = self._history[key]
            keep = self._retention.get(key[0], 0.0) + EXTRA_RETENTION_SECONDS
            while len(history.scrapes) > 1 and history.scrapes[1].at < now - keep:
                history.scrapes.popleft()
            if history.last_seen < now - keep:
                del self._history[key]
        kept = {key for key, _ in self._history} | {t.key for t in targets}
        self._retention = {k: v for k, v in self._retention.items() if k in kept}
