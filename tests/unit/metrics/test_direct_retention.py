"""What the direct source keeps of past scrapes, and that its figures do not depend on it.

Whole scrapes are kept for the health window only; past it, only their
ground-truth series, for the labels window (an hour by default). The
figures must stay those of the old rule, every series of every scrape kept:
:func:`old_rule_window` computes them from every scrape ever taken.

The source's HTTP GET is replaced by the cycle's exposition text, read by
the real parser (the HTTP side is covered in ``test_metrics_sources.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from vigil.core.window import (
    SERVED_REVISION_FAMILIES,
    RevisionWindow,
    Scrape,
    SeriesKey,
    add_series,
    pod_increase,
    served_by,
)
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import EXTRA_RETENTION_SECONDS, DirectSource
from vigil.metrics.exposition import parse_sidecar_metrics

INTERVAL = 30.0
HEALTH_WINDOW = 300.0
LABELS_WINDOW = 3600.0
BINS = 12
LATENCY = ("0.01", "0.1", "1.0", "+Inf")
DELAYS = ("60.0", "600.0", "3600.0", "+Inf")


class Pod:
    """One sidecar's counters; each scrape they grow by a seeded random amount."""

    def __init__(self, name: str, revision: str, features: int, seed: int) -> None:
        self.name = name
        self.revision = revision
        self.features = features
        self.random = random.Random(seed)
        self.started_at = 1.0
        self.scraped = 0
        self.counts: dict[str, float] = {}
        self.gauge = 0.0
        #: The revisions whose predictions this pod's labels are counted for.
        self.served = [revision]

    def grow(self, line: str, most: int = 5) -> str:
        self.counts[line] = self.counts.get(line, 0) + self.random.randint(0, most)
        return f"{line} {self.counts[line]}"

    def restart(self, at: float) -> None:
        self.started_at = at
        self.counts.clear()

    def text(self, labels_from: float, now: float) -> str:
        self.scraped += 1
        base = f'model="wine",version="1",revision="{self.revision}",role="stable"'
        lines = [f"vigil_sidecar_start_time_seconds{{{base}}} {self.started_at}"]
        for origin in ("live", "shadow"):
            infer = f'{base},endpoint="infer",origin="{origin}"'
            for outcome in ("success", "model_error"):
                lines.append(
                    self.grow(f'vigil_request_outcomes_total{{{infer},outcome="{outcome}"}}')
                )
            cumulative = 0.0
            for le in LATENCY:
                key = f'vigil_request_duration_seconds_bucket{{{infer},le="{le}"}}'
                cumulative = self.counts[key] = max(
                    self.counts.get(key, 0) + self.random.randint(0, 3), cumulative
                )
                lines.append(f"{key} {cumulative}")
        for f in range(self.features):
            # A bin that comes and goes: a series missing from a scrape counts from zero after.
            gone = f == 0 and self.scraped % 10 == 3
            for b in range(1 if gone else 0, BINS):
                lines.append(
                    self.grow(f'vigil_feature_bin_total{{{base},feature="f{f}",bin="{b}"}}')
                )
            lines.append(self.grow(f'vigil_feature_missing_total{{{base},feature="f{f}"}}', 1))
        # A running sum that may go down (negative predictions): never a reset.
        self.gauge += self.random.choice((-2.5, -0.5, 1.0, 3.5))
        lines.append(f"vigil_prediction_value_sum{{{base}}} {self.gauge}")
        if now >= labels_from:
            for served in self.served:
                truth = f'model="wine",version="1",revision="{served}",role="stable"'
                for outcome in ("joined", "unknown"):
                    line = f'vigil_feedback_labels_total{{{truth},outcome="{outcome}"}}'
                    lines.append(self.grow(line))
                for klass in ("0", "1"):
                    line = f'vigil_feedback_scored_total{{{truth},class="{klass}"}}'
                    lines.append(self.grow(line))
                    lines.append(
                        self.grow(f'vigil_feedback_correct_total{{{truth},class="{klass}"}}', 2)
                    )
                for le in DELAYS:
                    lines.append(
                        self.grow(f'vigil_feedback_label_delay_seconds_bucket{{{truth},le="{le}"}}')
                    )
        lines.append('vigil_model_info{model="wine",protocol="v2"} 1')  # not read
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Taken:
    """A scrape as taken, whole, and its ground-truth series alone: the labels window
    reads only those, and each series' increase depends on no other series."""

    whole: Scrape
    truth: Scrape

    @property
    def at(self) -> float:
        return self.whole.at


