"""Status building blocks (conditions, history, the one patch) and reading live Deployments."""

from __future__ import annotations

import datetime

import pytest

from vigil.common.times import format_time as timestamp
from vigil.core.judges import Explanation, Gate
from vigil.core.observed import deployment_failure, service_revision, view_deployment
from vigil.core.reconcile import has_served
from vigil.core.reconcile.report import gates_status
from vigil.core.status import (
    HISTORY_LIMIT,
    ConditionState,
    build_conditions,
    find_condition,
    owned_status,
    phase_after_health,
    phase_with_health,
    push_history,
    replacing_merge_patch,
    status_patch,
)
from vigil.core.vocabulary import GateVerdict

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


class TestConditions:
    def test_new_conditions_get_the_current_time(self) -> None:
        (ready,) = build_conditions(
            [ConditionState("Ready", True, "Available", "ok")], None, generation=3, now=T0
        )
        assert ready == {
            "type": "Ready",
            "status": "True",
            "reason": "Available",
            "message": "ok",
            "lastTransitionTime": "2026-01-01T12:00:00Z",
            "observedGeneration": 3,
        }

    def test_same_status_keeps_the_transition_time_even_if_reason_changes(self) -> None:
        before = build_conditions(
            [ConditionState("Ready", False, "Deploying", "a")], None, generation=1, now=T0
        )
        after = build_conditions(
            [ConditionState("Ready", False, "Scaling", "b")], before, generation=2, now=T1
        )
        assert after[0]["lastTransitionTime"] == timestamp(T0)
        assert after[0]["reason"] == "Scaling"
        assert after[0]["observedGeneration"] == 2

    def test_a_flip_sets_a_new_transition_time(self) -> None:
        before = build_conditions(
            [ConditionState("Ready", False, "Deploying", "a")], None, generation=1, now=T0
        )
        after = build_conditions(
            [ConditionState("Ready", True, "Available", "b")], before, generation=1, now=T1
        )
        assert after[0]["lastTransitionTime"] == timestamp(T1)

    def test_unknown_status(self) -> None:
        (item,) = build_conditions(
            [ConditionState("Ready", None, "Waiting", "")], None, generation=1, now=T0
        )
        assert item["status"] == "Unknown"

    def test_conditions_of_other_writers_are_kept(self) -> None:
        previous = [{"type": "Healthy", "status": "True", "reason": "WithinSLO"}]
        result = build_conditions(
            [ConditionState("Ready", True, "Available", "")], previous, generation=1, now=T0
        )
        assert [c["type"] for c in result] == ["Ready", "Healthy"]
        assert find_condition(result, "Healthy") == previous[0]
        assert find_condition(result, "Missing") is None


class TestHistory:
    def entry(self, revision: str) -> dict[str, str]:
        return {"revision": revision, "outcome": "Deployed"}

    def test_newest_first(self) -> None:
        history = push_history([self.entry("a")], self.entry("b"))
        assert [h["revision"] for h in history] == ["b", "a"]

    def test_one_entry_per_revision(self) -> None:
        history = push_history([self.entry("b"), self.entry("a")], self.entry("a"))
        assert [h["revision"] for h in history] == ["a", "b"]

    def test_at_most_ten(self) -> None:
        history: list = []
        for index in range(15):
            history = push_history(history, self.entry(str(index)))
        assert len(history) == HISTORY_LIMIT == 10
        assert history[0]["revision"] == "14"

    def test_the_stable_revisions_entry_is_never_the_one_dropped(self) -> None:
        history: list = [self.entry("stable")]
        for index in range(15):
            history = push_history(history, self.entry(str(index)), stable="stable")
        assert len(history) == HISTORY_LIMIT
        assert [h["revision"] for h in history][-2:] == ["6", "stable"]


class TestPhaseWithHealth:
    def test_broken_slo_or_drift_lowers_healthy_to_degraded(self) -> None:
        assert phase_with_health("Healthy", [{"type": "Healthy", "status": "False"}]) == "Degraded"
        drift = [{"type": "DriftDetected", "status": "True"}]
        assert phase_with_health("Healthy", drift) == "Degraded"

    def test_unknown_or_good_health_keeps_healthy(self) -> None:
        assert phase_with_health("Healthy", None) == "Healthy"
        unknown = [
            {"type": "Healthy", "status": "Unknown"},
            {"type": "DriftDetected", "status": "False"},
        ]
        assert phase_with_health("Healthy", unknown) == "Healthy"

    def test_other_phases_are_left_alone(self) -> None:
        assert phase_with_health("Failed", [{"type": "Healthy", "status": "False"}]) == "Failed"


