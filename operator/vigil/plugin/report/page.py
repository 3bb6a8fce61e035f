"""The report's numbers drawn as one HTML file: inline SVG, inline CSS, no network.

Every chart is a ``<figure class="chart" data-chart=ID data-points=N>`` whose
marks carry the class ``pt`` (a measured point) or ``bar``; a chart without
data says so in words (``data-points="0"``). The page works without
JavaScript; a few lines of it let a click on a revision in the legend hide
or show that revision everywhere.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vigil.common.readable import duration, percent

PALETTE = ("#1f6fb4", "#d6402b", "#2b9e4a", "#8a5cc2", "#e08a12", "#7b5a48", "#d35fb7", "#1aa6b7")
REFERENCE = "#9a9a9a"
#: A failed gate check, a Warning Event.
FAILED = "#dd0000"
WIDTH, HEIGHT = 380, 180
LEFT, RIGHT, TOP, BOTTOM = 50, 18, 12, 30

Format = Callable[[float], str]
#: A series whose name ends so is drawn dashed (a second figure of the same revision).
DASHED = " missing"


def _number(value: float) -> str:
    return f"{value:.3g}"


def _clock(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%H:%M")


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _tag(name: str, inner: str = "", **attrs: Any) -> str:
    """An SVG or HTML element: ``cls`` is ``class``, ``_`` in a name is ``-``, floats .1f."""
    words = []
    for key, value in attrs.items():
        key = "class" if key == "cls" else key.replace("_", "-")
        text = f"{value:.1f}" if isinstance(value, float) else _e(value)
        words.append(f'{key}="{text}"')
    opening = f"<{name} {' '.join(words)}"
    return (
        f"{opening}>{inner}</{name}>"
        if inner or name not in ("line", "circle", "rect")
        else opening + "/>"
    )


class Colours:
    """One colour per revision, the same on every chart."""

    def __init__(self, revisions: Sequence[str]) -> None:
        self.by_revision = {rev: PALETTE[i % len(PALETTE)] for i, rev in enumerate(revisions)}

    def __call__(self, revision: str) -> str:
        """A series named ``REV`` or ``REV <what>`` takes the revision's colour."""
        return self.by_revision.get(revision.split(" ")[0], REFERENCE)


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{colour}"></span>'


def _figure(chart_id: str, title: str, points: int, svg: str, note: str = "") -> str:
    caption = _e(title) + (f' <span class="note">{_e(note)}</span>' if note else "")
    return (
        f'<figure class="chart" data-chart="{_e(chart_id)}" data-points="{points}">'
        f"<figcaption>{caption}</figcaption>{svg}</figure>"
    )


