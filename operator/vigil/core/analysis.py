"""The candidate's figures for the rollout gates, from two revisions' windows.

Pure: the operator collects one :class:`~vigil.core.window.RevisionWindow`
per revision (direct scrapes or Prometheus, the same sources as the health
loop) and this module turns the candidate's and the stable's into the
:class:`~vigil.core.rollout.CandidateFigures` that ``rollout.decide`` judges:

* requests, error rate and p95 latency: the candidate's own window;
* agreement, compared predictions and their mean absolute difference
  (regression): the *stable's* sidecars count the shadow copies they sent
  to the candidate (``vigil_shadow_*`` labelled with ``target_revision`` =
  the candidate);
* prediction shift: the candidate's prediction distribution against the
  stable's, with the drift method, on a basis both share whatever profiles
  they bring (:func:`prediction_shift`: class labels, the stable's bins, or
  moments);
* input drift: each revision's worst feature drift against *its own*
  reference profile (the bins its sidecars count in), over the features
  both references share, and only once both windows hold
  :data:`MIN_ROWS_FOR_INPUT_DRIFT` rows;
* features added and dropped: a retrained model's reference may add or drop
  input features; the gates then compare the shared features and the
  predictions, and status names the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vigil.core import drift
from vigil.core.health import feature_drift
from vigil.core.spec import RolloutPolicy, Step
from vigil.core.window import RevisionWindow, quantile_from_buckets
from vigil.profile import ReferenceProfile

#: Fewer predictions than this on either side: no prediction shift is computed.
MIN_PREDICTIONS_FOR_SHIFT = 20
#: Fewer input rows than this on either side: the input-drift gate is not applied.
#: PSI over ~10 bins carries a sampling bias of about (bins - 1) / rows per side, so
#: comparing a young candidate's drift with the stable's on a few hundred rows would
#: fail on noise alone (the gate allows only +0.05).
MIN_ROWS_FOR_INPUT_DRIFT = 1000


#: How much worse than the stable's the candidate's input drift may be.
DRIFT_TOLERANCE = 0.05


@dataclass(frozen=True)
class CandidateFigures:
    """What the analysis compares, for the current window. None = not measured."""

    requests: int = 0
    error_rate: float | None = None
    latency_p95: float | None = None
    #: Paired comparisons (shadow): compared predictions and the share that agreed.
    compared: int = 0
    agreement: float | None = None
    #: Mean |candidate - stable| over the paired numeric predictions (shadow).
    mean_abs_difference: float | None = None
    #: Candidate-vs-stable prediction distribution divergence (drift method).
    prediction_shift: float | None = None
    #: How both were put on one basis (vigil.core.analysis.prediction_shift), for the text.
    prediction_shift_basis: str = ""
    #: Worst input drift of each revision against its own reference, shared features only.
    candidate_drift: float | None = None
    stable_drift: float | None = None


@dataclass(frozen=True)
class Gate:
    """One check of the analysis: its name, measured value, threshold and verdict."""

    name: str
    passed: bool
    value: float
    threshold: float
    text: str


def _at_most(name: str, value: float, limit: float, text: str) -> Gate:
    return Gate(name, value <= limit, value, limit, text)


def gates(step: Step, policy: RolloutPolicy, figures: CandidateFigures) -> tuple[Gate, ...]:
    """Evaluate every applicable gate on the candidate's figures (Argo's EvaluateResult)."""
    found: list[Gate] = []
    if figures.error_rate is not None:
        rate, limit = figures.error_rate, policy.max_error_rate
        found.append(_at_most("errorRate", rate, limit, f"error rate {rate:.2%} vs {limit:.2%}"))
    if figures.latency_p95 is not None:
        p95, limit = figures.latency_p95, policy.max_latency_p95
        text = f"p95 {p95 * 1000:.0f}ms vs {limit * 1000:.0f}ms"
        found.append(_at_most("latencyP95", p95, limit, text))
    if step.kind == "shadow" and figures.agreement is not None:
        agreement, need = figures.agreement, policy.min_agreement
        difference = figures.mean_abs_difference
        text = f"agreement {agreement:.2f} vs {need:.2f}" + (
            f" (mean |difference| {difference:.4g})" if difference is not None else ""
        )
        found.append(Gate("agreement", agreement >= need, agreement, need, text))
    if figures.prediction_shift is not None:
        shift, limit = figures.prediction_shift, policy.max_prediction_shift
        basis = figures.prediction_shift_basis
        text = f"prediction shift {shift:.3f} vs {limit:.3f}" + (f" ({basis})" if basis else "")
        found.append(_at_most("predictionShift", shift, limit, text))
    if figures.candidate_drift is not None and figures.stable_drift is not None:
        drifted, stable = figures.candidate_drift, figures.stable_drift
        limit = stable + DRIFT_TOLERANCE
        text = f"input drift {drifted:.3f} vs stable's {stable:.3f} + {DRIFT_TOLERANCE}"
        found.append(_at_most("inputDrift", drifted, limit, text))
    return tuple(found)


def _error_rate(window: RevisionWindow) -> float | None:
    total = window.requests
    if total <= 0:
        return None
    return max(0.0, total - window.requests_by_outcome.get("success", 0.0)) / total


#: Standard-normal quantiles at 10 %, 20 %, ..., 90 %: ten equally likely bins around
#: the stable's mean when only moments are known.
_NORMAL_DECILES = (-1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816)

Basis = Literal["by class label", "on the stable's bins", "from mean and std"]


@dataclass(frozen=True)
class PredictionShift:
    """The candidate-vs-stable divergence and the common basis it was measured on."""

    score: float
    basis: Basis


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
    labels = sorted(set(candidate.prediction_classes) | set(stable.prediction_classes))
    return (
        np.asarray([stable.prediction_classes.get(k, 0.0) for k in labels]),
        np.asarray([candidate.prediction_classes.get(k, 0.0) for k in labels]),
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
    # Scaled to the counts they summarise, so the sample-size check applies alike.
    return (
        _normal_slots(mean, std, edges) * stable.predictions,
        _normal_slots(*candidate_moments, edges) * candidate.predictions,
    )


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
      counts as 0 there);
    * both count numeric bins of a known profile: the candidate's counts are
      moved onto the stable's edges (:func:`vigil.core.drift.rebin`) and
      compared on the stable's bins;
    * otherwise (no profile, or a classifier against a regressor): the mean
      and standard deviation each sidecar sums up, as normal distributions
      over ten bins equally likely for the stable.

    None when either side has fewer than :data:`MIN_PREDICTIONS_FOR_SHIFT`.
    """
    stable_edges = _numeric_prediction(stable_profile)
    candidate_edges = _numeric_prediction(candidate_profile)
    pair: tuple[np.ndarray, np.ndarray] | None
    basis: Basis
    if candidate.prediction_classes and stable.prediction_classes:
        pair, basis = _by_label(candidate, stable), "by class label"
    elif (
        stable_edges is not None
        and candidate_edges is not None
        and stable.prediction_bins
        and candidate.prediction_bins
    ):
        pair = _on_stable_bins(candidate, stable, candidate_edges, stable_edges)
        basis = "on the stable's bins"
    else:
        pair, basis = _from_moments(candidate, stable), "from mean and std"
    if pair is None or min(pair[0].sum(), pair[1].sum()) < MIN_PREDICTIONS_FOR_SHIFT:
        return None
    score = drift.drift_score(method, pair[0], pair[1])
    return PredictionShift(score, basis) if math.isfinite(score) else None


