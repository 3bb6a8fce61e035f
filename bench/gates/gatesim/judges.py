"""Judges: what decides a rollout from the two revisions' windows.

A judge is the part of the operator the simulator measures. It gets the
rollout's fixed setup once (:meth:`Judge.start`) and then, every cycle, the
rollout state and the windows; it returns a ``vigil.core.rollout.Decision``
(the simulator applies its action and traffic, as the reconciler does).
Per rollout, so a sequential judge can keep its evidence between cycles.

:class:`OperatorJudge` is the operator's path as it is in this checkout:
``vigil.core.analysis.candidate_figures`` then ``vigil.core.rollout.decide``
(with ``vigil.core.judges``). Another judge is one more class here and one
more name in :data:`JUDGES`; ``run.py --judge`` puts judges side by side on
the same seeded streams, and ``--judge operator:confidence=0.95`` runs the
operator's code with other analysis settings. The judge of issue 16's
"today" (point estimates, failureLimit) is the code before it: its numbers,
on the same seeds, are in bench/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gatesim.counters import WindowView
from vigil.core.analysis import candidate_figures
from vigil.core.rollout import (
    CandidateFigures,
    Decision,
    GoldenResult,
    Observations,
    RolloutPolicy,
    RolloutState,
    decide,
)
from vigil.core.spec import monitoring_settings, parse_policy
from vigil.profile import ReferenceProfile


@dataclass(frozen=True)
class Setup:
    """What stays fixed during one rollout (the spec, the references, the replicas)."""

    spec: Mapping[str, Any]
    change: str
    replicas: int
    candidate_revision: str
    reference: ReferenceProfile
    stable_reference: ReferenceProfile
    #: The golden replay's result (the candidate reproduces its own research outputs).
    golden: GoldenResult = field(default_factory=lambda: GoldenResult(total=200, agreed=200))

    def policy(self) -> RolloutPolicy:
        """The policy as the reconciler builds it (``_rollout_policy``)."""
        settings = monitoring_settings(self.spec)
        return parse_policy(
            self.spec.get("rollout") or {},
            self.change,
            max_error_rate=settings.policy.max_error_rate,
            max_latency_p95=settings.policy.max_latency_p95,
        )


@dataclass(frozen=True)
class Seen:
    """One cycle's measurements."""

    now: float
    candidate: WindowView
    stable: WindowView


DecideFn = Callable[[RolloutState, Seen], Decision]


class Judge(Protocol):
    name: str

    def start(self, setup: Setup) -> DecideFn:
        """A decide function for one rollout."""
        ...


class LazyFigures:
    """``CandidateFigures`` whose gate figures are computed on first use.

    ``decide`` reads only the sample counts on most cycles (too few data,
    or the interval not over); the drift statistics are the costly part.
    Both halves come from the real ``candidate_figures`` (the counts from
    the request and shadow counters alone), so a decision is the same as
    with eager figures (tests/unit/bench checks it on whole rollouts).
    """

    def __init__(self, counts: CandidateFigures, full: Callable[[], CandidateFigures]) -> None:
        self.requests = counts.requests
        self.compared = counts.compared
        self.live = counts.live
        self._full = full
        self._figures: CandidateFigures | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._figures is None:
            self._figures = self._full()
        return getattr(self._figures, name)


@dataclass(frozen=True)
class OperatorJudge:
    """``candidate_figures`` + ``decide``: the operator's gates as they are."""

    name: str = "operator"
    lazy: bool = True

    def start(self, setup: Setup) -> DecideFn:
        policy = setup.policy()
        method = monitoring_settings(setup.spec).policy.drift_method
        revision = setup.candidate_revision

        def figures(candidate: WindowView, stable: WindowView) -> Any:
            def full() -> CandidateFigures:
                return candidate_figures(
                    revision,
                    candidate.full,
                    stable.full,
                    method=method,  # type: ignore[arg-type]
                    reference=setup.reference,
                    stable_reference=setup.stable_reference,
                )

            if not self.lazy:
                return full()
            return LazyFigures(candidate_figures(revision, candidate.light, stable.light), full)

        def run(state: RolloutState, seen: Seen) -> Decision:
            observations = Observations(
                candidate_ready=True,
                replicas=setup.replicas,
                metrics_available=True,
                figures=figures(seen.candidate, seen.stable),
                golden=setup.golden,
            )
            return decide(policy, state, observations, seen.now)

        return run


#: Judge names for ``--judge``.
JUDGES: Mapping[str, Callable[[], Judge]] = {"operator": OperatorJudge}

_OVERRIDE = re.compile(r"^([A-Za-z]+(?:\.[A-Za-z]+)?)=(.+)$")


@dataclass(frozen=True)
class JudgeChoice:
    """A judge and the ``spec.rollout.analysis`` overrides it runs with.

    ``operator`` or ``operator:failureLimit=3,margins.inputDrift=0.1``: the
    second is the same code with another policy, to compare settings side by side.
    """

    label: str
    judge: Judge
    analysis: Mapping[str, Any]

    @classmethod
    def parse(cls, text: str) -> JudgeChoice:
        name, _, rest = text.partition(":")
        if name not in JUDGES:
            raise ValueError(f"unknown judge {name!r}; known: {', '.join(JUDGES)}")
        analysis: dict[str, Any] = {}
        for part in filter(None, rest.split(",")):
            match = _OVERRIDE.match(part.strip())
            if match is None:
                raise ValueError(f"judge {text!r}: {part!r} is not analysisField=value")
            key, value = match.groups()
            section, _, field = key.partition(".")
            if field:  # margins.inputDrift=0.1
                analysis[section] = {**analysis.get(section, {}), field: _value(value)}
            else:
                analysis[key] = _value(value)
        return cls(text, JUDGES[name](), analysis)


def _value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
