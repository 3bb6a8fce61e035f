"""Prediction shift on a common basis, whatever reference profiles the two revisions bring.

Each revision's sidecars count its predictions in the bins (or classes) of
its own profile. A bad regressor that brings its own profile fills its own
bins as evenly as the stable fills its: compared slot by slot they look
alike (a shuffled-target regressor scored 0.08 and was promoted).
"""

from __future__ import annotations

import numpy as np
import pytest

from vigil.core import drift
from vigil.core.analysis import (
    MIN_PREDICTIONS_FOR_SHIFT,
    PredictionShift,
    candidate_figures,
    prediction_shift,
)
from vigil.core.rollout import Step, gates
from vigil.core.spec import parse_policy
from vigil.core.window import RevisionWindow
from vigil.profile import ReferenceProfile, build_profile, category_key

RNG = np.random.default_rng(7)
X = RNG.normal(size=(600, 3))
TARGET = 150 + 45 * X[:, 0] + 20 * X[:, 1] + RNG.normal(0, 30, 600)
STABLE = 150 + 44 * X[:, 0] + 21 * X[:, 1]  # the stable model's answers on the rows
LIVE = RNG.integers(0, 600, 300)  # the rows live traffic sends

#: Regressors that each bring their own profile (built from their own answers).
BAD = {
    "constant": np.full(600, TARGET.mean()),
    "shuffled targets": 150 + RNG.normal(0, 6, 600),  # narrow, meaningless
    "scaled by 2": 2 * STABLE,
    "offset by one std": STABLE + TARGET.std(),
    "sign inverted": -STABLE,
}
GOOD = 150 + 43.5 * X[:, 0] + 21.5 * X[:, 1] + 1.0  # retrained: within a few percent


def profile(predictions: np.ndarray, task: str | None = None) -> ReferenceProfile:
    return build_profile(X, predictions=predictions, feature_names=["a", "b", "c"], task=task)


def window(reference: ReferenceProfile, answers: np.ndarray) -> RevisionWindow:
    """What a revision's sidecars count over the window, as its reference says."""
    live = answers[LIVE]
    block = reference.prediction
    assert block is not None
    numbers = live.astype(float)
    moments = {
        "predictions": float(live.size),
        "prediction_sum": float(numbers.sum()),
        "prediction_squares_sum": float((numbers**2).sum()),
    }
    if block.type == "numeric":
        slots = drift.bin_index(numbers, block.edges)
        counts = np.bincount(slots, minlength=len(block.edges) + 1)
        return RevisionWindow(
            prediction_bins={str(i): float(n) for i, n in enumerate(counts)}, **moments
        )
    classes: dict[str, float] = {}
    for value in live.tolist():
        key = category_key(value)
        classes[key] = classes.get(key, 0.0) + 1
    return RevisionWindow(prediction_classes=classes, **moments)


STABLE_PROFILE = profile(STABLE)
STABLE_WINDOW = window(STABLE_PROFILE, STABLE)


def slot_by_slot(candidate: RevisionWindow) -> float:
    """The old comparison: slot i of one profile against slot i of the other."""
    keys = sorted(set(candidate.prediction_bins) | set(STABLE_WINDOW.prediction_bins))
    return drift.psi(
        [STABLE_WINDOW.prediction_bins.get(k, 0.0) for k in keys],
        [candidate.prediction_bins.get(k, 0.0) for k in keys],
    )


def shift_with_own_profile(answers: np.ndarray, method: str) -> PredictionShift | None:
    """A regressor with a profile built from its own answers, against the stable."""
    own = profile(answers)
    return prediction_shift(
        window(own, answers),
        STABLE_WINDOW,
        method,  # type: ignore[arg-type]
        candidate_profile=own,
        stable_profile=STABLE_PROFILE,
    )


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("method", ["psi", "jsd"])
def test_a_bad_regressor_with_its_own_profile_shifts_far_on_the_stables_bins(name, method):
    shift = shift_with_own_profile(BAD[name], method)
    assert shift is not None and shift.basis == "on the stable's bins"
    assert shift.score > (1.0 if method == "psi" else 0.4), shift


def test_slot_by_slot_would_have_missed_the_bad_regressors():
    missed = [name for name, a in BAD.items() if slot_by_slot(window(profile(a), a)) < 0.2]
    assert {"shuffled targets", "scaled by 2", "offset by one std", "sign inverted"} <= set(missed)


@pytest.mark.parametrize("method", ["psi", "jsd"])
def test_a_good_retrained_regressor_with_its_own_profile_barely_shifts(method):
    shift = shift_with_own_profile(GOOD, method)
    assert shift is not None and shift.score < 0.1, shift


def test_the_same_profile_compares_slot_for_slot_exactly():
    same = prediction_shift(
        STABLE_WINDOW,
        STABLE_WINDOW,
        "psi",
        candidate_profile=STABLE_PROFILE,
        stable_profile=STABLE_PROFILE,
    )
    assert same is not None and same.score == 0.0


