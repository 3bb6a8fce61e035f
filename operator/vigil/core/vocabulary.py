"""The operator's words: every reason, phase, outcome, action, change kind and request verb.

The API's vocabulary (``kubectl describe``, alerts, Argo CD and Flux read
these words), so each is written once, here, as a member of a ``StrEnum``:
a member is its word (``Reason.AVAILABLE == "Available"``), goes into
status and Events as that word, and a typo is an AttributeError instead of
a new reason nobody documented. docs/troubleshooting.md explains every
``Reason`` (tests/unit/docs hold the page to this module).
"""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    """``status.phase``."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class ConditionType(enum.StrEnum):
    """``status.conditions[].type``."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    # kstatus' "abnormal-true" pair (kpt and Flux read these, not Ready, for custom resources).
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    HEALTHY = "Healthy"
    DRIFT_DETECTED = "DriftDetected"
    METRICS_AVAILABLE = "MetricsAvailable"
    PERFORMANCE_DEGRADED = "PerformanceDegraded"


class Reason(enum.StrEnum):
    """Every reason a person can meet: on a condition, in ``status.candidate``, on an Event."""

    # Ready and Progressing (the reconcile).
    AVAILABLE = "Available"
    COMPLETE = "Complete"
    DEPLOYING = "Deploying"
    SCALING = "Scaling"
    UPDATING = "Updating"
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    ROLLOUT_FAILED = "RolloutFailed"
    ROLLOUT_PAUSED = "RolloutPaused"
    DEPLOY_FAILED = "DeployFailed"
    INVALID_SPEC = "InvalidSpec"
    REFERENCE_NOT_FOUND = "ReferenceNotFound"
    SERVICE_CONFLICT = "ServiceConflict"
    ARTIFACT_FETCH_FAILED = "ArtifactFetchFailed"
    NOT_STALLED = "NotStalled"
    # A stepped rollout (status.candidate.reason, and Progressing while it runs).
    ABORTED = "Aborted"
    PROMOTED_BY_PERSON = "PromotedByPerson"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    CANDIDATE_NOT_READY = "CandidateNotReady"
    VALIDATION_PENDING = "ValidationPending"
    GOLDEN_SET_MISMATCH = "GoldenSetMismatch"
    WAITING_FOR_PERSON = "WaitingForPerson"
    PAUSING = "Pausing"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    INSUFFICIENT_DATA = "InsufficientData"
    ANALYZING = "Analyzing"
    ANALYSIS_FAILED = "AnalysisFailed"
    CHECK_FAILED = "CheckFailed"
    UNDECIDED = "Undecided"
    STEP_IN_PROGRESS = "StepInProgress"
    ANALYSIS_PASSED = "AnalysisPassed"
    STEP_ADVANCED = "StepAdvanced"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # The bake period after a promotion (status.bake, and Progressing while it runs).
    BAKING = "Baking"
    BAKE_FAILED = "BakeFailed"
    # Health (Healthy, DriftDetected, MetricsAvailable).
    SLOS_MET = "SLOsMet"
    ERROR_RATE_HIGH = "ErrorRateHigh"
    LATENCY_HIGH = "LatencyHigh"
    DRIFT_ABOVE_THRESHOLD = "DriftAboveThreshold"
    DRIFT_WARNING = "DriftWarning"
    NO_DRIFT = "NoDrift"
    NO_REFERENCE = "NoReference"
    METRICS_COLLECTED = "MetricsCollected"
    # PerformanceDegraded (realized performance, from labels).
    PERFORMANCE_BELOW_THRESHOLD = "PerformanceBelowThreshold"
    PERFORMANCE_MET = "PerformanceMet"
    INSUFFICIENT_LABELS = "InsufficientLabels"
    NO_PERFORMANCE_THRESHOLD = "NoPerformanceThreshold"
    # Events only.
    DEPLOYED = "Deployed"
    SCALED = "Scaled"
    SWITCHED = "Switched"
    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_ABORTED = "RolloutAborted"
    ROLLOUT_SUPERSEDED = "RolloutSuperseded"
    ROLLOUT_RETRIED = "RolloutRetried"
    ROLLED_BACK = "RolledBack"
    BAKE_PASSED = "BakePassed"
    BAKE_ROLLBACK_FAILED = "BakeRollbackFailed"
    REQUEST_REFUSED = "RequestRefused"
    RECONCILE_FAILED = "ReconcileFailed"
    ROUTING_FAILED = "RoutingFailed"
    ROUTING_APPLIED = "RoutingApplied"


class Verdict(enum.StrEnum):
    """``status.health.verdict``."""

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    DRIFT_DETECTED = "DriftDetected"
    INSUFFICIENT_DATA = "InsufficientData"
    METRICS_UNAVAILABLE = "MetricsUnavailable"


class GateVerdict(enum.StrEnum):
    """``status.candidate.gates[].verdict``: what one gate's evidence says, with confidence."""

    PASS = "pass"
    FAIL = "fail"
    UNDECIDED = "undecided"


class Outcome(enum.StrEnum):
    """``status.history[].outcome``; the last three also end a stepped rollout."""

    DEPLOYED = "Deployed"
    SUPERSEDED = "Superseded"
    ABORTED = "Aborted"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


#: A rollout that ended this way is not retried until the spec changes or a person asks.
FINISHED = (Outcome.ROLLED_BACK, Outcome.FAILED)


class Action(enum.StrEnum):
    """What one cycle of a stepped rollout does (``vigil.core.rollout.decide``)."""

    WAIT = "wait"
    HOLD = "hold"
    ADVANCE = "advance"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    FAIL = "fail"


class BakeMove(enum.StrEnum):
    """What one cycle of a bake period does (``vigil.core.bake.decide``)."""

    BAKE = "bake"
    PASS = "pass"
    GO_BACK = "goBack"
    ROLL_BACK = "rollBack"
    GIVE_UP = "giveUp"


class ChangeKind(enum.StrEnum):
    """How a new revision differs from the stable one; each kind has its own policy."""

    NEW = "new"
    REPLACEMENT = "replacement"
    TWEAK = "tweak"


class RequestVerb(enum.StrEnum):
    """What a person can ask with ``kubectl vigil`` (the ``vigil.dev/request`` annotation)."""

    PROMOTE = "promote"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


class Answer(enum.StrEnum):
    """``status.lastRequest.answer``."""

    TAKEN = "Taken"
    REFUSED = "Refused"
