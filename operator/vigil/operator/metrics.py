"""The operator's own Prometheus metrics (served on `/metrics`).

A registry per operator instance (not the global one) so that tests can
build several operators in one process and read exact values.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PHASES = ("Pending", "Progressing", "Healthy", "Degraded", "RolledBack", "Failed")
OUTCOME_CHANGED = "changed"
OUTCOME_UNCHANGED = "unchanged"
OUTCOME_ERROR = "error"


class _PhaseCollector(Collector):
    """ModelDeployments by phase, computed from the last status each one was given."""

    def __init__(self) -> None:
        self.phases: dict[tuple[str, str], str] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vigil_operator_model_deployments",
            "ModelDeployments handled by this operator, by phase.",
            labels=["phase"],
        )
        counts = dict.fromkeys(PHASES, 0)
        for phase in self.phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


class OperatorMetrics:
    """Reconciles by outcome, their duration, writes by kind and verb, objects by phase."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "vigil_operator_reconciles",
            "Reconciles of a ModelDeployment, by outcome (changed, unchanged, error).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in (OUTCOME_CHANGED, OUTCOME_UNCHANGED, OUTCOME_ERROR):
            self.reconciles.labels(outcome)
        self.duration = Histogram(
            "vigil_operator_reconcile_duration_seconds",
            "Time to reconcile one ModelDeployment (read, decide, write).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.writes = Counter(
            "vigil_operator_writes",
            "Writes to the API server, by kind and verb (apply, delete, status).",
            ["kind", "verb"],
            registry=self.registry,
        )
        self.events = Counter(
            "vigil_operator_events",
            "Kubernetes Events posted, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._phases = _PhaseCollector()
        self.registry.register(self._phases)
        self.info = Gauge(
            "vigil_operator_info",
            "Constant 1, labelled with the operator's version and sidecar image.",
            ["version", "sidecar_image"],
            registry=self.registry,
        )

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record an object's phase (None forgets the object, e.g. once deleted)."""
        if phase is None:
            self._phases.phases.pop((namespace, name), None)
        else:
            self._phases.phases[(namespace, name)] = phase

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve `/metrics` from a background thread (port 0 disables it)."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)
