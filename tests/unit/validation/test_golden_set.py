"""Golden sets: format, replay against a small local HTTP model server, the CLI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time

import pytest
from aiohttp import web

import yaml_kit
from vigil.cli import main
from vigil.core.rollout import GoldenResult
from vigil.core.spec import GoldenSetRef
from vigil.validation.golden import (
    GoldenSet,
    GoldenSetError,
    GoldenSetNotFound,
    ReplayProgress,
    compare,
    configmap_manifest,
    golden_from_configmap,
    label_key,
    model_answered,
    parse_golden_set,
    replay,
    replay_report,
    request_body,
)

ROWS = [[float(i), float(i % 3), 1.0] for i in range(10)]


def label(row):
    return 1 if sum(row) > 6 else 0


class Model:
    """A tiny inference server: v2 and v1, classification by a threshold, or a sum."""

    def __init__(self):
        self.requests: list[dict] = []
        #: ok | probabilities | error | slow | flip | regression | warming | refuse | short
        #: | one-at-a-time | logits
        self.mode = "ok"
        #: Set on teardown: a slow answer is cut short, so teardown does not wait it out.
        self.stopping = asyncio.Event()
        self.busy = False
        #: How many more requests it answers before it stalls like "slow" (None: no limit).
        self.quota: int | None = None
        #: The first row of each request answered.
        self.answered: list[float] = []

    def predict(self, rows):
        if self.mode == "logits":  # raw scores where the golden set holds labels
            return [37.5 if label(r) else -3.2 for r in rows]
        if self.mode == "regression":
            return [sum(r) + 0.001 for r in rows]
        if self.mode == "flip":
            return [1 - label(r) for r in rows]
        return [label(r) for r in rows]

    async def v2(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "error" or (self.mode == "warming" and len(self.requests) == 1):
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "refuse":  # the model refuses the input: its answer
            return web.json_response({"error": "expected 4 features"}, status=422)
        if self.mode == "redirect":  # a misrouted request (an ingress's login page)
            raise web.HTTPFound("/login")
        stalled = self.quota is not None and self.quota <= 0
        if self.quota is not None:
            self.quota -= 1
        if stalled or self.mode == "slow" or (self.mode == "one-at-a-time" and self.busy):
            with contextlib.suppress(TimeoutError):  # past the replay's request timeout
                await asyncio.wait_for(self.stopping.wait(), 1)
        tensor = body["inputs"][0]
        rows = tensor["data"]
        if self.mode == "one-at-a-time":  # one worker: a request while it works waits
            self.busy = True
            await asyncio.sleep(0.02)
            self.busy = False
        assert tensor["shape"] == [len(rows), len(rows[0])]
        if self.mode == "short":  # one prediction fewer than rows
            rows = rows[1:]
        if self.mode == "probabilities":
            data = [[0.9, 0.1] if label(r) == 0 else [0.2, 0.8] for r in rows]
            out = {"name": "predict", "shape": [len(rows), 2], "datatype": "FP64", "data": data}
        else:
            preds = self.predict(rows)
            out = {"name": "predict", "shape": [len(rows), 1], "datatype": "FP64", "data": preds}
        if not stalled:  # a stalled answer comes after the replay gave up on it
            self.answered.append(rows[0][0])
        return web.json_response({"model_name": request.match_info["model"], "outputs": [out]})

    async def v1(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        return web.json_response({"predictions": self.predict(body["instances"])})


async def _login_page(_: web.Request) -> web.Response:
    return web.Response(status=404, text="no such page")


@pytest.fixture
async def server():
    model = Model()
    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", model.v2)
    app.router.add_post("/v1/models/{model}:predict", model.v1)
    app.router.add_route("*", "/login", _login_page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield model, f"http://127.0.0.1:{port}"
    finally:
        model.stopping.set()
        await runner.cleanup()


def golden(**overrides) -> GoldenSet:
    doc = {
        "model": "toy",
        "protocol": "v2",
        "task": "classification",
        "inputs": ROWS,
        "expected": [label(r) for r in ROWS],
    }
    doc.update(overrides)
    return parse_golden_set(json.dumps(doc))


# -- format ------------------------------------------------------------------------------


def test_round_trip():
    g = golden(features=["a", "b", "c"], tolerance=0.5, task="regression")
    assert parse_golden_set(g.to_json()) == g
    assert g.to_document()["format"] == "vigil.dev/golden-set/v1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": []}, "inputs"),
        ({"expected": [0]}, "one output per input"),
        ({"protocol": "raw"}, "protocol"),
        ({"task": "ranking"}, "task"),
        ({"tolerance": -1}, "tolerance"),
        ({"inputs": [[1.0, 2.0], *ROWS[1:]]}, "inputs\\[1\\]"),
        ({"features": ["a"]}, "features"),
        ({"colour": "red"}, "unknown keys"),
        ({"format": "other/v9"}, "format"),
        ({"inputs": [[{"x": 1}]] * 10}, "scalar"),
        ({"tolerance": float("inf")}, "tolerance"),
        ({"inputs": [[1.0, "", 1.0], *ROWS[1:]]}, r"inputs\[0\]\[1\]: '' is not a number"),
        (
            {"inputs": [["7", 1.0, 1.0], *ROWS[1:]], "input": {"datatype": "INT64"}},
            r"inputs\[0\]\[0\]: '7' is not a number \(input datatype INT64",
        ),
    ],
)
def test_invalid_documents_name_the_problem(change, message):
    with pytest.raises(GoldenSetError, match=message):
        golden(**change)


def test_text_inputs_are_kept_where_the_model_takes_text():
    """Only a v2 numeric tensor refuses strings: a BYTES tensor and v1 instances carry text."""
    rows = [["red", 1.0]] * 10
    assert golden(inputs=rows, input={"datatype": "BYTES"}).inputs[0] == ("red", 1.0)
    assert golden(inputs=rows, protocol="v1").inputs[0] == ("red", 1.0)


def test_not_json():
    with pytest.raises(GoldenSetError, match="not JSON"):
        parse_golden_set("{")


def test_a_golden_set_nested_past_the_parsers_stack_is_a_golden_set_error():
    with pytest.raises(GoldenSetError, match="nested too deeply"):
        parse_golden_set("[" * 100_000 + "]" * 100_000)


def test_a_hand_written_regression_set_needs_a_tolerance():
    """A default of 0 asked a float32 server for the research run's exact float64 digits."""
    with pytest.raises(GoldenSetError, match='tolerance: required for task regression: set "tol'):
        golden(task="regression", expected=[0.1] * 10)
    assert golden(task="regression", expected=[0.1] * 10, tolerance=1e-6).tolerance == 1e-6
    assert golden().tolerance == 0.0  # a classifier compares labels


