"""The health loop's view of a spec: the thresholds of ``spec.monitoring`` it judges by."""

from __future__ import annotations

from dataclasses import dataclass, field

from vigil.core.spec.defaults import (
    DEFAULT_DRIFT_CONFIDENCE,
    DEFAULT_DRIFT_METHOD,
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_DRIFT_WARNING,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_LATENCY_P95,
    DEFAULT_MIN_REQUESTS,
    DEFAULT_WINDOW,
    SOURCE_DIRECT,
    DriftMethodName,
    default_seconds,
)
from vigil.core.spec.model import AnalysisSpec, MetricsSpec, MonitoringSpec, PerformanceSpec


@dataclass(frozen=True)
class HealthPolicy:
    """The thresholds of ``spec.monitoring`` (and ``rollout.analysis.minRequests``)."""

    window_seconds: float = default_seconds(DEFAULT_WINDOW)
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_latency_p95: float = default_seconds(DEFAULT_MAX_LATENCY_P95)
    drift_method: DriftMethodName = DEFAULT_DRIFT_METHOD  # type: ignore[assignment]
    drift_warning: float = DEFAULT_DRIFT_WARNING
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    min_requests: int = DEFAULT_MIN_REQUESTS
    drift_confidence: float = DEFAULT_DRIFT_CONFIDENCE
    performance: PerformanceSpec = field(default_factory=PerformanceSpec)


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
            drift_confidence=monitoring.drift.confidence,
            performance=monitoring.performance,
        ),
        source=monitoring.metrics.source,
        prometheus_url=monitoring.metrics.prometheus_url,
        reference=None if reference is None else (reference.name, reference.key),
    )
