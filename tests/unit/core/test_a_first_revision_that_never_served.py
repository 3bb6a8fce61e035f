"""A first revision that never served, and the spec that fixes it: a first deployment again.

The first revision's pods never became ready (DeployFailed, ArtifactFetchFailed):
there is nothing to judge a change against. The fixed spec's revision is
deployed as a first one (change "new", no steps), live traffic to it at once,
and the revision that never served is removed at once; no status says it
keeps serving. A first deployment cut short before its status write keeps
its change "new" and its Deployed Event.
"""

from __future__ import annotations

from typing import Any

from core_world import RolloutWorld, World, judged, spec
from figures_kit import figures as seen
from kubelet_pods import failed

from vigil.core.candidate import Request, RolloutInputs
from vigil.core.reconcile import decide

SHADOW_THEN_CANARY = {
    "replacement": {
        "steps": [
            {"shadow": {"duration": "10s", "percent": 100, "minRequests": 20}},
            {"canary": {"weight": 50, "duration": "10s"}},
        ]
    },
    "tweak": {"steps": [{"canary": {"weight": 50, "duration": "5s"}}]},
    "analysis": {"interval": "2s", "minRequests": 20},
    "progressDeadline": "60s",
}
CANARY = {
    "replacement": {"steps": [{"canary": {"weight": 50, "duration": "10s"}}]},
    "analysis": {"interval": "2s", "minRequests": 20},
    "progressDeadline": "60s",
}
REFERENCE = {"reference": {"configMapKeyRef": {"name": "r", "key": "k"}}}
GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)


def model(uri: str) -> dict[str, Any]:
    return {"name": "wine", "version": "1", "uri": uri}


def never_ready(world: World, rollout: dict[str, Any]) -> str:
    """Version 1 deployed; its Deployment gives up, no pod ever ready: (its revision)."""
    world.spec = spec("1", 2, rollout=rollout)
    world.reconcile()
    first = world.status["stable"]["revision"]
    world.pods_ready(first, 0)
    world.deadline_exceeded(first)
    world.reconcile()
    assert world.condition("Ready")["reason"] == "DeployFailed"
    return first


def run(world: RolloutWorld, revision: str, cycles: int = 70) -> list[str]:
    """Cycles with the fixed revision's pods ready: the Ready messages said meanwhile, and
    the Service selecting the fixed revision alone all along (never a canary's span)."""
    said = []
    for _ in range(cycles):
        if world.deployment(revision) is not None:
            world.pods_ready(revision)
        world.reconcile()
        said.append(world.condition("Ready")["message"])
        assert (
            world.objects[("Service", "wine")]["spec"]["selector"].get("vigil.dev/revision")
            == revision
        )
    return said


def assert_live_as_a_first_revision(world: World, first: str, fixed: str) -> None:
    assert world.status["phase"] == "Healthy"
    assert world.service_revision() == fixed
    assert world.deployment(first) is None
    assert "candidate" not in world.status
    entry = world.status["history"][0]
    assert (entry["revision"], entry["change"], entry["outcome"]) == (fixed, "new", "Deployed")


