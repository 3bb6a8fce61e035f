"""The operator's own Prometheus metrics (served on `/metrics`).

A registry per operator instance (not the global one) so that tests can
build several operators in one process and read exact values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vigil.common.metric_specs import MetricSpec, declare
from vigil.common.times import parse_unix
from vigil.core.vocabulary import Outcome

PHASES = ("Pending", "Progressing", "Healthy", "Degraded", "RolledBack", "Failed")
OUTCOME_CHANGED = "changed"
OUTCOME_UNCHANGED = "unchanged"
OUTCOME_ERROR = "error"
#: How long the series of a deleted ModelDeployment stay gone whatever a reconcile or a
#: health write under way when it was deleted sets after (unless the watch sees it again).
DELETED_SECONDS = 600.0


# (health figure's attribute, metric name, help) of the per-revision and per-object gauges.
PER_REVISION_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "error_rate",
        "vigil_modeldeployment_error_rate",
        "Share of failed inference requests over the monitoring window.",
    ),
    (
        "latency_p95",
        "vigil_modeldeployment_latency_p95_seconds",
        "95th percentile inference latency over the monitoring window (seconds).",
    ),
    (
        "drift_score",
        "vigil_modeldeployment_drift_score",
        "Largest per-feature input drift score against the reference.",
    ),
    (
        "realized_accuracy",
        "vigil_modeldeployment_realized_accuracy",
        "Realized accuracy from the labels of the performance window (classifiers).",
    ),
    (
        "realized_mae",
        "vigil_modeldeployment_realized_mae",
        "Realized mean absolute error from the labels of the performance window.",
    ),
    (
        "realized_rmse",
        "vigil_modeldeployment_realized_rmse",
        "Realized root mean squared error from the labels of the performance window.",
    ),
    (
        "label_delay_p95",
        "vigil_modeldeployment_label_delay_p95_seconds",
        "95th percentile of the time from prediction to label (seconds).",
    ),
)

PER_OBJECT_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "drift_threshold",
        "vigil_modeldeployment_drift_threshold",
        "spec.monitoring.drift.threshold.",
    ),
    (
        "slo_max_error_rate",
        "vigil_modeldeployment_slo_max_error_rate",
        "spec.monitoring.slo.maxErrorRate.",
    ),
    (
        "slo_latency_p95",
        "vigil_modeldeployment_slo_latency_p95_seconds",
        "spec.monitoring.slo.maxLatencyP95 in seconds.",
    ),
    (
        "performance_baseline",
        "vigil_modeldeployment_performance_baseline",
        "The reference profile's validation score (accuracy, or MAE).",
    ),
    (
        "performance_threshold",
        "vigil_modeldeployment_performance_threshold",
        "Realized accuracy below it (MAE above it) makes PerformanceDegraded True.",
    ),
)


@dataclass
class HealthFigures:
    """The last health figures of one ModelDeployment, as its gauges show them."""

    revision: str
    error_rate: float | None = None
    latency_p95: float | None = None
    drift_score: float | None = None
    drift_threshold: float | None = None
    slo_max_error_rate: float | None = None
    slo_latency_p95: float | None = None
    metrics_available: bool = False
    # Realized performance over the labels' window (vigil.core.performance).
    realized_accuracy: float | None = None
    realized_mae: float | None = None
    realized_rmse: float | None = None
    label_delay_p95: float | None = None
    #: Labels that arrived in the window, by outcome (joined, duplicate, unknown, ...).
    labels: dict[str, float] = field(default_factory=dict)
    performance_baseline: float | None = None
    performance_threshold: float | None = None
    #: The PerformanceDegraded condition (None: Unknown, no series).
    performance_degraded: bool | None = None
    #: The DriftDetected condition (None: Unknown, no series).
    drift_detected: bool | None = None
    #: Each SLO (errorRate, latencyP95) breached or met as the Healthy condition judges it
    #: (a breach held until surely met stays breached); empty while Healthy is Unknown.
    slo_breached: dict[str, bool] = field(default_factory=dict)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class _PhaseCollector(Collector):
    """Per-ModelDeployment gauges, from the last status and health each one was given.

    Series of a ModelDeployment disappear with it (:meth:`OperatorMetrics.forget`).
    """

    def __init__(self) -> None:
        self.phases: dict[tuple[str, str], str] = {}
        self.health: dict[tuple[str, str], HealthFigures] = {}
        #: The last check's gates of each running rollout (``status.candidate.gates``).
        self.gates: dict[tuple[str, str], list[Mapping[str, Any]]] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vigil_operator_model_deployments",
            "ModelDeployments handled by this operator, by phase.",
            labels=["phase"],
        )
        counts = dict.fromkeys(PHASES, 0)
        # Scrapes run on prometheus_client's thread while the event loop changes these
        # dicts: loop over copies (a copy is one step under the GIL, a Python loop is not).
        for phase in list(self.phases.values()):
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family

        phase_family = GaugeMetricFamily(
            "vigil_modeldeployment_phase",
            "1 for the phase each ModelDeployment is in, 0 for the others.",
            labels=["namespace", "name", "phase"],
        )
        for (namespace, name), current in sorted(self.phases.items()):
            for phase in dict.fromkeys((*PHASES, current)):
                phase_family.add_metric([namespace, name, phase], 1 if phase == current else 0)
        yield phase_family

        per_revision = {
            attribute: GaugeMetricFamily(metric, doc, labels=["namespace", "name", "revision"])
            for attribute, metric, doc in PER_REVISION_GAUGES
        }
        per_object = {
            attribute: GaugeMetricFamily(metric, doc, labels=["namespace", "name"])
            for attribute, metric, doc in PER_OBJECT_GAUGES
        }
        labels = GaugeMetricFamily(
            "vigil_modeldeployment_labels",
            "Labels that arrived in the performance window, by outcome (joined, duplicate, "
            "unknown, expired, ...), counted against the revision that served the prediction.",
            labels=["namespace", "name", "revision", "outcome"],
        )
        degraded = GaugeMetricFamily(
            "vigil_modeldeployment_performance_degraded",
            "1 while PerformanceDegraded is True, 0 while False (no series while Unknown).",
            labels=["namespace", "name"],
        )
        drifted = GaugeMetricFamily(
            "vigil_modeldeployment_drift_detected",
            "1 while DriftDetected is True (a feature's drift surely over the threshold, or "
            "held there until surely under it), 0 while False (no series while Unknown).",
            labels=["namespace", "name"],
        )
        breached = GaugeMetricFamily(
            "vigil_modeldeployment_slo_breached",
            "1 while the Healthy condition finds the SLO breached (surely over its limit at "
            "99%, or held until surely within), 0 while met (no series while Unknown).",
            labels=["namespace", "name", "slo"],
        )
        available = GaugeMetricFamily(
            "vigil_modeldeployment_metrics_available",
            "1 when the last health cycle got figures for the serving revision, else 0.",
            labels=["namespace", "name"],
        )
        for (namespace, name), figures in sorted(self.health.items()):
            for attribute, gauge in per_revision.items():
                value = getattr(figures, attribute)
                if _finite(value):
                    gauge.add_metric([namespace, name, figures.revision], value)
            for attribute, gauge in per_object.items():
                value = getattr(figures, attribute)
                if _finite(value):
                    gauge.add_metric([namespace, name], value)
            available.add_metric([namespace, name], 1 if figures.metrics_available else 0)
            for outcome, count in sorted(figures.labels.items()):
                labels.add_metric([namespace, name, figures.revision, outcome], count)
            if figures.performance_degraded is not None:
                degraded.add_metric([namespace, name], 1 if figures.performance_degraded else 0)
            if figures.drift_detected is not None:
                drifted.add_metric([namespace, name], 1 if figures.drift_detected else 0)
            for slo, breach in sorted(figures.slo_breached.items()):
                breached.add_metric([namespace, name, slo], 1 if breach else 0)
        yield from per_revision.values()
        yield from per_object.values()
        yield available
        yield labels
        yield degraded
        yield drifted
        yield breached
        yield from self._gates()

    def _gates(self) -> Iterable[GaugeMetricFamily]:
        """Per running rollout and gate: the last check's verdict and figures."""
        labels = ["namespace", "name", "gate"]
        verdict = GaugeMetricFamily(
            "vigil_rollout_gate_verdict",
            "1 for the last check's verdict of each gate of a running rollout "
            "(pass, fail, undecided), 0 for the others.",
            labels=[*labels, "verdict"],
        )
        figures = {
            key: GaugeMetricFamily(metric, help_text, labels=labels)
            for key, metric, help_text in _GATE_FIGURES
        }
        for (namespace, name), gates in sorted(self.gates.items()):
            for gate in gates:
                where = [namespace, name, str(gate.get("name"))]
                current = gate.get("verdict") or ("pass" if gate.get("passed") else "fail")
                for word in _VERDICTS:
                    verdict.add_metric([*where, word], 1 if word == current else 0)
                for key, family in figures.items():
                    value = gate.get(key)
                    if isinstance(value, int | float) and _finite(float(value)):
                        family.add_metric(where, float(value))
        yield verdict
        yield from figures.values()


