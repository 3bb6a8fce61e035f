"""The ``direct`` source: the operator scrapes every sidecar itself.

No Prometheus needed. Each cycle it GETs ``http://<pod IP>:<metrics port>/metrics``
for every pod of every revision (bounded concurrency, short timeout), keeps
the recent scrapes of each pod in memory, and computes each revision's
window: per-pod increases (counter resets and restarts handled, see
:func:`~vigil.core.window.pod_increase`), summed over the pods. A pod that
went away still counts for the part of the window it was alive; its
scrapes are dropped once they are older than the window. A sidecar that
does not answer is skipped and counted; one silent for longer than the
window counts again from its return.

Two windows, two retentions: the health window (minutes) reads every
series but ground truth; the labels window (an hour by default) reads only
the ground-truth series (:data:`~vigil.core.window.SERVED_REVISION_FAMILIES`).
So each scrape is kept in two parts: all of it but ground truth for the
health window, its ground-truth series for the labels window. Keeping whole
scrapes for the hour (feature bins, latency buckets) cost 11-30 MB per pod.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import aiohttp

from vigil.common.uris import host_port
from vigil.core.window import (
    GAUGE_SUMS,
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

#: Scrapes kept per pod beyond the window, so the baseline before it exists: a rollout
#: step's window grows between its collections, and others' collections trim in between.
EXTRA_RETENTION_SECONDS = 120.0

#: How long a collection's ask for a revision's retention holds at least (else its own
#: retention): the health loop and a rollout step read one revision over different windows.
ASK_SECONDS = 3600.0

#: The ground-truth part of a scrape without labels (no feedback): one shared empty mapping.
_NO_SERIES: Mapping[SeriesKey, float] = MappingProxyType({})


def _trim(scrapes: deque[Scrape], cutoff: float) -> None:
    """Drop the scrapes before ``cutoff`` but the last of them, while a later one follows.

    That one is :func:`~vigil.core.window.pod_increase`'s baseline for a window that
    starts at or after ``cutoff`` (the last scrape at or before its start). Alone, it
    goes too: a pod silent since before ``cutoff`` would count, on its return, all
    it served since then in a window that starts long after.
    """
    while scrapes and scrapes[0].at < cutoff and (len(scrapes) == 1 or scrapes[1].at < cutoff):
        scrapes.popleft()


@dataclass
class _PodHistory:
    """One pod's past scrapes, each split in two parts kept for different times."""

    last_seen: float
    #: Every series but ground truth, kept for the health window.
    recent: deque[Scrape] = field(default_factory=deque)
    #: The ground-truth series alone, kept for the labels window (or the health one, if longer).
    truth: deque[Scrape] = field(default_factory=deque)
    #: The last scrape's keys: equal keys of the next scrape share these tuples and
    #: strings instead of holding their own copies (most of a kept sample's bytes).
    keys: dict[SeriesKey, SeriesKey] = field(default_factory=dict)

    def add(self, scrape: Scrape) -> None:
        """Keep a scrape unless it is older than the last one kept.

        The health loop and the rollouts share the source and stamp their scrapes with
        the time each collection began, not when the sidecar answered: a read stamped
        later may be the older one. Its counters would go down, a reset to
        :func:`~vigil.core.window.pod_increase` (the pod's whole life counted anew),
        though the sidecar's start time says the same process answered both.
        """
        if scrape.at < self.last_seen:
            return  # another reader's later scrape came in first: it holds all of this one
        last = self.recent[-1] if self.recent else None
        same_process = (
            last is not None
            and scrape.started_at is not None
            and scrape.started_at == last.started_at
        )
        last_health = last.values if last is not None else _NO_SERIES
        last_truth = self.truth[-1].values if self.truth else _NO_SERIES
        known = self.keys
        keys: dict[SeriesKey, SeriesKey] = {}
        health: dict[SeriesKey, float] = {}
        truth: dict[SeriesKey, float] = {}
        for key, value in scrape.values.items():
            key = keys[key] = known.get(key, key)
            if key[0] in SERVED_REVISION_FAMILIES:
                truth[key] = value
                before = last_truth.get(key)
            else:
                health[key] = value
                before = last_health.get(key)
            decreased = before is not None and value < before and key[0] not in GAUGE_SUMS
            if same_process and decreased:
                return  # read before the last one kept: that one holds all of it
        self.keys = keys
        self.recent.append(Scrape(scrape.at, scrape.started_at, health))
        self.truth.append(Scrape(scrape.at, scrape.started_at, truth or _NO_SERIES))
        self.last_seen = scrape.at


