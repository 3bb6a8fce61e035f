"""A candidate pod's sidecar SIGKILLed (crash-looping for a while) during the shadow step.

Two replicas, so the candidate has two pods during shadow. The sidecar of
one of them (the first by name: with ``--pod-addressing`` the one the
stable's copies go to) is killed each time it comes back, ``CRASH_KILLS``
times; the workload runner, standing in for the kubelet, restarts it with
its back-off (1 s, 2 s, 5 s, then 10 s), so that pod sends no figures for
some twenty seconds.

What happens to that pod, as this test checks it:

* it stays the same pod (same uid, name and IP) and stays Ready in the API:
  kwok runs no probes, so nothing marks it unready and its restarts are not
  reported in ``restartCount`` (the runner writes no pod status);
* its MLServer keeps running; its sidecar is restarted by the runner
  (a ``--- start:`` line per start in its container log) and, once back,
  answers ready at the same IP, counting from zero again (a new
  ``vigil_sidecar_start_time_seconds``), which the operator's direct source
  reads as a counter reset;
* the operator meanwhile has no data from that pod: it must not roll back
  on that (the other candidate pod's figures, or a hold, carry the
  rollout), and the rollout ends promoted once, with the restarted pod
  among the new stable's pods.
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
from kit.kube import Kube, pod_ip
from kit.metrics import total
from kit.operator import OperatorProcess
from kit.status import at_step, describe, promoted
from kit.traffic import answers_ready, pod_metrics
from kit.waits import watch_until

from vigil.devcluster.models import train_wine

pytestmark = pytest.mark.faults

#: Shadow steps only: the candidate keeps both pods until its promotion (a canary at
#: 50% would scale it to one, perhaps removing the pod under test). The crash loop
#: starts with the second step, whose 45 s are counted from there (a step's clock also
#: runs while a slow candidate starts), so it falls inside a judged step.
STEPS = [
    {"shadow": {"duration": "5s", "percent": 100, "minRequests": 20}},
    {"shadow": {"duration": "45s", "percent": 50, "minRequests": 20}},
]
#: Kills in a row (each once the runner restarted it), within a bounded time.
CRASH_KILLS = 3
CRASH_LIMIT_SECONDS = 60


def sidecar_pids(ip: str) -> list[int]:
    """Pids of the sidecar processes listening on this pod IP (the runner's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if any(a.endswith(b"vigil-sidecar") for a in argv[:2]) and (
                b"--listen-host" in argv and argv[argv.index(b"--listen-host") + 1] == ip.encode()
            ):
                found.append(int(entry.name))
    return found


def test_sidecar_killed_in_one_candidate_pod_never_rolls_back_on_its_missing_data(
    kube: Kube, operator: OperatorProcess, workload_runner: Path, tmp_path: Path
) -> None:
    setup = deploy(kube, workload_runner, tmp_path, STEPS, replicas=2)
    try:
        candidate = train_wine(tmp_path / "wine-2", version="2", seed=1)
        kube.apply(manifest(candidate, STEPS, replicas=2))
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
        victim = pods[0]
        name, uid, ip = victim["metadata"]["name"], victim["metadata"]["uid"], pod_ip(victim)
        other_ip = pod_ip(pods[1])
        started_before = total(pod_metrics(ip), "vigil_sidecar_start_time_seconds")
        other_pids = sidecar_pids(other_ip)

        # Crash-loop the sidecar: kill it each time the runner brings it back.
        kills: list[float] = []
        crash_start = looked = time.monotonic()
        while len(kills) < CRASH_KILLS and time.monotonic() - crash_start < CRASH_LIMIT_SECONDS:
            for pid in sidecar_pids(ip):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                kills.append(round(time.monotonic() - crash_start, 1))
            if time.monotonic() - looked > 2.0:  # status reads are slow: not at every turn
                current = watch.see(kube)
                assert current.get("phase") != "RolledBack", describe(current)
                looked = time.monotonic()
            time.sleep(0.1)
        assert len(kills) == CRASH_KILLS, f"sidecar of pod {name} at {ip} killed at {kills}"
        # Back: the runner restarts it after its back-off; same pod, same IP.
        back = watch_until(
            kube,
            lambda s: answers_ready(ip),
            60,
            f"the sidecar of {name} to answer ready again at {ip}",
            watch,
        )
        assert back.last.get("phase") != "RolledBack", describe(back.last)
        down_seconds = time.monotonic() - crash_start
        started_after = total(pod_metrics(ip), "vigil_sidecar_start_time_seconds")
        watch_until(kube, promoted("2"), 150, "the promotion after the sidecar came back", watch)
        final = assert_consistent(kube, replicas=2)
    finally:
        setup.traffic.stop()

    # The rollout: promoted once, never rolled back, no Ready-less moment for live traffic.
    assert_promoted_once(kube, operator, final, revision, watch)
    assert watch.steps == ["shadow 100%", "shadow 50%"], watch.steps
    # The pod: the same object, still Ready in the API, now one of the new stable's pods.
    same = kube.get("pod", name) or {}
    assert same["metadata"]["uid"] == uid and same["status"]["podIP"] == ip
    ready = [c for c in same["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    # Its sidecar was restarted by the runner (one start line per start), counting anew.
    log = next(workload_runner.glob(f"*.{name}.*/sidecar.log")).read_text(errors="replace")
    assert log.count("--- start:") == CRASH_KILLS + 1, log[-2000:]
    assert started_after > started_before
    # The other candidate pod's sidecar ran through untouched.
    assert sidecar_pids(other_ip) == other_pids
    operator.assert_no_errors()
    record(
        "sidecar-killed",
        pod=name,
        kills_at_seconds=kills,
        sidecar_down_seconds=round(down_seconds, 1),
        starts=log.count("--- start:"),
        reasons=watch.reasons,
        steps=watch.steps,
    )
