"""A revision promoted, then found worse by its labels, is rolled back in its bake period.

Real MLServer wine models behind real sidecars on the real node (served
from the test's volume by the images built here), the real operator. The
candidate was trained with one row in ten given another class: it answers
every request, fast, much like the stable, so a canary without a
performance gate promotes it. ``spec.rollout.bake`` keeps the previous
revision, scaled to zero, for the bake. Live traffic through the Service
carries request ids and each answered request's true class goes to the
Service's feedback port (the sidecars pass a label to the peer holding its
prediction); once the promoted revision's labels show its accuracy below
``monitoring.performance.minAccuracy`` (PerformanceDegraded turns True),
the previous revision is started again and live traffic goes back to it,
never to a revision without Ready pods. The spec is untouched.

Figures (seconds from the switch and from PerformanceDegraded to the
rollback, labels judged) are appended to
``.vigil/e2e-logs/rollout-figures.jsonl``.
"""

from __future__ import annotations

import time
from typing import Any

from kit.figures import Figures
from kit.kube import Kube
from kit.modeldeployment import ModelStore, serve
from kit.operator import OperatorProcess
from kit.status import condition, status
from kit.waits import wait_deployments, watch_until

from vigil.common.times import parse_unix
from vigil.devcluster.models import TrainedModel, mislabelled_wine

#: One short canary, judged on errors and latency only: the worse model passes it.
STEPS = [{"canary": {"weight": 50, "duration": "6s"}}]
BAKE = {"duration": "5m", "minReplicas": 0}
#: PerformanceDegraded from the labels of the serving revision.
PERFORMANCE = {"minAccuracy": 0.95, "minLabels": 50, "window": "2m"}
#: Labelled requests per second.
RATE = 20.0

record = Figures("rollout").record


def baked(store: ModelStore, model: TrainedModel) -> dict[str, Any]:
    document = store.manifest(model, STEPS, deadline="3m")
    document["spec"]["rollout"]["bake"] = BAKE
    document["spec"]["monitoring"]["performance"] = PERFORMANCE
    return document


def posted(event: dict[str, Any]) -> float:
    """When an Event was posted (Unix seconds)."""
    return parse_unix(event.get("eventTime") or event.get("firstTimestamp")) or 0.0


def test_a_revision_promoted_then_degraded_is_rolled_back_in_its_bake_period(
    kube: Kube, operator: OperatorProcess, store: ModelStore
) -> None:
    stable = store.train("wine-1", version="1", seed=0)
    endpoint = serve(kube, stable, baked(store, stable))
    previous = status(kube)["stable"]["revision"]
    traffic = endpoint.traffic(stable.X, rate=RATE, seed=5, labels=stable.y)
    bakes: list[dict[str, Any]] = []

    def back(current: dict[str, Any]) -> bool:
        if current.get("bake"):
            bakes.append(current["bake"])
        return current.get("phase") == "RolledBack"

    try:
        worse, accuracy = mislabelled_wine(store.folder / "wine-2", stable)
        assert 0.85 <= accuracy <= 0.93, f"the candidate's accuracy on the rows sent: {accuracy}"
        kube.apply(baked(store, worse))
        watch = watch_until(kube, back, 360, "the rollback in the bake period")
        back_at = time.time()
    finally:
        stats = traffic.stop()
    current = watch.last
    # Promoted (its bake keeping the previous revision), then back on the previous revision:
    # the bake's states may be too short-lived for a poll, its Events are not.
    promoted = current["history"][0]["revision"]
    assert current["history"][0]["outcome"] == "RolledBack", current["history"][0]
    assert watch.stables[0] == watch.stables[-1] == previous, watch.stables
    assert set(watch.stables) <= {previous, promoted}, watch.stables
    assert {b["previous"] for b in bakes} <= {previous}, bakes[:1]
    (switched,) = kube.events("Switched")
    assert f"revision {previous} kept at 0 replica(s) for the bake" in switched["message"]
    (failed,) = kube.events("BakeFailed")
    assert "PerformanceDegraded True (PerformanceBelowThreshold)" in failed["message"], failed
    assert watch.no_ready_pods == 0, watch.without_ready_pods[:2]
    ready = condition(current, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack"), ready
    assert "rolled back in its bake period (BakeFailed)" in ready["message"], ready
    assert "PerformanceDegraded True (PerformanceBelowThreshold): accuracy 0." in ready["message"]
    assert "threshold 0.95" in ready["message"], ready
    assert "bake" not in current
    assert kube.events("RolledBack"), "a RolledBack Event"
    # The spec is untouched; the promoted revision goes and stays out.
    document = kube.get("md", "wine")
    assert document is not None and document["spec"]["model"]["version"] == "2"
    wait_deployments(kube, [f"wine-{previous}"], why=": the promoted revision removed")
    assert stats.labels_sent > 0 and not any(k.startswith("label") for k in stats.failures), (
        stats.failures
    )
    operator.assert_no_errors()
    degraded = condition(current, "PerformanceDegraded")
    record(
        "bake-rollback",
        seconds_from_switch=round(back_at - posted(switched), 1),
        seconds_from_bake_failed=round(back_at - posted(failed), 1),
        candidate_accuracy=round(accuracy, 3),
        message=ready["message"],
        performance_degraded=degraded.get("message"),
        labels_sent=stats.labels_sent,
        requests={"sent": stats.sent, "failed": stats.failed},
    )
