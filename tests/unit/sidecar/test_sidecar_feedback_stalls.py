"""A label request holds up neither live inference nor the other label requests.

Its drain of the monitoring queue yields between batches; a client that stalls
mid-upload is answered 408 and gives its request slot back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sidecar_testkit import base, scrape, ticks_at_each_batch, v2_body, value

from vigil.sidecar import feedback as feedback_module
from vigil.sidecar import monitor as monitor_module
from vigil.sidecar.config import FeedbackSettings


def fb(**overrides: Any) -> FeedbackSettings:
    return FeedbackSettings(
        **{"enabled": True, "host": "127.0.0.1", "port": 0, "task": "classification", **overrides}
    )


async def send(http, sidecar, doc) -> tuple[int, dict[str, Any]]:
    url = f"http://{sidecar.feedback.address}/vigil/v1/feedback"
    async with http.post(url, data=json.dumps(doc).encode()) as resp:
        return resp.status, await resp.json()


class TestDrainYields:
    async def test_a_label_lets_other_tasks_run_between_the_batches_it_drains(
        self, model, start_sidecar, http, monkeypatch
    ):
        # Drained in one go, a 60 MiB backlog of batch-scoring requests stalled every
        # live inference on the pod for seconds when one label came in.
        monkeypatch.setattr(monitor_module, "BATCH_BYTES", 1)  # one exchange a batch
        sidecar = await start_sidecar(model.url, feedback=fb())
        sidecar.monitor._task.cancel()  # the label's drain is the only one
        ids = []
        for _ in range(5):
            async with http.post(
                f"{base(sidecar)}/v2/models/m/infer", data=v2_body([[1.0, 0, 0]])
            ) as resp:
                ids.append(resp.headers["X-Request-Id"])
        assert sidecar.monitor.pending == 5
        async with ticks_at_each_batch(sidecar.monitor, monkeypatch) as at_batch:
            status, summary = await send(
                http, sidecar, {"labels": [{"id": i, "truth": 1} for i in ids]}
            )
        # Every prediction served before the label is joined, and the ticker (standing for
        # the proxy) ran between every two batches.
        assert status == 200 and summary["joined"] == 5
        assert at_batch == sorted(set(at_batch)) and len(at_batch) == 5, at_batch


async def stall(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A label upload that sends its head and part of its body, then nothing more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /vigil/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"labels":['
    )
    await writer.drain()
    return reader, writer


class TestStalledUploads:
    @pytest.mark.slow
    async def test_stalled_uploads_get_408_and_give_their_slots_back(
        self, model, start_sidecar, http, monkeypatch
    ):
        # Without a timeout two stalled uploads held both request slots for good: every
        # label after them was refused 429 busy.
        monkeypatch.setattr(feedback_module, "BODY_TIMEOUT_SECONDS", 0.2)
        sidecar = await start_sidecar(model.url, feedback=fb(max_concurrent_requests=2))
        port = int(sidecar.feedback.address.rsplit(":", 1)[1])
        stalled = [await stall(port) for _ in range(2)]
        try:
            for reader, _ in stalled:
                # The guard only ends a hang: the answer comes after BODY_TIMEOUT_SECONDS.
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                assert head.startswith(b"HTTP/1.1 408 "), head
                assert b"X-Vigil-Error: body_timeout" in head
                assert b"Connection: close" in head
        finally:
            for _, writer in stalled:
                writer.close()
        assert sidecar.feedback.busy == 0
        status, summary = await send(http, sidecar, {"id": "abc", "truth": 1})
        assert status == 200 and summary["unknown"] == 1
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_rejected_requests_total", reason="body_timeout") == 2
