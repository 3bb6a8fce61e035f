"""A ModelDeployment deleted and created again under its name starts with no history.

Its revisions are hashes of its spec: the same spec gives the same revision,
so the direct source's scrapes, kept per (namespace, name, revision), would
count the deleted object's traffic as the new one's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from vigil.core.window import Scrape, series_key
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.pool import SourcePool
from vigil.metrics.prometheus import PrometheusSource

#: Requests a pod has answered at a time: (successes, errors).
Counts = Callable[[float], tuple[float, float]]


def requests(ok: float, errors: float) -> dict:
    infer = {"endpoint": "infer", "origin": "live"}
    return {
        series_key("vigil_request_outcomes_total", {**infer, "outcome": "success"}): ok,
        series_key("vigil_request_outcomes_total", {**infer, "outcome": "model_error"}): errors,
    }


class Fed(DirectSource):
    """A direct source whose pods answer counts the test sets (no HTTP)."""

    def __init__(self) -> None:
        super().__init__()
        self.pods: dict[str, tuple[float, Counts]] = {}
        self.gate: asyncio.Event | None = None

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        if self.gate is not None:
            await self.gate.wait()
        started, counts = self.pods[pod.name]
        return Scrape(at=now, started_at=started, values=requests(*counts(now)))


def target(pod: str) -> RevisionTarget:
    return RevisionTarget("ml", "wine", "r1", 300.0, (PodTarget(pod, "10.0.0.1"),))


async def failing_then_recreated(source: Fed, forget: Callable[[], None]) -> float:
    """The error rate the recreated object reads in its first cycles (worst of them)."""
    source.pods["old"] = (1000.0, lambda now: (now - 1000.0, now - 1000.0))  # 50% errors
    for now in range(1000, 1300, 30):
        await source.collect([target("old")], float(now))
    forget()  # deleted at 1300, created again (same spec, same revision) at 1320
    source.pods["new"] = (1320.0, lambda now: (2 * (now - 1320.0), 0.0))  # no errors
    worst = 0.0
    for now in (1350, 1380, 1500):
        window = (await source.collect([target("new")], float(now))).windows[target("new").key]
        failed = window.requests_by_outcome.get("model_error", 0.0)
        worst = max(worst, failed / window.requests)
    return worst


async def test_a_recreated_model_deployment_reads_none_of_the_deleted_ones_scrapes() -> None:
    source = Fed()
    pool = SourcePool(lambda key: source)
    pool.get(("direct", ""))
    assert await failing_then_recreated(source, lambda: pool.forget("ml", "wine")) == 0.0


async def test_without_forgetting_it_would_read_them() -> None:
    # The test above measures something: the deleted object's errors otherwise show.
    assert await failing_then_recreated(Fed(), lambda: None) > 0.3


async def test_a_collection_under_way_keeps_nothing_of_a_model_deleted_meanwhile() -> None:
    source = Fed()
    source.pods["old"] = (1000.0, lambda now: (now - 1000.0, now - 1000.0))
    await source.collect([target("old")], 1000.0)
    source.gate = asyncio.Event()
    under_way = asyncio.create_task(source.collect([target("old")], 1030.0))
    await asyncio.sleep(0)
    source.forget("ml", "wine")
    source.gate.set()
    result = await under_way
    assert target("old").key not in result.windows
    assert source._history == {}


def test_other_model_deployments_keep_their_history() -> None:
    source = DirectSource()
    kept = (("ml", "other", "r1"), "other-a")
    source._history = {kept: object(), (("ml", "wine", "r1"), "wine-a"): object()}  # type: ignore[dict-item]
    source.forget("ml", "wine")
    assert list(source._history) == [kept]
    PrometheusSource("http://prometheus:9090").forget("ml", "wine")  # nothing kept there