def _empty(chart_id: str, title: str, why: str) -> str:
    svg = (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">'
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="empty">{_e(why)}</text></svg>'
    )
    return _figure(chart_id, title, 0, svg)


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def line_chart(
    chart_id: str,
    title: str,
    series: Mapping[str, Sequence[Sequence[float]]],
    colours: Colours,
    x_range: tuple[float, float],
    fmt: Format = _number,
    thresholds: Sequence[tuple[float, str]] = (),
    note: str = "",
) -> str:
    """Lines over time, one per revision, with threshold lines."""
    drawn = {rev: list(pts) for rev, pts in series.items() if pts}
    count = sum(len(pts) for pts in drawn.values())
    if not count:
        return _empty(chart_id, title, "no data in this range")
    x0, x1 = x_range
    if x1 <= x0:
        x1 = x0 + 1
    values = [p[1] for pts in drawn.values() for p in pts] + [t[0] for t in thresholds]
    # From zero, or from below it: a regressor's predictions may be negative.
    bottom, top = min(0.0, min(values) * 1.1), max(0.0, max(values) * 1.1)
    if top <= bottom:
        top = bottom + 1.0
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: float) -> float:
        return LEFT + (at - x0) / (x1 - x0) * width

    def y(value: float) -> float:
        return TOP + height - (value - bottom) / (top - bottom) * height

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">']
    for tick in _ticks(bottom, top):
        parts.append(_tag("line", cls="grid", x1=LEFT, x2=WIDTH - RIGHT, y1=y(tick), y2=y(tick)))
        parts.append(
            _tag("text", _e(fmt(tick)), cls="axis", x=LEFT - 4, y=y(tick) + 4, text_anchor="end")
        )
    for tick in _ticks(x0, x1):
        parts.append(
            _tag("text", _clock(tick), cls="axis", x=x(tick), y=HEIGHT - 10, text_anchor="middle")
        )
    for n, (value, label) in enumerate(thresholds):
        anchor, tx = ("end", WIDTH - RIGHT - 2) if n % 2 == 0 else ("start", LEFT + 4)
        said = f"{_e(label)} {_e(fmt(value))}"
        parts.append(
            _tag(
                "line",
                f"<title>{said}</title>",
                cls="threshold",
                x1=LEFT,
                x2=WIDTH - RIGHT,
                y1=y(value),
                y2=y(value),
            )
        )
        parts.append(
            _tag("text", said, cls="threshold-label", x=tx, y=y(value) - 3, text_anchor=anchor)
        )
    for rev, pts in drawn.items():
        colour = colours(rev)
        path = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in pts)
        parts.append(f'<g class="rev" data-revision="{_e(rev)}">')
        if len(pts) > 1:
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>'
            )
        for p in pts:
            failed = len(p) > 2 and p[2] is False
            tip = f"<title>{_e(rev)} {_clock(p[0])} {_e(fmt(p[1]))}</title>"
            parts.append(
                _tag(
                    "circle",
                    tip,
                    cls="pt failed" if failed else "pt",
                    cx=x(p[0]),
                    cy=y(p[1]),
                    r=3.2 if failed else 2.2,
                    fill=FAILED if failed else colour,
                )
            )
        parts.append("</g>")
    parts.append("</svg>")
    return _figure(chart_id, title, count, "".join(parts), note)