@pytest.mark.parametrize("bad", ["3.5", True, "n/a", None, [1.5]])
def test_a_regression_set_whose_expected_output_is_no_number_is_refused(bad):
    # Old code: read, and every such case a mismatch: the candidate rolled back with
    # GoldenSetMismatch by a set that could never pass.
    expected = [0.5] * 9 + [bad]
    with pytest.raises(GoldenSetError, match=r"expected\[9\]: "):
        golden(task="regression", tolerance=0.1, expected=expected)
    if bad is not None and not isinstance(bad, list):
        with pytest.raises(GoldenSetError, match=rf"expected\[9\]: {bad!r} is not a number"):
            golden(task="regression", tolerance=0.1, expected=expected)
    numbers = [0, 1.5, -2, 10**400, 3e300, 7, 0.0, 1, 2, 3]  # whole numbers beyond a float too
    assert golden(task="regression", tolerance=0.1, expected=numbers).expected == tuple(numbers)
    assert golden(expected=[True, "a", 1, 0, 1, 0, 1, 0, 1, 0]).expected[:2] == (True, "a")


def test_the_operator_reads_a_regression_set_of_text_as_unusable_naming_the_configmap():
    document = {**golden(task="regression", tolerance=0.1, expected=[0.5] * 10).to_document()}
    document["expected"] = ["3.5"] * 10
    cm = {"metadata": {"name": "wine-golden"}, "data": {"golden.json": json.dumps(document)}}
    with pytest.raises(
        GoldenSetError, match=r"ConfigMap wine-golden key golden\.json: expected\[0\]: '3\.5'"
    ):
        golden_from_configmap(cm, GoldenSetRef("wine-golden", "golden.json"))


@pytest.mark.parametrize("datatype", ["FLOAT32", "FOO", "", 5, "fp 32"])
def test_a_golden_set_with_a_datatype_outside_the_protocol_is_refused(datatype):
    if datatype == "":  # absent: the default
        assert golden(input={"datatype": datatype}).datatype == "FP64"
        return
    with pytest.raises(
        GoldenSetError,
        match=rf"input\.datatype: {datatype!r} is not an Open Inference Protocol \(v2\) datatype: "
        "one of BOOL, UINT8, .*, BYTES",
    ):
        golden(input={"datatype": datatype})


def test_a_v1_set_sends_no_tensor_so_its_datatype_is_not_checked():
    """v1 sends rows as they are; a set written with a datatype of its own stays readable."""
    assert golden(protocol="v1", input={"datatype": "float32"}).protocol == "v1"


def test_a_datatype_in_lower_case_is_the_protocols_name():
    g = golden(input={"datatype": "fp32"})
    assert g.datatype == "FP32" and request_body(g, ROWS[:1])["inputs"][0]["datatype"] == "FP32"
    with pytest.raises(GoldenSetError, match=r"'x' is not a number \(input datatype INT64"):
        golden(input={"datatype": "int64"}, inputs=[["x", 1.0, 1.0]] * 10)


def test_a_golden_set_under_binary_data_is_read():
    doc = golden().to_json().encode()
    cm = {"metadata": {"name": "g"}, "binaryData": {"golden.json": base64.b64encode(doc)}}
    assert golden_from_configmap(cm, GoldenSetRef("g", "golden.json")) == golden()
    with pytest.raises(GoldenSetError, match=r"no key 'other\.json'"):
        golden_from_configmap(cm, GoldenSetRef("g", "other.json"))
    with pytest.raises(GoldenSetNotFound, match="does not exist"):
        golden_from_configmap(None, GoldenSetRef("g", "golden.json"))


