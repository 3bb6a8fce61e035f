"""The typed, defaulted spec: the dataclasses the operator reads.

Their defaults are :mod:`vigil.core.spec.defaults`'s, the parser's too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from vigil.core.spec.defaults import (
    DEFAULT_BAKE_MIN_REPLICAS,
    DEFAULT_CONFIDENCE,
    DEFAULT_DRIFT_CONFIDENCE,
    DEFAULT_DRIFT_METHOD,
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_DRIFT_WARNING,
    DEFAULT_EARLY_ADVANCE,
    DEFAULT_FAILURE_LIMIT,
    DEFAULT_FEATURE_CAP,
    DEFAULT_FETCH_RESOURCES,
    DEFAULT_GATE_MIN_LABELS,
    DEFAULT_INPUT_DRIFT_MARGIN,
    DEFAULT_INTERVAL,
    DEFAULT_LATENCY_MARGIN,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_LATENCY_P95,
    DEFAULT_MAX_PREDICTION_SHIFT,
    DEFAULT_METRICS_SOURCE,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_REQUESTS,
    DEFAULT_MODEL_PATH,
    DEFAULT_PAUSED,
    DEFAULT_PERFORMANCE_MAX_DROP,
    DEFAULT_PERFORMANCE_MIN_LABELS,
    DEFAULT_PERFORMANCE_WINDOW,
    DEFAULT_PROGRESS_DEADLINE,
    DEFAULT_PROTOCOL,
    DEFAULT_RELATIVE_TOLERANCE,
    DEFAULT_REPLICAS,
    DEFAULT_SERVER_PORT,
    DEFAULT_WINDOW,
    SOURCE_DIRECT,
    SOURCE_PROMETHEUS,
    StepKind,
    default_seconds,
)

# -- the typed spec -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigMapKeyRef:
    """A key of a ConfigMap in the ModelDeployment's namespace."""

    name: str
    key: str


#: A validate step's golden set: a key of a ConfigMap.
GoldenSetRef = ConfigMapKeyRef


#: ``model.uri`` naming a PersistentVolumeClaim: mounted, not fetched.
PVC_SCHEME = "pvc://"
# A claim is a DNS subdomain (Kubernetes object names).
_CLAIM = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class PvcSource:
    """``pvc://<claim>/<path>``: a claim in the ModelDeployment's namespace, a path in it."""

    claim: str
    #: Relative to the volume's root; "" is the whole volume.
    path: str = ""


def parse_pvc_uri(uri: str) -> PvcSource:
    """The claim and path of a ``pvc://`` URI; ValueError naming what is wrong.

    The CRD refuses the same URIs (a rule on ``spec.model.uri``); this is for
    objects stored before it or sent by a client that skipped validation.
    """
    claim, _, path = uri.removeprefix(PVC_SCHEME).partition("/")
    if len(claim) > 253 or not _CLAIM.fullmatch(claim):
        raise ValueError(
            f"spec.model.uri {uri!r}: the claim must be a PersistentVolumeClaim's name "
            "(lowercase letters, digits, '-' and '.')"
        )
    segments = [segment for segment in path.split("/") if segment]
    if ".." in segments or path.startswith("/"):
        raise ValueError(f"spec.model.uri {uri!r}: the path must stay inside the volume")
    return PvcSource(claim, "/".join(segments))


#: ``model.uri`` schemes Vigil downloads (vigil-fetch, in an init container).
FETCHED_SCHEMES = ("http://", "https://", "s3://")
S3_SCHEME = "s3://"
HTTPS_SCHEME = "https://"