def _worst_drift(
    reference: ReferenceProfile | None,
    window: RevisionWindow | None,
    method: drift.DriftMethod,
    shared: frozenset[str] | None,
) -> float | None:
    """The worst drift over the shared features (None: no reference or too few rows)."""
    if reference is None or window is None or window.input_rows < MIN_ROWS_FOR_INPUT_DRIFT:
        return None
    scores = feature_drift(reference, window, method)
    values = [score for name, score in scores.items() if shared is None or name in shared]
    return max(values) if values else None


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


def candidate_figures(
    candidate_revision: str,
    candidate: RevisionWindow,
    stable: RevisionWindow | None,
    *,
    method: drift.DriftMethod = "psi",
    reference: ReferenceProfile | None = None,
    stable_reference: ReferenceProfile | None = None,
) -> CandidateFigures:
    """What the gates compare this cycle (None where a figure cannot be measured).

    ``reference`` is the candidate's profile, ``stable_reference`` the
    stable's (the same one when the change kept it; None = unknown, then the
    candidate's serves for both input-drift figures, as the stable's sidecars
    were not told otherwise). The prediction shift uses only what is known:
    with the stable's profile unknown its bins are too, and the shift is
    measured from the means and standard deviations.
    """
    stable_profile = stable_reference if stable_reference is not None else reference
    _, _, shared = feature_changes(reference, stable_profile)
    compared = 0
    agreement: float | None = None
    mean_abs_difference: float | None = None
    shift: PredictionShift | None = None
    if stable is not None:
        sent = stable.shadow_predictions.get(candidate_revision, 0.0)
        agreed = stable.shadow_agreements.get(candidate_revision, 0.0)
        compared = round(sent)
        agreement = agreed / sent if sent > 0 else None
        if stable_profile is None or stable_profile.task == "regression":
            mean_abs_difference = stable.mean_abs_difference(candidate_revision)
        shift = prediction_shift(
            candidate,
            stable,
            method,
            candidate_profile=reference,
            stable_profile=stable_reference,
        )
    p95 = quantile_from_buckets(0.95, candidate.latency_buckets)
    return CandidateFigures(
        requests=round(candidate.requests),
        error_rate=_error_rate(candidate),
        latency_p95=p95,
        compared=compared,
        agreement=agreement,
        mean_abs_difference=mean_abs_difference,
        prediction_shift=shift.score if shift is not None else None,
        prediction_shift_basis=shift.basis if shift is not None else "",
        candidate_drift=_worst_drift(reference, candidate, method, shared),
        stable_drift=_worst_drift(stable_profile, stable, method, shared),
    )