READY_TRUE = {"type": "Ready", "status": "True"}


class TestPhaseAfterHealth:
    def test_a_ready_model_follows_the_verdict_both_ways(self) -> None:
        broken = [READY_TRUE, {"type": "Healthy", "status": "False"}]
        fine = [READY_TRUE, {"type": "Healthy", "status": "True"}]
        assert phase_after_health("Healthy", broken) == "Degraded"
        assert phase_after_health("Degraded", fine) == "Healthy"

    def test_rollout_phases_stay(self) -> None:
        broken = [{"type": "Ready", "status": "False"}, {"type": "Healthy", "status": "False"}]
        assert phase_after_health("Progressing", broken) == "Progressing"
        assert phase_after_health("Degraded", broken) == "Degraded"
        assert phase_after_health(None, broken) == "Pending"


class TestReplacingMergePatch:
    def test_removed_keys_become_null_at_every_depth(self) -> None:
        old = {"a": 1, "b": {"x": 1, "y": 2}, "c": 3}
        new = {"a": 1, "b": {"x": 5}}
        assert replacing_merge_patch(old, new) == {"b": {"x": 5, "y": None}, "c": None}

    def test_equal_values_need_nothing_and_scalars_are_replaced(self) -> None:
        assert replacing_merge_patch({"a": [1]}, {"a": [1]}) == {}
        assert replacing_merge_patch(None, {"a": 1}) == {"a": 1}
        assert replacing_merge_patch({"a": 1}, 7) == 7


class TestStatusPatch:
    def test_unchanged_means_no_patch(self) -> None:
        current = {"phase": "Healthy", "observedGeneration": 2, "health": {"x": 1}, "kopf": {}}
        assert status_patch(current, {"phase": "Healthy", "observedGeneration": 2}) is None

    def test_changes_are_patched(self) -> None:
        patch = status_patch({"phase": "Progressing"}, {"phase": "Healthy"})
        assert patch == {"phase": "Healthy"}

    def test_dropped_keys_are_nulled(self) -> None:
        patch = status_patch(
            {"phase": "Healthy", "candidate": {"revision": "x"}},
            {"phase": "Healthy", "candidate": None},
        )
        assert patch == {"phase": "Healthy", "candidate": None}

    def test_other_writers_fields_are_never_touched(self) -> None:
        patch = status_patch(
            {"health": {"errorRate": 0.1}, "kopf": {"progress": {}}}, {"phase": "X"}
        )
        assert patch == {"phase": "X"}
        assert owned_status({"health": 1, "kopf": 2, "phase": "X"}) == {"phase": "X"}

    def test_first_status(self) -> None:
        assert status_patch(None, {"phase": "Pending"}) == {"phase": "Pending"}


def live_deployment(**status: object) -> dict:
    return {
        "metadata": {
            "name": "wine-abc",
            "generation": 2,
            "labels": {"vigil.dev/revision": "abc", "vigil.dev/role": "stable"},
            "annotations": {
                "vigil.dev/identity": "id",
                "vigil.dev/model-version": "3",
                "vigil.dev/image": "img",
            },
        },
        "spec": {"replicas": 2},
        "status": status,
    }


