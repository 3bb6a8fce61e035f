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
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vigil.common.times import parse_time

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


def _duration_seconds(text: Any, default: float) -> float:
    if isinstance(text, int | float):
        return float(text)
    if not isinstance(text, str) or not text:
        return default
    from vigil.core.rollout import parse_duration

    try:
        return parse_duration(text.strip(), default)
    except ValueError:
        return default


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"


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
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


_ANSI = re.compile(r"\033\[[0-9;]*m")


def _clip(text: str, width: int = WIDTH) -> str:
    """Cut to ``width`` visible columns (colour codes take none; a cut line loses them)."""
    if len(_ANSI.sub("", text)) <= width:
        return text
    plain = _ANSI.sub("", text)
    return plain[: width - 1] + "…"


def _step_label(step: Mapping[str, Any]) -> str:
    if "validate" in step:
        return "validate (golden set)"
    if "shadow" in step:
        return f"shadow {_get(step, 'shadow', 'percent', default=100)}%"
    if "canary" in step:
        return f"canary {_get(step, 'canary', 'weight', default='?')}%"
    if "pause" in step:
        duration = _get(step, "pause", "duration")
        return f"pause {duration}" if duration else "pause (until resumed)"
    return "?"


def _decimals(value: float) -> str:
    return f"{value:.3f}"


def _general(value: float) -> str:
    return f"{value:g}"


#: How each rollout gate (vigil.core.rollout.gates) reads: label, value and threshold
#: formats, and the side of the threshold that passes.
_GATES: dict[str, tuple[str, Callable[[float], str], Callable[[float], str], str]] = {
    "errorRate": ("error rate", _percent, _percent, "<="),
    "latencyP95": ("p95 latency", _ms, _ms, "<="),
    "agreement": ("agreement", _decimals, _general, ">="),
    "predictionShift": ("prediction shift", _decimals, _general, "<="),
    "inputDrift": ("input drift", _decimals, _general, "<="),
    "goldenSet": ("golden set", _decimals, _general, ">="),
}


def _gate_line(gate: Mapping[str, Any], style: _Style) -> str:
    """One gate of ``status.candidate.gates``: its value beside its threshold."""
    name = str(gate.get("name", "?"))
    label, value_text, threshold_text, side = _GATES.get(name, (name, _general, _general, ""))
    value, threshold = gate.get("value"), gate.get("threshold")
    return _gate_row(
        label,
        "-" if value is None else value_text(value),
        "-" if threshold is None else f"{side} {threshold_text(threshold)}".strip(),
        gate.get("passed"),
        style,
    )


