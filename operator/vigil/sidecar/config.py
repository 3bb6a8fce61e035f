"""Sidecar settings: file schema, validation, and the run-time watcher.

The operator writes the settings file into a ConfigMap mounted in the pod;
its keys are a contract documented in ``docs/sidecar.md``. Unknown keys are
errors so that a typo never silently turns monitoring off.

Most settings are fixed for the life of the process (they shape the pod's
revision). The keys in :data:`RUNTIME_KEYS` (``shadow``,
``monitoring.samplePercent``, ``logLevel``) are re-read while running:
Kubernetes updates a mounted ConfigMap by swapping a symlink, so the
watcher polls the file's content rather than relying on inotify.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "RUNTIME_KEYS",
    "ConfigError",
    "FeedbackSettings",
    "Settings",
    "SettingsWatcher",
    "ShadowSettings",
    "load_settings",
    "settings_from_mapping",
]

log = logging.getLogger("vigil.sidecar")

RUNTIME_KEYS = ("shadow", "monitoring.samplePercent", "logLevel")
PROTOCOLS = ("v2", "v1", "raw")
ROLES = ("stable", "candidate")


class ConfigError(ValueError):
    """The settings file or flags are invalid."""


@dataclass(frozen=True)
class ShadowSettings:
    """Copy a sample of requests to another revision and compare predictions."""

    target: str = ""
    target_revision: str = ""
    percent: float = 0.0
    #: Regression: |local - target| <= tolerance + relative_tolerance x |local| agrees.
    #: None: 5 % of the reference profile's prediction standard deviation (0 without one).
    tolerance: float | None = None
    relative_tolerance: float = 0.05
    #: classification | regression: how answers are compared; empty = the reference
    #: profile's task (without one, guessed from the answers: docs/sidecar.md).
    task: str = ""
    queue_size: int = 256
    timeout_seconds: float = 5.0
    concurrency: int = 4

    @property
    def enabled(self) -> bool:
        return bool(self.target) and self.percent > 0


@dataclass(frozen=True)
class FeedbackSettings:
    """Ground truth: the join store and the feedback port (docs/howto/feedback.md)."""

    #: Off unless the settings say so (the operator turns it on for its pods).
    enabled: bool = False
    #: Empty: the serving port's host (listen.host).
    host: str = ""
    port: int = 8001
    #: This pod's feedback address as peers reach it (host:port); default $VIGIL_POD_IP:port.
    advertise: str = ""
    #: The other sidecars of the ModelDeployment: host:port entries; a DNS name may
    #: resolve to many addresses (a headless Service).
    peers: tuple[str, ...] = ()
    #: classification | regression; empty = the reference profile's task.
    task: str = ""
    window_seconds: float = 7 * 24 * 3600.0
    max_predictions: int = 250_000
    max_rows_per_prediction: int = 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_labels_per_request: int = 10_000
    labels_per_second: float = 2_000.0
    burst_labels: int = 20_000
    max_concurrent_requests: int = 2
    peer_timeout_seconds: float = 5.0
    handoff_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class Settings:
    """Every sidecar setting, with the defaults documented in docs/sidecar.md."""

    model_name: str = ""
    model_version: str = ""
    revision: str = ""
    role: str = "stable"
    protocol: str = "v2"
    upstream: str = "http://127.0.0.1:8080"
    readiness_path: str = ""
    upstream_timeout_seconds: float = 60.0
    #: "": every address of both families (a pod's IP may be IPv6; "0.0.0.0" is IPv4 only).
    listen_host: str = ""
    listen_port: int = 8000
    idle_timeout_seconds: float = 75.0
    metrics_host: str = ""
    metrics_port: int = 9090
    max_body_bytes: int = 10 * 1024 * 1024
    reference_profile: str = ""
    max_features: int = 20
    features: tuple[str, ...] = ()
    sample_percent: float = 100.0
    queue_size: int = 1024
    prediction_window_seconds: float = 300.0
    shutdown_delay_seconds: float = 0.0
    drain_timeout_seconds: float = 20.0
    reload_interval_seconds: float = 2.0
    log_level: str = "info"
    event_loop: str = "auto"
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    config_path: str = ""
    #: Fields a flag or an environment variable set: the file never changes them.
    pinned: frozenset[str] = frozenset()

    @property
    def upstream_host(self) -> str:
        return urlsplit(self.upstream).hostname or "127.0.0.1"

    @property
    def upstream_port(self) -> int:
        return urlsplit(self.upstream).port or 80

    @property
    def effective_readiness_path(self) -> str:
        """Where the model server says it is ready (defaults follow the protocol)."""
        if self.readiness_path:
            return self.readiness_path
        if self.protocol == "v2":
            return "/v2/health/ready"
        if self.protocol == "v1" and self.model_name:
            return f"/v1/models/{self.model_name}"
        return "/"

    def runtime_view(self) -> tuple[Any, ...]:
        return (self.shadow, self.sample_percent, self.log_level)


# Mapping from the file's nested camelCase keys to Settings fields.
_SCHEMA: dict[str, dict[str, str] | str] = {
    "model": {"name": "model_name", "version": "model_version"},
    "revision": "revision",
    "role": "role",
    "protocol": "protocol",
    "upstream": {
        "url": "upstream",
        "readinessPath": "readiness_path",
        "timeoutSeconds": "upstream_timeout_seconds",
    },
    "listen": {
        "host": "listen_host",
        "port": "listen_port",
        "idleTimeoutSeconds": "idle_timeout_seconds",
    },
    "metrics": {"host": "metrics_host", "port": "metrics_port"},
    "limits": {"maxBodyBytes": "max_body_bytes"},
    "monitoring": {
        "referenceProfile": "reference_profile",
        "maxFeatures": "max_features",
        "features": "features",
        "samplePercent": "sample_percent",
        "queueSize": "queue_size",
        "predictionWindowSeconds": "prediction_window_seconds",
    },
    "shutdown": {
        "delaySeconds": "shutdown_delay_seconds",
        "drainTimeoutSeconds": "drain_timeout_seconds",
    },
    "reloadIntervalSeconds": "reload_interval_seconds",
    "logLevel": "log_level",
    "eventLoop": "event_loop",
}
_SHADOW_KEYS = {
    "target": "target",
    "targetRevision": "target_revision",
    "percent": "percent",
    "tolerance": "tolerance",
    "relativeTolerance": "relative_tolerance",
    "task": "task",
    "queueSize": "queue_size",
    "timeoutSeconds": "timeout_seconds",
    "concurrency": "concurrency",
}
_FEEDBACK_KEYS = {
    "enabled": "enabled",
    "host": "host",
    "port": "port",
    "advertise": "advertise",
    "peers": "peers",
    "task": "task",
    "windowSeconds": "window_seconds",
    "maxPredictions": "max_predictions",
    "maxRowsPerPrediction": "max_rows_per_prediction",
    "maxBodyBytes": "max_body_bytes",
    "maxLabelsPerRequest": "max_labels_per_request",
    "labelsPerSecond": "labels_per_second",
    "burstLabels": "burst_labels",
    "maxConcurrentRequests": "max_concurrent_requests",
    "peerTimeoutSeconds": "peer_timeout_seconds",
    "handoffTimeoutSeconds": "handoff_timeout_seconds",
}
_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any, kind: str) -> Any:
    """Convert one value to the field's type, or raise ConfigError."""
    kind = kind.removesuffix(" | None")  # null never gets here: it means the default
    try:
        if kind == "str":
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise TypeError
            return str(value)
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{name}: must be a finite number, got {value!r}")
            return number
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "tuple[str, ...]":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return tuple(value)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected {kind.split('[')[0]}, got {value!r}") from exc
    raise ConfigError(f"{name}: unsupported type {kind}")