_VERDICTS = ("pass", "fail", "undecided")
#: (status key, metric, help) of the gate figures the operator exports.
_GATE_FIGURES = (
    ("value", "vigil_rollout_gate_value", "The last check's estimate of each gate."),
    ("low", "vigil_rollout_gate_low", "Lower end of its interval (analysis.confidence)."),
    ("high", "vigil_rollout_gate_high", "Upper end of its interval."),
    ("threshold", "vigil_rollout_gate_threshold", "The gate's threshold."),
    ("samples", "vigil_rollout_gate_samples", "Samples it judged: requests, predictions, rows."),
    ("needed", "vigil_rollout_gate_needed", "Undecided: more samples that would decide it."),
)


#: The operator's own families (the per-ModelDeployment gauges: :class:`_PhaseCollector`).
_FAMILIES = (
    MetricSpec(
        "reconciles",
        Counter,
        "vigil_operator_reconciles",
        "Reconciles of a ModelDeployment, by outcome (changed, unchanged, error).",
        ("outcome",),
    ),
    MetricSpec(
        "duration",
        Histogram,
        "vigil_operator_reconcile_duration_seconds",
        "Time to reconcile one ModelDeployment (read, decide, write).",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    ),
    MetricSpec(
        "writes",
        Counter,
        "vigil_operator_writes",
        "Writes to the API server, by kind and verb (apply, delete, status).",
        ("kind", "verb"),
    ),
    MetricSpec(
        "events",
        Counter,
        "vigil_operator_events",
        "Kubernetes Events posted, by reason.",
        ("reason",),
    ),
    MetricSpec(
        "health_cycle",
        Histogram,
        "vigil_health_cycle_seconds",
        "Time of one health cycle over every ModelDeployment (collect, judge, write).",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
    ),
    MetricSpec(
        "scrape_failures",
        Counter,
        "vigil_health_scrape_failures",
        "Sidecars that did not answer a direct scrape (skipped for that cycle).",
    ),
    MetricSpec(
        "source_failures",
        Counter,
        "vigil_health_source_failures",
        "Revisions a metrics source had no figures for in a cycle, by source.",
        ("source",),
    ),
    MetricSpec(
        "rollouts",
        Counter,
        "vigil_rollouts",
        "Finished rollouts of a candidate, by outcome (Promoted, RolledBack, Failed).",
        ("namespace", "name", "outcome"),
    ),
    MetricSpec(
        "rollout_weight",
        Gauge,
        "vigil_rollout_weight",
        "The candidate's share of live traffic (percent; 0 without a rollout in progress).",
        ("namespace", "name"),
    ),
    MetricSpec(
        "rollout_analysis",
        Counter,
        "vigil_rollout_analysis",
        "Gate evaluations of rollout candidates, by gate and result (passed, failed).",
        ("namespace", "name", "gate", "result"),
    ),
    MetricSpec(
        "rollout_duration",
        Histogram,
        "vigil_rollout_duration_seconds",
        "From a candidate's start to its promotion, rollback or failure, by outcome.",
        ("outcome",),
        buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600),
    ),
    MetricSpec(
        "info",
        Gauge,
        "vigil_operator_info",
        "Constant 1, labelled with the operator's version and sidecar image.",
        ("version", "sidecar_image"),
    ),
)


