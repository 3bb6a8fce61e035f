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
from vigil.core.spec import HealthPolicy, RolloutSpec, Step, outline_spec
from vigil.core.vocabulary import Outcome, Reason, Verdict
from vigil.plugin.reading import event_time, in_order, read_spec
from vigil.plugin.requests import parse_request
from vigil.plugin.terminal import escape_controls, escape_controls_in

WIDTH = 80
BAR = 20

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}
#: A history entry's outcome: an abort or a superseded attempt is no success.
_OUTCOME_COLOUR = {
    Outcome.ROLLED_BACK: "red",
    Outcome.FAILED: "red",
    Outcome.ABORTED: "yellow",
    Outcome.SUPERSEDED: "dim",
}
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


#: A figure's format: the text of ``value`` with ``extra`` more digits than its own.
_Shown = Callable[[float, int], str]

#: The most digits a figure or a limit gets beyond its format's own.
_MORE = 6
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _percent(value: float | None, extra: int = 0) -> str:
    return "-" if value is None else f"{value * 100:.{1 + extra}f}%"


def _ms(value: float | None, extra: int = 0) -> str:
    return "-" if value is None else readable.milliseconds(value, extra)


def _read_back(text: str) -> float | None:
    """The number a person reads in ``text`` (None: none, as in "inf")."""
    found = _NUMBER.match(text)
    return float(found.group()) if found else None


def _exact(limit: float, shown: _Shown) -> int:
    """The digits beyond ``shown``'s own that ``limit`` needs to read back as itself: a
    0.25% limit printed "0.2%" makes a right verdict look wrong. Six significant digits
    pass: a computed limit (stable + margin) has no shorter exact text."""
    whole = _read_back(shown(limit, _MORE))
    for extra in range(_MORE):
        read = _read_back(shown(limit, extra))
        if read is None or whole is None or math.isclose(read, whole, rel_tol=1e-5):
            return extra
    return _MORE


def _limit_text(limit: float, shown: _Shown) -> str:
    return shown(limit, _exact(limit, shown))


def _side(a: float, b: float) -> int:
    return (a > b) - (a < b)


def _beside(value: float, limit: float | None, shown: _Shown) -> str:
    """``value`` as ``shown`` writes it, with more digits while it reads as ``limit`` does or
    on the other side of it: "1.0% <= 1.0% FAIL" would look like a wrong verdict."""
    if limit is None or not math.isfinite(value) or not math.isfinite(limit):
        return shown(value, 0)
    exact = _exact(limit, shown)
    extra = exact if shown in _COARSE else 0
    said = _read_back(shown(limit, exact))
    text = shown(value, extra)
    for more in range(extra + 1, extra + _MORE + 1):
        read = _read_back(text)
        if read is None or said is None or _side(read, said) == _side(value, limit):
            break
        text = shown(value, more)
    return text


def _bar(fraction: float, width: int = BAR) -> str:
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


def _age(at: Any, now: datetime.datetime) -> str:
    if not isinstance(at, str):
        return ""
    moment = parse_time(at)
    return at if moment is None else _since(moment, now)


def _since(moment: datetime.datetime, now: datetime.datetime) -> str:
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
        # 0s is a timed pause (it ends at once), not one that waits for a resume.
        return "pause (until resumed)" if seconds is None else f"pause {format_window(seconds)}"
    return step.describe()


def _decimals(value: float, extra: int = 0) -> str:
    return f"{value:.{3 + extra}f}"


def _general(value: float, extra: int = 0) -> str:
    return f"{value:.{6 + extra}g}"


def _ms_or_open(value: float, extra: int = 0) -> str:
    return "inf" if math.isinf(value) else _ms(value, extra)


#: Formats coarser than the limits they are read against can be (a tenth of a percent,
#: whole milliseconds): their figures get the digits the limit needs (0.22% beside 0.25%).
_COARSE: tuple[_Shown, ...] = (_percent, _ms, _ms_or_open)


