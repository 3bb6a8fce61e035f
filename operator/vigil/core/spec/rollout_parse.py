"""Reading ``spec.rollout``: steps, analysis, bake and the performance gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.core.spec.defaults import (
    DEFAULT_BAKE_MIN_REPLICAS,
    DEFAULT_SHADOW_MIN_REQUESTS,
    DEFAULT_SHADOW_PERCENT,
    DEFAULT_STEP_DURATION,
    DEFAULT_VALIDATE_MIN_AGREEMENT,
    default_seconds,
    parse_duration,
)
from vigil.core.spec.model import (
    AnalysisSpec,
    BakeSpec,
    GoldenSetRef,
    PerformanceGate,
    RolloutSpec,
    Step,
    Tolerance,
)
from vigil.core.spec.reading import mapping as _mapping
from vigil.core.spec.reading import one_limit as _one_limit
from vigil.core.spec.reading import section as _section

# An absent key takes the typed section's own default (vigil.core.spec.model).
_DEFAULT_ANALYSIS = AnalysisSpec()
_DEFAULT_ROLLOUT = RolloutSpec()
_DEFAULT_GATE = PerformanceGate()


def parse_tolerance(raw: Mapping[str, Any] | None, base: Tolerance) -> Tolerance:
    """``tolerance: {absolute, relative}``; an absent key keeps ``base``'s."""
    raw = raw or {}
    absolute = raw.get("absolute")
    relative = raw.get("relative")
    return Tolerance(
        absolute=float(absolute) if absolute is not None else base.absolute,
        relative=float(relative) if relative is not None else base.relative,
    )


#: The CRD's message for a step that holds none of the four kinds (``- pause:``, YAML's null,
#: stored as ``{}``).
STEP_KINDS_PROBLEM = (
    "a rollout step holds exactly one of validate, shadow, canary, pause (a pause without "
    "duration is written `pause: {}`: YAML reads `pause:` with nothing after it as null, "
    "which the API server drops)"
)


def parse_step(raw: Mapping[str, Any], tolerance: Tolerance | None = None) -> Step:
    """One step of ``spec.rollout.<change>.steps``; ``tolerance`` is ``analysis.tolerance``."""
    duration = default_seconds(DEFAULT_STEP_DURATION)
    if "validate" in raw:
        body = raw["validate"] or {}
        ref = _section(_section(body.get("goldenSet")).get("configMapKeyRef"))
        return Step(
            "validate",
            golden_set=GoldenSetRef(str(ref.get("name", "")), str(ref.get("key", ""))),
            min_agreement=float(body.get("minAgreement", DEFAULT_VALIDATE_MIN_AGREEMENT)),
        )
    if "shadow" in raw:
        body = raw["shadow"] or {}
        return Step(
            "shadow",
            duration_seconds=parse_duration(body.get("duration"), duration),
            percent=int(body.get("percent", DEFAULT_SHADOW_PERCENT)),
            min_requests=int(body.get("minRequests", DEFAULT_SHADOW_MIN_REQUESTS)),
            tolerance=parse_tolerance(body.get("tolerance"), tolerance or Tolerance()),
        )
    if "canary" in raw:
        body = raw["canary"] or {}
        return Step(
            "canary",
            duration_seconds=parse_duration(body.get("duration"), duration),
            weight=int(body["weight"]),
        )
    if "pause" in raw:
        pause = (raw["pause"] or {}).get("duration")
        return Step("pause", duration_seconds=parse_duration(pause, 0) if pause else None)
    raise ValueError(STEP_KINDS_PROBLEM + (f" (it holds {sorted(raw)})" if raw else ""))


def _step_at(where: str, raw: Any, tolerance: Tolerance) -> Step:
    """One step, an unreadable one's error naming it (the CRD checks them: an object
    stored before, or by a client that skips validation)."""
    try:
        return parse_step(_mapping(raw, where), tolerance)
    except KeyError as error:
        raise ValueError(f"{where} has no {error.args[0]}") from None
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: {error}") from None


