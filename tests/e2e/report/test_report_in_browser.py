"""The model report, as a person opens it: in Chromium, from a file, with no network.

The report is made from a demo-like hour held by a real Prometheus
(conftest.py). Chromium loads it and reports JavaScript errors (none
allowed), every chart's marks are counted in the live DOM, and a full-page
screenshot is compared structurally with the expected layout: each chart in
its section, row and column (expected-layout.json), painted with the series'
colours where the DOM says it is.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import browser_page
from PIL import Image

from vigil.plugin.report.page import PALETTE, REFERENCE

HERE = Path(__file__).parent
LAYOUT = HERE / "expected-layout.json"
WIDTH = 1280

CHARTS_JS = """
JSON.stringify([...document.querySelectorAll('figure.chart')].map(f => {
  const r = f.getBoundingClientRect();
  return {chart: f.dataset.chart, section: f.closest('section').id,
          caption: f.querySelector('figcaption').textContent,
          points: Number(f.dataset.points), marks: f.querySelectorAll('.pt, .bar').length,
          x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
}))
"""


def _load(report_html: Path, work: Path, click: str | None = None) -> dict[str, Any]:
    async def visit() -> dict[str, Any]:
        async with browser_page(work) as page:
            await page.open(report_html.as_uri(), WIDTH)
            charts = json.loads(await page.evaluate(CHARTS_JS))
            hidden = None
            if click is not None:
                await page.evaluate(
                    f"document.querySelector('.legend [data-revision=\"{click}\"]').click()"
                )
                hidden = await page.evaluate(
                    f"[...document.querySelectorAll('svg g.rev[data-revision=\"{click}\"]')]"
                    ".map(g => getComputedStyle(g).display)"
                )
            shot = await page.screenshot(WIDTH)
            numbers = json.loads(
                await page.evaluate("document.getElementById('report-numbers').textContent")
            )
            return {
                "charts": charts,
                "errors": list(page.errors),
                "shot": shot,
                "hidden": hidden,
                "numbers": numbers,
            }

    return asyncio.run(visit())


@pytest.fixture(scope="module")
def opened(demo_like_report, tmp_path_factory) -> dict[str, Any]:
    seen = _load(demo_like_report.html, tmp_path_factory.mktemp("chromium"))
    (demo_like_report.html.parent / "screenshot.png").write_bytes(seen["shot"])
    return seen


def _grid(charts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each chart's section, row (charts whose tops align) and column (left to right)."""
    rows: list[float] = []
    out = []
    for chart in sorted(charts, key=lambda c: (round(c["y"]), c["x"])):
        if not rows or abs(chart["y"] - rows[-1]) > 4:
            rows.append(chart["y"])
        out.append(
            {
                "chart": chart["chart"],
                "section": chart["section"],
                "row": len(rows) - 1,
                "x": chart["x"],
            }
        )
    columns: Counter[int] = Counter()
    for item in out:
        item["column"] = columns[item["row"]]
        columns[item["row"]] += 1
        del item["x"]
    return out


def _ink(image: Image.Image, chart: dict[str, Any]) -> int:
    """Pixels inside the chart painted in a series' or the reference's colour."""
    box = (
        int(chart["x"]),
        int(chart["y"]),
        int(chart["x"] + chart["width"]),
        int(chart["y"] + chart["height"]),
    )
    pixels = np.asarray(image.crop(box).convert("RGB"), dtype=np.int32)
    colours = [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in (*PALETTE, REFERENCE, "#dd0000")]
    near = [np.abs(pixels - np.array(colour)).sum(axis=2) < 60 for colour in colours]
    return int(np.logical_or.reduce(near).sum())


def test_chromium_loads_the_report_with_no_javascript_error(opened) -> None:
    assert opened["errors"] == []


def test_every_chart_has_data_points_in_the_page(opened, demo_like_report) -> None:
    charts = opened["charts"]
    features = len(demo_like_report.numbers["features"])
    assert len(charts) >= 3 * features + 6
    empty = [c["chart"] for c in charts if c["points"] == 0 or c["marks"] != c["points"]]
    assert empty == []
    # A caption says what the chart shows, in words.
    assert all(c["caption"] and "<" not in c["caption"] for c in charts)


def test_the_page_holds_the_same_numbers_as_the_json_export(opened, demo_like_report) -> None:
    assert opened["numbers"] == json.loads(json.dumps(demo_like_report.numbers))


def test_screenshot_shows_each_chart_where_the_layout_puts_it(opened) -> None:
    grid = _grid(opened["charts"])
    if os.environ.get("VIGIL_UPDATE_LAYOUT") == "1":
        LAYOUT.write_text(json.dumps(grid, indent=1) + "\n")
    assert grid == json.loads(LAYOUT.read_text()), (
        "layout changed: VIGIL_UPDATE_LAYOUT=1 rewrites it"
    )
    image = Image.open(io.BytesIO(opened["shot"]))
    assert image.width == WIDTH
    assert image.height >= max(c["y"] + c["height"] for c in opened["charts"])
    unpainted = [c["chart"] for c in opened["charts"] if _ink(image, c) < 40]
    assert unpainted == []


def test_a_click_on_a_revision_in_the_legend_hides_it_everywhere(
    demo_like_report, tmp_path
) -> None:
    seen = _load(demo_like_report.html, tmp_path, click="b2")
    assert seen["errors"] == []
    assert seen["hidden"] and set(seen["hidden"]) == {"none"}


def test_the_report_tells_the_hours_story(demo_like_report) -> None:
    numbers = demo_like_report.numbers
    worst = numbers["features"][0]
    assert worst["name"] == "alcohol" and worst["drift"] > numbers["thresholds"]["driftThreshold"]
    rollouts = {r["revision"]: r for r in numbers["rollouts"]}
    agreement = rollouts["b2"]["gates"]["agreement"]
    assert agreement["threshold"] == 0.9 and not any(passed for _, _, passed in agreement["values"])
    assert all(passed for _, _, passed in rollouts["c2"]["gates"]["agreement"]["values"])
    assert rollouts["b2"]["outcome"] == "RolledBack" and rollouts["c2"]["outcome"] == "Promoted"
    truth = numbers["groundTruth"]
    assert truth["available"] and 0.85 < truth["totals"]["a1"]["accuracy"] < 1


def test_the_report_needs_no_network(demo_like_report) -> None:
    text = demo_like_report.html.read_text()
    for needs_network in ("<link", " src=", "url(", "@import", "<img", "<iframe"):
        assert needs_network not in text
