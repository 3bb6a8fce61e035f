"""GitOps with a real Argo CD: a model committed to Git is Healthy through Argo CD only once
Vigil says Ready, and a refused replacement is Degraded with Vigil's reason until reverted.

What this proves, with real components only: Argo CD's repo-server and application
controller (built here from its Go module, run as host processes with Debian's Redis),
the project's health check and diff settings (``manifests/gitops/argocd/argocd-cm-patch.yaml``
in ``argocd-cm``) and its model Application (``manifests/gitops/argocd/application.yaml``:
automated sync with prune and self-heal) pointed at a Git repository served on 127.0.0.1
by git's own HTTP backend, the real operator, MLServer pods on the real node, live
traffic through the Service's ClusterIP.

- A new model committed to Git: Argo CD syncs it, shows it Progressing while Vigil
  starts it, and Healthy only once the ModelDeployment's Ready is True.
- A bad replacement: Vigil rolls it back at shadow (no live request reaches it); Argo CD
  shows the Application Degraded with Vigil's phase and message, and stays Synced to the
  bad commit (Git and the spec still name it; nothing the operator writes is drift);
  committing the previous model returns it to Healthy without a new rollout.
- Self-heal never syncs again for what the operator writes: one sync per commit.
- A replacement under Argo CD's comparisons (every 5 s): the rollout is never restarted
  (one candidate, one generation per commit), Argo CD shows it Progressing, then Suspended
  while a person's ``kubectl vigil pause`` holds; a ``kubectl vigil promote`` placed while
  the operator is down stays in its annotation through comparisons (an ignored difference,
  no self-heal), is taken once the operator is back, and Argo CD is Healthy only after.

Figures go to ``.vigil/e2e-logs/gitops-figures.jsonl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kit.argocd import AppView, ArgoGitOps
from kit.figures import Figures
from kit.gitops import plain_model_files, serving_live
from kit.kube import Kube
from kit.modeldeployment import ANALYSIS, ModelStore
from kit.operator import OperatorProcess, kubectl_vigil
from kit.status import at_step, condition, in_phase, promoted
from kit.traffic import LiveTraffic
from kit.waits import wait_deployments, wait_for, watch_until

from vigil.devcluster.models import TrainedModel
from vigil.plugin.requests import ANNOTATION_REQUEST

record = Figures("gitops").record

#: A replacement's rollout: a shadow step the bad model fails, then a short canary.
STEPS: list[dict[str, Any]] = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 50, "duration": "20s"}},
]
#: A canary that only a person ends (the pause and promote scenario): no early advance.
SLOW: list[dict[str, Any]] = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 50, "duration": "600s"}},
]
SLOW_ANALYSIS = ANALYSIS | {"earlyAdvance": False}


@dataclass
class Look:
    """Argo CD's view of the Application and the ModelDeployment's Ready, seconds after
    the push."""

    at: float
    app: AppView
    model: str  # Ready's status ("" when the ModelDeployment or its condition is missing)


@dataclass
class Looks:
    items: list[Look] = field(default_factory=list)
    #: Every candidate (revision, start time) seen, and the spec's generation beside it.
    candidates: set[tuple[str, str]] = field(default_factory=set)
    generations: set[int] = field(default_factory=set)

    def take(self, gitops: ArgoGitOps, kube: Kube, pushed: float) -> Look:
        # Argo CD's view first: a Healthy it shows must find the model already Ready.
        app = gitops.application.view()
        md = kube.get("md", "wine") or {}
        status = md.get("status") or {}
        look = Look(
            round(time.monotonic() - pushed, 2),
            app,
            str(condition(status, "Ready").get("status", "")),
        )
        self.items.append(look)
        candidate = status.get("candidate") or {}
        if candidate.get("revision"):
            self.candidates.add((str(candidate["revision"]), str(candidate.get("startedAt"))))
            self.generations.add(int(md["metadata"].get("generation", 0)))
        return look

    def poll(self, gitops: ArgoGitOps, kube: Kube) -> Callable[[], None]:
        """A look per poll of a watch (``watch_until``'s ``on_poll``)."""
        start = time.monotonic()

        def look() -> None:
            self.take(gitops, kube, start)

        return look

    def synced_to(self, commit: str) -> list[Look]:
        """The looks at Argo CD's verdict on ``commit``: Synced to it. Until its sync ends,
        the health it shows is its last assessment, made before the sync applied the
        commit (a Healthy there is the previous commit's)."""
        return [x for x in self.items if x.app.revision == commit and x.app.sync == "Synced"]

    def healths(self) -> list[str]:
        """Argo CD's health of the Application, each as it changed."""
        seen: list[str] = []
        for look in self.items:
            if not seen or seen[-1] != look.app.health:
                seen.append(look.app.health)
        return seen


def wait_app(
    gitops: ArgoGitOps, kube: Kube, commit: str, health: str, timeout: float
) -> tuple[float, Looks]:
    """Until Argo CD shows the Application Synced to ``commit`` and of ``health``: the
    seconds it took and what was seen on the way."""
    looks, start = Looks(), time.monotonic()
    wait_for(
        lambda: looks.take(gitops, kube, start).app.at(commit, health),
        timeout=timeout,
        interval=0.5,
        what=lambda: f"Argo CD to show {commit} {health}; looks: {looks.items[-4:]}",
    )
    return time.monotonic() - start, looks


def compared_again(gitops: ArgoGitOps, times: int, since: AppView | None = None) -> AppView:
    """Argo CD's view once its controller has compared the Application with Git and the
    cluster ``times`` more times after ``since`` (default: now; its reconciledAt moved on)."""
    seen = {(since or gitops.application.view()).reconciled_at}

    def compared() -> AppView | None:
        view = gitops.application.view()
        seen.add(view.reconciled_at)
        return view if len(seen) > times else None

    found = wait_for(
        compared,
        timeout=30 * times,
        what=lambda: f"{times} comparisons by Argo CD (seen {sorted(seen)})",
    )
    assert found is not None
    return found


@dataclass
class Served:
    """Model v1 committed to Git, synced by Argo CD, Healthy, and serving live traffic."""

    gitops: ArgoGitOps
    model: TrainedModel
    stable: str
    traffic: LiveTraffic


@pytest.fixture
def served(
    kube: Kube, store: ModelStore, operator: OperatorProcess, argo_gitops: ArgoGitOps
) -> Iterator[Served]:
    model = store.train("wine-1", version="1", seed=0)
    first = argo_gitops.repository.commit(plain_model_files(store, model, STEPS), "wine 1")
    wait_app(argo_gitops, kube, first, "Healthy", timeout=300)
    with serving_live(kube, model) as (traffic, stable):
        yield Served(argo_gitops, model, stable, traffic)


def test_a_new_model_committed_to_git_is_healthy_in_argocd_only_once_vigil_says_ready(
    kube: Kube, store: ModelStore, operator: OperatorProcess, argo_gitops: ArgoGitOps
) -> None:
    model = store.train("wine-1", version="1", seed=0)
    assert kube.get("md", "wine") is None
    commit = argo_gitops.repository.commit(plain_model_files(store, model), "A new model")
    commit_to_healthy, looks = wait_app(argo_gitops, kube, commit, "Healthy", timeout=300)

    md = kube.get("md", "wine") or {}
    assert condition(md["status"], "Ready")["status"] == "True", md["status"]
    assert md["spec"]["model"]["version"] == "1"
    # Argo CD applied the commit, then showed the model Progressing while Vigil started it.
    synced = looks.synced_to(commit)
    progressing = [x for x in synced if x.app.health == "Progressing" and x.model != "True"]
    assert progressing, f"never saw Argo CD wait on the model: {looks.items}"
    healthy_early = [x for x in synced if x.app.health == "Healthy" and x.model != "True"]
    assert not healthy_early, healthy_early
    assert looks.items[-1].app.syncs == 1, looks.items[-1]
    operator.assert_no_errors()
    record(
        "argocd-new-model",
        commit_to_healthy_seconds=round(commit_to_healthy, 1),
        commit_to_synced_seconds=synced[0].at,
        progressing_looks=len(progressing),
        argocd_message_while_progressing=progressing[0].app.health_message,
        argocd_model_message_while_progressing=progressing[0].app.model_message,
    )


def test_a_bad_replacement_is_degraded_in_argocd_with_vigils_reason_until_reverted(
    kube: Kube, store: ModelStore, operator: OperatorProcess, served: Served
) -> None:
    argo_gitops, model, stable = served.gitops, served.model, served.stable
    bad = store.train("wine-bad", version="2", shuffled_labels=True, seed=0)
    commit = argo_gitops.repository.commit(
        plain_model_files(store, bad, STEPS), "Replace wine 1 (bad)"
    )
    pushed = time.monotonic()
    watch = watch_until(kube, in_phase("RolledBack"), 150, "the rollback of the bad model")
    commit_to_rolled_back = time.monotonic() - pushed
    _, looks = wait_app(argo_gitops, kube, commit, "Degraded", timeout=60)
    commit_to_degraded = time.monotonic() - pushed
    app = looks.items[-1].app
    md = kube.get("md", "wine") or {}
    ready = condition(md["status"], "Ready")
    # The Application names the ModelDeployment as the cause; the ModelDeployment's
    # health in Argo CD's resource tree carries Vigil's phase and Ready message.
    assert ready["reason"] == "RolledBack", ready
    assert app.health_message == f"Caused by vigil.dev/ModelDeployment:{kube.namespace}/wine"
    assert app.model_health == "Degraded", app
    assert app.model_message == f"RolledBack: {ready['message']}", (app, ready)
    assert "agreement" in app.model_message, app
    assert not watch.spanned, "the bad model must never get live traffic"
    # Synced to the bad commit: Git and the spec name it; the operator's writes are
    # not drift, and self-heal never synced again (one sync per commit).
    assert md["spec"]["model"]["uri"] == store.uri(bad)
    assert app.syncs == 2, app
    again = compared_again(argo_gitops, times=3, since=app)
    assert (again.sync, again.health, again.syncs) == ("Synced", "Degraded", 2), again
    assert (kube.get("md", "wine") or {})["status"]["phase"] == "RolledBack"
    wait_deployments(kube, [f"wine-{stable}"])

    # The previous model committed again: Healthy, the same stable, no new rollout.
    revert = argo_gitops.repository.commit(plain_model_files(store, model, STEPS), "Back to wine 1")
    revert_to_healthy, _ = wait_app(argo_gitops, kube, revert, "Healthy", timeout=90)
    md = kube.get("md", "wine") or {}
    assert md["status"]["phase"] == "Healthy", md["status"]
    assert md["status"]["stable"]["revision"] == stable
    assert not md["status"].get("candidate"), md["status"]
    operator.wait_total("vigil_rollouts_total", 1, outcome="RolledBack")
    assert operator.total("vigil_rollouts_total", outcome="Promoted") == 0
    assert served.traffic.stats.failed == 0, served.traffic.stats
    operator.assert_no_errors()
    record(
        "argocd-bad-replacement",
        commit_to_rolled_back_seconds=round(commit_to_rolled_back, 1),
        commit_to_degraded_seconds=round(commit_to_degraded, 1),
        revert_to_healthy_seconds=round(revert_to_healthy, 1),
        argocd_message=app.health_message,
        argocd_model_message=app.model_message,
    )


def test_a_replacement_and_a_persons_pause_and_promote_survive_argocd_self_heal(
    kube: Kube, store: ModelStore, operator: OperatorProcess, served: Served
) -> None:
    argo_gitops = served.gitops
    replacement = store.train("wine-2", version="2", seed=1)
    commit = argo_gitops.repository.commit(
        plain_model_files(store, replacement, SLOW, deadline="300s", analysis=SLOW_ANALYSIS),
        "Replace wine 1 with wine 2",
    )
    looks = Looks()
    poll = looks.poll(argo_gitops, kube)
    watch = watch_until(kube, at_step("canary 50%"), 120, "the canary", on_poll=poll)
    in_canary = compared_again(argo_gitops, times=2)
    assert (in_canary.revision, in_canary.sync, in_canary.health) == (
        commit,
        "Synced",
        "Progressing",
    ), in_canary

    # A pause holds across Argo CD's comparisons: Suspended, the candidate untouched.
    kubectl_vigil(kube, "pause")
    watch = watch_until(
        kube,
        lambda s: condition(s, "Ready").get("reason") == "RolloutPaused",
        30,
        "the pause to be taken",
        watch,
        on_poll=poll,
    )
    held = watch.last["candidate"]
    paused = compared_again(argo_gitops, times=2)
    poll()  # the Suspended just compared, among the looks whatever the watches saw
    assert (paused.sync, paused.health, paused.syncs) == ("Synced", "Suspended", 2), paused
    now = (kube.get("md", "wine") or {})["status"]
    assert condition(now, "Ready")["reason"] == "RolloutPaused", condition(now, "Ready")
    for key in ("revision", "startedAt", "step", "weight"):
        assert now["candidate"][key] == held[key], (key, now["candidate"], held)

    # A promote placed while the operator is down stays through comparisons: the request
    # annotations are an ignored difference (argocd-cm-patch.yaml), so no self-heal sync.
    operator.stop()
    kubectl_vigil(kube, "promote")
    pending = compared_again(argo_gitops, times=2)
    annotations = (kube.get("md", "wine") or {})["metadata"].get("annotations") or {}
    assert annotations.get(ANNOTATION_REQUEST) == "promote", (annotations, pending)
    assert (pending.sync, pending.syncs) == ("Synced", 2), pending
    operator.start()
    back = time.monotonic()
    watch_until(kube, promoted("2"), 90, "the promotion a person asked for", on_poll=poll)
    wait_app(argo_gitops, kube, commit, "Healthy", timeout=60)
    back_to_healthy = time.monotonic() - back
    looks.take(argo_gitops, kube, back)

    md = kube.get("md", "wine") or {}
    entry = md["status"]["history"][0]
    assert (entry["outcome"], entry["modelVersion"]) == ("Promoted", "2"), entry
    assert md["status"]["lastRequest"]["verb"] == "promote", md["status"]["lastRequest"]
    assert ANNOTATION_REQUEST not in (md["metadata"].get("annotations") or {})
    assert md["spec"]["model"]["uri"] == store.uri(replacement)
    # One rollout, never restarted; one spec generation through it; one sync per commit;
    # Argo CD never Healthy while the model was not Ready.
    assert len(looks.candidates) == 1, looks.candidates
    assert len(looks.generations) == 1, looks.generations
    assert argo_gitops.application.view().syncs == 2
    synced = looks.synced_to(commit)
    assert synced, looks.items
    healthy_early = [x for x in synced if x.app.health == "Healthy" and x.model != "True"]
    assert not healthy_early, healthy_early
    assert "Suspended" in looks.healths(), looks.healths()
    assert served.traffic.stats.failed == 0, served.traffic.stats
    operator.assert_no_errors()
    record(
        "argocd-pause-promote",
        argocd_healths=looks.healths(),
        operator_back_to_healthy_seconds=round(back_to_healthy, 1),
        comparisons_seen=len({x.app.reconciled_at for x in looks.items}),
    )
