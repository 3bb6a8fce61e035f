"""The feedback port: labels joined once where their prediction is, counted, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from sidecar_testkit import base, scrape, until, v2_body, value

from vigil.profile import OTHER
from vigil.sidecar import feedback as feedback_module
from vigil.sidecar.config import ConfigError, FeedbackSettings, settings_from_mapping
from vigil.sidecar.feedback import parse_labels
from vigil.sidecar.identity import IdMaker


def fb(**overrides) -> FeedbackSettings:
    return FeedbackSettings(
        **{"enabled": True, "host": "127.0.0.1", "port": 0, "task": "classification", **overrides}
    )


async def predict(http, sidecar, rows, request_id=None):
    """One inference through the sidecar; returns (id, predicted classes)."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    async with http.post(
        f"{base(sidecar)}/v2/models/m/infer", data=v2_body(rows), headers=headers
    ) as resp:
        assert resp.status == 200
        doc = await resp.json()
        return resp.headers["X-Request-Id"], doc["outputs"][0]["data"]


async def send(http, sidecar, doc, **kw):
    url = f"http://{sidecar.feedback.address}/vigil/v1/feedback"
    async with http.post(url, data=json.dumps(doc).encode(), **kw) as resp:
        return resp.status, await resp.json(), resp.headers


@dataclass
class SilentPeer:
    """A peer that accepts connections, reads nothing and never answers (a lost node)."""

    address: str = ""
    connections: int = 0


