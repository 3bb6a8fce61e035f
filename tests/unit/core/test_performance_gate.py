"""The realized-performance gates (vigil.core.judges): labels judged with confidence.

``realizedPerformance`` holds the candidate's accuracy (or MAE) to a limit,
``performanceVsStable`` to the stable's over the same span worsened by
``maxDrop``. Both wait, undecided, until ``minLabels`` labels are in, and
judge only canary steps (a shadow step's copies get no labels).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from figures_kit import figures, labelled, scored
from scipy import stats

from vigil.core.analysis import CandidateFigures
from vigil.core.judges import Gate, gates, step_alpha
from vigil.core.spec import PerformanceGate, RolloutPolicy, parse_policy
from vigil.core.vocabulary import GateVerdict
from vigil.core.window import RealizedPerformance


def policy(**performance: object) -> RolloutPolicy:
    return parse_policy(
        {
            "replacement": {
                "steps": [
                    {"shadow": {"duration": "5m"}},
                    {"canary": {"weight": 50, "duration": "5m"}},
                ]
            },
            "analysis": {"performance": performance},
        },
        "replacement",
    )


CLASSIFIER = policy(minAccuracy=0.85, maxDrop=0.05)
SHADOW, CANARY = CLASSIFIER.steps


def seen(candidate: RealizedPerformance, stable: RealizedPerformance) -> CandidateFigures:
    return replace(figures(requests=2000), realized=candidate, stable_realized=stable)


def performance_gates(
    found: tuple[Gate, ...],
) -> dict[str, Gate]:
    return {g.name: g for g in found if g.name in ("realizedPerformance", "performanceVsStable")}


class TestSpec:
    def test_absent_means_no_gate(self) -> None:
        assert parse_policy({"replacement": {"steps": []}}, "replacement").performance is None

    def test_read_with_its_default_labels(self) -> None:
        assert CLASSIFIER.performance == PerformanceGate(min_accuracy=0.85, max_drop=0.05)
        assert CLASSIFIER.performance.min_labels == 50
        assert policy(maxMAE=2.5, minLabels=200).performance == PerformanceGate(
            max_mae=2.5, min_labels=200
        )

    @pytest.mark.parametrize(
        ("performance", "message"),
        [
            ({"minAccuracy": 0.9, "maxMAE": 1.0}, "performance takes minAccuracy"),
            ({"minLabels": 10}, "performance needs minAccuracy, maxMAE or maxDrop"),
            ({"minAccuracy": 1.5}, r"performance.minAccuracy 1.5 must be between 0 and 1"),
            ({"maxDrop": -0.1}, r"performance.maxDrop -0.1 must be between 0 and 1"),
            ({"maxMAE": 1, "minLabels": 0}, r"performance.minLabels 0 must be at least 1"),
        ],
    )
    def test_unusable_values_name_the_field(self, performance: dict, message: str) -> None:
        with pytest.raises(ValueError, match=f"spec.rollout.analysis.{message}"):
            policy(**performance)


class TestWaitingForLabels:
    def test_too_few_labels_is_undecided_never_passing_with_the_labels_missing(self) -> None:
        found = performance_gates(
            gates(CANARY, CLASSIFIER, seen(labelled(20, 1.0), labelled(80, 1.0)))
        )
        floor, versus = found["realizedPerformance"], found["performanceVsStable"]
        assert floor.verdict == versus.verdict == GateVerdict.UNDECIDED
        assert not floor.within and not versus.within
        assert (floor.needed, floor.low, floor.high) == (30, None, None)
        assert floor.text == "realized accuracy: 20 labels < 50 needed"
        assert versus.text == "realized accuracy vs stable: candidate 20 labels < 50 needed"
        assert (floor.samples, floor.unit, floor.value) == (20, "labels", 1.0)

    def test_the_comparison_waits_for_the_stables_labels_too(self) -> None:
        found = performance_gates(
            gates(CANARY, CLASSIFIER, seen(labelled(400, 0.95), labelled(10, 1.0)))
        )
        assert found["realizedPerformance"].low is not None  # the candidate's own is judged
        versus = found["performanceVsStable"]
        assert versus.verdict == GateVerdict.UNDECIDED and versus.needed == 40
        assert "stable 10 labels < 50 needed" in versus.text

    def test_a_limit_in_the_other_tasks_metric_holds_and_says_which_to_set(self) -> None:
        found = performance_gates(
            gates(CANARY, CLASSIFIER, seen(scored(500, 1.0, 0.5), scored(500, 1.0, 0.5)))
        )
        floor = found["realizedPerformance"]
        assert floor.verdict == GateVerdict.UNDECIDED and floor.needed == 50
        assert floor.text == (
            "realized accuracy: the labels are a regressor's; "
            "set spec.rollout.analysis.performance.maxMAE, not minAccuracy"
        )
        regressor = policy(maxMAE=1.0)
        on_classes = performance_gates(
            gates(CANARY, regressor, seen(labelled(500, 0.9), labelled(500, 0.9)))
        )
        assert "are a classifier's; set spec.rollout.analysis.performance.minAccuracy" in (
            on_classes["realizedPerformance"].text
        )


class TestMaxDropAlone:
    """``maxDrop`` alone compares in whichever metric the labels are in."""

    ALONE = policy(maxDrop=0.1)

    def test_a_regressors_mae_against_the_stables(self) -> None:
        found = performance_gates(
            gates(CANARY, self.ALONE, seen(scored(800, 1.4, 1.0), scored(800, 1.0, 1.0)))
        )
        versus = found["performanceVsStable"]
        assert versus.verdict == GateVerdict.FAIL and versus.threshold == pytest.approx(1.1)
        assert versus.text.startswith("realized MAE 1.4 [")

    def test_a_classifiers_accuracy_against_the_stables(self) -> None:
        found = performance_gates(
            gates(CANARY, self.ALONE, seen(labelled(2000, 0.7), labelled(2000, 0.9)))
        )
        versus = found["performanceVsStable"]
        assert versus.verdict == GateVerdict.FAIL and versus.threshold == pytest.approx(0.81)


class TestVerdicts:
    def test_ten_points_below_the_stable_fails_both_gates(self) -> None:
        found = performance_gates(
            gates(CANARY, CLASSIFIER, seen(labelled(2000, 0.80), labelled(2000, 0.90)))
        )
        floor, versus = found["realizedPerformance"], found["performanceVsStable"]
        assert floor.verdict == versus.verdict == GateVerdict.FAIL
        assert floor.text.startswith("realized accuracy 0.800 [0.7") and floor.text.endswith(
            "vs 0.850"
        )
        assert versus.threshold == pytest.approx(0.9 * 0.95)
        assert versus.high < versus.threshold < 0.9
        assert versus.text.startswith("realized accuracy 0.800 [")
        assert "vs stable's 0.900 x (1 - 0.05) = 0.855 (2000 stable labels)" in versus.text
        assert (versus.samples, versus.unit) == (2000, "labels")

    def test_as_good_as_the_stable_passes_with_enough_labels(self) -> None:
        found = performance_gates(
            gates(CANARY, CLASSIFIER, seen(labelled(3000, 0.93), labelled(3000, 0.93)))
        )
        assert {g.verdict for g in found.values()} == {GateVerdict.PASS}

    def test_undecided_between_says_how_many_more_labels(self) -> None:
        found = performance_gates(
            gates(CANARY, CLASSIFIER, seen(labelled(200, 0.86), labelled(200, 0.9)))
        )
        versus = found["performanceVsStable"]
        assert versus.verdict == GateVerdict.UNDECIDED and versus.within
        assert versus.needed is not None and versus.needed > 0
        assert "undecided: 200 labels, about" in versus.text

    def test_a_regressors_mae_against_its_limit_and_the_stables(self) -> None:
        regressor = policy(maxMAE=1.0, maxDrop=0.1)
        worse = performance_gates(
            gates(CANARY, regressor, seen(scored(800, 1.4, 1.0), scored(800, 1.0, 1.0)))
        )
        assert worse["realizedPerformance"].verdict == GateVerdict.FAIL
        assert worse["performanceVsStable"].verdict == GateVerdict.FAIL
        assert worse["performanceVsStable"].threshold == pytest.approx(1.1)
        assert worse["realizedPerformance"].text.startswith("realized MAE 1.4 [")
        same = performance_gates(
            gates(CANARY, regressor, seen(scored(5000, 0.8, 0.5), scored(5000, 0.8, 0.5)))
        )
        assert {g.verdict for g in same.values()} == {GateVerdict.PASS}

    def test_more_correct_than_scored_reads_as_all_correct(self) -> None:
        # Counters read at different times: never above 1, never a math domain error.
        ahead = RealizedPerformance(
            labels_by_outcome={"joined": 1000.0},
            scored_by_class={"1": 1000.0},
            correct_by_class={"1": 1060.0},
        )
        found = performance_gates(gates(CANARY, CLASSIFIER, seen(ahead, labelled(1000, 0.9))))
        floor = found["realizedPerformance"]
        assert floor.value == 1.0 and floor.verdict == GateVerdict.PASS
        assert floor.high is not None and floor.high <= 1.0

    def test_only_canary_steps_judge_labels(self) -> None:
        found = gates(SHADOW, CLASSIFIER, seen(labelled(1000, 0.5), labelled(1000, 0.9)))
        assert not performance_gates(found)

    def test_the_gates_are_judged_beside_the_others(self) -> None:
        without = parse_policy(
            {"replacement": {"steps": [{"canary": {"weight": 50}}]}}, "replacement"
        )
        with_gates = replace(without, performance=CLASSIFIER.performance)
        base = seen(RealizedPerformance(), RealizedPerformance())
        assert len(gates(without.steps[0], without, base)) == 3
        assert len(gates(with_gates.steps[0], with_gates, base)) == 5


class TestTheWidestMargin:
    def test_max_drop_1_on_a_classifier_passes_where_it_divided_by_zero(self) -> None:
        # The CRD allows maxDrop 1 (a regressor's MAE up to twice the stable's): on classes
        # the threshold is 0, and every reconcile of the model raised ZeroDivisionError.
        gate = policy(maxDrop=1)
        found = performance_gates(gates(CANARY, gate, seen(labelled(100, 0.9), labelled(100, 0.9))))
        versus = found["performanceVsStable"]
        assert (versus.verdict, versus.threshold) == (GateVerdict.PASS, 0.0)


class TestAnytimeValidity:
    @pytest.mark.slow
    def test_a_candidate_exactly_at_the_stables_margin_is_rarely_rolled_back(self) -> None:
        """Checked after every batch of labels, the comparison fails a candidate at its
        threshold at most its share of the budget (the normal approximation holds)."""
        gate = replace(CLASSIFIER, confidence=0.9, performance=PerformanceGate(max_drop=0.05))
        rng = np.random.default_rng(17)
        streams, looks, batch = 200, 20, 60
        stable_p, candidate_p = 0.9, 0.9 * 0.95
        stable = rng.binomial(batch, stable_p, size=(streams, looks)).cumsum(axis=1)
        candidate = rng.binomial(batch, candidate_p, size=(streams, looks)).cumsum(axis=1)
        failed = 0
        for mine, theirs in zip(candidate, stable, strict=True):
            for look in range(looks):
                n = batch * (look + 1)
                evidence = seen(labelled(n, mine[look] / n), labelled(n, theirs[look] / n))
                verdict = performance_gates(gates(CANARY, gate, evidence))["performanceVsStable"]
                if verdict.verdict == GateVerdict.FAIL:
                    failed += 1
                    break
        share = step_alpha(gate) / 5
        assert failed <= stats.binom.ppf(0.999, streams, share), (failed, share)


class TestFailedIntervals:
    # Where the comparison fails second in Holm's order, just past its level.
    @pytest.mark.parametrize(
        ("labels", "accuracy"), [(400, 0.7345), (400, 0.736), (600, 0.763), (1200, 0.7945)]
    )
    def test_a_failed_gates_interval_clears_its_threshold(
        self, labels: int, accuracy: float
    ) -> None:
        """Holm rejects the second gate at a wider level than the first: each failed
        gate's interval is shown at its own level, so it never spans the threshold."""
        found = gates(CANARY, CLASSIFIER, seen(labelled(labels, accuracy), labelled(labels, 0.9)))
        assert GateVerdict.FAIL in {gate.verdict for gate in found}
        for gate in found:
            if gate.verdict == GateVerdict.FAIL:
                assert gate.high is not None and gate.high < gate.threshold, gate