def _section_values(
    section: str, doc: Any, keys: Mapping[str, str], settings: type
) -> dict[str, Any]:
    """The attributes a settings section (``shadow``, ``feedback``) sets, coerced to
    its dataclass's field types; unknown keys are refused, null ones skipped."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{section}: expected an object")
    values: dict[str, Any] = {}
    kinds = {f.name: f.type for f in fields(settings)}
    for key, value in doc.items():
        if value is None:
            continue
        if key not in keys:
            raise ConfigError(f"{section}.{key}: unknown key")
        attr = keys[key]
        values[attr] = _coerce(f"{section}.{key}", value, str(kinds[attr]))
    return values


def _shadow_from(doc: Any, base: ShadowSettings) -> ShadowSettings:
    if doc is None:
        return ShadowSettings()
    return replace(base, **_section_values("shadow", doc, _SHADOW_KEYS, ShadowSettings))


def _feedback_from(doc: Any) -> FeedbackSettings:
    return FeedbackSettings(**_section_values("feedback", doc, _FEEDBACK_KEYS, FeedbackSettings))


def settings_from_mapping(doc: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Apply a decoded settings document on top of ``base`` (defaults)."""
    if not isinstance(doc, Mapping):
        raise ConfigError("settings must be an object")
    values: dict[str, Any] = {}
    shadow = (base or Settings()).shadow
    for key, value in doc.items():
        if key == "shadow":
            shadow = _shadow_from(value, ShadowSettings())
            continue
        if key == "feedback":
            if value is not None:
                values["feedback"] = _feedback_from(value)
            continue
        spec = _SCHEMA.get(key)
        if spec is None:
            raise ConfigError(f"{key}: unknown key")
        if isinstance(spec, str):
            if value is not None:  # null = keep the default
                values[spec] = _coerce(key, value, str(_TYPES[spec]))
            continue
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected an object")
        for sub, subvalue in value.items():
            attr = spec.get(sub)
            if attr is None:
                raise ConfigError(f"{key}.{sub}: unknown key")
            if subvalue is None:
                continue
            values[attr] = _coerce(f"{key}.{sub}", subvalue, str(_TYPES[attr]))
    settings = replace(base or Settings(), **values, shadow=shadow)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Cross-field checks; raises ConfigError with the offending key."""
    if s.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: must be one of {PROTOCOLS}, got {s.protocol!r}")
    if s.role not in ROLES:
        raise ConfigError(f"role: must be one of {ROLES}, got {s.role!r}")
    _check_http_url("upstream.url", s.upstream)
    if urlsplit(s.upstream).path not in ("", "/") or urlsplit(s.upstream).query:
        # Requests go to the model server as the client sent them: a prefix would be ignored.
        raise ConfigError(
            f"upstream.url: must be http://host:port with no path, got {s.upstream!r} "
            "(requests keep the path the client sent)"
        )
    for name, port in (("listen.port", s.listen_port), ("metrics.port", s.metrics_port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name}: out of range")
    if s.max_body_bytes <= 0:
        raise ConfigError("limits.maxBodyBytes: must be positive")
    if s.max_features < 0:
        raise ConfigError("monitoring.maxFeatures: must be >= 0")
    if not 0 <= s.sample_percent <= 100:
        raise ConfigError("monitoring.samplePercent: must be within 0..100")
    if s.queue_size < 1:
        raise ConfigError("monitoring.queueSize: must be >= 1")
    if s.prediction_window_seconds <= 0:
        raise ConfigError("monitoring.predictionWindowSeconds: must be positive")
    for key, seconds in (
        ("upstream.timeoutSeconds", s.upstream_timeout_seconds),
        ("listen.idleTimeoutSeconds", s.idle_timeout_seconds),
        ("reloadIntervalSeconds", s.reload_interval_seconds),
    ):
        if seconds <= 0:
            raise ConfigError(f"{key}: must be positive, got {seconds}")
    for key, seconds in (
        ("shutdown.delaySeconds", s.shutdown_delay_seconds),
        ("shutdown.drainTimeoutSeconds", s.drain_timeout_seconds),
    ):
        if seconds < 0:
            raise ConfigError(f"{key}: must be >= 0, got {seconds}")
    if s.event_loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError("eventLoop: auto, uvloop or asyncio")
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("logLevel: debug, info, warning or error")
    sh = s.shadow
    if not 0 <= sh.percent <= 100:
        raise ConfigError("shadow.percent: must be within 0..100")
    if sh.target:
        _check_http_url("shadow.target", sh.target)
    for key, number in (("tolerance", sh.tolerance), ("relativeTolerance", sh.relative_tolerance)):
        if number is not None and not 0 <= number < math.inf:
            raise ConfigError(f"shadow.{key}: must be a finite number >= 0, got {number}")
    if sh.task not in ("", "classification", "regression"):
        raise ConfigError(f"shadow.task: classification or regression, got {sh.task!r}")
    if sh.queue_size < 1 or sh.concurrency < 1 or sh.timeout_seconds <= 0:
        raise ConfigError("shadow: queueSize >= 1, concurrency >= 1, timeout > 0")
    _validate_feedback(s.feedback)


def _check_http_url(key: str, url: str) -> None:
    """``http://host[:port]``, the port within 1..65535: a bad one would otherwise be
    found at every connection, each request waiting out its timeout for a 504."""
    parts = urlsplit(url)
    try:
        port = parts.port  # ValueError: out of 0..65535, or not a number
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or port == 0:
        raise ConfigError(f"{key}: must be http://host:port (port 1..65535), got {url!r}")


def _validate_feedback(fb: FeedbackSettings) -> None:
    if not 0 <= fb.port <= 65535:
        raise ConfigError("feedback.port: out of range")
    if fb.task not in ("", "classification", "regression"):
        raise ConfigError(f"feedback.task: classification or regression, got {fb.task!r}")
    positive = {
        "windowSeconds": fb.window_seconds,
        "maxPredictions": fb.max_predictions,
        "maxRowsPerPrediction": fb.max_rows_per_prediction,
        "maxBodyBytes": fb.max_body_bytes,
        "maxLabelsPerRequest": fb.max_labels_per_request,
        "labelsPerSecond": fb.labels_per_second,
        "burstLabels": fb.burst_labels,
        "maxConcurrentRequests": fb.max_concurrent_requests,
        "peerTimeoutSeconds": fb.peer_timeout_seconds,
        "handoffTimeoutSeconds": fb.handoff_timeout_seconds,
    }
    for key, number in positive.items():
        if not 0 < number < math.inf:
            raise ConfigError(f"feedback.{key}: must be a positive number, got {number}")
    if fb.burst_labels < fb.max_labels_per_request:
        raise ConfigError(
            f"feedback.burstLabels ({fb.burst_labels}) must be at least "
            f"maxLabelsPerRequest ({fb.max_labels_per_request}): a full batch could never pass"
        )
    for entry in (*fb.peers, *([fb.advertise] if fb.advertise else [])):
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"feedback: peers and advertise are host:port, got {entry!r}")


def read_document(path: str) -> dict[str, Any]:
    """Decode a JSON or YAML settings file (YAML is a superset of JSON)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror or exc}") from exc
    return decode_document(path, data)


