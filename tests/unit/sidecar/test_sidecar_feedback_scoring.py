"""Labels are counted once and scored only against a class or value the prediction had.

A handoff fits the peer's body limit, probability answers are no class, each
revision's predictions are scored by that revision's task, the series exist
from startup and truths that are no class are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from sidecar_testkit import FEATURES, V2Server, base, scrape, v2_body, value

from vigil.profile import build_profile
from vigil.sidecar.config import FeedbackSettings
from vigil.sidecar.feedback import parse_labels


def fb(**overrides: Any) -> FeedbackSettings:
    return FeedbackSettings(
        **{"enabled": True, "host": "127.0.0.1", "port": 0, "task": "classification", **overrides}
    )


async def predict(http, sidecar, rows) -> tuple[str, list[Any]]:
    async with http.post(f"{base(sidecar)}/v2/models/m/infer", data=v2_body(rows)) as resp:
        assert resp.status == 200
        doc = await resp.json()
        return resp.headers["X-Request-Id"], doc["outputs"][0]["data"]


async def send(http, sidecar, doc) -> dict[str, Any]:
    url = f"http://{sidecar.feedback.address}/vigil/v1/feedback"
    async with http.post(url, data=json.dumps(doc).encode()) as resp:
        assert resp.status == 200
        return await resp.json()


async def pair(start_sidecar, url: str, a: FeedbackSettings, b: FeedbackSettings):
    """Two pods of revisions r1 and r2, each the other's only peer."""
    first = await start_sidecar(url, feedback=a)
    second = await start_sidecar(url, revision="r2", feedback=b)
    first.feedback.peers.entries = (second.feedback.address,)
    second.feedback.peers.entries = (first.feedback.address,)
    return first, second


def series(metrics: dict[tuple, float], prefix: str) -> set[tuple]:
    return {key for key in metrics if key[0].startswith(prefix)}


class OutputModel(V2Server):
    """A v2 model answering one output made from the number of rows."""

    def __init__(self, output: Callable[[int], dict[str, Any]]) -> None:
        super().__init__()
        self.output = output

    async def infer(self, request: web.Request) -> web.Response:
        rows = json.loads(await request.read())["inputs"][0]["shape"][0]
        return web.json_response({"model_name": "m", "outputs": [self.output(rows)]})