#: The outcomes that end a rollout: ``vigil_rollouts_total``'s ``outcome`` label.
ROLLOUT_OUTCOMES = (Outcome.PROMOTED, Outcome.ROLLED_BACK, Outcome.FAILED)


class OperatorMetrics:
    """Reconciles by outcome, their duration, writes by kind and verb, objects by phase."""

    # Made from _FAMILIES by declare().
    reconciles: Counter
    duration: Histogram
    writes: Counter
    events: Counter
    health_cycle: Histogram
    scrape_failures: Counter
    source_failures: Counter
    rollouts: Counter
    rollout_weight: Gauge
    rollout_analysis: Counter
    rollout_duration: Histogram
    info: Gauge

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: ModelDeployments deleted lately, with when (see :data:`DELETED_SECONDS`).
        self._deleted: dict[tuple[str, str], float] = {}
        #: ModelDeployments whose rollout outcomes are exported (at 0 until one happens).
        self._counting: set[tuple[str, str]] = set()
        # Every metric in this instance's own registry.
        self.registry = CollectorRegistry()
        declare(self, _FAMILIES, self.registry)
        for outcome in (OUTCOME_CHANGED, OUTCOME_UNCHANGED, OUTCOME_ERROR):
            self.reconciles.labels(outcome)
        self._phases = _PhaseCollector()
        self.registry.register(self._phases)

    def rollout_finished(self, namespace: str, name: str, outcome: str) -> None:
        """Count a finished rollout (``vigil_rollouts_total{namespace,name,outcome}``)."""
        if not self._deleted_lately(namespace, name):
            self.rollouts.labels(namespace, name, outcome).inc()

    def rollout_progress(
        self,
        namespace: str,
        name: str,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        outcome: str | None,
        now: float,
    ) -> None:
        """One rollout cycle: the weight, new gate evaluations, the duration of a finished one."""
        if self._deleted_lately(namespace, name):
            return
        running = bool(after) and not after.get("outcome")
        self.rollout_weight.labels(namespace, name).set(
            float(after.get("weight") or 0) if running else 0.0
        )
        if after.get("lastAnalysisAt") and after.get("lastAnalysisAt") != before.get(
            "lastAnalysisAt"
        ):
            for gate in after.get("gates") or ():
                result = "passed" if gate.get("passed") else "failed"
                self.rollout_analysis.labels(namespace, name, str(gate.get("name")), result).inc()
        if running and after.get("gates"):
            self._phases.gates[(namespace, name)] = list(after["gates"])
        else:
            self._phases.gates.pop((namespace, name), None)
        started = parse_unix(before.get("startedAt"))
        if outcome and started is not None:
            self.rollout_duration.labels(outcome).observe(max(0.0, now - started))

    def set_health(self, namespace: str, name: str, figures: HealthFigures) -> None:
        """Record a ModelDeployment's latest health figures (its gauges)."""
        if not self._deleted_lately(namespace, name):
            self._phases.health[(namespace, name)] = figures

    def health_of(self, namespace: str, name: str) -> HealthFigures | None:
        return self._phases.health.get((namespace, name))

    def drop_health(self, namespace: str, name: str) -> None:
        """Drop a ModelDeployment's health gauges only (the health loop no longer judges
        it); its phase, gates and rollout series stay, and so does a deletion's guard."""
        self._phases.health.pop((namespace, name), None)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted ModelDeployment.

        A reconcile or a health write under way sets none again after (for
        :data:`DELETED_SECONDS`, or until :meth:`seen` says the object is back).
        """
        now = self._clock()
        # Oldest first (a key deleted again moves to the end): a namespace's deletion
        # (thousands of models) drops the expired ones from the front, not in a rebuild each.
        while self._deleted:
            oldest, at = next(iter(self._deleted.items()))
            if now - at < DELETED_SECONDS:
                break
            del self._deleted[oldest]
        self._deleted.pop((namespace, name), None)
        self._deleted[(namespace, name)] = now
        self._phases.phases.pop((namespace, name), None)
        self._phases.health.pop((namespace, name), None)
        self._phases.gates.pop((namespace, name), None)
        for family in (self.rollout_weight, self.rollouts, self.rollout_analysis):
            family.remove_by_labels({"namespace": namespace, "name": name})
        self._counting.discard((namespace, name))

    def seen(self, namespace: str, name: str) -> None:
        """The watch shows the ModelDeployment (created again after a deletion: series again).

        Its rollout outcomes are exported at 0 from here: the alerts take ``increase`` over
        an hour, which sees nothing of a series whose first sample is already 1.
        """
        if self._deleted:
            self._deleted.pop((namespace, name), None)
        if (namespace, name) not in self._counting:
            self._counting.add((namespace, name))
            for outcome in ROLLOUT_OUTCOMES:
                self.rollouts.labels(namespace, name, outcome)

    def _deleted_lately(self, namespace: str, name: str) -> bool:
        at = self._deleted.get((namespace, name))
        return at is not None and self._clock() - at < DELETED_SECONDS

    def forget_all(self) -> None:
        """Drop the per-ModelDeployment gauges (phase, health, gates, rollout weight) of all:
        this instance is paused (kopf peering) and another one judges; a stale value here
        would keep the alerts' ``max by (namespace, name)`` up. They are set again once
        it acts again."""
        self._phases.phases.clear()
        self._phases.health.clear()
        self._phases.gates.clear()
        self.rollout_weight.clear()

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record an object's phase (None forgets the object, e.g. once deleted)."""
        if phase is None:
            self._phases.phases.pop((namespace, name), None)
        elif not self._deleted_lately(namespace, name):
            self._phases.phases[(namespace, name)] = phase

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve `/metrics` from a background thread (port 0 disables it)."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)
