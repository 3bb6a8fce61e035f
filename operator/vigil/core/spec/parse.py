"""Reading ``.spec``: the only code that looks at the raw mapping (see the package)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vigil.common.uris import shown_uri
from vigil.core.spec.defaults import (
    DEFAULT_BAKE_MIN_REPLICAS,
    DEFAULT_MODEL_PATH,
    DEFAULT_PAUSED,
    DEFAULT_PROTOCOL,
    DEFAULT_REPLICAS,
    DEFAULT_SERVER_PORT,
    DEFAULT_SHADOW_MIN_REQUESTS,
    DEFAULT_SHADOW_PERCENT,
    DEFAULT_STEP_DURATION,
    DEFAULT_VALIDATE_MIN_AGREEMENT,
    DRIFT_METHODS,
    PROTOCOLS,
    SOURCE_DIRECT,
    SOURCE_PROMETHEUS,
    SpecError,
    default_drift_warning,
    default_readiness_path,
    default_seconds,
    parse_duration,
)
from vigil.core.spec.health import MonitoringSettings, health_settings
from vigil.core.spec.model import (
    FETCHED_SCHEMES,
    HTTPS_SCHEME,
    PVC_SCHEME,
    S3_SCHEME,
    AnalysisSpec,
    BakeSpec,
    ConfigMapKeyRef,
    DriftSpec,
    FetchSpec,
    GoldenSetRef,
    MetricsSpec,
    ModelDeploymentSpec,
    ModelSpec,
    MonitoringSpec,
    PerformanceGate,
    PerformanceSpec,
    RolloutPolicy,
    RolloutSpec,
    ServerSpec,
    SidecarLimits,
    SLOSpec,
    Step,
    StorageSpec,
    Tolerance,
    parse_pvc_uri,
)

# An absent key takes the typed section's own default (vigil.core.spec.model), so each
# default is written once; only those of sections without defaults are named here.
_DEFAULT_MONITORING = MonitoringSpec()
_DEFAULT_ANALYSIS = AnalysisSpec()
_DEFAULT_ROLLOUT = RolloutSpec()
_DEFAULT_GATE = PerformanceGate()


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


def rollout_or_defaults(spec: Mapping[str, Any]) -> RolloutSpec:
    """``spec.rollout``; where the operator cannot use it, its defaults with ``problem``
    saying why (the rollout waits for a fix; monitoring and status go on)."""
    return _reported(
        lambda: parse_rollout(_mapping(spec.get("rollout"), "spec.rollout")), RolloutSpec()
    )


def parse_spec(name: str, spec: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    """Turn `.spec` into typed values, applying the CRD's defaults.

    Raises SpecError for what an older schema or a non-validating client could
    let through and the pods cannot take (a missing model version, a wrong
    protocol): the caller reports it as the InvalidSpec condition instead of
    crashing.
    """
    spec = _mapping(spec, "spec")
    model = _model(_mapping(spec.get("model"), "spec.model"), name)
    replicas_raw = spec.get("replicas")
    replicas = DEFAULT_REPLICAS if replicas_raw is None else int(replicas_raw)
    if replicas < 1:
        raise SpecError("spec.replicas must be at least 1")
    config = {str(key): str(value) for key, value in _mapping(spec.get("config"), "config").items()}
    server = _server(_mapping(spec.get("server"), "spec.server"), model.name)
    return ModelDeploymentSpec(
        model=model,
        server=server,
        replicas=replicas,
        config=config,
        monitoring=_monitoring(spec),
        rollout=_served_by(rollout_or_defaults(spec), server),
        paused=bool(spec.get("paused", DEFAULT_PAUSED)),
    )


def _served_by(rollout: RolloutSpec, server: ServerSpec) -> RolloutSpec:
    """The rollout, or its defaults with a problem where it judges what a raw server's
    answers (never read) cannot give: shadow copies, labels scored against predictions. It
    would hold every rollout until its deadline (the CRD refuses both)."""
    if server.protocol != "raw" or rollout.problem:
        return rollout
    raw = "a raw server (server.protocol raw) has its answers not read"
    if rollout.analysis.performance is not None:
        problem = f"spec.rollout.analysis.performance: {raw}, so no label is ever scored"
    elif any(step.kind == "shadow" for step in (*rollout.replacement, *rollout.tweak)):
        problem = f"spec.rollout: {raw}, so it gets no shadow copies: no step can shadow"
    else:
        return rollout
    return replace(_DEFAULT_ROLLOUT, problem=problem)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _model(raw: Mapping[str, Any], name: str) -> ModelSpec:
    """``spec.model``: the artifact, where the pods get it from, and how (the CRD's rules)."""
    uri = str(raw.get("uri") or "") or None
    if uri and uri.startswith(PVC_SCHEME):
        try:
            parse_pvc_uri(uri)
        except ValueError as error:
            raise SpecError(str(error)) from error
    model = ModelSpec(
        name=str(raw.get("name") or name),
        version=_required_str(raw, "version", "spec.model"),
        uri=uri,
        sha256=_sha256(raw.get("sha256"), uri),
        path=_model_path(raw.get("path")),
        storage=_storage(_mapping(raw.get("storage"), "spec.model.storage"), uri),
        fetch=_fetch(_mapping(raw.get("fetch"), "spec.model.fetch")),
    )
    if "path" in raw and not model.placed:
        raise SpecError(
            "spec.model.path is where Vigil puts the model: it needs a pvc://, http(s):// "
            "or s3:// spec.model.uri"
        )
    if "fetch" in raw and not model.fetched:
        raise SpecError("spec.model.fetch needs an http(s):// or s3:// spec.model.uri")
    return model


def _sha256(value: Any, uri: str | None) -> str | None:
    if value is None or value == "":
        return None
    digest = str(value).lower()
    if not _SHA256.fullmatch(digest):
        raise SpecError("spec.model.sha256 must be 64 hexadecimal digits")
    if uri is None or not uri.startswith(FETCHED_SCHEMES) or uri.endswith("/"):
        raise SpecError(
            "spec.model.sha256 is checked on one file or archive fetched over http(s):// or "
            "s3://: spec.model.uri must name one (not a prefix ending in '/')"
        )
    return digest


def _model_path(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_MODEL_PATH
    path = str(value)
    if not path.startswith("/") or {".", ".."} & set(path.split("/")) or path.strip("/") == "":
        raise SpecError(
            "spec.model.path must be an absolute folder other than / (no '.' or '..' segment)"
        )
    return path.rstrip("/")


def _storage(raw: Mapping[str, Any], uri: str | None) -> StorageSpec:
    where = "spec.model.storage"
    ca_raw = _mapping(raw.get("caConfigMapRef"), f"{where}.caConfigMapRef")
    secret_raw = _mapping(raw.get("secretRef"), f"{where}.secretRef")
    path_style = raw.get("pathStyle")
    storage = StorageSpec(
        secret=_required_str(secret_raw, "name", f"{where}.secretRef") if secret_raw else None,
        endpoint=str(raw["endpoint"]) if raw.get("endpoint") else None,
        region=str(raw["region"]) if raw.get("region") else None,
        path_style=None if path_style is None else bool(path_style),
        ca=ConfigMapKeyRef(
            name=_required_str(ca_raw, "name", f"{where}.caConfigMapRef"),
            key=_required_str(ca_raw, "key", f"{where}.caConfigMapRef"),
        )
        if ca_raw
        else None,
    )
    s3_only = {k: v for k, v in storage.inputs().items() if k != "ca"}
    scheme_ok = uri is not None and (
        uri.startswith(S3_SCHEME) or (uri.startswith(HTTPS_SCHEME) and not s3_only)
    )
    if storage.inputs() and not scheme_ok:
        raise SpecError(
            f"{where} is for s3:// URIs (its caConfigMapRef also for https://), "
            f"not for spec.model.uri {shown_uri(uri or '')!r}"
        )
    if storage.endpoint and not storage.endpoint.startswith(("http://", "https://")):
        raise SpecError(f"{where}.endpoint must be an http:// or https:// URL")
    return storage


def _fetch(raw: Mapping[str, Any]) -> FetchSpec:
    limit = raw.get("sizeLimit")
    resources = raw.get("resources")
    return FetchSpec(
        size_limit=None if limit is None or limit == "" else str(limit),
        resources=None
        if resources is None
        else copy.deepcopy(dict(_mapping(resources, "spec.model.fetch.resources"))),
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
        read_only_root_filesystem=bool(raw.get("readOnlyRootFilesystem", False)),
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
    threshold = float(drift_raw.get("threshold", _DEFAULT_MONITORING.drift.threshold))
    shaping = MonitoringSpec(
        reference=reference,
        window=str(raw.get("window") or _DEFAULT_MONITORING.window),
        drift=DriftSpec(
            method=str(drift_raw.get("method") or _DEFAULT_MONITORING.drift.method),
            warning=float(drift_raw.get("warning", default_drift_warning(threshold))),
            threshold=threshold,
            confidence=float(drift_raw.get("confidence", _DEFAULT_MONITORING.drift.confidence)),
        ),
        sidecar=SidecarLimits(
            max_body_bytes=int(
                sidecar_raw.get("maxBodyBytes") or _DEFAULT_MONITORING.sidecar.max_body_bytes
            ),
            feature_cap=int(
                sidecar_raw.get("featureCap") or _DEFAULT_MONITORING.sidecar.feature_cap
            ),
        ),
    )
    return _reported(lambda: _judging(shaping, raw), shaping)


def _judging(shaping: MonitoringSpec, raw: Mapping[str, Any]) -> MonitoringSpec:
    """The window in seconds, the SLOs and the metrics source (ValueError: unusable)."""
    if shaping.drift.method not in DRIFT_METHODS:
        raise ValueError(f"spec.monitoring.drift.method {shaping.drift.method!r} is not psi or jsd")
    if not 0.0 < shaping.drift.confidence < 1.0:
        raise ValueError(
            f"spec.monitoring.drift.confidence {shaping.drift.confidence:g} must be between 0 and 1"
        )
    window_seconds = parse_duration(
        shaping.window, _DEFAULT_MONITORING.window_seconds, "spec.monitoring.window"
    )
    if window_seconds <= 0:
        raise ValueError("spec.monitoring.window must be longer than 0s")
    slo = _section(raw.get("slo"))
    metrics = _section(raw.get("metrics"))
    source = str(metrics.get("source") or _DEFAULT_MONITORING.metrics.source)
    url = metrics.get("prometheusURL")
    # Under 10s (the CRD's rule); one stored before is kept: its p95 above 10s reads as 10s.
    max_latency_p95 = parse_duration(
        slo.get("maxLatencyP95"),
        _DEFAULT_MONITORING.slo.max_latency_p95,
        "spec.monitoring.slo.maxLatencyP95",
    )
    if source == SOURCE_PROMETHEUS and not url:
        raise ValueError("spec.monitoring.metrics.prometheusURL is required with source prometheus")
    return replace(
        shaping,
        window_seconds=window_seconds,
        performance=_performance(_section(raw.get("performance"))),
        slo=SLOSpec(
            max_error_rate=float(slo.get("maxErrorRate", _DEFAULT_MONITORING.slo.max_error_rate)),
            max_latency_p95=max_latency_p95,
        ),
        metrics=MetricsSpec(
            source=source if source in (SOURCE_DIRECT, SOURCE_PROMETHEUS) else SOURCE_DIRECT,
            prometheus_url=str(url) if url else None,
        ),
    )


def _one_limit(raw: Mapping[str, Any], where: str) -> None:
    """A performance section names one task's limit: accuracy or MAE."""
    if raw.get("minAccuracy") is not None and raw.get("maxMAE") is not None:
        raise ValueError(
            f"{where} takes minAccuracy (a classifier) or maxMAE (a regressor), not both"
        )


def _performance(raw: Mapping[str, Any]) -> PerformanceSpec:
    """``spec.monitoring.performance`` (ValueError: unusable)."""
    window = str(raw.get("window") or _DEFAULT_MONITORING.performance.window)
    window_seconds = parse_duration(
        window, _DEFAULT_MONITORING.performance.window_seconds, "spec.monitoring.performance.window"
    )
    if window_seconds <= 0:
        raise ValueError("spec.monitoring.performance.window must be longer than 0s")
    _one_limit(raw, "spec.monitoring.performance")
    min_accuracy, max_mae = raw.get("minAccuracy"), raw.get("maxMAE")
    return PerformanceSpec(
        min_accuracy=None if min_accuracy is None else float(min_accuracy),
        max_mae=None if max_mae is None else float(max_mae),
        max_drop=float(raw.get("maxDrop", _DEFAULT_MONITORING.performance.max_drop)),
        min_labels=int(raw.get("minLabels", _DEFAULT_MONITORING.performance.min_labels)),
        window=window,
        window_seconds=window_seconds,
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
    raise ValueError(f"unknown rollout step {sorted(raw)}")


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


def parse_policy(
    rollout: Mapping[str, Any],
    change: str,
    *,
    max_error_rate: float = _DEFAULT_MONITORING.slo.max_error_rate,
    max_latency_p95: float = _DEFAULT_MONITORING.slo.max_latency_p95,
) -> RolloutPolicy:
    """The policy for one change kind ('replacement' or 'tweak'; 'new' has no steps)."""
    return parse_rollout(rollout).policy(change, SLOSpec(max_error_rate, max_latency_p95))


def monitoring_settings(spec: Mapping[str, Any] | None) -> MonitoringSettings:
    """``spec.monitoring`` (and ``rollout.analysis.minRequests``) with the CRD's defaults.

    For a spec that need not name a model (the health loop reads only these
    sections). Raises ValueError for a monitoring value the schema should have refused;
    a rollout the operator cannot use gives its default ``minRequests``: the model is
    still judged while its rollout waits for a fix.
    """
    raw = _section(spec)
    return health_settings(_monitoring(raw), rollout_or_defaults(raw).analysis)
