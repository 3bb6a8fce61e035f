"""A pod's artifact fetch, read from its status as the kubelet writes it (kubelet_pods)."""

from __future__ import annotations

import pytest
from kubelet_pods import (
    FORBIDDEN,
    POD_INITIALIZING,
    RUNNING,
    SECRET_MISSING,
    UNREACHABLE,
    backing_off,
    crash_loop,
    failed,
    pod,
    terminated,
)

from vigil.core.observed import FetchState, fetch_state, fetches_by_revision


class TestOnePod:
    def test_a_running_fetch_is_fetching(self) -> None:
        assert fetch_state(pod("r2", RUNNING)) == FetchState("fetching")

    @pytest.mark.parametrize("code", [1, 70])
    def test_a_permanent_error_fails_in_vigil_fetchs_words(self, code: int) -> None:
        assert fetch_state(failed("r2", code=code)) == FetchState("failed", FORBIDDEN)

    def test_the_failure_stays_read_while_the_kubelet_backs_off(self) -> None:
        state = fetch_state(pod("r2", crash_loop(), terminated(1, FORBIDDEN), restarts=1))
        assert state == FetchState("failed", FORBIDDEN)

    def test_transient_errors_outlasting_the_retries_are_retried(self) -> None:
        assert fetch_state(backing_off("r2")) == FetchState("retrying", UNREACHABLE)
        # Running again after one: still the last attempt's words.
        again = pod("r2", RUNNING, terminated(75, UNREACHABLE), restarts=1)
        assert fetch_state(again) == FetchState("retrying", UNREACHABLE)

    def test_a_missing_secret_fails_in_the_kubelets_words(self) -> None:
        assert fetch_state(pod("r2", SECRET_MISSING)) == FetchState(
            "failed",
            "spec.model.storage.secretRef: "
            'CreateContainerConfigError: secret "wine-artifacts" not found',
        )

    def test_a_missing_key_of_the_secret_fails_too(self) -> None:
        message = "couldn't find key AWS_SECRET_ACCESS_KEY in Secret ml/wine-artifacts"
        waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
        state = fetch_state(pod("r2", waiting))
        assert state is not None and state.kind == "failed" and message in state.words

    def test_another_config_error_waits(self) -> None:
        waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": "no uid"}}
        assert fetch_state(pod("r2", waiting)) == FetchState(
            "retrying", "CreateContainerConfigError: no uid"
        )

    @pytest.mark.parametrize(
        "message",
        [
            "failed to sync secret cache: timed out waiting for the condition",
            'secrets "wine-artifacts" is forbidden: no relationship found between node '
            "'vigil-node' and this object",
        ],
    )
    def test_a_passing_secret_error_of_the_kubelet_waits(self, message: str) -> None:
        waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
        state = fetch_state(pod("r2", waiting))
        assert state == FetchState("retrying", f"CreateContainerConfigError: {message}")

    def test_killed_for_memory_names_the_limit(self) -> None:
        state = fetch_state(pod("r2", terminated(137, reason="OOMKilled")))
        assert state == FetchState(
            "failed",
            "vigil-fetch ran out of memory (OOMKilled at its limit of 256Mi; "
            "spec.model.fetch.resources)",
        )

    def test_bad_arguments_without_a_message_say_the_exit_code(self) -> None:
        assert fetch_state(failed("r2", words="", code=2)) == FetchState(
            "failed", "vigil-fetch exited with 2 (Error)"
        )

    def test_a_multi_line_message_reads_as_one_line(self) -> None:
        state = fetch_state(failed("r2", words="s3://m/k:\n  no such key\n"))
        assert state == FetchState("failed", "s3://m/k: no such key")

    def test_evicted_for_the_models_folder(self) -> None:
        message = 'Usage of EmptyDir volume "vigil-model" exceeds the limit "1Mi". '
        evicted = pod("r2", RUNNING, phase="Failed", reason="Evicted", message=message)
        assert fetch_state(evicted) == FetchState("failed", f"the pod was evicted: {message}")

    @pytest.mark.parametrize(
        "state",
        [
            terminated(0, "s3://m/k: fetched 2 files, 1024 bytes into /mnt/models in 0.1 s"),
            POD_INITIALIZING,
        ],
    )
    def test_done_or_not_started_says_nothing(self, state: dict) -> None:
        assert fetch_state(pod("r2", state)) is None

    def test_done_after_a_failure_says_nothing(self) -> None:
        healed = pod("r2", terminated(0), terminated(1, FORBIDDEN), restarts=1)
        assert fetch_state(healed) is None

    def test_a_pod_without_vigil_fetch_says_nothing(self) -> None:
        plain = pod("r2")
        del plain["status"]["initContainerStatuses"]
        assert fetch_state(plain) is None
        assert fetch_state({"metadata": {}, "status": {}}) is None


def test_a_revisions_most_telling_pod_speaks_for_it() -> None:
    states = [
        ("r2", FetchState("fetching")),
        ("r2", FetchState("failed", "a")),
        ("r2", FetchState("retrying", "b")),
        ("r3", FetchState("fetching")),
        ("r3", FetchState("retrying", "c")),
    ]
    assert fetches_by_revision(states) == {
        "r2": FetchState("failed", "a"),
        "r3": FetchState("retrying", "c"),
    }
