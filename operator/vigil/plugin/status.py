"""``kubectl vigil status NAME``: one screen on a ModelDeployment.

In the spirit of ``kubectl argo rollouts get rollout``: the stable and
candidate revisions, step progress, the traffic split, the last check's
gates and every health figure beside its threshold, per-feature drift as
small bars, conditions, the last Events and the history. :func:`render` is
pure (object in, text out) so it is tested on fixtures; fits 80 columns;
colour is optional.
"""

from __future__ import annotations

import datetime
import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.common import readable
from vigil.common.objects import Body, body, section
from vigil.common.times import parse_time
from vigil.core.health import format_window
from vigil.core.spec import (
    HealthPolicy,
    RolloutSpec,
    Step,
    monitoring_settings,
    outline_spec,
    parse_rollout,
)

WIDTH = 80
BAR = 20

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}
_PHASE_COLOUR = {
    "Healthy": "green",
    "Progressing": "blue",
    "Pending": "yellow",
    "Degraded": "red",
    "RolledBack": "red",
    "Failed": "red",
}


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, name: str) -> str:
        if not self.colour or name not in _COLOURS:
            return text
        return f"\033[{_COLOURS[name]}m{text}\033[0m"


def _get(mapping: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    current: Any = mapping
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return default
        current = current[key]
    return current


def _percent(value: float | None, extra: int = 0) -> str:
    return "-" if value is None else f"{value * 100:.{1 + extra}f}%"


def _ms(value: float | None, extra: int = 0) -> str:
    return "-" if value is None else f"{value * 1000:.{extra}f}ms"


def _beside(value: float, limit: float | None, shown: Callable[[float, int], str]) -> str:
    """``value`` as ``shown`` writes it, with more digits while it reads as ``limit`` does:
    "1.0% <= 1.0% FAIL" would look like a wrong verdict."""
    text = shown(value, 0)
    for extra in range(1, 7):
        if limit is None or value == limit or text != shown(limit, extra - 1):
            break
        text = shown(value, extra)
    return text


def _bar(fraction: float, width: int = BAR) -> str:
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


def _age(at: Any, now: datetime.datetime) -> str:
    if not isinstance(at, str):
        return ""
    moment = parse_time(at)
    if moment is None:
        return at
    seconds = max(0, int((now - moment).total_seconds()))
    # Whole units, at least two of them: 119s, then 2m ... 119m, then 2h ... 47h, then 2d.
    unit, length = readable.time_unit(seconds, at_least=2)
    return f"{seconds // length}{unit}"


_ANSI = re.compile(r"\033\[[0-9;]*m")


def _clip(text: str, width: int = WIDTH) -> str:
    """Cut to ``width`` visible columns (colour codes take none; a cut line loses them)."""
    if len(_ANSI.sub("", text)) <= width:
        return text
    plain = _ANSI.sub("", text)
    return plain[: width - 1] + "…"


def _step_label(step: Step) -> str:
    if step.kind == "validate":
        return "validate (golden set)"
    if step.kind == "pause":
        seconds = step.duration_seconds
        return f"pause {format_window(seconds)}" if seconds else "pause (until resumed)"
    return step.describe()


def _decimals(value: float, extra: int = 0) -> str:
    return f"{value:.{3 + extra}f}"


def _general(value: float, extra: int = 0) -> str:
    return f"{value:.{6 + extra}g}"


def _ms_or_open(value: float, extra: int = 0) -> str:
    return "inf" if math.isinf(value) else _ms(value, extra)


#: How each rollout gate (vigil.core.judges) reads: label, value and threshold formats,
#: and the side of the threshold that passes.
_GATES: dict[str, tuple[str, Callable[[float, int], str], Callable[[float], str], str]] = {
    "errorRate": ("error rate", _percent, _percent, "<="),
    "latencyP95": ("p95 latency", _ms_or_open, _ms, "<="),
    "latencyVsStable": ("P(slower than stable)", _decimals, _general, "<="),
    "agreement": ("agreement", _decimals, _general, ">="),
    "predictionShift": ("prediction shift", _decimals, _general, "<="),
    "inputDrift": ("input drift", _decimals, _general, "<="),
    "goldenSet": ("golden set", _decimals, _general, ">="),
    # Accuracy (at least) or MAE (at most): the side depends on the model's task.
    "realizedPerformance": ("realized performance", _decimals, _decimals, "vs"),
    "performanceVsStable": ("performance vs stable", _decimals, _decimals, "vs"),
}


def _gate_line(gate: Mapping[str, Any], style: _Style) -> str:
    """One gate of ``status.candidate.gates``: its value and interval beside its threshold,
    and its verdict (undecided: how many more samples would decide it)."""
    name = str(gate.get("name", "?"))
    label, value_text, threshold_text, side = _GATES.get(name, (name, _general, _general, ""))
    value, threshold = gate.get("value"), gate.get("threshold")
    low, high = gate.get("low"), gate.get("high")
    interval = (
        f"[{value_text(low)}, {value_text(high if high is not None else math.inf)}]"
        if low is not None
        else ""
    )
    words, colour = _verdict(gate)
    measured = "-" if value is None else _beside(value, threshold, value_text)
    limit = "-" if threshold is None else f"{side} {threshold_text(threshold)}".strip()
    return f"  {label:<21} {measured:>7} {interval:<16} {limit:<9} {style(words, colour)}"


def _verdict(gate: Mapping[str, Any]) -> tuple[str, str]:
    """(words, colour): pass, FAIL, or undecided with the samples still needed."""
    verdict = gate.get("verdict")
    if verdict is None:  # written before verdicts: passed means not failed
        passed = gate.get("passed")
        if passed is None:
            return "-", "dim"
        return ("ok", "green") if passed else ("FAIL", "red")
    if verdict == "fail":
        return "FAIL", "red"
    if verdict == "pass":
        return "pass", "green"
    needed = gate.get("needed")
    return ("undecided" + (f", {needed} more" if needed is not None else "")), "yellow"


def _gate_row(name: str, value: str, threshold: str, ok: bool | None, style: _Style) -> str:
    verdict = "-" if ok is None else ("ok" if ok else "FAIL")
    colour = "dim" if ok is None else ("green" if ok else "red")
    return f"  {name:<26}{value:>12}   {threshold:<14}{style(verdict, colour)}"


@dataclass(frozen=True)
class _Limits:
    """What the view compares figures with: the spec's thresholds (defaults if unreadable)."""

    health: HealthPolicy
    failure_limit: int
    min_agreement: float
    rollout: RolloutSpec


def _limits(spec: Mapping[str, Any]) -> _Limits:
    try:
        health = monitoring_settings(spec).policy
    except ValueError:
        health = HealthPolicy()
    rollout = parse_rollout(section(spec, "rollout"))
    if rollout.problem:
        rollout = RolloutSpec()
    return _Limits(health, rollout.analysis.failure_limit, rollout.analysis.min_agreement, rollout)


def render(
    md: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    colour: bool = False,
    now: datetime.datetime | None = None,
) -> str:
    """The status screen of one ModelDeployment."""
    style = _Style(colour)
    now = now or datetime.datetime.now(datetime.UTC)
    view = body(md)
    limits = _limits(view.spec)
    lines = _header(view, style)
    lines += _revisions(view.status, limits, style, now)
    lines += _health(section(view.status, "health"), limits, style)
    lines += _conditions(view.status, style)
    lines += _events(events, style, now)
    lines += _history(view.status, style, now)
    # Every line within the width: names, messages and reasons run to any length.
    return "\n".join(_clip(line).rstrip() for line in lines)


def _header(view: Body, style: _Style) -> list[str]:
    """Name, phase and Ready, model and replicas, and a spec status does not describe yet."""
    spec, status, meta = view.spec, view.status, view.meta.raw
    ready = _condition(status, "Ready")
    phase = status.get("phase", "Pending")
    lines = [
        style(f"{meta.get('name', '?')}", "bold") + f"  (namespace {meta.get('namespace', '?')})",
        f"Phase:    {style(phase, _PHASE_COLOUR.get(phase, 'dim'))}"
        f"   Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}",
    ]
    if ready.get("message"):
        lines.append(f"          {ready['message']}")
    outline = outline_spec(str(meta.get("name", "?")), spec)
    lines.append(
        f"Model:    {outline.model_name} version {outline.model_version or '?'}"
        f"   replicas {outline.replicas}"
    )
    if status.get("observedGeneration") != meta.get("generation"):
        lines.append(
            style(
                f"          (status describes generation {status.get('observedGeneration')},"
                f" spec is at {meta.get('generation')})",
                "yellow",
            )
        )
    return lines


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _revisions(
    status: Mapping[str, Any], limits: _Limits, style: _Style, now: datetime.datetime
) -> list[str]:
    """The stable and the candidate; with a candidate its steps, traffic and last gates."""
    lines = ["", style("Revisions", "bold")]
    stable = section(status, "stable")
    if stable:
        lines.append(
            f"  stable     {stable.get('revision', '?'):<8}"
            f" v{stable.get('modelVersion', '?'):<6}"
            f" {stable.get('readyReplicas', 0)}/{stable.get('replicas', 0)} ready"
            f"   since {_age(stable.get('since'), now)}"
        )
    else:
        lines.append("  stable     (none yet)")
    candidate = section(status, "candidate")
    if not candidate:
        return lines
    change = candidate.get("change", "?")
    steps = limits.rollout.steps_for(str(change))
    checks = f"failed checks {candidate.get('failedChecks', 0)}/{limits.failure_limit}"
    head = (
        f"  candidate  {candidate.get('revision', '?'):<8}"
        f" v{candidate.get('modelVersion', '?'):<6} {change}   "
    )
    ended = candidate.get("outcome")
    if ended:  # rolled back or failed: no rollout runs, the stable serves alone
        reason = f" ({candidate['reason']})" if candidate.get("reason") else ""
        lines.append(head + style(f"{ended}{reason}", "red"))
        lines.append(f"             {_ended_at(candidate, steps)}{checks}")
    else:
        lines.append(head + checks)
    for label, key in (("features added", "featuresAdded"), ("dropped", "featuresDropped")):
        if candidate.get(key):
            lines.append(f"  {label}: {', '.join(candidate[key])}")
    lines += _steps(candidate, steps, style)
    if not ended:
        lines += _traffic(candidate, style)
    lines += _gates(candidate, style, now)
    return lines


def _ended_at(candidate: Mapping[str, Any], steps: Sequence[Step]) -> str:
    """Where an ended attempt stopped ("" past its steps: in the bake after promotion)."""
    index = int(candidate.get("step", 0))
    if not 0 <= index < len(steps):
        return ""
    return f"ended at step {index + 1}/{len(steps)} ({_step_label(steps[index])}), "


def _steps(candidate: Mapping[str, Any], steps: Sequence[Step], style: _Style) -> list[str]:
    """Passed, current and to come; an ended attempt's last step is marked ✘, not current."""
    if not steps:
        return []
    lines = ["", style(f"Steps ({candidate.get('change', '?')})", "bold")]
    current = int(candidate.get("step", 0))
    here = style("✘", "red") if candidate.get("outcome") else style("►", "blue")
    for index, step in enumerate(steps):
        if index < current:
            mark = style("✔", "green")
        elif index == current:
            mark = here
        else:
            mark = style("·", "dim")
        lines.append(f"  {mark} {index + 1} {_step_label(step)}")
    return lines


def _traffic(candidate: Mapping[str, Any], style: _Style) -> list[str]:
    weight = int(candidate.get("weight", 0) or 0)
    shadow = int(candidate.get("shadowPercent", 0) or 0)
    lines = [
        "",
        style("Traffic", "bold"),
        f"  stable {100 - weight:>3}% {_bar((100 - weight) / 100)} candidate {weight}%",
    ]
    if shadow:
        lines.append(f"  shadow: {shadow}% of live requests copied to the candidate")
    return lines


def _gates(candidate: Mapping[str, Any], style: _Style, now: datetime.datetime) -> list[str]:
    gates = candidate.get("gates") or []
    if not gates:
        return []
    checked = candidate.get("lastAnalysisAt")
    when = f" {_age(checked, now)} ago" if checked else ""
    return [
        "",
        style("Gates", "bold") + f" (last check{when})",
        f"  {'gate':<21} {'value':>7} {'interval':<16} {'threshold':<9} verdict",
        *(_gate_line(gate, style) for gate in gates),
    ]


def _health(health: Mapping[str, Any], limits: _Limits, style: _Style) -> list[str]:
    """Every health figure beside its threshold, and drift by feature."""
    lines: list[str] = []
    add = lines.append
    add("")
    stale = " (stale)" if health.get("stale") else ""
    add(
        style(f"Health{stale}", "bold") + f"  window {health.get('window', '-')},"
        f" {health.get('requests', 0)} requests, verdict {health.get('verdict', '-')}"
    )
    add(f"  {'figure':<26}{'measured':>12}   {'threshold':<14}")
    slos = (
        ("error rate", health.get("errorRate"), limits.health.max_error_rate, _percent),
        ("p95 latency", health.get("latencyP95"), limits.health.max_latency_p95, _ms),
    )
    for label, value, limit, shown in slos:
        ok = None if value is None else value <= limit
        measured = shown(None) if value is None else _beside(value, limit, shown)
        add(_gate_row(label, measured, f"<= {shown(limit)}", ok, style))
    drift = health.get("drift") or {}
    threshold = limits.health.drift_threshold
    score = drift.get("score")
    add(
        _gate_row(
            f"drift ({drift.get('method', limits.health.drift_method)})",
            "-" if score is None else _beside(score, threshold, _decimals),
            f"< {threshold:g}",
            None if score is None else score < threshold,
            style,
        )
    )
    agreement = health.get("agreement")
    if agreement is not None:
        add(
            _gate_row(
                "shadow agreement",
                _beside(agreement, limits.min_agreement, _decimals),
                f">= {limits.min_agreement:g}",
                agreement >= limits.min_agreement,
                style,
            )
        )
    lines += _realized(health.get("performance") or {}, limits, style)
    prediction = health.get("prediction") or {}
    if prediction:
        add(
            f"  {'prediction mean / std':<26}{prediction.get('mean', 0):>12.3f}"
            f" / {prediction.get('std', 0):.3f}"
        )
    features = drift.get("features") or {}
    if features:
        add("")
        add(
            style(
                f"Drift by feature ({drift.get('method', 'psi')}, threshold {threshold:g})", "bold"
            )
        )
        scale = max(threshold * 2, max(features.values()))
        for name, value in sorted(features.items(), key=lambda item: -item[1])[:12]:
            colour = "red" if value >= threshold else "green"
            add(f"  {name[:24]:<24} {value:6.3f} {style(_bar(value / scale), colour)}")
        if len(features) > 12:
            add(style(f"  ... {len(features) - 12} more", "dim"))
    return lines


def _realized(performance: Mapping[str, Any], limits: _Limits, style: _Style) -> list[str]:
    """Realized performance from labels beside its threshold, labels and their delay."""
    if not performance:
        return []
    limit = performance.get("threshold")
    rows = []
    for label, key, word, better in (
        ("realized accuracy", "accuracy", ">=", lambda v, t: v >= t),
        ("realized MAE", "mae", "<=", lambda v, t: v <= t),
    ):
        value = performance.get(key)
        if value is None:
            continue
        shown = f"{word} {limit:.4g}" if limit is not None else "-"
        rows.append(
            _gate_row(
                label,
                _beside(value, limit, _decimals),
                shown,
                None if limit is None else better(value, limit),
                style,
            )
        )
    baseline = performance.get("baseline")
    if baseline is not None:
        rows.append(f"  {'baseline (validation)':<26}{baseline:>12.3f}")
    need = limits.health.performance.min_labels
    labels = performance.get("labels", 0)
    rows.append(_gate_row("labels joined", f"{labels}", f">= {need}", labels >= need, style))
    delays = [performance.get("labelDelayP50"), performance.get("labelDelayP95")]
    if all(delay is not None for delay in delays):
        rows.append(
            f"  {'label delay p50 / p95':<26}"
            f"{readable.duration(delays[0]):>12} / {readable.duration(delays[1])}"
        )
    not_joined = performance.get("notJoined") or {}
    if not_joined:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(not_joined.items()))
        rows.append(f"  {'labels not joined':<26}{listed}")
    return rows


