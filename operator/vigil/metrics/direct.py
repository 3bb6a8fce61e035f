"""The ``direct`` source: the operator scrapes every sidecar itself.

No Prometheus needed. Each cycle it GETs ``http://<pod IP>:<metrics port>/metrics``
for every pod of every revision (bounded concurrency, short timeout), keeps
the recent scrapes of each pod in memory, and computes each revision's
window: per-pod increases (counter resets and restarts handled, see
:func:`~vigil.core.window.pod_increase`), summed over the pods. A pod that
went away still counts for the part of the window it was alive; its
scrapes are dropped once they are older than the window. A pod being
deleted (``RevisionTarget.leaving``) is scraped while it answers: what it
served since its last scrape counts; its silence is no failure. A running
pod's sidecar that does not answer is skipped and counted (``unanswered``
names it); one silent for longer than the window counts again from its return.

Two windows, two retentions: the health window (minutes) reads every
series but ground truth; the labels window (an hour by default) reads only
the ground-truth series (:data:`~vigil.core.window.SERVED_REVISION_FAMILIES`).
So each scrape is kept in two parts: all of it but ground truth for the
health window, its ground-truth series for the labels window. Keeping whole
scrapes for the hour (feature bins, latency buckets) cost 11-30 MB per pod.

Windows may be days long: past a pod's newest :data:`DENSE` scrapes, each part
keeps one checkpoint per :data:`CHECKPOINTS`-th of its longest window (the last
scrape before each), so a pod costs the same whatever the window. Dropping a
scrape of a process whose counters only grew changes no increase; one next to a
reset leaves its growth to the checkpoint after it (:func:`_merge`).

Ground truth is kept as long as any revision of the ModelDeployment asks: labels
are counted on every pod of it, and a candidate promoted is judged at once over
the stable's performance window, though the rollout asked for its steps alone.

A sidecar that names another revision than the pod's (the pod's IP reused by
another pod) is a failed scrape of that pod, not a counter reset.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import aiohttp

from vigil.common.uris import host_port
from vigil.core.events import shorten
from vigil.core.window import (
    GAUGE_SUMS,
    SERVED_REVISION_FAMILIES,
    START_TIME_METRIC,
    RevisionWindow,
    Scrape,
    SeriesKey,
    add_series,
    growth,
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

#: Checkpoints per longest window a part of a pod's scrapes is read over, past the newest
#: DENSE: a window starts at the last one at or before it, up to window/CHECKPOINTS (and a
#: scrape interval) early, so it counts that much more at its start (30 s of an hour, 12 min
#: of a day). Bounds a pod's kept scrapes to about DENSE + CHECKPOINTS whatever the window.
CHECKPOINTS = 120

#: The newest scrapes of a pod, every one kept: a rollout step's window starts among them.
DENSE = 60

#: How often the ModelDeployments no collection names are trimmed too.
SWEEP_SECONDS = 60.0

#: The ground-truth part of a scrape without labels (no feedback): one shared empty mapping.
_NO_SERIES: Mapping[SeriesKey, float] = MappingProxyType({})

#: The start of the line of the sidecar's start time; its labels name whom it serves.
_START_LINE = START_TIME_METRIC + "{"

#: A label and its value (model names and revisions hold no quote nor escape).
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')

ModelKey = tuple[str, str]
HistoryKey = tuple[RevisionKey, str]


def _trim(scrapes: deque[Scrape], cutoff: float) -> None:
    """Drop the scrapes before ``cutoff`` but the last of them, while a later one follows.

    That one is :func:`~vigil.core.window.pod_increase`'s baseline for a window that
    starts at or after ``cutoff`` (the last scrape at or before its start). Alone, it
    goes too: a pod silent since before ``cutoff`` would count, on its return, all
    it served since then in a window that starts long after.
    """
    while scrapes and scrapes[0].at < cutoff and (len(scrapes) == 1 or scrapes[1].at < cutoff):
        scrapes.popleft()


def _spacing(window: float) -> float:
    """The time between the checkpoints of a part read over ``window`` at the longest."""
    return max(window, EXTRA_RETENTION_SECONDS) / CHECKPOINTS


def _merge(before: Scrape, dropped: Scrape, after: Scrape) -> Scrape:
    """``after``, standing for ``dropped`` too: the same growth since ``before``."""
    if dropped.continues and after.continues:
        return after  # one process, its counters only grew: after's minus before's says it
    step = growth(before, dropped)
    for key, value in growth(dropped, after).items():
        step[key] = step.get(key, 0.0) + value
    return replace(after, step=step, continues=False)


def _thin(scrapes: deque[Scrape], spacing: float, first: int) -> None:
    """From ``first`` on, past the newest :data:`DENSE`, keep the last scrape at or before
    each multiple of ``spacing`` and merge the others into the next one kept.

    The oldest stays whatever its time: the baseline of the longest window.
    """
    i = max(first, 2)
    while spacing > 0 and i < len(scrapes) - DENSE:
        if math.ceil(scrapes[i - 1].at / spacing) == math.ceil(scrapes[i].at / spacing):
            scrapes[i] = _merge(scrapes[i - 2], scrapes[i - 1], scrapes[i])
            del scrapes[i - 1]
        else:
            i += 1


@dataclass
class _PodHistory:
    """One pod's past scrapes, each split in two parts kept for different times."""

    last_seen: float
    #: Every series but ground truth, kept for the health window.
    recent: deque[Scrape] = field(default_factory=deque)
    #: The ground-truth series alone, kept for the labels window.
    truth: deque[Scrape] = field(default_factory=deque)
    #: The last scrape's keys: equal keys of the next scrape share these tuples and
    #: strings instead of holding their own copies (most of a kept sample's bytes).
    keys: dict[SeriesKey, SeriesKey] = field(default_factory=dict)
    #: The spacing of each part's checkpoints (:func:`_spacing`; 0: every scrape kept).
    spacing: tuple[float, float] = (0.0, 0.0)

    def space(self, recent: float, truth: float) -> None:
        """Space the checkpoints for the parts' longest windows now; those already spaced
        closer (a window made longer) are thinned again."""
        if recent > self.spacing[0]:
            _thin(self.recent, recent, 2)
        if truth > self.spacing[1]:
            _thin(self.truth, truth, 2)
        self.spacing = (recent, truth)

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
        if not same_process and _restarted_since(self.recent, scrape.started_at):
            # Read before the newer process's scrape kept: taken as another restart, the old
            # process's whole life was counted again.
            return
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
        # Counters down were refused above: the same process with no series gone continues.
        continues = same_process and last_health.keys() <= health.keys()
        self.recent.append(Scrape(scrape.at, scrape.started_at, health, continues=continues))
        continues = same_process and last_truth.keys() <= truth.keys()
        self.truth.append(
            Scrape(scrape.at, scrape.started_at, truth or _NO_SERIES, continues=continues)
        )
        _thin(self.recent, self.spacing[0], len(self.recent) - DENSE - 1)
        _thin(self.truth, self.spacing[1], len(self.truth) - DENSE - 1)
        self.last_seen = scrape.at