def parse_rollout(raw: Mapping[str, Any]) -> RolloutSpec:
    """``spec.rollout`` (ValueError, KeyError or TypeError: unreadable)."""
    analysis_raw = _section(raw.get("analysis"))
    margins = _section(analysis_raw.get("margins"))
    tolerance = parse_tolerance(analysis_raw.get("tolerance"), Tolerance())

    analysis = AnalysisSpec(
        interval_seconds=parse_duration(
            analysis_raw.get("interval"),
            _DEFAULT_ANALYSIS.interval_seconds,
            "spec.rollout.analysis.interval",
        ),
        min_requests=int(analysis_raw.get("minRequests", _DEFAULT_ANALYSIS.min_requests)),
        failure_limit=int(analysis_raw.get("failureLimit", _DEFAULT_ANALYSIS.failure_limit)),
        min_agreement=float(analysis_raw.get("minAgreement", _DEFAULT_ANALYSIS.min_agreement)),
        max_prediction_shift=float(
            analysis_raw.get("maxPredictionShift", _DEFAULT_ANALYSIS.max_prediction_shift)
        ),
        tolerance=tolerance,
        confidence=float(analysis_raw.get("confidence", _DEFAULT_ANALYSIS.confidence)),
        latency_margin=float(margins.get("latency", _DEFAULT_ANALYSIS.latency_margin)),
        input_drift_margin=float(margins.get("inputDrift", _DEFAULT_ANALYSIS.input_drift_margin)),
        early_advance=bool(analysis_raw.get("earlyAdvance", _DEFAULT_ANALYSIS.early_advance)),
        performance=_performance_gate(analysis_raw.get("performance")),
    )
    if not 0.0 < analysis.confidence < 1.0:
        raise ValueError(
            f"spec.rollout.analysis.confidence {analysis.confidence:g} must be between 0 and 1"
        )
    if min(analysis.latency_margin, analysis.input_drift_margin) < 0:
        raise ValueError("spec.rollout.analysis.margins must not be negative")

    def steps(change: str) -> tuple[Step, ...]:
        section = _section(raw.get(change))
        return tuple(
            _step_at(f"spec.rollout.{change}.steps[{index}]", step, tolerance)
            for index, step in enumerate(section.get("steps") or ())
        )

    route = _section(_section(raw.get("trafficRouting")).get("gatewayAPI")).get("httpRoute")
    return RolloutSpec(
        replacement=steps("replacement"),
        tweak=steps("tweak"),
        analysis=analysis,
        progress_deadline_seconds=parse_duration(
            raw.get("progressDeadline"),
            _DEFAULT_ROLLOUT.progress_deadline_seconds,
            "spec.rollout.progressDeadline",
        ),
        http_route=str(route) if route else None,
        bake=_bake(raw.get("bake")),
    )


def _bake(raw: Mapping[str, Any] | None) -> BakeSpec | None:
    """``spec.rollout.bake`` (None: absent, no bake; ValueError: unusable)."""
    if raw is None:
        return None
    duration = raw.get("duration")
    seconds = parse_duration(duration, 0.0, "spec.rollout.bake.duration")
    if not duration or seconds <= 0:
        raise ValueError(f"spec.rollout.bake.duration {duration!r} must be longer than 0s")
    replicas = int(raw.get("minReplicas", DEFAULT_BAKE_MIN_REPLICAS))
    if replicas < 0:
        raise ValueError(f"spec.rollout.bake.minReplicas {replicas} must be at least 0")
    return BakeSpec(str(duration), seconds, replicas)


def _performance_gate(raw: Mapping[str, Any] | None) -> PerformanceGate | None:
    """``spec.rollout.analysis.performance`` (None: absent, no gate; ValueError: unusable)."""
    if raw is None:
        return None
    where = "spec.rollout.analysis.performance"

    def number(key: str, highest: float | None = None) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        value = float(value)
        if value < 0 or (highest is not None and value > highest):
            bound = f"between 0 and {highest:g}" if highest is not None else "at least 0"
            raise ValueError(f"{where}.{key} {value:g} must be {bound}")
        return value

    gate = PerformanceGate(
        min_accuracy=number("minAccuracy", 1.0),
        max_mae=number("maxMAE"),
        max_drop=number("maxDrop", 1.0),
        min_labels=int(raw.get("minLabels", _DEFAULT_GATE.min_labels)),
    )
    _one_limit(raw, where)
    if not gate.gates:
        raise ValueError(f"{where} needs minAccuracy, maxMAE or maxDrop")
    if gate.min_labels < 1:
        raise ValueError(f"{where}.minLabels {gate.min_labels} must be at least 1")
    return gate
