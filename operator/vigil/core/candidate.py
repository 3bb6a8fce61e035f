"""``status.candidate`` <-> ``RolloutState``, and what the operator measured for the candidate.

All rollout state lives in ``status.candidate`` (restart-safe): the step,
when it started, the failed checks in a row, since when the rollout holds,
the last analysis, a person's pause or release, the golden replay's result,
whether the promotion is under way and the outcome of a finished attempt.

A person's request (``kubectl vigil``) is answered in ``status.lastRequest``:
taken or refused, with the reason; its id there also keeps a restart
between answering and clearing the annotation from acting twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.common.times import format_unix, parse_unix
from vigil.core.analysis import CandidateFigures
from vigil.core.rollout import GoldenResult, RolloutState, Traffic
from vigil.core.vocabulary import RequestVerb


class RouteChoice(Protocol):
    """What a router decides for one Traffic (``vigil.routing.RoutePlan`` fits)."""

    @property
    def replicas(self) -> Mapping[str, int]: ...

    @property
    def service_selector(self) -> Mapping[str, str]: ...

    @property
    def effective_weight(self) -> float: ...

    @property
    def notes(self) -> tuple[str, ...]: ...


#: (stable revision, candidate revision or None, traffic) -> the router's plan.
RoutePlanner = Callable[[str, str | None, Traffic], RouteChoice]


@dataclass(frozen=True)
class RolloutInputs:
    """What the operator measured for the candidate this cycle (I/O done beforehand)."""

    figures: CandidateFigures | None = None
    metrics_available: bool = True
    metrics_error: str = ""
    #: A golden replay run this cycle (the decision before it asked for it).
    golden: GoldenResult | None = None
    #: Where the stable's sidecars send shadow copies (per-revision Service or a pod).
    shadow_target: str | None = None
    #: False when the candidate's sidecar does not answer ready yet (its model still loads).
    candidate_serving: bool = True
    #: (added, dropped) input features of the candidate's reference profile against the
    #: stable's; None when either profile could not be read this cycle.
    feature_changes: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    #: Why the last Route action could not be applied ("": applied, or none needed).
    routing_error: str = ""
    #: Why the golden replay run this cycle gave no result ("": it did, or none ran).
    golden_pending: str = ""
    #: The task the candidate's (else the stable's) reference profile names ("": none read):
    #: told to the stable's sidecar for its shadow comparison when the spec names none.
    profile_task: str = ""


@dataclass(frozen=True)
class Request:
    """A person's request read from the annotations (vigil.plugin.requests: the contract).

    ``verb`` is kept as written, so that an unknown one is refused by name;
    ``request_id`` may be empty.
    """

    verb: str
    request_id: str
    #: The candidate revision the person saw (None when not given): a request for one
    #: rollout is refused in another.
    revision: str | None = None

    @property
    def valid(self) -> bool:
        return self.verb in tuple(RequestVerb)


def state_from_status(candidate: Mapping[str, Any] | None) -> RolloutState:
    """The rollout state a previous cycle persisted (defaults when there is none)."""
    candidate = candidate or {}
    return RolloutState(
        step=int(candidate.get("step") or 0),
        step_started_at=parse_unix(candidate.get("stepStartedAt")),
        failed_checks=int(candidate.get("failedChecks") or 0),
        held_since=parse_unix(candidate.get("heldSince")),
        last_analysis_at=parse_unix(candidate.get("lastAnalysisAt")),
        paused=bool(candidate.get("paused")),
        released=bool(candidate.get("released")),
        promoting=bool(candidate.get("promoting")),
    )


def state_to_status(state: RolloutState) -> dict[str, Any]:
    """The fields of ``status.candidate`` that hold the state (None = absent)."""
    return {
        "step": state.step,
        # Microseconds: the step's evidence starts after the advancing cycle's scrape.
        "stepStartedAt": format_unix(state.step_started_at, micro=True),
        "failedChecks": state.failed_checks,
        "heldSince": format_unix(state.held_since),
        "lastAnalysisAt": format_unix(state.last_analysis_at),
        "paused": state.paused or None,
        "released": state.released or None,
        "promoting": state.promoting or None,
    }


def evidence_seconds(candidate: Mapping[str, Any] | None, revision: str, now: float) -> float:
    """How far back this cycle measures ``revision``: to the start of its current step.

    Each step judges its own evidence (a canary step counts the live requests
    it sent, not the shadow step's copies before it), and the sequential
    tests need it to grow from the step's start. 0 before the step started.
    """
    candidate = candidate or {}
    started = parse_unix(candidate.get("stepStartedAt"))
    if candidate.get("revision") != revision or started is None:
        return 0.0
    # The cycle that advanced scraped before it read the clock it stamped the step with,
    # and routed traffic after: its scrape is the baseline, to the microsecond.
    return max(0.0, now - started)


def golden_from_status(candidate: Mapping[str, Any] | None) -> GoldenResult | None:
    golden = (candidate or {}).get("golden") or {}
    if "total" not in golden:
        return None
    step = golden.get("step")
    return GoldenResult(
        total=int(golden["total"]),
        agreed=int(golden.get("agreed") or 0),
        step=int(step) if step is not None else None,
        message=str(golden.get("message") or ""),
    )
