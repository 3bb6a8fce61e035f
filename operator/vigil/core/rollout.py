"""The progressive rollout state machine: ``decide(policy, state, observations, now)``.

Pure: it reads the rollout policy (``spec.rollout``, typed by :mod:`vigil.core.spec`), the
rollout state (from ``status.candidate``), what was measured this cycle, and the time, and
returns a :class:`Decision`. It writes nothing; the operator applies the traffic it asks
for and persists the new state in status, so a restart resumes exactly where it stopped.

It starts once the candidate's Deployment exists (the first step's clock once it is
ready); the reconciler (``vigil.core.reconcile``) creates it, cleans up superseded
candidates and ends a promotion with its blue/green switch (to an available revision).

The runbook, one cycle (Flagger-style: each line is a step of ``decide``):

    a person aborted                           -> roll back (reason Aborted), a promotion too
    a person promoted                          -> promote now
    a person paused or resumed                 -> remember it (a resume with nothing to
                                                  resume is refused, with the reason)
    paused (spec.paused or a person)           -> hold everything where it is (a decided
                                                  promotion at full capacity); the deadline
                                                  counts again from the resume
    promotion decided                          -> switch once the candidate has all its
                                                  replicas ready (deadline: progressDeadline)
    candidate not ready (no pod; at first: all) -> wait (deadline: progressDeadline)
    validate step, golden set not replayed yet -> ask for the replay, wait
    validate step, replay below minAgreement   -> roll back at once (a replay cannot grow)
    validate step, replay passed               -> next step
    pause step without duration                -> wait for a person (resume/promote)
    pause step with duration                   -> next step when it has elapsed
    last a pause, no shadow/canary to judge    -> wait for a person (promote or abort)
    metrics unavailable                        -> hold (never judge on missing data)
    too few requests in the step so far        -> hold (InsufficientData)
        held longer than progressDeadline      -> fail; the stable stays untouched
    a gate failed, with confidence             -> count it; failureLimit in a row -> roll back
        in an Undecided hold past its deadline -> fail, as the hold would
    every expected gate judged and passed      -> next step at once (earlyAdvance)
    no gate failed, step duration not over     -> stay on the step
    step over, a gate undecided with its       -> hold (Undecided) until the evidence
      estimate beyond its threshold, or a         decides or the estimate is back within,
      performance gate short of minLabels         within progressDeadline
    step over, more steps                      -> next step
    last step over                             -> promote

Each step judges its own evidence: the requests (a canary's live requests, a shadow
step's copies), comparisons, predictions, input rows and (canary, with
``analysis.performance``) labels since the step started (vigil.core.judges:
confidence sequences, Holm across gates). Between two checks nothing new is said.

Invariants (property-tested): never promote without an evaluation of at least
``minRequests`` with no failed gate at the final step (a person's promote aside); never
count a failed check on missing data; the stable keeps its full replica count until the
candidate is promoted; a rollback always leaves the candidate at zero traffic; nothing
waits without a deadline but a pause.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vigil.common.times import format_unix
from vigil.core.analysis import CandidateFigures
from vigil.core.judges import Gate, gates, golden_gate, not_judged
from vigil.core.spec import RolloutPolicy, Step, Tolerance, last_traffic_step, unjudged_pause
from vigil.core.vocabulary import Action, GateVerdict, Outcome, Reason, RequestVerb

WAITS_FOR_PERSON = "waits for a person (kubectl vigil resume NAME, or promote)"
NOTHING_TO_JUDGE = (
    "no shadow or canary step to judge: promote or abort (kubectl vigil promote NAME)"
)

# -- state (lives in status.candidate) --------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    """Where the rollout is; persisted in ``status.candidate`` after every decision (times
    are Unix seconds; status stores them as RFC 3339)."""

    step: int = 0
    step_started_at: float | None = None
    failed_checks: int = 0
    held_since: float | None = None
    last_analysis_at: float | None = None
    #: A person asked for it (through the plugin); the operator clears it when done.
    requested: RequestVerb | Literal[""] = ""
    paused: bool = False
    #: A person resumed an open-ended pause step.
    released: bool = False
    #: Promotion decided: the candidate scales to full capacity, then the switch.
    promoting: bool = False


# -- observations (measured this cycle) ---------------------------------------------------


@dataclass(frozen=True)
class GoldenResult:
    """The replay of the golden set against the candidate."""

    total: int
    agreed: int
    #: The validate step (0-based) that replayed it: a later validate step replays its own.
    step: int | None = None
    message: str = ""  # why the set was unusable, or the replay's first mismatches

    @property
    def agreement(self) -> float:
        return self.agreed / self.total if self.total else 0.0


@dataclass(frozen=True)
class Observations:
    candidate_ready: bool
    replicas: int
    metrics_available: bool = True
    metrics_error: str = ""
    figures: CandidateFigures | None = None
    golden: GoldenResult | None = None
    spec_paused: bool = False
    #: All ``replicas`` candidate pods are ready: a decided promotion can switch.
    full_capacity: bool = False


# -- decision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """What the routers must set up for this decision."""

    candidate_weight: int  # percent of live traffic
    shadow_percent: int  # percent of live requests mirrored to the candidate
    candidate_replicas: int
    stable_replicas: int
    #: With shadow copies: when numeric predictions agree (the shadow step's tolerance).
    shadow_tolerance: Tolerance | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    state: RolloutState
    traffic: Traffic
    reason: str
    message: str
    gates: tuple[Gate, ...] = ()
    run_golden_set: bool = False
    #: The last analysis passed with enough requests (the promotion evidence).
    evaluated: bool = False
    events: tuple[str, ...] = field(default_factory=tuple)
    #: Why a person's request was not taken ("" = taken, or none was made).
    refused: str = ""
    #: A wait between two checks: status keeps the words of the last check.
    between_checks: bool = False


def candidate_replicas_for(weight: int, replicas: int) -> int:
    """Replica-ratio routing: ceil(weight% x replicas), at least one while weighted."""
    if weight <= 0:
        return 0
    return max(1, math.ceil(weight * replicas / 100))


def traffic_at(steps: Sequence[Step], index: int, replicas: int) -> Traffic:
    """Traffic during step ``index``; a pause keeps the traffic of the step before it.

    The stable keeps its full replica count until promotion, so capacity
    never drops while the candidate takes a share.
    """
    step = steps[index]
    effective = step if step.kind != "pause" else last_traffic_step(steps, index)
    if effective is None or effective.kind == "validate":
        # The candidate runs (one replica replays the golden set); no live traffic.
        return Traffic(0, 0, 1, replicas)
    if effective.kind == "shadow":
        # Mirrored load is the full live load (at percent): the candidate gets full capacity.
        return Traffic(0, effective.percent, replicas, replicas, effective.tolerance)
    weight = effective.weight
    return Traffic(weight, 0, candidate_replicas_for(weight, replicas), replicas)


def _samples(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> tuple[int, int, str]:
    """(have, need, a hold's words), never less than one needed: a shadow step counts compared
    predictions and the copies it failed (never compared, and why), a canary its live requests."""
    have, need, what, why = figures.requests, max(1, policy.min_requests), "candidate requests", ""
    if step.kind == "shadow":
        failed = round(figures.copies.failures)
        have, need = figures.compared + failed, max(need, step.min_requests or 0)
        what = "compared predictions" + (f" and failed copies ({failed})" if failed else "")
        why = f"; {figures.not_compared_text}" if figures.not_compared_text else ""
    return have, need, f"{have} {what} < {need} needed{why}"


def decide(policy: RolloutPolicy, state: RolloutState, obs: Observations, now: float) -> Decision:
    """The next move of one rollout; see the module docstring for the runbook."""
    steps = policy.steps
    if not steps:
        raise ValueError("decide() needs rollout steps; without steps the switch is blue/green")
    state = replace(state, step=min(state.step, len(steps) - 1))
    index, step = state.step, steps[state.step]
    # The first step starts when the candidate is ready: its duration and its holds count from then.
    if state.step_started_at is None and obs.candidate_ready:
        state = replace(state, step_started_at=now, held_since=None)
    began = now if state.step_started_at is None else state.step_started_at
    cycle = _Cycle(policy, obs, now, traffic_at(steps, index, obs.replicas))

    # A person aborted: roll back now (a decided promotion too: the stable still serves).
    if state.requested == RequestVerb.ABORT:
        aborted = replace(state, requested="")
        return cycle.rollback(aborted, Reason.ABORTED, "rollout aborted by a person")
    # A person promoted: promote now, whatever the step.
    if state.requested == RequestVerb.PROMOTE:
        return cycle.promote(
            replace(state, requested=""), (), Reason.PROMOTED_BY_PERSON, "promoted by a person"
        )
    # A person paused or resumed: remember it, or say why not (a resume releases a pause step).
    state, refused = _pause_or_resume(state, steps, index, obs.spec_paused)
    cycle = replace(cycle, refused=refused)
    # Paused: hold traffic (a decided promotion's full capacity) and step; no hold's deadline.
    if obs.spec_paused or state.paused:
        who = "spec.paused" if obs.spec_paused else "a person"
        return cycle.decision(
            Action.HOLD,
            replace(state, held_since=None),
            Reason.PAUSED,
            f"paused by {who} at step {index + 1}/{len(steps)} ({step.describe()})",
            traffic=cycle.full_capacity if state.promoting else cycle.traffic,
        )
    # Promotion decided: switch once the candidate has full capacity, within the deadline.
    if state.promoting:
        return cycle.promoting(state)
    # Candidate pods not ready: wait for them, within the deadline.
    if not obs.candidate_ready:
        waiting = "waiting for the candidate's pods to become ready"
        return cycle.hold(state, Reason.CANDIDATE_NOT_READY, waiting)

    # validate: replay the golden set before any live traffic.
    if step.kind == "validate":
        if obs.golden is None:
            return cycle.hold(
                state,
                Reason.VALIDATION_PENDING,
                "replaying the golden set against the candidate",
                run_golden_set=True,
            )
        need = step.min_agreement if step.min_agreement is not None else policy.min_agreement
        golden = obs.golden
        gate = golden_gate(golden.agreed, golden.total, need, policy.confidence, golden.message)
        # A replay cannot grow: an undecided one is settled by its estimate.
        if gate.verdict == GateVerdict.FAIL or not gate.within:
            return cycle.rollback(state, Reason.GOLDEN_SET_MISMATCH, gate.text, (gate,))
        return cycle.next_step(state, (gate,), evaluated=True)

    # pause: wait for a person, or for its duration; a final pause then needs fresh evidence.
    if step.kind == "pause":
        # Waiting here is no hold: a not-ready blip before it starts no deadline's clock.
        waiting = replace(state, held_since=None)
        timed = step.duration_seconds is not None
        end = began + (step.duration_seconds or 0.0)
        if timed and now < end:
            pausing = f"pause until {format_unix(end)}"
            return cycle.decision(Action.WAIT, waiting, Reason.PAUSING, pausing)
        # Open-ended, or last with no shadow or canary step to judge: a person decides.
        unjudged = unjudged_pause(steps, index)
        if (not timed and not state.released) or unjudged:
            words = NOTHING_TO_JUDGE if unjudged else WAITS_FOR_PERSON
            return cycle.decision(Action.WAIT, waiting, Reason.WAITING_FOR_PERSON, words)
        if index + 1 < len(steps):
            return cycle.next_step(state, (), evaluated=False)

    # shadow, canary and a final pause: judge the window.
    if not obs.metrics_available or obs.figures is None:
        return cycle.hold(
            state, Reason.METRICS_UNAVAILABLE, obs.metrics_error or "no metrics for the candidate"
        )
    judged = step if step.kind != "pause" else (last_traffic_step(steps, index) or step)
    have, need, words = _samples(judged, policy, obs.figures)
    if have < need:
        return cycle.hold(state, Reason.INSUFFICIENT_DATA, words)
    # Judge at most once per interval (the evidence grows between checks).
    last = state.last_analysis_at
    if last is not None and now - last < policy.interval_seconds:
        wait = policy.interval_seconds - (now - last)
        words = f"next check in {wait:.0f}s"
        return cycle.decision(Action.WAIT, state, Reason.ANALYZING, words, between_checks=True)
    end_at = began + (0.0 if step.kind == "pause" else judged.duration_seconds or 0.0)
    over = now >= end_at
    # A check ends a hold on missing data (begun before the step's end or since the last check);
    # an Undecided one, begun at a check past the end, goes on: alternating gates meet the deadline.
    if last is None or last < end_at or (state.held_since or 0.0) > last:
        state = replace(state, held_since=None)
    results = gates(judged, policy, obs.figures, elapsed=now - began)
    state = replace(state, last_analysis_at=now)
    failed = [g for g in results if g.verdict == GateVerdict.FAIL]
    if failed:
        count = state.failed_checks + 1
        text = "; ".join(g.text for g in failed)
        state = replace(state, failed_checks=count)
        if count >= policy.failure_limit:
            return cycle.rollback(
                state, Reason.ANALYSIS_FAILED, f"{text} in {count} checks", results
            )
        words = f"{text} ({count}/{policy.failure_limit})"
        # An Undecided hold goes on through failed checks, so its deadline still counts.
        checked = cycle.decision(Action.WAIT, state, Reason.CHECK_FAILED, words, gates=results)
        return cycle.overdue(state, words) or checked
    state = replace(state, failed_checks=0)
    undecided = [g for g in results if g.verdict == GateVerdict.UNDECIDED]
    missing = not_judged(judged, policy, obs.figures)
    # Every gate the step expects passed with confidence: the step has its evidence.
    if policy.early_advance and not undecided and not missing and step.kind != "pause":
        return cycle.next_step(replace(state, held_since=None), results, evaluated=True)
    if not over:
        return cycle.decision(
            Action.WAIT,
            state,
            Reason.STEP_IN_PROGRESS,
            f"{_standing(results, missing)}, {end_at - now:.0f}s left",
            gates=results,
            evaluated=True,
        )
    # The step is over: an undecided gate whose estimate is beyond its threshold keeps the
    # step going until the evidence decides (within progressDeadline), never promotes.
    beyond = [g for g in undecided if not g.within]
    if beyond:
        return cycle.hold(
            state,
            Reason.UNDECIDED,
            f"{'; '.join(g.text for g in beyond)}; the step's duration is over",
            gates=results,
            evaluated=True,
            # An Event when the hold begins (its figures change at every check).
            events=(Reason.UNDECIDED,) if state.held_since is None else (),
        )
    return cycle.next_step(replace(state, held_since=None), results, evaluated=True)


def _verdicts(results: Sequence[Gate]) -> str:
    """'; gates: pass error rate 0.1% [0.0%, 0.9%] vs 1.0%; ...' (nothing without gates)."""
    said = "; ".join(f"{g.verdict} {g.text}" for g in results)
    return f"; gates: {said}" if said else ""


def _standing(results: Sequence[Gate], missing: Sequence[str] = ()) -> str:
    """'gates passing' or 'no gate failing, 2 undecided (errorRate, agreement)'; a gate
    with no evidence yet: '(predictionShift not judged yet)'."""
    undecided = [g.name for g in results if g.verdict == GateVerdict.UNDECIDED]
    undecided += [f"{name} not judged yet" for name in missing]
    if not undecided:
        return "gates passing"
    return f"no gate failing, {len(undecided)} undecided ({', '.join(undecided)})"


def _pause_or_resume(
    state: RolloutState, steps: Sequence[Step], index: int, by_spec: bool
) -> tuple[RolloutState, str]:
    """A person's pause or resume taken into the state, or why it is refused ("" = taken).
    A resume does not release a last pause with nothing to judge (:func:`unjudged_pause`)."""
    if state.requested == RequestVerb.PAUSE:
        return replace(state, paused=True, requested=""), ""
    if state.requested != RequestVerb.RESUME:
        return state, ""
    state, step, unjudged = replace(state, requested=""), steps[index], unjudged_pause(steps, index)
    waiting = step.kind == "pause" and step.duration_seconds is None and not state.released
    if state.paused or (waiting and not unjudged):
        return replace(state, paused=False, released=True), ""
    if by_spec:
        return state, "spec.paused holds the rollout: set it to false to resume"
    if unjudged and not state.promoting:
        return state, f"nothing to resume: a last pause with {NOTHING_TO_JUDGE}"
    return state, "nothing to resume: the rollout is not paused"


@dataclass(frozen=True)
class _Cycle:
    """Builds the decisions of one cycle (shared inputs, one place for each outcome)."""

    policy: RolloutPolicy
    obs: Observations
    now: float
    traffic: Traffic
    refused: str = ""

    def decision(
        self, action: Action, state: RolloutState, reason: str, message: str, **extra: Any
    ) -> Decision:
        traffic = extra.pop("traffic", self.traffic)
        return Decision(action, state, traffic, reason, message, refused=self.refused, **extra)

    def rollback(
        self, state: RolloutState, reason: str, message: str, results: tuple[Gate, ...] = ()
    ) -> Decision:
        """The candidate leaves traffic; the stable keeps serving at full capacity."""
        return self.decision(
            Action.ROLLBACK,
            replace(state, promoting=False),
            reason,
            message,
            gates=results,
            traffic=Traffic(0, 0, 0, self.obs.replicas),
            events=(Reason.ROLLED_BACK,),
        )

    def promote(
        self, state: RolloutState, results: tuple[Gate, ...], reason: str, message: str
    ) -> Decision:
        """Scale the candidate to full capacity; the blue/green switch then moves the Service.
        The promotion's deadline counts from its decision (a second promote keeps it)."""
        since = state.held_since if state.promoting else self.now
        return self.decision(
            Action.PROMOTE,
            replace(state, promoting=True, paused=False, held_since=since),
            reason,
            message,
            gates=results,
            traffic=self.full_capacity,
            evaluated=True,
            events=(Outcome.PROMOTED,),
        )

    def promoting(self, state: RolloutState) -> Decision:
        """A decided promotion: switch at full capacity; fail if it cannot get there in time.

        A candidate that never reaches its replicas (a quota, a node too small)
        would otherwise keep two revisions running, the switch never coming.
        """
        if self.obs.full_capacity:
            return self.decision(
                Action.PROMOTE, state, Reason.PROMOTING, "switching", traffic=self.full_capacity
            )
        return self.hold(
            state,
            Reason.PROMOTING,
            f"waiting for {self.obs.replicas} ready replica(s) of the candidate",
            traffic=self.full_capacity,
        )

    @property
    def full_capacity(self) -> Traffic:  # the step's weight asked while the candidate scales up
        return Traffic(self.traffic.candidate_weight, 0, self.obs.replicas, self.obs.replicas)

    def hold(self, state: RolloutState, reason: str, message: str, **extra: Any) -> Decision:
        """Hold on missing or too few data; fail once held past progressDeadline."""
        since = state.held_since if state.held_since is not None else self.now
        state = replace(state, held_since=since)
        held = self.decision(Action.HOLD, state, reason, message, **extra)
        return self.overdue(state, message) or held

    def overdue(self, state: RolloutState, message: str) -> Decision | None:
        """Fail a hold that has lasted progressDeadline (None: not holding, or in time)."""
        held = self.now - (self.now if state.held_since is None else state.held_since)
        deadline = self.policy.progress_deadline_seconds
        if state.held_since is None or held < deadline:
            return None
        return self.decision(
            Action.FAIL,
            replace(state, promoting=False),
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"{message} for {held:.0f}s >= progressDeadline {deadline:.0f}s",
            traffic=Traffic(0, 0, 0, self.obs.replicas),
            events=(Reason.ROLLOUT_FAILED,),
        )

    def next_step(
        self, state: RolloutState, results: tuple[Gate, ...], *, evaluated: bool
    ) -> Decision:
        steps = self.policy.steps
        if state.step + 1 >= len(steps):
            if not evaluated:  # never promote on no evidence: judge the window first
                words = "final check before promotion"
                return self.decision(Action.WAIT, state, Reason.ANALYZING, words, gates=results)
            return self.promote(
                state,
                results,
                Reason.ANALYSIS_PASSED,
                f"last step {len(steps)}/{len(steps)} passed{_verdicts(results)}",
            )
        following = steps[state.step + 1]
        moved = replace(
            state,
            step=state.step + 1,
            step_started_at=self.now,
            failed_checks=0,
            held_since=None,
            last_analysis_at=None,
            released=False,
        )
        return self.decision(
            Action.ADVANCE,
            moved,
            Reason.STEP_ADVANCED,
            f"step {state.step + 1}/{len(steps)} passed; now step {state.step + 2} "
            f"({following.describe()}){_verdicts(results)}",
            gates=results,
            traffic=traffic_at(steps, state.step + 1, self.obs.replicas),
            evaluated=evaluated,
            events=(Reason.STEP_ADVANCED,),
        )
