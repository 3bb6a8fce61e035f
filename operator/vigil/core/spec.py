"""The ModelDeployment spec as typed, defaulted values: the one place that reads ``.spec``.

The API server applies the CRD's defaults, but the operator must not depend
on that alone: objects stored before a default was added, or created through
a client that skipped defaulting, still have to reconcile to the same pods
and be judged by the same thresholds. So every default of
crds/modeldeployments.yaml is written here once (:data:`CRD_DEFAULTS` names
each by its path; a test holds the table to the CRD), beside the few the CRD
leaves to the operator (the SLOs, the shadow tolerance). The rest of the
operator reads :class:`ModelDeploymentSpec`, never the raw mapping.

What an older schema or a non-validating client could let through is
reported, not raised, where the operator can still act: a section that
cannot be read keeps its defaults and says why in ``problem`` (monitoring:
the health loop skips the object and a rollout measures nothing; rollout:
the change is switched blue/green, as without steps). What the pods
cannot take (no model version, an unknown protocol) is a :class:`SpecError`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# -- defaults -----------------------------------------------------------------------------

# The CRD's defaults (crds/modeldeployments.yaml); CRD_DEFAULTS below lists them by path.
DEFAULT_SERVER_PORT = 8080
DEFAULT_PROTOCOL = "v2"
DEFAULT_REPLICAS = 1
DEFAULT_WINDOW = "5m"
DEFAULT_DRIFT_METHOD = "psi"
DEFAULT_DRIFT_WARNING = 0.1
DEFAULT_DRIFT_THRESHOLD = 0.2
DEFAULT_METRICS_SOURCE = "direct"
DEFAULT_MAX_BODY_BYTES = 10_485_760
DEFAULT_FEATURE_CAP = 20
DEFAULT_VALIDATE_MIN_AGREEMENT = 0.99
DEFAULT_STEP_DURATION = "5m"
DEFAULT_SHADOW_PERCENT = 100
DEFAULT_SHADOW_MIN_REQUESTS = 200
DEFAULT_INTERVAL = "30s"
DEFAULT_MIN_REQUESTS = 50
DEFAULT_FAILURE_LIMIT = 2
DEFAULT_MIN_AGREEMENT = 0.95
DEFAULT_MAX_PREDICTION_SHIFT = 0.2
DEFAULT_PROGRESS_DEADLINE = "30m"
DEFAULT_PAUSED = False

# Defaults the CRD leaves to the operator (documented in docs/crd-reference.md).
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MAX_LATENCY_P95 = "250ms"
#: Shadow: a regression prediction agrees within this share of the stable's value (5 %).
DEFAULT_RELATIVE_TOLERANCE = 0.05

#: Every ``default:`` of the CRD's spec, by path ("[]" = each item of a list).
CRD_DEFAULTS: Mapping[str, Any] = {
    "server.port": DEFAULT_SERVER_PORT,
    "server.protocol": DEFAULT_PROTOCOL,
    "replicas": DEFAULT_REPLICAS,
    "monitoring.window": DEFAULT_WINDOW,
    "monitoring.drift.method": DEFAULT_DRIFT_METHOD,
    "monitoring.drift.warning": DEFAULT_DRIFT_WARNING,
    "monitoring.drift.threshold": DEFAULT_DRIFT_THRESHOLD,
    "monitoring.metrics.source": DEFAULT_METRICS_SOURCE,
    "monitoring.sidecar.maxBodyBytes": DEFAULT_MAX_BODY_BYTES,
    "monitoring.sidecar.featureCap": DEFAULT_FEATURE_CAP,
    "rollout.replacement.steps.[].validate.minAgreement": DEFAULT_VALIDATE_MIN_AGREEMENT,
    "rollout.replacement.steps.[].shadow.duration": DEFAULT_STEP_DURATION,
    "rollout.replacement.steps.[].shadow.percent": DEFAULT_SHADOW_PERCENT,
    "rollout.replacement.steps.[].shadow.minRequests": DEFAULT_SHADOW_MIN_REQUESTS,
    "rollout.replacement.steps.[].canary.duration": DEFAULT_STEP_DURATION,
    "rollout.tweak.steps.[].validate.minAgreement": DEFAULT_VALIDATE_MIN_AGREEMENT,
    "rollout.tweak.steps.[].shadow.duration": DEFAULT_STEP_DURATION,
    "rollout.tweak.steps.[].shadow.percent": DEFAULT_SHADOW_PERCENT,
    "rollout.tweak.steps.[].shadow.minRequests": DEFAULT_SHADOW_MIN_REQUESTS,
    "rollout.tweak.steps.[].canary.duration": DEFAULT_STEP_DURATION,
    "rollout.analysis.interval": DEFAULT_INTERVAL,
    "rollout.analysis.minRequests": DEFAULT_MIN_REQUESTS,
    "rollout.analysis.failureLimit": DEFAULT_FAILURE_LIMIT,
    "rollout.analysis.minAgreement": DEFAULT_MIN_AGREEMENT,
    "rollout.analysis.maxPredictionShift": DEFAULT_MAX_PREDICTION_SHIFT,
    "rollout.progressDeadline": DEFAULT_PROGRESS_DEADLINE,
    "paused": DEFAULT_PAUSED,
}

PROTOCOLS = ("v2", "v1", "raw")
DRIFT_METHODS = ("psi", "jsd")
SOURCE_DIRECT = "direct"
SOURCE_PROMETHEUS = "prometheus"
#: The change kinds that can have steps ("new" goes live at once).
STEPPED_CHANGES = ("replacement", "tweak")

StepKind = Literal["validate", "shadow", "canary", "pause"]
DriftMethodName = Literal["psi", "jsd"]


class SpecError(ValueError):
    """The spec cannot be turned into pods (something the schema could not catch)."""


# -- durations ------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int | None, default: float) -> float:
    """'1h30m' -> 5400.0; the CRD's pattern guarantees the shape."""
    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _seconds(text: str) -> float:
    """A default duration of this module in seconds."""
    return parse_duration(text, 0.0)


