"""Drift after a reference ConfigMap edited in place (same name, same revision).

The health loop loads the new profile as soon as the ConfigMap changes and
the reconcile replaces the revision's pods; each sidecar bins its inputs by
the profile it read at its start. Until every pod reads the new one and
their counts fill a window, the window holds counts binned by the old
edges, which scored slot by slot against the new profile mean nothing.

The direct source keeps each pod's scrapes: drift is judged on the pods
whose ``vigil.dev/reference-digest`` is the current profile's. A source that
sums pods per revision (Prometheus) cannot tell them apart: the drift
verdict is held (Unknown) until every pod reads it and a window has passed.

Traffic is identical throughout (drawn from the training data), and both
profiles describe it (built from it, with other bins): any drift raised is
the bug's.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import pytest
from binning_sidecars import Sidecar, Sidecars, SummedByRevision
from test_reconciler import NOW, MemoryApi

from vigil.core.desired import reference_digest
from vigil.core.window import RevisionWindow
from vigil.metrics import PodTarget, RevisionTarget
from vigil.metrics.pool import SourcePool
from vigil.operator.health import HealthLoop
from vigil.operator.metrics import OperatorMetrics
from vigil.operator.reconciler import Reconciler, ReconcilerConfig
from vigil.profile import ReferenceProfile, build_profile

KEY = "profile.json"
TRAINING = np.random.default_rng(3).normal(size=(20000, 2))
#: The profile the pods started with, and the one written over it: the same data, other
#: bins (slot 3 of one is not slot 3 of the other).
OLD = build_profile(TRAINING, feature_names=["a", "b"], model_name="wine", bins=4)
NEW = build_profile(TRAINING, feature_names=["a", "b"], model_name="wine", bins=10)
WINDOW = 60.0
CYCLE = 10.0
ROWS = 400
PROMETHEUS = {"source": "prometheus", "prometheusURL": "http://prom:9090"}


def configmap(profile: ReferenceProfile, version: str) -> dict[str, Any]:
    return {
        "kind": "ConfigMap",
        "metadata": {"name": "ref", "namespace": "ml", "resourceVersion": version},
        "data": {KEY: profile.to_json()},
    }


def digest(profile: ReferenceProfile) -> str:
    return reference_digest(configmap(profile, "0"), KEY)


def mounting(name: str) -> dict[str, Any]:
    """The pod volume of the reference profile, as the operator renders it."""
    return {"name": "reference", "configMap": {"name": name, "items": [{"key": KEY, "path": KEY}]}}


def model(**metrics: Any) -> dict[str, Any]:
    monitoring: dict[str, Any] = {
        "window": "1m",
        "reference": {"configMapKeyRef": {"name": "ref", "key": KEY}},
    }
    if metrics:
        monitoring["metrics"] = metrics
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine", "namespace": "ml", "uid": "uid-wine", "generation": 1},
        "spec": {
            "model": {"version": "1"},
            "server": {"image": "img:1"},
            "monitoring": monitoring,
            "rollout": {"analysis": {"minRequests": 20}},
        },
        "status": {
            "phase": "Healthy",
            "stable": {"revision": "r1"},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": ""}
            ],
        },
    }


class Cluster:
    """One ModelDeployment, its reference ConfigMap and pods, and the health loop."""

    def __init__(self, **metrics: Any) -> None:
        self.api = MemoryApi()
        self.now = NOW
        self.sidecars = Sidecars(ROWS)
        self.prometheus = bool(metrics)
        self.source: Any = SummedByRevision(self.sidecars) if metrics else self.sidecars
        self.pods: dict[str, dict[str, Any]] = {}
        self.serial = 0
        self.api.add(model(**metrics))
        self.api.add(configmap(OLD, "1"))
        self.loop = self.start()
        for _ in range(3):
            self.add_pod(OLD)

    def start(self) -> HealthLoop:
        """A health loop, as an operator (re)started now has it."""
        reconciler = Reconciler(
            api_factory=lambda: self.api,
            config=ReconcilerConfig(sidecar_image="sidecar:test"),
            metrics=OperatorMetrics(),
            post_event=self.post_event,
            clock=lambda: self.now,
        )
        reconciler.nudge = lambda *args, **kwargs: None  # type: ignore[method-assign]
        loop = HealthLoop(
            lambda: self.api,
            reconciler,
            reconciler.metrics,
            interval=CYCLE,
            sources=SourcePool(lambda key: self.source),
            clock=lambda: self.now.timestamp(),
        )
        loop.observe_model("ADDED", self.api.objects[("ModelDeployment", "ml", "wine")])
        for body in self.pods.values():
            loop.observe_pod("ADDED", body)
        return loop

    async def post_event(self, api: Any, body: Any, event: Any) -> None:
        pass

    def add_pod(self, profile: ReferenceProfile) -> str:
        """A pod started from the template of ``profile``: its sidecar reads that profile."""
        self.serial += 1
        name = f"wine-r1-{self.serial}"
        self.pods[name] = {
            "metadata": {
                "name": name,
                "namespace": "ml",
                "labels": {"vigil.dev/model-deployment": "wine", "vigil.dev/revision": "r1"},
                "annotations": {"vigil.dev/reference-digest": digest(profile)},
            },
            "spec": {"volumes": [mounting("ref")]},
            "status": {"phase": "Running", "podIP": f"10.0.0.{self.serial}"},
        }
        self.sidecars.sidecars[name] = Sidecar(profile, self.serial, self.now.timestamp())
        self.loop.observe_pod("ADDED", self.pods[name])
        return name

    def delete_pod(self, name: str) -> None:
        self.loop.observe_pod("DELETED", self.pods.pop(name))

    def edit_reference(self) -> None:
        """The user writes the new profile over the old one, same ConfigMap name."""
        self.api.add(configmap(NEW, "2"))

    async def roll(self) -> None:
        """The Deployment replaces its pods one by one (a new one, then an old one goes)."""
        for name in [n for n, body in self.pods.items() if self.reads(body, OLD)]:
            self.add_pod(NEW)
            await self.cycle()
            self.delete_pod(name)
            await self.cycle()

    @staticmethod
    def reads(body: dict[str, Any], profile: ReferenceProfile) -> bool:
        return body["metadata"]["annotations"]["vigil.dev/reference-digest"] == digest(profile)

    async def cycle(self) -> dict[str, Any]:
        await self.loop.cycle()
        self.loop.observe_model("MODIFIED", self.api.objects[("ModelDeployment", "ml", "wine")])
        self.now += datetime.timedelta(seconds=CYCLE)
        return self.drift()

    async def edited_and_replaced_unseen(self) -> list[str]:
        """The ConfigMap edited and every pod replaced at once, Prometheus scraping, while the
        loop looked away; the replaced pods' names."""
        self.edit_reference()
        old = list(self.pods)
        for _ in old:
            self.add_pod(NEW)
        await self.scraped_meanwhile()
        for name in old:
            del self.pods[name]
        return old

    async def scraped_meanwhile(self) -> None:
        """Prometheus scrapes while no operator runs."""
        targets = [
            RevisionTarget(
                "ml",
                "wine",
                "r1",
                WINDOW,
                tuple(PodTarget(n, b["status"]["podIP"]) for n, b in self.pods.items()),
            )
        ]
        await self.sidecars.collect(targets, self.now.timestamp())
        self.now += datetime.timedelta(seconds=CYCLE)

    def drift(self) -> dict[str, Any]:
        status = self.api.objects[("ModelDeployment", "ml", "wine")]["status"]
        return next(c for c in status["conditions"] if c["type"] == "DriftDetected")


