"""Golden sets as users make them and servers answer them: a byte order mark, a server
asking for credentials, a set of another protocol than the server's, a pandas index
column and codes with leading zeros in `vigil golden build`'s CSV."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from vigil.core.spec import GoldenSetRef, parse_spec
from vigil.operator.rollouts import Rollouts
from vigil.validation.cli import read_rows
from vigil.validation.golden import (
    GoldenSet,
    GoldenSetError,
    golden_from_configmap,
    model_answered,
    parse_golden_set,
    protocol_mismatch,
    replay_report,
)

DOC = {
    "format": "vigil.dev/golden-set/v1",
    "model": "wine",
    "inputs": [[1.0, 2.0]],
    "expected": [1],
}
BOM = "\ufeff"


# ---------------------------------------------------------------- a byte order mark


def test_a_golden_set_saved_with_a_bom_is_read_as_the_cli_reads_it():
    text = BOM + json.dumps(DOC)  # Notepad, PowerShell's "UTF8"
    assert parse_golden_set(text).expected == (1,)
    assert parse_golden_set(text.encode("utf-8")).expected == (1,)
    configmap = {"metadata": {"name": "wine-golden"}, "data": {"golden.json": text}}
    golden = golden_from_configmap(configmap, GoldenSetRef("wine-golden", "golden.json"))
    assert golden.inputs == ((1.0, 2.0),)


def test_a_bom_inside_the_document_is_still_no_json():
    with pytest.raises(GoldenSetError, match="not JSON"):
        parse_golden_set(" " + BOM + json.dumps(DOC))


# ---------------------------------------------------------------- credentials


@pytest.fixture
async def answering() -> AsyncIterator[Callable[[int], Any]]:
    """Factory: a model server answering every inference with ``status``; its request count."""
    runners: list[web.AppRunner] = []

    async def start(status: int) -> tuple[str, list[int]]:
        seen: list[int] = []

        async def infer(_: web.Request) -> web.Response:
            seen.append(status)
            return web.json_response({"error": "missing bearer token"}, status=status)

        app = web.Application()
        app.router.add_post("/v2/models/{model}/infer", infer)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}", seen

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.mark.parametrize("status", [401, 403])
async def test_a_server_asking_for_credentials_is_no_result_said_so(answering, status: int):
    url, seen = await answering(status)
    golden = GoldenSet(inputs=((1.0, 2.0),) * 10, expected=(1,) * 10)
    report = await replay_report(golden, url, model="wine", batch_size=5)
    assert not report.complete  # not 0/10 reproduced: the model was never judged
    assert report.denied.startswith(f"HTTP {status}")
    assert "for want of credentials" in report.summary()
    assert len(seen) == 2  # one request a batch: a retry gets the same answer
    assert not model_answered(status)


async def test_a_404_is_still_the_models_answer(answering):
    url, _ = await answering(404)
    golden = GoldenSet(inputs=((1.0, 2.0),) * 4, expected=(1,) * 4)
    report = await replay_report(golden, url, model="wine")
    assert report.complete and report.result.agreed == 0 and not report.denied


async def test_the_operator_waits_on_a_replay_refused_for_credentials(answering, monkeypatch):
    url, _ = await answering(401)
    rollouts = _rollouts(url, monkeypatch)
    result = await rollouts.replay(_golden_cm(DOC), "ml", "wine", _spec("v2"), REF)
    assert result is None  # the step stays ValidationPending: no rollback
    assert "for want of credentials (HTTP 401" in rollouts.golden_pending("ml", "wine")


# ---------------------------------------------------------------- protocol


REF = GoldenSetRef("wine-golden", "golden.json")


def _spec(protocol: str) -> Any:
    server = {"image": "img:1", "protocol": protocol}
    return parse_spec("wine", {"model": {"version": "2"}, "server": server})


def _golden_cm(doc: dict[str, Any]) -> Any:
    class GoldenConfigMap:
        async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
            return {"metadata": {"name": name}, "data": {"golden.json": json.dumps(doc)}}

    return GoldenConfigMap()


def _rollouts(url: str, monkeypatch: pytest.MonkeyPatch) -> Rollouts:
    rollouts = Rollouts(lambda *_: [])

    async def candidate_url(*_: Any) -> str:
        return url

    monkeypatch.setattr(rollouts, "candidate_url", candidate_url)
    return rollouts


def test_a_golden_set_of_another_protocol_than_the_server_is_named_both():
    golden = parse_golden_set({**DOC, "protocol": "v1"})
    words = protocol_mismatch(golden, "v2")
    assert "golden set is v1 but spec.server.protocol is v2" in words
    assert protocol_mismatch(golden, "v1") == ""
    assert protocol_mismatch(golden, "raw") == ""  # a raw server's protocol is unknown


async def test_a_golden_set_of_another_protocol_is_replayed_its_failure_naming_both(answering):
    # A server may speak both (KServe's): refused outright, a working set rolled back.
    # One that speaks only v2 answers /v1/... 404: the words say why.
    url, _ = await answering(404)
    golden = GoldenSet(inputs=((1.0, 2.0),) * 4, expected=(1,) * 4, protocol="v1")
    report = await replay_report(golden, url, model="wine", server_protocol="v2")
    assert report.complete and report.result.agreed == 0
    assert "golden set is v1 but spec.server.protocol is v2" in report.summary()


# ---------------------------------------------------------------- vigil golden build


def test_a_pandas_index_column_is_refused_unless_the_features_are_named(tmp_path: Path):
    csv = tmp_path / "holdout.csv"
    csv.write_text(",alcohol,ash,pred\n0,14.2,2.4,1\n1,13.1,2.1,0\n")  # df.to_csv()
    with pytest.raises(GoldenSetError, match=r"column 1 has no name .*--features"):
        read_rows(csv, "pred", None, "FP64")
    names, rows, expected = read_rows(csv, "pred", ["alcohol", "ash"], "FP64")
    assert names == ["alcohol", "ash"] and rows == [[14.2, 2.4], [13.1, 2.1]]
    assert expected == [1, 0]


def test_an_unnamed_key_of_json_records_is_refused_too(tmp_path: Path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"": 0, "alcohol": 14.2, "pred": 1}]))
    with pytest.raises(GoldenSetError, match="has no name"):
        read_rows(path, "pred", None, "FP64")