def decode_document(path: str, data: bytes) -> dict[str, Any]:
    """Decode the bytes of the settings file ``path`` (JSON or YAML, by its name)."""
    try:
        text = data.decode("utf-8")
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"settings file {path} is not valid JSON/YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"settings file {path} must hold an object")
    return doc


# CLI flag / environment variable -> Settings field. CLI beats env beats file.
OVERRIDES: dict[str, tuple[str, str]] = {
    "listen_host": ("--listen-host", "VIGIL_LISTEN_HOST"),
    "listen_port": ("--listen-port", "VIGIL_LISTEN_PORT"),
    "metrics_host": ("--metrics-host", "VIGIL_METRICS_HOST"),
    "metrics_port": ("--metrics-port", "VIGIL_METRICS_PORT"),
    "upstream": ("--upstream", "VIGIL_UPSTREAM"),
    "protocol": ("--protocol", "VIGIL_PROTOCOL"),
    "model_name": ("--model-name", "VIGIL_MODEL_NAME"),
    "model_version": ("--model-version", "VIGIL_MODEL_VERSION"),
    "revision": ("--revision", "VIGIL_REVISION"),
    "role": ("--role", "VIGIL_ROLE"),
    "reference_profile": ("--reference-profile", "VIGIL_REFERENCE_PROFILE"),
    "max_body_bytes": ("--max-body-bytes", "VIGIL_MAX_BODY_BYTES"),
    "max_features": ("--max-features", "VIGIL_MAX_FEATURES"),
    "log_level": ("--log-level", "VIGIL_LOG_LEVEL"),
    "event_loop": ("--event-loop", "VIGIL_EVENT_LOOP"),
}