@dataclass(frozen=True)
class StorageSpec:
    """``spec.model.storage``: how to reach an S3-compatible store (and a private CA)."""

    #: A Secret in the namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: named in
    #: the pod only, never read by the operator.
    secret: str | None = None
    endpoint: str | None = None
    region: str | None = None
    #: None: path-style with an endpoint, virtual-hosted on AWS (vigil-fetch decides).
    path_style: bool | None = None
    ca: ConfigMapKeyRef | None = None

    def inputs(self) -> dict[str, Any]:
        """The fields set, for the revision hash."""
        values = {
            "secretRef": self.secret,
            "endpoint": self.endpoint,
            "region": self.region,
            "pathStyle": self.path_style,
            "ca": None if self.ca is None else {"name": self.ca.name, "key": self.ca.key},
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class FetchSpec:
    """``spec.model.fetch``: the init container's folder limit and resources."""

    #: The emptyDir's sizeLimit (a quantity; the kubelet evicts a pod past it); None: none.
    size_limit: str | None = None
    #: As the spec wrote them; None: DEFAULT_FETCH_RESOURCES.
    resources: Mapping[str, Any] | None = None

    @property
    def container_resources(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.resources or DEFAULT_FETCH_RESOURCES))

    def inputs(self) -> dict[str, Any]:
        """The fields set, for the revision hash."""
        values: dict[str, Any] = {"sizeLimit": self.size_limit, "resources": self.resources}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class ModelSpec:
    """Identity of the model artifact (name, version, uri, sha256: a replacement when changed)
    and where the pods get it from (path, storage, fetch: a tweak)."""

    name: str
    version: str
    uri: str | None = None
    #: The expected sha256 (hex, lowercase) of the file or archive ``uri`` names.
    sha256: str | None = None
    path: str = DEFAULT_MODEL_PATH
    storage: StorageSpec = field(default_factory=StorageSpec)
    fetch: FetchSpec = field(default_factory=FetchSpec)

    @property
    def pvc(self) -> PvcSource | None:
        """The claim to mount when ``uri`` is ``pvc://`` (parse_spec has checked it)."""
        if self.uri is None or not self.uri.startswith(PVC_SCHEME):
            return None
        return parse_pvc_uri(self.uri)

    @property
    def fetched(self) -> bool:
        """Whether an init container downloads the artifact (http, https, s3)."""
        return self.uri is not None and self.uri.startswith(FETCHED_SCHEMES)

    @property
    def placed(self) -> bool:
        """Whether Vigil puts the model at ``path`` (mounted or fetched); else the server
        loads ``uri`` itself (STORAGE_URI)."""
        return self.fetched or self.pvc is not None


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
    #: Opt-in: most servers write caches outside /tmp (the only folder then writable).
    read_only_root_filesystem: bool = False


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
    confidence: float = DEFAULT_DRIFT_CONFIDENCE


@dataclass(frozen=True)
class SLOSpec:
    """The service-level objectives health and the rollout gates judge against."""

    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_latency_p95: float = default_seconds(DEFAULT_MAX_LATENCY_P95)


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
class PerformanceSpec:
    """``spec.monitoring.performance``: when realized performance (from labels) is degraded.

    The threshold is the strictest of the absolute limit (``min_accuracy`` for
    a classifier, ``max_mae`` for a regressor) and the reference profile's
    validation score worsened by ``max_drop`` (a share of it).
    """

    min_accuracy: float | None = None
    max_mae: float | None = None
    max_drop: float = DEFAULT_PERFORMANCE_MAX_DROP
    min_labels: int = DEFAULT_PERFORMANCE_MIN_LABELS
    window: str = DEFAULT_PERFORMANCE_WINDOW
    window_seconds: float = default_seconds(DEFAULT_PERFORMANCE_WINDOW)