@pytest.mark.parametrize("name", list(BAD))
def test_without_profiles_the_moments_still_tell_bad_from_good(name):
    answers = BAD[name]
    shift = prediction_shift(window(profile(answers), answers), STABLE_WINDOW, "psi")
    assert shift is not None and shift.basis == "from mean and std"
    assert shift.score > 1.0
    good = prediction_shift(window(profile(GOOD), GOOD), STABLE_WINDOW, "psi")
    assert good is not None and good.score < 0.1


LABELS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)  # classes 0, 1, 2
CLASSIFIER = profile(LABELS)


@pytest.mark.parametrize(
    ("name", "answers"),
    [
        ("labels shifted by one: classes 1, 2, 3", LABELS + 1),
        ("two classes only: 2 folded into 1", np.minimum(LABELS, 1)),
        ("one class", np.zeros(600, dtype=int)),
    ],
)
def test_classifiers_with_other_class_sets_compare_by_label(name, answers):
    own = profile(answers, task="classification")
    assert own.prediction is not None and own.prediction.categories != (
        CLASSIFIER.prediction.categories
    )
    shift = prediction_shift(
        window(own, answers),
        window(CLASSIFIER, LABELS),
        "psi",
        candidate_profile=own,
        stable_profile=CLASSIFIER,
    )
    assert shift is not None and shift.basis == "by class label"
    assert shift.score > 0.5, (name, shift)


def test_a_classifier_whose_profile_lists_classes_in_another_order_is_not_shifted():
    rows = np.random.default_rng(1).permutation(600)
    own = build_profile(X[rows], predictions=LABELS[rows], feature_names=["a", "b", "c"])
    shift = prediction_shift(
        window(own, LABELS), window(CLASSIFIER, LABELS), "psi", candidate_profile=own
    )
    assert shift is not None and shift.score == 0.0


def test_a_replacement_answering_1_where_the_stable_answered_true_is_not_shifted():
    """A BOOL stable and an INT64 0/1 replacement make the same decisions: by label "true" and
    "1" never met, and the identical replacement read as shifted as it could be."""
    flags = LABELS > 0
    booleans = profile(flags)
    stable = window(booleans, flags)
    as_numbers = window(profile(flags.astype(int)), flags.astype(int))
    assert set(as_numbers.prediction_classes) == {"0", "1"}
    assert set(stable.prediction_classes) == {"false", "true"}
    shift = prediction_shift(as_numbers, stable, "psi", stable_profile=booleans)
    assert shift is not None and shift.basis == "by class label" and shift.score == 0.0


def test_a_regressor_against_a_classifier_falls_back_to_moments():
    shift = prediction_shift(
        window(profile(STABLE), STABLE),
        window(CLASSIFIER, LABELS),
        "psi",
        candidate_profile=profile(STABLE),
        stable_profile=CLASSIFIER,
    )
    assert shift is not None and shift.basis == "from mean and std" and shift.score > 1.0


def test_classifiers_answering_scores_are_compared_from_their_moments():
    # The sidecar exports every reference class, at 0 when the answers are probabilities
    # (counted as numbers): by class label the shift was None and the gate went missing.
    def scores(mean: float) -> RevisionWindow:
        values = np.clip(RNG.normal(mean, 0.1, 400), 0, 1)
        return RevisionWindow(
            prediction_classes={"0": 0.0, "1": 0.0},
            predictions=float(values.size),
            prediction_sum=float(values.sum()),
            prediction_squares_sum=float((values**2).sum()),
        )

    shift = prediction_shift(scores(0.8), scores(0.3), "psi")
    assert shift is not None and shift.basis == "from mean and std" and shift.score > 1.0


def test_too_few_predictions_give_no_shift():
    few = RevisionWindow(
        prediction_bins={"1": MIN_PREDICTIONS_FOR_SHIFT - 1.0},
        predictions=MIN_PREDICTIONS_FOR_SHIFT - 1.0,
        prediction_sum=150.0 * (MIN_PREDICTIONS_FOR_SHIFT - 1),
        prediction_squares_sum=0.0,
    )
    assert prediction_shift(few, STABLE_WINDOW, "psi", stable_profile=STABLE_PROFILE) is None
    assert prediction_shift(few, STABLE_WINDOW, "psi") is None


def test_the_gate_names_the_basis_and_the_values():
    answers = BAD["shuffled targets"]
    own = profile(answers)
    figures = candidate_figures(
        "cand",
        window(own, answers),
        STABLE_WINDOW,
        reference=own,
        stable_reference=STABLE_PROFILE,
    )
    policy = parse_policy({"analysis": {"maxPredictionShift": 0.5}}, "replacement")
    (gate,) = [g for g in gates(Step("shadow"), policy, figures) if g.name == "predictionShift"]
    assert not gate.passed and gate.threshold == 0.5
    assert gate.text.startswith("prediction shift ") and gate.text.endswith(
        " vs 0.500 (on the stable's bins)"
    )
