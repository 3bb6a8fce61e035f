"""The sidecar's metric families that the operator reads: one name, both sides.

The sidecar (:mod:`vigil.sidecar`) exposes them; the metrics sources
(:mod:`vigil.metrics`: scraped text or PromQL) and the window arithmetic
(:mod:`vigil.core.window`) read them back. A family is named here once,
without the suffix the exposition adds (``_total`` for a counter,
``_bucket``/``_sum``/``_count`` for a histogram): :func:`total`,
:func:`bucket`, :func:`sum_of` and :func:`count_of` spell the series.
"""

from __future__ import annotations

#: Every series of the project starts with it (the parsers skip other lines early).
PREFIX = "vigil_"

# Requests and their latency (counter; histogram), by endpoint, origin and outcome. The
# sidecar exports every inference series of both (live and shadow, each outcome) from its
# start at 0: Prometheus' increase() cannot count a series' first sample, so a series born
# at its first request would lose it (a candidate's first error).
REQUESTS = "vigil_request_outcomes"
#: The same requests by HTTP status ``code`` too, for people: a series per code, born at
#: its first request. The operator reads it only from sidecars without the family above.
REQUESTS_BY_CODE = "vigil_requests"
REQUEST_DURATION = "vigil_request_duration_seconds"
#: ``origin`` of a request: live, or a shadow copy another revision's sidecar sent (the
#: candidate answers them in a shadow step; the gates of a canary step count live alone).
ORIGIN_LIVE = "live"
ORIGIN_SHADOW = "shadow"
# Inputs (counters): rows, and per feature its bins, categories, missing and out-of-range values.
INPUT_ROWS = "vigil_input_rows"
FEATURE_BIN = "vigil_feature_bin"
FEATURE_CATEGORY = "vigil_feature_category"
FEATURE_MISSING = "vigil_feature_missing"
FEATURE_OUT_OF_RANGE = "vigil_feature_out_of_range"
# Predictions: per class or bin (counters), and running sums (gauges: they may go down).
PREDICTION_CLASS = "vigil_prediction_class"
PREDICTION_BIN = "vigil_prediction_bin"
PREDICTIONS = "vigil_predictions"
PREDICTION_VALUE_SUM = "vigil_prediction_value_sum"
PREDICTION_VALUE_SQUARES_SUM = "vigil_prediction_value_squares_sum"
# Shadow comparisons, counted by the stable's sidecars (counters; a histogram).
#: Copies sent, by ``target_revision`` and ``outcome``: compared, or why not (timeout,
#: unreachable, target_error, unparseable, mismatch, target_too_large, too_large,
#: stable_unparseable, compare_error).
SHADOW_REQUESTS = "vigil_shadow_requests"
SHADOW_PREDICTIONS = "vigil_shadow_predictions"
SHADOW_AGREEMENTS = "vigil_shadow_agreements"
SHADOW_ABS_DIFFERENCE = "vigil_shadow_abs_difference"
#: Copies never sent, by ``target_revision``: the shadow queue was full (copies or bytes).
SHADOW_DROPPED = "vigil_shadow_dropped"
# Ground truth, counted where a label joins its prediction (counters; a histogram). The
# ``revision`` label is the revision that served the prediction (docs/howto/feedback.md).
FEEDBACK_LABELS = "vigil_feedback_labels"
FEEDBACK_SCORED = "vigil_feedback_scored"
FEEDBACK_CORRECT = "vigil_feedback_correct"
FEEDBACK_ABSOLUTE_ERROR = "vigil_feedback_absolute_error"
FEEDBACK_SQUARED_ERROR = "vigil_feedback_squared_error"
FEEDBACK_LABEL_DELAY = "vigil_feedback_label_delay_seconds"
#: A gauge: a new value means the process restarted (its counters began again).
SIDECAR_START_TIME = "vigil_sidecar_start_time_seconds"


def total(family: str) -> str:
    """A counter's series: ``vigil_input_rows`` -> ``vigil_input_rows_total``."""
    return f"{family}_total"


def bucket(family: str) -> str:
    """A histogram's buckets."""
    return f"{family}_bucket"


def sum_of(family: str) -> str:
    """A histogram's sum."""
    return f"{family}_sum"


def count_of(family: str) -> str:
    """A histogram's count."""
    return f"{family}_count"
