"""A candidate whose reference profile adds or drops input features.

A retrained model may gain a feature or lose one. The gates then compare
only the features both references share (each revision against its own
reference, whose bins its sidecars count in) and the predictions; status
names what was added and dropped.
"""

from __future__ import annotations

import numpy as np
import pytest
from figures_kit import figures as seen
from test_progressive_rollout import BAD, GOOD, run_until, started

from vigil.core import drift
from vigil.core.analysis import CandidateFigures, candidate_figures, feature_changes
from vigil.core.candidate import RolloutInputs
from vigil.core.window import RevisionWindow
from vigil.profile import ReferenceProfile, build_profile

ROWS = 2000


def worst(figures: CandidateFigures) -> tuple[float, float]:
    """(candidate's, stable's) largest corrected drift over the shared features."""
    assert figures.input_drift, "no feature compared"
    return (
        max(f.candidate.estimate for f in figures.input_drift),
        max(f.stable.estimate for f in figures.input_drift),
    )


def profile(names: list[str], data: np.ndarray) -> ReferenceProfile:
    return build_profile(
        data, feature_names=names, predictions=(data[:, 0] > 0).astype(int), model_name="m"
    )


def window(reference: ReferenceProfile, live: np.ndarray) -> RevisionWindow:
    """What a revision's sidecars count: live rows in that revision's reference bins."""
    bins = {}
    for feature in reference.features:
        slots = drift.bin_index(live[:, feature.index], feature.edges)
        bins[feature.name] = {
            str(slot): float(np.sum(slots == slot)) for slot in range(len(feature.proportions))
        }
    return RevisionWindow(
        requests_by_outcome={"success": float(len(live))},
        input_rows=float(len(live)),
        feature_bins=bins,
        prediction_classes={"0": 500.0, "1": 500.0},
    )


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(ROWS, 3))


class TestFeatureChanges:
    def test_added_and_dropped_are_named_in_input_order(self, data: np.ndarray) -> None:
        stable = profile(["a", "b", "c"], data)
        candidate = profile(["a", "c", "d"], data)
        added, dropped, shared = feature_changes(candidate, stable)
        assert added == ("d",)
        assert dropped == ("b",)
        assert shared == frozenset({"a", "c"})

    def test_same_features_change_nothing(self, data: np.ndarray) -> None:
        ref = profile(["a", "b", "c"], data)
        assert feature_changes(ref, ref) == ((), (), frozenset({"a", "b", "c"}))

    def test_an_unknown_reference_restricts_nothing(self, data: np.ndarray) -> None:
        ref = profile(["a", "b", "c"], data)
        assert feature_changes(ref, None) == ((), (), None)
        assert feature_changes(None, ref) == ((), (), None)


class TestInputDriftGateOnSharedFeatures:
    def test_a_dropped_feature_that_drifted_does_not_fail_the_candidate(
        self, data: np.ndarray
    ) -> None:
        """The stable's drift on a feature the candidate no longer takes is not compared."""
        stable_ref = profile(["a", "b", "c"], data)
        cand_ref = profile(["a", "c"], data[:, [0, 2]])
        live = data.copy()
        live[:, 1] += 3.0  # b drifted: only the stable reads it
        figures = candidate_figures(
            "cand",
            window(cand_ref, live[:, [0, 2]]),
            window(stable_ref, live),
            reference=cand_ref,
            stable_reference=stable_ref,
        )
        assert {f.name for f in figures.input_drift} == {"a", "c"}  # b is not shared
        candidate, stable = worst(figures)
        assert stable < 0.05 and candidate < 0.05

    def test_each_revision_is_judged_against_its_own_reference(self, data: np.ndarray) -> None:
        """The candidate's bins come from its reference: judging it by the stable's is wrong."""
        stable_ref = profile(["a", "b"], data[:, :2])
        shifted = data[:, :2] + np.array([2.0, 0.0])
        cand_ref = profile(["a", "b"], shifted)  # retrained on data where a moved
        figures = candidate_figures(
            "cand",
            window(cand_ref, shifted),
            window(stable_ref, data[:, :2]),
            reference=cand_ref,
            stable_reference=stable_ref,
        )
        candidate, stable = worst(figures)
        assert candidate < 0.05 and stable < 0.05

    def test_without_the_stables_reference_the_candidates_serves_for_both(
        self, data: np.ndarray
    ) -> None:
        ref = profile(["a", "b", "c"], data)
        figures = candidate_figures(
            "cand", window(ref, data), window(ref, data + 3.0), reference=ref
        )
        assert worst(figures)[1] > 1.0


class TestStatusNamesTheChange:
    def test_status_names_added_and_dropped_features_and_keeps_them_without_a_reading(
        self,
    ) -> None:
        world, _, candidate = started()
        world.inputs = RolloutInputs(
            figures=GOOD, shadow_target="http://x", feature_changes=(("d",), ("b",))
        )
        world.pods_ready(candidate)
        world.reconcile()
        assert world.status["candidate"]["featuresAdded"] == ["d"]
        assert world.status["candidate"]["featuresDropped"] == ["b"]
        # a cycle that could not read both profiles keeps the last reading (no churn)
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        world.reconcile(advance=0.0)
        assert world.status["candidate"]["featuresAdded"] == ["d"]
        assert world.status["candidate"]["featuresDropped"] == ["b"]

    def test_same_features_leave_the_fields_out(self) -> None:
        world, _, candidate = started()
        world.inputs = RolloutInputs(
            figures=GOOD, shadow_target="http://x", feature_changes=((), ())
        )
        world.pods_ready(candidate)
        world.reconcile()
        assert "featuresAdded" not in world.status["candidate"]
        assert "featuresDropped" not in world.status["candidate"]

    def test_a_rollback_keeps_the_names(self) -> None:
        world, _, candidate = started()
        assert BAD.agreement == 0.4
        bad = RolloutInputs(
            figures=seen(requests=100, error_rate=0.5, compared=100, agreement=0.4),
            shadow_target="http://x",
            feature_changes=((), ("b",)),
        )
        world.inputs = bad
        run_until(world, candidate, lambda: world.status["phase"] == "RolledBack")
        assert world.status["candidate"]["featuresDropped"] == ["b"]
