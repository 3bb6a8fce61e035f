"""A candidate pod's sidecar container SIGKILLed (crash-looping for a while) during shadow.

Two replicas, so the candidate has two pods during shadow; they are real
containers on the real node (fixture ``store``), live traffic goes through
the Service's ClusterIP. The sidecar container of one of them (the first by
name) is killed each time the kubelet brings it back (it serves again and
has logged its start), ``CRASH_KILLS`` times: its process SIGKILLed on this
machine (the node's containers share its process table), as a crash would.
The kubelet restarts it with its back-off (10 s, 20 s ...), so that pod
sends no figures for some thirty seconds.

What happens to that pod, as this test checks it:

* it stays the same pod (same uid, name and IP); while its sidecar is down
  it is not Ready (the sidecar's readiness probe), so its per-revision
  Service sends the stable's shadow copies to the other candidate pod; once
  the sidecar is back it is Ready again;
* its MLServer container keeps running (no restart); its sidecar container is
  restarted by the kubelet (``restartCount`` goes up by ``CRASH_KILLS``; the
  killed instance's log is kept, ``kubectl logs --previous``) and, once back,
  answers ready at the same IP, counting from zero again (a new
  ``vigil_sidecar_start_time_seconds``), which the operator's direct source
  reads as a counter reset;
* the operator meanwhile has no data from that pod: it must not roll back
  on that (the other candidate pod's figures, or a hold, carry the
  rollout), and the rollout ends promoted once, with the restarted pod
  among the new stable's pods.
"""

from __future__ import annotations

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
from kit.incluster import kill_container, pod_pids
from kit.kube import Kube, pod_ip, ready, restart_count, safe
from kit.modeldeployment import ModelStore
from kit.operator import OperatorProcess
from kit.status import at_step, describe, promoted
from kit.traffic import answers_ready, sidecar_started_at
from kit.waits import wait_for, watch_until

from vigil.core.desired import SERVER_CONTAINER, SIDECAR_CONTAINER

pytestmark = pytest.mark.faults

#: Shadow steps only: the candidate keeps both pods until its promotion (a canary at
#: 50% would scale it to one, perhaps removing the pod under test). The crash loop
#: starts with the second step, whose 45 s are counted from there (a step's clock also
#: runs while a slow candidate starts), so it falls inside a judged step.
STEPS = [
    {"shadow": {"duration": "5s", "percent": 100, "minRequests": 20}},
    {"shadow": {"duration": "45s", "percent": 50, "minRequests": 20}},
]
#: Kills in a row (each once the kubelet restarted it and it serves), within a bounded time.
CRASH_KILLS = 3
CRASH_LIMIT_SECONDS = 90
#: The sidecar process, as its container's command runs it.
SIDECAR_COMMAND = "vigil-sidecar"
#: What a sidecar logs once it listens (one line per start).
STARTED_LINE = "vigil-sidecar listening on"


