"""PerformanceDegraded from labels: the threshold, the interval, the runbook, the figures."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vigil.core.health import evaluate
from vigil.core.health_status import health_conditions, next_health
from vigil.core.performance import judge, measure, threshold
from vigil.core.spec import HealthPolicy, PerformanceSpec, parse_spec
from vigil.core.window import RealizedPerformance, RevisionWindow
from vigil.profile import Validation

HOLDOUT = Validation("holdout", 500, accuracy=0.93)


def labels(scored: int, correct: int, **outcomes: float) -> RealizedPerformance:
    """A classifier's window: two classes, the mistakes spread evenly."""
    return RealizedPerformance(
        labels_by_outcome={"joined": float(scored), **outcomes},
        scored_by_class={"a": scored / 2, "b": scored / 2},
        correct_by_class={"a": correct / 2, "b": correct / 2},
        delay_buckets=((60.0, scored * 0.5), (3600.0, scored * 1.0), (math.inf, float(scored))),
    )


def regression(scored: int, mae: float, rms: float) -> RealizedPerformance:
    return RealizedPerformance(
        labels_by_outcome={"joined": float(scored)},
        scored_by_class={"": float(scored)},
        absolute_error_sum=mae * scored,
        squared_error_sum=rms * rms * scored,
    )


class TestTheThreshold:
    def test_is_the_baseline_worsened_by_max_drop(self) -> None:
        assert threshold("accuracy", PerformanceSpec(), 0.9) == pytest.approx(0.855)
        assert threshold("mae", PerformanceSpec(max_drop=0.1), 2.0) == pytest.approx(2.2)

    def test_the_strictest_of_the_limit_and_the_baseline_wins(self) -> None:
        assert threshold("accuracy", PerformanceSpec(min_accuracy=0.9), 0.9) == 0.9
        assert threshold("accuracy", PerformanceSpec(min_accuracy=0.5), 0.9) == pytest.approx(0.855)
        assert threshold("mae", PerformanceSpec(max_mae=1.5), 2.0) == 1.5

    def test_none_without_a_limit_or_a_baseline(self) -> None:
        assert threshold("accuracy", PerformanceSpec(), None) is None
        assert threshold("mae", PerformanceSpec(min_accuracy=0.9), None) is None