@contextlib.asynccontextmanager
async def silent_peer() -> AsyncIterator[SilentPeer]:
    peer = SilentPeer()

    def accepted(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        peer.connections += 1

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    peer.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield peer


@contextlib.contextmanager
def unconnectable_peer() -> Iterator[str]:
    """An address whose connections are never made, as a pod on a lost node: a listening
    socket whose one-place accept queue is full drops the SYNs that follow."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())
        yield f"127.0.0.1:{server.getsockname()[1]}"


class TestLabels:
    def test_single_labels_batches_and_row_lists(self):
        parsed = parse_labels(
            {
                "labels": [
                    {"id": "a", "truth": 1},
                    {"id": "b", "truth": [0, None, 2]},
                    {"id": "c", "row": 1, "truth": "x"},
                    {"id": "", "truth": 1},
                    {"id": "d"},
                ]
            },
            "classification",
            100,
        )
        assert [(x.request_id, x.row, x.truth) for x in parsed.labels] == [
            ("a", None, 1),
            ("b", 0, 0),
            ("b", 2, 2),
            ("c", 1, "x"),
        ]
        assert len(parsed.invalid) == 2
        assert len(parse_labels({"id": "a", "truth": 1}, "", 1).labels) == 1

    def test_regression_truths_are_numbers(self):
        parsed = parse_labels({"labels": [{"id": "a", "truth": "3"}]}, "regression", 10)
        assert parsed.invalid and not parsed.labels

    def test_too_many_and_malformed(self):
        with pytest.raises(OverflowError):
            parse_labels({"labels": [{"id": str(i), "truth": 1} for i in range(11)]}, "", 10)
        with pytest.raises(ValueError):
            parse_labels([1, 2], "", 10)

    def test_one_label_with_a_million_rows_is_refused_before_they_are_made(self, monkeypatch):
        made = []
        monkeypatch.setattr(feedback_module, "Label", lambda *a: made.append(a) or a)
        with pytest.raises(OverflowError):
            parse_labels({"id": "a", "truth": [1] * 1_000_000}, "", 10)
        assert len(made) == 10

    @pytest.mark.parametrize(
        "doc",
        [
            {"labels": [{"id": f"i{n}", "truth": []} for n in range(11)]},
            {"labels": [{"id": f"i{n}", "truth": [None, None]} for n in range(6)]},
            {"id": "a", "truth": [None] * 11},
        ],
        ids=["empty-truths", "null-rows", "one-item-of-nulls"],
    )
    def test_items_and_rows_that_give_no_label_count_toward_the_limit(self, doc):
        with pytest.raises(OverflowError):
            parse_labels(doc, "classification", 10)

    def test_a_body_of_items_without_labels_is_walked_only_up_to_the_limit(self, monkeypatch):
        # A few MiB of {"truth": []} items must not all be walked on the proxy's event loop.
        cleaned = []
        monkeypatch.setattr(feedback_module, "clean_id", lambda v: cleaned.append(v) or str(v))
        # Items with ids of their own up to just past the limit, then one item repeated:
        # building 200 000 dicts was most of the test's CPU; a walk still meets them all.
        items = [{"id": f"i{n}", "truth": []} for n in range(10_001)]
        items += [{"id": "i-rest", "truth": []}] * (200_000 - len(items))
        with pytest.raises(OverflowError):
            parse_labels({"labels": items}, "classification", 10_000)
        assert len(cleaned) == 10_000

    def test_every_entry_is_counted_for_the_rate_limit(self):
        doc = {"labels": [{"id": "a", "truth": [None, 1, None]}, {"id": "b", "truth": []}, 7]}
        parsed = parse_labels(doc, "classification", 10)
        assert (len(parsed.labels), len(parsed.invalid), parsed.entries) == (1, 1, 5)

    def test_a_truth_longer_than_an_id_is_no_class(self):
        parsed = parse_labels({"labels": [{"id": "a", "truth": "x" * 257}]}, "classification", 9)
        assert parsed.invalid == ["a: truth longer than 256 characters"] and not parsed.labels


class TestJoinOnOnePod:
    async def test_joined_duplicate_unknown_and_invalid_are_counted_by_revision(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb())
        right, (pred_right,) = await predict(http, sidecar, [[1.0, 0, 0]])
        wrong, (pred_wrong,) = await predict(http, sidecar, [[2.0, 0, 0]])
        status, summary, _ = await send(
            http,
            sidecar,
            {
                "labels": [
                    {"id": right, "truth": pred_right},
                    {"id": wrong, "truth": (pred_wrong + 1) % 3},
                    {"id": right, "truth": pred_right},
                    {"id": "never-seen", "truth": 1},
                    {"id": "bad id", "truth": 1},
                ]
            },
        )
        assert status == 200
        assert (summary["joined"], summary["duplicate"], summary["unknown"]) == (2, 1, 1)
        assert summary["invalid"] == 1 and summary["received"] == 5
        m = await scrape(http, sidecar)
        labels = "vigil_feedback_labels_total"
        assert value(m, labels, revision="r1", outcome="joined") == 2
        assert value(m, labels, revision="r1", outcome="duplicate") == 1
        assert value(m, labels, revision="r1", outcome="unknown") == 1
        assert value(m, labels, revision="r1", outcome="invalid") == 1
        assert value(m, "vigil_feedback_scored_total", revision="r1") == 2
        assert value(m, "vigil_feedback_correct_total", revision="r1") == 1
        assert value(m, "vigil_feedback_correct_total", **{"class": str(pred_right)}) == 1
        assert value(m, "vigil_feedback_label_delay_seconds_count", revision="r1") == 2

    async def test_a_batch_prediction_takes_a_truth_per_row(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=fb())
        rid, preds = await predict(http, sidecar, [[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
        _, summary, _ = await send(http, sidecar, {"id": rid, "truth": preds})
        assert summary["joined"] == 3
        _, summary, _ = await send(http, sidecar, {"id": rid, "truth": preds[0]})
        assert summary["invalid"] == 1 and "3 rows" in summary["errors"][0]

    async def test_regression_error_sums(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=fb(task="regression"))
        rid, (pred,) = await predict(http, sidecar, [[1.0, 0, 0]])
        await send(http, sidecar, {"id": rid, "truth": pred + 0.5})
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_absolute_error_total") == 0.5
        assert math.isclose(value(m, "vigil_feedback_squared_error_total"), 0.25)
        assert value(m, "vigil_feedback_scored_total") == 1

    async def test_a_sampled_out_prediction_is_still_kept(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=fb(), sample_percent=0.0)
        rid, (pred,) = await predict(http, sidecar, [[1.0, 0, 0]])
        _, summary, _ = await send(http, sidecar, {"id": rid, "truth": pred})
        assert summary["joined"] == 1

    async def test_a_prediction_the_full_monitoring_queue_dropped_is_kept_without_value(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb(), queue_size=1)
        sidecar.monitor._task.cancel()  # nothing drains the queue meanwhile
        ids = [(await predict(http, sidecar, [[1.0, 0, 0]]))[0] for _ in range(3)]
        _, summary, _ = await send(http, sidecar, {"labels": [{"id": i, "truth": 1} for i in ids]})
        assert (summary["joined"], summary["noPrediction"]) == (1, 2)
        m = await scrape(http, sidecar)
        assert value(m, "vigil_monitoring_dropped_total") == 2
        assert value(m, "vigil_feedback_labels_total", outcome="no_prediction") == 2

    async def test_a_label_by_the_clients_body_id_joins_behind_a_gateway_that_sets_its_own(
        self, model, start_sidecar, http
    ):
        # Envoy-based gateways and ingress-nginx add or replace X-Request-Id with a UUID.
        sidecar = await start_sidecar(model.url, feedback=fb())
        body = json.dumps({"id": "order-17", **json.loads(v2_body([[1.0, 0, 0]]))}).encode()
        gateway = {"X-Request-Id": "6f1b3c2e-9d1a-4b7e-8c55-0d2f3a4b5c6d"}
        url = f"{base(sidecar)}/v2/models/m/infer"
        async with http.post(url, data=body, headers=gateway) as resp:
            assert resp.headers["X-Request-Id"] == "order-17"
            (pred,) = (await resp.json())["outputs"][0]["data"]
        _, summary, _ = await send(http, sidecar, {"id": "order-17", "truth": pred})
        assert (summary["joined"], summary["unknown"]) == (1, 0)

    async def test_a_shadow_copy_is_not_kept(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=fb())
        async with http.post(
            f"{base(sidecar)}/v2/models/m/infer",
            data=v2_body([[1.0, 0, 0]]),
            headers={"X-Vigil-Shadow": "1", "X-Request-Id": "copied"},
        ) as resp:
            assert resp.status == 200
        _, summary, _ = await send(http, sidecar, {"id": "copied", "truth": 1})
        assert summary["unknown"] == 1


class TestBounds:
    async def test_a_body_over_the_limit_is_refused_with_413_and_counted(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb(max_body_bytes=1000))
        doc = {"labels": [{"id": f"id-{i}", "truth": 1} for i in range(100)]}
        status, _, headers = await send(http, sidecar, doc)
        assert status == 413 and headers["X-Vigil-Error"] == "body_too_large"
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_rejected_requests_total", reason="body_too_large") == 1

    async def test_too_many_labels_is_413_and_a_flood_is_429(self, model, start_sidecar, http):
        sidecar = await start_sidecar(
            model.url,
            feedback=fb(max_labels_per_request=100, burst_labels=150, labels_per_second=1.0),
        )
        many = {"labels": [{"id": f"id-{i}", "truth": 1} for i in range(101)]}
        status, _, _ = await send(http, sidecar, many)
        assert status == 413
        batch = {"labels": [{"id": f"id-{i}", "truth": 1} for i in range(100)]}
        status, summary, _ = await send(http, sidecar, batch)
        assert status == 200 and summary["unknown"] == 100
        status, body, headers = await send(http, sidecar, batch)
        assert status == 429 and body["reason"] == "rate_limited"
        assert int(headers["Retry-After"]) >= 49
        m = await scrape(http, sidecar)
        rejected = "vigil_feedback_rejected_requests_total"
        assert value(m, rejected, reason="rate_limited") == 1
        assert value(m, rejected, reason="too_many_labels") == 1

    async def test_rows_without_truths_take_tokens_as_labels_do(self, model, start_sidecar, http):
        sidecar = await start_sidecar(
            model.url,
            feedback=fb(max_labels_per_request=100, burst_labels=150, labels_per_second=1.0),
        )
        nulls = {"labels": [{"id": f"id-{i}", "truth": [None]} for i in range(100)]}
        status, summary, _ = await send(http, sidecar, nulls)
        assert status == 200 and summary["received"] == 0
        status, body, _ = await send(http, sidecar, nulls)
        assert status == 429 and body["reason"] == "rate_limited"

    async def test_not_json_is_400(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=fb())
        url = f"http://{sidecar.feedback.address}/vigil/v1/feedback"
        async with http.post(url, data=b"{nope") as resp:
            assert resp.status == 400

    async def test_a_batch_of_thousands_in_one_call(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=fb())
        ids = [(await predict(http, sidecar, [[1.0, 0, 0]]))[0] for _ in range(50)]
        labels = [{"id": i, "truth": 1} for i in ids]
        labels += [{"id": f"unknown-{n}", "truth": 1} for n in range(5000)]
        status, summary, _ = await send(http, sidecar, {"labels": labels})
        assert status == 200
        assert (summary["joined"], summary["unknown"]) == (50, 5000)


class TestPeers:
    async def two(self, model, start_sidecar, **extra):
        a = await start_sidecar(model.url, feedback=fb(**extra))
        b = await start_sidecar(model.url, revision="r2", feedback=fb(**extra))
        a.feedback.peers.entries = (b.feedback.address,)
        b.feedback.peers.entries = (a.feedback.address,)
        return a, b

    async def test_peers_that_cannot_be_looked_up_keep_their_last_answer(
        self, model, start_sidecar, http, monkeypatch
    ):
        """A DNS outage: a label no known pod holds may be at another, so it is unreachable
        (resend it), not unknown; and the pods known before are still asked."""
        a, b = await self.two(model, start_sidecar)
        _, (pred,) = await predict(http, a, [[1.0, 0, 0]], request_id="client-7")
        host, port = a.feedback.address.rsplit(":", 1)
        b.feedback.peers.entries = (f"peers.example:{port}",)
        loop = asyncio.get_running_loop()
        answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, int(port)))]

        async def looked_up(*_args, **_kwargs):
            return answer

        async def outage(*_args, **_kwargs):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

        monkeypatch.setattr(loop, "getaddrinfo", looked_up)
        assert await b.feedback.peers.resolve(fresh=True) == (a.feedback.address,)
        monkeypatch.setattr(loop, "getaddrinfo", outage)
        assert await b.feedback.peers.resolve(fresh=True) == (a.feedback.address,)
        assert b.feedback.peers.unresolved == (f"peers.example:{port}",)
        _, summary, _ = await send(http, b, {"id": "client-7", "truth": pred})
        assert summary["joined"] == 1  # asked where the last answer said
        _, summary, _ = await send(http, b, {"id": "client-nowhere", "truth": pred})
        assert summary["unreachable"] == 1 and summary["retry"] == ["client-nowhere"]

    async def test_a_name_with_no_address_is_an_answer_not_an_outage(
        self, model, start_sidecar, monkeypatch
    ):
        """A headless Service with no ready pod has no address: none are peers now."""
        a, b = await self.two(model, start_sidecar)
        host, port = a.feedback.address.rsplit(":", 1)
        b.feedback.peers.entries = (f"peers.example:{port}",)
        loop = asyncio.get_running_loop()

        async def looked_up(*_args, **_kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, int(port)))]

        async def no_such_name(*_args, **_kwargs):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(loop, "getaddrinfo", looked_up)
        assert await b.feedback.peers.resolve(fresh=True) == (a.feedback.address,)
        monkeypatch.setattr(loop, "getaddrinfo", no_such_name)
        assert await b.feedback.peers.resolve(fresh=True) == ()
        assert b.feedback.peers.unresolved == ()

    async def test_a_label_at_the_wrong_pod_joins_once_at_the_right_one(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await predict(http, a, [[1.0, 0, 0]], request_id="client-1")
        labels = {"labels": [{"id": made, "truth": pred}, {"id": "client-1", "truth": pred}]}
        _, summary, _ = await send(http, b, labels)
        assert summary["joined"] == 2
        _, summary, _ = await send(http, b, labels)
        assert summary["duplicate"] == 2
        _, summary, _ = await send(http, a, labels)
        assert summary["duplicate"] == 2
        ma, mb = await scrape(http, a), await scrape(http, b)
        name = "vigil_feedback_labels_total"
        assert value(ma, name, revision="r1", outcome="joined") == 2
        assert value(mb, name, outcome="joined") == 0  # counted where the prediction is

    async def test_handoff_at_shutdown_keeps_predictions_and_their_labels(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar)
        first, (p1,) = await predict(http, a, [[1.0, 0, 0]])
        second, (p2,) = await predict(http, a, [[2.0, 0, 0]])
        await send(http, a, {"id": first, "truth": p1})
        await a.stop()
        _, summary, _ = await send(http, b, {"labels": [{"id": first, "truth": p1}]})
        assert summary["duplicate"] == 1
        _, summary, _ = await send(http, b, {"id": second, "truth": p2})
        assert summary["joined"] == 1
        mb = await scrape(http, b)
        # The first label was joined at a, which no scrape read before it left: b counts it.
        assert value(mb, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 2
        assert value(mb, "vigil_feedback_handoff_predictions_total", outcome="adopted") == 2

    async def test_labels_counted_after_the_last_scrape_move_to_a_peer_at_shutdown(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar)
        ids = [await predict(http, a, [[float(i), 0, 0]]) for i in range(1, 5)]
        labels = [{"id": made, "truth": pred} for made, (pred,) in ids]
        await send(http, a, {"labels": [*labels[:1], {"id": "nobody", "truth": 1}]})
        seen = await scrape(http, a)  # the operator (or Prometheus) read these
        await send(http, a, {"labels": labels[1:3]})
        await send(http, b, {"labels": [labels[0], {"id": "nobody-2", "truth": 1}]})
        assert await a.feedback.handoff() == 4  # what a's shutdown does after the drain
        # A scrape after the handoff reads what the last one did: no reset, nothing twice.
        after = await scrape(http, a)
        mb = await scrape(http, b)
        name = "vigil_feedback_labels_total"
        for metrics in (seen, after):
            assert value(metrics, name, revision="r1", outcome="joined") == 1
            assert value(metrics, name, revision="r1", outcome="unknown") == 1
            assert value(metrics, name, revision="r1", outcome="duplicate") == 0
        # Two joined at a after its scrape, one duplicate it found for b: now b's to count.
        assert value(mb, name, revision="r1", outcome="joined") == 2
        assert value(mb, name, revision="r1", outcome="duplicate") == 1
        assert value(mb, name, revision="r2", outcome="unknown") == 1
        assert value(mb, "vigil_feedback_scored_total", revision="r1") == 2
        assert value(mb, "vigil_feedback_correct_total", revision="r1") == 2
        assert value(mb, "vigil_feedback_label_delay_seconds_count", revision="r1") == 2
        # Every label once over both pods; the last one still joins at b.
        _, summary, _ = await send(http, b, {"labels": labels[3:]})
        assert summary["joined"] == 1

    async def test_figures_no_peer_took_stay_for_a_last_scrape(self, model, start_sidecar, http):
        a = await start_sidecar(model.url, feedback=fb())
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await send(http, a, {"id": made, "truth": pred})
        await a.feedback.handoff()  # no peers: nothing leaves
        ma = await scrape(http, a)
        assert value(ma, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 1

    async def test_a_handoff_waits_for_labels_being_joined_here(self, model, start_sidecar, http):
        a, b = await self.two(model, start_sidecar)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        a.feedback.joining += 1  # a request between the check and its joins
        handing = asyncio.create_task(a.feedback.handoff())
        await asyncio.sleep(0.1)
        assert not handing.done() and a.feedback.leaving
        a.feedback._join_here(parse_labels({"id": made, "truth": pred}, "classification", 9)
                              .labels[0], 0.0, [])  # fmt: skip
        a.feedback.joining -= 1
        assert await handing == 1
        # The row went over labelled and its count with it: a second label is a duplicate.
        _, summary, _ = await send(http, b, {"id": made, "truth": pred})
        assert summary["duplicate"] == 1
        mb = await scrape(http, b)
        assert value(mb, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 1

    async def test_a_killed_pods_predictions_are_lost_and_counted(self, model, start_sidecar, http):
        a, b = await self.two(model, start_sidecar)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        a.feedback.store = type(a.feedback.store)(10, 3600.0)  # its memory is gone
        await a.feedback.stop()  # and it does not answer
        b.feedback.peers.entries = ()
        _, summary, _ = await send(http, b, {"labels": [{"id": made, "truth": pred}]})
        assert summary["lost"] == 1
        mb = await scrape(http, b)
        assert value(mb, "vigil_feedback_labels_total", revision="r1", outcome="lost") == 1

    async def test_a_prediction_its_running_pod_let_go_for_room_is_expired_not_lost(
        self, model, start_sidecar, http
    ):
        """Its pod answers still: the store was too small for the labels' delay (send them
        sooner, or add replicas), not a pod gone without handing over."""
        a, b = await self.two(model, start_sidecar)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await a.monitor.drain()  # kept (off the latency path), then
        a.feedback.store = type(a.feedback.store)(10, 3600.0)  # let go, the pod still up
        for asked in (a, b):  # at its own pod, and at a peer that asks it
            _, summary, _ = await send(http, asked, {"labels": [{"id": made, "truth": pred}]})
            assert (summary["expired"], summary["lost"]) == (1, 0)
        # Its sidecar killed and restarted at the same address: lost with the process.
        a.feedback.started_at += 3600.0
        _, summary, _ = await send(http, b, {"labels": [{"id": made, "truth": pred}]})
        assert (summary["expired"], summary["lost"]) == (0, 1)

    async def test_ids_naming_made_up_revisions_add_at_most_a_bounded_number_of_series(
        self, model, start_sidecar, http
    ):
        """A sidecar id's check is no secret: anyone who sends labels can name revisions."""
        a = await start_sidecar(model.url, feedback=fb())
        a.feedback.peers.entries = ()
        forged = [IdMaker(f"made-up-{i}", "").make() for i in range(40)]
        _, summary, _ = await send(http, a, {"labels": [{"id": i, "truth": 1} for i in forged]})
        assert summary["lost"] == 40
        ma = await scrape(http, a)
        revisions = {
            dict(labels)["revision"]
            for name, labels in ma
            if name == "vigil_feedback_labels_total" and dict(labels).get("outcome") == "lost"
        }
        assert (
            OTHER in revisions and len(revisions - {OTHER}) <= feedback_module.MAX_NAMED_REVISIONS
        )
        assert value(ma, "vigil_feedback_labels_total", outcome="lost") == 40

    @pytest.mark.slow
    async def test_a_silent_peer_asks_for_a_retry_a_gone_one_does_not(
        self, model, start_sidecar, http
    ):
        # Only the silent peer waits the timeout out: short, nothing healthy has to beat it.
        a, b = await self.two(model, start_sidecar, peer_timeout_seconds=0.2)
        await predict(http, a, [[1.0, 0, 0]], request_id="client-9")
        await a.feedback.stop()
        async with silent_peer() as silent:  # it may hold the prediction
            b.feedback.peers.entries = (silent.address,)
            _, summary, _ = await send(http, b, {"id": "client-9", "truth": 1})
        assert summary["unreachable"] == 1 and summary["retry"] == ["client-9"]
        # Refuses connections: nothing runs there, nothing is held there.
        b.feedback.peers.entries = (a.feedback.address,)
        b.feedback.peers._cached = (-math.inf, ())
        _, summary, _ = await send(http, b, {"id": "client-9", "truth": 1})
        assert summary["unknown"] == 1 and summary["retry"] == []
        mb = await scrape(http, b)
        assert value(mb, "vigil_feedback_peer_failures_total") == 2

    async def test_a_label_asked_for_before_its_pod_handed_over_joins_at_the_adopter(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar)
        c = await start_sidecar(model.url, revision="r3", feedback=fb())
        a.feedback.peers.entries = (c.feedback.address,)
        _, (pred,) = await predict(http, a, [[1.0, 0, 0]], request_id="client-r")
        order = (c.feedback.address, a.feedback.address)

        async def in_order(fresh: bool = False) -> tuple[str, ...]:
            return order

        b.feedback.peers.resolve = in_order
        asked = b.feedback._call_peer

        async def then_a_leaves(peer, batch, refused):
            answers = await asked(peer, batch, refused)
            if peer == c.feedback.address and a.feedback.runner is not None:
                # c holds nothing yet; now a hands its predictions to c and stops listening.
                assert await a.feedback.handoff() == 1
                await a.feedback.stop()
            return answers

        b.feedback._call_peer = then_a_leaves
        _, summary, _ = await send(http, b, {"id": "client-r", "truth": pred})
        assert (summary["joined"], summary["unknown"]) == (1, 0), summary
        mc = await scrape(http, c)
        assert value(mc, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 1

    async def test_a_pod_handing_over_asks_for_a_retry(self, model, start_sidecar, http):
        a, b = await self.two(model, start_sidecar)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        a.feedback.leaving = True  # its store is on its way to the peers
        status, _, headers = await send(http, a, {"id": made, "truth": pred})
        assert status == 503 and headers["Retry-After"] == "1"
        _, summary, _ = await send(http, b, {"id": made, "truth": pred})
        assert summary["unreachable"] == 1 and summary["retry"] == [made], summary

    async def test_peer_paths_refuse_other_addresses(self, model, start_sidecar):
        a = await start_sidecar(model.url, feedback=fb(peers=("127.0.0.3:9",)))
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as outsider:
            for path in ("/vigil/v1/feedback/peer", "/vigil/v1/feedback/handoff"):
                async with outsider.post(
                    f"http://{a.feedback.address}{path}", data=b'{"labels": []}'
                ) as resp:
                    assert resp.status == 403
            async with outsider.post(
                f"http://{a.feedback.address}/vigil/v1/feedback", data=b'{"labels": []}'
            ) as resp:
                assert resp.status == 200  # label pipelines are not peers


class TestSettings:
    def test_the_feedback_block_is_read_and_checked(self):
        settings = settings_from_mapping(
            {"feedback": {"enabled": True, "port": 8001, "peers": ["m-peers.ml.svc:8001"]}}
        )
        assert settings.feedback.enabled and settings.feedback.peers == ("m-peers.ml.svc:8001",)
        assert not settings_from_mapping({}).feedback.enabled
        for bad, words in (
            ({"nope": 1}, "feedback.nope: unknown key"),
            ({"task": "ranking"}, "feedback.task"),
            ({"burstLabels": 10}, "burstLabels"),
            ({"peers": ["no-port"]}, "host:port"),
            ({"enabled": "yes"}, "feedback.enabled"),
        ):
            with pytest.raises(ConfigError, match=words):
                settings_from_mapping({"feedback": bad})

    def test_the_pod_ip_is_advertised_as_a_host_and_port_peers_can_dial(self, monkeypatch):
        # The downward API's status.podIP is IPv6 on an IPv6-first cluster: unbracketed,
        # "fd00::7:8001" names no port a peer's URL can use.
        monkeypatch.setenv("VIGIL_POD_IP", "fd00:10:244::7")
        assert feedback_module._default_advertise(8001) == "[fd00:10:244::7]:8001"
        monkeypatch.setenv("VIGIL_POD_IP", "10.244.0.7")
        assert feedback_module._default_advertise(8001) == "10.244.0.7:8001"
        monkeypatch.delenv("VIGIL_POD_IP")
        assert feedback_module._default_advertise(8001) == ""


class TestLivePort:
    async def test_feedback_paths_on_the_live_port_go_to_the_model(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb())
        for path in ("/vigil/v1/feedback", "/vigil/v1/feedback/handoff", "//vigil/v1/feedback"):
            async with http.post(f"{base(sidecar)}{path}", data=b'{"id": "a", "truth": 1}') as r:
                assert r.status == 404 and "X-Vigil-Error" not in r.headers  # the model's 404
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_requests_total") == 0


class TestHandoffEdges:
    """A stopping pod's handoff when peers leave too, stall, refuse or are older sidecars."""

    two = TestPeers.two

    @staticmethod
    def in_order(sidecar, *peers) -> None:
        async def resolve(fresh: bool = False) -> tuple[str, ...]:
            return tuple(p.feedback.address if hasattr(p, "feedback") else p for p in peers)

        sidecar.feedback.peers.resolve = resolve

    @pytest.mark.slow
    async def test_a_silent_peer_first_in_line_leaves_the_others_their_share(
        self, model, start_sidecar, http
    ):
        """A pod on a lost node is still listed: the figures give it only a share of the
        handoff's time, it is not asked for the predictions after them, and the next peer
        adopts everything."""
        a, b = await self.two(model, start_sidecar, handoff_timeout_seconds=1.6)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await send(http, a, {"id": "nobody", "truth": 1})  # a figure to hand over too
        async with silent_peer() as silent:
            self.in_order(a, silent.address, b)
            assert await a.feedback.handoff() == 1
        assert silent.connections == 1 and b.feedback.store.predictions == 1
        _, summary, _ = await send(http, b, {"id": made, "truth": pred})
        assert summary["joined"] == 1

    @pytest.mark.slow
    async def test_among_many_peers_a_busy_one_gets_a_second_before_the_next_is_asked(
        self, model, start_sidecar, http
    ):
        """Twelve peers in five seconds: an even share (at most 5/12 = 0.42 s) would cut off
        a peer that adopts the chunk in 0.45 s, and the next would adopt it too."""
        a, b = await self.two(model, start_sidecar, handoff_timeout_seconds=5.0)
        await predict(http, a, [[1.0, 0, 0]])
        received = []

        async def adopt_slowly(request: web.Request) -> web.Response:
            received.append(await request.read())
            await asyncio.sleep(0.45)  # past an even share, well within the least one
            return web.json_response({"adopted": 1})

        app = web.Application()
        app.router.add_post(feedback_module.HANDOFF_PATH, adopt_slowly)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        busy = f"127.0.0.1:{runner.addresses[0][1]}"
        refusing = [f"127.0.0.1:{port}" for port in range(1, 11)]
        self.in_order(a, busy, b, *refusing)
        try:
            assert await a.feedback.handoff() == 1
        finally:
            await runner.cleanup()
        assert len(received) == 1 and b.feedback.store.predictions == 0

    async def test_a_pod_that_is_leaving_refuses_a_handoff_and_the_next_peer_adopts(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar)
        c = await start_sidecar(model.url, revision="r3", feedback=fb())
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await send(http, a, {"id": "nobody", "truth": 1})  # a figure to hand over too
        b.feedback.leaving = True  # b stops at the same time (a promotion's old pods)
        self.in_order(a, b, c)
        assert await a.feedback.handoff() == 1
        assert b.feedback.store.predictions == 0  # refused: b would have lost it
        mb, mc = await scrape(http, b), await scrape(http, c)
        assert value(mb, "vigil_feedback_rejected_requests_total", reason="leaving") == 2
        assert value(mc, "vigil_feedback_labels_total", revision="r1", outcome="unknown") == 1
        c.feedback.peers.entries = ()
        _, summary, _ = await send(http, c, {"id": made, "truth": pred})
        assert summary["joined"] == 1

    @pytest.mark.slow
    async def test_a_request_stuck_on_a_silent_peer_leaves_the_handoff_time_to_send(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar, handoff_timeout_seconds=0.6)
        await predict(http, a, [[1.0, 0, 0]])
        a.feedback.joining += 1  # a feedback request waiting on a peer that never answers
        started = asyncio.get_running_loop().time()
        assert await a.feedback.handoff() == 1
        assert asyncio.get_running_loop().time() - started < 1.0
        assert b.feedback.store.predictions == 1
        a.feedback.joining -= 1  # it ends: the stop at teardown does not wait for it again

    async def test_a_slow_client_sending_its_body_does_not_hold_up_a_handoff(
        self, model, start_sidecar
    ):
        a = await start_sidecar(model.url, feedback=fb())
        host, port = a.feedback.address.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /vigil/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        await until(lambda: a.feedback.busy)  # the request is read, its body still coming
        assert a.feedback.busy == 1 and a.feedback.joining == 0
        writer.close()

    @pytest.mark.slow
    async def test_figures_sent_to_a_peer_that_timed_out_are_not_counted_again_here(
        self, model, start_sidecar, http
    ):
        a = await start_sidecar(model.url, feedback=fb(handoff_timeout_seconds=0.2))
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await send(http, a, {"id": made, "truth": pred})
        async with silent_peer() as silent:  # it may have counted the figures
            self.in_order(a, silent.address)
            assert await a.feedback.handoff() == 0
        ma = await scrape(http, a)
        assert value(ma, "vigil_feedback_labels_total", outcome="joined") == 0
        assert value(ma, "vigil_feedback_handoff_figures_total", outcome="uncertain") == 1

    @pytest.mark.slow
    async def test_figures_go_to_the_next_peer_when_the_first_cannot_be_connected_to(
        self, model, start_sidecar, http
    ):
        """A pod on a lost node is still listed: a connection never made sent nothing, so
        the label figures go to the next peer (not counted uncertain and lost)."""
        a, b = await self.two(model, start_sidecar, handoff_timeout_seconds=3.0)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await send(http, a, {"id": made, "truth": pred})
        with unconnectable_peer() as lost:
            self.in_order(a, lost, b)
            assert await a.feedback.handoff() == 1
        assert a.feedback.metrics.handoff_figures == {"sent": 1}
        mb = await scrape(http, b)
        assert value(mb, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 1

    async def test_a_peer_that_does_not_confirm_the_figures_leaves_them_here(
        self, model, start_sidecar, http
    ):
        a = await start_sidecar(model.url, feedback=fb())
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await send(http, a, {"id": made, "truth": pred})

        async def older_sidecar(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"adopted": 0})  # ignores "figures"

        app = web.Application()
        app.router.add_post("/vigil/v1/feedback/handoff", older_sidecar)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            self.in_order(a, f"127.0.0.1:{runner.addresses[0][1]}")
            await a.feedback.handoff()
        finally:
            await runner.cleanup()
        ma = await scrape(http, a)
        assert value(ma, "vigil_feedback_labels_total", outcome="joined") == 1
        assert value(ma, "vigil_feedback_handoff_figures_total", outcome="kept") == 1

    async def test_a_malformed_handoff_changes_nothing(self, model, start_sidecar, http):
        _, b = await self.two(model, start_sidecar)
        figures = {
            "outcomes": {"joined": 1},
            "scored": {},
            "correct": {},
            "absError": 0.0,
            "squaredError": 0.0,
            "delay": [1.0],  # buckets differ
        }
        doc = {"records": [["17", 1e12, "r1", 0, [[1.0, False]]]], "figures": {"r1": figures}}
        async with http.post(
            f"http://{b.feedback.address}/vigil/v1/feedback/handoff", data=json.dumps(doc)
        ) as resp:
            assert resp.status == 400
        assert b.feedback.store.predictions == 0
        mb = await scrape(http, b)
        assert value(mb, "vigil_feedback_labels_total") == 0

    async def test_a_label_whose_refused_pod_handed_over_to_the_asking_pod_joins_there(
        self, model, start_sidecar, http
    ):
        a, b = await self.two(model, start_sidecar)
        c = await start_sidecar(model.url, revision="r3", feedback=fb())
        _, (pred,) = await predict(http, a, [[1.0, 0, 0]], request_id="client-q")
        self.in_order(b, c, a)
        asked = b.feedback._call_peer

        async def then_a_leaves(peer, batch, refused):
            if peer == a.feedback.address and a.feedback.runner is not None:
                # b looked at its own store already; now a hands its predictions to b.
                assert await a.feedback.handoff() == 1
                await a.feedback.stop()
            return await asked(peer, batch, refused)

        b.feedback._call_peer = then_a_leaves
        _, summary, _ = await send(http, b, {"id": "client-q", "truth": pred})
        assert (summary["joined"], summary["unknown"]) == (1, 0), summary
        mb = await scrape(http, b)
        assert value(mb, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 1

    async def test_a_request_outliving_the_wait_does_not_mark_rows_already_handed_over(
        self, model, start_sidecar, http
    ):
        # The send to b is real HTTP: 0.2 s (a 0.1 s wait) left it too little on a loaded
        # machine, and nothing went.
        a, b = await self.two(model, start_sidecar, handoff_timeout_seconds=2.0)
        made, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        a.feedback.joining += 1  # still running when the wait ends
        assert await a.feedback.handoff() == 1
        label = parse_labels({"id": made, "truth": pred}, "classification", 9).labels[0]
        assert a.feedback._join_here(label, 0.0, []) == "absent"  # b holds it now
        _, summary, _ = await send(http, b, {"id": made, "truth": pred})
        assert summary["joined"] == 1
        a.feedback.joining -= 1  # it ends: the stop at teardown does not wait for it again


async def test_connections_from_no_peer_cost_few_lookups(monkeypatch) -> None:
    # Each one refreshed the peers (a resolver thread each): a flood starved the lookups
    # labels need, which then timed out as unreachable.
    from vigil.sidecar.feedback import Peers

    lookups = 0

    async def looked_up(*_args, **_kwargs):
        nonlocal lookups
        lookups += 1
        await asyncio.sleep(0.01)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.2", 8001))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", looked_up)
    now = [100.0]
    peers = Peers(("peers.example:8001",), "10.0.0.1:8001", lambda: now[0])
    refused = await asyncio.gather(*(peers.allows("10.9.9.9") for _ in range(200)))
    assert not any(refused) and lookups == 1, lookups
    now[0] += 1.0  # a peer that just started is still let in after a moment
    assert await peers.allows("10.0.0.2") and await peers.allows("10.0.0.1")
