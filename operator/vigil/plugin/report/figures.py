"""The report's numbers, from measured windows: a pure function, JSON in and out.

The health loop's own arithmetic judges every window: :func:`vigil.core.health.evaluate`
for each revision at each step (drift per feature, error rate, p95, prediction
moments), and :func:`vigil.core.judges.gates` for each candidate against the
revision that was stable at that time (the rollout's gates and thresholds).
What :func:`build` returns is what the page draws and what ``--json`` writes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.common.labels import class_key, counts_by_class
from vigil.common.objects import body, items, section
from vigil.common.times import parse_unix
from vigil.core.analysis import candidate_figures
from vigil.core.health import HealthReport, evaluate, feature_drift
from vigil.core.judges import gates
from vigil.core.spec import (
    HealthPolicy,
    RolloutPolicy,
    SpecError,
    Step,
    outline_spec,
    parse_spec,
)
from vigil.core.vocabulary import Outcome
from vigil.core.window import RevisionWindow
from vigil.plugin.reading import event_time, in_order, read_spec
from vigil.profile import OTHER, FeatureProfile, ReferenceProfile

SCHEMA = "vigil.dev/report/v1"

#: A series: (unix time, value) pairs, oldest first.
Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Measured:
    """What a source read for one ModelDeployment over the report's range."""

    #: Evaluation time -> revision -> the sliding window ending then.
    points: Mapping[float, Mapping[str, RevisionWindow]]
    #: Revision -> everything counted over the whole range.
    totals: Mapping[str, RevisionWindow]
    start: float
    end: float
    #: 0: one point, no sliding windows (the direct source).
    step: float
    window_seconds: float
    source: str
    notes: tuple[str, ...] = ()
    #: The ground-truth families' window, where not ``window_seconds``: the health loop
    #: reads labels over spec.monitoring.performance.window (the prometheus source).
    labels_window_seconds: float | None = None
    #: Revision -> the seconds its counters cover, where not ``window_seconds`` (the direct
    #: source: each revision's counters began with its first pod).
    revision_seconds: Mapping[str, float] = field(default_factory=dict)

    def seconds(self, revision: str) -> float:
        """What one revision's counts are divided by, for a rate."""
        return self.revision_seconds.get(revision, self.window_seconds)

    def label_seconds(self, revision: str) -> float:
        """What one revision's label counts are divided by, for a rate."""
        if revision in self.revision_seconds or self.labels_window_seconds is None:
            return self.seconds(revision)
        return self.labels_window_seconds


@dataclass(frozen=True)
class Context:
    """The ModelDeployment, its Events and its reference profile, as read."""

    model_deployment: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]] = ()
    profile: ReferenceProfile | None = None
    generated_at: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