# -- the typed spec -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigMapKeyRef:
    """A key of a ConfigMap in the ModelDeployment's namespace."""

    name: str
    key: str


#: A validate step's golden set: a key of a ConfigMap.
GoldenSetRef = ConfigMapKeyRef


@dataclass(frozen=True)
class ModelSpec:
    """Identity of the model artifact: changing any of it is a replacement."""

    name: str
    version: str
    uri: str | None = None


@dataclass(frozen=True)
class ServerSpec:
    """The serving container, as the user wrote it plus defaults.

    Lists and maps stay plain JSON values (deep-copied) because they go into the
    Pod template verbatim.
    """

    image: str
    port: int = DEFAULT_SERVER_PORT
    protocol: str = DEFAULT_PROTOCOL
    readiness_path: str = "/v2/health/ready"
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SidecarLimits:
    """Sidecar knobs that reach the sidecar's settings file."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    feature_cap: int = DEFAULT_FEATURE_CAP


@dataclass(frozen=True)
class DriftSpec:
    """Drift statistic and thresholds (judged by the operator, computed from sidecar counts)."""

    method: str = DEFAULT_DRIFT_METHOD
    warning: float = DEFAULT_DRIFT_WARNING
    threshold: float = DEFAULT_DRIFT_THRESHOLD


@dataclass(frozen=True)
class SLOSpec:
    """The service-level objectives health and the rollout gates judge against."""

    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_latency_p95: float = _seconds(DEFAULT_MAX_LATENCY_P95)


@dataclass(frozen=True)
class MetricsSpec:
    """Where the operator reads the sidecars' counters."""

    source: str = DEFAULT_METRICS_SOURCE
    prometheus_url: str | None = None

    @property
    def source_key(self) -> tuple[str, str]:
        """ModelDeployments with the same key share one source (and one batch of queries)."""
        if self.source == SOURCE_PROMETHEUS and self.prometheus_url:
            return (SOURCE_PROMETHEUS, self.prometheus_url.rstrip("/"))
        return (SOURCE_DIRECT, "")


