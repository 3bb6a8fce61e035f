"""Windows of days: what the direct source keeps of a pod, and what it counts.

``monitoring.window`` and ``performance.window`` may be days long. Past a
pod's newest scrapes the source keeps checkpoints (one per 120th of the
longest window read), so a pod costs the same whatever the window. A window
then starts at the last checkpoint before it: up to a spacing and a scrape
interval early, never late, and counter resets between checkpoints (a new
start time, or counters down from a sidecar that gives none) still count.

The reference is the figure of every scrape ever taken
(:func:`~vigil.core.window.pod_increase` over all of them). A pod serves one
request a second, so a window counts its seconds: the checkpoints may add at
most a spacing and an interval of them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vigil.core.window import Scrape, SeriesKey, pod_increase
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import CHECKPOINTS, DENSE, DirectSource

HOUR = 3600.0
DAY = 24 * HOUR
REQ: SeriesKey = ("vigil_request_outcomes_total", (("origin", "live"), ("outcome", "success")))
JOINED: SeriesKey = ("vigil_feedback_labels_total", (("outcome", "joined"), ("revision", "r1")))
SUM: SeriesKey = ("vigil_prediction_value_sum", ())


class Sidecar:
    """One request a second and a label every two since its process started."""

    def __init__(self) -> None:
        self.born = 0.0
        #: Whether it gives its start time (without it, only counters down say a restart).
        self.says_start = True

    def read(self, now: float) -> Scrape:
        up = now - self.born
        values = {REQ: up, JOINED: up // 2, SUM: (now % 7) - 3.0}  # a running sum goes down too
        return Scrape(now, self.born if self.says_start else None, values)


class Fed(DirectSource):
    """A direct source whose pod answers the sidecar's counters; keeps every scrape taken."""

    def __init__(self, sidecar: Sidecar) -> None:
        super().__init__()
        self.sidecar = sidecar
        self.taken: list[Scrape] = []

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        scraped = self.sidecar.read(now)
        if not self.taken or now > self.taken[-1].at:
            self.taken.append(scraped)
        return scraped


def target(window: float, labels: float | None = None) -> RevisionTarget:
    return RevisionTarget(
        "ns", "wine", "r1", window, (PodTarget("a", "10.0.0.1"),), labels_window_seconds=labels
    )


def kept(source: DirectSource) -> tuple[int, int]:
    """(whole scrapes, ground-truth scrapes) kept of the pod."""
    (history,) = source._history.values()
    return len(history.recent), len(history.truth)


def every_scrape(source: Fed, key: SeriesKey, start: float) -> float:
    return pod_increase(source.taken, start).get(key, 0.0)


def assert_counted_from_a_checkpoint(
    source: Fed, key: SeriesKey, figure: float, start: float, early: float
) -> None:
    """``figure`` is every scrape's from ``start``, or from up to ``early`` before it."""
    exact = every_scrape(source, key, start)
    assert exact <= figure <= every_scrape(source, key, start - early), (start, figure, exact)


async def replay(
    source: Fed,
    targets: list[RevisionTarget],
    until: float,
    interval: float,
    each: Callable[[float], None] = lambda now: None,
) -> float:
    now = 0.0
    while now <= until:
        each(now)
        await source.collect(targets, now)
        now += interval
    return now


class TestADaysWindow:
    async def test_keeps_a_bounded_number_of_whole_scrapes_of_a_pod(self) -> None:
        # 24 h at 2 minutes: 720 scrapes. The sidecar restarts every 97 minutes.
        sidecar = Sidecar()
        source = Fed(sidecar)
        health = target(DAY, HOUR)

        def each(now: float) -> None:
            if now and now % (97 * 60) < 120:
                sidecar.born = now - 3

        now = await replay(source, [health], DAY + 2 * HOUR, 120.0, each)
        assert kept(source)[0] <= DENSE + CHECKPOINTS + 3
        early = DAY / CHECKPOINTS + 120.0
        for _ in range(10):
            each(now)
            window = (await source.collect([health], now)).windows[health.key]
            assert_counted_from_a_checkpoint(source, REQ, window.requests, now - DAY, early)
            now += 120.0

    async def test_a_sidecar_restarting_at_every_scrape_is_still_bounded_and_counted(
        self,
    ) -> None:
        # A crash loop: no two scrapes of one process, so none goes for free; each
        # checkpoint dropped leaves its growth to the next one kept.
        sidecar = Sidecar()
        source = Fed(sidecar)
        health = target(DAY / 2, HOUR)

        def each(now: float) -> None:
            sidecar.born = now - 7

        now = await replay(source, [health], DAY / 2 + HOUR, 120.0, each)
        assert kept(source)[0] <= DENSE + CHECKPOINTS + 3
        each(now)
        window = (await source.collect([health], now)).windows[health.key]
        early = DAY / 2 / CHECKPOINTS + 120.0
        assert_counted_from_a_checkpoint(source, REQ, window.requests, now - DAY / 2, early)


class TestAWeeksPerformanceWindow:
    async def test_keeps_a_bounded_number_of_ground_truth_scrapes_of_a_pod(self) -> None:
        # A week of labels at a scrape every 20 minutes (504 of them). For a day the
        # sidecar gives no start time: its restarts show as counters down only.
        week = 7 * DAY
        sidecar = Sidecar()
        source = Fed(sidecar)
        health = target(300.0, week)

        def each(now: float) -> None:
            sidecar.says_start = not 2 * DAY <= now < 3 * DAY
            if now and now % (5 * HOUR + 1200) == 0:
                sidecar.born = now - 1

        now = await replay(source, [health], week + HOUR, 1200.0, each)
        assert kept(source)[1] <= DENSE + CHECKPOINTS + 3
        window = (await source.collect([health], now)).windows[health.key]
        early = week / CHECKPOINTS + 1200.0
        assert_counted_from_a_checkpoint(source, JOINED, window.realized.labels, now - week, early)


class TestShortWindowsAmongALongOnesCheckpoints:
    @pytest.mark.slow
    async def test_a_rollout_steps_windows_count_every_scrape(self) -> None:
        # The health loop reads a day every 30 s; a rollout's step window (10-minute
        # steps) 10 s after each. Its windows start among the newest scrapes, all kept.
        sidecar = Sidecar()
        source = Fed(sidecar)
        health = target(DAY, HOUR)
        now = 0.0
        while now < DAY + HOUR:
            if now == 20 * HOUR:
                sidecar.born = now - 5
            await source.collect([health], now)
            at = now + 10.0
            step = target(max(10.0, at % 600.0))
            window = (await source.collect([step], at)).windows[step.key]
            if now > DAY:
                assert window.requests == every_scrape(source, REQ, at - step.window_seconds)
            now += 30.0
        assert kept(source)[0] <= DENSE + CHECKPOINTS + 3
        whole = (await source.collect([health], now)).windows[health.key]
        early = DAY / CHECKPOINTS + 30.0
        assert_counted_from_a_checkpoint(source, REQ, whole.requests, now - DAY, early)
