"""The simulated world: live traffic, the stable model, and the candidate of each case.

Everything a rollout's windows are drawn from lives here, fixed before any
rollout runs: the reference profiles (built by the real
``vigil.profile.build_profile`` from seeded synthetic training data), the
latency distribution, the error rates, and per case how the candidate
differs from the stable. A "cell model" says, for one input feature or for
the prediction, how one row lands in the stable's slots and in the
candidate's slots *at once*: shadow copies are the same rows answered by
both revisions, so their counts must be drawn jointly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import ndtr

from vigil.core.drift import bin_index
from vigil.profile import OTHER, ReferenceProfile, build_profile
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.metrics import LATENCY_BUCKETS
from vigil.sidecar.shadow import default_absolute_tolerance

Task = Literal["classification", "regression"]

#: z of the 95th percentile of a normal distribution.
Z95 = 1.6448536269514722


@dataclass(frozen=True)
class Baseline:
    """The stable model and its traffic (the A/A world); every case starts from it."""

    #: Share of the stable's requests that fail (model 5xx).
    error_rate: float = 0.002
    #: p95 of the stable's latency (seconds); latency is log-normal.
    latency_p95: float = 0.18
    latency_sigma: float = 0.4
    #: Numeric input features (wine-like: 13), each N(0, 1) in training and live.
    features: int = 13
    #: Classifier: balanced classes.
    classes: int = 3
    #: Rows of the synthetic training set the reference profiles are built from.
    training_rows: int = 5000
    #: Input drift cases: the candidate's training data shifted by this many sd.
    drift_shift_sd: float = 0.5
    #: Seed of the training data (the profiles), apart from the rollouts' seeds.
    seed: int = 20261202

    @property
    def latency_median(self) -> float:
        return self.latency_p95 / math.exp(Z95 * self.latency_sigma)


@dataclass(frozen=True)
class Case:
    """How the candidate differs from the stable (all defaults: identical, A/A)."""

    name: str
    family: str
    task: Task = "classification"
    #: Added to the stable's error rate (0.01 = one percentage point).
    error_points: float = 0.0
    #: Every latency multiplied by this (so the p95 too).
    latency_factor: float = 1.0
    #: Classifier: share of rows where the candidate's class equals the stable's.
    agreement: float = 1.0
    #: Regressor: the candidate predicts the stable's value + this many sd.
    prediction_shift_sd: float = 0.0
    #: The candidate's reference profile was rebuilt with its own predictions.
    own_prediction_reference: bool = False
    #: The candidate's reference was trained on inputs shifted on this many features.
    drifted_features: int = 0
    #: What the case is, in the README's words.
    summary: str = ""

    @property
    def acceptable(self) -> bool:
        """The policy should promote it: a rollback (or a failure) is the wrong end."""
        return self.family in ("A/A", "within")


def _cases() -> tuple[Case, ...]:
    aa = "candidate identical to the stable (a version bump)"
    return (
        Case("A/A", "A/A", summary=f"classifier, {aa}"),
        Case("A/A regressor", "A/A", task="regression", summary=f"regressor, {aa}"),
        *(
            Case(
                f"error +{p} pt",
                "error",
                error_points=p / 100,
                summary=f"fails {p} percentage point(s) more of its requests",
            )
            for p in (1, 2, 5)
        ),
        *(
            Case(
                f"error +{p:g} pt (under the limit)",
                "within",
                error_points=p / 100,
                summary=f"fails {p:g} percentage point more, still under the 1 % limit",
            )
            for p in (0.3, 0.6)
        ),
        *(
            Case(
                f"p95 +{p}%",
                "latency",
                latency_factor=1 + p / 100,
                summary=f"every latency (so the p95) {p} % longer",
            )
            for p in (20, 50)
        ),
        *(
            Case(
                f"agreement {a:.2f}",
                "agreement",
                agreement=a,
                summary=f"classifier agreeing with the stable on {a:.0%} of rows",
            )
            for a in (0.97, 0.93, 0.85)
        ),
        *(
            Case(
                f"shift {s:g} sd",
                "shift",
                task="regression",
                prediction_shift_sd=s,
                summary=f"regressor predicting the stable's value + {s:g} sd",
            )
            for s in (0.1, 0.25, 0.5)
        ),
        Case(
            "shift 0.5 sd, own reference",
            "shift",
            task="regression",
            prediction_shift_sd=0.5,
            own_prediction_reference=True,
            summary="as shift 0.5 sd, with a reference profile built from its own predictions",
        ),
        *(
            Case(
                f"drift {k} feature{'s' if k > 1 else ''}",
                "drift",
                drifted_features=k,
                summary=f"candidate's reference trained on {k} feature(s) shifted",
            )
            for k in (1, 3)
        ),
    )


CASES: tuple[Case, ...] = _cases()


def find_cases(selectors: Sequence[str]) -> tuple[Case, ...]:
    """Cases by name or family ('A/A', 'error', 'latency', ...); all for no selector."""
    if not selectors:
        return CASES
    chosen = [c for c in CASES if c.name in selectors or c.family in selectors]
    unknown = [s for s in selectors if not any(s in (c.name, c.family) for c in CASES)]
    if unknown:
        names = ", ".join(sorted({c.family for c in CASES} | {c.name for c in CASES}))
        raise ValueError(f"unknown case(s) {unknown}; known: {names}")
    return tuple(chosen)


# -- cell models ----------------------------------------------------------------------


@dataclass(frozen=True)
class CellModel:
    """One row's joint landing in the stable's and the candidate's slots.

    ``probs[c]`` is the chance a row falls in cell ``c``; the row then counts
    in the stable's slot ``stable_slot[c]`` and the candidate's slot
    ``candidate_slot[c]``; ``agree[c]`` says whether the two predictions
    agree in the shadow comparison and ``difference[c]`` is their |difference|.
    """

    probs: np.ndarray
    stable_slot: np.ndarray
    candidate_slot: np.ndarray
    agree: np.ndarray
    difference: np.ndarray
    stable_slots: int
    candidate_slots: int

    def stable_marginal(self) -> np.ndarray:
        return np.bincount(self.stable_slot, self.probs, minlength=self.stable_slots)

    def candidate_marginal(self) -> np.ndarray:
        return np.bincount(self.candidate_slot, self.probs, minlength=self.candidate_slots)


def numeric_cells(
    stable_edges: Sequence[float],
    candidate_edges: Sequence[float],
    shift: float = 0.0,
    tolerance: tuple[float, float] = (0.0, 0.0),
) -> CellModel:
    """A value v ~ N(0, 1): the stable bins v, the candidate bins v + shift, on its own edges.

    The cells are the intervals between all edges of both binnings (the
    candidate's moved by -shift) and the points where the shadow rule
    ``|shift| <= absolute + relative x |v|`` (``tolerance``) turns; slots
    follow ``vigil.core.drift.bin_index``.
    """
    absolute, relative = tolerance
    stable = np.asarray(stable_edges, dtype=np.float64)
    candidate = np.asarray(candidate_edges, dtype=np.float64)
    turns: list[float] = []
    if relative > 0 and abs(shift) > absolute:
        turn = (abs(shift) - absolute) / relative
        turns = [-turn, turn]
    points = np.unique(np.concatenate([stable, candidate - shift, turns]))
    lows = np.concatenate([[-np.inf], points])
    highs = np.concatenate([points, [np.inf]])
    inner = 0.5 * (points[:-1] + points[1:])
    reps = np.concatenate([[points[0] - 1.0], inner, [points[-1] + 1.0]])
    probs = np.asarray(ndtr(highs) - ndtr(lows), dtype=np.float64)
    return CellModel(
        probs=probs / probs.sum(),
        stable_slot=bin_index(reps, stable),
        candidate_slot=bin_index(reps + shift, candidate),
        agree=abs(shift) <= absolute + relative * np.abs(reps),
        difference=np.full(probs.size, abs(shift)),
        stable_slots=stable.size + 1,
        candidate_slots=candidate.size + 1,
    )


def class_cells(labels: Sequence[str], classes: int, agreement: float) -> CellModel:
    """Balanced classes 0..K-1; the candidate keeps the class with ``agreement``, else
    picks one of the others at random (so its class shares stay balanced)."""
    slot = {label: i for i, label in enumerate(labels)}
    pairs = [(a, b) for a in range(classes) for b in range(classes)]
    probs = np.asarray(
        [agreement if a == b else (1.0 - agreement) / max(1, classes - 1) for a, b in pairs]
    )
    return CellModel(
        probs=probs / probs.sum(),
        stable_slot=np.asarray([slot.get(str(a), slot[OTHER]) for a, _ in pairs]),
        candidate_slot=np.asarray([slot.get(str(b), slot[OTHER]) for _, b in pairs]),
        # Labels are numbers: the sidecar also records their |difference|.
        agree=np.asarray([a == b for a, b in pairs]),
        difference=np.asarray([float(abs(a - b)) for a, b in pairs]),
        stable_slots=len(labels),
        candidate_slots=len(labels),
    )


def latency_probs(median: float, sigma: float) -> np.ndarray:
    """Share of requests per sidecar latency bucket (the last one is +Inf)."""
    bounds = np.asarray(LATENCY_BUCKETS, dtype=np.float64)
    cdf = ndtr((np.log(bounds) - math.log(median)) / sigma)
    edges = np.concatenate([[0.0], cdf, [1.0]])
    return np.diff(edges)


# -- one case's world ------------------------------------------------------------------


def prediction_labels(profile: ReferenceProfile) -> tuple[str, ...]:
    """The sidecar's prediction slots: classes + other, or the numeric bins."""
    prediction = profile.prediction
    assert prediction is not None
    return prediction.slot_labels


@dataclass(frozen=True)
class CaseWorld:
    """Everything one case's rollouts draw from (built once per process and case)."""

    case: Case
    baseline: Baseline
    stable_reference: ReferenceProfile
    candidate_reference: ReferenceProfile
    features: tuple[CellModel, ...]
    prediction: CellModel
    stable_latency: np.ndarray
    candidate_latency: np.ndarray
    stable_error: float
    candidate_error: float
    #: Features padded to one cell count, for one vectorised draw.
    feature_probs: np.ndarray = field(repr=False)
    feature_stable_map: np.ndarray = field(repr=False)
    feature_candidate_map: np.ndarray = field(repr=False)
    feature_stable_marginal: np.ndarray = field(repr=False)
    feature_candidate_marginal: np.ndarray = field(repr=False)

    def compared_cells(self, shadow: ShadowSettings) -> CellModel:
        """The prediction cells with agreement as the stable's sidecar judges it.

        Classes agree as labels; numbers within the shadow block's tolerance
        (its absolute part by default 5 % of the stable reference's prediction std).
        """
        if self.case.task == "classification":
            return self.prediction
        stable, candidate = self.stable_reference.prediction, self.candidate_reference.prediction
        assert stable is not None and candidate is not None
        absolute = shadow.tolerance
        if absolute is None:
            absolute = default_absolute_tolerance(stable.summary.std if stable.summary else None)
        return numeric_cells(
            stable.edges or (),
            candidate.edges or (),
            self.case.prediction_shift_sd,
            (absolute, shadow.relative_tolerance),
        )


def _training(baseline: Baseline, task: Task) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([baseline.seed, 0 if task == "classification" else 1])
    x = rng.normal(size=(baseline.training_rows, baseline.features))
    if task == "classification":
        y = rng.integers(0, baseline.classes, size=baseline.training_rows)
    else:
        y = rng.normal(size=baseline.training_rows)
    return x, y


def _profile(x: np.ndarray, y: np.ndarray, task: Task, version: str) -> ReferenceProfile:
    names = [f"f{i}" for i in range(x.shape[1])]
    return build_profile(
        x, predictions=y, feature_names=names, task=task, model_name="sim", model_version=version
    )


def _one_hot(slots: np.ndarray, cells: int, width: int) -> np.ndarray:
    out = np.zeros((cells, width))
    out[np.arange(slots.size), slots] = 1.0
    return out


def build_world(case: Case, baseline: Baseline) -> CaseWorld:
    x, y = _training(baseline, case.task)
    stable_reference = _profile(x, y, case.task, "1")
    if case.drifted_features or case.own_prediction_reference:
        shifted = x.copy()
        shifted[:, : case.drifted_features] += baseline.drift_shift_sd
        own = y + case.prediction_shift_sd if case.own_prediction_reference else y
        candidate_reference = _profile(shifted, own, case.task, "2")
    else:
        candidate_reference = stable_reference  # a version bump keeps the reference
    features = tuple(
        numeric_cells(s.edges or (), c.edges or ())
        for s, c in zip(stable_reference.features, candidate_reference.features, strict=True)
    )
    if case.task == "classification":
        labels = prediction_labels(stable_reference)
        if prediction_labels(candidate_reference) != labels:
            raise ValueError("the simulated classifiers must share their class labels")
        prediction = class_cells(labels, baseline.classes, case.agreement)
    else:
        sp, cp = stable_reference.prediction, candidate_reference.prediction
        assert sp is not None and cp is not None
        # Live predictions are N(0, 1): a shift in sd is a shift in value.
        prediction = numeric_cells(sp.edges or (), cp.edges or (), case.prediction_shift_sd)
    width = max(f.probs.size for f in features)
    slots_s = {f.stable_slots for f in features}
    slots_c = {f.candidate_slots for f in features}
    if len(slots_s) != 1 or len(slots_c) != 1:
        raise ValueError("the simulated features must all have the same number of slots")
    probs = np.zeros((len(features), width))
    stable_map = np.zeros((len(features), width, slots_s.pop()))
    candidate_map = np.zeros((len(features), width, slots_c.pop()))
    for i, f in enumerate(features):
        probs[i, : f.probs.size] = f.probs
        stable_map[i, : f.probs.size] = _one_hot(f.stable_slot, f.probs.size, f.stable_slots)
        candidate_map[i, : f.probs.size] = _one_hot(
            f.candidate_slot, f.probs.size, f.candidate_slots
        )
    median = baseline.latency_median
    return CaseWorld(
        case=case,
        baseline=baseline,
        stable_reference=stable_reference,
        candidate_reference=candidate_reference,
        features=features,
        prediction=prediction,
        stable_latency=latency_probs(median, baseline.latency_sigma),
        candidate_latency=latency_probs(median * case.latency_factor, baseline.latency_sigma),
        stable_error=baseline.error_rate,
        candidate_error=min(1.0, baseline.error_rate + case.error_points),
        feature_probs=probs,
        feature_stable_map=stable_map,
        feature_candidate_map=candidate_map,
        feature_stable_marginal=np.stack([f.stable_marginal() for f in features]),
        feature_candidate_marginal=np.stack([f.candidate_marginal() for f in features]),
    )
