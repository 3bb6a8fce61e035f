"""Helpers for the fault tests: a wine model under rollout, and what must hold after a fault.

Every fault test ends with the same four questions, asked by
:func:`assert_consistent` and :func:`assert_history`:

1. Is the final state consistent? ``status`` names children that exist
   (the stable Deployment at full ready capacity, the candidate's when one
   runs), ``observedGeneration`` caught up, and the Service ``wine``
   selects Ready pods of the stable revision only.
2. Is anything orphaned? Every Deployment, settings ConfigMap and
   per-revision Service of the ModelDeployment belongs to the stable
   revision or the current candidate (a rolled-back or failed candidate,
   kept in ``status.candidate`` as a record, has none left).
3. Was anything promoted twice? One ``Promoted`` history entry per revision
   that was rolled out, one ``Switched`` Event per promotion.
4. Was anything rolled back on missing data? Every ``RolledBack`` or
   ``Failed`` entry is one the test expected, and its message names a gate
   that failed on measured values.

Status reads tolerate an API server that is briefly away (the API-server
restart test polls through the outage); a read that fails is simply "no
observation this time".
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from model_pods import MLSERVER_IMAGE, http
from operator_e2e import ROOT, Kube

from vigil.devcluster.models import TrainedModel, train_wine
from vigil.devcluster.traffic import ReadFailed, TrafficGenerator, serving_pod_ips

FIGURES = ROOT / ".vigil" / "e2e-logs" / "fault-figures.jsonl"
SELECTOR = "vigil.dev/model-deployment=wine"
REVISION_LABEL = "vigil.dev/revision"


def record(scenario: str, **figures: Any) -> None:
    """Print and keep what a fault run measured (seeds, kill moments, outage lengths)."""
    line = json.dumps({"scenario": scenario, "at": time.time(), **figures})
    print(line, flush=True)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(line + "\n")


def seeded_rng(name: str) -> tuple[random.Random, int]:
    """A seeded generator; ``VIGIL_FAULT_SEED`` replays a failed run's moments.

    The seed is printed first thing, so a failure's output always carries it.
    """
    seed = int(os.environ.get("VIGIL_FAULT_SEED") or random.SystemRandom().randrange(10**6))
    print(f"{name}: seed {seed} (replay with VIGIL_FAULT_SEED={seed})", flush=True)
    return random.Random(seed), seed


# -- the ModelDeployment ------------------------------------------------------------------


def manifest(
    model: TrainedModel,
    steps: list[dict[str, Any]],
    *,
    tweak: list[dict[str, Any]] | None = None,
    config: dict[str, str] | None = None,
    metrics: dict[str, Any] | None = None,
    replicas: int = 1,
    deadline: str = "180s",
) -> dict[str, Any]:
    """The wine ModelDeployment with short windows and intervals (seconds, not minutes)."""
    spec: dict[str, Any] = {
        "model": {"name": "wine", "version": model.version, "uri": model.storage_uri},
        "server": {"image": MLSERVER_IMAGE, "protocol": "v2"},
        "replicas": replicas,
        "monitoring": {
            "reference": {"configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}},
            "window": "15s",
            "slo": {"maxErrorRate": 0.05, "maxLatencyP95": "5s"},
            "metrics": metrics or {"source": "direct"},
        },
        "rollout": {
            "replacement": {"steps": steps},
            "tweak": {"steps": tweak or [{"canary": {"weight": 50, "duration": "6s"}}]},
            "analysis": {
                "interval": "2s",
                "minRequests": 10,
                "failureLimit": 2,
                "minAgreement": 0.9,
                "maxPredictionShift": 1.0,
            },
            "progressDeadline": deadline,
        },
    }
    if config:
        spec["config"] = config
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine"},
        "spec": spec,
    }


def apply_md(kube: Kube, body: dict[str, Any]) -> None:
    kube.apply(yaml.safe_dump(body))


class SteadyTraffic(TrafficGenerator):
    """The TrafficGenerator, restarted after a failed pod lookup instead of dying.

    ``serving_pod_ips`` runs kubectl with ``check=True``: while the API server
    is away it raises, which ends the generator's thread silently. Live
    traffic in a real cluster does not stop when the API server restarts.
    """

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                super()._run()
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
                self._stop.wait(1.0)


@dataclass
class Setup:
    kube: Kube
    stable: TrainedModel
    traffic: TrafficGenerator
    revision: str


def deploy(
    kube: Kube,
    work_dir: Path,
    tmp_path: Path,
    steps: list[dict[str, Any]],
    *,
    metrics: dict[str, Any] | None = None,
    replicas: int = 1,
    timeout: float = 150,
) -> Setup:
    """Stable wine model v1 serving (every pod's sidecar answering), live traffic flowing."""
    stable = train_wine(tmp_path / "wine-1", version="1", seed=0)
    apply_md(
        kube,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "wine-reference"},
            "data": {"profile.json": stable.profile_json()},
        },
    )
    apply_md(kube, manifest(stable, steps, metrics=metrics, replicas=replicas))
    kube.run("wait", "--for=condition=Ready", "md/wine", f"--timeout={int(timeout)}s")
    # kwok marks pods Ready at once: wait until the processes really serve.
    deadline = time.monotonic() + timeout
    while True:
        ips = safe(lambda: serving_pod_ips(kube.cluster, kube.namespace, "wine"), [])
        if len(ips) == replicas and all(
            http(f"http://{ip}:8000/v2/models/wine/ready")[0] == 200 for ip in ips
        ):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the stable pods never served (runner logs: {work_dir})")
        time.sleep(0.5)
    traffic = SteadyTraffic(
        kube.cluster, kube.namespace, "wine", "wine", stable.X, rate=15.0, seed=3
    ).start()
    return Setup(kube, stable, traffic, status(kube)["stable"]["revision"])


