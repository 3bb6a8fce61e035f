"""The candidate's reference ConfigMap edited in place (same name) during a rollout's step.

Each reconcile renders the candidate's pod template with the profile's digest
(``vigil.dev/reference-digest``), so the edit replaces the candidate's pods
while the step runs; each sidecar bins its inputs by the profile it read at
its start. The step's window then holds counts in the old profile's bins (the
pods replaced, and those gone, for the part of the window they were alive)
beside counts in the new one's, and scored slot by slot against the new
profile they mean nothing: an identical candidate failed ``inputDrift``.

The direct source keeps each pod's scrapes: the candidate's input figures are
counted on the pods that read the current profile, and the gate is not judged
while none does. A source that sums pods per revision (Prometheus) cannot
tell them apart: the gate is not judged for the rest of the step.

Traffic is identical on both revisions and throughout (drawn from the
training data), and every profile describes it (built from it, with other
bins): any drift the gate sees is the bug's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from binning_sidecars import Sidecar, Sidecars, SummedByRevision
from running_pods import running_in

from vigil.common.times import format_unix
from vigil.core.analysis import CandidateFigures
from vigil.core.desired import Owner, RevisionInfo, desired_deployment, reference_digest
from vigil.core.judges import gates
from vigil.core.revision import compute_revision
from vigil.core.spec import parse_policy, parse_spec
from vigil.core.vocabulary import GateVerdict
from vigil.metrics.pool import SourcePool
from vigil.operator.health import PodInfo
from vigil.operator.rollouts import Rollouts
from vigil.profile import ReferenceProfile, build_profile

KEY = "profile.json"
SERVER = {"image": "seldonio/mlserver:1.7.1-sklearn"}
TRAINING = np.random.default_rng(3).normal(size=(20000, 2))
PREDICTED = TRAINING[:, 0] + TRAINING[:, 1]
#: The stable's profile, in its own ConfigMap (never edited).
STABLE = build_profile(
    TRAINING, predictions=PREDICTED, feature_names=["a", "b"], model_name="wine", bins=10
)
#: The candidate's profile as its pods started with it, and the one written over it in place:
#: the same data, other bins (slot 3 of one is not slot 3 of the other).
OLD = build_profile(
    TRAINING, predictions=PREDICTED, feature_names=["a", "b"], model_name="wine", bins=4
)
NEW = build_profile(
    TRAINING,
    predictions=PREDICTED,
    feature_names=["a", "b"],
    model_name="wine",
    model_version="2",
    bins=10,
)
ROWS = 400
CYCLE = 10.0
T0 = 1_800_000_000.0
POLICY = parse_policy({"replacement": {"steps": [{"canary": {"weight": 50}}]}}, "replacement")
PROMETHEUS = {"source": "prometheus", "prometheusURL": "http://prom:9090"}


def configmap(name: str, profile: ReferenceProfile) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": name}, "data": {KEY: profile.to_json()}}


def digest(name: str, profile: ReferenceProfile) -> str:
    return reference_digest(configmap(name, profile), KEY)


def spec_of(version: str, reference: str, **metrics: Any) -> Any:
    monitoring: dict[str, Any] = {"reference": {"configMapKeyRef": {"name": reference, "key": KEY}}}
    if metrics:
        monitoring["metrics"] = metrics
    return parse_spec(
        "wine", {"model": {"version": version}, "server": SERVER, "monitoring": monitoring}
    )


class ReadsTheStablesConfigMap:
    """The API: only the stable's ConfigMap is read (the candidate's, the reconciler read)."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        assert (kind, name) == ("ConfigMap", "ref-1"), (kind, name)
        return configmap("ref-1", STABLE)


