"""Realized performance from the sidecars' ground-truth series, through both sources."""

from __future__ import annotations

import math

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from vigil.core.window import RealizedPerformance, RevisionWindow, served_by
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.prometheus import _group, family_query
from vigil.sidecar.feedback import FeedbackMetrics, class_code
from vigil.sidecar.joinstore import Labelled

BASE = {"model": "wine", "version": "1", "revision": "r2", "role": "stable"}


def exposition(joined: list[tuple[str, int, int, float]], task: str = "classification") -> str:
    """A sidecar's text after joining (served revision, predicted, true, delay) labels."""
    metrics = FeedbackMetrics(dict(BASE), None, classes=("0", "1", "2"))
    for revision, predicted, truth, delay in joined:
        prediction = class_code(str(predicted)) if task == "classification" else float(predicted)
        metrics.joined(Labelled("joined", revision, 0.0, prediction), truth, task, delay)
    metrics.count("r2", "unknown", 3)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return generate_latest(registry).decode()


class TestFigures:
    def test_accuracy_recall_and_delay_from_a_sidecars_series(self):
        text = exposition(
            [("r1", 0, 0, 30.0), ("r1", 1, 0, 90.0), ("r1", 1, 1, 200.0), ("r1", 2, 2, 4000.0)]
        )
        values, _ = parse_sidecar_metrics(text)
        realized = RealizedPerformance.from_series(served_by(values, "r1"))
        assert realized.labels == 4
        assert realized.accuracy == 0.75
        assert realized.recall == {"0": 0.5, "1": 1.0, "2": 1.0}
        assert realized.mae is None
        p50 = realized.delay_quantile(0.5)
        assert p50 is not None and 60 <= p50 <= 300
        # Labels no pod held count against the receiving pod's revision.
        assert RealizedPerformance.from_series(served_by(values, "r2")).outcome("unknown") == 3

    def test_mae_and_rmse_for_a_regressor(self):
        values, _ = parse_sidecar_metrics(
            exposition([("r1", 3, 1, 5.0), ("r1", 2, 2, 5.0)], task="regression")
        )
        realized = RealizedPerformance.from_series(served_by(values, "r1"))
        assert realized.accuracy is None
        assert realized.mae == 1.0
        assert realized.rmse == pytest.approx(math.sqrt(2.0))

    def test_no_labels_no_figures(self):
        empty = RevisionWindow.from_series({}, pods=1).realized
        assert (empty.labels, empty.accuracy, empty.mae, empty.delay_quantile(0.95)) == (
            0,
            None,
            None,
            None,
        )


@pytest.fixture
async def two_pods():
    """Two fake sidecars (pods of r1 and r2) serving whatever text the test sets."""
    texts = {"r1": "", "r2": ""}
    runners = []
    ports = {}
    for revision in texts:
        app = web.Application()

        async def handle(_request, revision=revision):
            return web.Response(text=texts[revision])

        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports[revision] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
    yield texts, ports
    for runner in runners:
        await runner.cleanup()


class TestSources:
    async def test_direct_counts_labels_on_any_pod_against_the_serving_revision(self, two_pods):
        texts, ports = two_pods
        targets = [
            RevisionTarget("ns", "wine", rev, 60, (PodTarget(f"pod-{rev}", "127.0.0.1", port),))
            for rev, port in ports.items()
        ]
        source = DirectSource()
        try:
            texts["r1"] = texts["r2"] = exposition([])
            await source.collect(targets, now=1000)
            texts["r1"] = exposition([("r1", 0, 0, 1.0)]).replace('revision="r2"', 'revision="r1"')
            # r2's pod adopted r1's predictions at a handoff: it counts labels of both.
            texts["r2"] = exposition([("r1", 1, 0, 1.0), ("r2", 2, 2, 1.0), ("r2", 2, 2, 1.0)])
            result = await source.collect(targets, now=1030)
        finally:
            await source.close()
        r1 = result.windows[("ns", "wine", "r1")].realized
        r2 = result.windows[("ns", "wine", "r2")].realized
        assert (r1.labels, r1.accuracy) == (2, 0.5)
        assert (r2.labels, r2.accuracy) == (2, 1.0)

    def test_prometheus_groups_by_the_served_revision(self):
        query = family_query("vigil_feedback_labels_total", 300)
        assert query.startswith("sum by (namespace, model_deployment, revision, outcome)")

        def sample(revision, outcome, value):
            metric = {"namespace": "ns", "model_deployment": "wine", "revision": revision}
            return {"metric": {**metric, "outcome": outcome}, "value": [0, str(value)]}

        answer = [sample("r1", "joined", 40), sample("r1", "unknown", 4), sample("r2", "joined", 1)]
        series, _ = _group(["vigil_feedback_labels_total"], [answer], [])
        realized = RevisionWindow.from_series(series[("ns", "wine", "r1")], pods=3).realized
        assert realized.labels == 40 and realized.outcome("unknown") == 4
