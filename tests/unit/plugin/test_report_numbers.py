"""The report's numbers and page, from windows made here (no Prometheus, no browser)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vigil.core import metric_names as names
from vigil.core.metric_names import total
from vigil.core.window import RevisionWindow
from vigil.metrics.prometheus import group_matrices
from vigil.plugin.report import cli as report_cli
from vigil.plugin.report import sources as report_sources
from vigil.plugin.report.figures import Context, Measured, build
from vigil.plugin.report.page import (
    BOTTOM,
    HEIGHT,
    TOP,
    Colours,
    line_chart,
    render,
    timeline,
)
from vigil.plugin.report.sources import choose_step, from_scrapes
from vigil.profile import ReferenceProfile, build_profile
from vigil.profile.bins import bin_index

#: sklearn's load_wine feature names, in its column order.
WINE_FEATURES = (
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
)


@functools.cache
def _wine() -> tuple[np.ndarray, ReferenceProfile]:
    """sklearn's wine rows and their profile, read from the file sklearn ships: importing
    sklearn.datasets costs the worker that runs these tests about two seconds."""
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations, "scikit-learn is not installed"
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "wine_data.csv"
    # First line: row and column counts and the class names; then 13 features and the class.
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    data, target = table[:, :-1], table[:, -1].astype(np.int64)
    return data, build_profile(data, predictions=target, feature_names=list(WINE_FEATURES))


MD = {
    "apiVersion": "vigil.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "wine", "namespace": "ml"},
    "spec": {"model": {"version": "1"}, "server": {"image": "x"}},
    "status": {"stable": {"revision": "r1", "modelVersion": "1"}},
}


def _sidecar_text(shift: float, *, rows: int = 500, shifts: dict | None = None) -> str:
    """One sidecar's /metrics after ``rows`` wine rows: alcohol shifted by ``shift``, or
    ``shifts`` (column -> (shift, how many of the first rows))."""
    data, profile = _wine()
    table = data[np.arange(rows) % len(data)].copy()
    for column, (by, first) in (shifts or {0: (shift, rows)}).items():
        table[:first, column] += by
    lines = [
        f'{total(names.REQUESTS)}{{endpoint="infer",outcome="success"}} {rows - 2}',
        f'{total(names.REQUESTS)}{{endpoint="infer",outcome="server_error"}} 2',
        f"{total(names.INPUT_ROWS)} {rows}",
    ]
    for column, feature in enumerate(profile.features):
        slots = np.bincount(
            bin_index(table[:, column], feature.edges), minlength=len(feature.proportions)
        )
        lines += [
            f'{total(names.FEATURE_BIN)}{{feature="{feature.name}",bin="{i}"}} {n}'
            for i, n in enumerate(slots)
        ]
    return "\n".join(lines) + "\n"


def _numbers(shift: float = 0.0, events: tuple = ()) -> dict:
    measured = from_scrapes(
        {"r1": [("wine-r1-0", _sidecar_text(shift))]}, now=1000.0, progress=print
    )
    return build(Context(MD, events, _wine()[1], generated_at=1000.0), measured)


def test_features_are_sorted_by_drift_worst_first() -> None:
    numbers = _numbers(shift=2.0)
    assert numbers["features"][0]["name"] == "alcohol"
    drifts = [f["drift"] for f in numbers["features"]]
    assert drifts == sorted(drifts, reverse=True)


def test_a_drift_in_part_of_the_range_ranks_by_its_worst_window() -> None:
    # Alcohol jumps in the last window only (diluted over the range's 5 000 rows); malic
    # acid is mildly off all along, which the whole range's counts make look worse.
    def window(text: str):
        return from_scrapes({"r1": [("wine-r1-0", text)]}, now=1000.0, progress=print)

    calm = window(_sidecar_text(0, shifts={1: (0.8, 500)})).points[1000.0]
    storm = window(_sidecar_text(0, shifts={0: (3.0, 500), 1: (0.8, 500)})).points[1000.0]
    whole = window(_sidecar_text(0, rows=5000, shifts={0: (3.0, 500), 1: (0.8, 5000)}))
    measured = dataclasses.replace(
        whole, points={**{at: calm for at in range(900, 1000, 10)}, 1000.0: storm}
    )
    numbers = build(Context(MD, (), _wine()[1], generated_at=1000.0), measured)
    alcohol, malic = numbers["features"][:2]
    assert (alcohol["name"], malic["name"]) == ("alcohol", "malic_acid")
    assert alcohol["drift"] < malic["drift"] and malic["driftPeak"] < alcohol["driftPeak"]
    threshold = numbers["thresholds"]["driftThreshold"]
    assert alcohol["drift"] > 0 and alcohol["driftPeak"] > threshold
    page = render(numbers)
    assert f"{alcohol['driftPeak']:.3f}" in page and "worst window" in page


def _level_cells(page: str) -> dict[str, str]:
    import re

    table = page[page.index('<table class="features"') :]
    rows = re.findall(r"<tr>(.*?)</tr>", table[: table.index("</table>")])[1:]
    cells = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in rows]
    return {row[0]: row[4] for row in cells}


@pytest.mark.parametrize(
    ("rows", "shift", "alcohol"),
    [(80, 0.25, "not surely drifted"), (60, 0.3, "over threshold")],
)
def test_a_features_level_is_the_health_loops_verdict_not_its_estimates(rows, shift, alcohol):
    """80 rows, estimates of 0.55-0.66 against a 0.2 threshold: the health loop judged no
    drift (Healthy), and the report called each of them "over threshold"."""
    measured = from_scrapes(
        {"r1": [("wine-r1-0", _sidecar_text(shift, rows=rows))]}, now=1000.0, progress=print
    )
    numbers = build(Context(MD, (), _wine()[1], generated_at=1000.0), measured)
    threshold = numbers["thresholds"]["driftThreshold"]
    levels = _level_cells(render(numbers))
    assert all(f["drift"] > threshold for f in numbers["features"][:3])
    assert levels["alcohol"] == alcohol


def test_without_labels_the_ground_truth_section_says_so() -> None:
    numbers = _numbers()
    assert numbers["groundTruth"]["available"] is False
    assert "no labels" in numbers["groundTruth"]["note"]
    assert "no labels" in render(numbers)


def test_the_direct_source_gives_one_point_and_says_why() -> None:
    numbers = _numbers()
    assert [len(points) for points in numbers["operations"]["errorRate"].values()] == [1]
    assert numbers["operations"]["errorRate"]["r1"][0][1] == 0.004
    assert any("need Prometheus" in note for note in numbers["notes"])


def test_the_direct_source_rates_each_revision_over_its_own_pods_life() -> None:
    # A stable up for two days and a candidate for ten minutes, 600 requests each.
    def sidecar(started: float) -> str:
        success = f'{total(names.REQUESTS)}{{endpoint="infer",outcome="success"}} 600'
        return f"{success}\n{names.SIDECAR_START_TIME} {started}\n"

    now = 1_000_000.0
    scrapes = {
        "r1": [("wine-r1-0", sidecar(now - 172_800))],
        "r2": [("wine-r2-0", sidecar(now - 600))],
    }
    measured = from_scrapes(scrapes, now=now, progress=print)
    status = {"stable": {"revision": "r1"}, "candidate": {"revision": "r2"}}
    numbers = build(Context({**MD, "status": status}, (), None, generated_at=now), measured)
    rates = {rev: points[0][1] for rev, points in numbers["operations"]["requestRate"].items()}
    assert rates == {"r1": round(600 / 172_800, 6), "r2": 1.0}  # the page rounds to 6 places
    assert measured.start == now - 172_800


def test_a_chart_of_negative_values_keeps_them_inside_it() -> None:
    # A regressor's prediction mean below zero: drawn below the zero line, inside the plot.
    svg = line_chart(
        "mean", "Prediction mean", {"r1": [[0.0, -5.0], [60.0, 3.0]]}, Colours(["r1"]), (0.0, 60.0)
    )
    ys = [float(y) for y in re.findall(r'<circle[^>]* cy="([-0-9.]+)"', svg)]
    assert all(TOP <= y <= HEIGHT - BOTTOM for y in ys) and ys[0] > ys[1]


def test_numbers_are_strict_json_and_the_page_holds_them() -> None:
    numbers = _numbers(events=({"type": "Warning", "reason": "X", "message": "</script><b>"},))
    text = json.dumps(numbers, allow_nan=False)
    page = render(numbers)
    assert "</script><b>" not in page and "&lt;/script&gt;&lt;b&gt;" in page
    start = page.index('id="report-numbers">') + len('id="report-numbers">')
    embedded = page[start : page.index("</script>", start)].replace("<\\/", "</")
    assert json.loads(embedded) == json.loads(text)


def test_range_answers_group_per_evaluation_time() -> None:
    family = total(names.REQUESTS)
    labels = {"namespace": "ml", "model_deployment": "wine", "revision": "r1", "outcome": "success"}
    matrix = [{"metric": labels, "values": [[10, "5"], [20, "7"]]}]
    pods = [{"metric": labels, "values": [[10, "2"], [20, "1"]]}]
    grouped = group_matrices([family], [matrix], pods)
    assert sorted(grouped) == [10.0, 20.0]
    series, counted = grouped[20.0]
    assert series[("ml", "wine", "r1")][(family, (("origin", ""), ("outcome", "success")))] == 7.0
    assert counted[("ml", "wine", "r1")] == 1


def test_about_120_points_whatever_the_range() -> None:
    assert choose_step(3600) == 30 and choose_step(600) == 5 and choose_step(86400) == 720


def test_a_pod_whose_metrics_cannot_be_read_is_noted_and_the_rest_counted() -> None:
    # Something else at a reused pod IP, or a broken sidecar: the report still comes out.
    measured = from_scrapes(
        {
            "r1": [
                ("wine-r1-0", _sidecar_text(0.0)),
                ("wine-r1-1", 'vigil_request_outcomes_total{a="b" 1\n'),
            ]
        },
        now=1000.0,
        progress=print,
    )
    assert measured.points[1000.0]["r1"].pods == 1
    assert any("wine-r1-1" in note and "not read" in note for note in measured.notes)


def test_the_direct_sources_header_says_what_a_point_is() -> None:
    # Not "each point: a 1s window every 0ms": one reading of counters per revision.
    page = render(_numbers())
    assert "one point per revision: counters since each sidecar started" in page
    assert "window every" not in page


def test_a_spec_the_operator_cannot_read_is_reported_with_the_defaults() -> None:
    spec = {
        **MD["spec"],
        "rollout": {
            "analysis": {"confidence": 1},
            "replacement": {"steps": [{"canary": {"duration": "5m"}}]},
        },
        "monitoring": {"window": "10m", "metrics": {"source": "prometheus"}},  # no URL
    }
    md = {**MD, "spec": spec}
    measured = from_scrapes({"r1": [("wine-r1-0", _sidecar_text(0.0))]}, now=1000.0, progress=print)
    numbers = build(Context(md, (), _wine()[1], generated_at=1000.0), measured)
    notes = " ".join(numbers["notes"])
    assert "spec.rollout cannot be read (spec.rollout.analysis.confidence 1" in notes
    assert "spec.monitoring cannot be read (spec.monitoring.metrics.prometheusURL" in notes
    assert numbers["thresholds"]["driftThreshold"] == 0.2  # the default
    args = argparse.Namespace(direct=False, prometheus=None)
    assert report_cli._prometheus_url(args, md) is None  # the sidecars, directly


def _context_with(monkeypatch: pytest.MonkeyPatch, configmap: dict[str, Any]) -> Context:
    md = {**MD, "spec": {**MD["spec"], "monitoring": {"reference": _REFERENCE}}}
    monkeypatch.setattr(report_cli, "read_model_and_events", lambda args: (md, [], ""))
    monkeypatch.setattr(report_cli, "_json", lambda args, *command: configmap)
    return report_cli._context(argparse.Namespace(name="wine"))


_REFERENCE = {"configMapKeyRef": {"name": "wine-profile", "key": "profile.json"}}


def test_the_reference_profile_is_read_from_binary_data_too(monkeypatch) -> None:
    # As the operator reads it (Body.value): a profile stored as bytes is a profile.
    text = _wine()[1].to_json().encode()
    binary = {"binaryData": {"profile.json": base64.b64encode(text).decode()}}
    context = _context_with(monkeypatch, binary)
    assert context.profile is not None and context.notes == ()
    context = _context_with(monkeypatch, {"data": {"other.json": "{}"}})
    assert context.profile is None
    assert context.notes == ("reference profile wine-profile: no key profile.json",)


def test_a_report_without_the_right_to_list_events_says_so_in_its_notes(monkeypatch) -> None:
    forbidden = 'events is forbidden: User "ana" cannot list resource "events"'
    monkeypatch.setattr(report_cli, "read_model_and_events", lambda args: (MD, [], forbidden))
    context = report_cli._context(argparse.Namespace(name="wine"))
    assert context.notes[0] == f"Events not read: {forbidden}"


def test_an_unreachable_prometheus_stops_every_query_before_the_session_closes(
    monkeypatch,
) -> None:
    # A query still running after close() opened a new session: "Unclosed client session".
    class Source:
        def __init__(self, url: str, timeout_seconds: float) -> None:
            self.closed = False
            self.calls = 0
            self.after_close = 0
            sources.append(self)

        async def query_range(self, *args: Any) -> list[dict[str, Any]]:
            return await self._answer()

        async def query(self, *args: Any) -> list[dict[str, Any]]:
            return await self._answer()

        async def _answer(self) -> list[dict[str, Any]]:
            self.calls += 1
            self.after_close += self.closed
            if self.calls == 1:
                raise RuntimeError("prometheus http://nowhere: cannot connect")
            await asyncio.sleep(0.01)
            self.after_close += self.closed
            return []

        async def close(self) -> None:
            self.closed = True
            await asyncio.sleep(0.05)

    sources: list[Source] = []
    monkeypatch.setattr(report_sources, "PrometheusSource", Source)
    query = report_sources.from_prometheus(
        "http://nowhere",
        "ml",
        "wine",
        start=0,
        end=60,
        step=5,
        window_seconds=30,
        labels_window_seconds=30,
        progress=print,
    )
    with pytest.raises(RuntimeError, match="cannot connect"):
        asyncio.run(query)
    assert sources[0].closed and sources[0].after_close == 0


# Three revisions, each stable in turn: P deployed at 0, A promoted at 1000, B at 2000. A is
# measured until 2300 (its Deployment outlives the switch for a moment) with a tail of
# errors after B took over, when no gate judged it any more.
HANDOVER_MD = {
    "metadata": {"name": "m", "namespace": "ns"},
    "spec": {"model": {"name": "m", "version": "3"}, "server": {"image": "x"}},
    "status": {
        "stable": {"revision": "B", "modelVersion": "3"},
        "history": [
            {"revision": "B", "modelVersion": "3", "change": "replacement",
             "outcome": "Promoted", "at": "1970-01-01T00:33:20Z"},
            {"revision": "A", "modelVersion": "2", "change": "replacement",
             "outcome": "Promoted", "at": "1970-01-01T00:16:40Z"},
            {"revision": "P", "modelVersion": "1", "change": "new",
             "outcome": "Deployed", "at": "1970-01-01T00:00:50Z"},
        ],
    },
}  # fmt: skip


def _handover(events: tuple = ()) -> dict:
    def window(requests: float, errors: float) -> RevisionWindow:
        return RevisionWindow(
            requests_by_outcome={"success": requests - errors, "server_error": errors},
            latency_buckets=((0.05, requests), (float("inf"), requests)),
        )

    points: dict[float, dict[str, RevisionWindow]] = {}
    for at in range(100, 3000, 100):
        windows = points.setdefault(float(at), {})
        if at <= 1000:
            windows["P"] = window(1000, 1)
        if 500 <= at <= 2300:
            windows["A"] = window(1000, 50 if at > 2000 else 1)
        if at >= 1500:
            windows["B"] = window(1000, 1)
    measured = Measured(
        points=points, totals={}, start=100.0, end=2900.0, step=100.0,
        window_seconds=300.0, source="test",
    )  # fmt: skip
    return build(Context(HANDOVER_MD, events, None, generated_at=2900.0), measured)


def test_a_revision_is_judged_as_a_candidate_only_until_it_became_stable() -> None:
    rollouts = {r["revision"]: r for r in _handover()["rollouts"]}
    judged_a = [p[0] for gate in rollouts["A"]["gates"].values() for p in gate["values"]]
    assert judged_a and max(judged_a) <= 1000.0  # not its tail against B after 2000
    judged_b = [p[0] for gate in rollouts["B"]["gates"].values() for p in gate["values"]]
    assert judged_b and min(judged_b) == 1500.0 and max(judged_b) < 2000.0
    assert all(p[2] for gate in rollouts["A"]["gates"].values() for p in gate["values"])


def test_an_event_belongs_to_the_revision_its_message_is_about() -> None:
    started = (
        "revision B (replacement: model m version 3) starting with 4 step(s); "
        "revision A keeps serving"
    )
    switched = (
        "live traffic moved from revision A (version 2) to revision B (version 3); "
        "revision A removed"
    )
    events = (
        {"type": "Normal", "reason": "RolloutStarted", "message": started,
         "lastTimestamp": "1970-01-01T00:25:00Z"},
        {"type": "Normal", "reason": "Switched", "message": switched,
         "lastTimestamp": "1970-01-01T00:33:20Z"},
        {"type": "Normal", "reason": "Scaled", "message": "revision AB scaled from 1 to 2",
         "lastTimestamp": "1970-01-01T00:34:00Z"},
    )  # fmt: skip
    rollouts = {r["revision"]: r for r in _handover(events)["rollouts"]}
    assert [e["reason"] for e in rollouts["B"]["events"]] == ["RolloutStarted", "Switched"]
    assert rollouts["B"]["started"] == 1500.0
    assert rollouts["A"]["events"] == [] and rollouts["A"]["started"] is None


def _lane_spans(svg: str) -> dict[str, tuple[float, float]]:
    lanes = re.findall(
        r'data-revision="(\w+)">.*?<rect[^>]* x="([\d.]+)"[^>]* width="([\d.]+)"', svg
    )
    return {rev: (float(x), float(x) + float(width)) for rev, x, width in lanes}


def test_a_stables_lane_ends_when_the_next_revision_took_over() -> None:
    rollouts = _handover()["rollouts"]
    spans = _lane_spans(timeline("t", rollouts, Colours(["B", "A", "P"]), (0.0, 3000.0)))
    # No start Event in range: each lane starts at the range's start (0), so its length
    # is where it ends: P until A took over (1000), A until B did (2000), B serves on.
    length = {rev: end - start for rev, (start, end) in spans.items()}
    assert length["P"] / length["B"] == pytest.approx(1 / 3, abs=0.01)
    assert length["A"] / length["B"] == pytest.approx(2 / 3, abs=0.01)


def test_no_message_can_hide_the_page_behind_a_comment_or_a_script() -> None:
    message = "<!--<script>& </script>"
    numbers = _numbers(events=({"type": "Warning", "reason": "X", "message": message},))
    page = render(numbers)
    start = page.index('id="report-numbers">') + len('id="report-numbers">')
    embedded = page[start : page.index("</script>", start)]
    assert not set("<>&") & set(embedded)
    assert json.loads(embedded) == json.loads(json.dumps(numbers, allow_nan=False))


def _recorded_queries(monkeypatch, **windows: float) -> list[str]:
    """The PromQL ``from_prometheus`` sends (every answer empty)."""
    queries: list[str] = []

    class Source:
        def __init__(self, url: str, timeout_seconds: float) -> None:
            pass

        async def query_range(self, promql: str, *args: Any) -> list[dict[str, Any]]:
            queries.append(promql)
            return []

        async def query(self, promql: str, *args: Any) -> list[dict[str, Any]]:
            return []

        async def close(self) -> None:
            pass

    monkeypatch.setattr(report_sources, "PrometheusSource", Source)
    query = report_sources.from_prometheus(
        "http://p", "ml", "wine", start=0, end=7200, step=60, progress=print, **windows
    )
    measured = asyncio.run(query)
    assert measured.labels_window_seconds == windows["labels_window_seconds"]
    return queries


def test_labels_slide_over_the_performance_window_as_the_health_loop_reads_them(
    monkeypatch,
) -> None:
    # Read over the 5-minute traffic window, accuracy over time showed other figures than
    # the hour of labels PerformanceDegraded judged.
    queries = _recorded_queries(monkeypatch, window_seconds=300, labels_window_seconds=3600)
    labels = [q for q in queries if names.FEEDBACK_CORRECT in q or names.FEEDBACK_LABELS in q]
    requests = [q for q in queries if f"{total(names.REQUESTS)}{{" in q]
    assert labels and all("[3600s]" in q for q in labels)
    assert requests and all("[300s]" in q for q in requests)
    measured = Measured({}, {}, 0, 7200, 60, 300, "test", labels_window_seconds=3600)
    assert measured.label_seconds("r1") == 3600 and measured.seconds("r1") == 300


def test_the_report_reads_labels_over_spec_monitoring_performance_window(monkeypatch) -> None:
    md = {
        "metadata": {"name": "wine", "namespace": "ml"},
        "spec": {"monitoring": {"window": "2m", "performance": {"window": "30m"}}},
    }
    seen: dict[str, float] = {}

    async def from_prometheus(*args: Any, **kwargs: Any) -> str:
        seen.update(kwargs)
        return "measured"

    monkeypatch.setattr(report_cli, "from_prometheus", from_prometheus)
    monkeypatch.setattr(report_cli, "_prometheus_url", lambda args, md: "http://p")
    args = argparse.Namespace(since=7200.0, step=None, window=None)
    context = Context(md)
    assert report_cli.measure(args, context) == "measured"  # type: ignore[comparison-overlap]
    assert (seen["window_seconds"], seen["labels_window_seconds"]) == (120, 1800)


def test_a_retried_candidate_is_under_way_not_its_earlier_attempts_outcome() -> None:
    # Status keeps the rolled-back attempt's history entry; the page said "RolledBack" for
    # the rollout under way, and started it at the first attempt.
    retried = json.loads(json.dumps(HANDOVER_MD))
    retried["status"]["history"].insert(
        0,
        {"revision": "C", "modelVersion": "4", "change": "replacement",
         "outcome": "RolledBack", "reason": "ErrorRate", "at": "1970-01-01T00:40:00Z"},
    )  # fmt: skip
    retried["status"]["candidate"] = {
        "revision": "C",
        "modelVersion": "4",
        "change": "replacement",
        "startedAt": "1970-01-01T00:45:00Z",
    }
    measured = Measured({}, {}, 100.0, 2900.0, 100.0, 300.0, "test")
    numbers = build(Context(retried, (), None, generated_at=2900.0), measured)
    (c,) = [r for r in numbers["rollouts"] if r["revision"] == "C"]
    assert (c["role"], c["outcome"], c["ended"], c["started"]) == ("candidate", None, None, 2700.0)
    assert c["previousAttempt"] == {"outcome": "RolledBack", "reason": "ErrorRate", "at": 2400.0}
    assert "retried after RolledBack at 1970-01-01 00:40:00 UTC" in render(numbers)
    retried["status"]["candidate"]["outcome"] = "RolledBack"  # the attempt ended again
    numbers = build(Context(retried, (), None, generated_at=2900.0), measured)
    (c,) = [r for r in numbers["rollouts"] if r["revision"] == "C"]
    assert (c["outcome"], c["previousAttempt"]) == ("RolledBack", None)


#: kubectl's error quoting what a pod's proxy answered: a screen clear and an OSC 52.
HOSTILE_ERROR = "Error from server: \x1bc\x1b]52;c;ZWNobw==\x07\x9b2J"


def test_the_reports_terminal_lines_show_control_characters_from_the_cluster_not_send_them(
    monkeypatch, capsys
) -> None:
    pod = {"metadata": {"name": "wine-9b1e4d0-x", "namespace": "ml"}}
    pod["status"] = {"phase": "Running"}

    def unreadable(args: argparse.Namespace, *command: str) -> str:
        raise report_cli.PluginError(HOSTILE_ERROR)

    monkeypatch.setattr(report_cli, "read_model_and_events", lambda args: (MD, [], ""))
    monkeypatch.setattr(report_cli, "_json", lambda args, *command: {"items": [pod]})
    monkeypatch.setattr(report_cli, "kubectl_output", unreadable)
    args = argparse.Namespace(name="wine", direct=True, prometheus=None)
    assert report_cli.report(args) == 1
    err = capsys.readouterr().err
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", err), repr(err)
    shown = r"Error from server: \x1bc\x1b]52;c;ZWNobw==\x07\x9b2J"
    assert f"report: direct: cannot read wine-9b1e4d0-x: {shown}\n" in err
    assert f"vigil report: no sidecar could be read: wine-9b1e4d0-x: {shown}\n" in err


@pytest.mark.parametrize("keys", [("0", "1"), ("false", "true")], ids=["numbers", "booleans"])
def test_a_boolean_classifiers_predictions_chart_under_either_form_of_its_classes(keys):
    """One revision's sidecars count 1 as true (its profile's classes are booleans), another's
    as 1: charted under the other's profile, its bars read 0."""
    import numpy as np

    from vigil.core.window import RevisionWindow
    from vigil.plugin.report.figures import _prediction_counts
    from vigil.profile import build_profile

    x, flags = np.arange(300.0).reshape(-1, 1), np.arange(300) % 3 == 0
    counted = RevisionWindow(prediction_classes={keys[0]: 200.0, keys[1]: 100.0})
    for predictions in (flags, flags.astype(int)):
        profile = build_profile(x, predictions=predictions, feature_names=["x"])
        assert profile.prediction is not None
        assert _prediction_counts(profile.prediction, counted) == [200.0, 100.0, 0.0]
