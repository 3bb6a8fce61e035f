"""GitOps rollouts with a real Flux: a replacement under re-syncs, a refused replacement, and
a person's pause and promote across syncs.

The same real components as ``test_flux_e2e.py`` (Flux's source- and
kustomize-controller built here, git's HTTP backend on 127.0.0.1, the
``manifests/gitops/flux`` example, the real operator, MLServer pods on the
local cluster's real node, live traffic through the Service's ClusterIP).
Here the model Kustomization re-applies its commit during a rollout: its
health check gives up while the ModelDeployment is not Ready, after
``RESYNC.timeout`` (30 s, the least Flux allows), and Flux tries again
``RESYNC.retry_interval`` later, each try a full server-side apply pass.
kustomize-controller waits on a health check before anything else, so a
rollout shorter than the timeout sees a single apply; the canaries here are
long enough for two more.

- A replacement committed to Git: Flux applies it, Vigil runs its steps in
  order; every later apply pass of Flux during the rollout changes nothing
  (no drift: not the status, not anything the operator writes), the
  ModelDeployment's generation stays the one the commit gave it, the rollout
  is never restarted; Flux is Ready for the commit only after the promotion.
- A bad replacement: Vigil rolls it back; Flux's health check fails early
  naming the ModelDeployment as Failed (what kstatus calls stalled); Git and
  the spec still name the bad model; committing the previous model brings the
  ModelDeployment and Flux back to Ready without a new rollout.
- ``kubectl vigil pause`` during the canary holds across Flux's apply
  passes; a ``kubectl vigil promote`` placed while the operator is down is
  still there after a Flux apply pass and is taken once the operator is back.

Figures go to ``.vigil/e2e-logs/gitops-figures.jsonl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from kit.figures import Figures
from kit.flux import FluxControllers
from kit.gitops import (
    MODEL_PATH,
    FluxApply,
    FluxTiming,
    GitOps,
    flux_applies,
    model_files,
    ready_at,
    serving_live,
)
from kit.gitserver import git
from kit.kube import Kube
from kit.modeldeployment import ANALYSIS, ModelStore
from kit.operator import OperatorProcess, kubectl_vigil, wait_request_cleared
from kit.status import Status, at_step, condition, in_phase, promoted
from kit.traffic import LiveTraffic
from kit.waits import wait_deployments, wait_for, watch_until

from vigil.common.times import parse_unix
from vigil.devcluster.models import TrainedModel
from vigil.plugin.requests import ANNOTATION_REQUEST

record = Figures("gitops").record

#: Re-apply every 32 s during a rollout, every 4 s after (the module docstring says how).
RESYNC = FluxTiming(interval="4s", retry_interval="2s", timeout="30s")
#: The committed rollout: its canary (~70 s) spans two of Flux's re-applies (~32 s apart).
STEPS: list[dict[str, Any]] = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 20, "duration": "35s"}},
    {"canary": {"weight": 50, "duration": "35s"}},
]
#: A canary that only a person ends (the pause and promote scenario): no early advance.
SLOW: list[dict[str, Any]] = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 50, "duration": "600s"}},
]
SLOW_ANALYSIS = ANALYSIS | {"earlyAdvance": False}
#: Field managers of the ModelDeployment that are Flux's.
FLUX = "kustomize-controller"


@pytest.fixture
def kustomization_timing() -> FluxTiming:
    return RESYNC


@dataclass
class Served:
    """Model v1 committed to Git, applied by Flux, Ready, and serving live traffic."""

    gitops: GitOps
    model: TrainedModel
    commit: str
    stable: str
    traffic: LiveTraffic
    commit_to_ready: float


@pytest.fixture
def served(
    kube: Kube, store: ModelStore, operator: OperatorProcess, gitops: GitOps
) -> Iterator[Served]:
    model = store.train("wine-1", version="1", seed=0)
    commit = gitops.repository.commit(model_files(store, model, STEPS), "A new model: wine 1")
    pushed = time.monotonic()
    gitops.wait_ready_at(commit, timeout=180)
    commit_to_ready = time.monotonic() - pushed
    with serving_live(kube, model) as (traffic, stable):
        yield Served(gitops, model, commit, stable, traffic, commit_to_ready)


@dataclass
class Seen:
    """What the test saw, look by look, of the rollout and of Flux (wall-clock seconds)."""

    #: (time, step index, step name) each time the candidate's step changed.
    steps: list[tuple[float, int, str]] = field(default_factory=list)
    #: Every candidate revision and start time seen (one rollout: one of each).
    candidates: set[tuple[str, str]] = field(default_factory=set)
    #: (time, metadata.generation) at each look.
    generations: list[tuple[float, int]] = field(default_factory=list)
    #: When Flux was first seen Ready for the commit, and its Ready condition then.
    flux_ready_at: float | None = None
    flux_ready: dict[str, Any] = field(default_factory=dict)
    #: Flux's Ready messages, each as it changed.
    flux_messages: list[str] = field(default_factory=list)

    def look(self, kube: Kube, gitops: GitOps, commit: str) -> None:
        now = time.time()
        md = kube.get("md", "wine") or {}
        self.generations.append((now, int(md.get("metadata", {}).get("generation", 0))))
        now_candidate = (md.get("status") or {}).get("candidate") or {}
        if now_candidate.get("revision"):
            self.candidates.add((now_candidate["revision"], str(now_candidate.get("startedAt"))))
            step = (int(now_candidate.get("step", 0)), str(now_candidate.get("stepName")))
            if not self.steps or self.steps[-1][1:] != step:
                self.steps.append((now, *step))
        ks = gitops.kustomization()
        ready = condition(ks.get("status") or {}, "Ready")
        if ready.get("message") and (
            not self.flux_messages or self.flux_messages[-1] != ready["message"]
        ):
            self.flux_messages.append(str(ready["message"]))
        if self.flux_ready_at is None and ready_at(ks, commit):
            self.flux_ready_at, self.flux_ready = now, ready

    def wait_flux_ready(self, kube: Kube, gitops: GitOps, commit: str, timeout: float) -> None:
        """Looking on until Flux was seen Ready at ``commit``."""
        wait_for(
            lambda: self.look(kube, gitops, commit) or self.flux_ready_at is not None,
            timeout=timeout,
            what=lambda: f"Flux Ready for {commit}; Flux said: {self.flux_messages[-3:]}",
        )

    def poll(self, kube: Kube, gitops: GitOps, commit: str) -> Callable[[], None]:
        return lambda: self.look(kube, gitops, commit)


def applies_since(
    flux: FluxControllers, kube: Kube, gitops: GitOps, since: float
) -> list[FluxApply]:
    """Flux's apply passes of this test's Kustomization from ``since`` (Unix seconds) on."""
    log = flux.log("kustomize-controller")
    return [a for a in flux_applies(log, kube.namespace, gitops.name) if a.at >= since]


def md_key(kube: Kube) -> str:
    return f"ModelDeployment/{kube.namespace}/wine"


def spec_writers(kube: Kube) -> dict[str, float]:
    """Who wrote the ModelDeployment outside its status (managedFields), and when last."""
    md = kube.get("md", "wine", "--show-managed-fields") or {}
    writers = {}
    for entry in md["metadata"].get("managedFields") or []:
        if entry.get("subresource") != "status":
            at = parse_unix(entry.get("time"))
            assert at is not None, entry
            writers[f"{entry['manager']}/{entry['operation']}"] = at
    return writers


def holds(live: Any, declared: Any) -> bool:
    """Every field ``declared`` (Git's) is in ``live`` with its value (the API server adds
    the CRD's defaults to the live spec)."""
    if isinstance(declared, dict):
        return isinstance(live, dict) and all(
            key in live and holds(live[key], value) for key, value in declared.items()
        )
    if isinstance(declared, list):
        return (
            isinstance(live, list)
            and len(live) == len(declared)
            and all(holds(a, b) for a, b in zip(live, declared, strict=True))
        )
    return bool(live == declared)


def committed(gitops: GitOps) -> dict[str, Any]:
    """The ModelDeployment as Git's main branch holds it (what the server has, not the copy)."""
    text = git("show", f"main:{MODEL_PATH}/modeldeployment.yaml", cwd=gitops.repository.bare)
    return dict(yaml.safe_load(text))


def wait_applies(
    flux: FluxControllers, kube: Kube, gitops: GitOps, since: float, count: int, timeout: float
) -> list[FluxApply]:
    """At least ``count`` of Flux's apply passes after ``since``; all of them."""

    def enough() -> list[FluxApply] | None:
        found = applies_since(flux, kube, gitops, since)
        return found if len(found) >= count else None

    found = wait_for(enough, timeout=timeout, what=f"{count} apply passes of Flux")
    assert found is not None
    return found


# -- scenarios ------------------------------------------------------------------------


def test_a_replacement_committed_to_git_rolls_out_once_and_flux_resyncs_change_nothing(
    kube: Kube,
    store: ModelStore,
    operator: OperatorProcess,
    flux: FluxControllers,
    served: Served,
) -> None:
    gitops = served.gitops
    before = served.traffic.stats.failed
    replacement = store.train("wine-2", version="2", seed=1)
    files = model_files(store, replacement, STEPS)
    pushed_wall = time.time()
    commit = gitops.repository.commit(files, "Replace wine 1 with wine 2")
    pushed = time.monotonic()
    seen = Seen()
    watch = watch_until(
        kube, promoted("2"), 240, "wine 2 to be promoted", on_poll=seen.poll(kube, gitops, commit)
    )
    promoted_wall = time.time()
    commit_to_promoted = time.monotonic() - pushed
    seen.wait_flux_ready(kube, gitops, commit, timeout=60)
    commit_to_ready = seen.flux_ready_at - pushed_wall if seen.flux_ready_at else 0.0

    # Vigil ran the committed steps once, in order, for one candidate.
    assert watch.steps == ["shadow 100%", "canary 20%", "canary 50%"], watch.steps
    assert [index for _, index, _ in seen.steps] == [0, 1, 2], seen.steps
    assert len(seen.candidates) == 1, seen.candidates
    operator.wait_total("vigil_rollouts_total", 1, outcome="Promoted")
    assert watch.no_ready_pods == 0, watch.without_ready_pods
    # Flux: the commit's apply wrote both objects; every later pass wrote nothing.
    applies = applies_since(flux, kube, gitops, pushed_wall - 1)
    first, *resyncs = [a for a in applies if a.revision.endswith(commit)]
    assert first.changed().get(md_key(kube)) == "configured", first
    drift = [(a.at, a.changed()) for a in resyncs if a.changed()]
    assert not drift, f"Flux re-applied changes during the rollout (drift): {drift}"
    canary_from = next(at for at, _, name in seen.steps if name.startswith("canary"))
    in_canary = [a for a in resyncs if canary_from <= a.at <= promoted_wall]
    assert len(in_canary) >= 2, (seen.steps, [a.at for a in resyncs], promoted_wall)
    # Flux never wrote the spec after the commit's apply: one generation, Flux's field
    # manager last writing at that apply, the spec equal to Git's.
    md = kube.get("md", "wine") or {}
    after_apply = {generation for at, generation in seen.generations if at > first.at + 1}
    assert after_apply == {md["metadata"]["generation"]}, (first.at, seen.generations)
    writers = spec_writers(kube)
    assert set(writers) == {f"{FLUX}/Apply"}, writers
    assert writers[f"{FLUX}/Apply"] <= first.at + 1, (writers, first)
    assert holds(md["spec"], committed(gitops)["spec"]), md["spec"]
    # Flux Ready for the commit only once the model was promoted: the servers' times, each
    # Ready's lastTransitionTime (seconds), as test_flux_e2e.py compares them; Flux's as
    # first seen Ready for the commit (each later pass of Flux moves it on).
    md_ready = condition(md["status"], "Ready")
    assert md_ready["status"] == "True", md_ready
    flux_at = parse_unix(seen.flux_ready.get("lastTransitionTime"))
    model_at = parse_unix(md_ready.get("lastTransitionTime"))
    assert flux_at is not None and model_at is not None, (seen.flux_ready, md_ready)
    assert flux_at >= model_at, (seen.flux_ready, md_ready)
    wait_deployments(kube, [f"wine-{watch.last['stable']['revision']}"])
    stats = served.traffic.stop()
    assert stats.failed == before, f"{stats.failed - before} requests failed during the rollout"
    operator.assert_no_errors()
    record(
        "replacement-under-resyncs",
        commit_to_ready_seconds=round(commit_to_ready, 1),
        commit_to_promoted_seconds=round(commit_to_promoted, 1),
        first_commit_to_ready_seconds=round(served.commit_to_ready, 1),
        flux_apply_passes=len(applies),
        flux_apply_passes_in_canary=len(in_canary),
        flux_passes_that_wrote=1,
        steps=watch.steps,
        flux_messages=seen.flux_messages,
        traffic={"sent": stats.sent, "failed": stats.failed},
    )


def test_a_bad_replacement_committed_to_git_is_rolled_back_and_fails_flux_until_reverted(
    kube: Kube,
    store: ModelStore,
    operator: OperatorProcess,
    flux: FluxControllers,
    served: Served,
) -> None:
    gitops = served.gitops
    bad = store.train("wine-bad", version="2", shuffled_labels=True, seed=0)
    pushed_wall = time.time()
    commit = gitops.repository.commit(model_files(store, bad, STEPS), "Replace wine 1 (bad)")
    pushed = time.monotonic()
    seen = Seen()
    watch = watch_until(
        kube,
        in_phase("RolledBack"),
        150,
        "the rollback of the bad model",
        on_poll=seen.poll(kube, gitops, commit),
    )
    commit_to_rolled_back = time.monotonic() - pushed
    failed_early = f"{md_key(kube)} status: 'Failed'"

    def flux_failed() -> dict[str, Any] | None:
        status = gitops.kustomization().get("status") or {}
        ready = condition(status, "Ready")
        return (
            ready
            if str(status.get("lastAttemptedRevision", "")).endswith(commit)
            and ready.get("status") == "False"
            and failed_early in str(ready.get("message"))
            else None
        )

    flux_ready = wait_for(
        flux_failed,
        timeout=60,
        what=lambda: f"Flux's health check to fail; Flux said: {seen.flux_messages[-3:]}",
    )
    commit_to_flux_failed = time.monotonic() - pushed
    assert flux_ready["reason"] == "HealthCheckFailed", flux_ready
    assert "failed early due to stalled resources" in flux_ready["message"], flux_ready
    # Vigil's reason is on the ModelDeployment (Flux's message names the object, not why).
    md = kube.get("md", "wine") or {}
    ready, stalled = condition(md["status"], "Ready"), condition(md["status"], "Stalled")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack"), ready
    assert (stalled["status"], stalled["reason"]) == ("True", "RolledBack"), stalled
    assert "agreement" in stalled["message"], stalled
    assert watch.last["stable"]["revision"] == served.stable
    assert not watch.spanned, "the bad model must never get live traffic"
    # Git and the spec still name the bad model: the operator never writes the spec.
    assert committed(gitops)["spec"]["model"]["uri"] == store.uri(bad)
    assert holds(md["spec"], committed(gitops)["spec"]), md["spec"]
    assert set(spec_writers(kube)) == {f"{FLUX}/Apply"}
    # Flux keeps trying (an apply pass each time, writing nothing); the rollback holds.
    failed_wall = time.time()
    later = wait_applies(flux, kube, gitops, failed_wall, 2, timeout=60)
    assert not [a.changed() for a in later if a.changed()], later
    assert (kube.get("md", "wine") or {})["status"]["phase"] == "RolledBack"
    assert len(seen.candidates) == 1, seen.candidates
    wait_deployments(kube, [f"wine-{served.stable}"])

    # The previous model committed again: Ready again, the same stable, no new rollout.
    revert = gitops.repository.commit(
        model_files(store, served.model, STEPS), "Back to wine 1 (wine 2 was rolled back)"
    )
    reverted = time.monotonic()
    gitops.wait_ready_at(revert, timeout=90)
    revert_to_ready = time.monotonic() - reverted
    md = kube.get("md", "wine") or {}
    assert condition(md["status"], "Ready")["status"] == "True", md["status"]
    assert md["status"]["phase"] == "Healthy", md["status"]["phase"]
    assert md["status"]["stable"]["revision"] == served.stable
    assert not md["status"].get("candidate"), md["status"]
    operator.wait_total("vigil_rollouts_total", 1, outcome="RolledBack")
    assert operator.total("vigil_rollouts_total", outcome="Promoted") == 0
    operator.assert_no_errors()
    record(
        "bad-replacement",
        commit_to_rolled_back_seconds=round(commit_to_rolled_back, 1),
        commit_to_flux_failed_seconds=round(commit_to_flux_failed, 1),
        revert_to_ready_seconds=round(revert_to_ready, 1),
        flux_message=flux_ready["message"],
        vigil_message=stalled["message"],
        flux_apply_passes=len(applies_since(flux, kube, gitops, pushed_wall - 1)),
    )


def test_a_persons_pause_and_promote_survive_flux_resyncs(
    kube: Kube,
    store: ModelStore,
    operator: OperatorProcess,
    flux: FluxControllers,
    served: Served,
) -> None:
    gitops = served.gitops
    replacement = store.train("wine-2", version="2", seed=1)
    pushed_wall = time.time()
    commit = gitops.repository.commit(
        model_files(store, replacement, SLOW, deadline="300s", analysis=SLOW_ANALYSIS),
        "Replace wine 1 with wine 2",
    )
    seen = Seen()
    poll = seen.poll(kube, gitops, commit)
    watch = watch_until(kube, at_step("canary 50%"), 120, "the canary", on_poll=poll)

    # A pause holds across Flux's apply passes.
    kubectl_vigil(kube, "pause")
    watch = watch_until(
        kube,
        lambda s: condition(s, "Ready").get("reason") == "RolloutPaused",
        30,
        "the pause to be taken",
        watch,
        on_poll=poll,
    )
    paused_wall = time.time()
    held = watch.last["candidate"]
    while_paused = wait_applies(flux, kube, gitops, paused_wall, 1, timeout=60)
    now: Status = (kube.get("md", "wine") or {})["status"]
    assert condition(now, "Ready")["reason"] == "RolloutPaused", condition(now, "Ready")
    for key in ("revision", "startedAt", "step", "weight"):
        assert now["candidate"][key] == held[key], (key, now["candidate"], held)
    assert not [a.changed() for a in while_paused if a.changed()], while_paused

    # A promote placed while the operator is down waits in its annotation through a pass.
    operator.stop()
    kubectl_vigil(kube, "promote")
    requested_wall = time.time()
    while_pending = wait_applies(flux, kube, gitops, requested_wall, 1, timeout=60)
    annotations = (kube.get("md", "wine") or {})["metadata"].get("annotations") or {}
    assert annotations.get(ANNOTATION_REQUEST) == "promote", (annotations, while_pending)
    assert not [a.changed() for a in while_pending if a.changed()], while_pending
    operator.start()
    watch = watch_until(kube, promoted("2"), 90, "the promotion a person asked for", on_poll=poll)
    seen.wait_flux_ready(kube, gitops, commit, timeout=60)
    md = kube.get("md", "wine") or {}
    entry = md["status"]["history"][0]
    assert (entry["outcome"], entry["modelVersion"]) == ("Promoted", "2"), entry
    assert md["status"]["lastRequest"]["verb"] == "promote", md["status"]["lastRequest"]
    wait_request_cleared(kube)
    assert len(seen.candidates) == 1, seen.candidates
    assert holds(md["spec"], committed(gitops)["spec"]), md["spec"]
    applies = applies_since(flux, kube, gitops, pushed_wall - 1)
    wrote = [a for a in applies if a.changed()]
    assert len(wrote) == 1 and wrote[0].revision.endswith(commit), wrote
    operator.assert_no_errors()
    record(
        "pause-promote-across-syncs",
        flux_passes_while_paused=len(while_paused),
        flux_passes_while_promote_pending=len(while_pending),
        flux_apply_passes=len(applies),
        promote_to_flux_ready_seconds=round((seen.flux_ready_at or 0) - requested_wall, 1),
        steps=[name for _, _, name in seen.steps],
    )