@pytest.fixture
async def probability_model() -> AsyncIterator[OutputModel]:
    """A binary classifier answering P(class 1) per row, shape [N] (XGBoost's logistic)."""
    server = OutputModel(
        lambda n: {"name": "p", "shape": [n], "datatype": "FP32", "data": [0.91] * n}
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class TestHandoffFitsThePeersBodyLimit:
    @staticmethod
    def hold(sidecar, n: int, rows: int, prefix: str = "req") -> None:
        now = time.time()
        for i in range(n):
            sidecar.feedback.record(f"{prefix}-{i}", now, [0.001 * j + 1e-7 for j in range(rows)])

    async def test_predictions_over_the_body_limit_go_in_chunks_that_fit(
        self, model, start_sidecar, http
    ):
        settings = fb(task="regression", max_body_bytes=16_384)
        a, b = await pair(start_sidecar, model.url, settings, settings)
        self.hold(a, 300, 13)
        assert await a.feedback.handoff() == 300
        assert a.feedback.metrics.handoff == {"sent": 300}
        assert b.feedback.metrics.rejected == {}
        assert b.feedback.store.predictions == 300 and b.feedback.store.conflicts == 0
        summary = await send(http, b, {"id": "req-299", "truth": [0.0] * 13})
        assert summary["joined"] == 13

    async def test_a_chunk_a_peer_refuses_as_too_large_is_split_and_sent_once(
        self, model, start_sidecar
    ):
        """A peer with a lower limit answers 413 (adopting nothing): halves go again; a
        prediction too large for it alone is the only one that fails."""
        a, b = await pair(
            start_sidecar,
            model.url,
            fb(task="regression", max_body_bytes=64 * 1024),
            fb(task="regression", max_body_bytes=8 * 1024),
        )
        self.hold(a, 300, 13)
        self.hold(a, 1, 1000, prefix="wide")
        assert await a.feedback.handoff() == 300
        assert a.feedback.metrics.handoff == {"sent": 300, "failed": 1}
        assert b.feedback.metrics.rejected["body_too_large"] >= 1
        assert b.feedback.store.predictions == 300 and b.feedback.store.conflicts == 0


class TestProbabilityAnswersAreNoClass:
    async def test_labels_of_a_probability_answer_count_as_no_prediction_not_wrong(
        self, probability_model, start_sidecar, http
    ):
        sidecar = await start_sidecar(probability_model.url, feedback=fb())
        ids = [(await predict(http, sidecar, [[1.0, 0, 0]]))[0] for _ in range(3)]
        summary = await send(http, sidecar, {"labels": [{"id": i, "truth": 1} for i in ids]})
        assert (summary["joined"], summary["noPrediction"]) == (0, 3)
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_labels_total", outcome="no_prediction") == 3
        assert value(m, "vigil_feedback_scored_total") == 0


@pytest.fixture
async def scores_model() -> AsyncIterator[OutputModel]:
    """A classifier answering one score per class, shape [N, 3]: column 1 wins each row."""
    server = OutputModel(
        lambda n: {"name": "p", "shape": [n, 3], "datatype": "FP32", "data": [0.1, 0.7, 0.2] * n}
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def profile_of_classes(tmp_path, classes: list[Any]):
    """A reference profile whose predicted classes are ``classes`` (sorted: as a model's
    columns are), each about as frequent."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (600, 3))
    predictions = np.array(classes, dtype=object)[np.arange(600) % len(classes)]
    profile = build_profile(
        x, predictions=predictions, feature_names=FEATURES, task="classification"
    )
    path = tmp_path / "classes.json"
    path.write_text(profile.to_json())
    return path


class TestScoresPerClassAnswerAColumnNotAClass:
    """An [N, C] answer is read as its arg-max column: a class only where the classes are
    the column indices; which column is which named class no answer says."""

    async def test_labels_naming_classes_count_as_no_prediction_not_wrong(
        self, scores_model, start_sidecar, http, tmp_path
    ):
        profile = profile_of_classes(tmp_path, ["bird", "cat", "dog"])
        sidecar = await start_sidecar(
            scores_model.url, reference_profile=str(profile), feedback=fb(task="")
        )
        rid, _ = await predict(http, sidecar, [[1.0, 0, 0]])
        summary = await send(http, sidecar, {"id": rid, "truth": "cat"})  # column 1's class
        assert (summary["joined"], summary["noPrediction"]) == (0, 1)
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_scored_total") == 0
        assert value(m, "vigil_feedback_labels_total", outcome="no_prediction") == 1

    async def test_labels_are_scored_where_the_classes_are_the_column_indices(
        self, scores_model, start_sidecar, http, tmp_path
    ):
        profile = profile_of_classes(tmp_path, [0, 1, 2])
        sidecar = await start_sidecar(
            scores_model.url, reference_profile=str(profile), feedback=fb(task="")
        )
        right, _ = await predict(http, sidecar, [[1.0, 0, 0]])
        wrong, _ = await predict(http, sidecar, [[1.0, 0, 0]])
        summary = await send(
            http, sidecar, {"labels": [{"id": right, "truth": 1}, {"id": wrong, "truth": 2}]}
        )
        assert summary["joined"] == 2
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_scored_total") == 2
        assert value(m, "vigil_feedback_correct_total") == 1


class TestSeriesExistFromStartup:
    """Prometheus' increase() skips a series' first sample: the first labels must not be it."""

    async def test_a_classifiers_series_are_at_zero_before_the_first_label(
        self, model, start_sidecar, http, profile_path
    ):
        sidecar = await start_sidecar(
            model.url, reference_profile=str(profile_path), feedback=fb(task="")
        )
        before = await scrape(http, sidecar)
        outcomes = {
            dict(labels)["outcome"]
            for name, labels in series(before, "vigil_feedback_labels_total")
            if dict(labels)["revision"] == "r1"
        }
        assert outcomes == {
            "joined",
            "duplicate",
            "no_prediction",
            "expired",
            "lost",
            "unknown",
            "unreachable",
            "invalid",
        }
        for name in ("vigil_feedback_scored_total", "vigil_feedback_correct_total"):
            classes = {dict(labels)["class"] for _, labels in series(before, name)}
            assert classes == {"0", "1", "2"}
        assert len(series(before, "vigil_feedback_label_delay_seconds_count")) == 1
        zeros = ("vigil_feedback_l", "vigil_feedback_scored", "vigil_feedback_correct")
        assert all(before[k] == 0 for p in zeros for k in series(before, p))
        assert not series(before, "vigil_feedback_absolute_error_total")
        rid, (pred,) = await predict(http, sidecar, [[1.0, 0, 0]])
        await send(http, sidecar, {"id": rid, "truth": pred})
        after = await scrape(http, sidecar)
        for prefix in ("vigil_feedback_labels", "vigil_feedback_scored", "vigil_feedback_label_"):
            assert series(before, prefix) == series(after, prefix), prefix
        assert value(after, "vigil_feedback_correct_total", **{"class": str(pred)}) == 1

    async def test_a_regressors_error_sums_are_at_zero_before_the_first_label(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb(task="regression"))
        before = await scrape(http, sidecar)
        for name in (
            "vigil_feedback_scored_total",
            "vigil_feedback_correct_total",
            "vigil_feedback_absolute_error_total",
            "vigil_feedback_squared_error_total",
        ):
            assert len(series(before, name)) == 1, name
        assert dict(next(iter(series(before, "vigil_feedback_scored_total")))[1])["class"] == ""
        rid, (pred,) = await predict(http, sidecar, [[1.0, 0, 0]])
        await send(http, sidecar, {"id": rid, "truth": pred + 0.5})
        after = await scrape(http, sidecar)
        for prefix in ("vigil_feedback_scored", "vigil_feedback_absolute", "vigil_feedback_label"):
            assert series(before, prefix) == series(after, prefix), prefix

    async def test_without_a_task_only_the_outcomes_and_delays_are_there(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb(task=""))
        before = await scrape(http, sidecar)
        assert len(series(before, "vigil_feedback_labels_total")) == 8
        assert series(before, "vigil_feedback_label_delay_seconds_count")
        assert not series(before, "vigil_feedback_scored_total")


class TestPredictionsScoredByTheirRevisionsTask:
    async def test_a_revision_without_a_task_stays_unscored_at_a_regression_adopter(
        self, model, start_sidecar, http
    ):
        a, b = await pair(start_sidecar, model.url, fb(task=""), fb(task="regression"))
        rid, (pred,) = await predict(http, a, [[2.0, 0, 0]])
        await a.stop()
        summary = await send(http, b, {"id": rid, "truth": float(pred)})
        assert summary["joined"] == 1
        m = await scrape(http, b)
        assert value(m, "vigil_feedback_labels_total", revision="r1", outcome="joined") == 1
        assert value(m, "vigil_feedback_scored_total", revision="r1") == 0
        assert value(m, "vigil_feedback_absolute_error_total", revision="r1") == 0

    async def test_a_classifiers_predictions_are_scored_as_classes_at_a_regression_adopter(
        self, model, start_sidecar, http
    ):
        a, b = await pair(start_sidecar, model.url, fb(), fb(task="regression"))
        rid, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await a.stop()
        await send(http, b, {"id": rid, "truth": pred})
        m = await scrape(http, b)
        assert value(m, "vigil_feedback_correct_total", revision="r1", **{"class": "1"}) == 1
        assert value(m, "vigil_feedback_absolute_error_total", revision="r1") == 0

    async def test_an_adopted_revisions_task_goes_on_with_the_next_handoff(
        self, model, start_sidecar, http
    ):
        a, b = await pair(start_sidecar, model.url, fb(task=""), fb(task="regression"))
        c = await start_sidecar(model.url, revision="r3", feedback=fb(task="regression"))
        rid, (pred,) = await predict(http, a, [[2.0, 0, 0]])
        await a.stop()
        b.feedback.peers.entries = (c.feedback.address,)
        c.feedback.peers.entries = (b.feedback.address,)
        await b.stop()
        assert (await send(http, c, {"id": rid, "truth": float(pred)}))["joined"] == 1
        m = await scrape(http, c)
        assert value(m, "vigil_feedback_scored_total", revision="r1") == 0

    @pytest.mark.parametrize(
        "tasks, scored",
        [(None, 1), ({}, 0)],
        ids=["no-tasks-key", "tasks-without-the-revision"],
    )
    async def test_an_older_senders_handoff_without_tasks_is_scored_with_the_receivers_task(
        self, model, start_sidecar, http, monkeypatch, tasks: dict[str, str] | None, scored: int
    ):
        """A sender from before tasks were handed over names none: its predictions are
        scored as before (by the receiver's task); one that names tasks but not this
        revision's leaves them unscored."""
        from vigil.sidecar import feedback as feedback_module

        real = feedback_module._post_handoff

        async def older(
            session: Any, peer: str, payload: bytes, timeout: float
        ) -> tuple[int, bytes]:
            doc = json.loads(payload)
            if tasks is None:
                del doc["tasks"]
            else:
                doc["tasks"] = tasks
            return await real(session, peer, json.dumps(doc).encode(), timeout)

        monkeypatch.setattr(feedback_module, "_post_handoff", older)
        a, b = await pair(start_sidecar, model.url, fb(), fb())
        rid, (pred,) = await predict(http, a, [[1.0, 0, 0]])
        await a.stop()
        assert (await send(http, b, {"id": rid, "truth": pred}))["joined"] == 1
        m = await scrape(http, b)
        assert value(m, "vigil_feedback_scored_total", revision="r1") == scored
        assert value(m, "vigil_feedback_correct_total", revision="r1") == scored


class TestTruthsThatAreNoClass:
    def test_blank_truths_are_invalid_for_a_classifier(self):
        parsed = parse_labels(
            {"labels": [{"id": "a", "truth": ""}, {"id": "b", "truth": [" ", "1"]}]},
            "classification",
            10,
        )
        assert [label.truth for label in parsed.labels] == ["1"]
        assert len(parsed.invalid) == 2 and all("blank" in e for e in parsed.invalid)

    def test_booleans_are_a_class_only_for_a_model_whose_classes_are_booleans(self):
        doc = {"labels": [{"id": "a", "truth": True}, {"id": "b", "truth": [False, 1]}]}
        numbers = parse_labels(doc, "classification", 10, classes=("0", "1"))
        assert [label.truth for label in numbers.labels] == [1]
        assert len(numbers.invalid) == 2 and all("boolean" in e for e in numbers.invalid)
        booleans = parse_labels(doc, "classification", 10, classes=("false", "true"))
        assert [label.truth for label in booleans.labels] == [True, False, 1]

    async def test_a_boolean_truth_for_a_classifier_of_numbers_is_counted_invalid(
        self, model, start_sidecar, http, profile_path
    ):
        sidecar = await start_sidecar(
            model.url, reference_profile=str(profile_path), feedback=fb(task="")
        )
        rid, _ = await predict(http, sidecar, [[1.0, 0, 0]])
        summary = await send(
            http, sidecar, {"labels": [{"id": rid, "truth": True}, {"id": rid, "truth": ""}]}
        )
        assert (summary["invalid"], summary["joined"]) == (2, 0)
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_scored_total") == 0
        assert value(m, "vigil_feedback_labels_total", outcome="invalid") == 2


@pytest.fixture
async def huge_regressor() -> AsyncIterator[OutputModel]:
    """A regressor answering 1e200 per row: a number whose square no sum holds."""
    server = OutputModel(
        lambda n: {"name": "y", "shape": [n], "datatype": "FP64", "data": [1e200] * n}
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class TestErrorsPastTheMomentLimitAreRefused:
    """One error whose square overflows would keep the squared-error sum at +Inf until the
    pod restarts (and realized MAE unjudged): such a truth is invalid, and says why."""

    def test_a_regression_truth_past_the_limit_is_invalid(self):
        doc = {"labels": [{"id": "a", "truth": 1e200}, {"id": "b", "truth": [-1e151, 2.5]}]}
        parsed = parse_labels(doc, "regression", 10)
        assert [label.truth for label in parsed.labels] == [2.5]
        assert len(parsed.invalid) == 2 and all("overflow" in e for e in parsed.invalid)
        # A class may be any number.
        assert len(parse_labels(doc, "classification", 10).labels) == 3

    async def test_a_huge_truth_is_counted_invalid_and_the_sums_stay_finite(
        self, model, start_sidecar, http
    ):
        sidecar = await start_sidecar(model.url, feedback=fb(task="regression"))
        rid, (pred,) = await predict(http, sidecar, [[1.0, 0, 0]])
        summary = await send(http, sidecar, {"id": rid, "truth": 1e200})
        assert (summary["invalid"], summary["joined"]) == (1, 0)
        assert "overflow" in summary["errors"][0]
        # The row stays unlabelled: the corrected truth joins.
        summary = await send(http, sidecar, {"id": rid, "truth": pred + 0.5})
        assert summary["joined"] == 1
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_squared_error_total") == pytest.approx(0.25)
        assert value(m, "vigil_feedback_labels_total", outcome="invalid") == 1

    async def test_a_truth_whose_error_from_a_huge_prediction_overflows_is_invalid(
        self, huge_regressor, start_sidecar, http
    ):
        sidecar = await start_sidecar(huge_regressor.url, feedback=fb(task="regression"))
        rid, _ = await predict(http, sidecar, [[1.0, 0, 0]])
        summary = await send(http, sidecar, {"id": rid, "truth": 3.0})
        assert (summary["invalid"], summary["joined"]) == (1, 0)
        assert "from the prediction" in summary["errors"][0]
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_squared_error_total") == 0
        assert value(m, "vigil_feedback_absolute_error_total") == 0
        assert value(m, "vigil_feedback_labels_total", outcome="invalid") == 1


def test_two_columns_of_scores_for_boolean_classes_are_false_and_true() -> None:
    # scikit-learn orders False, True: column 1 is true. Read as no prediction, such a
    # model's accuracy was never measured (its labels scored before [N, C] were told apart).
    from vigil.sidecar.feedback import class_code, prediction_values
    from vigil.sidecar.payload import ArgMaxes

    rows = prediction_values(ArgMaxes([0, 1], 2), "classification", ("false", "true"))
    assert rows == [class_code("false"), class_code("true")]


@pytest.fixture
async def boolean_scores_model() -> AsyncIterator[OutputModel]:
    """A boolean classifier answering its two scores per row (predict_proba): column 1,
    true, wins each row."""
    server = OutputModel(
        lambda n: {"name": "p", "shape": [n, 2], "datatype": "FP32", "data": [0.2, 0.8] * n}
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class TestABooleanClassifiersTwoScoresAreFalseAndTrue:
    """Classes false and true in two columns: scikit-learn's order, column 1 is true."""

    async def test_labels_are_scored_right_and_wrong_as_booleans_or_zero_and_one(
        self, boolean_scores_model, start_sidecar, http, tmp_path
    ):
        profile = profile_of_classes(tmp_path, [False, True])
        sidecar = await start_sidecar(
            boolean_scores_model.url, reference_profile=str(profile), feedback=fb()
        )
        ids = [(await predict(http, sidecar, [[1.0, 0, 0]]))[0] for _ in range(4)]
        truths = [True, 1, False, 0]
        labels = [{"id": i, "truth": t} for i, t in zip(ids, truths, strict=True)]
        summary = await send(http, sidecar, {"labels": labels})
        assert summary["joined"] == 4
        m = await scrape(http, sidecar)
        assert value(m, "vigil_feedback_scored_total", **{"class": "true"}) == 2
        assert value(m, "vigil_feedback_scored_total", **{"class": "false"}) == 2
        assert value(m, "vigil_feedback_correct_total", **{"class": "true"}) == 2
        assert value(m, "vigil_feedback_correct_total", **{"class": "false"}) == 0

    async def test_the_predicted_class_is_counted_as_true(
        self, boolean_scores_model, start_sidecar, http, tmp_path
    ):
        profile = profile_of_classes(tmp_path, [False, True])
        sidecar = await start_sidecar(boolean_scores_model.url, reference_profile=str(profile))
        await predict(http, sidecar, [[1.0, 0, 0], [0.0, 1, 0]])
        await sidecar.monitor.drain()
        m = await scrape(http, sidecar)
        assert value(m, "vigil_prediction_class_total", **{"class": "true"}) == 2
        assert value(m, "vigil_prediction_class_total", **{"class": "false"}) == 0