@dataclass(frozen=True)
class MonitoringSpec:
    """``spec.monitoring``; ``problem`` says why a value could not be used (defaults kept)."""

    reference: ConfigMapKeyRef | None = None
    window: str = DEFAULT_WINDOW
    drift: DriftSpec = field(default_factory=DriftSpec)
    sidecar: SidecarLimits = field(default_factory=SidecarLimits)
    slo: SLOSpec = field(default_factory=SLOSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    window_seconds: float = _seconds(DEFAULT_WINDOW)
    problem: str | None = None


@dataclass(frozen=True)
class Tolerance:
    """When two numeric predictions agree in shadow.

    They agree when ``|candidate - stable| <= absolute + relative x |stable|``.

    ``absolute`` None leaves it to the stable's sidecar: 5 % of the prediction
    standard deviation of its reference profile (0 without one), so the
    default suits the target's scale. Class labels are compared as labels.
    """

    absolute: float | None = None
    relative: float = DEFAULT_RELATIVE_TOLERANCE

    def sidecar_settings(self) -> dict[str, float]:
        """The keys of the sidecar's ``shadow`` block (docs/sidecar.md)."""
        out = {"relativeTolerance": self.relative}
        if self.absolute is not None:
            out["tolerance"] = self.absolute
        return out


@dataclass(frozen=True)
class Step:
    """One rollout step, with its defaults resolved."""

    kind: StepKind
    duration_seconds: float | None = None
    weight: int = 0  # canary: share of live traffic, percent
    percent: int = 0  # shadow: share of live requests mirrored, percent
    min_requests: int | None = None  # shadow: compared requests needed
    golden_set: GoldenSetRef | None = None
    min_agreement: float | None = None  # validate: share of golden outputs reproduced
    #: shadow: when numeric predictions agree (the step's own keys over the analysis')
    tolerance: Tolerance | None = None

    def describe(self) -> str:
        if self.kind == "canary":
            return f"canary {self.weight}%"
        if self.kind == "shadow":
            return f"shadow {self.percent}%"
        if self.kind == "pause":
            return "pause" if self.duration_seconds is None else "pause (timed)"
        return "validate"


@dataclass(frozen=True)
class AnalysisSpec:
    """``spec.rollout.analysis``: how the gates judge each step."""

    interval_seconds: float = _seconds(DEFAULT_INTERVAL)
    min_requests: int = DEFAULT_MIN_REQUESTS
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_prediction_shift: float = DEFAULT_MAX_PREDICTION_SHIFT
    tolerance: Tolerance = field(default_factory=Tolerance)


@dataclass(frozen=True)
class RolloutPolicy:
    """``spec.rollout`` for one change kind, plus the SLOs the gates use."""

    steps: tuple[Step, ...]
    interval_seconds: float = _seconds(DEFAULT_INTERVAL)
    min_requests: int = DEFAULT_MIN_REQUESTS
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_prediction_shift: float = DEFAULT_MAX_PREDICTION_SHIFT
    progress_deadline_seconds: float = _seconds(DEFAULT_PROGRESS_DEADLINE)
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_latency_p95: float = _seconds(DEFAULT_MAX_LATENCY_P95)


@dataclass(frozen=True)
class RolloutSpec:
    """``spec.rollout``; ``problem`` says why it could not be read (then: blue/green)."""

    replacement: tuple[Step, ...] = ()
    tweak: tuple[Step, ...] = ()
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    progress_deadline_seconds: float = _seconds(DEFAULT_PROGRESS_DEADLINE)
    #: ``trafficRouting.gatewayAPI.httpRoute``: the HTTPRoute whose weights Vigil sets.
    http_route: str | None = None
    problem: str | None = None

    def steps_for(self, change: str) -> tuple[Step, ...]:
        """The steps of a change kind ('new' has none)."""
        return {"replacement": self.replacement, "tweak": self.tweak}.get(change, ())

    def policy(self, change: str, slo: SLOSpec) -> RolloutPolicy:
        """What ``vigil.core.rollout.decide`` judges one change kind by."""
        analysis = self.analysis
        return RolloutPolicy(
            steps=self.steps_for(change),
            interval_seconds=analysis.interval_seconds,
            min_requests=analysis.min_requests,
            failure_limit=analysis.failure_limit,
            min_agreement=analysis.min_agreement,
            max_prediction_shift=analysis.max_prediction_shift,
            progress_deadline_seconds=self.progress_deadline_seconds,
            max_error_rate=slo.max_error_rate,
            max_latency_p95=slo.max_latency_p95,
        )


@dataclass(frozen=True)
class ModelDeploymentSpec:
    """A parsed, defaulted spec."""

    model: ModelSpec
    server: ServerSpec
    replicas: int = DEFAULT_REPLICAS
    config: Mapping[str, str] = field(default_factory=dict)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    paused: bool = DEFAULT_PAUSED


# -- the health loop's view -----------------------------------------------------------------


@dataclass(frozen=True)
class HealthPolicy:
    """The thresholds of ``spec.monitoring`` (and ``rollout.analysis.minRequests``)."""

    window_seconds: float = _seconds(DEFAULT_WINDOW)
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_latency_p95: float = _seconds(DEFAULT_MAX_LATENCY_P95)
    drift_method: DriftMethodName = DEFAULT_DRIFT_METHOD  # type: ignore[assignment]
    drift_warning: float = DEFAULT_DRIFT_WARNING
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    min_requests: int = DEFAULT_MIN_REQUESTS


@dataclass(frozen=True)
class MonitoringSettings:
    """What the health loop needs from one ModelDeployment's spec."""

    policy: HealthPolicy
    source: str = SOURCE_DIRECT
    prometheus_url: str | None = None
    #: (ConfigMap name, key) of the reference profile, if any.
    reference: tuple[str, str] | None = None

    @property
    def source_key(self) -> tuple[str, str]:
        """ModelDeployments with the same key share one source (and one batch of queries)."""
        return MetricsSpec(self.source, self.prometheus_url).source_key


def health_settings(monitoring: MonitoringSpec, analysis: AnalysisSpec) -> MonitoringSettings:
    """The health loop's settings from the typed sections.

    Raises ValueError with ``monitoring.problem`` when a value could not be used.
    """
    if monitoring.problem:
        raise ValueError(monitoring.problem)
    reference = monitoring.reference
    return MonitoringSettings(
        policy=HealthPolicy(
            window_seconds=monitoring.window_seconds,
            max_error_rate=monitoring.slo.max_error_rate,
            max_latency_p95=monitoring.slo.max_latency_p95,
            drift_method=monitoring.drift.method,  # type: ignore[arg-type]
            drift_warning=monitoring.drift.warning,
            drift_threshold=monitoring.drift.threshold,
            min_requests=analysis.min_requests,
        ),
        source=monitoring.metrics.source,
        prometheus_url=monitoring.metrics.prometheus_url,
        reference=None if reference is None else (reference.name, reference.key),
    )


def monitoring_settings(spec: Mapping[str, Any] | None) -> MonitoringSettings:
    """``spec.monitoring`` (and ``rollout.analysis.minRequests``) with the CRD's defaults.

    For a spec that need not name a model (the health loop reads only these
    sections). Raises ValueError for a value the schema should have refused.
    """
    raw = _section(spec)
    return health_settings(_monitoring(raw), _rollout(_section(raw.get("rollout"))).analysis)


# -- parsing ------------------------------------------------------------------------------


def default_readiness_path(protocol: str, model_name: str) -> str:
    """The health endpoint each protocol's servers conventionally expose."""
    if protocol == "v2":
        return "/v2/health/ready"
    if protocol == "v1":
        return f"/v1/models/{model_name}"
    return "/"


def _section(value: Any) -> Mapping[str, Any]:
    """A section that is absent or not an object reads as empty."""
    return value if isinstance(value, Mapping) else {}


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object")
    return value


def _required_str(source: Mapping[str, Any], key: str, where: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}.{key} is required")
    return value


def _reported(parse: Callable[[], Any], default: Any) -> Any:
    """Parse a section, or keep its defaults and say why (see the module docstring)."""
    try:
        return parse()
    except (ValueError, KeyError, TypeError) as error:
        return replace(default, problem=str(error) or type(error).__name__)


def parse_spec(name: str, spec: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    """Turn `.spec` into typed values, applying the CRD's defaults.

    Raises SpecError for what an older schema or a non-validating client could
    let through and the pods cannot take (a missing model version, a wrong
    protocol): the caller reports it as the InvalidSpec condition instead of
    crashing.
    """
    spec = _mapping(spec, "spec")
    model_raw = _mapping(spec.get("model"), "spec.model")
    model = ModelSpec(
        name=str(model_raw.get("name") or name),
        version=_required_str(model_raw, "version", "spec.model"),
        uri=model_raw.get("uri") or None,
    )
    replicas_raw = spec.get("replicas")
    replicas = DEFAULT_REPLICAS if replicas_raw is None else int(replicas_raw)
    if replicas < 1:
        raise SpecError("spec.replicas must be at least 1")
    config = {str(key): str(value) for key, value in _mapping(spec.get("config"), "config").items()}
    return ModelDeploymentSpec(
        model=model,
        server=_server(_mapping(spec.get("server"), "spec.server"), model.name),
        replicas=replicas,
        config=config,
        monitoring=_monitoring(spec),
        rollout=_reported(
            lambda: _rollout(_mapping(spec.get("rollout"), "spec.rollout")), RolloutSpec()
        ),
        paused=bool(spec.get("paused", DEFAULT_PAUSED)),
    )


def _server(raw: Mapping[str, Any], model_name: str) -> ServerSpec:
    protocol = str(raw.get("protocol") or DEFAULT_PROTOCOL)
    if protocol not in PROTOCOLS:
        raise SpecError(f"spec.server.protocol must be one of {', '.join(PROTOCOLS)}")
    return ServerSpec(
        image=_required_str(raw, "image", "spec.server"),
        port=int(raw.get("port") or DEFAULT_SERVER_PORT),
        protocol=protocol,
        readiness_path=str(
            raw.get("readinessPath") or default_readiness_path(protocol, model_name)
        ),
        command=tuple(str(item) for item in raw.get("command") or ()),
        args=tuple(str(item) for item in raw.get("args") or ()),
        env=tuple(copy.deepcopy(dict(item)) for item in raw.get("env") or ()),
        resources=copy.deepcopy(dict(_mapping(raw.get("resources"), "resources"))),
    )


def _monitoring(spec: Mapping[str, Any]) -> MonitoringSpec:
    """``spec.monitoring``: the reference and sidecar limits shape the pods (SpecError);
    the thresholds and the source only judge (a problem is reported, defaults kept)."""
    raw = _mapping(spec.get("monitoring"), "spec.monitoring")
    reference_raw = _mapping(raw.get("reference"), "spec.monitoring.reference")
    reference: ConfigMapKeyRef | None = None
    if reference_raw:
        ref = _mapping(reference_raw.get("configMapKeyRef"), "configMapKeyRef")
        where = "spec.monitoring.reference.configMapKeyRef"
        reference = ConfigMapKeyRef(
            name=_required_str(ref, "name", where), key=_required_str(ref, "key", where)
        )
    drift_raw = _mapping(raw.get("drift"), "spec.monitoring.drift")
    sidecar_raw = _mapping(raw.get("sidecar"), "spec.monitoring.sidecar")
    shaping = MonitoringSpec(
        reference=reference,
        window=str(raw.get("window") or DEFAULT_WINDOW),
        drift=DriftSpec(
            method=str(drift_raw.get("method") or DEFAULT_DRIFT_METHOD),
            warning=float(drift_raw.get("warning", DEFAULT_DRIFT_WARNING)),
            threshold=float(drift_raw.get("threshold", DEFAULT_DRIFT_THRESHOLD)),
        ),
        sidecar=SidecarLimits(
            max_body_bytes=int(sidecar_raw.get("maxBodyBytes") or DEFAULT_MAX_BODY_BYTES),
            feature_cap=int(sidecar_raw.get("featureCap") or DEFAULT_FEATURE_CAP),
        ),
    )
    return _reported(lambda: _judging(shaping, raw), shaping)


def _judging(shaping: MonitoringSpec, raw: Mapping[str, Any]) -> MonitoringSpec:
    """The window in seconds, the SLOs and the metrics source (ValueError: unusable)."""
    if shaping.drift.method not in DRIFT_METHODS:
        raise ValueError(f"spec.monitoring.drift.method {shaping.drift.method!r} is not psi or jsd")
    window_seconds = parse_duration(shaping.window, _seconds(DEFAULT_WINDOW))
    if window_seconds <= 0:
        raise ValueError("spec.monitoring.window must be longer than 0s")
    slo = _section(raw.get("slo"))
    metrics = _section(raw.get("metrics"))
    source = str(metrics.get("source") or DEFAULT_METRICS_SOURCE)
    url = metrics.get("prometheusURL")
    if source == SOURCE_PROMETHEUS and not url:
        raise ValueError("spec.monitoring.metrics.prometheusURL is required with source prometheus")
    return replace(
        shaping,
        window_seconds=window_seconds,
        slo=SLOSpec(
            max_error_rate=float(slo.get("maxErrorRate", DEFAULT_MAX_ERROR_RATE)),
            max_latency_p95=parse_duration(
                slo.get("maxLatencyP95"), _seconds(DEFAULT_MAX_LATENCY_P95)
            ),
        ),
        metrics=MetricsSpec(
            source=source if source in (SOURCE_DIRECT, SOURCE_PROMETHEUS) else SOURCE_DIRECT,
            prometheus_url=str(url) if url else None,
        ),
    )


def parse_tolerance(raw: Mapping[str, Any] | None, base: Tolerance) -> Tolerance:
    """``tolerance: {absolute, relative}``; an absent key keeps ``base``'s."""
    raw = raw or {}
    absolute = raw.get("absolute")
    relative = raw.get("relative")
    return Tolerance(
        absolute=float(absolute) if absolute is not None else base.absolute,
        relative=float(relative) if relative is not None else base.relative,
    )


def parse_step(raw: Mapping[str, Any], tolerance: Tolerance | None = None) -> Step:
    """One step of ``spec.rollout.<change>.steps``; ``tolerance`` is ``analysis.tolerance``."""
    duration = _seconds(DEFAULT_STEP_DURATION)
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
    raise ValueError(f"unknown rollout step {sorted(raw)}")


def _rollout(raw: Mapping[str, Any]) -> RolloutSpec:
    """``spec.rollout`` (ValueError, KeyError or TypeError: unreadable)."""
    analysis_raw = _section(raw.get("analysis"))
    tolerance = parse_tolerance(analysis_raw.get("tolerance"), Tolerance())

    def steps(change: str) -> tuple[Step, ...]:
        section = _section(raw.get(change))
        return tuple(parse_step(s, tolerance) for s in section.get("steps") or ())

    route = _section(_section(raw.get("trafficRouting")).get("gatewayAPI")).get("httpRoute")
    return RolloutSpec(
        replacement=steps("replacement"),
        tweak=steps("tweak"),
        analysis=AnalysisSpec(
            interval_seconds=parse_duration(
                analysis_raw.get("interval"), _seconds(DEFAULT_INTERVAL)
            ),
            min_requests=int(analysis_raw.get("minRequests", DEFAULT_MIN_REQUESTS)),
            failure_limit=int(analysis_raw.get("failureLimit", DEFAULT_FAILURE_LIMIT)),
            min_agreement=float(analysis_raw.get("minAgreement", DEFAULT_MIN_AGREEMENT)),
            max_prediction_shift=float(
                analysis_raw.get("maxPredictionShift", DEFAULT_MAX_PREDICTION_SHIFT)
            ),
            tolerance=tolerance,
        ),
        progress_deadline_seconds=parse_duration(
            raw.get("progressDeadline"), _seconds(DEFAULT_PROGRESS_DEADLINE)
        ),
        http_route=str(route) if route else None,
    )


def parse_policy(
    rollout: Mapping[str, Any],
    change: str,
    *,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_latency_p95: float = _seconds(DEFAULT_MAX_LATENCY_P95),
) -> RolloutPolicy:
    """The policy for one change kind ('replacement' or 'tweak'; 'new' has no steps)."""
    return _rollout(rollout).policy(change, SLOSpec(max_error_rate, max_latency_p95))