def errors_of(errors: np.ndarray) -> RealizedPerformance:
    """A regressor's labels as the sidecars count them: joined, the sums of |error| and
    error² (no fourth power)."""
    return RealizedPerformance(
        labels_by_outcome={"joined": float(len(errors))},
        scored_by_class={"": float(len(errors))},
        absolute_error_sum=float(np.abs(errors).sum()),
        squared_error_sum=float((errors**2).sum()),
    )


class TestRegressorAgainstNumpy:
    """``maxMAE`` and ``maxDrop`` on a regressor's errors, checked against numpy and scipy:
    the MAE is the mean of |e|, its variance the one of |e| (E[e²] - MAE², from the two
    sums the sidecars count), and the bound is anytime-valid, so never narrower than
    the fixed-sample normal interval."""

    REGRESSOR = policy(maxMAE=50.0, maxDrop=0.1)

    def test_the_estimate_and_interval_are_the_mean_of_the_absolute_errors(self) -> None:
        errors = np.random.default_rng(3).normal(0, 55, 400)  # diabetes-sized errors
        found = performance_gates(
            gates(CANARY, self.REGRESSOR, seen(errors_of(errors), errors_of(errors)))
        )
        floor = found["realizedPerformance"]
        mae = np.abs(errors).mean()
        assert floor.value == pytest.approx(mae)
        assert (floor.samples, floor.unit) == (400, "labels")
        assert floor.low is not None and floor.high is not None
        assert floor.low < mae < floor.high
        # Each gate's interval is at the step's budget shared by its five gates (Holm).
        alpha = step_alpha(self.REGRESSOR) / 5
        fixed = stats.norm.ppf(1 - alpha / 2) * np.abs(errors).std() / np.sqrt(len(errors))
        assert floor.high - mae >= fixed * 0.999
        assert floor.high - mae < 3 * fixed  # and not uselessly wide at 400 labels
        assert floor.text.startswith(f"realized MAE {mae:.4g} [")
        assert "] vs 50, undecided: 400 labels, about" in floor.text

    def test_a_candidate_thirty_percent_worse_fails_both_gates_a_like_one_passes(
        self,
    ) -> None:
        rng = np.random.default_rng(5)
        stable = rng.normal(0, 45, 1500)  # MAE about 36
        worse = rng.normal(0, 45 * 1.6, 1500)  # MAE about 57
        found = performance_gates(
            gates(CANARY, self.REGRESSOR, seen(errors_of(worse), errors_of(stable)))
        )
        floor, versus = found["realizedPerformance"], found["performanceVsStable"]
        assert floor.verdict == versus.verdict == GateVerdict.FAIL
        assert versus.threshold == pytest.approx(1.1 * np.abs(stable).mean())
        assert versus.low is not None and versus.low > versus.threshold
        assert f"vs stable's {np.abs(stable).mean():.4g} x (1 + 0.1)" in versus.text
        like, stable = rng.normal(0, 45, 5000), rng.normal(0, 45, 5000)
        found = performance_gates(
            gates(CANARY, self.REGRESSOR, seen(errors_of(like), errors_of(stable)))
        )
        assert {g.verdict for g in found.values()} == {GateVerdict.PASS}

    def test_too_few_labels_hold_the_step_undecided(self) -> None:
        errors = np.random.default_rng(1).normal(0, 200, 30)  # far worse, but 30 labels
        found = performance_gates(
            gates(CANARY, self.REGRESSOR, seen(errors_of(errors), errors_of(errors)))
        )
        floor = found["realizedPerformance"]
        assert floor.verdict == GateVerdict.UNDECIDED and not floor.within
        assert (floor.needed, floor.low, floor.high) == (20, None, None)
        assert floor.text == "realized MAE: 30 labels < 50 needed"

    @pytest.mark.slow
    @pytest.mark.parametrize("gate", ["realizedPerformance", "performanceVsStable"])
    def test_a_candidate_exactly_at_its_threshold_is_rarely_rolled_back(self, gate: str) -> None:
        """Checked after every batch of labels, a candidate whose true MAE is at the limit
        (or at the stable's x (1 + maxDrop)) fails at most its share of the budget."""
        policy_ = replace(self.REGRESSOR, confidence=0.9)
        rng = np.random.default_rng(23)
        streams, looks, batch = 200, 20, 50
        # |e| of normal errors with sd s has mean s * sqrt(2 / pi).
        unit = np.sqrt(2 / np.pi)
        stable_sd = 50.0 / 1.1 / unit  # the stable's MAE x 1.1 is the 50 limit
        candidate_sd = 50.0 / unit
        failed = 0
        for _ in range(streams):
            mine = rng.normal(0, candidate_sd, batch * looks)
            theirs = rng.normal(0, stable_sd, batch * looks)
            for look in range(looks):
                n = batch * (look + 1)
                evidence = seen(errors_of(mine[:n]), errors_of(theirs[:n]))
                if performance_gates(gates(CANARY, policy_, evidence))[gate].verdict == (
                    GateVerdict.FAIL
                ):
                    failed += 1
                    break
        share = step_alpha(policy_) / 5
        assert failed <= stats.binom.ppf(0.999, streams, share), (failed, share)