async def settled(cluster: Cluster) -> None:
    """Cycles until the loop judged a whole window of traffic in the old profile."""
    for _ in range(int(WINDOW / CYCLE) + 1):
        drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("False", "NoDrift"), drift


def seen(drifts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["status"], d["reason"]) for d in drifts}


# -- the direct source: drift judged on the pods that read the current profile -------------


async def test_identical_traffic_raises_no_drift_while_the_pods_move_to_an_edited_reference() -> (
    None
):
    cluster = Cluster()
    await settled(cluster)
    cluster.edit_reference()
    during = [await cluster.cycle()]  # the reconcile has not replaced any pod yet
    assert (during[0]["status"], during[0]["reason"]) == ("Unknown", "InsufficientData")
    assert "all 3 pods counted still read the previous reference profile" in during[0]["message"]
    for name in [n for n, body in cluster.pods.items() if cluster.reads(body, OLD)]:
        cluster.add_pod(NEW)
        during.append(await cluster.cycle())
        cluster.delete_pod(name)
        during.append(await cluster.cycle())
    for _ in range(int(WINDOW / CYCLE)):
        during.append(await cluster.cycle())
    assert ("True", "DriftAboveThreshold") not in seen(during)
    assert ("False", "DriftWarning") not in seen(during)
    assert any(
        "inputs counted on 3 of 4 pods: 1 still reads the previous reference profile"
        in d["message"]
        for d in during
    ), [d["message"] for d in during]


