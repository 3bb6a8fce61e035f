"""Reading ``.spec``: the only code that looks at the raw mapping (see the package)."""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vigil.common.uris import shown_uri
from vigil.core.spec.defaults import (
    DEFAULT_MODEL_PATH,
    DEFAULT_PAUSED,
    DEFAULT_PROTOCOL,
    DEFAULT_REPLICAS,
    DEFAULT_SERVER_PORT,
    DRIFT_METHODS,
    PROTOCOLS,
    SOURCE_DIRECT,
    SOURCE_PROMETHEUS,
    SpecError,
    default_drift_warning,
    default_readiness_path,
    parse_duration,
)
from vigil.core.spec.health import MonitoringSettings, health_settings
from vigil.core.spec.model import (
    FETCHED_SCHEMES,
    HTTPS_SCHEME,
    PVC_SCHEME,
    S3_SCHEME,
    AnalysisSpec,
    ConfigMapKeyRef,
    DriftSpec,
    FetchSpec,
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
    StorageSpec,
    parse_pvc_uri,
)
from vigil.core.spec.reading import mapping as _mapping
from vigil.core.spec.reading import one_limit as _one_limit
from vigil.core.spec.reading import required_str as _required_str
from vigil.core.spec.reading import section as _section
from vigil.core.spec.rollout_parse import parse_rollout

# An absent key takes the typed section's own default (vigil.core.spec.model), so each
# default is written once; only those of sections without defaults are named here.
_DEFAULT_MONITORING = MonitoringSpec()
_DEFAULT_ANALYSIS = AnalysisSpec()
_DEFAULT_ROLLOUT = RolloutSpec()
_DEFAULT_GATE = PerformanceGate()


def _reported(parse: Callable[[], Any], default: Any) -> Any:
    """Parse a section, or keep its defaults and say why (see the module docstring)."""
    try:
        return parse()
    except (ValueError, KeyError, TypeError) as error:
        return replace(default, problem=str(error) or type(error).__name__)


def rollout_or_defaults(spec: Mapping[str, Any]) -> RolloutSpec:
    """``spec.rollout``; where the operator cannot use it, its defaults with ``problem``
    saying why (the rollout waits for a fix; monitoring and status go on)."""
    rollout = _reported(
        lambda: parse_rollout(_mapping(spec.get("rollout"), "spec.rollout")), RolloutSpec()
    )
    return _served_by(rollout, str(_section(spec.get("server")).get("protocol") or ""))


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
        rollout=rollout_or_defaults(spec),
        paused=bool(spec.get("paused", DEFAULT_PAUSED)),
    )


def _served_by(rollout: RolloutSpec, protocol: str) -> RolloutSpec:
    """The rollout, or its defaults with a problem where it judges what a raw server's
    answers (never read) cannot give: shadow copies, labels scored against predictions. It
    would hold every rollout until its deadline (the CRD refuses both)."""
    if protocol != "raw" or rollout.problem:
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
_PLACED_SCHEMES = (*FETCHED_SCHEMES, PVC_SCHEME)


def _model(raw: Mapping[str, Any], name: str) -> ModelSpec:
    """``spec.model``: the artifact, where the pods get it from, and how (the CRD's rules)."""
    uri = str(raw.get("uri") or "") or None
    scheme = (uri or "").partition("://")[0]
    if scheme != scheme.lower() and f"{scheme.lower()}://" in _PLACED_SCHEMES:
        # Written so, it is neither fetched nor mounted: the server gets it, credentials too.
        raise SpecError(
            f"spec.model.uri: write the scheme {scheme.lower()}:// in lowercase (the CRD "
            "refuses it otherwise)"
        )
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


def _root(path: str) -> bool:
    """Whether an absolute path names the root ('/', '//', '/.', '/./')."""
    return posixpath.normpath("/" + path.lstrip("/")) == "/"


def _model_path(value: Any) -> str:
    if value is None or value == "":
        return DEFAULT_MODEL_PATH
    path = str(value)
    # '/.' is the root too; '/mnt/models/.' mounted as it always did.
    if not path.startswith("/") or ".." in path.split("/") or _root(path):
        raise SpecError("spec.model.path must be an absolute folder other than / (no '..')")
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