class TestTheFixOfAFirstRevisionThatNeverServed:
    def test_skips_the_shadow_step_and_goes_live_once_available(self) -> None:
        world = RolloutWorld()
        first = never_ready(world, SHADOW_THEN_CANARY)
        world.set_spec(spec("2", 2, rollout=SHADOW_THEN_CANARY))
        plan = world.reconcile()
        fixed = world.status["revision"]
        # Live at once, as a first revision; the one that never served goes now.
        assert world.service_revision() == fixed
        assert world.deployment(first) is None
        assert world.status["stable"]["revision"] == fixed
        assert world.condition("Ready")["reason"] == "Deploying"
        assert [e.reason for e in plan.events] == ["Deployed"]
        assert f"in place of revision {first}, which never served" in plan.events[0].message
        world.inputs = RolloutInputs(figures=seen(requests=0, compared=0), shadow_target="x")
        said = run(world, fixed)
        assert_live_as_a_first_revision(world, first, fixed)
        assert not any("keeps serving" in message for message in said)
        reasons = {e.reason for p in world.plans for e in p.events}
        assert not reasons & {"RolloutStarted", "RolloutFailed", "StepStarted"}

    def test_skips_the_canary_step_that_would_measure_the_stable(self) -> None:
        world = RolloutWorld()
        wrong = model("s3://models/wine/1/WRONG.tar.gz")
        world.spec = spec("1", 2, model=wrong, rollout=CANARY)
        world.reconcile()
        first = world.status["revision"]
        world.pods_ready(first, 0)
        world.kubelet(failed(first))
        world.reconcile()
        assert world.condition("Ready")["reason"] == "ArtifactFetchFailed"
        fixed_model = model("s3://models/wine/1/model.tar.gz")
        world.set_spec(spec("1", 2, model=fixed_model, rollout=CANARY))
        world.reconcile()
        fixed = world.status["revision"]
        world.inputs = RolloutInputs(
            metrics_available=False,
            shadow_target="x",
            metrics_error="the stable: the revision has no running pods to scrape",
        )
        said = run(world, fixed)
        assert_live_as_a_first_revision(world, first, fixed)
        assert not any("keeps serving" in message for message in said)
        assert not any(p.status.get("candidate") for p in world.plans)

    def test_refused_meanwhile_still_deploys_as_a_first_revision(self) -> None:
        world = RolloutWorld()
        first = never_ready(world, SHADOW_THEN_CANARY)
        world.set_spec(spec("2", 2, rollout=SHADOW_THEN_CANARY, monitoring=REFERENCE))
        world.reference_found = False
        world.reconcile()
        # Ready's reason no longer says the stable never served; its message says none serves.
        message = world.condition("Ready")["message"]
        assert world.condition("Ready")["reason"] == "ReferenceNotFound"
        assert message.endswith(f"revision {first} has no ready pod: nothing serves")
        world.reference_found = True
        world.reconcile()
        fixed = world.status["revision"]
        assert world.service_revision() == fixed and world.deployment(first) is None
        run(world, fixed, cycles=3)
        assert_live_as_a_first_revision(world, first, fixed)

    def test_a_promote_meanwhile_is_answered_and_the_fix_serves_all_the_same(self) -> None:
        world = RolloutWorld()
        first = never_ready(world, SHADOW_THEN_CANARY)
        world.set_spec(spec("2", 2, rollout=SHADOW_THEN_CANARY))
        world.reconcile()
        fixed = world.status["revision"]
        world.request = Request("promote", "id-1", fixed)
        world.reconcile()
        assert world.request is None and world.status["lastRequest"]["id"] == "id-1"
        run(world, fixed, cycles=3)
        assert world.status["phase"] == "Healthy" and world.deployment(first) is None

    def test_a_stable_that_served_and_lost_its_pods_keeps_its_steps(self) -> None:
        world = RolloutWorld()
        world.spec = spec("1", 2, rollout=CANARY)
        world.reconcile()
        stable = world.status["revision"]
        world.pods_ready(stable)
        world.reconcile()
        world.pods_ready(stable, 0)
        world.reconcile()
        world.set_spec(spec("2", 2, rollout=CANARY))
        world.reconcile()
        assert world.status["candidate"]["change"] == "replacement"
        assert world.deployment(stable) is not None
        assert world.status["stable"]["revision"] == stable


