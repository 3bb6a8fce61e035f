"""The operator reads vigil-fetch's words from the pods it already watches and reports them.

The pod watch hands pods (as the kubelet writes them) to the health loop's
pod table; a pod whose fetch says something new nudges a reconcile of its
ModelDeployment, and that reconcile writes ArtifactFetchFailed with an
Event. The operator reads no Secret and no log: only pod status.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from test_reconciler import Harness, model_deployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from kubelet_pods import FORBIDDEN, RUNNING, UNREACHABLE, backing_off, failed, pod

from vigil.core.observed import FetchState
from vigil.operator.health import HealthLoop

URI = "s3://models/wine/{}/model.tar.gz"


@pytest.fixture
def harness() -> Harness:
    return Harness()


def loop(harness: Harness) -> HealthLoop:
    health = HealthLoop(lambda: harness.api, harness.reconciler, harness.metrics)
    harness.reconciler.fetches = health.fetches
    return health


def fetched(version: str) -> dict[str, Any]:
    body = model_deployment(version)
    body["spec"]["model"]["uri"] = URI.format(version)
    return body


class TestThePodTable:
    def test_only_news_of_a_fetch_asks_for_a_reconcile(self, harness: Harness) -> None:
        health = loop(harness)
        assert health.observe_pod("ADDED", pod("r2", RUNNING)) is True
        assert health.observe_pod("MODIFIED", pod("r2", RUNNING)) is False
        assert health.observe_pod("MODIFIED", failed("r2")) is True
        assert health.observe_pod("MODIFIED", failed("r2")) is False
        assert health.fetches("ml", "wine") == {"r2": FetchState("failed", FORBIDDEN)}
        assert health.observe_pod("DELETED", failed("r2")) is True
        assert health._fetching == {}  # no reconcile of a deleted model reads it again
        assert health.fetches("ml", "wine") == {}

    def test_pods_are_kept_apart_by_model_deployment_and_revision(self, harness: Harness) -> None:
        health = loop(harness)
        health.observe_pod("ADDED", failed("r2"))
        health.observe_pod("ADDED", backing_off("r3", UNREACHABLE))
        other = backing_off("r2", UNREACHABLE)
        other["metadata"]["labels"]["vigil.dev/model-deployment"] = "beer"
        other["metadata"]["name"] = "beer-r2-5d9c7f-x2k4q"
        health.observe_pod("ADDED", other)
        assert health.fetches("ml", "wine") == {
            "r2": FetchState("failed", FORBIDDEN),
            "r3": FetchState("retrying", UNREACHABLE),
        }
        assert health.fetches("ml", "beer") == {"r2": FetchState("retrying", UNREACHABLE)}
        assert health.fetches("other", "wine") == {}

    def test_a_pod_being_deleted_reports_no_fetch(self, harness: Harness) -> None:
        # The ended attempt's pod, terminating as a retry starts the revision again.
        health = loop(harness)
        assert health.observe_pod("ADDED", failed("r2")) is True
        leaving = failed("r2")
        leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z"
        assert health.observe_pod("MODIFIED", leaving) is True
        assert health.fetches("ml", "wine") == {}

    def test_a_pod_without_news_is_not_kept_apart(self, harness: Harness) -> None:
        health = loop(harness)
        health.observe_pod("ADDED", failed("r2"))
        done = pod("r2", {"terminated": {"exitCode": 0, "reason": "Completed"}})
        assert health.observe_pod("MODIFIED", done) is True
        assert health.fetches("ml", "wine") == {}
        assert ("ml", "wine") not in health._fetching


async def test_a_failed_fetch_of_the_candidate_is_reported_and_the_stable_kept(
    harness: Harness,
) -> None:
    health = loop(harness)
    harness.api.add(fetched("1"))
    await harness.reconciler.reconcile("ml", "wine")
    harness.api.make_ready()
    await harness.reconciler.reconcile("ml", "wine")
    stable = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]["revision"]
    body = harness.api.objects[("ModelDeployment", "ml", "wine")]
    body["spec"] = fetched("2")["spec"]
    body["metadata"]["generation"] = 2
    await harness.reconciler.reconcile("ml", "wine")
    status = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    candidate = status["candidate"]["revision"]
    # The kubelet reports the init container's failure; the watch hands it over.
    assert health.observe_pod("MODIFIED", failed(candidate))
    harness.events.clear()
    await harness.reconciler.reconcile("ml", "wine")
    status = harness.api.objects[("ModelDeployment", "ml", "wine")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], status["phase"]) == ("ArtifactFetchFailed", "Failed")
    assert FORBIDDEN in ready["message"]
    (event,) = harness.events
    assert (event.reason, event.warning) == ("ArtifactFetchFailed", True)
    assert URI.format(2) in event.message and "403 Forbidden" in event.message
    service = harness.api.objects[("Service", "ml", "wine")]
    assert service["spec"]["selector"]["vigil.dev/revision"] == stable
    # No Secret was read: the reconcile reads only the kinds its RBAC grants.
    assert all(kind != "Secret" for kind, _, _ in harness.api.objects)