def _gate_row(name: str, value: str, threshold: str, ok: bool | None, style: _Style) -> str:
    verdict = "-" if ok is None else ("ok" if ok else "FAIL")
    colour = "dim" if ok is None else ("green" if ok else "red")
    return f"  {name:<26}{value:>12}   {threshold:<14}{style(verdict, colour)}"


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
    spec = md.get("spec") or {}
    status = md.get("status") or {}
    meta = md.get("metadata") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    lines: list[str] = []
    add = lines.append

    phase = status.get("phase", "Pending")
    ready = conditions.get("Ready") or {}
    add(style(f"{meta.get('name', '?')}", "bold") + f"  (namespace {meta.get('namespace', '?')})")
    add(
        f"Phase:    {style(phase, _PHASE_COLOUR.get(phase, 'dim'))}"
        f"   Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}"
    )
    if ready.get("message"):
        add(_clip(f"          {ready['message']}"))
    model = spec.get("model") or {}
    add(
        f"Model:    {model.get('name', meta.get('name', '?'))} version {model.get('version', '?')}"
        f"   replicas {spec.get('replicas', 1)}"
    )
    if status.get("observedGeneration") != meta.get("generation"):
        add(
            style(
                f"          (status describes generation {status.get('observedGeneration')},"
                f" spec is at {meta.get('generation')})",
                "yellow",
            )
        )

    # Revisions.
    add("")
    add(style("Revisions", "bold"))
    stable = status.get("stable") or {}
    if stable:
        add(
            _clip(
                f"  stable     {stable.get('revision', '?'):<8}"
                f" v{stable.get('modelVersion', '?'):<6}"
                f" {stable.get('readyReplicas', 0)}/{stable.get('replicas', 0)} ready"
                f"   since {_age(stable.get('since'), now)}"
            )
        )
    else:
        add("  stable     (none yet)")
    candidate = status.get("candidate") or {}
    if candidate:
        change = candidate.get("change", "?")
        steps = _get(spec, "rollout", change, "steps", default=[]) or []
        add(
            _clip(
                f"  candidate  {candidate.get('revision', '?'):<8}"
                f" v{candidate.get('modelVersion', '?'):<6}"
                f" {change}   failed checks {candidate.get('failedChecks', 0)}"
                f"/{_get(spec, 'rollout', 'analysis', 'failureLimit', default=2)}"
            )
        )
        for label, key in (("features added", "featuresAdded"), ("dropped", "featuresDropped")):
            if candidate.get(key):
                add(_clip(f"  {label}: {', '.join(candidate[key])}"))
        if steps:
            add("")
            add(style(f"Steps ({change})", "bold"))
            current = int(candidate.get("step", 0))
            for index, step in enumerate(steps):
                if index < current:
                    mark = style("✔", "green")
                elif index == current:
                    mark = style("►", "blue")
                else:
                    mark = style("·", "dim")
                add(f"  {mark} {index + 1} {_step_label(step)}")
        weight = int(candidate.get("weight", 0) or 0)
        shadow = int(candidate.get("shadowPercent", 0) or 0)
        add("")
        add(style("Traffic", "bold"))
        add(f"  stable {100 - weight:>3}% {_bar((100 - weight) / 100)} candidate {weight}%")
        if shadow:
            add(f"  shadow: {shadow}% of live requests copied to the candidate")

        gates = candidate.get("gates") or []
        if gates:
            checked = candidate.get("lastAnalysisAt")
            when = f" {_age(checked, now)} ago" if checked else ""
            add("")
            add(style("Gates", "bold") + f" (last check{when})")
            add(f"  {'gate':<26}{'measured':>12}   {'threshold':<14}")
            for gate in gates:
                add(_gate_line(gate, style))

    # Health.
    health = status.get("health") or {}
    slo = _get(spec, "monitoring", "slo", default={}) or {}
    drift_spec = _get(spec, "monitoring", "drift", default={}) or {}
    add("")
    stale = " (stale)" if health.get("stale") else ""
    add(
        style(f"Health{stale}", "bold") + f"  window {health.get('window', '-')},"
        f" {health.get('requests', 0)} requests, verdict {health.get('verdict', '-')}"
    )
    add(f"  {'figure':<26}{'measured':>12}   {'threshold':<14}")
    error_rate = health.get("errorRate")
    max_error = float(slo.get("maxErrorRate", 0.01))
    add(
        _gate_row(
            "error rate",
            _percent(error_rate),
            f"<= {_percent(max_error)}",
            None if error_rate is None else error_rate <= max_error,
            style,
        )
    )
    p95 = health.get("latencyP95")
    max_p95 = _duration_seconds(slo.get("maxLatencyP95"), 0.25)
    add(
        _gate_row(
            "p95 latency",
            _ms(p95),
            f"<= {_ms(max_p95)}",
            None if p95 is None else p95 <= max_p95,
            style,
        )
    )
    drift = health.get("drift") or {}
    threshold = float(drift_spec.get("threshold", 0.2))
    score = drift.get("score")
    add(
        _gate_row(
            f"drift ({drift.get('method', drift_spec.get('method', 'psi'))})",
            "-" if score is None else f"{score:.3f}",
            f"< {threshold:g}",
            None if score is None else score < threshold,
            style,
        )
    )
    agreement = health.get("agreement")
    min_agreement = float(_get(spec, "rollout", "analysis", "minAgreement", default=0.95))
    if agreement is not None:
        add(
            _gate_row(
                "shadow agreement",
                f"{agreement:.3f}",
                f">= {min_agreement:g}",
                agreement >= min_agreement,
                style,
            )
        )
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

    # Conditions.
    add("")
    add(style("Conditions", "bold"))
    for kind in ("Ready", "Progressing", "Healthy", "DriftDetected", "MetricsAvailable"):
        item = conditions.get(kind)
        if not item:
            continue
        head = f"  {kind:<17}{item.get('status', '?'):<8}{item.get('reason', '')}"
        add(head)
        # Messages hold the measured values: wrap them, never cut them.
        for line in textwrap.wrap(item.get("message", ""), WIDTH - 6):
            add(f"      {line}")

    # Events.
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
                _clip(
                    f"  {_age(at, now):>4}  "
                    f"{style(f'{kind:<8}', 'red' if kind == 'Warning' else 'dim')}"
                    f"{event.get('reason', ''):<17} {event.get('message', '')}"
                )
            )

    # History.
    history = status.get("history") or []
    if history:
        add("")
        add(style("History (newest first)", "bold"))
        for entry in history[:6]:
            outcome = entry.get("outcome", "?")
            colour = "red" if outcome in ("RolledBack", "Failed") else "green"
            add(
                _clip(
                    f"  {entry.get('revision', '?'):<8} v{entry.get('modelVersion', '?'):<5}"
                    f" {entry.get('change', '?'):<12}{style(f'{outcome:<11}', colour)}"
                    f"{_age(entry.get('at'), now):>5}"
                )
            )
            if entry.get("reason"):
                add(_clip(f"           {entry['reason']}"))
    return "\n".join(line.rstrip() for line in lines)
