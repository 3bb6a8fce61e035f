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
  stable's, with the drift method (classes, or the prediction bins);
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
    candidate's serves for both, as the stable's sidecars were not told
    otherwise).
    """
    stable_profile = stable_reference if stable_reference is not None else reference
    _, _, shared = feature_changes(reference, stable_profile)
    compared = 0
    agreement: float | None = None
    mean_abs_difference: float | None = None
    shift: float | None = None
    if stable is not None:
        sent = stable.shadow_predictions.get(candidate_revision, 0.0)
        agreed = stable.shadow_agreements.get(candidate_revision, 0.0)
        compared = round(sent)
        agreement = agreed / sent if sent > 0 else None
        if stable_profile is None or stable_profile.task == "regression":
            mean_abs_difference = stable.mean_abs_difference(candidate_revision)
        shift = prediction_shift(candidate, stable, method)
    p95 = quantile_from_buckets(0.95, candidate.latency_buckets)
    return CandidateFigures(
        requests=round(candidate.requests),
        error_rate=_error_rate(candidate),
        latency_p95=p95,
        compared=compared,
        agreement=agreement,
        mean_abs_difference=mean_abs_difference,
        prediction_shift=shift,
        candidate_drift=_worst_drift(reference, candidate, method, shared),
        stable_drift=_worst_drift(stable_profile, stable, method, shared),
    )
