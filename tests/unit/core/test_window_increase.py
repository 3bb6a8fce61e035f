"""Per-pod increases over a window, merged across pods, and histogram quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigil.core.window import (
    RevisionWindow,
    Scrape,
    add_series,
    pod_increase,
    quantile_from_buckets,
    series_key,
)

REQ = ("vigil_request_outcomes_total", (("origin", ""), ("outcome", "success")))
SUM = ("vigil_prediction_value_sum", ())


def scrape(at: float, value: float, started: float | None = 0.0, key=REQ) -> Scrape:
    return Scrape(at=at, started_at=started, values={key: value})


class TestSeriesKeys:
    def test_keeps_only_the_family_labels(self) -> None:
        labels = {
            "model": "wine",
            "pod": "p",
            "outcome": "success",
            "endpoint": "infer",
            "code": "200",
        }
        assert series_key("vigil_request_outcomes_total", labels) == REQ

    def test_drops_non_inference_requests(self) -> None:
        assert series_key("vigil_request_outcomes_total", {"endpoint": "other"}) is None

    def test_ignores_families_health_does_not_read(self) -> None:
        assert series_key("vigil_requests_in_flight", {}) is None


class TestPodIncrease:
    def test_baseline_is_the_last_scrape_before_the_window(self) -> None:
        scrapes = [scrape(0, 10), scrape(50, 30), scrape(100, 70), scrape(160, 100)]
        assert pod_increase(scrapes, window_start=60) == {REQ: 70}

    def test_a_pod_started_inside_the_window_counts_from_zero(self) -> None:
        scrapes = [scrape(100, 5, started=90), scrape(130, 25, started=90)]
        assert pod_increase(scrapes, window_start=60) == {REQ: 25}

    def test_without_history_an_older_pod_counts_from_its_first_scrape(self) -> None:
        scrapes = [scrape(100, 500, started=0), scrape(130, 520, started=0)]
        assert pod_increase(scrapes, window_start=60) == {REQ: 20}

    def test_a_counter_that_decreases_was_reset(self) -> None:
        scrapes = [scrape(0, 100), scrape(30, 120), scrape(60, 5), scrape(90, 15)]
        assert pod_increase(scrapes, window_start=0) == {REQ: 20 + 5 + 10}

    def test_a_new_start_time_is_a_reset_even_if_values_grew(self) -> None:
        scrapes = [scrape(0, 10, started=0), scrape(30, 50, started=20)]
        assert pod_increase(scrapes, window_start=0) == {REQ: 50}

    def test_gauge_sums_may_go_down_without_a_reset(self) -> None:
        scrapes = [scrape(0, 10, key=SUM), scrape(30, 4, key=SUM)]
        assert pod_increase(scrapes, window_start=0) == {SUM: -6}

    def test_a_series_that_appears_later_counts_from_zero(self) -> None:
        other = ("vigil_request_outcomes_total", (("outcome", "model_error"),))
        scrapes = [scrape(0, 10), Scrape(30, 0.0, {REQ: 12, other: 3})]
        assert pod_increase(scrapes, window_start=0) == {REQ: 2, other: 3}

    def test_no_scrapes_no_figures(self) -> None:
        assert pod_increase([], window_start=0) == {}

    def test_order_of_scrapes_does_not_matter(self) -> None:
        scrapes = [scrape(100, 70), scrape(0, 10), scrape(50, 30)]
        assert pod_increase(scrapes, window_start=10) == {REQ: 60}


class TestMerging:
    def test_pods_add_up(self) -> None:
        assert add_series([{REQ: 3}, {REQ: 4}, {SUM: 1}]) == {REQ: 7, SUM: 1}

    def test_window_figures_from_series(self) -> None:
        series = {
            REQ: 90,
            ("vigil_request_outcomes_total", (("outcome", "model_error"),)): 10,
            ("vigil_request_duration_seconds_bucket", (("le", "0.1"),)): 50,
            ("vigil_request_duration_seconds_bucket", (("le", "+Inf"),)): 100,
            ("vigil_feature_bin_total", (("feature", "a"), ("bin", "1"))): 7,
            ("vigil_shadow_predictions_total", (("target_revision", "r2"),)): 40,
            ("vigil_shadow_agreements_total", (("target_revision", "r2"),)): 30,
        }
        window = RevisionWindow.from_series(series, pods=2)
        assert window.requests == 100
        assert window.latency_buckets == ((0.1, 50), (math.inf, 100))
        assert window.feature_bins == {"a": {"1": 7}}
        assert window.shadow_agreements == {"r2": 30}
        assert window.pods == 2

    def test_shadow_copies_are_apart_from_live_requests(self) -> None:
        requests, latency = "vigil_request_outcomes_total", "vigil_request_duration_seconds_bucket"
        series = {
            (requests, (("origin", "live"), ("outcome", "success"))): 30,
            (requests, (("origin", "shadow"), ("outcome", "success"))): 60,
            (requests, (("origin", "shadow"), ("outcome", "model_error"))): 10,
            (latency, (("origin", "live"), ("le", "+Inf"))): 30,
            (latency, (("origin", "shadow"), ("le", "+Inf"))): 70,
        }
        window = RevisionWindow.from_series(series, pods=1)
        assert window.requests == 100 and window.copies == 70
        assert window.live_by_outcome == {"success": 30, "model_error": 0}
        assert window.live_latency_buckets == ((math.inf, 30),)


class TestQuantile:
    def test_matches_prometheus_interpolation(self) -> None:
        buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (math.inf, 100.0)]
        # rank 95 lies in (0.2, 0.5]: 0.2 + 0.3 * (95 - 90) / 10
        assert quantile_from_buckets(0.95, buckets) == pytest.approx(0.35)

    def test_first_bucket_starts_at_zero(self) -> None:
        assert quantile_from_buckets(0.5, [(0.1, 10.0), (math.inf, 10.0)]) == pytest.approx(0.05)

    def test_rank_in_the_inf_bucket_returns_the_highest_finite_bound(self) -> None:
        assert quantile_from_buckets(0.99, [(0.1, 10.0), (math.inf, 20.0)]) == 0.1

    def test_no_observations_no_quantile(self) -> None:
        assert quantile_from_buckets(0.95, [(0.1, 0.0), (math.inf, 0.0)]) is None
        assert quantile_from_buckets(0.95, []) is None

    def test_close_to_numpy_on_fine_buckets(self) -> None:
        rng = np.random.default_rng(1)
        values = rng.exponential(0.05, 20000)
        edges = np.linspace(0.001, 0.5, 500)
        buckets = [(float(e), float(np.sum(values <= e))) for e in edges]
        buckets.append((math.inf, float(values.size)))
        assert quantile_from_buckets(0.95, buckets) == pytest.approx(
            np.quantile(values, 0.95), rel=0.01
        )