def test_sidecar_killed_in_one_candidate_pod_never_rolls_back_on_its_missing_data(
    kube: Kube, operator: OperatorProcess, store: ModelStore, tmp_path: Path
) -> None:
    setup = deploy(kube, tmp_path, STEPS, store=store, replicas=2)
    try:
        candidate = store.train("wine-2", version="2", seed=1)
        kube.apply(manifest(candidate, STEPS, store, replicas=2))
        watch = watch_until(kube, at_step("shadow 50%"), 150, "the candidate judged in shadow")
        revision = watch.last["candidate"]["revision"]
        pods = kube.revision_pods(revision)
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        watch_until(
            kube,
            lambda s: all(answers_ready(pod_ip(p)) for p in pods),
            90,
            "both candidate pods' sidecars to answer ready",
            watch,
        )
        victim, other = pods
        name, uid, ip = victim["metadata"]["name"], victim["metadata"]["uid"], pod_ip(victim)
        other_name, other_uid = other["metadata"]["name"], other["metadata"]["uid"]
        started_before = sidecar_started_at(ip)
        assert started_before > 0, f"the sidecar of {name} at {ip} shows no start time"
        other_pids = pod_pids(other_uid, SIDECAR_COMMAND)
        assert other_pids, f"no {SIDECAR_COMMAND} process in pod {other_name}"

        # Crash-loop the sidecar: kill it each time the kubelet brings it back (a new
        # instance serves its metrics and has logged its start).
        kills: list[float] = []
        killed_start = 0.0  # the start time of the instance killed last
        seen_unready = False
        crash_start = looked = time.monotonic()
        while len(kills) < CRASH_KILLS and time.monotonic() - crash_start < CRASH_LIMIT_SECONDS:
            serving_since = sidecar_started_at(ip)
            if (
                serving_since > killed_start
                and STARTED_LINE in safe(lambda: kube.logs(name, SIDECAR_CONTAINER), "")
                and kill_container(victim, SIDECAR_COMMAND)
            ):
                kills.append(round(time.monotonic() - crash_start, 1))
                killed_start = serving_since
            if time.monotonic() - looked > 2.0:  # status reads are slow: not at every turn
                current = watch.see(kube)
                assert current.get("phase") != "RolledBack", describe(current)
                seen_unready = seen_unready or not ready(kube.get("pod", name) or {})
                looked = time.monotonic()
            time.sleep(0.2)
        assert len(kills) == CRASH_KILLS, f"sidecar of pod {name} at {ip} killed at {kills}"
        # Back: the kubelet restarts it after its back-off; same pod, same IP, Ready again.
        back = watch_until(
            kube,
            lambda s: answers_ready(ip),
            90,
            f"the sidecar of {name} to answer ready again at {ip}",
            watch,
        )
        assert back.last.get("phase") != "RolledBack", describe(back.last)
        down_seconds = time.monotonic() - crash_start
        started_after = sidecar_started_at(ip)
        watch_until(kube, promoted("2"), 150, "the promotion after the sidecar came back", watch)
        final = assert_consistent(kube, replicas=2)
    finally:
        setup.traffic.stop()

    # The rollout: promoted once, never rolled back, no Ready-less moment for live traffic.
    assert_promoted_once(kube, operator, final, revision, watch)
    assert watch.steps == ["shadow 100%", "shadow 50%"], watch.steps
    # The pod: the same object, Ready again (the kubelet's probe), one of the new stable's.
    same = wait_for(
        lambda: (pod := kube.get("pod", name) or {}) and ready(pod) and pod,
        timeout=30,
        what=lambda: f"pod {name} Ready again: {(kube.get('pod', name) or {}).get('status')}",
    )
    assert same["metadata"]["uid"] == uid and same["status"]["podIP"] == ip
    assert seen_unready, f"pod {name} was never seen unready while its sidecar was down"
    # Its sidecar was restarted by the kubelet once per kill, counting anew; its MLServer
    # ran through.
    assert restart_count(same, SIDECAR_CONTAINER) == CRASH_KILLS, same["status"]
    assert restart_count(same, SERVER_CONTAINER) == 0, same["status"]
    log = kube.logs(name, SIDECAR_CONTAINER)
    previous = kube.logs(name, SIDECAR_CONTAINER, previous=True)
    assert log.count(STARTED_LINE) == 1, log[-2000:]
    assert previous.count(STARTED_LINE) == 1, previous[-2000:]  # the killed instance's log
    assert started_after > started_before
    # The other candidate pod's sidecar ran through untouched.
    untouched = kube.get("pod", other_name) or {}
    assert restart_count(untouched, SIDECAR_CONTAINER) == 0, untouched.get("status")
    assert pod_pids(other_uid, SIDECAR_COMMAND) == other_pids
    operator.assert_no_errors()
    record(
        "sidecar-killed",
        pod=name,
        kills_at_seconds=kills,
        sidecar_down_seconds=round(down_seconds, 1),
        restarts=restart_count(same, SIDECAR_CONTAINER),
        reasons=watch.reasons,
        steps=watch.steps,
    )
