"""Prometheus SIGKILLed during a canary judged on Prometheus figures.

With ``monitoring.metrics.source: prometheus`` the operator has no other
view of the candidate: while Prometheus is gone the rollout must hold where
it is (no promotion, no rollback, the candidate's reason saying the metrics
are missing), and carry on once Prometheus is back (same port, same data
folder: it replays its write-ahead log). The outage lasts longer than the
canary step, so a rollout that judged on stale or absent figures would
promote during it.

The model pods are real containers on the real node (fixture ``store``), live
traffic goes through the Service's ClusterIP, and Prometheus (a process on
this machine) finds the pods through Kubernetes service discovery (role pod,
the manifests' scrape job) and scrapes them at their pod IPs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from fault_checks import (
    assert_consistent,
    assert_promoted_once,
    deploy,
    manifest,
    record,
)
from kit.kube import Kube
from kit.modeldeployment import OPEN_STEP, ModelStore, end_step, kept_open
from kit.operator import OperatorProcess
from kit.status import candidate_reason, condition, describe, judged_after, promoted
from kit.waits import watch_until

from vigil.devcluster.prometheus import LocalPrometheus

pytestmark = pytest.mark.faults

#: The kill comes once the canary is judged; the canary stays open until the test ends
#: it (kept_open), so the outage surely falls inside it.
STEPS = [
    {"shadow": {"duration": "6s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 50, "duration": OPEN_STEP}},
]
OUTAGE_SECONDS = 20


def test_prometheus_killed_during_canary_holds_the_rollout_until_it_is_back(
    kube: Kube,
    operator: OperatorProcess,
    store: ModelStore,
    prometheus: LocalPrometheus,
    tmp_path: Path,
) -> None:
    metrics = {"source": "prometheus", "prometheusURL": prometheus.url}
    setup = deploy(kube, tmp_path, STEPS, store=store, metrics=metrics)
    try:
        candidate = store.train("wine-2", version="2", seed=1)
        document = kept_open(manifest(candidate, STEPS, store, metrics=metrics))
        kube.apply(document)
        watch = watch_until(
            kube,
            lambda s: (
                (s.get("candidate") or {}).get("stepName") == "canary 50%"
                and (s.get("candidate") or {}).get("reason") == "StepInProgress"
            ),
            150,
            "the canary to be judged on Prometheus figures",
        )
        revision = watch.last["candidate"]["revision"]
        step = watch.last["candidate"]["stepName"]
        assert prometheus.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(prometheus.process.pid, signal.SIGKILL)
        prometheus.process.wait(timeout=10)
        killed = time.monotonic()
        watch_until(
            kube,
            candidate_reason("MetricsUnavailable"),
            30,
            "the rollout to hold on the Prometheus outage",
            watch,
        )
        held_after = time.monotonic() - killed
        # The health loop says so too, on its own cycle: the outage lasts until it has (a
        # fixed outage left it seen only in what remained of 20 s after the hold).
        watch_until(
            kube,
            lambda current: condition(current, "MetricsAvailable").get("status") == "False",
            60,
            "MetricsAvailable False from the health loop",
            watch,
        )
        # Held for the rest of the outage: every observation says so.
        while time.monotonic() - killed < OUTAGE_SECONDS:
            current = watch.see(kube)
            held = current.get("candidate") or {}
            assert held.get("revision") == revision, describe(current)
            assert held.get("stepName") == step, describe(current)
            assert held.get("reason") == "MetricsUnavailable", describe(current)
            assert "prometheus" in str(held.get("message")).lower(), describe(current)
            assert current.get("phase") == "Progressing", describe(current)
            assert current["stable"]["revision"] == setup.revision, describe(current)
            time.sleep(0.5)
        prometheus.start()
        back = time.monotonic()
        watch_until(kube, judged_after(time.time()), 60, "a check once it is back", watch)
        resumed_after = time.monotonic() - back
        end_step(kube, document, 1)
        watch_until(kube, promoted("2"), 60, "the promotion once the step is over", watch)
        final = assert_consistent(kube)
    finally:
        setup.traffic.stop()
    assert_promoted_once(kube, operator, final, revision, watch)
    operator.assert_no_errors()
    record(
        "prometheus-killed",
        held_after_seconds=round(held_after, 1),
        outage_seconds=OUTAGE_SECONDS,
        judged_after_restart_seconds=round(resumed_after, 1),
        reasons=watch.reasons,
    )