def bar_chart(
    chart_id: str,
    title: str,
    slots: Sequence[str],
    reference: Sequence[float] | None,
    live: Mapping[str, Sequence[float] | None],
    colours: Colours,
) -> str:
    """Reference vs live share per slot (bin or category), grouped bars."""
    groups: list[tuple[str, str, Sequence[float]]] = []
    if reference:
        groups.append(("reference", REFERENCE, reference))
    groups += [(rev, colours(rev), shares) for rev, shares in live.items() if shares]
    if not slots or not groups:
        return _empty(chart_id, title, "no data in this range")
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 14
    top = max(max(shares) for _, _, shares in groups) * 1.1 or 1.0
    slot_width = width / len(slots)
    bar = max(1.0, (slot_width - 4) / len(groups))
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">']
    for tick in _ticks(0.0, top):
        ty = TOP + height - tick / top * height
        parts.append(_tag("line", cls="grid", x1=LEFT, x2=WIDTH - RIGHT, y1=ty, y2=ty))
        parts.append(
            _tag("text", percent(tick), cls="axis", x=LEFT - 4, y=ty + 4, text_anchor="end")
        )
    count = 0
    for g, (name, colour, shares) in enumerate(groups):
        parts.append(f'<g class="rev" data-revision="{_e(name)}">')
        for i, share in enumerate(shares[: len(slots)]):
            h = share / top * height
            bx = LEFT + i * slot_width + 2 + g * bar
            parts.append(
                f'<rect class="bar" x="{bx:.1f}" y="{TOP + height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_e(name)} {_e(slots[i])}: '
                f"{percent(share)}</title></rect>"
            )
            count += 1
        parts.append("</g>")
    step = max(1, math.ceil(len(slots) / 6))
    for i in range(0, len(slots), step):
        # An inner bin is named by its lower edge on the axis (its tooltip has both).
        label = slots[i].split(" to ")[0]
        parts.append(
            f'<text class="axis" x="{LEFT + (i + 0.5) * slot_width:.1f}" y="{HEIGHT - 18}" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
    parts.append("</svg>")
    return _figure(chart_id, title, count, "".join(parts))


def timeline(
    chart_id: str,
    rollouts: Sequence[Mapping[str, Any]],
    colours: Colours,
    x_range: tuple[float, float],
) -> str:
    """One lane per revision: when it rolled out and ended, its Events as marks."""
    lanes = [r for r in rollouts if r.get("started") or r.get("ended") or r.get("events")]
    if not lanes:
        return _empty(chart_id, "Rollouts", "no rollout in this range")
    x0, x1 = x_range
    lane_height = 26
    height = TOP + lane_height * len(lanes) + BOTTOM
    width = WIDTH * 2 - LEFT - RIGHT - 60
    left = LEFT + 60

    def x(at: float) -> float:
        return left + (min(max(at, x0), x1) - x0) / max(1.0, x1 - x0) * width

    parts = [
        f'<svg viewBox="0 0 {WIDTH * 2} {height}" width="{WIDTH * 2}" height="{height}" role="img">'
    ]
    count = 0
    for i, lane in enumerate(lanes):
        rev = lane["revision"]
        cy = TOP + i * lane_height + lane_height / 2
        colour = colours(rev)
        label = f"{rev} v{lane.get('modelVersion') or '?'}"
        parts.append(f'<g class="rev" data-revision="{_e(rev)}">')
        parts.append(_tag("text", _e(label), cls="axis", x=left - 6, y=cy + 4, text_anchor="end"))
        start = lane.get("started") or x0
        # A stable's lane runs until the next revision took over (to the end while it serves).
        served = lane.get("outcome") in ("Deployed", "Promoted")
        end = (lane.get("servedUntil") if served else lane.get("ended")) or x1
        outcome = lane.get("outcome") or "in progress"
        said = _e(f"{rev} {lane.get('change') or ''} {outcome}: {lane.get('reason') or ''}")
        parts.append(
            _tag(
                "rect",
                f"<title>{said}</title>",
                cls="bar",
                x=x(start),
                y=cy - 7,
                width=max(2.0, x(end) - x(start)),
                height=14,
                rx=3,
                fill=colour,
                fill_opacity=0.35,
                stroke=colour,
            )
        )
        count += 1
        for event in lane.get("events") or ():
            if event.get("at") is None:
                continue
            warn = event.get("type") == "Warning"
            said = f"{_clock(event['at'])} {_e(event.get('reason'))}: {_e(event.get('message'))}"
            parts.append(
                _tag(
                    "circle",
                    f"<title>{said}</title>",
                    cls="pt failed" if warn else "pt",
                    cx=x(event["at"]),
                    cy=cy,
                    r=4,
                    fill=FAILED if warn else colour,
                    stroke="#fff",
                )
            )
            count += 1
        parts.append("</g>")
    for tick in _ticks(x0, x1, 8):
        parts.append(
            _tag("text", _clock(tick), cls="axis", x=x(tick), y=height - 10, text_anchor="middle")
        )
    parts.append("</svg>")
    return _figure(
        chart_id, "Rollouts over time (marks: Events; red: Warnings)", count, "".join(parts)
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _level(score: float | None, judged: str | None, warning: float) -> str:
    """The health loop's verdict on a feature's drift, not its estimate's: an estimate over
    the threshold on a few rows is no evidence of drift (the loop stays Healthy)."""
    if score is None:
        return '<span class="lvl unknown">not measured</span>'
    if judged == "threshold":
        return '<span class="lvl bad">over threshold</span>'
    if judged == "warning":
        return '<span class="lvl warn">warning</span>'
    if judged is None:
        return '<span class="lvl unknown">not judged (too few rows)</span>'
    if score >= warning:
        return '<span class="lvl unknown">not surely drifted</span>'
    return '<span class="lvl ok">no drift</span>'


def _last(series: Mapping[str, Sequence[Sequence[float]]]) -> str:
    """The last point of each revision's series, as ``a1 0.5%, c2 0%``."""
    return ", ".join(f"{rev} {percent(pts[-1][1])}" for rev, pts in series.items() if pts) or "-"


def _worse(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _features(data: Mapping[str, Any], colours: Colours, x_range: tuple[float, float]) -> str:
    features = data["features"]
    t = data["thresholds"]
    if not features:
        return (
            '<p class="missing">No reference profile (spec.monitoring.reference): '
            "no distribution or drift to draw.</p>"
        )
    warning, threshold, method = t["driftWarning"], t["driftThreshold"], t["driftMethod"]
    rows = [
        [
            f'<a href="#feature-{_e(f["name"])}">{_e(f["name"])}</a>',
            _e(f["type"]),
            "-" if f["driftPeak"] is None else f"{f['driftPeak']:.3f}",
            "-" if f["drift"] is None else f"{f['drift']:.3f}",
            _level(_worse(f["driftPeak"], f["drift"]), f.get("driftLevel"), warning),
            _e(_last(f["missingRate"])),
            _e(_last(f["outOfRangeRate"])),
        ]
        for f in features
    ]
    head = [
        "feature",
        "type",
        f"{method} (worst window)",
        f"{method} (range)",
        "level",
        "missing (last)",
        "out of range (last)",
    ]
    out = [
        f"<p>Drift is {_e(method)} between the reference's bins and the live counts in the same "
        f"bins (warning {warning:g}, threshold {threshold:g}); the table shows the worst "
        "revision's in its worst window and over the whole range, features sorted by the "
        "worst window (a drift in part of the range fades in the whole range's counts).</p>",
        _table(head, rows, "features"),
    ]
    lines = [(warning, "warning"), (threshold, "threshold")]
    for f in features:
        name = f["name"]
        live = {rev: v["proportions"] for rev, v in f["live"].items()}
        quality = {
            **{rev: pts for rev, pts in f["outOfRangeRate"].items()},
            **{f"{rev}{DASHED}": pts for rev, pts in f["missingRate"].items()},
        }
        out += [
            f'<div class="feature" id="feature-{_e(name)}"><h3>{_e(name)}</h3><div class="row">',
            bar_chart(
                f"feature-{name}-distribution",
                "reference vs live (whole range)",
                f["slots"],
                f["reference"]["proportions"],
                live,
                colours,
            ),
            line_chart(
                f"feature-{name}-drift",
                f"{method} over time",
                f["driftOverTime"],
                colours,
                x_range,
                _number,
                lines,
            ),
            line_chart(
                f"feature-{name}-quality",
                "out of range (solid), missing (dashed)",
                quality,
                colours,
                x_range,
                percent,
            ),
            "</div></div>",
        ]
    return "".join(out)


def _predictions(data: Mapping[str, Any], colours: Colours, x_range: tuple[float, float]) -> str:
    p = data["predictions"]
    out = ['<div class="row">']
    if p.get("slots"):
        out.append(
            bar_chart(
                "predictions-distribution",
                f"Predictions ({p.get('type')}): reference vs live",
                p["slots"],
                p.get("reference"),
                p.get("live", {}),
                colours,
            )
        )
    out.append(
        line_chart("predictions-mean", "Prediction mean over time", p["mean"], colours, x_range)
    )
    out.append(
        line_chart(
            "predictions-std", "Prediction standard deviation over time", p["std"], colours, x_range
        )
    )
    out.append("</div>")
    return "".join(out)


def _operations(data: Mapping[str, Any], colours: Colours, x_range: tuple[float, float]) -> str:
    ops = data["operations"]
    t = data["thresholds"]
    return (
        '<div class="row">'
        + line_chart(
            "operations-rate",
            "Requests per second",
            ops["requestRate"],
            colours,
            x_range,
            lambda v: f"{v:.3g}/s",
        )
        + line_chart(
            "operations-errors",
            "Error rate",
            ops["errorRate"],
            colours,
            x_range,
            percent,
            [(t["maxErrorRate"], "SLO")],
        )
        + line_chart(
            "operations-p95",
            "p95 latency",
            ops["latencyP95"],
            colours,
            x_range,
            duration,
            [(t["maxLatencyP95"], "SLO")],
        )
        + "</div>"
    )


_GATE_FORMAT: dict[str, Format] = {
    "errorRate": percent,
    "latencyP95": duration,
    "agreement": percent,
}


def _retried(previous: Mapping[str, Any] | None) -> str:
    """What a retried candidate's earlier attempt ended with."""
    if not previous:
        return ""
    return f"retried after {previous.get('outcome')} at {_when(previous.get('at'))}"


def _rollouts(data: Mapping[str, Any], colours: Colours, x_range: tuple[float, float]) -> str:
    rollouts = data["rollouts"]
    out = [timeline("rollouts-timeline", rollouts, colours, x_range)]
    rows = [
        [
            _swatch(colours(r["revision"])) + _e(r["revision"]),
            _e(r.get("modelVersion") or "-"),
            _e(r.get("change") or "-"),
            _e(r.get("role") or ""),
            _e(r.get("outcome") or "in progress"),
            _e(r.get("reason") or _retried(r.get("previousAttempt"))),
            _e(_when(r.get("ended"))),
        ]
        for r in rollouts
    ]
    out.append(
        _table(
            ["revision", "model version", "change", "now", "outcome", "reason", "at"],
            rows,
            "revisions",
        )
    )
    for r in rollouts:
        if not r["gates"]:
            continue
        outcome = r.get("outcome") or "in progress"
        title = f"Gates of {r['revision']} ({r.get('change')}, {outcome})"
        out.append(f'<h3>{_e(title)}</h3><div class="row">')
        for name, gate in r["gates"].items():
            fmt = _GATE_FORMAT.get(name, _number)
            out.append(
                line_chart(
                    f"gate-{r['revision']}-{name}",
                    f"{name} (red: failed the gate)",
                    {r["revision"]: gate["values"]},
                    colours,
                    x_range,
                    fmt,
                    [(gate["threshold"], "gate")] if gate["threshold"] is not None else [],
                )
            )
        out.append("</div>")
    events = data["events"]
    if events:
        rows = [
            [
                _e(_when(e["at"])),
                f'<span class="{"warn" if e["type"] == "Warning" else ""}">{_e(e["type"])}</span>',
                _e(e["reason"]),
                _e(e["message"]),
            ]
            for e in events
        ]
        out.append("<h3>Events</h3>" + _table(["at", "type", "reason", "message"], rows, "events"))
    return "".join(out)


def _ground_truth(data: Mapping[str, Any], colours: Colours, x_range: tuple[float, float]) -> str:
    truth = data["groundTruth"]
    if not truth["available"]:
        return f'<p class="missing" data-chart-free="no-labels">{_e(truth["note"])}</p>'
    rows = [
        [
            _e(rev),
            _e(v["labels"]),
            _e("-" if v["accuracy"] is None else percent(v["accuracy"])),
            _e("-" if v["mae"] is None else f"{v['mae']:.4g}"),
            _e("-" if v["labelDelayP50"] is None else duration(v["labelDelayP50"])),
        ]
        for rev, v in truth["totals"].items()
    ]
    over = truth["overTime"]
    return (
        _table(["revision", "labels joined", "accuracy", "MAE", "label delay p50"], rows)
        + '<div class="row">'
        + line_chart(
            "truth-accuracy",
            f"Accuracy over time (labels arrived{_labels_window(data['range'])})",
            over["accuracy"],
            colours,
            x_range,
            percent,
        )
        + line_chart(
            "truth-labels",
            "Labels per second",
            over["labels"],
            colours,
            x_range,
            lambda v: f"{v:.3g}/s",
        )
        + "</div>"
    )


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0}
body{color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px}
header .meta{color:#c9d1e0;font-size:13px}
nav{padding:8px 28px;background:#eef1f5;position:sticky;top:0}
nav a{margin-right:16px;color:#1f4f8f;text-decoration:none}
main{padding:4px 28px 40px}
section{margin-top:18px}
h2{border-bottom:2px solid #dfe3ea;padding-bottom:4px}
h3{margin:14px 0 4px;font-size:15px}
.row{display:flex;flex-wrap:wrap;gap:10px}
figure.chart{margin:0;background:#fff;border:1px solid #e2e6ec;border-radius:6px;padding:6px}
figcaption{font-size:12.5px;font-weight:600;margin:0 0 2px 4px}
.note{font-weight:400;color:#6b7280}
svg text{font-size:10.5px;fill:#4b5563}
.grid{stroke:#eceff3}
.threshold{stroke:#b91c1c;stroke-dasharray:5 4}
.threshold-label{fill:#b91c1c}
.empty{text-anchor:middle;fill:#9aa3af;font-size:13px}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff}
th,td{border:1px solid #e2e6ec;padding:3px 8px;text-align:left;font-size:13px}
th{background:#f1f3f6}
.lvl.bad,.warn{color:#b91c1c;font-weight:600}
.lvl.warn{color:#b45309}
.lvl.ok{color:#15803d}
.lvl.unknown{color:#6b7280}
.missing{background:#fff7e6;border:1px solid #f3d9a4;padding:10px 14px;border-radius:6px}
.legend span{display:inline-block;margin-right:14px;cursor:pointer}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px}
.swatch{margin-right:5px;vertical-align:-1px}
.hidden-rev{display:none}
"""

SCRIPT = """
document.querySelectorAll('.legend [data-revision]').forEach(function (item) {
  item.addEventListener('click', function () {
    var rev = item.getAttribute('data-revision');
    var hide = !item.classList.contains('off');
    item.classList.toggle('off', hide);
    item.style.opacity = hide ? 0.35 : 1;
    document.querySelectorAll('svg g.rev').forEach(function (g) {
      if (g.getAttribute('data-revision') === rev) g.classList.toggle('hidden-rev', hide);
    });
  });
});
"""


def _points(span: Mapping[str, Any]) -> str:
    """What one point of the charts covers."""
    if span["step"] <= 0:  # the direct source: one reading of counters, no windows
        return "one point per revision: counters since each sidecar started"
    return f"each point: a {duration(span['window'])} window every {duration(span['step'])}"


def _labels_window(span: Mapping[str, Any]) -> str:
    """The window of the ground-truth charts, where it is not the other charts' one."""
    labels = span.get("labelsWindow", span["window"])
    return "" if span["step"] <= 0 or labels == span["window"] else f", {duration(labels)} windows"


def _header(data: Mapping[str, Any]) -> str:
    md = data["modelDeployment"]
    span = data["range"]
    facts = [
        f"model {md['model']} version {md['version']}",
        f"phase {md['phase'] or '-'}",
        f"stable {md['stable'] or '-'}",
        f"candidate {md['candidate'] or '-'}",
    ]
    reading = [
        f"{_when(span['start'])} to {_when(span['end'])}",
        _points(span),
        f"source {data['source']}",
        f"generated {_when(data['generatedAt'])}",
    ]
    name = f"{_e(md['name'])} <small>({_e(md['namespace'])})</small>"
    meta = _e(" · ".join(facts)) + "<br>" + _e(" · ".join(reading))
    return f'<header><h1>{name}</h1><div class="meta">{meta}</div></header>'


def render(data: Mapping[str, Any]) -> str:
    """The whole page for :func:`vigil.plugin.report.figures.build`'s numbers."""
    md = data["modelDeployment"]
    revisions = [r["revision"] for r in data["revisions"]]
    colours = Colours(revisions)
    x_range = (data["range"]["start"], data["range"]["end"])
    legend = "".join(
        f'<span data-revision="{_e(rev)}">{_swatch(colours(rev))}{_e(rev)}</span>'
        for rev in revisions
    )
    legend += f"<span>{_swatch(REFERENCE)}reference</span>"
    notes = "".join(f"<li>{_e(note)}</li>" for note in data["notes"])
    sections = [
        ("features", "Features", _features(data, colours, x_range)),
        ("predictions", "Predictions", _predictions(data, colours, x_range)),
        ("operations", "Operations", _operations(data, colours, x_range)),
        ("rollouts", "Rollouts", _rollouts(data, colours, x_range)),
        ("ground-truth", "Ground truth", _ground_truth(data, colours, x_range)),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>'
        for sid, title, content in sections
    )
    numbers = _json_for_html(data)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Vigil report: {_e(md['name'])} in {_e(md['namespace'])}</title>"
        f"<style>{CSS}</style></head><body>{_header(data)}"
        f'<nav>{nav}<span class="legend">{legend}</span></nav><main>'
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + body
        + f'</main><script type="application/json" id="report-numbers">{numbers}</script>'
        f"<script>{SCRIPT}</script></body></html>"
    )


def _json_for_html(data: Mapping[str, Any]) -> str:
    """The numbers inside the page too (no message can end the block or hide the page)."""
    # Every <, > and & as a JSON escape: no "</script>", "<!--" or "<script" can change how
    # the HTML parser reads the block (an open "<!--<script>" swallowed the rest of the page).
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
