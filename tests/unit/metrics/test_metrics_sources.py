"""Metrics sources: exposition parsing, direct scraping over HTTP, PromQL shapes.

The direct source is exercised against a small local HTTP server that
serves exposition text (a unit test of the scraper; the e2e tests scrape
real sidecars in front of MLServer).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vigil.core.candidate import evidence_seconds, state_to_status
from vigil.core.rollout import RolloutState
from vigil.core.window import FAMILY_LABELS, series_key
from vigil.metrics import Collection, PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.metrics.prometheus import DELTA_FAMILIES, _group, family_query, pods_query

BASE = ["model", "version", "revision", "role"]


def sidecar_text(requests: float = 10, errors: float = 1, start: float = 1000.0) -> str:
    registry = CollectorRegistry()
    labels = ["wine", "1", "r1", "stable"]
    counter = Counter(
        "vigil_request_outcomes", "", [*BASE, "endpoint", "outcome"], registry=registry
    )
    counter.labels(*labels, "infer", "success").inc(requests)
    counter.labels(*labels, "infer", "model_error").inc(errors)
    counter.labels(*labels, "other", "success").inc(99)
    histogram = Histogram(
        "vigil_request_duration_seconds",
        "",
        [*BASE, "endpoint"],
        buckets=(0.01, 0.1, 1.0),
        registry=registry,
    )
    for _ in range(int(requests)):
        histogram.labels(*labels, "infer").observe(0.05)
    bins = Counter("vigil_feature_bin", "", [*BASE, "feature", "bin"], registry=registry)
    bins.labels(*labels, 'od280/od315 "of" diluted\\wines', "3").inc(requests)
    Gauge("vigil_sidecar_start_time_seconds", "", BASE, registry=registry).labels(*labels).set(
        start
    )
    Gauge("vigil_prediction_value_sum", "", BASE, registry=registry).labels(*labels).set(-2.5)
    return generate_latest(registry).decode()


class TestExposition:
    def test_matches_the_reference_parser_on_health_families(self) -> None:
        text = sidecar_text()
        ours, started = parse_sidecar_metrics(text)
        expected: dict = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = series_key(sample.name, sample.labels)
                if key is not None:
                    expected[key] = expected.get(key, 0.0) + sample.value
        assert ours == expected
        assert started == 1000.0

    def test_odd_label_values_survive(self) -> None:
        ours, _ = parse_sidecar_metrics(sidecar_text())
        features = {dict(k[1])["feature"] for k in ours if k[0] == "vigil_feature_bin_total"}
        assert features == {'od280/od315 "of" diluted\\wines'}

    @pytest.mark.parametrize(
        "feature", ["alcohol", "", 'a="b', "a,b=c", "ends in \\", 'x\\"y', "line\nbreak", "é"]
    )
    def test_a_label_value_reads_as_the_reference_parser_reads_it(self, feature: str) -> None:
        registry = CollectorRegistry()
        bins = Counter("vigil_feature_bin", "", [*BASE, "feature", "bin"], registry=registry)
        bins.labels("wine", "1", "r1", "stable", feature, "3").inc(2)
        text = generate_latest(registry).decode()
        expected = {
            key: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if (key := series_key(sample.name, sample.labels)) is not None
        }
        assert parse_sidecar_metrics(text)[0] == expected
        assert {dict(labels)["feature"] for _, labels in expected} == {feature}

    def test_only_inference_requests_count(self) -> None:
        ours, _ = parse_sidecar_metrics(sidecar_text(requests=10, errors=1))
        requests = sum(v for k, v in ours.items() if k[0] == "vigil_request_outcomes_total")
        assert requests == 11

    def test_other_lines_are_ignored(self) -> None:
        text = '# HELP x\nprocess_cpu 1\nvigil_requests_in_flight{model="a"} 3\n'
        assert parse_sidecar_metrics(text) == ({}, None)


class _FakeSidecar:
    """Serves whatever exposition text the test sets, or fails."""

    def __init__(self) -> None:
        self.text: str | bytes = ""
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        if isinstance(self.text, bytes):  # not UTF-8 text
            return web.Response(body=self.text, content_type="text/plain", charset="utf-8")
        return web.Response(text=self.text, status=self.status)


async def collect_at(
    source: DirectSource,
    fake: Any,
    target: RevisionTarget,
    now: float,
    requests: float,
    errors: float = 0,
) -> Collection:
    """The sidecar has answered ``requests`` (``errors`` of them failed); one collection."""
    fake.text = sidecar_text(requests=requests, errors=errors, start=0)
    return await source.collect([target], now=now)


@pytest.fixture
async def sidecar():
    fake = _FakeSidecar()
    app = web.Application()
    app.router.add_get("/metrics", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, port
    await runner.cleanup()


class TestDirectSource:
    @pytest.mark.parametrize(
        "text",
        [
            'vigil_request_outcomes_total{endpoint="infer" 5\n',
            'vigil_request_outcomes_total{endpoint="infer} 5\n',
            b"vigil_request_outcomes_total \xff 1\n",
        ],
    )
    async def test_an_answer_that_cannot_be_read_fails_that_pod_alone(
        self, sidecar, text: str | bytes
    ) -> None:
        # Something else at a reused pod IP, or a broken sidecar: that pod's scrape fails,
        # every other target is still collected.
        fake, port = sidecar
        fake.text = text
        broken = RevisionTarget("ns", "bad", "r1", 60, (PodTarget("b", "127.0.0.1", port),))
        source = DirectSource()
        try:
            result = await source.collect([broken], now=1000)
        finally:
            await source.close()
        assert result.scrape_failures == 1
        assert result.errors[broken.key].startswith("no sidecar answered")

    async def test_an_ipv6_pod_ip_is_scraped_at_a_bracketed_url(self) -> None:
        # An IPv6 (or IPv6-first dual-stack) cluster's status.podIP: unbracketed, aiohttp
        # refused every URL and every model read as MetricsUnavailable.
        asked: list[str] = []

        class Recording:
            def get(self, url: str, **_: object) -> None:
                asked.append(url)
                raise aiohttp.ClientConnectionError("not sent")

        source = DirectSource(session=cast(aiohttp.ClientSession, Recording()))
        pods = (PodTarget("a", "fd00:10:244::7", 9090), PodTarget("b", "10.244.0.7", 9090))
        await source.collect([RevisionTarget("ns", "wine", "r1", 60, pods)], now=1000)
        assert sorted(asked) == [
            "http://10.244.0.7:9090/metrics",
            "http://[fd00:10:244::7]:9090/metrics",
        ]

    async def test_window_is_the_increase_since_the_baseline(self, sidecar) -> None:
        fake, port = sidecar
        target = RevisionTarget("ns", "wine", "r1", 60, (PodTarget("p", "127.0.0.1", port),))
        source = DirectSource()
        try:
            await collect_at(source, fake, target, 1000, 10)
            result = await collect_at(source, fake, target, 1030, 40, errors=2)
        finally:
            await source.close()
        window = result.windows[target.key]
        assert window.requests_by_outcome == {"success": 30, "model_error": 2}
        assert window.pods == 1
        assert result.scrapes == 1 and result.scrape_failures == 0

    async def test_a_scrape_from_an_earlier_rollout_is_no_baseline(self, sidecar) -> None:
        # A stable pod scraped in an earlier rollout, an hour ago: its old scrape must
        # not stand in for the start of this window (an hour of traffic, not 60 s).
        fake, port = sidecar
        target = RevisionTarget("ns", "wine", "r1", 60, (PodTarget("p", "127.0.0.1", port),))
        source = DirectSource()
        try:
            await collect_at(source, fake, target, 1000, 10)
            first = await collect_at(source, fake, target, 4600, 5000, errors=50)
            second = await collect_at(source, fake, target, 4630, 5030, errors=51)
        finally:
            await source.close()
        assert first.windows[target.key].requests == 0
        assert second.windows[target.key].requests_by_outcome == {
            "success": 30,
            "model_error": 1,
        }

    async def test_another_rollouts_shorter_window_keeps_this_ones_baseline(self, sidecar) -> None:
        # One source serves every ModelDeployment: a 10 s step elsewhere, collected in
        # between, must not trim this 600 s step's scrapes to its own window.
        fake, port = sidecar
        pod = (PodTarget("p", "127.0.0.1", port),)
        long_step = RevisionTarget("ns", "wine", "r1", 600, pod)
        short_step = RevisionTarget("ns", "iris", "r9", 10, pod)
        source = DirectSource()
        try:
            await collect_at(source, fake, long_step, 1000, 10)
            await collect_at(source, fake, short_step, 1400, 300)
            result = await collect_at(source, fake, long_step, 1500, 400)
        finally:
            await source.close()
        assert result.windows[long_step.key].requests == 390

    async def test_a_step_counts_from_the_scrape_of_the_cycle_that_started_it(
        self, sidecar
    ) -> None:
        # Scrapes every 10 s; the cycle that scraped at 100.3 s advanced the step at
        # 100.35 s and routed its traffic after; another cycle scraped at 101.0 s (the
        # status write woke it). The window at 110.3 s is the 10 requests since 100.3 s:
        # not the 60 since the scrape before, nor the 6 since the one after.
        fake, port = sidecar
        pod = (PodTarget("p", "127.0.0.1", port),)
        step = state_to_status(RolloutState(step=1, step_started_at=100.35)) | {"revision": "r1"}
        source = DirectSource()
        try:
            for at, requests in ((90.3, 0), (100.3, 50), (101.0, 54)):
                await collect_at(
                    source, fake, RevisionTarget("ns", "wine", "r1", 60, pod), at, requests
                )
            window = evidence_seconds(step, "r1", 110.3)
            target = RevisionTarget("ns", "wine", "r1", window, pod)
            result = await collect_at(source, fake, target, 110.3, 60)
        finally:
            await source.close()
        assert result.windows[target.key].requests == 10

    async def test_unanswering_sidecars_are_skipped_and_counted(self, sidecar) -> None:
        fake, port = sidecar
        fake.text = sidecar_text(start=0)
        pods = (PodTarget("up", "127.0.0.1", port), PodTarget("down", "127.0.0.1", 1))
        target = RevisionTarget("ns", "wine", "r1", 60, pods)
        source = DirectSource(timeout_seconds=1)
        try:
            result = await source.collect([target], now=1000)
        finally:
            await source.close()
        assert result.scrape_failures == 1
        assert result.windows[target.key].pods == 1

    async def test_sidecars_that_did_not_answer_are_named_beside_the_window(self, sidecar) -> None:
        fake, port = sidecar
        fake.text = sidecar_text(start=0)
        pods = (
            PodTarget("up", "127.0.0.1", port),
            PodTarget("down", "127.0.0.1", 1),
            PodTarget("gone", "127.0.0.1", 1),
        )
        target = RevisionTarget("ns", "wine", "r1", 60, pods)
        every = RevisionTarget("ns", "beer", "r1", 60, pods[:1])
        source = DirectSource(timeout_seconds=1)
        try:
            result = await source.collect([target, every], now=1000)
        finally:
            await source.close()
        said = result.unanswered[target.key]
        assert said.startswith("1 of 3 sidecars answered; down: "), said
        assert said.endswith(" and 1 more"), said
        assert every.key not in result.unanswered

    async def test_a_leaving_pod_gives_its_last_figures_and_its_silence_is_no_error(
        self, sidecar
    ) -> None:
        fake, port = sidecar
        first = RevisionTarget("ns", "wine", "r1", 60, (PodTarget("p", "127.0.0.1", port),))
        source = DirectSource(timeout_seconds=1)
        try:
            await collect_at(source, fake, first, 1000, 10)
            # p is being deleted: it served 15 more while draining; "up" took its place.
            leaving = dataclasses.replace(
                first, pods=(PodTarget("up", "127.0.0.1", port),), leaving=first.pods
            )
            drained = await collect_at(source, fake, leaving, 1030, 25)
            stopped = dataclasses.replace(leaving, leaving=(PodTarget("p", "127.0.0.1", 1),))
            after = await source.collect([stopped], now=1031)
        finally:
            await source.close()
        assert drained.windows[leaving.key].requests == 15
        assert drained.windows[leaving.key].pods == 1  # the running ones that answered
        assert after.scrape_failures == 0
        assert not after.errors and not after.unanswered
        assert after.windows[stopped.key].requests == 15

    async def test_no_answer_at_all_is_an_error_naming_the_cause(self, sidecar) -> None:
        fake, port = sidecar
        fake.status = 503
        target = RevisionTarget("ns", "wine", "r1", 60, (PodTarget("p", "127.0.0.1", port),))
        source = DirectSource()
        try:
            result = await source.collect([target], now=1000)
        finally:
            await source.close()
        assert target.key not in result.windows
        assert result.errors[target.key] == "no sidecar answered (1 pods): p: HTTP 503"

    async def test_a_revision_without_pods_is_an_error(self) -> None:
        source = DirectSource()
        target = RevisionTarget("ns", "wine", "r1", 60, ())
        result = await source.collect([target], now=1)
        await source.close()
        assert "no running pods" in result.errors[target.key]


class TestPrometheusQueries:
    def test_one_query_per_family_groups_by_revision(self) -> None:
        query = family_query("vigil_request_outcomes_total", 300)
        assert query == (
            "sum by (namespace, model_deployment, revision, origin, outcome) "
            '(increase(vigil_request_outcomes_total{endpoint="infer"}[300s]))'
        )
        assert "count by (namespace, model_deployment, revision)" in pods_query()

    def test_every_family_has_a_query(self) -> None:
        counters = [f for f in FAMILY_LABELS if f not in DELTA_FAMILIES]
        assert all("increase(" + f in family_query(f, 60) for f in counters)

    def test_the_prediction_moments_are_read_by_their_change(self) -> None:
        # increase() takes the sum's every fall (a negative prediction) for a counter reset
        # and adds it back: a regressor's window mean came out wrong. The count and the
        # squares go alike, or the mean and std of a pod started inside the window are off.
        for family in (
            "vigil_prediction_value_sum",
            "vigil_prediction_value_squares_sum",
            "vigil_predictions_total",
        ):
            assert f"delta({family}{{" in family_query(family, 60)

    def test_answers_are_grouped_per_revision(self) -> None:
        answer = [
            {
                "metric": {
                    "namespace": "a",
                    "model_deployment": "m",
                    "revision": "r",
                    "outcome": "success",
                },
                "value": [0, "12"],
            },
            {
                "metric": {
                    "namespace": "b",
                    "model_deployment": "m",
                    "revision": "r",
                    "outcome": "success",
                },
                "value": [0, "NaN"],
            },
        ]
        pods = [
            {
                "metric": {"namespace": "a", "model_deployment": "m", "revision": "r"},
                "value": [0, "2"],
            }
        ]
        series, counts = _group(["vigil_request_outcomes_total"], [answer], pods)
        assert series == {
            ("a", "m", "r"): {
                ("vigil_request_outcomes_total", (("origin", ""), ("outcome", "success"))): 12.0
            }
        }
        assert counts == {("a", "m", "r"): 2}
        assert not any(math.isnan(v) for s in series.values() for v in s.values())
