"""The evidence for the rollout gates, from two revisions' windows over one step.

Pure: the operator collects one :class:`~vigil.core.window.RevisionWindow`
per revision over the step so far (direct scrapes or Prometheus, the same
sources as the health loop) and this module turns the candidate's and the
stable's into the :class:`CandidateFigures` that ``vigil.core.judges``
judges (with confidence) and ``rollout.decide`` acts on:

* requests, failures and the latency histogram: the candidate's *live*
  requests and, apart, the shadow copies it answered (a canary step judges
  the first, a shadow step the second), and the stable's live requests over
  the same span (latency candidate vs stable); the copies the stable's
  sidecars could not compare (timed out, unparseable, another
  number of rows, unreachable: ``vigil_shadow_requests_total{outcome}``)
  count as copies the candidate failed (:func:`shadow_copies`);
* agreement, compared predictions and their mean absolute difference
  (regression): the *stable's* sidecars count the shadow copies they sent
  to the candidate (``vigil_shadow_*`` labelled with ``target_revision`` =
  the candidate);
* prediction shift: the candidate's prediction distribution against the
  stable's, with the drift method, on a basis both share whatever profiles
  they bring (:func:`prediction_shift`: class labels, the stable's bins, or
  moments), corrected for sample size (:class:`vigil.core.drift.Divergence`);
* input drift: per feature both references share, each revision's drift
  against *its own* reference profile (the bins its sidecars count in),
  corrected for both sample sizes (the live rows and the reference's);
* realized performance: the labels that arrived over the step for the
  predictions each revision served live (accuracy or MAE), the candidate's
  judged on its own and against the stable's;
* features added and dropped: a retrained model's reference may add or drop
  input features; the gates then compare the shared features and the
  predictions, and status names the difference.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vigil.common.labels import counts_by_class
from vigil.core import drift
from vigil.core.drift import Divergence
from vigil.core.health import feature_divergences
from vigil.core.window import (
    DROPPED,
    STABLE_SIDE,
    WHY_NOT_COMPARED,
    RealizedPerformance,
    RevisionWindow,
    quantile_from_buckets,
)
from vigil.profile import ReferenceProfile

#: Fewer predictions than this on either side: no prediction shift is computed.
MIN_PREDICTIONS_FOR_SHIFT = 20

#: Copies the candidate never saw (the stable's sidecar could not reach it): its sidecar
#: counted none of them, so they are added to its copies, not moved from its successes.
UNSEEN = frozenset({"unreachable"})
#: Said in a hold's words, never counted against the candidate: answers too large to
#: compare or unreadable on the stable's side, and copies that timed out (the candidate's own
#: sidecar records their real latency, which the latency gates judge; the copy's timeout is
#: fixed).
EXCUSED = frozenset({"too_large", "timeout", DROPPED, *STABLE_SIDE})

#: Latency histogram: (upper bound in seconds, cumulative count), sorted, ending with +Inf.
Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Answered:
    """Requests one revision answered over the step: how many, how many failed, how fast."""

    requests: float = 0.0
    failures: float = 0.0
    latency_buckets: Buckets = ()

    @classmethod
    def of(cls, by_outcome: Mapping[str, float], latency_buckets: Buckets) -> Answered:
        requests = sum(by_outcome.values())
        failures = max(0.0, requests - by_outcome.get("success", 0.0))
        return cls(requests, failures, latency_buckets)

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests > 0 else None

    @property
    def latency_p95(self) -> float | None:
        return quantile_from_buckets(0.95, self.latency_buckets)

    def latency_counts(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(upper bounds, requests per bucket): the histogram un-cumulated."""
        return self._latency_counts

    @functools.cached_property
    def _latency_counts(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        # Once per value: a step's gates read each side's histogram several times.
        bounds = tuple(bound for bound, _ in self.latency_buckets)
        cumulative = [count for _, count in self.latency_buckets]
        below = [0.0, *cumulative[:-1]] if cumulative else []
        counts = [max(0.0, b - a) for a, b in zip(below, cumulative, strict=True)]
        return bounds, tuple(counts)


@dataclass(frozen=True)
class FeatureDrift:
    """One shared input feature: each revision's drift against its own reference."""

    name: str
    candidate: Divergence
    stable: Divergence

    def scaled(self, factor: float) -> FeatureDrift:
        """The same estimates on ``factor`` times the rows (how many would decide)."""
        return FeatureDrift(self.name, self.candidate.scaled(factor), self.stable.scaled(factor))


@dataclass(frozen=True)
class CandidateFigures:
    """The evidence of one step so far (None or empty = not measured)."""

    #: The candidate's live requests; the shadow copies it answered; the stable's live ones.
    live: Answered = field(default_factory=Answered)
    copies: Answered = field(default_factory=Answered)
    stable: Answered = field(default_factory=Answered)
    #: Paired comparisons (shadow): compared predictions and how many agreed.
    compared: int = 0
    agreed: float = 0.0
    #: Copies the stable's sidecars could not compare, by why (counted in ``copies`` as failed).
    not_compared: Mapping[str, float] = field(default_factory=dict)
    #: Mean |candidate - stable| over the paired numeric predictions (shadow).
    mean_abs_difference: float | None = None
    #: Candidate-vs-stable prediction divergence (drift method), corrected for sample size.
    prediction_shift: Divergence | None = None
    #: How both were put on one basis (vigil.core.analysis.prediction_shift), for the text.
    prediction_shift_basis: str = ""
    #: Per shared feature with enough rows on both sides.
    input_drift: tuple[FeatureDrift, ...] = ()
    #: Features both references share (0: a reference is unknown, input drift is not judged).
    shared_features: int = 0
    #: Why input drift has no evidence though both revisions have a reference (the
    #: stable's could not be read): the gate waits, saying so.
    input_drift_unjudged: str = ""
    #: Labels that arrived over the step for each revision's live predictions.
    realized: RealizedPerformance = field(default_factory=RealizedPerformance)
    stable_realized: RealizedPerformance = field(default_factory=RealizedPerformance)

    @property
    def requests(self) -> int:
        """The candidate's live requests (what a canary step counts)."""
        return round(self.live.requests)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared > 0 else None

    @property
    def not_compared_text(self) -> str:
        """'12 copies not compared (timeout 5, unparseable 7)'; '' when none was left out."""
        counts = [(why, round(self.not_compared.get(why, 0.0))) for why in WHY_NOT_COMPARED]
        counts = [(why, n) for why, n in counts if n > 0]
        if not counts:
            return ""
        whys = ", ".join(f"{why} {n}" for why, n in counts)
        return f"{sum(n for _, n in counts)} copies not compared ({whys})"

    def answered(self, shadow: bool) -> Answered:
        """What the candidate answered in a shadow step (copies) or a canary step (live)."""
        return self.copies if shadow else self.live


#: Standard-normal quantiles at 10 %, 20 %, ..., 90 %: ten equally likely bins around
#: the stable's mean when only moments are known.
_NORMAL_DECILES = (-1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816)
_DECILE_BINS = len(_NORMAL_DECILES) + 1

Basis = Literal["by class label", "on the stable's bins", "from mean and std"]
MOMENTS: Basis = "from mean and std"


@dataclass(frozen=True)
class PredictionShift:
    """The candidate-vs-stable divergence and the common basis it was measured on.

    ``score`` is the method's score on the counts; ``divergence`` the same
    corrected for sample size, with its test (None with too few predictions
    per slot to judge).
    """

    score: float
    basis: Basis
    divergence: Divergence | None = None


def _numeric_prediction(profile: ReferenceProfile | None) -> tuple[float, ...] | None:
    """The bin edges a revision's sidecars count its predictions in (None: no such bins)."""
    block = profile.prediction if profile is not None else None
    if block is None or block.type != "numeric" or block.edges is None:
        return None
    return block.edges


def _slots(counts: Mapping[str, float], edges: tuple[float, ...]) -> np.ndarray:
    return np.asarray([counts.get(str(slot), 0.0) for slot in range(len(edges) + 1)])


def _inner_only(counts: np.ndarray) -> np.ndarray:
    """Underflow and overflow merged into their neighbouring bins.

    Re-binned counts place out-of-range values at the edge and spread each
    outer bin evenly over its long thin tail; merging keeps those guesses
    from reading as a shift (a constant profile's single bin is left alone).
    """
    if counts.size < 4:
        return counts
    return np.concatenate(([counts[0] + counts[1]], counts[2:-2], [counts[-2] + counts[-1]]))


def _by_label(candidate: RevisionWindow, stable: RevisionWindow) -> tuple[np.ndarray, np.ndarray]:
    stable_counts = counts_by_class(stable.prediction_classes)
    candidate_counts = counts_by_class(candidate.prediction_classes)
    labels = sorted(set(candidate_counts) | set(stable_counts))
    return (
        np.asarray([stable_counts.get(k, 0.0) for k in labels]),
        np.asarray([candidate_counts.get(k, 0.0) for k in labels]),
    )


def _on_stable_bins(
    candidate: RevisionWindow,
    stable: RevisionWindow,
    candidate_edges: tuple[float, ...],
    stable_edges: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray]:
    stable_counts = _slots(stable.prediction_bins, stable_edges)
    moved = drift.rebin(
        _slots(candidate.prediction_bins, candidate_edges), candidate_edges, stable_edges
    )
    if candidate_edges == stable_edges:
        return stable_counts, moved  # the same bins: exact, nothing was guessed
    return _inner_only(stable_counts), _inner_only(moved)


def _moments(window: RevisionWindow) -> tuple[float, float] | None:
    if window.predictions < MIN_PREDICTIONS_FOR_SHIFT:
        return None
    mean = window.prediction_sum / window.predictions
    variance = window.prediction_squares_sum / window.predictions - mean * mean
    if not (math.isfinite(mean) and math.isfinite(variance)):
        return None
    return mean, math.sqrt(max(variance, 0.0))


def _normal_slots(mean: float, std: float, edges: np.ndarray) -> np.ndarray:
    """Mass of N(mean, std) in the slots of ``edges`` (std 0: a point mass)."""
    if std <= 0:
        return np.bincount(drift.bin_index([mean], edges), minlength=edges.size + 1).astype(float)
    cdf = [0.5 * (1.0 + math.erf((e - mean) / (std * math.sqrt(2.0)))) for e in edges]
    return np.diff(np.concatenate(([0.0], cdf, [1.0])))


def _from_moments(
    candidate: RevisionWindow, stable: RevisionWindow
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as normal distributions, over ten bins equally likely for the stable."""
    stable_moments, candidate_moments = _moments(stable), _moments(candidate)
    if stable_moments is None or candidate_moments is None:
        return None
    mean, std = stable_moments
    edges = np.asarray([mean + std * z for z in _NORMAL_DECILES] if std > 0 else [mean, mean])
    # Scaled to the counts they summarise: the floor on predictions reads them, and a
    # constant side (no spread to compare) is judged as if they were counted.
    return (
        _normal_slots(mean, std, edges) * stable.predictions,
        _normal_slots(*candidate_moments, edges) * candidate.predictions,
    )


def _on_deciles(method: drift.DriftMethod, shift: float, log_ratio: float) -> float:
    """The score between N(0, 1) and N(shift, e^log_ratio) on the decile bins (divergence
    scale: JSD squared)."""
    edges = np.asarray(_NORMAL_DECILES)
    score = drift.drift_score(
        method, _normal_slots(0.0, 1.0, edges), _normal_slots(shift, math.exp(log_ratio), edges)
    )
    return score * score if method == "jsd" else score


@functools.cache
def _curvature(method: drift.DriftMethod) -> tuple[float, float]:
    """(a, c): near no shift the score is a u^2 + c v^2, u the mean's shift in the stable's
    standard deviations, v the log ratio of the standard deviations (no cross term: the
    bins are symmetric)."""
    h = 1e-3
    return _on_deciles(method, h, 0.0) / h**2, _on_deciles(method, 0.0, h) / h**2


def _fitted_divergence(
    method: drift.DriftMethod, score: float, candidate: RevisionWindow, stable: RevisionWindow
) -> Divergence | None:
    """The score between the two fitted normals, with the sampling error of the moments.

    Not counted bins: the noise is the means' and the standard deviations'. Under a
    normal model u is off by about sqrt(r^2/n1 + (1 + u^2/2)/n0) (r the ratio of the
    standard deviations) and v by sqrt(1/2n1 + 1/2n0), so the score reads a var(u) +
    c var(v) too high on noise alone (subtracted) and is a sum of two noncentral
    chi-squares: tested as one with 2 degrees of freedom on the larger weight's rows,
    which bounds its variance. None for a constant side (no ratio), fewer predictions
    than counted bins would need, or a method without a chi-square form (ks, wasserstein).
    """
    fitted, reference = _moments(candidate), _moments(stable)
    n1, n0 = candidate.predictions, stable.predictions
    if fitted is None or reference is None or fitted[1] <= 0 or reference[1] <= 0:
        return None
    if method not in drift.CHI_SQUARE_SCALE or n1 < drift.ROWS_PER_SLOT * _DECILE_BINS:
        return None
    u, ratio = (fitted[0] - reference[0]) / reference[1], fitted[1] / reference[1]
    a, c = _curvature(method)
    noise = (a * (ratio * ratio / n1 + (1.0 + 0.5 * u * u) / n0), c * 0.5 * (1.0 / n1 + 1.0 / n0))
    rows = 1.0 / (max(noise) * drift.CHI_SQUARE_SCALE[method])
    corrected = (score * score if method == "jsd" else score) - sum(noise)
    return Divergence(method, score, corrected, rows, 2, n1)


def prediction_shift(
    candidate: RevisionWindow,
    stable: RevisionWindow,
    method: drift.DriftMethod,
    *,
    candidate_profile: ReferenceProfile | None = None,
    stable_profile: ReferenceProfile | None = None,
) -> PredictionShift | None:
    """Divergence of the candidate's predictions from the stable's, on a common basis.

    Each revision's sidecars count predictions against *its own* reference
    profile, and the two profiles may differ (a retrained model brings its
    own). Comparing slot by slot would compare unrelated ranges, so:

    * both count classes: by class label (a label one side never predicted
      counts as 0 there; 1 and true are one label, as in shadow comparisons);
    * both count numeric bins of a known profile: the candidate's counts are
      moved onto the stable's edges (:func:`vigil.core.drift.rebin`) and
      compared on the stable's bins;
    * otherwise (no profile, or a classifier against a regressor): the mean
      and standard deviation each sidecar sums up, as normal distributions
      over ten bins equally likely for the stable, judged with the sampling
      error of those moments (:func:`_fitted_divergence`).

    None when either side has fewer than :data:`MIN_PREDICTIONS_FOR_SHIFT`.
    """
    stable_edges = _numeric_prediction(stable_profile)
    candidate_edges = _numeric_prediction(candidate_profile)
    pair: tuple[np.ndarray, np.ndarray] | None
    basis: Basis
    # Counts, not just series: a classifier answering scores exports its classes at 0.
    if _counted(candidate.prediction_classes) and _counted(stable.prediction_classes):
        pair, basis = _by_label(candidate, stable), "by class label"
    elif (
        stable_edges is not None
        and candidate_edges is not None
        and _counted(stable.prediction_bins)
        and _counted(candidate.prediction_bins)
    ):
        pair = _on_stable_bins(candidate, stable, candidate_edges, stable_edges)
        basis = "on the stable's bins"
    else:
        pair, basis = _from_moments(candidate, stable), MOMENTS
    if pair is None or min(pair[0].sum(), pair[1].sum()) < MIN_PREDICTIONS_FOR_SHIFT:
        return None
    score = drift.drift_score(method, pair[0], pair[1])
    if not math.isfinite(score):
        return None
    fitted = _fitted_divergence(method, score, candidate, stable) if basis == MOMENTS else None
    return PredictionShift(score, basis, fitted or drift.divergence(method, pair[0], pair[1]))


def _counted(slots: Mapping[str, float]) -> bool:
    return sum(slots.values()) > 0


def input_drift(
    candidate: RevisionWindow,
    stable: RevisionWindow,
    method: drift.DriftMethod,
    reference: ReferenceProfile | None,
    stable_reference: ReferenceProfile | None,
    shared: frozenset[str] | None,
) -> tuple[FeatureDrift, ...]:
    """Per shared feature with enough rows on both sides: each side against its reference."""
    if reference is None or stable_reference is None:
        return ()
    mine = feature_divergences(reference, candidate, method)
    theirs = feature_divergences(stable_reference, stable, method)
    return tuple(
        FeatureDrift(name, mine[name], theirs[name])
        for name in reference.feature_names
        if name in mine and name in theirs and (shared is None or name in shared)
    )


def feature_changes(
    candidate: ReferenceProfile | None, stable: ReferenceProfile | None
) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str] | None]:
    """(added, dropped, shared) features from the stable's reference to the candidate's.

    ``shared`` is None when either reference is unknown: nothing to restrict.
    """
    if candidate is None or stable is None:
        return (), (), None
    new, old = candidate.feature_names, stable.feature_names
    added = tuple(name for name in new if name not in old)
    dropped = tuple(name for name in old if name not in new)
    return added, dropped, frozenset(new) & frozenset(old)


def shadow_copies(candidate: RevisionWindow, not_compared: Mapping[str, float]) -> Answered:
    """The copies the candidate answered, those the stable's sidecars could not compare failed.

    Its sidecar counted an unparseable or mismatched answer as a success: that many
    successes become failures, never more than there are (the two sides are counted by
    different pods at slightly different times). Unreachable copies it never counted:
    they are added, failed. Copies too large to compare are neither.
    """
    by_outcome = dict(candidate.copies_by_outcome)
    unseen = sum(n for why, n in not_compared.items() if why in UNSEEN)
    blamed = sum(n for why, n in not_compared.items() if why not in UNSEEN | EXCUSED)
    success = by_outcome.get("success", 0.0)
    moved = min(success, blamed)
    if moved > 0 or unseen > 0:
        by_outcome["success"] = success - moved
        by_outcome["not_compared"] = by_outcome.get("not_compared", 0.0) + moved + unseen
    return Answered.of(by_outcome, candidate.copy_latency_buckets)


def candidate_figures(
    candidate_revision: str,
    candidate: RevisionWindow,
    stable: RevisionWindow | None,
    *,
    method: drift.DriftMethod = "psi",
    reference: ReferenceProfile | None = None,
    stable_reference: ReferenceProfile | None = None,
    stable_reference_unread: str = "",
) -> CandidateFigures:
    """The evidence of this step so far (empty where a figure cannot be measured).

    ``reference`` is the candidate's profile, ``stable_reference`` the
    stable's (the same one when the change kept it; None = unknown, then the
    candidate's serves for both input-drift figures, as the stable's sidecars
    were not told otherwise). ``stable_reference_unread`` says why the
    profile the stable's pods mount could not be read: its sidecars count in
    bins no other profile describes, so input drift has no evidence. The
    prediction shift uses only what is known: with the stable's profile
    unknown its bins are too, and the shift is measured from the means and
    standard deviations.
    """
    unread = stable_reference_unread if reference is not None else ""
    stable_profile = stable_reference if stable_reference is not None or unread else reference
    _, _, shared = feature_changes(reference, stable_profile)
    live = Answered.of(candidate.live_by_outcome, candidate.live_latency_buckets)
    if stable is None:
        copies = Answered.of(candidate.copies_by_outcome, candidate.copy_latency_buckets)
        return CandidateFigures(live=live, copies=copies, realized=candidate.realized)
    not_compared = stable.shadow_not_compared.get(candidate_revision, {})
    sent = stable.shadow_predictions.get(candidate_revision, 0.0)
    mean_abs_difference = None
    if stable_profile is None or stable_profile.task == "regression":
        mean_abs_difference = stable.mean_abs_difference(candidate_revision)
    shift = prediction_shift(
        candidate, stable, method, candidate_profile=reference, stable_profile=stable_reference
    )
    return CandidateFigures(
        live=live,
        copies=shadow_copies(candidate, not_compared),
        stable=Answered.of(stable.live_by_outcome, stable.live_latency_buckets),
        compared=round(sent),
        agreed=stable.shadow_agreements.get(candidate_revision, 0.0),
        not_compared=not_compared,
        mean_abs_difference=mean_abs_difference,
        prediction_shift=shift.divergence if shift is not None else None,
        prediction_shift_basis=shift.basis if shift is not None else "",
        input_drift=input_drift(candidate, stable, method, reference, stable_profile, shared),
        shared_features=len(shared) if shared is not None else 0,
        input_drift_unjudged=unread,
        realized=candidate.realized,
        stable_realized=stable.realized,
    )