def _restarted_since(kept: Sequence[Scrape], started_at: float | None) -> bool:
    """Whether the process that started at ``started_at`` was kept before, then another
    one (a scrape without a start time says nothing either way)."""
    other = False
    for scrape in reversed(kept):
        if started_at is not None and scrape.started_at == started_at:
            return other
        other = other or scrape.started_at is not None
    return False


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


@dataclass(frozen=True)
class Answer(Scrape):
    """A scrape as the sidecar answered it, with whom it says it serves ("": not said)."""

    model: str = ""
    revision: str = ""


def _said(body: str) -> dict[str, str]:
    """The labels of the sidecar's start time, which name whom it serves ({}: no such line)."""
    if body.startswith(_START_LINE):
        at = 0
    elif (at := body.find("\n" + _START_LINE)) >= 0:
        at += 1
    else:
        return {}
    return dict(_LABEL.findall(body, at + len(_START_LINE), body.find("}", at)))


def parse_answer(body: str, now: float) -> Answer:
    """A sidecar's ``/metrics`` text, read at ``now``: its series, its start time, and the
    model and revision its own series name (its ground truth's name the serving one)."""
    values, started_at = parse_sidecar_metrics(body)
    said = _said(body)
    return Answer(
        now, started_at, values, model=said.get("model", ""), revision=said.get("revision", "")
    )