#: How each rollout gate (vigil.core.judges) reads: label, value and threshold formats,
#: and the side of the threshold that passes.
_GATES: dict[str, tuple[str, _Shown, _Shown, str]] = {
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
    interval = ""
    if low is not None:
        ends = (low, high if high is not None else math.inf)
        interval = f"[{', '.join(_beside(end, threshold, value_text) for end in ends)}]"
    words, colour = _verdict(gate)
    measured = "-" if value is None else _beside(value, threshold, value_text)
    limit = "-" if threshold is None else f"{side} {_limit_text(threshold, threshold_text)}".strip()
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


def _gate_row(
    name: str, value: str, threshold: str, ok: bool | None, style: _Style, undecided: str = "-"
) -> str:
    """``ok`` None: nothing judged (no threshold), or ``undecided``'s words (too few yet)."""
    verdict = undecided if ok is None else ("ok" if ok else "FAIL")
    colour = ("dim" if undecided == "-" else "yellow") if ok is None else ("green" if ok else "red")
    return f"  {name:<26}{value:>12}   {threshold:<14}{style(verdict, colour)}"


@dataclass(frozen=True)
class _Limits:
    """What the view compares figures with: the spec's thresholds (defaults if unreadable)."""

    health: HealthPolicy
    failure_limit: int
    min_agreement: float
    rollout: RolloutSpec
    #: The spec's sections that cannot be read (their defaults are shown).
    problems: tuple[str, ...] = ()


def _limits(spec: Mapping[str, Any]) -> _Limits:
    read = read_spec(spec)
    analysis = read.rollout.analysis
    return _Limits(
        read.policy, analysis.failure_limit, analysis.min_agreement, read.rollout, read.problems
    )


def render(
    md: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    colour: bool = False,
    now: datetime.datetime | None = None,
    events_unread: str = "",
) -> str:
    """The status screen of one ModelDeployment; ``events_unread``: why its Events could not
    be read (shown in their place)."""
    style = _Style(colour)
    now = now or datetime.datetime.now(datetime.UTC)
    # Whoever may write Events or annotations chooses this text: shown, never obeyed.
    md, events = escape_controls_in(md), escape_controls_in(events)
    events_unread = escape_controls(events_unread)
    view = body(md)
    limits = _limits(view.spec)
    lines = _header(view, limits, style)
    lines += _request(view, style, now)
    lines += _revisions(view.status, limits, style, now)
    serving = str(section(view.status, "stable").get("revision") or "")
    degraded = _condition(view.status, "PerformanceDegraded").get("status") == "True"
    drifted = _condition(view.status, "DriftDetected").get("status") == "True"
    health = section(view.status, "health")
    lines += _health(
        health, serving, limits, style, degraded, drifted, _age(health.get("evaluatedAt"), now)
    )
    lines += _conditions(view.status, style)
    lines += _events(events, style, now, events_unread)
    lines += _history(view.status, style, now)
    # Every line within the width: names, messages and reasons run to any length.
    return "\n".join(_clip(line).rstrip() for line in lines)


def _header(view: Body, limits: _Limits, style: _Style) -> list[str]:
    """Name, phase and Ready, model and replicas, a spec status does not describe yet, and
    the spec's sections that cannot be read."""
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
    if not status:  # a Pending phase would be made up: nothing has read the object yet
        lines.append(style("          (no status yet: is the operator running?)", "yellow"))
    elif status.get("observedGeneration") != meta.get("generation"):
        lines.append(
            style(
                f"          (status describes generation {status.get('observedGeneration')},"
                f" spec is at {meta.get('generation')})",
                "yellow",
            )
        )
    for index, problem in enumerate(limits.problems):
        # The operator cannot act on that section either: the screen judges by defaults.
        head = "Spec:     " if index == 0 else " " * 10
        note = f"{problem}: the limits shown are its defaults"
        lines += [style(line, "yellow") for line in _wrapped(note, head)]
    return lines


def _wrapped(text: str, head: str) -> list[str]:
    """``text`` after ``head``, wrapped within the width under it."""
    lines = textwrap.wrap(text, WIDTH - len(head)) or [""]
    return [head + lines[0], *(" " * len(head) + line for line in lines[1:])]


def _request(view: Body, style: _Style, now: datetime.datetime) -> list[str]:
    """A person's request the operator has not answered yet (the annotations), and the last
    answer (``status.lastRequest``): a refused request is cleared, its reason stays there."""
    pending = parse_request(view.meta.annotations)
    last = section(view.status, "lastRequest")
    lines: list[str] = []
    # Answered but not cleared yet (the operator clears it after its status write).
    if pending is not None and not (pending.request_id and pending.request_id == last.get("id")):
        target = f" for revision {pending.revision}" if pending.revision else ""
        lines += _wrapped(f"{pending.verb}{target}: not answered yet", "  pending   ")
        lines.append(f"            id {pending.request_id or '-'}")
    if last:
        answer = str(last.get("answer") or "?")
        when = f" {_age(last.get('at'), now)} ago" if last.get("at") else ""
        message = f": {last['message']}" if last.get("message") else ""
        answered = _wrapped(f"{last.get('verb', '?')}: {answer}{when}{message}", "  answered  ")
        colour = "green" if answer == "Taken" else "red"
        answered[0] = answered[0].replace(f": {answer}", f": {style(answer, colour)}", 1)
        lines += [*answered, f"            id {last.get('id') or '-'}"]
    return ["", style("Request", "bold"), *lines] if lines else []


def _bake(bake: Mapping[str, Any], style: _Style, now: datetime.datetime) -> list[str]:
    """The previous revision a bake keeps to go back to, and when the bake ends (or why it
    goes back)."""
    if not bake.get("previous"):
        return []
    kept = (
        f"  previous   {bake['previous']:<8} v{bake.get('previousModelVersion') or '?':<6}"
        f" {bake.get('previousReadyReplicas', 0)}/{bake.get('previousReplicas', 0)} ready"
    )
    if bake.get("failedAt"):  # going back, or given up (BakeRollbackFailed): it serves on
        reason = bake.get("reason", Reason.BAKE_FAILED)
        going = "not going back" if reason == Reason.BAKE_ROLLBACK_FAILED else "going back"
        return [kept + "   " + style(f"{going}: {reason}", "red")]
    ends = parse_time(bake.get("endsAt"))
    left = f", ends in {_since(now, ends)}" if ends is not None and ends > now else ""
    return [kept + f"   kept for the bake{left}"]


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
    lines += _bake(section(status, "bake"), style, now)
    candidate = section(status, "candidate")
    if not candidate:
        return lines
    change = candidate.get("change", "?")
    steps = _step_labels(candidate, limits.rollout.steps_for(str(change)))
    checks = f"failed checks {candidate.get('failedChecks', 0)}/{limits.failure_limit}"
    head = (
        f"  candidate  {candidate.get('revision', '?'):<8}"
        f" v{candidate.get('modelVersion', '?'):<6} {change}   "
    )
    ended = candidate.get("outcome")
    if ended:  # rolled back or failed: no rollout runs, the stable serves alone
        reason = f" ({candidate['reason']})" if candidate.get("reason") else ""
        lines.append(head + style(f"{ended}{reason}", "red"))
        lines.append(f"             {_ended_at(candidate, steps, checks)}")
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


def _failed_its_bake(candidate: Mapping[str, Any]) -> bool:
    """The attempt was promoted (every step passed) and then failed its bake. Its summary
    then has no step: read as 0, it showed the first step as the one that failed."""
    return candidate.get("reason") == Reason.BAKE_FAILED


def _step_labels(candidate: Mapping[str, Any], spec_steps: Sequence[Step]) -> list[str]:
    """The steps the attempt runs: the operator's ``status.candidate.stepNames`` (the spec
    may have changed, or be unreadable), in the spec's fuller words where they are the
    same steps; the spec's steps where status names none."""
    names = candidate.get("stepNames")
    if not isinstance(names, list) or not names:
        return [_step_label(step) for step in spec_steps]
    if [step.describe() for step in spec_steps] == names:
        return [_step_label(step) for step in spec_steps]
    return [str(name) for name in names]


def _ended_at(candidate: Mapping[str, Any], steps: Sequence[str], checks: str) -> str:
    """Where an ended attempt stopped, and its steps' failed checks (not after a failed
    bake: its steps' checks did not end it)."""
    if _failed_its_bake(candidate):
        passed = {0: "", 1: " (its step passed)"}.get(
            len(steps), f" (all {len(steps)} steps passed)"
        )
        return f"ended in its bake after promotion{passed}"
    index = int(candidate.get("step") or 0)
    if not 0 <= index < len(steps):
        return checks
    return f"ended at step {index + 1}/{len(steps)} ({steps[index]}), {checks}"


def _steps(candidate: Mapping[str, Any], steps: Sequence[str], style: _Style) -> list[str]:
    """Passed, current and to come; an ended attempt's last step is marked ✘, not current
    (none after a failed bake: every step passed)."""
    if not steps:
        return []
    lines = ["", style(f"Steps ({candidate.get('change', '?')})", "bold")]
    current = len(steps) if _failed_its_bake(candidate) else int(candidate.get("step") or 0)
    here = style("✘", "red") if candidate.get("outcome") else style("►", "blue")
    for index, step in enumerate(steps):
        if index < current:
            mark = style("✔", "green")
        elif index == current:
            mark = here
        else:
            mark = style("·", "dim")
        lines.append(f"  {mark} {index + 1} {step}")
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


#: The verdict column where the point estimate is past its threshold but the operator,
#: judging on an interval, did not find a breach (too few requests or rows to be sure).
NOT_SURE = "not surely"


def _judged(within: bool | None, breached: bool) -> tuple[bool | None, str]:
    """The health column's verdict: FAIL where the operator judged a breach (it holds one
    until surely cleared, whatever the estimate reads), ok where the figure is within, and
    NOT_SURE where only the estimate is past the threshold. As (ok, words for None)."""
    if breached:
        return False, "-"
    if within is None:
        return None, "-"
    return (True, "-") if within else (None, NOT_SURE)


def _health(
    health: Mapping[str, Any],
    serving: str,
    limits: _Limits,
    style: _Style,
    performance_degraded: bool = False,
    drift_detected: bool = False,
    age: str = "",
) -> list[str]:
    """Every health figure beside its threshold, and drift by feature; FAIL as the operator
    judged it (status.health.breached, drift.level, ``performance_degraded``, and
    ``drift_detected``: DriftDetected True, held through windows too small to judge).

    Until the health loop judges a revision that just took over, its figures are the
    previous stable's: a line says whose they are."""
    lines: list[str] = []
    add = lines.append
    add("")
    # evaluatedAt is when the figures last changed (an idle model writes nothing).
    when = ", ".join(
        filter(None, (f"unchanged for {age}" if age else "", health.get("stale") and "stale"))
    )
    add(
        style(f"Health ({when})" if when else "Health", "bold")
        + f"  window {health.get('window', '-')},"
        f" {health.get('requests', 0)} requests, verdict {health.get('verdict', '-')}"
    )
    measured = str(health.get("revision") or "")
    if measured and serving and measured != serving:
        add(style(f"  revision {measured}'s figures: {serving} took over since", "dim"))
    add(f"  {'figure':<26}{'measured':>12}   {'threshold':<14}")
    breached = set(health.get("breached") or ())
    slos = (
        ("error rate", "errorRate", limits.health.max_error_rate, _percent, Reason.ERROR_RATE_HIGH),
        ("p95 latency", "latencyP95", limits.health.max_latency_p95, _ms, Reason.LATENCY_HIGH),
    )
    for label, key, limit, shown, reason in slos:
        value = health.get(key)
        ok, words = _judged(None if value is None else value <= limit, reason in breached)
        measured = shown(None) if value is None else _beside(value, limit, shown)
        add(_gate_row(label, measured, f"<= {_limit_text(limit, shown)}", ok, style, words))
    drift = health.get("drift") or {}
    threshold = limits.health.drift_threshold
    score = drift.get("score")
    verdict = health.get("verdict")
    # Too few requests to judge: DriftDetected says whether a drift is held through it.
    held = drift_detected and verdict == Verdict.INSUFFICIENT_DATA
    drifted = held or _drifted(drift, verdict)
    ok, words = _judged(None if score is None else score < threshold, drifted)
    add(
        _gate_row(
            f"drift ({drift.get('method', limits.health.drift_method)})",
            "-" if score is None else _beside(score, threshold, _decimals),
            f"< {_limit_text(threshold, _general)}",
            ok,
            style,
            words,
        )
    )
    agreement = health.get("agreement")
    if agreement is not None:
        # The health loop judges no agreement (the rollout's gates do): no breach to show.
        ok, words = _judged(agreement >= limits.min_agreement, breached=False)
        add(
            _gate_row(
                "shadow agreement",
                _beside(agreement, limits.min_agreement, _decimals),
                f">= {_limit_text(limits.min_agreement, _general)}",
                ok,
                style,
                words,
            )
        )
    lines += _realized(health.get("performance") or {}, limits, style, performance_degraded)
    prediction = health.get("prediction") or {}
    if prediction:
        add(
            f"  {'prediction mean / std':<26}{prediction.get('mean', 0):>12.3f}"
            f" / {prediction.get('std', 0):.3f}"
        )
    lines += _drift_bars(drift, threshold, style, drifted)
    return lines


def _drift_bars(
    drift: Mapping[str, Any], threshold: float, style: _Style, drifted: bool
) -> list[str]:
    """Drift by feature, the worst first, as bars against the threshold."""
    features = drift.get("features") or {}
    if not features:
        return []
    title = f"Drift by feature ({drift.get('method', 'psi')}, threshold {threshold:g})"
    lines: list[str] = ["", style(title, "bold")]
    add = lines.append
    scale = max(threshold * 2, max(features.values()))
    over = set(drift.get("over") or ()) if drifted else set()
    for name, value in sorted(features.items(), key=lambda item: -item[1])[:12]:
        # Red for the features the operator found surely over; yellow past it unsure.
        colour = "red" if name in over else "yellow" if value >= threshold else "green"
        # A threshold of 0 (the CRD's minimum) and no drift at all: empty bars.
        filled = value / scale if scale > 0 else 0.0
        add(f"  {name[:24]:<24} {value:6.3f} {style(_bar(filled), colour)}")
    if len(features) > 12:
        add(style(f"  ... {len(features) - 12} more", "dim"))
    return lines


def _drifted(drift: Mapping[str, Any], verdict: object) -> bool:
    """The operator found drift over the threshold (surely, or held until surely back); not
    with too few requests to judge (the level is computed all the same)."""
    return drift.get("level") == "threshold" and verdict != Verdict.INSUFFICIENT_DATA


def _realized(
    performance: Mapping[str, Any], limits: _Limits, style: _Style, degraded: bool = False
) -> list[str]:
    """Realized performance from labels beside its threshold, labels and their delay;
    FAIL where the operator found it degraded (the PerformanceDegraded condition)."""
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
        shown = f"{word} {_limit_text(limit, _general)}" if limit is not None else "-"
        ok, words = (None, "-") if limit is None else _judged(better(value, limit), degraded)
        rows.append(_gate_row(label, _beside(value, limit, _decimals), shown, ok, style, words))
    baseline = performance.get("baseline")
    if baseline is not None:
        rows.append(f"  {'baseline (validation)':<26}{baseline:>12.3f}")
    need = limits.health.performance.min_labels
    labels = performance.get("labels", 0)
    scored = performance.get("scored", labels)  # what minLabels counts: written where it differs
    # Fewer labels than needed is no failure: the condition waits (InsufficientLabels).
    enough = True if scored >= need else None
    if scored == labels:
        rows.append(_gate_row("labels joined", f"{labels}", f">= {need}", enough, style, "too few"))
    else:
        rows.append(f"  {'labels joined':<26}{labels:>12}")
        rows.append(_gate_row("labels scored", f"{scored}", f">= {need}", enough, style, "too few"))
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
    events: Sequence[Mapping[str, Any]], style: _Style, now: datetime.datetime, unread: str
) -> list[str]:
    """The last six Events, oldest first, or why they could not be read."""
    lines: list[str] = []
    add = lines.append
    if unread:
        add("")
        add(style("Events", "bold"))
        lines += [f"  {line}" for line in textwrap.wrap(f"not read: {unread}", WIDTH - 2)]
    if events:
        add("")
        add(style("Events (newest last)", "bold"))
        for event in in_order(events)[-6:]:
            moment = event_time(event)
            kind = event.get("type", "Normal")
            add(
                f"  {'' if moment is None else _since(moment, now):>4}  "
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
            colour = _OUTCOME_COLOUR.get(outcome, "green")
            add(
                f"  {entry.get('revision', '?'):<8} v{entry.get('modelVersion', '?'):<5}"
                f" {entry.get('change', '?'):<12}{style(f'{outcome:<11}', colour)}"
                f"{_age(entry.get('at'), now):>5}"
            )
            if entry.get("reason"):
                add(f"           {entry['reason']}")
    return lines
