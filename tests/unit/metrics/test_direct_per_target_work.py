"""One target's figures are read from its own ModelDeployment's pods alone.

The health loop collects every ModelDeployment's stable each cycle, and each
rollout its two revisions: a target's window, its counted pods, how far back
its scrapes reach and its drift on some pods must not go through every pod of
every ModelDeployment (2 000 of them: seconds of the event loop a cycle).
"""

from __future__ import annotations

from typing import Any, NoReturn

from vigil.core.window import Scrape, SeriesKey
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import SWEEP_SECONDS, DirectSource

REQ: SeriesKey = ("vigil_request_outcomes_total", (("origin", "live"), ("outcome", "success")))


class Fed(DirectSource):
    """Every pod has served one request a second since 0 s."""

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        return Scrape(now, 0.0, {REQ: now})


class NotGoneThrough(dict):
    """The source's pod histories: looked up one by one, never gone through whole."""

    def __iter__(self) -> NoReturn:
        raise AssertionError("every pod's history gone through for one target")

    def items(self) -> Any:
        self.__iter__()

    keys = values = items


def stable(i: int) -> RevisionTarget:
    pods = (PodTarget(f"m{i}-a", "10.0.0.1"), PodTarget(f"m{i}-b", "10.0.0.2"))
    return RevisionTarget("ns", f"m{i}", "r1", 300.0, pods, labels_window_seconds=3600.0)


async def test_one_targets_figures_go_through_its_own_model_deployments_pods_alone() -> None:
    source = Fed()
    health = [stable(i) for i in range(200)]
    for now in (0.0, 30.0, 60.0):
        await source.collect(health, now)
    source._history = NotGoneThrough(source._history)
    wine = stable(7)
    window = source._window(wine, 60.0, 2)
    assert window.requests == 2 * 60
    assert source.counted_pods(wine, 60.0) == ["m7-a", "m7-b"]
    assert source.kept_since(wine.key) == source.kept_since(wine.key, labels=True) == 0.0
    assert source.pods_window(wine, 60.0, {"m7-a"}).requests == 60
    # A rollout's collection of one ModelDeployment (no sweep of the others due yet).
    candidate = RevisionTarget("ns", "m7", "r2", 20.0, (PodTarget("m7-c", "10.0.0.3"),))
    result = await source.collect([candidate, wine], 60.0 + SWEEP_SECONDS / 2)
    assert result.windows[wine.key].requests == 2 * (60 + SWEEP_SECONDS / 2)