def _conditions(status: Mapping[str, Any], style: _Style) -> list[str]:
    """Each condition with its reason; messages hold the measured values: wrapped, never cut."""
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    lines = ["", style("Conditions", "bold")]
    add = lines.append
    for kind in (
        "Ready",
        "Progressing",
        "Healthy",
        "DriftDetected",
        "PerformanceDegraded",
        "MetricsAvailable",
    ):
        item = conditions.get(kind)
        if not item:
            continue
        head = f"  {kind + ' ':<17}{item.get('status', '?'):<8}{item.get('reason', '')}"
        add(head)
        for line in textwrap.wrap(item.get("message", ""), WIDTH - 6):
            add(f"      {line}")
    return lines


def _events(
    events: Sequence[Mapping[str, Any]], style: _Style, now: datetime.datetime
) -> list[str]:
    """The last six Events, oldest first."""
    lines: list[str] = []
    add = lines.append
    if events:
        add("")
        add(style("Events (newest last)", "bold"))
        ordered = sorted(
            events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")
        )
        for event in ordered[-6:]:
            at = event.get("lastTimestamp") or event.get("eventTime")
            kind = event.get("type", "Normal")
            add(
                f"  {_age(at, now):>4}  "
                f"{style(f'{kind:<8}', 'red' if kind == 'Warning' else 'dim')}"
                f"{event.get('reason', ''):<17} {event.get('message', '')}"
            )
    return lines


def _history(status: Mapping[str, Any], style: _Style, now: datetime.datetime) -> list[str]:
    """The last six history entries, newest first, each with its reason."""
    lines: list[str] = []
    add = lines.append
    history = status.get("history") or []
    if history:
        add("")
        add(style("History (newest first)", "bold"))
        for entry in history[:6]:
            outcome = entry.get("outcome", "?")
            colour = "red" if outcome in ("RolledBack", "Failed") else "green"
            add(
                f"  {entry.get('revision', '?'):<8} v{entry.get('modelVersion', '?'):<5}"
                f" {entry.get('change', '?'):<12}{style(f'{outcome:<11}', colour)}"
                f"{_age(entry.get('at'), now):>5}"
            )
            if entry.get("reason"):
                add(f"           {entry['reason']}")
    return lines