async def test_drift_is_judged_on_every_pod_again_once_the_previous_profile_left_the_window() -> (
    None
):
    cluster = Cluster()
    await settled(cluster)
    cluster.edit_reference()
    await cluster.roll()
    for _ in range(int(WINDOW / CYCLE)):
        drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("False", "NoDrift")
    assert "previous reference profile" not in drift["message"]
    health = cluster.api.objects[("ModelDeployment", "ml", "wine")]["status"]["health"]
    assert health["drift"]["level"] == "none" and set(health["drift"]["features"]) == {"a", "b"}


async def test_inputs_that_drifted_are_seen_on_the_pods_that_read_the_edited_reference() -> None:
    cluster = Cluster()
    await settled(cluster)
    cluster.edit_reference()
    old = list(cluster.pods)
    for _ in range(2):
        cluster.sidecars.sidecars[cluster.add_pod(NEW)].shift = 1.5
    drifts = [await cluster.cycle() for _ in range(3)]
    assert any(cluster.reads(cluster.pods[name], OLD) for name in old)
    assert drifts[-1]["status"] == "True" and drifts[-1]["reason"] == "DriftAboveThreshold"
    assert (
        "inputs counted on 2 of 5 pods: 3 still read the previous reference profile"
        in (drifts[-1]["message"])
    )


async def test_the_rollouts_still_read_every_pods_counts_from_the_shared_direct_source() -> None:
    cluster = Cluster()
    await settled(cluster)
    cluster.edit_reference()
    cluster.add_pod(NEW)
    await cluster.cycle()
    target = RevisionTarget(
        "ml",
        "wine",
        "r1",
        WINDOW,
        tuple(PodTarget(n, b["status"]["podIP"]) for n, b in cluster.pods.items()),
    )
    collection = await cluster.sidecars.collect([target], cluster.now.timestamp())
    window: RevisionWindow = collection.windows[target.key]
    # Every pod's inputs, the old pods' in the old bins: a rollout judges those itself.
    assert window.pods == 4 and window.input_rows == window.requests > 4 * ROWS


# -- a source that sums pods per revision (Prometheus): the drift verdict is held ----------


async def test_prometheus_holds_drift_until_every_pod_reads_the_edit_and_a_window_passed() -> None:
    cluster = Cluster(**PROMETHEUS)
    await settled(cluster)
    edited_at = cluster.now
    cluster.edit_reference()
    during = [await cluster.cycle()]
    await cluster.roll()
    last_old_gone = cluster.now
    while cluster.now < last_old_gone + datetime.timedelta(seconds=WINDOW - CYCLE):
        during.append(await cluster.cycle())
    assert seen(during) == {("Unknown", "InsufficientData")}
    assert {d["message"] for d in during} == {
        f"reference ConfigMap ref changed at {edited_at:%Y-%m-%dT%H:%M:%SZ}: drift is judged "
        "again once every pod reads it and 1m has passed"
    }
    # One transition for the whole hold: its message does not change from cycle to cycle.
    assert len({d["lastTransitionTime"] for d in during}) == 1
    drift = await cluster.cycle()
    drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("False", "NoDrift")