class Rollout:
    """A stepped rollout of a retrained model with its own ConfigMap ``ref-2``; the stable
    reads ``ref-1``. Two candidate pods and one stable pod, each serving ROWS a cycle."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, shared: bool = False, **metrics: Any
    ) -> None:
        #: The stable's ConfigMap and profile: its own, or the candidate's as it was.
        self.stable = ("ref-2", OLD) if shared else ("ref-1", STABLE)
        self.spec = spec_of("2", "ref-2", **metrics)
        self.candidate = compute_revision(self.spec, "")
        self.profile = OLD
        self.now = T0
        self.step_started = T0
        self.sidecars = Sidecars(ROWS)
        source: Any = SummedByRevision(self.sidecars) if metrics else self.sidecars
        self.pods: dict[tuple[str, str], PodInfo] = {}
        self.serial = 0
        self.start_operator(monkeypatch, source)
        self.add_pod("s1", self.stable[1], digest(*self.stable))
        self.add_pod(self.candidate, OLD, digest("ref-2", OLD))
        self.add_pod(self.candidate, OLD, digest("ref-2", OLD))

    def start_operator(self, monkeypatch: pytest.MonkeyPatch, source: Any) -> None:
        """A new process's Rollouts over these pods and metrics (it remembers nothing)."""
        self.rollouts = Rollouts(
            running_in(lambda: self.pods),
            sources=SourcePool(lambda key: source),
            clock=lambda: self.now,
        )

        async def answering(*_args: Any) -> str:
            return "http://wine-c.ml.svc:80"

        monkeypatch.setattr(self.rollouts, "candidate_url", answering)

    def add_pod(self, revision: str, profile: ReferenceProfile, read: str) -> str:
        self.serial += 1
        name = f"wine-{revision[:4]}-{self.serial}"
        self.pods[("ml", name)] = PodInfo(
            "wine", revision, f"10.0.0.{self.serial}", True, None, read
        )
        started = self.now if self.now > T0 else T0 - 3600  # the first ones before the step
        self.sidecars.sidecars[name] = Sidecar(profile, self.serial, started, revision)
        return name

    def replace_a_candidate_pod(self) -> None:
        """The rolling update: one pod reading the ConfigMap as it is now, one old pod gone."""
        read = digest("ref-2", self.profile)
        old = next(
            key
            for key, info in self.pods.items()
            if info.revision == self.candidate and info.reference_digest != read
        )
        self.add_pod(self.candidate, self.profile, read)
        del self.pods[old]

    def evict_a_candidate_pod(self) -> None:
        """The rolling update with an old pod evicted rather than deleted: the API keeps
        listing it (phase Failed), not running."""
        read = digest("ref-2", self.profile)
        old = next(
            key
            for key, info in self.pods.items()
            if info.revision == self.candidate and info.reference_digest != read and info.running
        )
        self.add_pod(self.candidate, self.profile, read)
        self.pods[old] = dataclasses.replace(self.pods[old], ip="", running=False)

    def deployments(self) -> dict[str, Any]:
        """The revisions' Deployments as the reconciler renders them (with the ConfigMap as it
        is now: the candidate's template follows an edit, the stable's is not rendered again)."""

        def render(revision: str, spec: Any, role: str, read: str) -> dict[str, Any]:
            return desired_deployment(
                Owner("wine", "ml", "uid-1"),
                spec,
                RevisionInfo(revision, f"id-{revision}", role),
                sidecar_image="",
                replicas=2,
                reference_digest=read,
            )

        return {
            "s1": render("s1", spec_of("1", self.stable[0]), "stable", digest(*self.stable)),
            self.candidate: render(
                self.candidate, self.spec, "candidate", digest("ref-2", self.profile)
            ),
        }

    async def warm_then_edit(self) -> None:
        """Three cycles on the profile the pods started with, then the ConfigMap edited."""
        for _ in range(3):
            await self.cycle()
        self.profile = NEW

    async def cycle(self) -> tuple[CandidateFigures, Any]:
        """One reconcile's measure, CYCLE after the last: the figures and the inputDrift gate."""
        self.now += CYCLE
        body = {
            "metadata": {"namespace": "ml", "name": "wine"},
            "status": {
                "stable": {"revision": "s1"},
                "candidate": {
                    "revision": self.candidate,
                    "stepStartedAt": format_unix(self.step_started),
                },
            },
        }
        inputs = await self.rollouts.inputs(
            ReadsTheStablesConfigMap(),  # type: ignore[arg-type]
            body,
            self.spec,
            self.deployments(),
            configmap("ref-2", self.profile),
        )
        assert inputs is not None and inputs.figures is not None, inputs
        gate = next(
            (g for g in gates(POLICY.steps[0], POLICY, inputs.figures) if g.name == "inputDrift"),
            None,
        )
        return inputs.figures, gate


def judged_and_passing(gate: Any) -> bool:
    return (
        gate is not None
        and gate.text.startswith("input drift of ")
        and gate.verdict != GateVerdict.FAIL
    )


EDITED = (
    "input drift not judged: the candidate's reference ConfigMap ref-2 was edited during this step"
)


async def test_identical_traffic_passes_input_drift_before_any_edit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = Rollout(monkeypatch)
    for _ in range(3):
        figures, gate = await rollout.cycle()

    assert len(figures.input_drift) == 2
    assert judged_and_passing(gate), gate.text
    assert figures.prediction_shift_basis == "on the stable's bins"


async def test_direct_input_drift_is_not_judged_while_every_pod_counted_reads_the_old_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = Rollout(monkeypatch)
    for _ in range(3):
        await rollout.cycle()
    rollout.profile = NEW  # edited in place: the reconcile measures, then renders the pods

    figures, gate = await rollout.cycle()

    assert figures.input_drift == ()
    assert gate.verdict == GateVerdict.UNDECIDED and gate.within  # said, holding no step
    assert gate.text.startswith(EDITED), gate.text
    assert "all 2 pods counted still read the previous profile" in gate.text
    assert f"(current {digest('ref-2', NEW)}, pods read {digest('ref-2', OLD)})" in gate.text
    # The predictions' bins are the old profile's too: the shift falls back to the moments.
    assert figures.prediction_shift_basis == "from mean and std"


