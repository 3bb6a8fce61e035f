"""Every default of the ModelDeployment spec in one place, and the words it allows.

The CRD's defaults (crds/modeldeployments.yaml) are listed by path in
:data:`CRD_DEFAULTS` (a test holds the table to the CRD), beside the few the
CRD leaves to the operator (the SLOs, the shadow tolerance).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
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
#: Drift is reported at warning or threshold once that sure, over a window's features.
DEFAULT_DRIFT_CONFIDENCE = 0.99
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
#: A rollout of a candidate as good as the stable is rolled back with at most 1 - this.
DEFAULT_CONFIDENCE = 0.99
#: P(a candidate request is slower than a stable one) may exceed 1/2 by this much.
DEFAULT_LATENCY_MARGIN = 0.1
#: The candidate's input drift may exceed the stable's by this much (drift method's units).
DEFAULT_INPUT_DRIFT_MARGIN = 0.05
DEFAULT_EARLY_ADVANCE = True
DEFAULT_PROGRESS_DEADLINE = "30m"
DEFAULT_PAUSED = False
DEFAULT_PERFORMANCE_MAX_DROP = 0.05
DEFAULT_PERFORMANCE_MIN_LABELS = 100
DEFAULT_PERFORMANCE_WINDOW = "1h"
#: The rollout's performance gates judge once the candidate has this many labels.
DEFAULT_GATE_MIN_LABELS = 50
#: A baked previous revision is scaled to this many replicas (0: none until needed).
DEFAULT_BAKE_MIN_REPLICAS = 0

# Defaults the CRD leaves to the operator (documented in docs/crd-reference.md).
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MAX_LATENCY_P95 = "250ms"
#: The sidecar's largest latency bucket (a test holds them equal): a p95 beyond it reads as
#: this, so an SLO at or above it could never be breached (the CRD refuses one).
MAX_MEASURED_LATENCY_SECONDS = 10.0


#: Shadow: a regression prediction agrees within this share of the stable's value (5 %).
DEFAULT_RELATIVE_TOLERANCE = 0.05
#: Where the server finds the model (KServe's path; MLSERVER_MODELS_DIR of the local image).
DEFAULT_MODEL_PATH = "/mnt/models"
#: The fetch init container's footprint (peak RSS measured under 40 MiB, bench/README.md).
DEFAULT_FETCH_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "100m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def default_drift_warning(threshold: float) -> float:
    """The warning a drift spec without one gets: 0.1, or half a threshold below 0.2 (the
    CRD has no default for it: the API server would check it against a lower threshold)."""
    return min(DEFAULT_DRIFT_WARNING, threshold / 2)


#: Every ``default:`` of the CRD's spec, by path ("[]" = each item of a list).
CRD_DEFAULTS: Mapping[str, Any] = {
    "server.port": DEFAULT_SERVER_PORT,
    "server.protocol": DEFAULT_PROTOCOL,
    "replicas": DEFAULT_REPLICAS,
    "monitoring.window": DEFAULT_WINDOW,
    "monitoring.drift.method": DEFAULT_DRIFT_METHOD,
    "monitoring.drift.threshold": DEFAULT_DRIFT_THRESHOLD,
    "monitoring.drift.confidence": DEFAULT_DRIFT_CONFIDENCE,
    "monitoring.metrics.source": DEFAULT_METRICS_SOURCE,
    "monitoring.performance.maxDrop": DEFAULT_PERFORMANCE_MAX_DROP,
    "monitoring.performance.minLabels": DEFAULT_PERFORMANCE_MIN_LABELS,
    "monitoring.performance.window": DEFAULT_PERFORMANCE_WINDOW,
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
    "rollout.analysis.confidence": DEFAULT_CONFIDENCE,
    "rollout.analysis.margins.latency": DEFAULT_LATENCY_MARGIN,
    "rollout.analysis.margins.inputDrift": DEFAULT_INPUT_DRIFT_MARGIN,
    "rollout.analysis.earlyAdvance": DEFAULT_EARLY_ADVANCE,
    "rollout.analysis.performance.minLabels": DEFAULT_GATE_MIN_LABELS,
    "rollout.progressDeadline": DEFAULT_PROGRESS_DEADLINE,
    "rollout.bake.minReplicas": DEFAULT_BAKE_MIN_REPLICAS,
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


def parse_duration(text: str | float | int | None, default: float, where: str = "") -> float:
    """'1h30m' -> 5400.0; the CRD's pattern guarantees the shape (ValueError naming
    ``where``, the field, for one it did not check)."""
    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        return float(text)
    try:
        return _duration_seconds(text)
    except ValueError as error:
        if not where:
            raise
        raise ValueError(f"{where}: {error}") from None


# Remembered: every reconcile parses its spec's durations again (a handful of strings).
@functools.lru_cache(maxsize=256)
def _duration_seconds(text: str) -> float:
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def default_seconds(text: str) -> float:
    """A default duration of this module in seconds (the defaults are strings, as in the CRD)."""
    return parse_duration(text, 0.0)


# -- defaults that depend on other fields ---------------------------------------------------


def default_readiness_path(protocol: str, model_name: str) -> str:
    """The health endpoint each protocol's servers conventionally expose."""
    if protocol == "v2":
        return "/v2/health/ready"
    if protocol == "v1":
        return f"/v1/models/{model_name}"
    return "/"
