"""Evidence for the gates from a few numbers: "500 requests, 2 % failed, p95 20 ms".

The judges read counts (failures of requests, agreements of comparisons,
latency histograms, sample sizes), not point estimates; tests say what a
step saw in the words of today's figures and this kit turns them into the
counts a sidecar would have exported.
"""

from __future__ import annotations

import math
from bisect import bisect_left

from vigil.core.analysis import Answered, CandidateFigures, FeatureDrift
from vigil.core.drift import Divergence
from vigil.core.window import RealizedPerformance
from vigil.sidecar.metrics import LATENCY_BUCKETS

BOUNDS = (*LATENCY_BUCKETS, math.inf)


def answered(requests: float, error_rate: float = 0.0, latency_p95: float = 0.01) -> Answered:
    """All requests in the sidecar's latency bucket that holds ``latency_p95``."""
    index = min(bisect_left(BOUNDS, latency_p95), len(BOUNDS) - 1)
    buckets = tuple((b, float(requests) if i >= index else 0.0) for i, b in enumerate(BOUNDS))
    return Answered(float(requests), round(error_rate * requests), buckets)


def divergence(value: float, rows: float, slots: int = 10) -> Divergence:
    """A PSI of ``value`` measured on ``rows`` rows (corrected: no bias left to remove)."""
    return Divergence("psi", value, value, rows, slots - 1, rows)


def figures(
    requests: int = 500,
    error_rate: float = 0.0,
    latency_p95: float = 0.02,
    *,
    compared: int = 0,
    agreement: float | None = None,
    prediction_shift: float | None = None,
    candidate_drift: float | None = None,
    stable_drift: float | None = None,
    stable_latency_p95: float | None = None,
    copies: int | None = None,
) -> CandidateFigures:
    """What a step saw: ``requests`` live requests and (shadow) as many copies answered,
    the stable as fast as the candidate unless told otherwise."""
    live = answered(requests, error_rate, latency_p95)
    stable_p95 = latency_p95 if stable_latency_p95 is None else stable_latency_p95
    drift = ()
    if candidate_drift is not None and stable_drift is not None:
        drift = (
            FeatureDrift(
                "f", divergence(candidate_drift, requests), divergence(stable_drift, requests)
            ),
        )
    return CandidateFigures(
        live=live,
        copies=answered(requests if copies is None else copies, error_rate, latency_p95),
        stable=answered(requests, 0.0, stable_p95),
        compared=compared,
        agreed=round((agreement if agreement is not None else 1.0) * compared),
        prediction_shift=(
            divergence(prediction_shift, max(compared, requests), slots=3)
            if prediction_shift is not None
            else None
        ),
        prediction_shift_basis="by class label" if prediction_shift is not None else "",
        input_drift=drift,
        shared_features=1 if drift else 0,
    )


def labelled(labels: int, accuracy: float) -> RealizedPerformance:
    """``labels`` labels joined to a classifier's predictions, ``accuracy`` of them right."""
    correct = round(accuracy * labels)
    return RealizedPerformance(
        labels_by_outcome={"joined": float(labels)},
        scored_by_class={"0": float(labels)},
        correct_by_class={"0": float(correct)},
    )


def scored(labels: int, mae: float, spread: float) -> RealizedPerformance:
    """``labels`` labels of a regressor: mean |error| ``mae``, their standard deviation
    ``spread``."""
    return RealizedPerformance(
        labels_by_outcome={"joined": float(labels)},
        scored_by_class={"": float(labels)},
        absolute_error_sum=mae * labels,
        squared_error_sum=(spread**2 + mae**2) * labels,
    )