# -- reading the state (tolerant of an absent API server) --------------------------------


def safe(read: Callable[[], Any], default: Any) -> Any:
    """``read()``, or ``default`` when the API server did not answer."""
    try:
        return read()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError, OSError):
        return default


def status(kube: Kube) -> dict[str, Any]:
    return dict((safe(lambda: kube.get("md", "wine"), None) or {}).get("status") or {})


def condition(current: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in current.get("conditions") or ():
        if item.get("type") == kind:
            return dict(item)
    return {}


def brief(current: dict[str, Any]) -> str:
    return json.dumps(
        {
            "phase": current.get("phase"),
            "stable": (current.get("stable") or {}).get("revision"),
            "candidate": {
                k: v
                for k, v in (current.get("candidate") or {}).items()
                if k in ("revision", "stepName", "reason", "message", "outcome")
            },
            "ready": condition(current, "Ready"),
            "history": (current.get("history") or [])[:4],
        },
        indent=1,
    )


@dataclass
class Watch:
    """What was seen while polling: steps, candidate reasons, observations without pods."""

    steps: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    no_ready_pods: int = 0
    #: The status at each observation where the Service selected no Ready pod.
    without_ready_pods: list[str] = field(default_factory=list)
    observations: int = 0
    last: dict[str, Any] = field(default_factory=dict)

    def see(self, kube: Kube) -> dict[str, Any]:
        current = status(kube)
        if not current:
            return self.last  # the API server did not answer: nothing new seen
        self.last = current
        self.observations += 1
        candidate = current.get("candidate") or {}
        step, reason = candidate.get("stepName"), candidate.get("reason")
        if step and (not self.steps or self.steps[-1] != step):
            self.steps.append(str(step))
        if reason and (not self.reasons or self.reasons[-1] != reason):
            self.reasons.append(str(reason))
        ready = ready_pods_behind_service(kube)
        if ready == []:
            self.no_ready_pods += 1
            self.without_ready_pods.append(brief(current))
        return current


def ready_pods_behind_service(kube: Kube) -> list[str] | None:
    """IPs of the Ready pods the Service ``wine`` selects; None when a read failed.

    Unlike a bare ``serving_pod_ips`` (which the traffic generator reads as
    "keep the last routes"), a read that failed on a busy machine, or during
    which the selector changed, is no observation at all.
    """
    try:
        return serving_pod_ips(kube.cluster, kube.namespace, "wine")
    except (ReadFailed, subprocess.TimeoutExpired):
        return None


def watch_until(
    kube: Kube,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
    watch: Watch | None = None,
) -> Watch:
    watch = watch or Watch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = watch.see(kube)
        if current and done(current):
            return watch
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last:\n{brief(watch.last)}")


def promoted(version: str) -> Callable[[dict[str, Any]], bool]:
    """Done when model ``version`` is stable, promoted, and no candidate is left."""

    def done(current: dict[str, Any]) -> bool:
        history = current.get("history") or [{}]
        return (
            (current.get("stable") or {}).get("modelVersion") == version
            and history[0].get("outcome") == "Promoted"
            and not current.get("candidate")
        )

    return done


def tweak_promoted(revision_before: str) -> Callable[[dict[str, Any]], bool]:
    def done(current: dict[str, Any]) -> bool:
        history = current.get("history") or [{}]
        return (
            (current.get("stable") or {}).get("revision") not in (None, revision_before)
            and history[0].get("outcome") == "Promoted"
            and history[0].get("change") == "tweak"
            and not current.get("candidate")
        )

    return done


def rolled_back(current: dict[str, Any]) -> bool:
    return current.get("phase") == "RolledBack"


# -- the four questions ---------------------------------------------------------------------


def _revision(item: dict[str, Any]) -> str | None:
    return ((item.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)


def _children(kube: Kube) -> dict[str, list[tuple[str, str | None]]]:
    """(name, revision label) of the ModelDeployment's Deployments, ConfigMaps, Services."""
    return {
        kind: [(item["metadata"]["name"], _revision(item)) for item in kube.items(kind, SELECTOR)]
        for kind in ("deployments", "configmaps", "services")
    }


def _inconsistencies(kube: Kube, replicas: int) -> list[str]:
    """What is wrong with the final state now (empty: consistent)."""
    problems: list[str] = []
    body = kube.get("md", "wine") or {}
    current = dict(body.get("status") or {})
    generation = (body.get("metadata") or {}).get("generation")
    if current.get("observedGeneration") != generation:
        problems.append(f"observedGeneration {current.get('observedGeneration')} != {generation}")
    stable = (current.get("stable") or {}).get("revision")
    # A finished attempt (rolled back, failed) stays in status.candidate as a record; its
    # children must be gone.
    summary = current.get("candidate") or {}
    finished = summary.get("outcome") in ("RolledBack", "Failed")
    candidate = None if finished else summary.get("revision")
    if not stable:
        return [*problems, "status names no stable revision"]
    wanted = {stable} | ({candidate} if candidate else set())
    deployment = kube.get("deployment", f"wine-{stable}") or {}
    ready = (deployment.get("status") or {}).get("readyReplicas") or 0
    if not deployment:
        problems.append(f"the stable Deployment wine-{stable} named in status does not exist")
    elif ready != replicas:
        problems.append(f"stable Deployment wine-{stable}: {ready}/{replicas} ready")
    if candidate and not kube.get("deployment", f"wine-{candidate}"):
        problems.append(f"the candidate Deployment wine-{candidate} named in status is missing")
    for kind, found in _children(kube).items():
        for name, revision in found:
            if revision is not None and revision not in wanted:
                problems.append(f"orphaned {kind[:-1]} {name} (revision {revision})")
    service = kube.get("service", "wine") or {}
    selector = (service.get("spec") or {}).get("selector") or {}
    if not candidate and selector.get(REVISION_LABEL) != stable:
        problems.append(f"Service wine selects {selector}, not the stable revision {stable}")
    if selector:
        label = ",".join(f"{k}={v}" for k, v in selector.items())
        pods = [p for p in kube.items("pods", label) if not p["metadata"].get("deletionTimestamp")]
        ready_pods = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        if not ready_pods:
            problems.append(f"Service wine selects no Ready pod ({len(pods)} pods)")
        strays = {_revision(p) for p in pods} - wanted
        if strays:
            problems.append(f"Service wine selects pods of revisions {sorted(strays)}")
    else:
        problems.append("Service wine has no selector")
    return problems


def assert_consistent(kube: Kube, replicas: int = 1, settle: float = 45) -> dict[str, Any]:
    """Wait (bounded) for deletions to land, then require a consistent, orphan-free state.

    Deleting an old revision is asynchronous (garbage collection of its
    pods), so the check polls; it fails with everything still wrong.
    """
    deadline = time.monotonic() + settle
    problems = _inconsistencies(kube, replicas)
    while problems and time.monotonic() < deadline:
        time.sleep(1.0)
        problems = _inconsistencies(kube, replicas)
    assert not problems, "inconsistent final state:\n- " + "\n- ".join(problems)
    return status(kube)


def assert_history(
    current: dict[str, Any],
    *,
    promoted: Iterable[str],
    rolled_back: Iterable[str] = (),
) -> None:
    """One Promoted entry per promoted revision; rollbacks only where expected, on gates."""
    history = list(current.get("history") or ())
    promotions = [e["revision"] for e in history if e.get("outcome") == "Promoted"]
    assert sorted(promotions) == sorted(promoted), f"Promoted entries: {history}"
    failures = [e for e in history if e.get("outcome") in ("RolledBack", "Failed")]
    assert sorted(e["revision"] for e in failures) == sorted(rolled_back), (
        f"rolled back or failed entries: {failures}"
    )
    for entry in failures:
        reason = str(entry.get("reason") or "")
        assert "MetricsUnavailable" not in reason and "InsufficientData" not in reason, entry


def switched_events(kube: Kube) -> list[str]:
    """Messages of the ``Switched`` Events (one per promotion: live traffic moved)."""
    return [str(e.get("message")) for e in safe(lambda: kube.events("Switched"), [])]


def rolled_back_events(kube: Kube) -> list[str]:
    return [str(e.get("message")) for e in safe(lambda: kube.events("RolledBack"), [])]


def rollout_models(tmp_path: Path) -> dict[str, TrainedModel]:
    """A good replacement (retrained, same data) and a bad one (shuffled labels)."""
    return {
        "good": train_wine(tmp_path / "wine-2", version="2", seed=1),
        "bad": train_wine(tmp_path / "wine-bad", version="3", shuffled_labels=True, seed=0),
    }