def _finite(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _series(values: Mapping[float, float | None]) -> list[list[float]]:
    return [[at, v] for at, value in sorted(values.items()) if (v := _finite(value)) is not None]


def _proportions(counts: Sequence[float]) -> list[float] | None:
    total = sum(counts)
    if total <= 0:
        return None
    return [round(count / total, 6) for count in counts]


def slot_names(feature: FeatureProfile) -> list[str]:
    """A person's name for each slot: ``< 11.4``, ``11.4 to 12.1``, ``>= 14.8``, a category."""
    if feature.type != "numeric" or not feature.edges:
        return list(feature.slot_labels)
    edges = [f"{edge:.4g}" for edge in feature.edges]
    inner = [f"{low} to {high}" for low, high in itertools.pairwise(edges)]
    return [f"< {edges[0]}", *inner, f">= {edges[-1]}"]


def live_counts(feature: FeatureProfile, counted: Mapping[str, Mapping[str, float]]) -> list[float]:
    """Live counts in the reference's slots (bins by index, categories by label)."""
    seen = counted.get(feature.name, {})
    if feature.type == "categorical":
        return [seen.get(label, 0.0) for label in (*(feature.categories or ()), OTHER)]
    return [seen.get(str(slot), 0.0) for slot in range(len(feature.proportions))]


def _prediction_counts(feature: FeatureProfile, window: RevisionWindow) -> list[float]:
    if feature.type == "categorical":
        # A boolean's forms as one class, as the prediction shift compares them: one
        # revision's sidecars count 1 as true, another's (a profile of numbers) as 1.
        counted = counts_by_class(window.prediction_classes)
        slots = (*(feature.categories or ()), OTHER)
        return [counted.get(class_key(label) or label, 0.0) for label in slots]
    return live_counts(feature, {feature.name: window.prediction_bins})


def _revisions(md: Mapping[str, Any], measured: Measured) -> list[dict[str, Any]]:
    """Every revision seen, with what status says of it; the serving one first."""
    status = body(md).status
    known: dict[str, dict[str, Any]] = {}
    for entry in reversed(items(status, "history")):
        if isinstance(entry, Mapping) and entry.get("revision"):
            known[str(entry["revision"])] = {
                "modelVersion": entry.get("modelVersion"),
                "change": entry.get("change"),
                "outcome": entry.get("outcome"),
                "reason": entry.get("reason"),
                "at": parse_unix(entry.get("at")),
            }
    for role in ("candidate", "stable"):
        part = section(status, role)
        if part.get("revision"):
            slot = known.setdefault(str(part["revision"]), {})
            slot["role"] = role
            slot.setdefault("modelVersion", part.get("modelVersion"))
            slot.setdefault("change", part.get("change"))
            if role == "candidate" and not part.get("outcome"):
                _under_way_again(slot, part)
    seen = set(measured.totals)
    for windows in measured.points.values():
        seen.update(windows)
    stable = section(status, "stable").get("revision")
    ordered = sorted(
        set(known) | seen, key=lambda rev: (rev != stable, -(known.get(rev, {}).get("at") or 0))
    )
    return [{"revision": rev, "measured": rev in seen, **known.get(rev, {})} for rev in ordered]


def _under_way_again(slot: dict[str, Any], candidate: Mapping[str, Any]) -> None:
    """A candidate under way whose history holds an earlier attempt (retried): that
    attempt's outcome and end are not this one's; it started at status.candidate.startedAt."""
    if slot.get("outcome") is not None:
        slot["previous"] = {k: slot.pop(k, None) for k in ("outcome", "reason", "at")}
    if (started := parse_unix(candidate.get("startedAt"))) is not None:
        slot["startedAt"] = started


def _stable_at(revisions: Sequence[Mapping[str, Any]], at: float) -> str | None:
    """The revision that served at that time: the last deployed or promoted before it."""
    became = [
        (r["at"], r["revision"])
        for r in revisions
        if r.get("outcome") in (Outcome.DEPLOYED, Outcome.PROMOTED) and r.get("at") is not None
    ]
    before = [item for item in became if item[0] <= at]
    if before:
        return max(before)[1]
    return min(became)[1] if became else None


def _evaluate_all(
    measured: Measured, profile: ReferenceProfile | None, policy: HealthPolicy
) -> dict[str, dict[float, HealthReport]]:
    out: dict[str, dict[float, HealthReport]] = {}
    for at, windows in measured.points.items():
        for revision, window in windows.items():
            out.setdefault(revision, {})[at] = evaluate(window, profile, policy)
    return out


#: A feature's drift levels as the health loop judges them, the worst last.
LEVELS = ("none", "warning", "threshold")


def judged_level(feature: str, reports: Sequence[HealthReport]) -> str | None:
    """The worst level the health loop's judgement gives ``feature`` over the windows (with
    confidence: an estimate over the threshold on a few rows is not surely over it); None
    when no window judged it."""
    levels = [
        "threshold" if feature in r.drift_over else "warning" if feature in r.drift_sure else "none"
        for r in reports
        if r.drift_level != "unknown" and feature in r.drift_features
    ]
    return max(levels, key=LEVELS.index) if levels else None


def _features(
    measured: Measured,
    profile: ReferenceProfile,
    policy: HealthPolicy,
    reports: Mapping[str, Mapping[float, HealthReport]],
) -> list[dict[str, Any]]:
    overall = {
        revision: feature_drift(profile, window, policy.drift_method)
        for revision, window in measured.totals.items()
    }
    features = []
    for feature in profile.features:
        live: dict[str, Any] = {}
        missing: dict[str, Any] = {}
        out_of_range: dict[str, Any] = {}
        for revision, window in measured.totals.items():
            counted = (
                window.feature_categories if feature.type == "categorical" else window.feature_bins
            )
            counts = live_counts(feature, counted)
            live[revision] = {"rows": round(sum(counts)), "proportions": _proportions(counts)}
        for at, windows in measured.points.items():
            for revision, window in windows.items():
                if window.input_rows <= 0:
                    continue
                rows = window.input_rows
                missing.setdefault(revision, {})[at] = (
                    window.feature_missing.get(feature.name, 0) / rows
                )
                out_of_range.setdefault(revision, {})[at] = (
                    window.feature_out_of_range.get(feature.name, 0) / rows
                )
        scores = [s for rev in overall if (s := overall[rev].get(feature.name)) is not None]
        over_time = {
            rev: _series({at: r.drift_features.get(feature.name) for at, r in by_time.items()})
            for rev, by_time in reports.items()
        }
        # A drift confined to part of the range fades in the whole range's counts (and a
        # bias-corrected statistic may read 0 there): the worst window shows it.
        peaks = [value for series in over_time.values() for _, value in series]
        judged = [r for by_time in reports.values() for r in by_time.values()]
        features.append(
            {
                "name": feature.name,
                "type": feature.type,
                "slots": slot_names(feature),
                "reference": {
                    "proportions": list(feature.proportions),
                    "nullRate": feature.null_rate,
                },
                "live": live,
                "drift": _finite(max(scores)) if scores else None,
                "driftPeak": max(peaks) if peaks else None,
                "driftLevel": judged_level(feature.name, judged),
                "driftByRevision": {
                    rev: _finite(s.get(feature.name)) for rev, s in overall.items()
                },
                "driftOverTime": over_time,
                "missingRate": {rev: _series(v) for rev, v in missing.items()},
                "outOfRangeRate": {rev: _series(v) for rev, v in out_of_range.items()},
            }
        )
    # The worst first (its worst window, then the whole range): a person reads the top.
    features.sort(key=_worst_first)
    return features


def _worst_first(feature: Mapping[str, Any]) -> tuple[bool, float, float, str]:
    peak, whole = feature["driftPeak"], feature["drift"]
    return (peak is None and whole is None, -(peak or 0.0), -(whole or 0.0), feature["name"])


def _predictions(
    measured: Measured,
    profile: ReferenceProfile | None,
    reports: Mapping[str, Mapping[float, HealthReport]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mean": {
            rev: _series({at: r.prediction_mean for at, r in by.items()})
            for rev, by in reports.items()
        },
        "std": {
            rev: _series({at: r.prediction_std for at, r in by.items()})
            for rev, by in reports.items()
        },
    }
    prediction = profile.prediction if profile is not None else None
    if prediction is not None:
        out["type"] = prediction.type
        out["slots"] = slot_names(prediction)
        out["reference"] = list(prediction.proportions)
        out["live"] = {
            rev: _proportions(_prediction_counts(prediction, window))
            for rev, window in measured.totals.items()
        }
    return out


def _operations(
    measured: Measured, reports: Mapping[str, Mapping[float, HealthReport]]
) -> dict[str, Any]:
    rate = {
        rev: _series(
            {at: w.requests / measured.seconds(rev) for at, w in _by_revision(measured, rev)}
        )
        for rev in reports
    }
    return {
        "requestRate": rate,
        "errorRate": {
            rev: _series({at: r.error_rate for at, r in by.items()}) for rev, by in reports.items()
        },
        "latencyP95": {
            rev: _series({at: r.latency_p95 for at, r in by.items()}) for rev, by in reports.items()
        },
        "totals": {
            rev: {
                "requests": round(w.requests),
                "errors": round(w.requests - w.requests_by_outcome.get("success", 0.0)),
            }
            for rev, w in measured.totals.items()
        },
    }


def _by_revision(measured: Measured, revision: str) -> list[tuple[float, RevisionWindow]]:
    return [(at, ws[revision]) for at, ws in sorted(measured.points.items()) if revision in ws]


def _events(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first, as the status view lists them."""
    out = []
    for event in in_order(events):
        moment = event_time(event)
        out.append(
            {
                "at": None if moment is None else moment.timestamp(),
                "type": event.get("type"),
                "reason": event.get("reason"),
                "message": event.get("message"),
            }
        )
    return out


def _policy(md: Mapping[str, Any], change: str) -> RolloutPolicy | None:
    meta = body(md).meta
    try:
        spec = parse_spec(meta.name, body(md).spec)
    except (SpecError, ValueError):
        return None
    return spec.rollout.policy(change or "replacement", spec.monitoring.slo)


def _judged_until(revision: Mapping[str, Any]) -> float | None:
    """The last time a revision's windows are a candidate's: when it became stable or its
    rollout ended (its history entry). After that its windows are a stable's, or the
    tail of a revision that served until the next one took over: no gate judged them.
    A candidate under way again (retried) is judged to the end of the range."""
    if revision.get("role") == "candidate":
        return None
    at = revision.get("at")
    return float(at) if isinstance(at, (int, float)) else None


def _gate_values(
    revision: Mapping[str, Any],
    measured: Measured,
    profile: ReferenceProfile | None,
    policy: HealthPolicy,
    revisions: Sequence[Mapping[str, Any]],
    rollout_policy: RolloutPolicy,
) -> dict[str, dict[str, Any]]:
    """A candidate's gates at each point of its rollout, against the stable then."""
    rev = revision["revision"]
    until = _judged_until(revision)
    gate_values: dict[str, dict[str, Any]] = {}
    for at, window in _by_revision(measured, rev):
        if until is not None and at > until:
            break
        stable = _stable_at(revisions, at)
        if stable is None or stable == rev:
            continue
        figures = candidate_figures(
            rev,
            window,
            measured.points[at].get(stable),
            method=policy.drift_method,
            reference=profile,
            stable_reference=profile,
        )
        # Judged as the step then running: shadow (copies, agreement) or canary.
        kind = "shadow" if figures.copies.requests > figures.live.requests else "canary"
        for gate in gates(Step(kind=kind), rollout_policy, figures):
            slot = gate_values.setdefault(
                gate.name, {"threshold": _finite(gate.threshold), "values": []}
            )
            if (value := _finite(gate.value)) is not None:
                slot["values"].append([at, value, gate.passed])
    return gate_values


def _about(revision: str, message: str) -> bool:
    """An Event about this revision: its message starts with ``revision REV`` (the operator's
    words for its subject), or it is the switch of live traffic to it. Other messages name
    revisions in passing ("...; revision A keeps serving" is B's start, not A's)."""
    if message.startswith("live traffic moved from revision "):
        return f" to revision {revision} " in message
    head = f"revision {revision}"
    if not message.startswith(head):
        return False
    rest = message[len(head) :]
    return not rest or not (rest[0].isalnum() or rest[0] in "-_")


def _rollouts(
    md: Mapping[str, Any],
    measured: Measured,
    profile: ReferenceProfile | None,
    policy: HealthPolicy,
    revisions: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    out = []
    for revision in revisions:
        rev = revision["revision"]
        mine = [e for e in events if _about(rev, str(e.get("message") or ""))]
        started = [revision["startedAt"]] if revision.get("startedAt") is not None else []
        started = started or [
            e["at"] for e in mine if e["reason"] in ("RolloutStarted", "Deployed") and e["at"]
        ]
        change = str(revision.get("change") or "")
        rollout_policy = _policy(md, change)
        gate_values: dict[str, dict[str, Any]] = {}
        if change in ("replacement", "tweak") and rollout_policy is not None:
            gate_values = _gate_values(
                revision, measured, profile, policy, revisions, rollout_policy
            )
        out.append(
            {
                "revision": rev,
                "modelVersion": revision.get("modelVersion"),
                "change": revision.get("change"),
                "role": revision.get("role"),
                "outcome": revision.get("outcome"),
                "reason": revision.get("reason"),
                "started": min(started) if started else None,
                "ended": revision.get("at"),
                "previousAttempt": revision.get("previous"),
                "servedUntil": _served_until(revision, revisions),
                "events": mine,
                "gates": gate_values,
            }
        )
    return out


def _served_until(
    revision: Mapping[str, Any], revisions: Sequence[Mapping[str, Any]]
) -> float | None:
    """A deployed or promoted revision served until the next one was: None while it serves
    (or for one that never became stable)."""
    became = (Outcome.DEPLOYED, Outcome.PROMOTED)
    at = revision.get("at")
    if revision.get("outcome") not in became or at is None:
        return None
    later = [
        r["at"]
        for r in revisions
        if r.get("outcome") in became and r.get("at") is not None and r["at"] > at
    ]
    return min(later) if later else None


def _ground_truth(
    measured: Measured, reports: Mapping[str, Mapping[float, HealthReport]]
) -> dict[str, Any]:
    labelled = {rev: w.realized for rev, w in measured.totals.items() if w.realized.labels > 0}
    if not labelled:
        return {
            "available": False,
            "note": "no labels: no ground truth reached the sidecars in this range "
            "(POST /v1/feedback, docs/howto/feedback.md)",
        }
    over_time: dict[str, dict[str, Any]] = {"accuracy": {}, "mae": {}, "labels": {}}
    for rev in reports:
        by_time = _by_revision(measured, rev)
        over_time["accuracy"][rev] = _series({at: w.realized.accuracy for at, w in by_time})
        over_time["mae"][rev] = _series({at: w.realized.mae for at, w in by_time})
        over_time["labels"][rev] = _series(
            {at: w.realized.labels / measured.label_seconds(rev) for at, w in by_time}
        )
    return {
        "available": True,
        "totals": {
            rev: {
                "labels": round(r.labels),
                "accuracy": _finite(r.accuracy),
                "mae": _finite(r.mae),
                "rmse": _finite(r.rmse),
                "labelDelayP50": _finite(r.delay_quantile(0.5)),
                "labelDelayP95": _finite(r.delay_quantile(0.95)),
                "outcomes": {k: round(v) for k, v in sorted(r.labels_by_outcome.items())},
            }
            for rev, r in labelled.items()
        },
        "overTime": over_time,
    }


def _spec_notes(problems: Sequence[str]) -> list[str]:
    # The operator cannot use such a section either; the report judges by its defaults.
    return [f"{problem}: the report uses its defaults" for problem in problems]


def build(context: Context, measured: Measured) -> dict[str, Any]:
    """Every number of the report (JSON-ready: no NaN, no infinity)."""
    md = context.model_deployment
    obj = body(md)
    read = read_spec(obj.spec)
    outline = outline_spec(obj.meta.name, obj.spec)
    policy = read.policy
    profile = context.profile
    reports = _evaluate_all(measured, profile, policy)
    revisions = _revisions(md, measured)
    events = _events(context.events)
    rollout_policy = _policy(md, "replacement")
    return {
        "schema": SCHEMA,
        "generatedAt": context.generated_at,
        "modelDeployment": {
            "namespace": obj.meta.namespace,
            "name": obj.meta.name,
            "model": outline.model_name,
            "version": outline.model_version,
            "phase": obj.status.get("phase"),
            "stable": section(obj.status, "stable").get("revision"),
            "candidate": section(obj.status, "candidate").get("revision"),
        },
        "range": {
            "start": measured.start,
            "end": measured.end,
            "step": measured.step,
            "window": measured.window_seconds,
            "labelsWindow": measured.labels_window_seconds or measured.window_seconds,
        },
        "source": measured.source,
        "notes": [*context.notes, *_spec_notes(read.problems), *measured.notes],
        "thresholds": {
            "driftMethod": policy.drift_method,
            "driftWarning": policy.drift_warning,
            "driftThreshold": policy.drift_threshold,
            "maxErrorRate": policy.max_error_rate,
            "maxLatencyP95": policy.max_latency_p95,
            "minAgreement": rollout_policy.min_agreement if rollout_policy else None,
            "maxPredictionShift": rollout_policy.max_prediction_shift if rollout_policy else None,
        },
        "reference": (
            {
                "model": profile.model_name,
                "version": profile.model_version,
                "rows": profile.row_count,
            }
            if profile is not None
            else None
        ),
        "revisions": revisions,
        "features": _features(measured, profile, policy, reports) if profile is not None else [],
        "predictions": _predictions(measured, profile, reports),
        "operations": _operations(measured, reports),
        "rollouts": _rollouts(md, measured, profile, policy, revisions, events),
        "events": events,
        "groundTruth": _ground_truth(measured, reports),
    }