async def test_a_restarted_operator_holds_a_prometheus_drift_change_for_one_window() -> None:
    cluster = Cluster(**PROMETHEUS)
    await settled(cluster)
    # The operator is down: the ConfigMap is edited, the pods replaced (all at once),
    # Prometheus scrapes. The restarted operator sees no pod that reads the old profile.
    await cluster.edited_and_replaced_unseen()
    restarted_at = cluster.now
    cluster.loop = cluster.start()
    drifts = []
    while cluster.now < restarted_at + datetime.timedelta(seconds=WINDOW):
        drifts.append(await cluster.cycle())
    assert seen(drifts) == {("False", "NoDrift")}
    drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("False", "NoDrift")


@pytest.mark.parametrize("metrics", [{}, PROMETHEUS], ids=["direct", "prometheus"])
async def test_an_unedited_reference_is_judged_as_before(metrics: dict[str, str]) -> None:
    cluster = Cluster(**metrics)
    await settled(cluster)
    for sidecar in cluster.sidecars.sidecars.values():
        sidecar.shift = 1.5
    for _ in range(int(WINDOW / CYCLE) + 1):
        drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("True", "DriftAboveThreshold")
    assert "previous reference profile" not in drift["message"]


# -- review findings -------------------------------------------------------------------------


def condition(cluster: Cluster, kind: str, name: str = "wine") -> dict[str, Any]:
    status = cluster.api.objects[("ModelDeployment", "ml", name)]["status"]
    return next(c for c in status["conditions"] if c["type"] == kind)


async def restarted_then_drifting() -> Cluster:
    """Prometheus settled; the operator restarted (a drift change is held a window); the
    inputs drift from then on; one cycle run."""
    cluster = Cluster(**PROMETHEUS)
    await settled(cluster)
    cluster.loop = cluster.start()
    for sidecar in cluster.sidecars.sidecars.values():
        sidecar.shift = 1.5
    await cluster.cycle()
    return cluster


