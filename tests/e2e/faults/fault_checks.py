"""What must hold after a fault, and the fault tests' own settings.

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

The shared helpers (the wine ModelDeployment, ``deploy``, ``watch_until``
and the ``Watch``, whose reads tolerate an API server that is briefly away)
are in tests/e2e/kit.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kit import modeldeployment
from kit.figures import Figures
from kit.kube import REVISION_LABEL, Kube, ready
from kit.modeldeployment import ModelStore, Setup
from kit.operator import OperatorProcess
from kit.status import describe, status
from kit.waits import Watch

from vigil.devcluster.models import TrainedModel, train_wine

#: Fault tests give a rollout more time than the rollout tests: a kill or an outage
#: may land in the middle of it.
DEADLINE = "180s"

#: Print and keep what a fault run measured (seeds, kill moments, outage lengths).
record = Figures("fault").record


def seeded_rng(name: str) -> tuple[random.Random, int]:
    """A seeded generator; ``VIGIL_FAULT_SEED`` replays a failed run's moments.

    The seed is printed first thing, so a failure's output always carries it.
    """
    seed = int(os.environ.get("VIGIL_FAULT_SEED") or random.SystemRandom().randrange(10**6))
    print(f"{name}: seed {seed} (replay with VIGIL_FAULT_SEED={seed})", flush=True)
    return random.Random(seed), seed


def manifest(
    model: TrainedModel,
    steps: list[dict[str, Any]],
    store: ModelStore | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The wine ModelDeployment of the kit, with the fault tests' progress deadline; with
    ``store``, served from it on the real node by the image built here."""
    options = {"deadline": DEADLINE, **options}
    if store is not None:
        return store.manifest(model, steps, **options)
    return modeldeployment.manifest(model, steps, **options)


def deploy(
    kube: Kube,
    tmp_path: Path,
    steps: list[dict[str, Any]],
    *,
    store: ModelStore | None = None,
    **options: Any,
) -> Setup:
    """Stable wine model v1 serving on every replica, live traffic flowing (with ``store``:
    on the real node, through its Service)."""
    return modeldeployment.deploy(
        kube, tmp_path, steps, store=store, **{"deadline": DEADLINE, **options}
    )


def rollout_models(folder: Path) -> dict[str, TrainedModel]:
    """A good replacement (retrained, same data) and a bad one (shuffled labels), in
    ``folder`` (on the real node: the model volume's)."""
    return {
        "good": train_wine(folder / "wine-2", version="2", seed=1),
        "bad": train_wine(folder / "wine-bad", version="3", shuffled_labels=True, seed=0),
    }


# -- the four questions ---------------------------------------------------------------------


def _revision(item: dict[str, Any]) -> str | None:
    return ((item.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL)


def _children(kube: Kube) -> dict[str, list[tuple[str, str | None]]]:
    """(name, revision label) of the ModelDeployment's Deployments, ConfigMaps, Services."""
    return {
        kind: [(item["metadata"]["name"], _revision(item)) for item in items]
        for kind, items in kube.children().items()
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
    ready_replicas = (deployment.get("status") or {}).get("readyReplicas") or 0
    if not deployment:
        problems.append(f"the stable Deployment wine-{stable} named in status does not exist")
    elif ready_replicas != replicas:
        problems.append(f"stable Deployment wine-{stable}: {ready_replicas}/{replicas} ready")
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
        pods = [p for p in kube.pods(label) if not p["metadata"].get("deletionTimestamp")]
        if not any(ready(p) for p in pods):
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


def assert_promoted_once(
    kube: Kube, operator: OperatorProcess, final: dict[str, Any], revision: str, watch: Watch
) -> None:
    """The one candidate ``revision`` was promoted exactly once and nothing was rolled back
    (history, the operator's counters, the Events), and live traffic always had a Ready pod."""
    assert final["stable"]["revision"] == revision, describe(final)
    assert_history(final, promoted=[revision])
    operator.wait_total("vigil_rollouts_total", 1, outcome="Promoted")
    assert operator.total("vigil_rollouts_total", outcome="RolledBack") == 0
    assert len(switched_events(kube)) == 1
    assert rolled_back_events(kube) == []
    assert watch.no_ready_pods == 0, watch.without_ready_pods


def switched_events(kube: Kube) -> list[str]:
    """Messages of the ``Switched`` Events (one per promotion: live traffic moved)."""
    # A verdict, not a poll: a failed read must fail, not read as "no Events".
    return [str(e.get("message")) for e in kube.events("Switched")]


def rolled_back_events(kube: Kube) -> list[str]:
    return [str(e.get("message")) for e in kube.events("RolledBack")]