TakenScrapes = dict[tuple[tuple[str, str, str], str], list[Taken]]


class FedSource(DirectSource):
    """A direct source whose GET returns the pod's text; keeps every scrape for the old rule."""

    def __init__(self, pods: Iterable[Pod], labels_from: float = 0.0) -> None:
        super().__init__()
        self.pods = {pod.name: pod for pod in pods}
        self.labels_from = labels_from
        #: Every scrape ever taken, per (revision, pod), whole, never trimmed.
        self.taken: TakenScrapes = {}

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        sidecar = self.pods[pod.name]
        values, started_at = parse_sidecar_metrics(sidecar.text(self.labels_from, now))
        scrape = Scrape(at=now, started_at=started_at, values=values)
        truth = {k: v for k, v in values.items() if k[0] in SERVED_REVISION_FAMILIES}
        taken = Taken(scrape, Scrape(at=now, started_at=started_at, values=truth))
        self.taken.setdefault((("ns", "wine", sidecar.revision), pod.name), []).append(taken)
        return scrape


def old_rule_window(
    taken: TakenScrapes,
    target: RevisionTarget,
    now: float,
    answered: int,
) -> RevisionWindow:
    """The figures of the old rule: every series of every scrape, never trimmed."""
    start, labels_start = now - target.window_seconds, now - target.labels_window
    own: list[dict[SeriesKey, float]] = []
    everyone: list[dict[SeriesKey, float]] = []
    for (key, _), scrapes in taken.items():
        last_seen = scrapes[-1].at
        if key[:2] != target.key[:2] or last_seen < min(start, labels_start):
            continue
        everyone.append(pod_increase([s.truth for s in scrapes], labels_start))
        if key == target.key and last_seen >= start:
            own.append(pod_increase([s.whole for s in scrapes], start))
    series = {k: v for k, v in add_series(own).items() if k[0] not in SERVED_REVISION_FAMILIES}
    series.update(served_by(add_series(everyone), target.revision))
    return RevisionWindow.from_series(series, pods=answered)


def health_targets(pods: dict[str, list[Pod]], labels_window: float | None) -> list[RevisionTarget]:
    return [
        RevisionTarget(
            "ns",
            "wine",
            revision,
            HEALTH_WINDOW,
            tuple(PodTarget(p.name, "10.0.0.1") for p in members),
            labels_window_seconds=labels_window,
        )
        for revision, members in pods.items()
        if members
    ]


async def run_cycles(
    source: FedSource,
    until: float,
    targets_at: Callable[[float], list[RevisionTarget]],
    each: Callable[[float], None] = lambda now: None,
    compare: bool = True,
) -> int:
    """Collect every INTERVAL from 0 to ``until``; compare every window with the old rule's."""
    compared = 0
    now = 0.0
    while now <= until:
        each(now)
        targets = targets_at(now)
        windows = (await source.collect(targets, now)).windows
        for target in targets if compare else ():
            expected = old_rule_window(source.taken, target, now, len(target.pods))
            assert windows[target.key] == expected, (now, target.key)
            compared += 1
        now += INTERVAL
    return compared


def scrapes_kept(source: DirectSource) -> list[Scrape]:
    """Every scrape (or part of one) the source holds: each deque of its pods' histories."""
    return [
        scrape
        for history in source._history.values()
        for part in vars(history).values()
        if isinstance(part, deque)
        for scrape in part
    ]


def kept(source: DirectSource) -> tuple[int, int, int]:
    """(scrapes, samples, ground-truth samples) the source holds, over every pod's history."""
    scrapes = scrapes_kept(source)
    samples = sum(len(s.values) for s in scrapes)
    truth = sum(1 for s in scrapes for k in s.values if k[0] in SERVED_REVISION_FAMILIES)
    return len(scrapes), samples, truth