def test_configmap_round_trip_and_errors():
    g = golden()
    cm = configmap_manifest(g, "wine-golden")
    assert golden_from_configmap(cm, GoldenSetRef("wine-golden", "golden.json")) == g
    with pytest.raises(GoldenSetError, match="does not exist"):
        golden_from_configmap(None, GoldenSetRef("wine-golden", "golden.json"))
    with pytest.raises(GoldenSetError, match="no key"):
        golden_from_configmap(cm, GoldenSetRef("wine-golden", "other.json"))
    with pytest.raises(GoldenSetError, match=r"wine-golden key golden\.json"):
        golden_from_configmap(
            {"data": {"golden.json": "[]"}}, GoldenSetRef("wine-golden", "golden.json")
        )


def test_request_bodies_follow_the_protocol():
    v2 = request_body(golden(input={"name": "x", "datatype": "FP32"}), ROWS[:2])
    assert v2 == {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": ROWS[:2]}]}
    assert request_body(golden(protocol="v1"), ROWS[:2]) == {"instances": ROWS[:2]}


# -- replay ------------------------------------------------------------------------------


async def test_matching_model_reproduces_everything(server):
    _model, url = server
    assert await replay(golden(), url) == GoldenResult(10, 10)


async def test_rows_go_in_batches(server):
    model, url = server
    await replay(golden(), url, batch_size=4)
    assert [len(r["inputs"][0]["data"]) for r in model.requests] == [4, 4, 2]


async def test_a_different_model_fails_with_evidence(server):
    model, url = server
    model.mode = "flip"
    report = await replay_report(golden(), url)
    assert report.result == GoldenResult(10, 0)
    assert len(report.mismatches) == 10
    assert "expected" in report.summary() and "0/10" in report.summary()


async def test_probabilities_become_the_arg_max(server):
    model, url = server
    model.mode = "probabilities"
    assert (await replay(golden(), url)).agreement == 1.0


async def test_logits_where_labels_were_expected_reproduce_nothing(server):
    """Any non-whole number read as a score (over 0.5: class 1): logits passed a label set."""
    model, url = server
    model.mode = "logits"
    assert await replay(golden(), url) == GoldenResult(10, 0)


@pytest.mark.parametrize(
    ("expected", "got", "agreed"),
    [
        ([1, 1, 0, 2], [37.5, 0.51, -3.2, 2.4], 0),  # raw scores are no labels
        ([1, 1, 0, 2], [1.0, 1, 0, 2], 4),  # 1 == 1.0
        ([0.51, 0.02], [0.99, 0.49], 2),  # expected scores: their decisions at 0.5
        ([0.8, 0.2, 1.0], [1, 0, 0.7], 3),  # a saturated score (1.0) in a set of scores
        ([0.51, 0.02], [0.3, 0.6], 0),
        (["red", "white"], [0, 1], 0),
        (["red", "white"], ["red", "white"], 2),
        ([True, False], [1, 0], 2),  # a BOOL column against 0/1
        ([True, False], ["true", "FALSE"], 2),
        (["True", "False"], [True, False], 2),  # hand-written text labels
        ([1, 0], [True, False], 2),
        ([2, 0], [True, False], 1),  # only 0/1 are booleans
        # A tie is the negative class, as an arg-max over [0.5, 0.5] and scikit-learn's
        # predict decide it: at 0.5 or more, the same model failed its own golden set.
        ([0.2, 0.5, 0.9], [0, 0, 1], 3),
    ],
)
def test_classification_compares_labels_exactly_scores_only_against_scores(expected, got, agreed):
    g = parse_golden_set({"model": "m", "inputs": [[1.0]] * len(expected), "expected": expected})
    assert compare(g, got)[0] == agreed


def test_booleans_key_as_the_profile_keys_them():
    assert [label_key(v) for v in (True, 1, 1.0, "1", "TRUE")] == ["true"] * 5
    assert label_key(2) == "2" and label_key(None) is None


def test_regression_compares_numbers_only():
    g = parse_golden_set(
        {"model": "m", "task": "regression", "tolerance": 0.0, "inputs": [[1]], "expected": [1.0]}
    )
    assert compare(g, [True])[0] == 0 and compare(g, [1])[0] == 1


async def test_v1_protocol(server):
    model, url = server
    assert await replay(golden(protocol="v1"), url) == GoldenResult(10, 10)
    assert "instances" in model.requests[0]


async def test_regression_within_tolerance(server):
    model, url = server
    model.mode = "regression"
    expected = [sum(r) for r in ROWS]
    assert (
        await replay(golden(task="regression", expected=expected, tolerance=0.01), url)
    ).agreed == 10
    strict = golden(task="regression", expected=expected, tolerance=0.0)
    assert (await replay(strict, url)).agreed == 0


async def test_server_errors_are_sent_again_then_no_answer_not_a_mismatch(server):
    model, url = server
    model.mode = "error"
    report = await replay_report(golden(), url, batch_size=5)
    assert report.result == GoldenResult(10, 0) and not report.mismatches
    assert len(report.errors) == 2 and "HTTP 500" in report.errors[0]
    assert len(model.requests) == 4  # each batch once more
    assert report.unanswered == 10 and not report.complete
    assert "10 row(s) got no answer" in report.summary()


async def test_one_failed_batch_is_sent_again_and_a_good_model_passes(server):
    """A 5xx on one batch (a cold start) counted its rows as not reproduced: rolled back."""
    model, url = server
    model.mode = "warming"
    report = await replay_report(golden(), url, batch_size=5)
    assert report.result == GoldenResult(10, 10) and report.complete
    assert len(model.requests) == 3


@pytest.mark.slow
async def test_a_single_worker_server_that_queues_batches_still_answers_every_row(server):
    """Concurrent batches queued behind one worker timed out: their rows were counted
    as not reproduced. Timeouts halve the concurrency; what got no answer is sent again."""
    model, url = server
    model.mode = "one-at-a-time"
    report = await replay_report(golden(), url, batch_size=1, request_timeout_seconds=0.3)
    assert report.result == GoldenResult(10, 10) and report.complete
    assert len(model.requests) > 10  # the timed-out batches, sent again


@pytest.mark.parametrize(("mode", "error"), [("refuse", "HTTP 422"), ("short", "unreadable")])
async def test_the_models_refusal_or_unreadable_answer_is_judged_not_retried(server, mode, error):
    model, url = server
    model.mode = mode
    report = await replay_report(golden(), url, batch_size=5)
    assert report.result == GoldenResult(10, 0) and report.complete
    assert len(model.requests) == 2 and error in report.errors[0]


@pytest.mark.parametrize(
    ("status", "answered"),
    [
        *((code, True) for code in (200, 400, 404, 422)),
        *((code, False) for code in (302, 408, 429, 500, 502, 503, 504)),
    ],
)
def test_which_statuses_are_the_models_answer(status, answered):
    assert model_answered(status) is answered


async def test_a_redirect_is_no_answer_never_followed(server):
    # Followed, the POST became a GET of the login page, whose 404 was judged as the
    # model's refusal: 0/10 reproduced, a rollback instead of ValidationPending.
    model, url = server
    model.mode = "redirect"
    report = await replay_report(golden(), url, batch_size=5)
    assert report.result == GoldenResult(10, 0) and not report.mismatches
    assert not report.complete and report.unanswered == 10
    assert "HTTP 302" in report.summary()


def test_a_null_expected_output_is_refused_naming_the_case():
    # pandas' to_json writes NaN as null: such a case could never agree.
    with pytest.raises(GoldenSetError, match=r"expected\[1\]: null \(no expected output\)"):
        parse_golden_set({"model": "m", "inputs": [[1.0]] * 3, "expected": [0, None, 1]})


async def test_unreachable_endpoint_reproduces_nothing_and_says_it_was_unreachable():
    report = await replay_report(golden(), "http://127.0.0.1:9", request_timeout_seconds=2)
    assert report.result == GoldenResult(10, 0)
    assert report.errors and report.unreachable


async def test_a_model_that_answers_errors_was_reached(server):
    model, url = server
    model.mode = "error"
    assert not (await replay_report(golden(), url, batch_size=5)).unreachable


@pytest.mark.slow
async def test_a_replay_is_bounded_in_time_and_what_it_left_unanswered_is_incomplete(server):
    model, url = server
    model.mode = "slow"  # no answer within the budget
    started = time.monotonic()
    report = await replay_report(golden(), url, timeout_seconds=0.25, batch_size=2)
    assert time.monotonic() - started < 3
    assert report.result == GoldenResult(10, 0)
    assert report.unanswered == 10 and not report.complete
    assert not report.mismatches


async def test_a_replay_out_of_time_goes_on_where_it_stopped_when_given_its_progress(server):
    """A slow model never passed a large golden set: each replay ran out of time and the
    next started again from the first row."""
    model, url = server
    progress = ReplayProgress(golden(), "r1", batch_size=2)
    reports = []
    for _ in range(3):
        model.quota = 2  # two batches answered in time, then it stalls past the budget
        options = {"timeout_seconds": 0.3, "concurrency": 1}
        reports.append(await replay_report(golden(), url, progress=progress, **options))
    assert [r.unanswered for r in reports] == [6, 2, 0]
    assert "6 row(s) got no answer (4 of 10 answered so far)" in reports[0].summary()
    assert reports[-1].result == GoldenResult(10, 10) and reports[-1].complete
    assert model.answered == [0.0, 2.0, 4.0, 6.0, 8.0]  # each batch answered once
    assert progress.rows == 10 and progress.fits(golden(), "r1")
    assert not progress.fits(golden(), "r2") and not progress.fits(golden(tolerance=1), "r1")


async def test_model_name_is_required():
    with pytest.raises(GoldenSetError, match="model name"):
        await replay(golden(model=""), "http://127.0.0.1:9")


# -- CLI ---------------------------------------------------------------------------------


def write_csv(path, with_label=True):
    lines = ["a,b,c" + (",label" if with_label else "")]
    for r in ROWS:
        lines.append(",".join(str(v) for v in r) + (f",{label(r)}" if with_label else ""))
    path.write_text("\n".join(lines) + "\n")


def test_cli_build_from_a_csv_column(tmp_path):
    write_csv(tmp_path / "data.csv")
    out = tmp_path / "golden.json"
    assert (
        main(
            [
                "golden",
                "build",
                str(tmp_path / "data.csv"),
                "--expected-column",
                "label",
                "--model",
                "toy",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    g = parse_golden_set(out.read_text())
    assert g.features == ("a", "b", "c")
    assert list(g.expected) == [label(r) for r in ROWS]
    assert [list(r) for r in g.inputs] == ROWS


def test_cli_build_from_an_outputs_array_as_a_configmap(tmp_path, capsys):
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "preds.json").write_text(json.dumps([label(r) for r in ROWS]))
    assert (
        main(
            [
                "golden",
                "build",
                str(tmp_path / "rows.json"),
                "--expected",
                str(tmp_path / "preds.json"),
                "--model",
                "toy",
                "--configmap",
                "toy-golden",
            ]
        )
        == 0
    )
    cm = yaml_kit.load(capsys.readouterr().out)
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "toy-golden"
    assert len(parse_golden_set(cm["data"]["golden.json"]).inputs) == 10


def test_cli_configmap_names_that_look_like_numbers_are_quoted_for_kubectl(tmp_path, capsys):
    """``12e3`` is a valid name and 12000 to kubectl's YAML reader: it must go out quoted."""
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "preds.json").write_text(json.dumps([label(r) for r in ROWS]))
    argv = ["golden", "build", str(tmp_path / "rows.json"), "--expected"]
    argv += [str(tmp_path / "preds.json"), "--configmap", "12e3", "--key", "1e5"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "name: '12e3'" in text and "'1e5': " in text
    assert yaml_kit.load(text)["metadata"]["name"] == "12e3"


def test_cli_needs_exactly_one_source(tmp_path, capsys):
    write_csv(tmp_path / "data.csv", with_label=False)
    assert main(["golden", "build", str(tmp_path / "data.csv")]) == 1
    assert "exactly one source" in capsys.readouterr().err


def build_cli(tmp_path, name: str, text: str | bytes, *extra: str) -> int:
    """``golden build`` on a file holding ``text``, the expected outputs in column ``label``."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = ["golden", "build", str(path), "--model", "toy", "-o", str(tmp_path / "golden.json")]
    if not any(e.startswith("--expected") for e in extra):
        argv += ["--expected-column", "label"]
    return main([*argv, *extra])


@pytest.mark.parametrize(
    "features, words",
    [
        ("a, b", None),  # names around commas, as vigil profile build reads them
        ("a,a", "--features names 'a' twice"),
        ("a,label", "--features names 'label', the --expected-column"),
    ],
)
def test_cli_build_reads_features_as_profile_build_does(tmp_path, capsys, features, words):
    # The label went out as a model input (exit 0); " b" was no column.
    rc = build_cli(tmp_path, "data.csv", "a,b,label\n1,2,0\n3,4,1\n", "--features", features)
    if words is None:
        assert rc == 0
        golden = json.loads((tmp_path / "golden.json").read_text())
        assert golden["features"] == ["a", "b"]
    else:
        assert rc == 1 and words in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, inputs",
    [
        # pandas' booleans as booleans, a number as a number (vigil profile build reads a
        # column of "01" codes as numbers, unless declared categorical): the golden set sent
        # "True" strings, and "02134" as text where the profile keyed it 2134.
        (["--protocol", "v1"], [[2134, True, 10.5, "Paris"], [10001, False, 20, "Lyon"]]),
        # Declared categorical, as vigil profile build --categorical reads it: the zip code
        # a client sends as text.
        (
            ["--protocol", "v1", "--categorical", "zip"],
            [["02134", True, 10.5, "Paris"], ["10001", False, 20, "Lyon"]],
        ),
        # A BYTES tensor holds text: every cell as written.
        (
            ["--datatype", "BYTES"],
            [["02134", "True", "10.5", "Paris"], ["10001", "False", "20", "Lyon"]],
        ),
    ],
)
def test_cli_build_reads_cells_as_profile_build_does(tmp_path, extra, inputs):
    text = (
        "zip, member, amount, city, label\n02134, True, 10.5, Paris, 0\n10001, False, 20, Lyon, 1\n"
    )
    assert build_cli(tmp_path, "data.csv", text, *extra) == 0
    golden = json.loads((tmp_path / "golden.json").read_text())
    assert golden["features"] == ["zip", "member", "amount", "city"]
    assert golden["inputs"] == inputs


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--sample", "-5"], "--sample must be a number of rows >= 1 (0: all), not -5"),
    ],
)
def test_cli_build_refuses_a_negative_sample_saying_so(tmp_path, capsys, argv, words):
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,2,0\n", *argv) == 1
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("share", ["1.5", "nan", "-0.1"])
def test_cli_check_refuses_a_min_agreement_no_agreement_could_pass(tmp_path, capsys, share):
    golden = tmp_path / "g.json"
    golden.write_text("{}")
    argv = ["golden", "check", str(golden), "--endpoint", "http://127.0.0.1:9", "--model", "m"]
    assert main([*argv, "--min-agreement", share]) == 1
    assert "--min-agreement must be a share from 0 to 1" in capsys.readouterr().err


def test_cli_build_refuses_an_empty_cell_naming_its_line_and_column(tmp_path, capsys):
    """A blank cell went out as "" in an FP64 tensor: the model server refused every batch."""
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,2,0\n1,,0\n") == 1
    err = capsys.readouterr().err
    assert "data.csv: line 3, column 'b': empty cell" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "golden.json").exists()


def test_cli_build_refuses_a_null_in_a_numeric_tensor_as_it_refuses_an_empty_cell(tmp_path, capsys):
    rows = json.dumps([{"a": 1, "b": 2, "label": 0}, {"a": 1, "b": None, "label": 0}])
    assert build_cli(tmp_path, "rows.json", rows) == 1
    assert "rows.json: [1] column 'b': null is not a number (input datatype FP64" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "golden.json").exists()
    assert build_cli(tmp_path, "rows.json", rows, "--datatype", "BYTES") == 0
    document = json.loads((tmp_path / "golden.json").read_text())
    document["input"]["datatype"] = "FP64"
    with pytest.raises(GoldenSetError, match=r"inputs\[1\]\[1\]: null is not a number"):
        parse_golden_set(document)


def test_cli_build_refuses_text_in_a_numeric_tensor_naming_the_cell(tmp_path, capsys):
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,red,0\n") == 1
    assert "line 2, column 'b': 'red' is not a number (input datatype FP64" in (
        capsys.readouterr().err
    )
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,red,0\n", "--datatype", "BYTES") == 0


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("short.csv", "a,b,label\n1,2,0\n1,2\n", "line 3: 2 cells, the header has 3"),
        ("long.csv", "a,b,label\n1,2,0,9\n", "line 2: 4 cells, the header has 3"),
        (
            "objects.json",
            json.dumps([{"a": 1, "b": 2, "label": 0}, {"a": 1, "label": 1}]),
            "objects.json: [1] has no 'b'",
        ),
        (
            "unlabelled.json",
            json.dumps([{"a": 1, "b": 2, "label": 0}, {"a": 1, "b": 2}]),
            "unlabelled.json: [1] has no 'label'",
        ),
        ("scalars.json", json.dumps([1, 2, 3]), "scalars.json: [0] is neither"),
        ("latin1.csv", "a,b,label\n\u00e9,2,0\n".encode("latin-1"), "latin1.csv: not UTF-8"),
        ("broken.json", "[{", "broken.json: not JSON"),
    ],
)
def test_cli_build_refuses_ragged_or_unreadable_input_naming_the_row(
    tmp_path, capsys, name, text, says
):
    """Short rows and objects without a column raised TypeError/KeyError tracebacks."""
    assert build_cli(tmp_path, name, text) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_cli_build_regression_needs_a_tolerance(tmp_path, capsys):
    """A default of 0 asked a float32 server for the research run's exact float64 digits."""
    text = "a,b,label\n1,2,0.3\n2,3,0.7\n"
    assert build_cli(tmp_path, "data.csv", text, "--task", "regression") == 1
    assert "--tolerance is required for a regression golden set" in capsys.readouterr().err
    assert build_cli(tmp_path, "data.csv", text, "--task", "regression", "--tolerance", "1e-6") == 0
    assert parse_golden_set((tmp_path / "golden.json").read_text()).tolerance == 1e-6
    # A classifier compares labels: no tolerance needed, 0 as before.
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,2,0\n") == 0


REGRESSION = ("--task", "regression", "--tolerance", "0.1")


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("data.csv", "a,label\n1,3.5\n2,n/a\n", "data.csv: line 3, column 'label': 'n/a' is"),
        ("data.csv", "a,label\n1,3.5\n2,true\n", "data.csv: line 3, column 'label': 'true' is"),
        ("data.csv", "a,label\n1,3.5\n2,nan\n", "data.csv: line 3, column 'label': 'nan' is"),
        (
            "rows.json",
            json.dumps([{"a": 1, "label": 3.5}, {"a": 2, "label": "4.1"}]),
            "rows.json: [1] column 'label': '4.1' is not a number (task regression",
        ),
    ],
)
def test_cli_build_refuses_a_regression_output_that_is_no_number_naming_its_place(
    tmp_path, capsys, name, text, says
):
    # Old code: written with exit 0, a set that no candidate could ever reproduce.
    assert build_cli(tmp_path, name, text, *REGRESSION) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "golden.json").exists()


