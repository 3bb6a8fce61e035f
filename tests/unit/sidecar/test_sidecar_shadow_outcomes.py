"""Shadow copies: each outcome says whose answer it was, classifiers compare decisions.

Only a failure of the candidate's answer counts against it: the stable's own unparseable
or oversized answer, or a failure of the comparison itself, has an outcome of its own. A
classifier's scores are compared as the decisions they stand for unless a tolerance was
set, and the outcome series the operator reads are there at 0 before the first copy.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sidecar_testkit import (
    SHADOW_LABELS,
    SHADOW_ROWS,
    FakeModel,
    stable_shadow,
    until,
    v2_body,
)

from vigil.core.window import NOT_COMPARED, STABLE_SIDE
from vigil.sidecar import shadow as shadow_module
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.shadow import Shadow, ShadowCopy, compare_predictions

ROWS = SHADOW_ROWS
LABELS = SHADOW_LABELS
#: What the operator reads, and the count of compared copies.
READ_BY_THE_OPERATOR = ("compared", *NOT_COMPARED, *STABLE_SIDE)


def _answer(values: list[Any]) -> bytes:
    """A compact v2 answer (the fake model's own, for [0, 1, 2], is ~110 bytes)."""
    return json.dumps(
        {"outputs": [{"shape": [len(values)], "data": values}]}, separators=(",", ":")
    ).encode()


async def _run(shadow: Shadow, *copies: ShadowCopy) -> None:
    shadow.start()
    try:
        for copy in copies:
            shadow.submit(copy)
        await until(lambda: not shadow.pending)
    finally:
        await shadow.stop()


def _copy(local: bytes, content_type: str = "application/json", encoding: str = "") -> ShadowCopy:
    body = v2_body(ROWS)
    return ShadowCopy(
        "POST", "/v2/models/m/infer", "application/json", body, local, content_type, "", encoding
    )


def _count(registry: CollectorRegistry, outcome: str, revision: str = "c") -> float | None:
    return registry.get_sample_value(
        "vigil_shadow_requests_total", {**LABELS, "target_revision": revision, "outcome": outcome}
    )


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        s.labels["outcome"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


# ---------------------------------------------------------------- whose answer failed


@pytest.mark.parametrize(
    "local, content_type, encoding",
    [
        (_answer([0, 1, 2]), "application/json", "br"),
        (_answer([0, 1, 2]), "application/json", "zstd"),
        (b"not json", "application/json", ""),
        (b"not gzip", "application/json", "gzip"),
    ],
    ids=["br", "zstd", "not-json", "corrupt-gzip"],
)
async def test_a_stable_answer_its_sidecar_cannot_parse_is_not_blamed_on_the_candidate(
    model: FakeModel, local: bytes, content_type: str, encoding: str
):
    registry = CollectorRegistry()
    await _run(stable_shadow(model.url, registry), _copy(local, content_type, encoding))
    assert _count(registry, "stable_unparseable") == 1
    assert not _count(registry, "unparseable")
    assert not _count(registry, "compared")


async def test_a_json_answer_labelled_text_plain_is_compared_on_either_side(answering):
    # A server returning json.dumps as text/plain (a Flask app): the monitor and the golden
    # replay read it, and so does the shadow (every copy was unparseable: a rollback).
    target = await answering(_answer([0, 1, 2]), content_type=b"text/plain; charset=utf-8")
    registry = CollectorRegistry()
    await _run(stable_shadow(target, registry), _copy(_answer([0, 1, 2]), "text/plain"))
    assert _count(registry, "compared") == 1
    assert not _count(registry, "unparseable") and not _count(registry, "stable_unparseable")


async def test_a_candidate_answer_that_cannot_be_parsed_is_still_unparseable(answering):
    target = await answering(b"not json")
    registry = CollectorRegistry()
    await _run(stable_shadow(target, registry), _copy(_answer([0, 1, 2])))
    assert _count(registry, "unparseable") == 1
    assert not _count(registry, "stable_unparseable")


async def test_a_failing_comparison_is_a_compare_error_not_the_candidates(
    model: FakeModel, monkeypatch
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug of the sidecar's")

    monkeypatch.setattr(shadow_module, "compare_predictions", broken)
    registry = CollectorRegistry()
    await _run(stable_shadow(model.url, registry), _copy(_answer([0, 1, 2])))
    assert _count(registry, "compare_error") == 1
    assert not _count(registry, "unparseable")


# ---------------------------------------------------------------- whose answer was too large


async def test_a_candidate_answer_over_the_cap_counts_as_target_too_large(
    model: FakeModel, monkeypatch
):
    # The fake model's answer (~110 bytes, by its length) is over the cap, the stable's not.
    monkeypatch.setattr(shadow_module, "MAX_COMPARED_BYTES", 80)
    local = _answer([0, 1, 2])
    assert len(local) < 80
    registry = CollectorRegistry()
    await _run(stable_shadow(model.url, registry), _copy(local))
    assert _count(registry, "target_too_large") == 1
    assert not _count(registry, "too_large")


async def test_a_gzip_candidate_answer_over_the_cap_once_decoded_is_target_too_large(
    answering, monkeypatch
):
    monkeypatch.setattr(shadow_module, "MAX_COMPARED_BYTES", 1000)
    target = await answering(gzip.compress(_answer([1] * 3000)), b"Content-Encoding: gzip\r\n")
    registry = CollectorRegistry()
    await _run(stable_shadow(target, registry), _copy(_answer([0, 1, 2])))
    assert _count(registry, "target_too_large") == 1
    assert not _count(registry, "too_large")


@pytest.mark.parametrize(
    ("local", "counted", "not_counted"),
    [
        (_answer([0] * 100), "too_large", "target_too_large"),
        (b"not json", "stable_unparseable", "target_too_large"),
    ],
    ids=["both answers over the cap: too_large", "the stable's unparseable: the stable's"],
)
async def test_a_failure_on_the_stables_side_besides_an_oversized_candidate_is_the_stables(
    model: FakeModel, monkeypatch, local: bytes, counted: str, not_counted: str
):
    monkeypatch.setattr(shadow_module, "MAX_COMPARED_BYTES", 80)
    registry = CollectorRegistry()
    await _run(stable_shadow(model.url, registry), _copy(local))
    assert _count(registry, counted) == 1
    assert not _count(registry, not_counted)


# ---------------------------------------------------------------- a classifier's scores


def test_a_retrained_classifiers_score_noise_agrees_where_its_decisions_do():
    rng = np.random.default_rng(0)
    stable = rng.beta(0.5, 0.5, 20_000)  # P(y=1), mostly near 0 or 1
    candidate = np.clip(stable + rng.normal(0, 0.005, stable.size), 0, 1)
    agree, diffs = compare_predictions(stable.tolist(), candidate.tolist(), True, 0.0, 0.05)
    assert agree == int(np.sum((stable > 0.5) == (candidate > 0.5)))
    assert agree / stable.size > 0.99
    assert len(diffs) == stable.size  # the scores' differences are still measured


def test_identical_decisions_agree_whatever_their_scores():
    # 0.5 itself is the negative class (a tie, as arg-max decides it): 0.51 is the positive.
    assert compare_predictions([0.91, 0.12, 0.55], [0.6, 0.49, 0.51], True, 0.0, 0.05)[0] == 3
    assert compare_predictions([0.91, 0.12], [0.4, 0.51], True, 0.0, 0.05)[0] == 0


def test_scores_are_compared_as_decisions_with_the_other_sides_labels():
    assert compare_predictions([1, 0, 1, 0], [0.7, 0.2, 0.4, 0.6], True, 0.0, 0.05)[0] == 2
    assert compare_predictions([0.7, 0.2, 0.4], [1.0, 0.0, 1.0], True, 0.0, 0.05)[0] == 2


def test_with_scores_as_numbers_they_agree_within_the_tolerance():
    agree, _ = compare_predictions(
        [0.91, 0.12], [0.6, 0.49], True, 0.01, 0.0, scores_as_numbers=True
    )
    assert agree == 0
    assert compare_predictions([0.91], [0.915], True, 0.01, 0.0, scores_as_numbers=True)[0] == 1


@pytest.mark.parametrize("tolerance, agreements", [(None, 3.0), (0.01, 0.0)])
async def test_a_classifiers_scores_are_compared_as_numbers_only_with_a_tolerance_set(
    answering, tolerance: float | None, agreements: float
):
    target = await answering(_answer([0.7, 0.4, 0.51]))
    registry = CollectorRegistry()
    shadow = stable_shadow(target, registry, tolerance=tolerance)
    await _run(shadow, _copy(_answer([0.9, 0.2, 0.6])))
    labels = {**LABELS, "target_revision": "c"}
    assert registry.get_sample_value("vigil_shadow_predictions_total", labels) == 3
    assert registry.get_sample_value("vigil_shadow_agreements_total", labels) == agreements


# ---------------------------------------------------------------- series from the start


def test_the_outcomes_the_operator_reads_are_at_zero_once_a_target_is_set():
    registry = CollectorRegistry()
    shadow = stable_shadow("http://127.0.0.1:9", registry, percent=0)  # not copying yet
    assert {o: _count(registry, o) for o in READ_BY_THE_OPERATOR} == dict.fromkeys(
        READ_BY_THE_OPERATOR, 0.0
    )
    shadow.configure(replace(shadow.settings, target_revision="d", percent=100))
    assert {o: _count(registry, o, "d") for o in READ_BY_THE_OPERATOR} == dict.fromkeys(
        READ_BY_THE_OPERATOR, 0.0
    )


def test_without_a_target_no_outcome_series_is_made():
    registry = CollectorRegistry()
    Shadow(
        protocol="v2",
        base=LABELS,
        registry=registry,
        classification=True,
        settings=ShadowSettings(),
    )
    assert _samples(registry, "vigil_shadow_requests_total") == {}


async def test_an_outcome_series_made_at_zero_counts_the_copies_after(model: FakeModel):
    registry = CollectorRegistry()
    await _run(stable_shadow(model.url, registry), _copy(_answer([0, 1, 2])))
    assert _samples(registry, "vigil_shadow_requests_total") == {
        **dict.fromkeys(READ_BY_THE_OPERATOR, 0.0),
        "compared": 1.0,
    }