class TestFiguresMatchTheOldRule:
    @pytest.mark.slow
    async def test_health_and_labels_windows_over_ninety_minutes_of_a_rollout(self) -> None:
        # Two pods of r1; r2's pod starts at 30 min and counts labels of r1's predictions
        # too (a handoff); one r1 pod restarts (counters reset), the other goes away.
        a, b, c = Pod("a", "r1", 3, 1), Pod("b", "r1", 3, 2), Pod("c", "r2", 3, 3)
        c.served = ["r2", "r1"]
        source = FedSource([a, b, c], labels_from=600.0)

        def targets_at(now: float) -> list[RevisionTarget]:
            r1 = [p for p in (a, b) if not (p is a and now >= 3000)]
            r2 = [c] if now >= 1800 else []
            return health_targets({"r1": r1, "r2": r2}, LABELS_WINDOW)

        def each(now: float) -> None:
            if now == 2400:
                b.restart(now - 5)

        compared = await run_cycles(source, 5400, targets_at, each)
        assert compared > 250

    @pytest.mark.slow
    async def test_a_labels_window_shorter_than_the_health_window(self) -> None:
        pod = Pod("a", "r1", 3, 4)
        source = FedSource([pod])
        targets = [
            RevisionTarget(
                "ns", "wine", "r1", 900, (PodTarget("a", "10.0.0.1"),), labels_window_seconds=600
            )
        ]
        assert await run_cycles(source, 3000, lambda now: targets) > 90

    @pytest.mark.slow
    async def test_a_rollout_steps_growing_window_with_no_labels_window(self) -> None:
        # The rollout's targets: the window runs from the step's start and grows each
        # cycle; the labels window is the same (None). Steps of 10 minutes.
        pod = Pod("a", "r1", 3, 5)
        source = FedSource([pod])

        def targets_at(now: float) -> list[RevisionTarget]:
            evidence = max(10.0, now - (now // 600) * 600 + 0.35)
            return [RevisionTarget("ns", "wine", "r1", evidence, (PodTarget("a", "10.0.0.1"),))]

        assert await run_cycles(source, 3000, targets_at) > 90


class TestWhatIsKept:
    async def hour_of(self, features: int) -> tuple[FedSource, tuple[int, int, int]]:
        pod = Pod("a", "r1", features, 6)
        source = FedSource([pod])
        targets = health_targets({"r1": [pod]}, LABELS_WINDOW)
        hour = LABELS_WINDOW + EXTRA_RETENTION_SECONDS
        await run_cycles(source, hour, lambda now: targets, compare=False)
        return source, kept(source)

    @pytest.mark.slow
    async def test_after_an_hour_feature_bins_are_kept_for_the_health_window_only(self) -> None:
        _, (_, samples_few, truth_few) = await self.hour_of(3)
        _, (_, samples_more, truth_more) = await self.hour_of(13)
        # Each feature adds BINS + 1 series per scrape (bins, missing), in the scrapes the
        # health window needs: its length and margin, the baseline before it, this one.
        whole_scrapes = int((HEALTH_WINDOW + EXTRA_RETENTION_SECONDS) / INTERVAL) + 2
        assert samples_more - samples_few == (13 - 3) * (BINS + 1) * whole_scrapes
        # Ground truth (10 series a scrape here) is kept for the hour and its margin.
        hour = int((LABELS_WINDOW + EXTRA_RETENTION_SECONDS) / INTERVAL) + 1
        assert truth_more == truth_few == 10 * hour

    async def test_past_the_health_window_only_ground_truth_series_are_kept(self) -> None:
        source, _ = await self.hour_of(3)
        last = LABELS_WINDOW + EXTRA_RETENTION_SECONDS
        # Older than the health window, its margin and the baseline scrape before them.
        older = last - HEALTH_WINDOW - EXTRA_RETENTION_SECONDS - INTERVAL
        old = [scrape for scrape in scrapes_kept(source) if scrape.at < older]
        assert len(old) == older / INTERVAL
        assert all(key[0] in SERVED_REVISION_FAMILIES for s in old for key in s.values)

    @pytest.mark.slow
    async def test_a_series_in_consecutive_scrapes_keeps_one_copy_of_its_key(self) -> None:
        # Parsed anew each scrape, a key's tuples and strings were most of a sample's bytes.
        source, _ = await self.hour_of(3)
        shared = 0
        for history in source._history.values():
            for part in vars(history).values():
                if not isinstance(part, deque):
                    continue
                for before, after in itertools.pairwise(part):
                    keys = dict(zip(before.values, before.values, strict=True))
                    for key in after.values:
                        if key in keys:
                            assert keys[key] is key
                            shared += 1
        assert shared > 1000


class SilentSource(FedSource):
    """The pod keeps serving (its counters grow) while its scrapes fail for a while."""

    def __init__(self, pod: Pod, silent: tuple[float, float]) -> None:
        super().__init__([pod])
        self.silent = silent

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        scraped = await super()._scrape(pod, now)
        return "a: timeout" if self.silent[0] <= now < self.silent[1] else scraped


class TestAPodSilentPastTheWindow:
    async def test_its_return_counts_nothing_from_before_the_window(self) -> None:
        # Silent for 20 minutes (the health window is 5): the scrape before the silence is
        # no baseline for a window that starts 15 minutes after it.
        pod = Pod("a", "r1", 1, 7)
        source = SilentSource(pod, (600.0, 1800.0))
        targets = health_targets({"r1": [pod]}, LABELS_WINDOW)

        await run_cycles(source, 570, lambda now: targets, compare=False)
        for now in (600.0, 900.0, 1500.0):
            await source.collect(targets, now)
        back = (await source.collect(targets, 1800.0)).windows[targets[0].key]
        assert back.requests == 0
        after = (await source.collect(targets, 1830.0)).windows[targets[0].key]
        one_scrape = old_rule_window(
            {k: v[-2:] for k, v in source.taken.items()}, targets[0], 1830.0, 1
        )
        assert 0 < after.requests == one_scrape.requests


class HeldSource(FedSource):
    """A collection at ``held`` reads its pod at once, then waits (its other pods are slow)."""

    def __init__(self, pod: Pod, held: float) -> None:
        super().__init__([pod])
        self.held = held
        self.release = asyncio.Event()

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        scraped = await super()._scrape(pod, now)
        if now == self.held:
            await self.release.wait()
        return scraped


class TestOneSourceForTheHealthLoopAndTheRollouts:
    """The operator's health loop and its rollouts read the sidecars through one source
    (a sidecar hands over what no read has returned: two readers would each miss some)."""

    @pytest.mark.slow
    async def test_a_rollouts_short_windows_keep_the_health_loops_history(self) -> None:
        # The health loop every 30 s (5-minute window, an hour of labels); a rollout's
        # growing step window 10 s after each, without a labels window of its own.
        pod = Pod("a", "r1", 2, 8)
        source = FedSource([pod], labels_from=0.0)
        health = health_targets({"r1": [pod]}, LABELS_WINDOW)
        compared = 0
        for now in range(0, 5400, 30):
            evidence = max(10.0, now % 600 + 10.35)
            rollout = [RevisionTarget("ns", "wine", "r1", evidence, health[0].pods)]
            for targets, at in ((health, float(now)), (rollout, now + 10.0)):
                windows = (await source.collect(targets, at)).windows
                expected = old_rule_window(source.taken, targets[0], at, 1)
                assert windows[targets[0].key] == expected, (at, targets[0].window_seconds)
                compared += 1
        assert compared == 360

    @pytest.mark.slow
    async def test_a_promoted_candidates_labels_count_over_the_stables_performance_window(
        self,
    ) -> None:
        # 70 minutes of a canary: the rollout reads both revisions over its 10-minute steps,
        # the health loop the stable over an hour of labels. Promoted, the candidate is
        # judged at once over that hour: the labels its pod (started before the hour)
        # counted during the rollout's last six steps too, not its last step's alone.
        stable, candidate = Pod("a", "r1", 1, 10), Pod("b", "r2", 1, 11)
        source = FedSource([stable, candidate])
        health = health_targets({"r1": [stable]}, LABELS_WINDOW)
        for now in range(0, 4200, 30):
            evidence = max(10.0, now % 600 + 10.35)
            rollout = health_targets({"r2": [candidate], "r1": [stable]}, None)
            rollout = [dataclasses.replace(t, window_seconds=evidence) for t in rollout]
            await source.collect(health, float(now))
            await source.collect(rollout, now + 10.0)
        promoted = health_targets({"r2": [candidate]}, LABELS_WINDOW)
        window = (await source.collect(promoted, 4200.0)).windows[promoted[0].key]
        assert window == old_rule_window(source.taken, promoted[0], 4200.0, 1)
        assert window.realized.labels > 0

    @pytest.mark.parametrize(
        ("held", "meanwhile"),
        [
            # The health loop's read at 60 s has the pod's text but waits on other pods
            # while a rollout reads it at 61 s: the older read ends last.
            (60.0, 61.0),
            # A rollout's read stamped 61 s waits on its candidate's slow pod; the health
            # loop's, stamped 60 s, reads the pod after it and ends first: the older read
            # is stamped later (the sidecar's start time unchanged).
            (61.0, 60.0),
        ],
    )
    async def test_of_two_overlapping_reads_the_older_is_not_kept(
        self, held: float, meanwhile: float
    ) -> None:
        # Kept after the newer one, its smaller counters would read as a restart: the
        # pod's whole life counted again.
        pod = Pod("a", "r1", 1, 9)
        source = HeldSource(pod, held=held)
        targets = health_targets({"r1": [pod]}, LABELS_WINDOW)
        for now in (0.0, 30.0):
            await source.collect(targets, now)
        slow = asyncio.create_task(source.collect(targets, held))
        while not source.taken or len(next(iter(source.taken.values()))) < 3:
            await asyncio.sleep(0)
        await source.collect(targets, meanwhile)
        source.release.set()
        await slow
        window = (await source.collect(targets, 90.0)).windows[targets[0].key]
        kept = {k: [s for s in v if s.at != held] for k, v in source.taken.items()}
        assert window == old_rule_window(kept, targets[0], 90.0, 1)
        assert window.requests > 0


def test_a_read_of_the_process_before_a_restart_kept_after_the_new_ones_is_not_kept() -> None:
    """The health loop's collection (stamped 100) read the restarted sidecar; a rollout's
    (stamped 101) had read the old process and ended last: kept, it read as another
    restart, and the old process's whole life (90 110 requests, 900 errors) counted in the
    window beside the 40 requests of the new one."""
    from vigil.metrics.direct import _PodHistory

    served = ("vigil_request_outcomes_total", (("origin", "live"), ("outcome", "success")))
    failed = ("vigil_request_outcomes_total", (("origin", "live"), ("outcome", "model_error")))
    history = _PodHistory(0.0)
    history.add(Scrape(40.0, 0.0, {served: 90_000, failed: 900}))
    history.add(Scrape(70.0, 0.0, {served: 90_100, failed: 900}))
    history.add(Scrape(100.0, 103.0, {served: 5, failed: 0}))  # the new process
    history.add(Scrape(101.0, 0.0, {served: 90_110, failed: 900}))  # the old, read at 101.2
    history.add(Scrape(130.0, 103.0, {served: 40, failed: 0}))
    assert [scrape.at for scrape in history.recent] == [40.0, 70.0, 100.0, 130.0]
    increase = pod_increase(history.recent, 35.0)
    assert increase[failed] == 0 and increase[served] == 140
    # A kept scrape without a start time says nothing of a restart: the same process's
    # later reads are kept (refused, the pod's history froze for a window).
    history = _PodHistory(0.0)
    for at, started_at in ((10.0, 5.0), (20.0, None), *((t, 5.0) for t in (30.0, 40.0, 50.0))):
        history.add(Scrape(at, started_at, {served: at, failed: 0}))
    assert [scrape.at for scrape in history.recent] == [10.0, 20.0, 30.0, 40.0, 50.0]