def test_cli_build_refuses_regression_outputs_given_as_text_naming_the_index(tmp_path, capsys):
    (tmp_path / "preds.json").write_text(json.dumps(["3.5", "4.1"]))
    expected = ("--expected", str(tmp_path / "preds.json"))
    assert build_cli(tmp_path, "rows.json", "[[1, 2], [2, 3]]", *expected, *REGRESSION) == 1
    assert "preds.json: [0]: '3.5' is not a number (task regression" in capsys.readouterr().err
    (tmp_path / "preds.json").write_text(json.dumps([3.5, 4]))
    assert build_cli(tmp_path, "rows.json", "[[1, 2], [2, 3]]", *expected, *REGRESSION) == 0
    assert parse_golden_set((tmp_path / "golden.json").read_text()).expected == (3.5, 4)


def test_cli_build_writes_booleans_and_whole_numbers_as_their_tensor_holds_them(tmp_path, capsys):
    # Written as read: ["True", 1] in a BOOL tensor (numpy reads "False" as true) and 1.0 in an
    # INT64 one (Triton refuses the batch).
    flags = "a,b,label\nTrue,1,0\nfalse,0,1\n"
    assert build_cli(tmp_path, "flags.csv", flags, "--datatype", "BOOL") == 0
    assert parse_golden_set((tmp_path / "golden.json").read_text()).inputs == (
        (True, True),
        (False, False),
    )
    rows = json.dumps([{"a": 1.0, "b": 2, "label": 0}])
    assert build_cli(tmp_path, "rows.json", rows, "--datatype", "INT64") == 0
    assert parse_golden_set((tmp_path / "golden.json").read_text()).inputs == ((1, 2),)
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1.5,2,0\n", "--datatype", "INT64") == 1
    assert "data.csv: row 1, column 'a': 1.5 is not a whole number (input datatype INT64)" in (
        capsys.readouterr().err
    )
    assert build_cli(tmp_path, "data.csv", "a,b,label\n-1,2,0\n", "--datatype", "UINT8") == 1
    assert (
        "-1 is not a whole number of at least 0 (input datatype UINT8)" in capsys.readouterr().err
    )
    assert build_cli(tmp_path, "data.csv", "a,b,label\nyes,1,0\n", "--datatype", "BOOL") == 1
    assert "data.csv: row 1, column 'a': 'yes' is not a boolean (input datatype BOOL)" in (
        capsys.readouterr().err
    )


