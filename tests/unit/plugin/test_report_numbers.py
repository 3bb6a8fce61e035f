"""The report's numbers and page, from windows made here (no Prometheus, no browser)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from vigil.core import metric_names as names
from vigil.core.metric_names import total
from vigil.metrics.prometheus import group_matrices
from vigil.plugin.report.figures import Context, build
from vigil.plugin.report.page import BOTTOM, HEIGHT, TOP, Colours, line_chart, render
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