async def test_a_restart_holds_only_drift_an_error_rate_breach_is_written_at_once() -> None:
    cluster = await restarted_then_drifting()
    await cluster.cycle()
    for sidecar in cluster.sidecars.sidecars.values():
        sidecar.failing = True  # an outage, 30 s after the restart
    evaluated = cluster.now
    drift = await cluster.cycle()

    healthy = condition(cluster, "Healthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "ErrorRateHigh"), healthy
    health = cluster.api.objects[("ModelDeployment", "ml", "wine")]["status"]["health"]
    assert health["evaluatedAt"] == f"{evaluated:%Y-%m-%dT%H:%M:%SZ}"
    assert health["errorRate"] > 0.1
    # The drift verdict alone is held, figures and condition.
    assert (drift["status"], drift["reason"]) == ("False", "NoDrift")
    assert health["drift"]["level"] == "none"


async def test_the_drift_gauge_holds_with_the_status_after_a_restart() -> None:
    cluster = await restarted_then_drifting()
    result = await cluster.loop.cycle()

    fresh = result.reports[("ml", "wine")]  # measured, held back from status
    assert fresh.drift_level != "none" and (fresh.drift_score or 0) > 0.1
    assert condition(cluster, "DriftDetected")["reason"] == "NoDrift"
    health = cluster.api.objects[("ModelDeployment", "ml", "wine")]["status"]["health"]
    gauge = cluster.loop.metrics.health_of("ml", "wine").drift_score
    assert gauge == health["drift"]["score"] < 0.1, (gauge, health["drift"])


def add_model_reading(cluster: Cluster, name: str, key: str, profile: ReferenceProfile) -> None:
    """Another ModelDeployment reading another key of the ConfigMap ``ref``, with its pods."""
    configmap = cluster.api.objects[("ConfigMap", "ml", "ref")]
    configmap["data"][key] = profile.to_json()
    other = model()
    other["metadata"].update(name=name, uid=f"uid-{name}")
    other["spec"]["monitoring"]["reference"]["configMapKeyRef"]["key"] = key
    cluster.api.add(other)
    cluster.loop.observe_model("ADDED", other)
    for i in range(3):
        pod = f"{name}-r1-{i}"
        body = {
            "metadata": {
                "name": pod,
                "namespace": "ml",
                "labels": {"vigil.dev/model-deployment": name, "vigil.dev/revision": "r1"},
                "annotations": {"vigil.dev/reference-digest": reference_digest(configmap, key)},
            },
            "status": {"phase": "Running", "podIP": f"10.0.1.{i}"},
        }
        cluster.sidecars.sidecars[pod] = Sidecar(profile, 100 + i, cluster.now.timestamp())
        cluster.loop.observe_pod("ADDED", body)


@pytest.mark.parametrize("metrics", [{}, PROMETHEUS], ids=["direct", "prometheus"])
async def test_two_models_reading_two_keys_of_one_configmap_are_both_judged(
    metrics: dict[str, str],
) -> None:
    cluster = Cluster(**metrics)
    add_model_reading(cluster, "beer", "beer.json", NEW)
    for _ in range(int(WINDOW / CYCLE) + 3):
        await cluster.cycle()
        cluster.loop.observe_model(
            "MODIFIED", cluster.api.objects[("ModelDeployment", "ml", "beer")]
        )
    for name in ("wine", "beer"):
        drift = condition(cluster, "DriftDetected", name)
        assert (drift["status"], drift["reason"]) == ("False", "NoDrift"), (name, drift)


async def test_prometheus_judges_drift_though_an_evicted_pod_of_the_old_profile_is_listed() -> None:
    cluster = Cluster(**PROMETHEUS)
    await settled(cluster)
    name = cluster.add_pod(OLD)
    cluster.pods[name]["status"] = {"phase": "Failed", "reason": "Evicted"}  # the API keeps it
    cluster.loop.observe_pod("MODIFIED", cluster.pods[name])
    del cluster.sidecars.sidecars[name]
    cluster.pods.pop(name)  # out of the roll; still listed to the loop
    cluster.edit_reference()
    await cluster.roll()
    for _ in range(int(WINDOW / CYCLE) + 1):
        drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("False", "NoDrift"), drift


def rename_reference(cluster: Cluster) -> None:
    """The documented way to ship a retrained profile: a new ConfigMap named in the spec;
    the stable's pods keep the old one for the whole rollout."""
    renamed = configmap(NEW, "5")
    renamed["metadata"]["name"] = "ref-v2"
    cluster.api.add(renamed)
    body = cluster.api.objects[("ModelDeployment", "ml", "wine")]
    body["spec"]["monitoring"]["reference"]["configMapKeyRef"]["name"] = "ref-v2"
    cluster.loop.observe_model("MODIFIED", body)


@pytest.mark.parametrize("metrics", [{}, PROMETHEUS], ids=["direct", "prometheus"])
async def test_a_spec_naming_a_new_configmap_judges_the_stable_on_the_one_its_pods_mount(
    metrics: dict[str, str],
) -> None:
    cluster = Cluster(**metrics)
    await settled(cluster)
    rename_reference(cluster)
    drifts = [await cluster.cycle() for _ in range(3)]
    assert seen(drifts) == {("False", "NoDrift")}, drifts

    for sidecar in cluster.sidecars.sidecars.values():
        sidecar.shift = 1.5
    for _ in range(int(WINDOW / CYCLE) + 1):
        drift = await cluster.cycle()
    assert (drift["status"], drift["reason"]) == ("True", "DriftAboveThreshold"), drift


@pytest.mark.parametrize("metrics", [{}, PROMETHEUS], ids=["direct", "prometheus"])
async def test_pods_that_do_not_say_what_they_mount_are_not_judged_on_a_renamed_reference(
    metrics: dict[str, str],
) -> None:
    """Pods whose spec shows no reference volume the loop can read, yet whose sidecars read
    a profile: their bins may be another profile's, so drift is not judged on them."""
    cluster = Cluster(**metrics)
    await settled(cluster)
    for body in cluster.pods.values():
        del body["spec"]
        cluster.loop.observe_pod("MODIFIED", body)
    rename_reference(cluster)
    drifts = [await cluster.cycle() for _ in range(4)]

    assert seen(drifts) == {("Unknown", "InsufficientData")}
    messages = {d["message"] for d in drifts}
    assert len(messages) == 1, messages  # no message moving from cycle to cycle
    (message,) = messages
    assert "read another reference profile than ConfigMap ref-v2 (a spec change" in message
    assert "changed" not in message and "once every pod reads it" not in message
    assert len({d["lastTransitionTime"] for d in drifts}) == 1


async def test_an_edit_of_the_specs_new_configmap_reconciles_the_model_during_the_rollout() -> None:
    """The candidate's template carries the spec's profile digest: an edit in place of the
    new ConfigMap must reach the reconcile, though the stable is judged on the old one."""
    cluster = Cluster()
    await settled(cluster)
    nudged: list[tuple[str, ...]] = []
    cluster.loop.reconciler.nudge = lambda *key, **_: nudged.append(key)  # type: ignore[method-assign]
    rename_reference(cluster)
    await cluster.cycle()
    nudged.clear()
    edited = configmap(OLD, "6")
    edited["metadata"]["name"] = "ref-v2"
    cluster.api.add(edited)
    await cluster.cycle()
    assert nudged == [("ml", "wine")]


@pytest.mark.parametrize("metrics", [{}, PROMETHEUS], ids=["direct", "prometheus"])
async def test_a_pruned_old_configmap_leaves_the_stable_with_no_reference(
    metrics: dict[str, str],
) -> None:
    """GitOps may prune the ConfigMap the stable's pods mount when the spec names the new
    one: no profile then describes their bins, nor its validation score their labels."""
    cluster = Cluster(**metrics)
    await settled(cluster)
    rename_reference(cluster)
    del cluster.api.objects[("ConfigMap", "ml", "ref")]
    drifts = [await cluster.cycle() for _ in range(3)]
    assert seen(drifts) == {("Unknown", "NoReference")}


async def test_the_stables_own_configmap_edited_during_a_rollout_says_no_pod_is_replaced() -> None:
    cluster = Cluster(**PROMETHEUS)
    await settled(cluster)
    rename_reference(cluster)
    await cluster.cycle()
    cluster.edit_reference()  # ConfigMap ref, which the stable's pods mount
    drifts = [await cluster.cycle() for _ in range(int(2 * WINDOW / CYCLE))]
    assert seen(drifts) == {("Unknown", "InsufficientData")}
    assert (
        "(the spec names another ConfigMap: no pod of this revision is replaced)"
        in (drifts[-1]["message"])
    )


async def test_a_standby_made_active_holds_a_prometheus_drift_change_for_one_window() -> None:
    """Paused by peering, the loop saw none of the pods replaced meanwhile."""
    cluster = Cluster(**PROMETHEUS)
    await settled(cluster)
    cluster.loop.active = False
    await cluster.cycle()
    for name in await cluster.edited_and_replaced_unseen():
        del cluster.loop.pods[("ml", name)]  # gone unseen
    active_at = cluster.now
    cluster.loop.active = True
    drifts = []
    while cluster.now < active_at + datetime.timedelta(seconds=WINDOW):
        drifts.append(await cluster.cycle())
    assert seen(drifts) == {("False", "NoDrift")}