class TestTheCondition:
    def test_too_few_labels_is_unknown(self) -> None:
        report = judge(labels(37, 30), PerformanceSpec(), HOLDOUT, "1h")
        assert (report.degraded, report.condition.reason) == (None, "InsufficientLabels")
        assert report.condition.message == "37 labels < 100 needed over 1h"
        assert "scored" not in report.figures  # every joined label was scored

    def test_joined_labels_none_scored_say_so_beside_the_count_the_condition_takes(self) -> None:
        # No reference profile and no feedback.task: labels join, none is scored.
        unscored = RealizedPerformance(labels_by_outcome={"joined": 500.0})
        report = judge(unscored, PerformanceSpec(), None, "1h")
        assert report.condition.message == "0 labels < 100 needed over 1h"
        assert (report.figures["labels"], report.figures["scored"]) == (500, 0)

    def test_below_the_threshold_beyond_doubt_is_degraded_with_value_baseline_threshold(
        self,
    ) -> None:
        report = judge(labels(500, 390), PerformanceSpec(), HOLDOUT, "1h")
        assert (report.degraded, report.condition.reason) == (True, "PerformanceBelowThreshold")
        message = report.condition.message
        assert message.startswith("accuracy 0.780 (95% CI 0.742-0.814) < threshold 0.8835")
        assert "(baseline 0.93 holdout, maxDrop 5%) over 1h, 500 labels" in message
        assert (report.baseline, report.threshold) == (0.93, pytest.approx(0.8835))

    def test_below_the_threshold_within_noise_is_not_degraded(self) -> None:
        # 0.87 < 0.8835, but 200 labels cannot tell it from the threshold.
        report = judge(labels(200, 174), PerformanceSpec(), HOLDOUT, "1h")
        assert (report.degraded, report.condition.reason) == (False, "PerformanceMet")
        assert "not surely beyond threshold 0.8835" in report.condition.message

    def test_above_the_threshold_is_met(self) -> None:
        report = judge(labels(500, 470), PerformanceSpec(), HOLDOUT, "1h")
        assert report.degraded is False
        assert report.condition.message.startswith("accuracy 0.940 (95% CI")
        assert ">= threshold 0.8835" in report.condition.message

    def test_no_threshold_reports_the_figure_and_says_what_to_set(self) -> None:
        report = judge(labels(500, 450), PerformanceSpec(), None, "1h")
        assert (report.degraded, report.condition.reason) == (False, "NoPerformanceThreshold")
        assert "spec.monitoring.performance.minAccuracy" in report.condition.message

    def test_more_correct_than_scored_reads_as_all_correct(self) -> None:
        # Prometheus extrapolates each counter of a window on its own: an accuracy over 1
        # crashed the Wilson interval (a square root of a negative).
        measured = measure(labels(1000, 1060))
        assert measured is not None and (measured.value, measured.high) == (1.0, 1.0)

    def test_more_correct_than_scored_shows_in_status_as_all_correct(self) -> None:
        # The figures beside the condition said accuracy 1.0015 and a recall of 1.013.
        window = RealizedPerformance(
            labels_by_outcome={"joined": 200.0},
            scored_by_class={"0": 100.0, "1": 100.0},
            correct_by_class={"0": 101.3, "1": 99.0},
        )
        figures = judge(window, PerformanceSpec(min_accuracy=0.9), None, "1h").figures
        assert (figures["accuracy"], figures["recall"]) == (1.0, {"0": 1.0, "1": 0.99})

    def test_a_regressor_is_judged_on_mae_with_a_normal_interval(self) -> None:
        worse = judge(regression(500, 0.8, 1.0), PerformanceSpec(max_mae=0.5), None, "1h")
        assert worse.degraded is True
        assert worse.condition.message.startswith("MAE 0.800 (95% CI 0.747-0.853) > threshold 0.5")
        fine = judge(
            regression(500, 0.4, 0.5), PerformanceSpec(), Validation("holdout", 9, mae=0.41), "1h"
        )
        assert fine.degraded is False and fine.threshold == pytest.approx(0.4305)

    def test_a_few_labels_with_one_error_each_cannot_show_a_spread_of_zero(self) -> None:
        """One label at 0.9 against a limit of 0.5 read "MAE 0.900 (95% CI 0.900-0.900)":
        Degraded on one label whenever minLabels allows it; twenty of them are enough."""
        policy = PerformanceSpec(max_mae=0.5, min_labels=1)
        one = judge(regression(1, 0.9, 0.9), policy, None, "1h")
        assert (one.degraded, one.condition.reason) == (False, "PerformanceMet")
        assert one.condition.message.startswith("MAE 0.900 (95% CI 0.023-1.777) not surely")
        twenty = judge(regression(20, 0.9, 0.9), policy, None, "1h")
        assert (twenty.degraded, twenty.condition.reason) == (True, "PerformanceBelowThreshold")

    def test_a_small_mae_is_printed_in_significant_digits(self) -> None:
        """A target in small units read "MAE 0.000 (95% CI 0.000-0.000)"."""
        baseline = Validation("holdout", 500, mae=2.41e-7, rmse=3e-7)
        report = judge(regression(2000, 2.41e-7, 3e-7), PerformanceSpec(), baseline, "1h")
        message = report.condition.message
        assert message.startswith("MAE 2.41e-07 (95% CI 2.33e-07-2.49e-07) <= threshold")
        assert "0.000" not in message

    def test_the_baseline_of_another_task_is_ignored(self) -> None:
        report = judge(labels(500, 390), PerformanceSpec(), Validation("holdout", 9, mae=1.0), "1h")
        assert report.condition.reason == "NoPerformanceThreshold"


