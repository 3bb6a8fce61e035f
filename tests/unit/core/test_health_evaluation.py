"""The health verdict, branch by branch, and the status and conditions it yields."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from vigil.core import drift
from vigil.core.health import HealthPolicy, evaluate, format_window
from vigil.core.health_status import health_conditions, health_status
from vigil.core.slo import format_percent
from vigil.core.window import RevisionWindow
from vigil.profile import ReferenceProfile, build_profile

FEATURES = ["alcohol", "ash", "hue", "proline"]
POLICY = HealthPolicy(
    window_seconds=300,
    max_error_rate=0.01,
    max_latency_p95=0.25,
    drift_warning=0.1,
    drift_threshold=0.2,
    min_requests=50,
)


@pytest.fixture(scope="module")
def reference_data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5000, len(FEATURES))) * [1, 2, 3, 4] + 10


@pytest.fixture(scope="module")
def reference(reference_data: np.ndarray) -> ReferenceProfile:
    predictions = (reference_data[:, 0] > 10).astype(int)
    return build_profile(
        reference_data,
        feature_names=FEATURES,
        predictions=predictions,
        model_name="m",
        model_version="1",
    )


def window_for(
    reference: ReferenceProfile,
    live: np.ndarray,
    *,
    success: float = 1000,
    errors: float = 0,
    latency: float = 0.02,
    missing: dict[str, float] | None = None,
    agreements: tuple[float, float] | None = None,
) -> RevisionWindow:
    bins = {}
    for feature in reference.features:
        slots = drift.bin_index(live[:, feature.index], feature.edges)
        bins[feature.name] = {
            str(slot): float(np.sum(slots == slot)) for slot in range(len(feature.proportions))
        }
    total = success + errors
    return RevisionWindow(
        requests_by_outcome={"success": success, "model_error": errors},
        latency_buckets=((latency, total * 0.96), (1.0, total), (math.inf, total)),
        input_rows=float(live.shape[0]),
        feature_bins=bins,
        feature_missing=missing or {},
        predictions=float(live.shape[0]),
        prediction_sum=float(live.shape[0]) * 0.5,
        prediction_squares_sum=float(live.shape[0]) * 0.5,
        shadow_predictions={"r2": agreements[1]} if agreements else {},
        shadow_agreements={"r2": agreements[0]} if agreements else {},
        pods=2,
    )


def live_sample(
    reference_data: np.ndarray, shift: dict[int, float] | None = None, seed: int = 1
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = reference_data[rng.integers(0, len(reference_data), 2000)].copy()
    stds = reference_data.std(axis=0)
    for column, amount in (shift or {}).items():
        rows[:, column] += amount * stds[column]
    return rows


class TestVerdicts:
    def test_no_figures_is_metrics_unavailable_with_the_reason(self) -> None:
        report = evaluate(None, None, POLICY, source_error="prometheus: connection refused")
        assert report.verdict == "MetricsUnavailable"
        assert report.message == "prometheus: connection refused"

    def test_too_few_requests_hold_judgement(self, reference, reference_data) -> None:
        window = window_for(reference, live_sample(reference_data), success=12)
        report = evaluate(window, reference, POLICY)
        assert report.verdict == "InsufficientData"
        assert report.message == "12 requests < 50 needed over 5m"
        assert report.requests == 12

    def test_traffic_like_training_is_healthy(self, reference, reference_data) -> None:
        report = evaluate(window_for(reference, live_sample(reference_data)), reference, POLICY)
        assert report.verdict == "Healthy"
        assert report.drift_level == "none"
        assert report.error_rate == 0.0
        assert report.message.startswith("error rate 0.0% <= 1.0%, p95 ")
        assert report.message.endswith("over 5m (1000 requests)")

    def test_error_rate_over_slo_is_degraded_with_value_and_threshold(
        self, reference, reference_data
    ) -> None:
        window = window_for(reference, live_sample(reference_data), success=968, errors=32)
        report = evaluate(window, reference, POLICY)
        assert report.verdict == "Degraded"
        assert report.reason == "ErrorRateHigh"
        assert report.message == (
            "error rate 3.2% > 1.0% over 5m, 99% interval 2.0%-5.0% (1000 requests)"
        )
        assert report.error_rate == 0.032

    def test_latency_over_slo_is_degraded(self, reference, reference_data) -> None:
        window = window_for(reference, live_sample(reference_data), latency=0.9)
        report = evaluate(window, reference, POLICY)
        assert report.verdict == "Degraded" and report.reason == "LatencyHigh"
        assert "p95 latency" in report.message and "> 250ms over 5m" in report.message

    def test_both_breaches_are_named_errors_first(self, reference, reference_data) -> None:
        window = window_for(reference, live_sample(reference_data), errors=100, latency=0.9)
        report = evaluate(window, reference, POLICY)
        assert report.reason == "ErrorRateHigh"
        assert "error rate" in report.message and "p95 latency" in report.message

    def test_two_shifted_features_are_drift_naming_exactly_them(
        self, reference, reference_data
    ) -> None:
        live = live_sample(reference_data, shift={0: 1.0, 3: 1.0})
        report = evaluate(window_for(reference, live), reference, POLICY)
        assert report.verdict == "DriftDetected"
        assert set(k for k, v in report.drift_features.items() if v >= 0.2) == {
            "alcohol",
            "proline",
        }
        assert report.drift_features["ash"] < 0.1 and report.drift_features["hue"] < 0.1
        assert "alcohol" in report.message and "proline" in report.message
        assert "ash" not in report.message
        assert report.drift_score == max(report.drift_features.values())

    def test_slo_breach_outranks_drift(self, reference, reference_data) -> None:
        live = live_sample(reference_data, shift={0: 1.0})
        report = evaluate(window_for(reference, live, errors=100), reference, POLICY)
        assert report.verdict == "Degraded"
        assert report.drift_level == "threshold"

    def test_mild_drift_is_a_warning_not_a_verdict(self, reference, reference_data) -> None:
        live = live_sample(reference_data, shift={1: 0.5})
        report = evaluate(window_for(reference, live), reference, POLICY)
        assert report.verdict == "Healthy"
        assert report.drift_level == "warning"

    def test_jensen_shannon_method(self, reference, reference_data) -> None:
        policy = HealthPolicy(drift_method="jsd", drift_warning=0.05, drift_threshold=0.1)
        live = live_sample(reference_data, shift={2: 1.0})
        report = evaluate(window_for(reference, live), reference, policy)
        assert report.drift_method == "jsd"
        assert report.verdict == "DriftDetected"
        assert 0.0 <= report.drift_score <= 1.0

    def test_without_reference_drift_is_unknown(self, reference, reference_data) -> None:
        report = evaluate(window_for(reference, live_sample(reference_data)), None, POLICY)
        assert report.verdict == "Healthy"
        assert report.drift_level == "unknown" and report.drift_score is None

    def test_a_reference_without_input_features_judges_the_rest(
        self, reference, reference_data
    ) -> None:
        # A hand-written profile kept for its predictions only.
        window = window_for(reference, live_sample(reference_data))
        report = evaluate(window, replace(reference, features=()), POLICY)
        assert report.verdict == "Healthy" and report.drift_level == "unknown"
        assert report.drift_note.startswith("no reference features")
        state = {c.type: c for c in health_conditions(report, POLICY)}["DriftDetected"]
        assert (state.status, state.reason) == (None, "NoReference")

    def test_no_requests_and_no_minimum_never_divides_by_zero(self, reference) -> None:
        # minRequests 0 (the CRD allows it): no request is still no evidence (it read
        # Healthy with an empty message).
        policy = HealthPolicy(min_requests=0)
        report = evaluate(RevisionWindow(), reference, policy)
        assert report.verdict == "InsufficientData"
        assert report.message == "0 requests < 1 needed over 5m"
        assert report.error_rate is None and report.latency_p95 is None
        assert report.prediction_mean is None

    def test_agreement_is_agreements_over_compared_predictions(
        self, reference, reference_data
    ) -> None:
        window = window_for(reference, live_sample(reference_data), agreements=(81, 100))
        assert evaluate(window, reference, POLICY).agreement == 0.81

    def test_mean_absolute_difference_of_shadow_pairs_for_regression_only(
        self, reference, reference_data
    ) -> None:
        shadow = {"shadow_difference_sum": {"r2": 62.5}, "shadow_differences": {"r2": 25.0}}
        window = replace(window_for(reference, live_sample(reference_data)), **shadow)
        status = health_status(evaluate(window, None, POLICY), POLICY, "2026-01-01T00:00:00Z")
        assert status["meanAbsoluteDifference"] == 2.5
        # The reference is a classifier's: a difference of class labels means nothing.
        classes = health_status(evaluate(window, reference, POLICY), POLICY, "t")
        assert "meanAbsoluteDifference" not in classes

    def test_prediction_moments(self, reference, reference_data) -> None:
        report = evaluate(window_for(reference, live_sample(reference_data)), reference, POLICY)
        assert report.prediction_mean == 0.5 and report.prediction_std == 0.5


class TestConditions:
    def conditions(self, report) -> dict[str, tuple[bool | None, str, str]]:
        return {c.type: (c.status, c.reason, c.message) for c in health_conditions(report, POLICY)}

    def test_healthy(self, reference, reference_data) -> None:
        found = self.conditions(
            evaluate(window_for(reference, live_sample(reference_data)), reference, POLICY)
        )
        assert found["Healthy"][:2] == (True, "SLOsMet")
        assert found["DriftDetected"][:2] == (False, "NoDrift")
        assert found["MetricsAvailable"][:2] == (True, "MetricsCollected")

    def test_degraded(self, reference, reference_data) -> None:
        window = window_for(reference, live_sample(reference_data), success=968, errors=32)
        found = self.conditions(evaluate(window, reference, POLICY))
        assert found["Healthy"] == (
            False,
            "ErrorRateHigh",
            "error rate 3.2% > 1.0% over 5m, 99% interval 2.0%-5.0% (1000 requests)",
        )

    def test_drift_keeps_healthy_true(self, reference, reference_data) -> None:
        live = live_sample(reference_data, shift={0: 1.0, 3: 1.0})
        found = self.conditions(evaluate(window_for(reference, live), reference, POLICY))
        assert found["Healthy"][:2] == (True, "SLOsMet")
        assert found["DriftDetected"][:2] == (True, "DriftAboveThreshold")
        assert "alcohol" in found["DriftDetected"][2]

    def test_every_drift_message_names_the_window(self, reference, reference_data) -> None:
        for shift, prefix in (
            ({0: 1.0}, " >= 0.2 over 5m: "),
            ({1: 0.5}, ", not surely >= threshold 0.2 over 5m: "),
        ):
            live = live_sample(reference_data, shift=shift)
            message = self.conditions(evaluate(window_for(reference, live), reference, POLICY))[
                "DriftDetected"
            ][2]
            assert message.startswith("psi ") and prefix in message, message
        calm = window_for(reference, live_sample(reference_data))
        message = self.conditions(evaluate(calm, reference, POLICY))["DriftDetected"][2]
        assert message.endswith(" < warning 0.1 on every feature over 5m"), message

    def test_warning(self, reference, reference_data) -> None:
        live = live_sample(reference_data, shift={1: 0.5})
        found = self.conditions(evaluate(window_for(reference, live), reference, POLICY))
        assert found["DriftDetected"][:2] == (False, "DriftWarning")
        assert "ash" in found["DriftDetected"][2]

    def test_insufficient_data_is_unknown(self, reference, reference_data) -> None:
        window = window_for(reference, live_sample(reference_data), success=3)
        found = self.conditions(evaluate(window, reference, POLICY))
        assert found["Healthy"][:2] == (None, "InsufficientData")
        assert found["DriftDetected"][:2] == (None, "InsufficientData")

    def test_missing_metrics_change_only_metrics_available(self) -> None:
        found = self.conditions(evaluate(None, None, POLICY, source_error="timeout"))
        assert found == {"MetricsAvailable": (False, "MetricsUnavailable", "timeout")}

    def test_missing_values_over_reference_are_reported(self, reference, reference_data) -> None:
        window = window_for(reference, live_sample(reference_data), missing={"hue": 300})
        report = evaluate(window, reference, POLICY)
        assert report.missing_over_reference == ("hue",)
        assert (
            "missing values over reference: hue 15.0%"
            in self.conditions(report)["DriftDetected"][2]
        )


class TestStatus:
    def test_status_is_finite_json_without_nulls(self, reference, reference_data) -> None:
        report = evaluate(window_for(reference, live_sample(reference_data)), reference, POLICY)
        status = health_status(report, POLICY, "2026-11-26T07:00:00Z")
        text = json.dumps(status, allow_nan=False)
        assert "null" not in text
        assert status["window"] == "5m" and status["requests"] == 1000
        assert status["drift"]["method"] == "psi"
        assert set(status["drift"]["features"]) == set(FEATURES)

    def test_printer_columns_read_figures_with_their_units(self) -> None:
        window = RevisionWindow(
            requests_by_outcome={"success": 995, "server_error": 5},
            latency_buckets=((0.01, 500.0), (0.025, 1000.0), (math.inf, 1000.0)),
        )
        status = health_status(evaluate(window, None, POLICY), POLICY, "t")
        assert status["errorRate"] == 0.005 and status["readable"]["errorRate"] == "0.5%"
        assert status["latencyP95"] == pytest.approx(0.0235, abs=1e-4)
        assert status["readable"]["latencyP95"] == "24ms"

    def test_nan_inputs_never_reach_status(self, reference) -> None:
        window = RevisionWindow(
            requests_by_outcome={"success": 100},
            latency_buckets=((0.1, 100.0), (math.inf, 100.0)),
            predictions=10,
            prediction_sum=math.nan,
            prediction_squares_sum=math.inf,
        )
        status = health_status(evaluate(window, reference, POLICY), POLICY, "t")
        json.dumps(status, allow_nan=False)
        assert "prediction" not in status

    @pytest.mark.parametrize(
        ("seconds", "text"), [(300, "5m"), (90, "90s"), (3600, "1h"), (30, "30s")]
    )
    def test_window_format(self, seconds: float, text: str) -> None:
        assert format_window(seconds) == text

    def test_percent_format(self) -> None:
        assert format_percent(0.032) == "3.2%" and format_percent(0.0004) == "0.04%"


class TestDriftNearTheThreshold:
    """DriftDetected holds the features it named until their drift is surely under the
    threshold, as a breached SLO holds until surely met."""

    @staticmethod
    def verdicts(reference, reference_data, shift: float, windows: int = 60) -> list[str]:
        found, drifted = [], frozenset()
        for seed in range(windows):
            live = live_sample(reference_data, shift={0: shift}, seed=seed + 10)
            report = evaluate(window_for(reference, live), reference, POLICY, drifted=drifted)
            over = health_status(report, POLICY, "t")["drift"].get("over", ())
            drifted = frozenset(over)
            found.append(report.verdict)
        return found

    def test_a_feature_truly_over_the_threshold_does_not_flap(
        self, reference, reference_data
    ) -> None:
        # Shifted 0.55 sd, alcohol's PSI is about 0.32 (threshold 0.2): judged on each
        # window alone, DriftDetected flipped 26 times in 60 windows of 2 000 rows.
        found = self.verdicts(reference, reference_data, 0.55)
        assert sum(a != b for a, b in itertools.pairwise(found)) <= 2
        assert found.count("DriftDetected") >= 55

    def test_a_held_feature_is_named_as_held_with_its_estimate(
        self, reference, reference_data
    ) -> None:
        live = live_sample(reference_data, shift={0: 0.45})
        alone = evaluate(window_for(reference, live), reference, POLICY)
        assert alone.verdict == "Healthy" and alone.drift_features["alcohol"] >= 0.2
        held = evaluate(window_for(reference, live), reference, POLICY, drifted={"alcohol"})
        assert held.verdict == "DriftDetected" and held.drift_level == "threshold"
        score = held.drift_features["alcohol"]
        expected = (
            f"psi {score:.2f} not surely < 0.2 over 5m, held until it is: alcohol {score:.2f}"
        )
        assert held.message == expected
        drift = [c for c in health_conditions(held, POLICY) if c.type == "DriftDetected"]
        assert (drift[0].status, drift[0].message) == (True, expected)
        assert health_status(held, POLICY, "2026-12-06T00:00:00Z")["drift"]["over"] == ["alcohol"]

    def test_drift_surely_under_the_threshold_clears_the_hold(
        self, reference, reference_data
    ) -> None:
        calm = window_for(reference, live_sample(reference_data))
        report = evaluate(calm, reference, POLICY, drifted=frozenset({"alcohol"}))
        assert report.verdict == "Healthy" and report.drift_level == "none"
        assert "over" not in health_status(report, POLICY, "2026-12-06T00:00:00Z")["drift"]

    def test_where_no_window_could_be_surely_under_the_estimate_under_the_warning_clears_it(
        self, reference_data
    ) -> None:
        # A reference of 178 rows (the wine data set) caps the rows that count: even an
        # estimate of 0 is never surely under 0.2, and the hold never ended (seen end to end:
        # "psi 0.00 not surely < 0.2 ..., held until it is").
        small = build_profile(
            reference_data[:178],
            feature_names=FEATURES,
            predictions=(reference_data[:178, 0] > 10).astype(int),
            model_name="m",
            model_version="1",
        )
        normal = window_for(small, live_sample(reference_data)[:450])
        cleared = evaluate(normal, small, POLICY, drifted=frozenset({"alcohol"}))
        assert cleared.verdict == "Healthy" and cleared.drift_features["alcohol"] < 0.1
        shifted = window_for(small, live_sample(reference_data, shift={0: 1.0})[:450])
        held = evaluate(shifted, small, POLICY, drifted=frozenset({"alcohol"}))
        assert held.verdict == "DriftDetected"

    def test_a_feature_surely_over_beside_a_held_one_is_named_first(
        self, reference, reference_data
    ) -> None:
        live = live_sample(reference_data, shift={0: 0.45, 3: 1.0})
        report = evaluate(window_for(reference, live), reference, POLICY, drifted={"alcohol"})
        proline, alcohol = report.drift_features["proline"], report.drift_features["alcohol"]
        assert report.message == (
            f"psi {proline:.2f} >= 0.2 over 5m: proline {proline:.2f}; "
            f"psi {alcohol:.2f} not surely < 0.2 over 5m, held until it is: alcohol {alcohol:.2f}"
        )


class TestDriftAtTheRatesUsersHave:
    """Judged from 5 rows per bin on, with the sample sizes accounted for."""

    def test_few_rows_leave_drift_unjudged_with_the_count(self, reference, reference_data) -> None:
        live = live_sample(reference_data, shift={0: 1.0})[:40]
        report = evaluate(window_for(reference, live), reference, POLICY)
        assert report.verdict == "Healthy" and report.drift_level == "unknown"
        state = {c.type: c for c in health_conditions(report, POLICY)}["DriftDetected"]
        assert (state.status, state.reason) == (None, "InsufficientData")
        assert state.message == "40 input rows < 60 needed to judge drift"

    def test_a_30s_window_at_5_requests_per_second_gets_a_verdict(
        self, reference, reference_data
    ) -> None:
        drifted = live_sample(reference_data, shift={0: 1.0})[:150]
        report = evaluate(window_for(reference, drifted), reference, POLICY)
        assert report.verdict == "DriftDetected" and "alcohol" in report.message
        calm = live_sample(reference_data)[:150]
        report = evaluate(window_for(reference, calm), reference, POLICY)
        assert (report.verdict, report.drift_level) == ("Healthy", "none")

    @pytest.mark.parametrize("rows", [60, 150, 400, 1500])
    def test_traffic_drawn_from_the_reference_raises_no_warning(
        self, reference, reference_data, rows: int
    ) -> None:
        # The raw PSI of 60 rows over 12 bins reads about 0.15 on noise alone.
        levels = [
            evaluate(
                window_for(reference, live_sample(reference_data, seed=seed)[:rows]),
                reference,
                POLICY,
            ).drift_level
            for seed in range(60)
        ]
        assert set(levels) == {"none"}

    def test_a_small_reference_is_a_sample_too(self, reference_data) -> None:
        # 142 training rows (the wine data's split): live traffic from the same population
        # drifts from those rows by chance alone (raw PSI 0.10-0.12 over 5 minutes).
        small = build_profile(
            reference_data[:142], feature_names=FEATURES, model_name="m", model_version="1"
        )
        levels = {
            evaluate(
                window_for(small, live_sample(reference_data, seed=seed)[:1500]), small, POLICY
            ).drift_level
            for seed in range(30)
        }
        assert levels == {"none"}

    def test_a_profile_without_counts_is_a_sample_of_its_rows(self, reference_data) -> None:
        # Another tool's (or a hand-written) profile gives rowCount but no per-feature
        # count: taken as an exact population, the 142-row reference drifted from traffic
        # drawn from its own population in every window.
        small = build_profile(
            reference_data[:142], feature_names=FEATURES, model_name="m", model_version="1"
        )
        uncounted = replace(small, features=tuple(replace(f, count=0) for f in small.features))
        levels = {
            evaluate(
                window_for(uncounted, live_sample(reference_data, seed=seed)[:1500]),
                uncounted,
                POLICY,
            ).drift_level
            for seed in range(10)
        }
        assert levels == {"none"}

    def test_rows_without_their_features_are_not_too_few_rows(self, reference) -> None:
        # Every feature missing (sent under other names): 1 000 rows read "1000 input
        # rows < 60 needed".
        window = RevisionWindow(
            requests_by_outcome={"success": 1000.0},
            input_rows=1000.0,
            feature_missing=dict.fromkeys(FEATURES, 1000.0),
        )
        state = {c.type: c for c in health_conditions(evaluate(window, reference, POLICY), POLICY)}
        assert state["DriftDetected"].message.startswith(
            "no input feature has 60 values to judge drift in 1000 rows; missing values"
        )

    def test_the_out_of_range_rate_is_a_share_of_the_values(self, reference) -> None:
        # Every value of the 4 features out of range: 100 %, not 400 %; nor 75 % when the
        # fourth is always missing (a missing value is never out of range).
        window = RevisionWindow(
            requests_by_outcome={"success": 1000.0},
            input_rows=1000.0,
            feature_out_of_range=dict.fromkeys(FEATURES, 1000.0),
        )
        assert evaluate(window, reference, POLICY).out_of_range_rate == 1.0
        three = RevisionWindow(
            requests_by_outcome={"success": 1000.0},
            input_rows=1000.0,
            feature_out_of_range={**dict.fromkeys(FEATURES[:3], 1000.0), FEATURES[3]: 0.0},
            feature_missing={FEATURES[3]: 1000.0},
        )
        assert evaluate(three, reference, POLICY).out_of_range_rate == 1.0

    def test_no_reference_says_so(self, reference, reference_data) -> None:
        report = evaluate(window_for(reference, live_sample(reference_data)), None, POLICY)
        state = {c.type: c for c in health_conditions(report, POLICY)}["DriftDetected"]
        assert (state.status, state.reason) == (None, "NoReference")