def _answered_for(target: RevisionTarget, pod: PodTarget, scraped: Scrape | str) -> Scrape | str:
    """``scraped``, or why it is not ``pod``'s: another revision's sidecar answered at its IP
    (the pod gone and its IP given to another pod) counts as that pod not answering."""
    if not isinstance(scraped, Answer) or scraped.revision in ("", target.revision):
        return scraped
    return (
        f"{pod.name}: another sidecar answers at {host_port(pod.ip, pod.port)} (model "
        f"{scraped.model or '?'}, revision {scraped.revision}, not {target.revision}): "
        "the pod's IP is another pod's"
    )


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
        self._history: dict[HistoryKey, _PodHistory] = {}
        #: The same histories by ModelDeployment: a target reads its own pods' alone.
        self._by_model: dict[ModelKey, dict[HistoryKey, _PodHistory]] = {}
        #: How long each ModelDeployment's scrapes are kept, as its collections asked:
        #: (revision, health window, labels window), with when each last asked.
        self._asks: dict[ModelKey, dict[tuple[str, float, float], float]] = {}
        #: When every ModelDeployment's scrapes were last trimmed, named by a collection or not.
        self._swept = -math.inf
        #: Per collection under way, the ModelDeployments forgotten since it began: its
        #: scrapes of them, answered after, are not kept.
        self._forgotten_during: list[set[ModelKey]] = []

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
            return parse_answer(body, now)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return f"{pod.name}: {type(error).__name__} {error}".strip()
        except (ValueError, IndexError) as error:  # not a sidecar's text (nor UTF-8)
            return f"{pod.name}: unreadable metrics: {error}"

    def _histories(self, model: ModelKey) -> Iterator[tuple[HistoryKey, _PodHistory]]:
        """The histories of a ModelDeployment's pods, every revision's."""
        return iter(self._by_model.get(model, {}).items())

    def _pod_history(self, key: RevisionKey, pod: str, now: float) -> _PodHistory:
        history = self._history.get((key, pod))
        if history is None:
            history = self._history[(key, pod)] = _PodHistory(now)
            self._by_model.setdefault(key[:2], {})[(key, pod)] = history
        return history

    def _drop(self, key: HistoryKey) -> None:
        self._history.pop(key, None)
        histories = self._by_model.get(key[0][:2], {})
        histories.pop(key, None)
        if not histories:
            self._by_model.pop(key[0][:2], None)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every scrape of a deleted ModelDeployment's pods: its revisions are hashes
        of its spec, so one created again under its name would count them as its own."""
        for key in [k for k in self._history if k[0][:2] == (namespace, name)]:
            del self._history[key]
        self._by_model.pop((namespace, name), None)
        self._asks.pop((namespace, name), None)
        for forgotten in self._forgotten_during:
            forgotten.add((namespace, name))

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        forgotten: set[ModelKey] = set()
        self._forgotten_during.append(forgotten)
        try:
            return await self._collect(targets, now, forgotten)
        finally:
            self._forgotten_during.remove(forgotten)

    async def _collect(
        self, targets: Sequence[RevisionTarget], now: float, forgotten: set[ModelKey]
    ) -> Collection:
        result = Collection()
        # Before this cycle's scrapes join: a pod last scraped long ago (in an earlier
        # rollout) would otherwise use that old scrape as its window's baseline.
        self._forget_old(targets, now)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def scrape(target: RevisionTarget, pod: PodTarget) -> tuple[str, Scrape | str]:
            async with semaphore:
                return pod.name, _answered_for(target, pod, await self._scrape(pod, now))

        jobs = [
            (t, asyncio.gather(*(scrape(t, p) for p in (*t.pods, *t.leaving)))) for t in targets
        ]
        answered: dict[RevisionKey, int] = {}
        outcomes = await asyncio.gather(*(job for _, job in jobs))
        for (target, _), pod_results in zip(jobs, outcomes, strict=True):
            if target.key[:2] in forgotten:  # deleted while its sidecars answered
                result.errors[target.key] = "the ModelDeployment was deleted"
                continue
            failures = []
            for index, (pod_name, scraped) in enumerate(pod_results):
                result.scrapes += 1
                if isinstance(scraped, str):
                    if index < len(target.pods):  # a leaving pod's sidecar may have stopped
                        result.scrape_failures += 1
                        failures.append(scraped)
                    continue
                self._pod_history(target.key, pod_name, now).add(scraped)
            answered[target.key] = len(target.pods) - len(failures)
            if target.pods and answered[target.key] == 0:
                result.errors[target.key] = (
                    f"no sidecar answered ({len(target.pods)} pods): {failures[0]}"
                )
            elif not target.pods:
                result.errors[target.key] = "the revision has no running pods to scrape"
            elif failures:
                result.unanswered[target.key] = shorten(
                    f"{answered[target.key]} of {len(target.pods)} sidecars answered; {failures[0]}"
                    + (f" and {len(failures) - 1} more" if failures[1:] else ""),
                    300,
                )
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
        for (key, _), history in self._histories(target.key[:2]):
            if history.last_seen < min(start, labels_start):
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
            for (revision, _), history in self._histories(key[:2])
            if revision == key and (part := history.truth if labels else history.recent)
        ]
        return min(kept, default=None)

    def counted_pods(self, target: RevisionTarget, now: float) -> list[str]:
        """The pods, by name, whose counts :meth:`collect` adds up in ``target``'s health
        window at ``now`` (gone ones too, for the part of the window they were alive)."""
        start = now - target.window_seconds
        return sorted(
            pod
            for (key, pod), history in self._histories(target.key[:2])
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
            for (key, pod), history in self._histories(target.key[:2])
            if key == target.key and history.last_seen >= start and pod in pods
        ]
        return RevisionWindow.from_series(add_series(own), pods=len(own))

    def _forget_old(self, targets: Sequence[RevisionTarget], now: float) -> None:
        """Drop scrapes older than their window (plus the baseline margin); space the rest.

        Whole scrapes (but ground truth) go after the health window; their ground-truth
        series, read by the labels window alone, after it. One source serves every
        ModelDeployment, the health loop and the rollouts: a revision keeps its whole
        scrapes as long as the longest window any collection asked of it lately
        (:data:`ASK_SECONDS`), every pod of a ModelDeployment its ground truth as long as
        asked of any of its revisions. The ModelDeployments collected are trimmed now,
        the others every :data:`SWEEP_SECONDS`: a collection's work grows with its own
        pods only.
        """
        for target in targets:
            self._ask(target, now)
        collected = {t.key[:2] for t in targets}
        models = set(collected)
        if now >= self._swept + SWEEP_SECONDS:
            self._swept = now
            models.update(self._asks, self._by_model)
        for model in models:
            self._trim_model(model, now, model in collected)

    def _ask(self, target: RevisionTarget, now: float) -> None:
        """Note how long ``target``'s scrapes are to be kept. An ask no longer and no later
        than another changes nothing and goes: a rollout's window grows every collection."""
        asks = self._asks.setdefault(target.key[:2], {})
        ask = (target.revision, target.window_seconds, target.labels_window)
        at = max(now, asks.get(ask, now))
        covered = [
            other
            for other, when in asks.items()
            if other[0] == ask[0] and other[1] <= ask[1] and other[2] <= ask[2] and when <= at
        ]
        for other in covered:
            del asks[other]
        asks[ask] = at

    def _trim_model(self, model: ModelKey, now: float, collected: bool) -> None:
        """Trim and space one ModelDeployment's histories by what its collections asked."""
        asks = {
            ask: at
            for ask, at in self._asks.get(model, {}).items()
            if at >= now - max(ASK_SECONDS, ask[1], ask[2])
        }
        whole: dict[str, float] = {}
        for revision, window, _ in asks:
            whole[revision] = max(window, whole.get(revision, 0.0))
        # Labels of one revision's predictions are counted on every pod of the model
        # (a promoted candidate's, counted during its rollout, among them).
        truth = max((ask[2] for ask in asks), default=0.0)
        for key, history in list(self._histories(model)):
            kept = whole.get(key[0][2], 0.0)
            _trim(history.recent, now - kept - EXTRA_RETENTION_SECONDS)
            _trim(history.truth, now - truth - EXTRA_RETENTION_SECONDS)
            if history.last_seen < now - max(kept, truth) - EXTRA_RETENTION_SECONDS:
                self._drop(key)
            else:
                history.space(_spacing(kept), _spacing(truth))
        if asks and (collected or model in self._by_model):
            self._asks[model] = asks
        else:
            self._asks.pop(model, None)
