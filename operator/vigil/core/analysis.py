"""The candidate's figures for the rollout gates, from two revisions' windows.

Pure: the operator collects one :class:`~vigil.core.window.RevisionWindow`
per revision (direct scrapes or Prometheus, the same sources as the health
loop) and this module turns the candidate's and the stable's into the
:class:`~vigil.core.rollout.CandidateFigures` that ``rollout.decide`` judges:

* requests, error rate and p95 latency: the candidate's own window;
* agreement and compared predictions: the *stable's* sidecars count the
  shadow copies they sent to the candidate (``vigil_shadow_*`` labelled
  with ``target_revision`` = the candidate);
* prediction shift: the candidate's prediction distribution against the
  stable's, with the drift method (classes, or the prediction bins);
* input drift: each revision's worst feature drift against the reference
  (only once both windows hold :data:`MIN_ROWS_FOR_INPUT_DRIFT` rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from vigil.core import drift
from vigil.core.health import feature_drift
from vigil.core.rollout import CandidateFigures
from vigil.core.window import RevisionWindow, quantile_from_buckets
from vigil.profile import ReferenceProfile

#: Fewer predictions than this on either side: no prediction shift is computed.
MIN_PREDICTIONS_FOR_SHIFT = 20
#: Fewer input rows than this on either side: the input-drift gate is not applied.
#: PSI over ~10 bins carries a sampling bias of about (bins - 1) / rows per side, so
#: comparing a young candidate's drift with the stable's on a few hundred rows would
#: fail on noise alone (the gate allows only +0.05).
MIN_ROWS_FOR_INPUT_DRIFT = 1000


def _error_rate(window: RevisionWindow) -> float | None:
    total = window.requests
    if total <= 0:
        return None
    return max(0.0, total - window.requests_by_outcome.get("success", 0.0)) / total


def _distribution(window: RevisionWindow) -> Mapping[str, float]:
    """Class counts for a classifier, bin counts for a regressor."""
    return window.prediction_classes or window.prediction_bins


def prediction_shift(
    candidate: RevisionWindow, stable: RevisionWindow, method: drift.DriftMethod
) -> float | None:
    """Divergence of the candidate's predictions from the stable's (None: too few)."""
    cand, stab = _distribution(candidate), _distribution(stable)
    if sum(cand.values()) < MIN_PREDICTIONS_FOR_SHIFT:
        return None
    if sum(stab.values()) < MIN_PREDICTIONS_FOR_SHIFT:
        return None
    keys = sorted(set(cand) | set(stab))
    score = drift.drift_score(
        method, [stab.get(k, 0.0) for k in keys], [cand.get(k, 0.0) for k in keys]
    )
    return score if math.isfinite(score) else None


def _worst_drift(
    reference: ReferenceProfile | None, window: RevisionWindow | None, method: drift.DriftMethod
) -> float | None:
    if reference is None or window is None or window.input_rows < MIN_ROWS_FOR_INPUT_DRIFT:
        return None
    scores = feature_drift(reference, window, method)
    return max(scores.values()) if scores else None


def candidate_figures(
    candidate_revision: str,
    candidate: RevisionWindow,
    stable: RevisionWindow | None,
    *,
    method: drift.DriftMethod = "psi",
    reference: ReferenceProfile | None = None,
) -> CandidateFigures:
    """What the gates compare this cycle (None where a figure cannot be measured)."""
    compared = 0
    agreement: float | None = None
    shift: float | None = None
    if stable is not None:
        sent = stable.shadow_predictions.get(candidate_revision, 0.0)
        agreed = stable.shadow_agreements.get(candidate_revision, 0.0)
        compared = round(sent)
        agreement = agreed / sent if sent > 0 else None
        shift = prediction_shift(candidate, stable, method)
    p95 = quantile_from_buckets(0.95, candidate.latency_buckets)
    return CandidateFigures(
        requests=round(candidate.requests),
        error_rate=_error_rate(candidate),
        latency_p95=p95,
        compared=compared,
        agreement=agreement,
        prediction_shift=shift,
        candidate_drift=_worst_drift(reference, candidate, method),
        stable_drift=_worst_drift(reference, stable, method),
    )