@dataclass(frozen=True)
class MonitoringSpec:
    """``spec.monitoring``; ``problem`` says why a value could not be used (defaults kept)."""

    reference: ConfigMapKeyRef | None = None
    window: str = DEFAULT_WINDOW
    drift: DriftSpec = field(default_factory=DriftSpec)
    sidecar: SidecarLimits = field(default_factory=SidecarLimits)
    slo: SLOSpec = field(default_factory=SLOSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    performance: PerformanceSpec = field(default_factory=PerformanceSpec)
    window_seconds: float = default_seconds(DEFAULT_WINDOW)
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


def last_traffic_step(steps: Sequence[Step], index: int) -> Step | None:
    """The shadow or canary step before ``index``: a pause there keeps its traffic and, last,
    is judged on it."""
    return next((s for s in reversed(steps[:index]) if s.kind in ("shadow", "canary")), None)


def unjudged_pause(steps: Sequence[Step], index: int) -> bool:
    """Step ``index`` is a last pause with no shadow or canary step before it to judge: only a
    person's promote or abort ends it (a resume has nothing to release it to)."""
    last = index + 1 == len(steps)
    return steps[index].kind == "pause" and last and last_traffic_step(steps, index) is None


@dataclass(frozen=True)
class PerformanceGate:
    """``spec.rollout.analysis.performance``: the canary steps' realized-performance gates.

    ``realizedPerformance``: the candidate's accuracy at least ``min_accuracy``
    (a classifier) or its MAE at most ``max_mae`` (a regressor).
    ``performanceVsStable``: at least the stable's accuracy x (1 - ``max_drop``),
    or at most its MAE x (1 + ``max_drop``), over the same span. Each is off
    while its limit is None; neither judges before ``min_labels`` labels.
    """

    min_accuracy: float | None = None
    max_mae: float | None = None
    max_drop: float | None = None
    min_labels: int = DEFAULT_GATE_MIN_LABELS

    @property
    def gates(self) -> int:
        """How many gates it adds to a canary step's family."""
        return (self.min_accuracy is not None or self.max_mae is not None) + (
            self.max_drop is not None
        )


@dataclass(frozen=True)
class GateSettings:
    """How the gates judge a step: ``spec.rollout.analysis`` as every change kind's policy
    carries it (declared once for :class:`AnalysisSpec` and :class:`RolloutPolicy`)."""

    interval_seconds: float = default_seconds(DEFAULT_INTERVAL)
    min_requests: int = DEFAULT_MIN_REQUESTS
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_prediction_shift: float = DEFAULT_MAX_PREDICTION_SHIFT
    confidence: float = DEFAULT_CONFIDENCE
    latency_margin: float = DEFAULT_LATENCY_MARGIN
    input_drift_margin: float = DEFAULT_INPUT_DRIFT_MARGIN
    early_advance: bool = DEFAULT_EARLY_ADVANCE
    #: None: no performance gate.
    performance: PerformanceGate | None = None


@dataclass(frozen=True)
class AnalysisSpec(GateSettings):
    """``spec.rollout.analysis``: how the gates judge each step."""

    tolerance: Tolerance = field(default_factory=Tolerance)


@dataclass(frozen=True, kw_only=True)
class RolloutPolicy(GateSettings):
    """``spec.rollout`` for one change kind, plus the SLOs the gates use."""

    steps: tuple[Step, ...]
    progress_deadline_seconds: float = default_seconds(DEFAULT_PROGRESS_DEADLINE)
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_latency_p95: float = default_seconds(DEFAULT_MAX_LATENCY_P95)

    @property
    def judged_steps(self) -> int:
        """Steps whose gates judge traffic: shadow and canary, and a final pause (judged
        once more before promotion). The rollout's error budget is shared among them."""
        judged = sum(1 for step in self.steps if step.kind in ("shadow", "canary"))
        final_pause = bool(self.steps) and self.steps[-1].kind == "pause"
        return max(1, judged + final_pause)


@dataclass(frozen=True)
class BakeSpec:
    """``spec.rollout.bake``: after a promotion, the previous revision is kept (at
    ``min_replicas``) for ``duration``; live traffic goes back to it if the promoted
    revision turns unhealthy or its realized performance degraded in that time."""

    duration: str
    duration_seconds: float
    min_replicas: int = DEFAULT_BAKE_MIN_REPLICAS


@dataclass(frozen=True)
class RolloutSpec:
    """``spec.rollout``; ``problem`` says why it could not be read (then: blue/green)."""

    replacement: tuple[Step, ...] = ()
    tweak: tuple[Step, ...] = ()
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    progress_deadline_seconds: float = default_seconds(DEFAULT_PROGRESS_DEADLINE)
    #: ``trafficRouting.gatewayAPI.httpRoute``: the HTTPRoute whose weights Vigil sets.
    http_route: str | None = None
    #: None: no bake, the previous revision goes at the switch.
    bake: BakeSpec | None = None
    problem: str | None = None

    def steps_for(self, change: str) -> tuple[Step, ...]:
        """The steps of a change kind ('new' has none)."""
        return {"replacement": self.replacement, "tweak": self.tweak}.get(change, ())

    def policy(self, change: str, slo: SLOSpec) -> RolloutPolicy:
        """What ``vigil.core.rollout.decide`` judges one change kind by."""
        gates = {f.name: getattr(self.analysis, f.name) for f in fields(GateSettings)}
        return RolloutPolicy(
            steps=self.steps_for(change),
            progress_deadline_seconds=self.progress_deadline_seconds,
            max_error_rate=slo.max_error_rate,
            max_latency_p95=slo.max_latency_p95,
            **gates,
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
