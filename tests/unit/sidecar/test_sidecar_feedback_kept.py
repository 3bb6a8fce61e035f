"""Every id an answer carries is kept: a label for it is never told ``lost`` (the pod went
away) while the pod that served it runs, also when there was no prediction to keep."""

from __future__ import annotations

import json

from sidecar_testkit import base, scrape, value

from vigil.sidecar.config import FeedbackSettings

FEEDBACK = FeedbackSettings(enabled=True, host="127.0.0.1", port=0, task="classification")


async def served_id(http, sidecar, path: str, body: bytes, headers=None) -> tuple[int, str]:
    """One request through the sidecar: the answer's status and X-Request-Id."""
    async with http.post(f"{base(sidecar)}{path}", data=body, headers=headers or {}) as resp:
        await resp.read()
        return resp.status, resp.headers.get("X-Request-Id", "")


async def label(http, sidecar, request_id: str) -> dict:
    url = f"http://{sidecar.feedback.address}/vigil/v1/feedback"
    async with http.post(url, data=json.dumps({"id": request_id, "truth": 1})) as resp:
        assert resp.status == 200
        return await resp.json()


class TestNoPredictionIsNotLost:
    async def test_the_model_servers_error_answer(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=FEEDBACK)
        status, request_id = await served_id(http, sidecar, "/v2/models/m/infer", b'{"inputs": 1}')
        assert status == 400 and request_id  # the fake model refuses the tensor
        summary = await label(http, sidecar, request_id)
        assert (summary["noPrediction"], summary["lost"]) == (1, 0)
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_labels_total", outcome="no_prediction") == 1

    async def test_the_raw_protocol(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, protocol="raw", feedback=FEEDBACK)
        status, request_id = await served_id(http, sidecar, "/echo", b"anything")
        assert status == 200 and request_id
        summary = await label(http, sidecar, request_id)
        assert (summary["noPrediction"], summary["lost"]) == (1, 0)
        # Raw bodies stay unread: the id is kept, nothing is monitored.
        assert sidecar.monitor.exchanges == 0

    async def test_a_shadow_copys_error_answer_is_still_not_kept(self, model, start_sidecar, http):
        sidecar = await start_sidecar(model.url, feedback=FEEDBACK)
        headers = {"X-Vigil-Shadow": "1", "X-Request-Id": "copied"}
        status, _ = await served_id(http, sidecar, "/v2/models/m/infer", b'{"inputs": 1}', headers)
        assert status == 400
        assert (await label(http, sidecar, "copied"))["unknown"] == 1