@dataclass(frozen=True)
class ProfileSplit:
    """A revision's counted pods, by the reference profile each read (a profile edited in
    place: each sidecar bins by the one it read at its start)."""

    counted: list[str]
    #: The pods that read another profile than the current one, with the digest each read.
    other: dict[str, str]

    @property
    def kept(self) -> list[str]:
        """The pods that read the current profile."""
        return [pod for pod in self.counted if pod not in self.other]


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
        #: How long each revision's scrapes are kept, as its collections asked
        #: (whole scrapes but ground truth, ground truth), with when each last asked.
        self._asks: dict[RevisionKey, dict[tuple[float, float], float]] = {}
        #: Per collection under way, the ModelDeployments forgotten since it began: its
        #: scrapes of them, answered after, are not kept.
        self._forgotten_during: list[set[tuple[str, str]]] = []

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=None)
        return aiohttp.ClientSession(connector=connector, timeout=self.timeout)

    async def close(self) -> None:
        await self._http.close()

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        session = self._http.get()
        url = f"http://{host_port(pod.ip, pod.port)}/metrics"
        try:
            async with session.get(url, timeout=self.timeout) as response:
                if response.status != 200:
                    return f"{pod.name}: HTTP {response.status}"
                body = await response.text()
            values, started_at = parse_sidecar_metrics(body)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return f"{pod.name}: {type(error).__name__} {error}".strip()
        except (ValueError, IndexError) as error:  # not a sidecar's text (nor UTF-8)
            return f"{pod.name}: unreadable metrics: {error}"
        return Scrape(at=now, started_at=started_at, values=values)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every scrape of a deleted ModelDeployment's pods: its revisions are hashes
        of its spec, so one created again under its name would count them as its own."""
        for key in [k for k in self._history if k[0][:2] == (namespace, name)]:
            del self._history[key]
        for revision in [k for k in self._asks if k[:2] == (namespace, name)]:
            del self._asks[revision]
        for forgotten in self._forgotten_during:
            forgotten.add((namespace, name))

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        forgotten: set[tuple[str, str]] = set()
        self._forgotten_during.append(forgotten)
        try:
            return await self._collect(targets, now, forgotten)
        finally:
            self._forgotten_during.remove(forgotten)

    async def _collect(
        self, targets: Sequence[RevisionTarget], now: float, forgotten: set[tuple[str, str]]
    ) -> Collection:
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
            if target.key[:2] in forgotten:  # deleted while its sidecars answered
                result.errors[target.key] = "the ModelDeployment was deleted"
                continue
            failures = []
            for pod_name, scraped in pod_results:
                result.scrapes += 1
                if isinstance(scraped, str):
                    result.scrape_failures += 1
                    failures.append(scraped)
                    continue
                history = self._history.setdefault((target.key, pod_name), _PodHistory(now))
                history.add(scraped)
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
            # Labels over their own (longer) window of arrival: ground-truth series only.
            everyone.append(pod_increase(history.truth, labels_start))
            if key == target.key and history.last_seen >= start:
                own.append(pod_increase(history.recent, start))
        series = add_series(own)  # no ground truth in it: that is counted by served revision
        # Labels are counted where the prediction is, against the revision that served
        # it: the ModelDeployment's scraped pods, this revision's series.
        series.update(served_by(add_series(everyone), target.revision))
        return RevisionWindow.from_series(series, pods=answered)

    def kept_since(self, key: RevisionKey, labels: bool = False) -> float | None:
        """When the oldest scrape kept of the revision's pods was taken (``labels``: of its
        ground-truth part); None when none is kept. A window reaching back further than
        that has figures for part of it only (a restart, or a window made longer)."""
        kept = [
            part[0].at
            for (revision, _), history in self._history.items()
            if revision == key and (part := history.truth if labels else history.recent)
        ]
        return min(kept, default=None)

    def counted_pods(self, target: RevisionTarget, now: float) -> list[str]:
        """The pods, by name, whose counts :meth:`collect` adds up in ``target``'s health
        window at ``now`` (gone ones too, for the part of the window they were alive)."""
        start = now - target.window_seconds
        return sorted(
            pod
            for (key, pod), history in self._history.items()
            if key == target.key and history.last_seen >= start
        )

    def split_by_profile(
        self, target: RevisionTarget, now: float, read_by: Callable[[str], str], current: str
    ) -> ProfileSplit:
        """``target``'s counted pods (:meth:`counted_pods`) split by the reference profile
        each read (``read_by``: its digest, "" when not said: counted as the current one)."""
        counted = self.counted_pods(target, now)
        other = {pod: read for pod in counted if (read := read_by(pod)) not in ("", current)}
        return ProfileSplit(counted, other)

    def pods_window(
        self, target: RevisionTarget, now: float, pods: Container[str]
    ) -> RevisionWindow:
        """``target``'s health window at ``now`` counted on ``pods`` alone (no ground truth).

        For the health loop's drift after a reference profile edited in place:
        each sidecar bins its inputs by the profile it read at its start, so
        only the pods that read the current one count. :meth:`collect` still
        gives every reader (the rollouts too) the whole revision's window.
        """
        start = now - target.window_seconds
        own = [
            pod_increase(history.recent, start)
            for (key, pod), history in self._history.items()
            if key == target.key and history.last_seen >= start and pod in pods
        ]
        return RevisionWindow.from_series(add_series(own), pods=len(own))

    def _forget_old(self, targets: Sequence[RevisionTarget], now: float) -> None:
        """Drop scrapes older than their window (plus the baseline margin).

        Whole scrapes (but ground truth) go after the health window; their ground-truth
        series after the labels window. One source serves every ModelDeployment, the
        health loop and the rollouts: each revision keeps its scrapes as long as the
        longest window any collection asked for lately (:data:`ASK_SECONDS`).
        """
        for t in targets:
            self._asks.setdefault(t.key, {})[(t.window_seconds, t.retention_seconds)] = now
        retention: dict[RevisionKey, tuple[float, float]] = {}
        for key, asks in list(self._asks.items()):
            live = {a: at for a, at in asks.items() if at >= now - max(ASK_SECONDS, a[1])}
            if live:
                self._asks[key] = live
                retention[key] = (max(h for h, _ in live), max(lab for _, lab in live))
        for key in list(self._history):
            history = self._history[key]
            health, labels = retention.get(key[0], (0.0, 0.0))
            _trim(history.recent, now - health - EXTRA_RETENTION_SECONDS)
            _trim(history.truth, now - labels - EXTRA_RETENTION_SECONDS)
            if history.last_seen < now - labels - EXTRA_RETENTION_SECONDS:
                del self._history[key]
        kept = {key for key, _ in self._history} | {t.key for t in targets}
        self._asks = {k: v for k, v in self._asks.items() if k in kept and k in retention}