async def test_direct_input_drift_is_counted_on_the_pods_that_read_the_edited_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = Rollout(monkeypatch)
    await rollout.warm_then_edit()
    await rollout.cycle()
    rollout.replace_a_candidate_pod()
    await rollout.cycle()
    rollout.replace_a_candidate_pod()  # both old pods gone, counted still for their part

    for _ in range(3):
        figures, gate = await rollout.cycle()

    assert len(figures.input_drift) == 2
    assert judged_and_passing(gate), gate.text
    assert all(f.candidate.estimate < 0.05 for f in figures.input_drift), figures.input_drift
    assert figures.prediction_shift_basis == "on the stable's bins"
    # The live requests are every pod's, the old ones' too: only the input figures move.
    served = sum(s.rows for s in rollout.sidecars.sidecars.values() if s.revision != "s1")
    assert figures.live.requests == served - 2 * ROWS  # the first scrape of those before it


async def test_direct_pods_of_both_profiles_count_only_the_edited_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = Rollout(monkeypatch)
    await rollout.warm_then_edit()
    rollout.replace_a_candidate_pod()  # one pod of each

    for _ in range(3):
        figures, gate = await rollout.cycle()

    assert judged_and_passing(gate), gate.text
    assert all(f.candidate.estimate < 0.05 for f in figures.input_drift), figures.input_drift


async def test_prometheus_input_drift_is_not_judged_for_the_rest_of_the_step_after_an_edit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = Rollout(monkeypatch, **PROMETHEUS)
    await rollout.warm_then_edit()
    await rollout.cycle()
    rollout.replace_a_candidate_pod()
    await rollout.cycle()
    rollout.replace_a_candidate_pod()

    for _ in range(3):  # every pod reads the edited profile now: the window holds both
        figures, gate = await rollout.cycle()
        assert figures.input_drift == ()
        assert gate.verdict == GateVerdict.UNDECIDED and gate.within
        assert gate.text.startswith(EDITED), gate.text
        assert figures.prediction_shift_basis == "from mean and std"

    # The next step counts from its start: only pods that read the edited profile.
    rollout.step_started = rollout.now
    for _ in range(3):
        figures, gate = await rollout.cycle()

    assert judged_and_passing(gate), gate.text
    assert figures.prediction_shift_basis == "on the stable's bins"


async def test_prometheus_input_drift_is_not_judged_before_the_candidates_pods_are_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ConfigMap edited, its pods' template not yet rendered again: the figures measured
    before the reconcile writes it are in the old bins."""
    rollout = Rollout(monkeypatch, **PROMETHEUS)
    await rollout.warm_then_edit()

    figures, gate = await rollout.cycle()

    assert figures.input_drift == ()
    assert gate.text.startswith(EDITED), gate.text


async def test_a_shared_configmap_edited_says_why_for_both_revisions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stable's pods are not replaced during a rollout: its reason first (46c01ad)."""
    rollout = Rollout(monkeypatch, shared=True)
    await rollout.warm_then_edit()

    figures, gate = await rollout.cycle()

    stable, candidate = figures.input_drift_unjudged.split("; ")
    assert stable.startswith("the stable's reference ConfigMap ref-2 was edited")
    assert candidate.startswith("the candidate's reference ConfigMap ref-2 was edited")
    assert gate.verdict == GateVerdict.UNDECIDED and gate.within
    assert figures.prediction_shift_basis == "from mean and std"


async def test_prometheus_judges_the_next_step_though_evicted_pods_of_the_old_profile_are_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An evicted pod stays listed (phase Failed): it counts nothing since it stopped."""
    rollout = Rollout(monkeypatch, **PROMETHEUS)
    await rollout.warm_then_edit()
    await rollout.cycle()
    rollout.evict_a_candidate_pod()
    await rollout.cycle()
    rollout.evict_a_candidate_pod()
    await rollout.cycle()

    rollout.step_started = rollout.now
    for _ in range(3):
        _, gate = await rollout.cycle()

    assert judged_and_passing(gate), gate.text


def restart(rollout: Rollout, monkeypatch: pytest.MonkeyPatch, source: Any) -> None:
    """The operator restarts now: the same metrics and step, a new process's Rollouts
    (what it remembered of the pods gone)."""
    rollout.start_operator(monkeypatch, source)


async def test_direct_input_drift_is_judged_after_a_restart_within_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The direct source counts only what this process scraped, pod by pod: no restart gap."""
    rollout = Rollout(monkeypatch)
    for _ in range(3):
        await rollout.cycle()
    restart(rollout, monkeypatch, rollout.sidecars)
    for _ in range(3):
        _, gate = await rollout.cycle()

    assert judged_and_passing(gate), gate.text
