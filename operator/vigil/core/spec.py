"""The ModelDeployment spec as typed, defaulted values.

The API server applies the CRD's defaults, but the operator must not depend
on that alone: objects stored before a default was added, or created through
a client that skipped defaulting, still have to reconcile to the same pods.
So every default of crds/modeldeployments.yaml is repeated here, once, and the
rest of the core reads these dataclasses instead of raw dicts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Defaults mirrored from crds/modeldeployments.yaml (keep both in sync).
DEFAULT_SERVER_PORT = 8080
DEFAULT_PROTOCOL = "v2"
DEFAULT_REPLICAS = 1
DEFAULT_WINDOW = "5m"
DEFAULT_MAX_BODY_BYTES = 10_485_760
DEFAULT_FEATURE_CAP = 20
DEFAULT_DRIFT_METHOD = "psi"
DEFAULT_DRIFT_WARNING = 0.1
DEFAULT_DRIFT_THRESHOLD = 0.2
PROTOCOLS = ("v2", "v1", "raw")


class SpecError(ValueError):
    """The spec cannot be turned into pods (something the schema could not catch)."""


@dataclass(frozen=True)
class ConfigMapKeyRef:
    """A key of a ConfigMap in the ModelDeployment's namespace."""

    name: str
    key: str


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
class MonitoringSpec:
    """Monitoring settings; only `reference` and `sidecar` shape the pods today."""

    reference: ConfigMapKeyRef | None = None
    window: str = DEFAULT_WINDOW
    drift: DriftSpec = field(default_factory=DriftSpec)
    sidecar: SidecarLimits = field(default_factory=SidecarLimits)


@dataclass(frozen=True)
class ModelDeploymentSpec:
    """A parsed, defaulted spec. `rollout` stays raw: later issues interpret it."""

    model: ModelSpec
    server: ServerSpec
    replicas: int = DEFAULT_REPLICAS
    config: Mapping[str, str] = field(default_factory=dict)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    rollout: Mapping[str, Any] = field(default_factory=dict)
    paused: bool = False


def default_readiness_path(protocol: str, model_name: str) -> str:
    """The health endpoint each protocol's servers conventionally expose."""
    if protocol == "v2":
        return "/v2/health/ready"
    if protocol == "v1":
        return f"/v1/models/{model_name}"
    return "/"


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


def parse_spec(name: str, spec: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    """Turn `.spec` into typed values, applying the CRD's defaults.

    Raises SpecError for what an older schema or a non-validating client could
    let through (a missing model version, a wrong protocol): the caller reports
    it as the InvalidSpec condition instead of crashing.
    """
    spec = _mapping(spec, "spec")
    model_raw = _mapping(spec.get("model"), "spec.model")
    server_raw = _mapping(spec.get("server"), "spec.server")
    monitoring_raw = _mapping(spec.get("monitoring"), "spec.monitoring")

    model = ModelSpec(
        name=str(model_raw.get("name") or name),
        version=_required_str(model_raw, "version", "spec.model"),
        uri=model_raw.get("uri") or None,
    )

    protocol = str(server_raw.get("protocol") or DEFAULT_PROTOCOL)
    if protocol not in PROTOCOLS:
        raise SpecError(f"spec.server.protocol must be one of {', '.join(PROTOCOLS)}")
    port = int(server_raw.get("port") or DEFAULT_SERVER_PORT)
    server = ServerSpec(
        image=_required_str(server_raw, "image", "spec.server"),
        port=port,
        protocol=protocol,
        readiness_path=str(
            server_raw.get("readinessPath") or default_readiness_path(protocol, model.name)
        ),
        command=tuple(str(item) for item in server_raw.get("command") or ()),
        args=tuple(str(item) for item in server_raw.get("args") or ()),
        env=tuple(copy.deepcopy(dict(item)) for item in server_raw.get("env") or ()),
        resources=copy.deepcopy(dict(_mapping(server_raw.get("resources"), "resources"))),
    )

    reference_raw = _mapping(monitoring_raw.get("reference"), "spec.monitoring.reference")
    reference: ConfigMapKeyRef | None = None
    if reference_raw:
        ref = _mapping(reference_raw.get("configMapKeyRef"), "configMapKeyRef")
        reference = ConfigMapKeyRef(
            name=_required_str(ref, "name", "spec.monitoring.reference.configMapKeyRef"),
            key=_required_str(ref, "key", "spec.monitoring.reference.configMapKeyRef"),
        )
    drift_raw = _mapping(monitoring_raw.get("drift"), "spec.monitoring.drift")
    sidecar_raw = _mapping(monitoring_raw.get("sidecar"), "spec.monitoring.sidecar")
    monitoring = MonitoringSpec(
        reference=reference,
        window=str(monitoring_raw.get("window") or DEFAULT_WINDOW),
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

    replicas_raw = spec.get("replicas")
    replicas = DEFAULT_REPLICAS if replicas_raw is None else int(replicas_raw)
    if replicas < 1:
        raise SpecError("spec.replicas must be at least 1")
    config = {str(key): str(value) for key, value in _mapping(spec.get("config"), "config").items()}
    return ModelDeploymentSpec(
        model=model,
        server=server,
        replicas=replicas,
        config=config,
        monitoring=monitoring,
        rollout=copy.deepcopy(dict(_mapping(spec.get("rollout"), "spec.rollout"))),
        paused=bool(spec.get("paused", False)),
    )
