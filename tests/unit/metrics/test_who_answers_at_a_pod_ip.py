"""The direct source reads a pod at its IP: another pod's sidecar may answer there.

A pod gone and its IP given to another pod (a watch a little behind): the
sidecar that answers serves another model's revision, its counters nothing
like the pod's. Read as the pod's, they were a counter reset and counted
whole. Every series of a sidecar carries the model and revision it serves
(its ground truth's ``revision`` names the serving one instead): one naming
another revision is a failed scrape of that pod, as a pod that does not
answer is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource, parse_answer
from vigil.sidecar.feedback import FeedbackMetrics, class_code
from vigil.sidecar.joinstore import Labelled
from vigil.sidecar.metrics import OpsMetrics


class Sidecar:
    """One sidecar process: its registry, started when made, and the requests it served."""

    def __init__(self, model: str, revision: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        base = {"model": model, "version": "1", "revision": revision, "role": "stable"}
        self.ops = OpsMetrics(self.registry, base)

    def serve(self, ok: int, failed: int = 0) -> str:
        """Its exposition once it served ``ok`` and ``failed`` more inference requests."""
        for _ in range(ok):
            self.ops.observe("infer", "success", 200, 0.02, 100, 10)
        for _ in range(failed):
            self.ops.observe("infer", "model_error", 500, 0.2, 100, 10)
        return generate_latest(self.registry).decode()


class Sidecars:
    """Local HTTP servers, one per pod, each serving the text the test sets."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.ports: dict[str, int] = {}

    def pod(self, name: str) -> PodTarget:
        return PodTarget(name, "127.0.0.1", self.ports[name])


@pytest.fixture
async def sidecars() -> AsyncIterator[Sidecars]:
    served = Sidecars()
    runners = []
    for name in ("a", "b"):
        app = web.Application()

        async def handle(_request: web.Request, name: str = name) -> web.Response:
            return web.Response(text=served.texts[name])

        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        served.ports[name] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
    yield served
    for runner in runners:
        await runner.cleanup()


async def test_another_revisions_sidecar_at_a_pods_ip_is_a_failed_scrape_of_it(
    sidecars: Sidecars,
) -> None:
    # Pods a and b of ml/wine r1 serve 100 requests each per 30 s, no error; at the third
    # read a's IP answers for another model's pod: 40 000 requests and 9 000 errors.
    target = RevisionTarget("ml", "wine", "r1", 300.0, (sidecars.pod("a"), sidecars.pod("b")))
    a, b, other = Sidecar("wine", "r1"), Sidecar("wine", "r1"), Sidecar("fraud", "x9")
    now = time.time()
    source = DirectSource()
    try:
        for at in (now, now + 30):
            sidecars.texts["a"], sidecars.texts["b"] = a.serve(100), b.serve(100)
            await source.collect([target], at)
        sidecars.texts["a"], sidecars.texts["b"] = other.serve(40_000, 9_000), b.serve(100)
        result = await source.collect([target], now + 60)
    finally:
        await source.close()
    window = result.windows[target.key]
    assert window.requests_by_outcome["model_error"] == 0
    assert window.requests == 200 + 300  # both started inside the window: counted from zero
    assert (result.scrape_failures, window.pods) == (1, 1)


async def test_when_no_pod_answers_for_its_revision_the_error_says_who_did(
    sidecars: Sidecars,
) -> None:
    target = RevisionTarget("ml", "wine", "r1", 300.0, (sidecars.pod("a"),))
    sidecars.texts["a"] = Sidecar("fraud", "x9").serve(10)
    source = DirectSource()
    try:
        result = await source.collect([target], 0.0)
    finally:
        await source.close()
    assert target.key not in result.windows
    address = f"127.0.0.1:{sidecars.ports['a']}"
    assert result.errors[target.key] == (
        f"no sidecar answered (1 pods): a: another sidecar answers at {address} "
        "(model fraud, revision x9, not r1): the pod's IP is another pod's"
    )


def test_a_sidecar_is_known_by_its_own_series_not_its_ground_truths() -> None:
    # Labels of predictions another revision served (handed over) name that revision.
    registry = CollectorRegistry(auto_describe=False)
    base = {"model": "wine", "version": "1", "revision": "r2", "role": "candidate"}
    OpsMetrics(registry, base)
    feedback = FeedbackMetrics(dict(base), registry, classes=("0", "1"))
    feedback.joined(Labelled("joined", "r1", 0.0, class_code("1")), 1, "classification", 5.0)
    answer = parse_answer(generate_latest(registry).decode(), 1000.0)
    assert (answer.model, answer.revision, answer.at) == ("wine", "r2", 1000.0)
    assert parse_answer("vigil_request_outcomes_total 1\n", 0.0).revision == ""