def load_settings(
    config_path: str | None,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults <- settings file <- environment <- command-line flags."""
    env = os.environ if env is None else env
    path = config_path or env.get("VIGIL_SIDECAR_CONFIG", "")
    settings = Settings()
    if path:
        settings = settings_from_mapping(read_document(path), settings)
    values: dict[str, Any] = {}
    for attr, (flag, var) in OVERRIDES.items():
        raw = (cli or {}).get(attr)
        source = flag
        if raw is None and var in env:
            raw, source = env[var], var
        if raw is not None:
            values[attr] = _coerce(source, raw, str(_TYPES[attr]))
    settings = replace(settings, **values, config_path=path, pinned=frozenset(values))
    validate(settings)
    return settings


class SettingsWatcher:
    """Polls the settings file and applies the run-time keys when they change.

    Content hashing (not mtime alone) because a ConfigMap update swaps the
    ``..data`` symlink and may keep timestamps; the bytes hashed are the bytes
    applied (one read). A bad new file keeps the old settings and is reported
    through ``on_error``, as is a file that cannot be read (once until it can
    again). An empty file is taken for one being written (a writer that
    truncates, then writes): it keeps the settings that run, logged once, and
    is read again at the next poll. The first poll reads the file anew and
    compares it with what runs: one that changed since the start-up read is
    applied, or its static changes logged.
    """

    def __init__(
        self,
        settings: Settings,
        apply: Callable[[Settings], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self._apply = apply
        self._on_error = on_error
        self._digest = ""
        self._unreadable = False
        self._empty = False  # an empty file was logged (until one with content comes)

    def _read(self) -> bytes | None:
        try:
            data = Path(self.settings.config_path).read_bytes()
        except OSError as exc:
            if not self._unreadable:
                self._on_error(f"cannot read the settings file: {exc}")
            self._unreadable = True
            return None
        self._unreadable = False
        return data

    def check(self) -> bool:
        """Re-read the file once; returns True when new settings were applied."""
        path = self.settings.config_path
        if not path:
            return False
        data = self._read()
        if data is None:
            return False
        if not data.strip():
            # Applied, it would mean every default: shadowing off, queued copies dropped.
            if not self._empty:
                self._empty = True
                log.warning("settings file %s is empty: keeping the current settings", path)
            return False
        self._empty = False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            fresh = settings_from_mapping(decode_document(path, data), Settings())
        except ConfigError as exc:
            self._on_error(str(exc))
            return False
        current = self.settings
        # Against what runs (a flag or the environment set what is pinned).
        changed_static = [
            f.name
            for f in fields(Settings)
            if f.name not in ("shadow", "sample_percent", "log_level", "config_path", "pinned")
            and f.name not in current.pinned
            and getattr(fresh, f.name) != getattr(current, f.name)
        ]
        if changed_static:
            log.warning(
                "settings changed that only take effect after a restart: %s",
                ", ".join(sorted(changed_static)),
            )
        updated = replace(
            current,
            shadow=fresh.shadow,
            sample_percent=fresh.sample_percent,
            log_level=current.log_level if "log_level" in current.pinned else fresh.log_level,
        )
        if updated.runtime_view() == current.runtime_view():
            return False
        self.settings = updated
        self._apply(updated)
        return True

    async def run(self) -> None:
        """Poll forever (cancelled on shutdown)."""
        interval = max(self.settings.reload_interval_seconds, 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                self.check()
            except Exception as exc:  # never let a reload kill the sidecar
                self._on_error(f"settings reload failed: {exc}")