class TestDeploymentView:
    def test_reads_labels_annotations_and_counts(self) -> None:
        view = view_deployment(
            live_deployment(observedGeneration=2, readyReplicas=1, availableReplicas=1)
        )
        assert view is not None
        assert (view.revision, view.role, view.identity) == ("abc", "stable", "id")
        assert (view.model_version, view.image) == ("3", "img")
        assert (view.replicas, view.ready_replicas, view.updated_replicas) == (2, 1, 0)

    def test_garbage_counts_read_as_zero(self) -> None:
        view = view_deployment(live_deployment(readyReplicas="many"))
        assert view is not None and view.ready_replicas == 0

    def test_without_revision_label_it_is_not_ours(self) -> None:
        assert view_deployment({"metadata": {"name": "x", "labels": {}}}) is None

    @pytest.mark.parametrize(
        ("status", "available"),
        [
            (
                dict(observedGeneration=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2),
                True,
            ),
            (
                dict(observedGeneration=1, updatedReplicas=2, readyReplicas=2, availableReplicas=2),
                False,
            ),
            (
                dict(observedGeneration=2, updatedReplicas=1, readyReplicas=2, availableReplicas=2),
                False,
            ),
            (
                dict(observedGeneration=2, updatedReplicas=2, readyReplicas=1, availableReplicas=2),
                False,
            ),
            (
                dict(observedGeneration=2, updatedReplicas=2, readyReplicas=2, availableReplicas=1),
                False,
            ),
            ({}, False),
        ],
    )
    def test_available_only_when_every_replica_of_the_current_spec_is(
        self, status: dict, available: bool
    ) -> None:
        view = view_deployment(live_deployment(**status))
        assert view is not None and view.is_available is available

    def test_zero_replicas_is_never_available(self) -> None:
        deployment = live_deployment(observedGeneration=2)
        deployment["spec"]["replicas"] = 0
        view = view_deployment(deployment)
        assert view is not None and not view.is_available

    def test_failures(self) -> None:
        deadline = {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "timed out",
                }
            ]
        }
        assert deployment_failure(deadline) == "timed out"
        quota = {
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": "exceeded quota",
                }
            ]
        }
        assert deployment_failure(quota) == "exceeded quota"
        fine = {
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        }
        assert deployment_failure(fine) is None
        assert deployment_failure({}) is None


class TestServiceRevision:
    def test_reads_the_selected_revision(self) -> None:
        service = {"spec": {"selector": {"vigil.dev/revision": "abc"}}}
        assert service_revision(service) == "abc"

    def test_none_without_service_or_selector(self) -> None:
        assert service_revision(None) is None
        assert service_revision({"spec": {}}) is None


class TestWhetherTheStableRevisionHasServed:
    """What the monitoring loop judges: a revision that has served, not one being deployed."""

    @staticmethod
    def status(reason: str | None, *, ready: bool = False, health: bool = False) -> dict:
        status: dict = {"stable": {"revision": "r1"}}
        if reason is not None:
            status["conditions"] = [
                {"type": "Ready", "status": "True" if ready else "False", "reason": reason}
            ]
        if health:
            status["health"] = {"verdict": "Healthy"}
        return status

    def test_a_ready_revision_has_served(self) -> None:
        assert has_served(self.status("Available", ready=True))

    def test_a_first_deployment_under_way_has_not(self) -> None:
        assert not has_served(self.status("Deploying"))

    def test_without_a_stable_revision_nothing_has_served(self) -> None:
        assert not has_served({"phase": "Pending"})
        assert not has_served({"stable": {}})

    def test_a_revision_that_lost_its_pods_after_serving_still_counts(self) -> None:
        assert has_served(self.status("ReplicasUnavailable"))
        assert has_served(self.status("Scaling"))

    def test_a_deployment_that_never_came_up_has_not_served(self) -> None:
        assert not has_served(self.status("DeployFailed"))

    def test_a_refused_change_over_a_judged_revision_keeps_it_judged(self) -> None:
        assert has_served(self.status("DeployFailed", health=True))

    def test_a_status_from_before_conditions_counts_as_served(self) -> None:
        # Written by an older operator or by hand: judge it rather than go silent.
        assert has_served(self.status(None))


def test_gate_figures_in_status_keep_four_significant_digits() -> None:
    """A tiny error rate the verdict used (4e-05) must not read 0 in status, nor its
    interval [0, 0]; every figure keeps four significant digits, large ones too."""
    tiny = Gate(
        name="errorRate",
        verdict=GateVerdict.PASS,
        value=0.0000412345,
        threshold=0.00005,
        explain=lambda: Explanation(0.0000123456, 0.0000456789, ""),
    )
    large = Gate(name="latencyP95", verdict=GateVerdict.PASS, value=123.45678, threshold=250.0)
    (small, big) = gates_status([tiny, large]) or []
    assert (small["value"], small["low"], small["high"], small["threshold"]) == (
        0.00004123,
        0.00001235,
        0.00004568,
        0.00005,
    )
    assert (big["value"], big["threshold"]) == (123.5, 250.0)