class TestAFirstDeploymentCutShort:
    def test_records_change_new_and_posts_its_deployed_event_once(self) -> None:
        world = World()
        world.spec = spec("1", 2)
        cut = decide(world.observe())  # applied; the operator stops before the status write
        world.carry_out(cut.actions)
        plan = world.reconcile()
        revision = world.status["stable"]["revision"]
        entry = world.status["history"][0]
        assert (entry["revision"], entry["change"], entry["outcome"]) == (
            revision,
            "new",
            "Deployed",
        )
        assert entry["reason"] == "first revision of this ModelDeployment"
        # Posted again under the same name (its occurrence): a conflict if it was posted.
        assert [(e.reason, e.message, e.occurrence) for e in plan.events] == [
            (e.reason, e.message, e.occurrence) for e in cut.events
        ]
        assert cut.events[0].occurrence
        assert world.condition("Ready")["reason"] == "Deploying"
        assert world.reconcile().events == []

    def test_the_fix_of_one_that_never_served_keeps_its_words(self) -> None:
        world = RolloutWorld()
        first = never_ready(world, SHADOW_THEN_CANARY)
        world.set_spec(spec("2", 2, rollout=SHADOW_THEN_CANARY))
        cut = decide(world.observe())
        world.carry_out(cut.actions)
        plan = world.reconcile()
        fixed = world.status["stable"]["revision"]
        assert world.deployment(first) is None and world.service_revision() == fixed
        assert [e.occurrence for e in plan.events] == [e.occurrence for e in cut.events]
        entry = world.status["history"][0]
        assert (entry["revision"], entry["change"]) == (fixed, "new")
        assert entry["reason"] == cut.status["history"][0]["reason"]


class TestARevisionGoneBackToAfterAFailedBake:
    """Traffic went back to version 1 (its bake failed version 2): Ready turned False
    (RolledBack) the instant version 1 became the stable again, as a first revision's does.
    Version 1 served then: a cycle with no pod of it ready makes it no first revision."""

    @staticmethod
    def gone_back(rollout: dict[str, Any]) -> tuple[RolloutWorld, str, str]:
        world = RolloutWorld()
        world.spec = spec("1", 1, rollout=rollout)
        world.reconcile()
        v1 = world.status["stable"]["revision"]
        world.pods_ready(v1)
        world.reconcile()
        world.set_spec(spec("2", 1, rollout=rollout))
        world.reconcile()
        v2 = world.status["candidate"]["revision"]
        world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://x")
        for _ in range(60):
            world.pods_ready(v2)
            world.reconcile()
            if world.status["stable"]["revision"] == v2:
                break
        world.inputs = None
        world.reconcile()
        judged(world, "Healthy", False, "ErrorRateHigh", "error rate 9% > 1%")
        world.pods_ready(v1)
        for _ in range(3):
            world.reconcile()
        assert world.status["stable"]["revision"] == v1 and world.service_revision() == v1
        assert world.status["stable"]["since"] == world.condition("Ready")["lastTransitionTime"]
        return world, v1, v2

    def test_held_out_its_pod_restarting_keeps_it_serving(self) -> None:
        world, v1, v2 = self.gone_back({"bake": {"duration": "10m", "minReplicas": 1}})
        world.reconcile(3600)
        world.pods_ready(v1, 0)  # its one pod restarts
        plan = world.reconcile()
        assert plan.actions == [] and [e.reason for e in plan.events] == []
        assert world.service_revision() == v1 and world.names("Deployment") == [f"wine-{v1}"]
        assert world.status["phase"] == "RolledBack" and world.status["revision"] == v2

    def test_a_new_version_keeps_its_steps_when_its_pod_restarts(self) -> None:
        rollout = {**SHADOW_THEN_CANARY, "bake": {"duration": "10m", "minReplicas": 1}}
        world, v1, _v2 = self.gone_back(rollout)
        world.reconcile(600)
        world.set_spec(spec("3", 1, rollout=rollout))
        world.reconcile()
        v3 = world.status["candidate"]["revision"]
        world.pods_ready(v1, 0)
        world.reconcile()
        assert world.service_revision() == v1 and world.deployment(v1) is not None
        assert world.status["candidate"]["revision"] == v3
        assert world.status["candidate"]["change"] == "replacement"
        assert [h["revision"] for h in world.status["history"]][-1] == v1
