"""One model's failure in a per-model stage of the health cycle is that model's problem.

The cycle loads every model's reference profile in one gather and writes every
status in another: an exception out of one model's part ended the whole cycle,
and no model in the cluster was judged while it lasted.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_health_loop import GOOD, Loop, md, pod, with_reference

from vigil.operator import health as module
from vigil.operator.health import HealthWrite


@pytest.fixture
def loop() -> Loop:
    return Loop()


def another_model(loop: Loop) -> None:
    loop.add(md("other", "o1"), pod("other-a", model="other", revision="o1", ip="10.0.0.9"))
    loop._source(("direct", "")).windows[("ml", "other", "o1")] = GOOD


async def test_a_reference_whose_parsing_raises_is_its_models_problem_parsed_once(
    loop: Loop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parsed: list[str] = []

    def raising(text: str) -> Any:
        parsed.append(text)
        raise RuntimeError("a parser bug")

    monkeypatch.setattr(module, "parse_profile", raising)
    with_reference(loop)
    another_model(loop)
    result = await loop.cycle()
    assert (result.evaluated, result.failed) == (2, 0)
    assert loop.status("other")["health"]["verdict"] == "Healthy"
    # Judged without a reference, the reason logged.
    assert loop.status("wine")["health"]["verdict"] == "Healthy"
    assert loop.status("wine")["health"]["drift"] == {"method": "psi", "level": "unknown"}
    assert (
        "ml/wine: reference ConfigMap ref/profile.json: not parsed: RuntimeError: a parser bug"
        in caplog.text
    )
    await loop.cycle()
    assert parsed == ["{}"]  # this resourceVersion's problem, kept as a ProfileError's is


async def test_a_reference_that_cannot_be_read_leaves_the_other_models_judged(
    loop: Loop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with_reference(loop)
    another_model(loop)
    get = loop.api.get

    async def failing_for_configmaps(kind: str, namespace: str, name: str) -> Any:
        if kind == "ConfigMap":
            raise ValueError("an answer the client did not expect")
        return await get(kind, namespace, name)

    monkeypatch.setattr(loop.api, "get", failing_for_configmaps)
    result = await loop.cycle()
    assert (result.evaluated, result.failed) == (2, 0)
    assert loop.status("other")["health"]["verdict"] == "Healthy"
    assert loop.status("wine")["health"]["drift"] == {"method": "psi", "level": "unknown"}
    assert "ml/wine: reference profile not read: ValueError" in caplog.text


async def test_a_health_write_that_raises_leaves_the_other_models_written(
    loop: Loop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = GOOD
    another_model(loop)
    reconciler = loop.loop.reconciler
    record = reconciler.record_health

    async def failing_for_wine(write: HealthWrite) -> bool:
        if write.name == "wine":
            raise RuntimeError("a bug met by one write")
        return await record(write)

    monkeypatch.setattr(reconciler, "record_health", failing_for_wine)
    result = await loop.cycle()
    assert (result.evaluated, result.written) == (2, 1)
    assert loop.status("other")["health"]["verdict"] == "Healthy"
    assert "health" not in loop.status("wine")
    assert "ml/wine: could not write health" in caplog.text


async def test_an_object_the_loop_cannot_read_leaves_the_other_models_judged(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    broken = md("broken", "b1")
    broken["status"]["stable"] = "b1"  # a status edited by hand, not an object
    loop.add(broken, pod("broken-a", model="broken", revision="b1", ip="10.0.0.2"))
    another_model(loop)
    result = await loop.cycle()
    assert (result.evaluated, result.written) == (1, 1)
    assert loop.status("other")["health"]["verdict"] == "Healthy"
    assert "ml/broken: health not evaluated" in caplog.text
