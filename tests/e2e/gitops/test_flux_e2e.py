"""GitOps with a real Flux: a model committed to Git reaches Ready through Flux and Vigil.

What this proves, with real components only: Flux's source-controller and
kustomize-controller (built here from their Go modules, run as host
processes), a Git repository served on 127.0.0.1 by git's own HTTP backend
and pushed to over HTTP, the project's ``manifests/gitops/flux`` example
(its GitRepository and the model's Kustomization with its health checks,
``healthCheckExprs`` included) pointed at that repository, the real operator,
and the MLServer model pods on the local cluster's real node.

- A new model committed to Git is applied by Flux (server-side apply of the
  kustomize build: the ModelDeployment and its reference-profile ConfigMap).
- The Kustomization's health check waits on the ModelDeployment: while the
  model is not Ready, Flux says it is running health checks and does not
  report Ready; it reports Ready for the commit only after the
  ModelDeployment's Ready condition turned True.
- Commit-to-Ready (push returned -> Flux Ready for that commit) is measured
  and appended to ``.vigil/e2e-logs/gitops-figures.jsonl``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kit.figures import Figures
from kit.gitops import GitOps, model_files, ready_at
from kit.kube import Kube
from kit.modeldeployment import ModelStore
from kit.operator import OperatorProcess
from kit.status import condition
from kit.waits import wait_for

from vigil.common.times import parse_unix

record = Figures("gitops").record


@dataclass
class Look:
    """One look at the Kustomization and the ModelDeployment, seconds after the push."""

    at: float
    flux_ready: str
    #: Flux's Healthy condition: status and message (its health checks' progress).
    flux_healthy: str
    flux_message: str
    applied: str
    exists: bool  # the ModelDeployment
    model: str  # its Ready status ("" when it has none)


@dataclass
class Looks:
    items: list[Look] = field(default_factory=list)

    def first(self, test: Any) -> Look | None:
        return next((look for look in self.items if test(look)), None)


def look(gitops: GitOps, kube: Kube, pushed: float) -> Look:
    status = gitops.kustomization().get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    ready, healthy = conditions.get("Ready", {}), conditions.get("Healthy", {})
    md = kube.get("md", "wine") or {}
    md_ready = condition(md.get("status") or {}, "Ready")
    return Look(
        round(time.monotonic() - pushed, 2),
        str(ready.get("status", "")),
        str(healthy.get("status", "")),
        str(healthy.get("message", "")),
        str(status.get("lastAppliedRevision", "")),
        bool(md),
        str(md_ready.get("status", "")),
    )


def test_a_new_model_committed_to_git_is_ready_through_flux_only_once_vigil_says_so(
    kube: Kube, store: ModelStore, operator: OperatorProcess, gitops: GitOps
) -> None:
    model = store.train("wine-1", version="1", seed=0)
    files = model_files(store, model)
    assert kube.get("md", "wine") is None
    before = next(c for c in gitops.kustomization()["status"]["conditions"] if c["type"] == "Ready")
    assert before["status"] == "False", before  # the model's path is not in Git yet
    commit = gitops.repository.commit(files, "A new model: wine 1")
    pushed = time.monotonic()
    looks = Looks()

    def flux_ready() -> bool:
        looks.items.append(look(gitops, kube, pushed))
        return ready_at(gitops.kustomization(), commit)

    wait_for(
        flux_ready,
        timeout=300,
        interval=0.5,
        what=lambda: f"Flux to report Ready for {commit}; looks: {looks.items[-5:]}",
    )
    commit_to_ready = time.monotonic() - pushed

    ks = gitops.kustomization()
    md = kube.get("md", "wine") or {}
    md_ready = condition(md["status"], "Ready")
    flux_condition = next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")
    assert md_ready["status"] == "True", md_ready
    assert md["spec"]["model"]["version"] == "1"
    assert md["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == gitops.name
    # Flux's Ready came after Vigil's (conditions' transition times, seconds).
    flux_at = parse_unix(flux_condition["lastTransitionTime"])
    model_at = parse_unix(md_ready["lastTransitionTime"])
    assert flux_at is not None and model_at is not None, (flux_condition, md_ready)
    assert flux_at >= model_at, (flux_condition, md_ready)
    # Flux applied the commit, then waited on the health check while the model was not Ready.
    applied = looks.first(lambda x: x.exists)
    waiting = [
        x
        for x in looks.items
        if x.exists and x.model != "True" and "running health checks" in x.flux_message.lower()
    ]
    assert applied is not None, looks.items
    assert waiting, f"never saw Flux wait on the health check: {looks.items}"
    assert all(x.flux_ready != "True" and x.flux_healthy != "True" for x in waiting), waiting
    inventory = {entry["id"] for entry in ks["status"]["inventory"]["entries"]}
    assert f"{kube.namespace}_wine_vigil.dev_ModelDeployment" in inventory, inventory
    assert f"{kube.namespace}_wine-reference__ConfigMap" in inventory, inventory
    operator.assert_no_errors()
    model_ready = looks.first(lambda x: x.model == "True")
    record(
        "new-model",
        commit_to_ready_seconds=round(commit_to_ready, 1),
        commit_to_applied_seconds=applied.at,
        commit_to_model_ready_seconds=model_ready.at if model_ready else None,
        flux_waiting_looks=len(waiting),
        flux_message_while_waiting=waiting[0].flux_message,
        model=model.version,
    )