def test_cli_build_takes_the_protocols_datatypes_in_any_case(tmp_path, capsys):
    # Old code: "fp32", "FLOAT32", "FOO" were written as given (FLOAT32 let text through).
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,2,0\n", "--datatype", "fp32") == 0
    assert json.loads((tmp_path / "golden.json").read_text())["input"]["datatype"] == "FP32"
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,red,0\n", "--datatype", "int8") == 1
    assert "'red' is not a number (input datatype INT8" in capsys.readouterr().err
    for datatype in ("FLOAT32", "FOO"):
        with pytest.raises(SystemExit) as stopped:
            build_cli(tmp_path, "data.csv", "a,b,label\n1,red,0\n", "--datatype", datatype)
        assert stopped.value.code == 2
        assert f"argument --datatype: invalid choice: {datatype!r}" in capsys.readouterr().err


def test_cli_build_reads_a_csv_saved_with_a_byte_order_mark(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM; it became part of the first column's name."""
    assert build_cli(tmp_path, "excel.csv", "\ufeffa,b,label\n1,2,0\n") == 0
    assert parse_golden_set((tmp_path / "golden.json").read_text()).features == ("a", "b")


def test_cli_build_keeps_integers_beyond_float_precision(tmp_path):
    """2**53 + 1 went through float and came out as 2**53."""
    assert build_cli(tmp_path, "ids.csv", f"a,b,label\n{2**53 + 1},2.50,0\n") == 0
    g = parse_golden_set((tmp_path / "golden.json").read_text())
    assert g.inputs[0] == (2**53 + 1, 2.5)


def test_cli_build_reports_an_unwritable_output_without_traceback(tmp_path, capsys):
    write_csv(tmp_path / "data.csv")
    argv = ["golden", "build", str(tmp_path / "data.csv"), "--expected-column", "label"]
    assert main([*argv, "-o", str(tmp_path / "missing" / "golden.json")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_cli_check_names_a_file_that_is_not_utf8(tmp_path, capsys):
    (tmp_path / "golden.json").write_bytes(b'{"inputs": "\xe9"}')
    argv = ["golden", "check", str(tmp_path / "golden.json"), "--endpoint", "http://127.0.0.1:9"]
    assert main(argv) == 1
    assert "golden.json: not UTF-8 text" in capsys.readouterr().err


async def test_cli_build_from_endpoint_then_check(server, tmp_path, capsys):
    model, url = server
    write_csv(tmp_path / "data.csv", with_label=False)
    out = tmp_path / "golden.json"

    def run(argv):
        return main(argv)

    assert (
        await asyncio.to_thread(
            run,
            [
                "golden",
                "build",
                str(tmp_path / "data.csv"),
                "--from-endpoint",
                url,
                "--model",
                "toy",
                "-o",
                str(out),
            ],
        )
        == 0
    )
    assert list(parse_golden_set(out.read_text()).expected) == [label(r) for r in ROWS]
    assert await asyncio.to_thread(run, ["golden", "check", str(out), "--endpoint", url]) == 0
    assert "PASS" in capsys.readouterr().out
    model.mode = "flip"
    assert await asyncio.to_thread(run, ["golden", "check", str(out), "--endpoint", url]) == 1
    assert "FAIL: agreement 0.0000" in capsys.readouterr().out


async def test_cli_check_reads_a_configmap_yaml(server, tmp_path, capsys, monkeypatch):
    _model, url = server
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "preds.json").write_text(json.dumps([label(r) for r in ROWS]))
    cm = tmp_path / "golden-cm.yaml"
    build = [
        "golden",
        "build",
        str(tmp_path / "rows.json"),
        "--expected",
        str(tmp_path / "preds.json"),
        "--model",
        "toy",
        "--configmap",
        "toy-golden",
        "-o",
        str(cm),
    ]
    assert await asyncio.to_thread(main, build) == 0
    check = ["golden", "check", str(cm), "--endpoint", url, "--min-agreement", "1.0"]
    assert await asyncio.to_thread(main, check) == 0
    assert "PASS: agreement 1.0000" in capsys.readouterr().out
    # The same ConfigMap piped in: `golden build --configmap ... | golden check - ...`.
    with cm.open() as piped:
        monkeypatch.setattr("sys.stdin", piped)
        check[2] = "-"
        assert await asyncio.to_thread(main, check) == 0
    assert "PASS: agreement 1.0000" in capsys.readouterr().out


async def test_cli_check_reads_a_configmap_yaml_with_binary_data(server, tmp_path, capsys):
    """`golden check cm.yaml` printed "error: 'data'" for a golden set under binaryData."""
    _model, url = server
    encoded = base64.b64encode(golden().to_json().encode()).decode()
    cm = tmp_path / "cm.yaml"
    cm.write_text(
        f"kind: ConfigMap\nmetadata: {{name: g}}\nbinaryData: {{golden.json: {encoded}}}\n"
    )
    check = ["golden", "check", str(cm), "--endpoint", url, "--min-agreement", "1.0"]
    assert await asyncio.to_thread(main, check) == 0
    assert "PASS: agreement 1.0000" in capsys.readouterr().out
    assert await asyncio.to_thread(main, [*check, "--key", "nope"]) == 1
    assert "error: ConfigMap g has no key 'nope' (golden set)" in capsys.readouterr().err


def test_cli_build_reads_true_false_labels_as_booleans(tmp_path):
    """pandas writes a bool column as True/False: kept as text, never matched `true` or 1."""
    assert build_cli(tmp_path, "data.csv", "a,b,label\n1,2,True\n3,4,false\n5,6,1\n") == 0
    g = parse_golden_set((tmp_path / "golden.json").read_text())
    assert list(g.expected) == [True, False, 1]
    assert compare(g, [True, 0, True])[0] == 3 and compare(g, [1, False, 1])[0] == 3


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://[::1]:9"])
def test_cli_check_without_any_answer_is_an_error_not_a_model_failure(tmp_path, capsys, endpoint):
    (tmp_path / "golden.json").write_text(golden().to_json())
    argv = ["golden", "check", str(tmp_path / "golden.json"), "--endpoint", endpoint]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert f"error: no answer from {endpoint}: rows 0..9: " in captured.err
    assert "FAIL" not in captured.out


@pytest.mark.parametrize("endpoint", ["wine.ml.svc", "127.0.0.1:9", "localhost:8080", "ftp://x"])
def test_cli_check_refuses_an_endpoint_without_a_scheme_as_an_input_error(
    tmp_path, capsys, endpoint
):
    # Old code: sent twice, failed before leaving, and read as no answer (exit 2: the
    # operator would replay again) with "InvalidUrlClientError".
    (tmp_path / "golden.json").write_text(golden().to_json())
    argv = ["golden", "check", str(tmp_path / "golden.json"), "--endpoint", endpoint]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: --endpoint {endpoint!r}: not an http:// or https:// URL" in err
    assert "no answer" not in err
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(ROWS))
    build = ["golden", "build", str(rows), "--from-endpoint", endpoint, "--model", "toy"]
    assert main(build) == 1
    assert f"error: --from-endpoint {endpoint!r}: not an http" in capsys.readouterr().err


def test_cli_without_a_model_name_asks_for_the_model_option(tmp_path, capsys):
    # Old code: "pass model= or set 'model' in the golden set", a Python keyword.
    document = golden().to_document()
    del document["model"]
    (tmp_path / "golden.json").write_text(json.dumps(document))
    argv = ["golden", "check", str(tmp_path / "golden.json"), "--endpoint", "http://127.0.0.1:9"]
    assert main(argv) == 1
    assert 'error: no model name: pass --model or set "model" in the golden set' in (
        capsys.readouterr().err
    )
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    build = ["golden", "build", str(tmp_path / "rows.json"), "--from-endpoint", "http://x"]
    assert main(build) == 1
    assert "error: --from-endpoint needs --model" in capsys.readouterr().err


async def test_cli_check_with_rows_left_unanswered_gives_no_verdict(server, tmp_path, capsys):
    model, url = server
    model.mode = "error"
    (tmp_path / "golden.json").write_text(golden().to_json())
    argv = ["golden", "check", str(tmp_path / "golden.json"), "--endpoint", url]
    assert await asyncio.to_thread(main, argv) == 2
    assert f"error: no answer from {url}: rows 0..9: HTTP 500" in capsys.readouterr().err
    model.mode = "refuse"  # the model's answer: a verdict
    assert await asyncio.to_thread(main, argv) == 1
    assert "FAIL: agreement 0.0000" in capsys.readouterr().out


def test_cli_build_keeps_class_codes_with_leading_zeros_as_text(tmp_path):
    # "01" became 1, and a model answering its labels "01" never agreed with it.
    assert build_cli(tmp_path, "codes.csv", "a,label\n1,01\n2,02\n3,10\n") == 0
    document = json.loads((tmp_path / "golden.json").read_text())
    assert document["expected"] == ["01", "02", 10]
    assert compare(parse_golden_set(document), ["01", "02", "10"])[0] == 3
    regression = ("--task", "regression", "--tolerance", "0", "-o", str(tmp_path / "r.json"))
    assert build_cli(tmp_path, "codes.csv", "a,label\n1,007\n", *regression) == 0
    assert json.loads((tmp_path / "r.json").read_text())["expected"] == [7]