class TestAfterATrue:
    """PerformanceDegraded holds until the interval lies wholly on the good side, as a
    breached SLO holds until surely met."""

    def test_a_model_not_surely_back_within_stays_degraded_and_says_so(self) -> None:
        report = judge(labels(200, 174), PerformanceSpec(), HOLDOUT, "1h", held=True)
        assert (report.degraded, report.condition.reason) == (True, "PerformanceBelowThreshold")
        message = report.condition.message
        assert message.startswith("accuracy 0.870 (95% CI 0.816-0.910) not surely >= threshold")
        assert message.endswith("over 1h, 200 labels, held until it is")

    def test_surely_back_within_clears_it(self) -> None:
        report = judge(labels(500, 470), PerformanceSpec(), HOLDOUT, "1h", held=True)
        assert (report.degraded, report.condition.reason) == (False, "PerformanceMet")

    def test_where_no_window_could_be_surely_within_the_estimate_clears_it(self) -> None:
        # 100 labels all right: the Wilson interval reaches down to 0.963, never wholly over
        # 0.99. Held to the interval, the condition would stay True for ever.
        strict = PerformanceSpec(min_accuracy=0.99)
        assert judge(labels(100, 100), strict, None, "1h", held=True).degraded is False
        assert judge(labels(100, 98), strict, None, "1h", held=True).degraded is True

    @pytest.mark.parametrize("accuracy", [0.84, 0.855, 0.87])
    def test_a_model_truly_under_its_threshold_does_not_flap(self, accuracy: float) -> None:
        # Windows of 500 labels, the threshold 0.8835: judged each on its own, the
        # condition flipped 36 to 62 times in 120 windows.
        rng = np.random.default_rng(3)
        verdicts, held = [], False
        for correct in rng.binomial(500, accuracy, size=120):
            report = judge(
                labels(500, int(correct) // 2 * 2), PerformanceSpec(), HOLDOUT, "1h", held=held
            )
            held = report.degraded is True
            verdicts.append(held)
        assert sum(a != b for a, b in itertools.pairwise(verdicts)) <= 2

    def test_an_interval_end_never_reads_as_the_threshold(self) -> None:
        # 281 of 324 right: the interval's top is 0.89996, which three decimals print 0.900.
        report = judge(labels(324, 281), PerformanceSpec(min_accuracy=0.9), None, "1h")
        assert report.degraded is True
        assert "95% CI 0.82600-0.89996) < threshold 0.9 " in report.condition.message


def test_the_accuracy_interval_is_wilsons() -> None:
    measured = measure(labels(500, 390))
    assert measured is not None
    assert (measured.low, measured.high) == (
        pytest.approx(0.7416, abs=1e-4),
        pytest.approx(0.8140, abs=1e-4),
    )


class TestInStatus:
    def test_the_figures_counts_and_delays_go_to_status_health_performance(self) -> None:
        realized = labels(500, 390, duplicate=25.0, unknown=51.0, expired=0.0)
        window = RevisionWindow(requests_by_outcome={"success": 100.0}, realized=realized)
        policy = HealthPolicy(window_seconds=300, min_requests=10)
        report = judge(realized, PerformanceSpec(), HOLDOUT, "1h")
        health = next_health(None, evaluate(window, None, policy), policy, "t0", report)
        assert health["performance"] == {
            "window": "1h",
            "labels": 500,
            "accuracy": 0.78,
            "recall": {"a": 0.78, "b": 0.78},
            "labelDelayP50": 60.0,
            "labelDelayP95": 3246.0,
            "notJoined": {"duplicate": 25, "unknown": 51},
            "baseline": 0.93,
            "threshold": 0.8835,
        }
        assert health["readable"]["realized"] == "78%"
        assert health["readable"]["labelDelayP95"] == "54.1m"
        kinds = [c.type for c in health_conditions(evaluate(window, None, policy), policy, report)]
        assert kinds[-1] == "PerformanceDegraded"

    def test_a_held_judgement_keeps_the_last_figures(self) -> None:
        window = RevisionWindow(requests_by_outcome={"success": 100.0})
        policy = HealthPolicy(window_seconds=300, min_requests=10)
        report = judge(labels(500, 390), PerformanceSpec(), HOLDOUT, "1h")
        first = next_health(None, evaluate(window, None, policy), policy, "t0", report)
        held = next_health(first, evaluate(window, None, policy), policy, "t1", None)
        assert held["performance"] == first["performance"]
        assert held["evaluatedAt"] == "t0"  # nothing changed: nothing to write


class TestTheSpec:
    def test_defaults(self) -> None:
        spec = parse_spec("wine", {"model": {"version": "1"}, "server": {"image": "i"}})
        assert spec.monitoring.performance == PerformanceSpec()
        assert spec.monitoring.performance.window_seconds == 3600

    def test_values_and_what_the_schema_would_refuse(self) -> None:
        raw = {
            "model": {"version": "1"},
            "server": {"image": "i"},
            "monitoring": {"performance": {"minAccuracy": 0.8, "minLabels": 20, "window": "2h"}},
        }
        performance = parse_spec("wine", raw).monitoring.performance
        assert (performance.min_accuracy, performance.min_labels) == (0.8, 20)
        assert performance.window_seconds == 7200
        raw["monitoring"]["performance"]["maxMAE"] = 1.0
        problem = parse_spec("wine", raw).monitoring.problem
        assert problem and "minAccuracy (a classifier) or maxMAE" in problem
