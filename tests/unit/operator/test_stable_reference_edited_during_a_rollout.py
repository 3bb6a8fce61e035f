"""A reference ConfigMap edited in place by the commit that starts a rollout.

The candidate's pods read the new profile; the stable's pods are not replaced
during a rollout, so their sidecars go on counting inputs in the old profile's
bins. Scored against the ConfigMap's new text (slots match by index), the
stable's input drift, which the inputDrift gate compares the candidate's with,
would mean nothing: the gate is not judged, and says why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from running_pods import running_in

from vigil.core import drift
from vigil.core.desired import Owner, RevisionInfo, desired_deployment, reference_digest
from vigil.core.judges import gates
from vigil.core.revision import compute_revision
from vigil.core.spec import parse_policy, parse_spec
from vigil.core.vocabulary import GateVerdict
from vigil.core.window import RevisionWindow
from vigil.metrics.pool import SourcePool
from vigil.metrics.source import Collection
from vigil.operator.health import PodInfo
from vigil.operator.rollouts import Rollouts
from vigil.profile import build_profile

KEY = "profile.json"
REFERENCE = {"reference": {"configMapKeyRef": {"name": "wine-ref", "key": KEY}}}
SERVER = {"image": "seldonio/mlserver:1.7.1-sklearn"}
LIVE = np.random.default_rng(7).normal(size=(3000, 2))
#: The profile the stable's pods started with, and the one the commit wrote over it
#: (other bin edges: a profile rebuilt from other training data).
OLD = build_profile(LIVE, feature_names=["a", "b"], model_name="wine")
NEW = build_profile(LIVE * 3.0 + 2.0, feature_names=["a", "b"], model_name="wine")


def _configmap(profile: Any) -> dict[str, Any]:
    return {"metadata": {"name": "wine-ref"}, "data": {KEY: profile.to_json()}}


def _binned(profile: Any) -> RevisionWindow:
    """The live rows counted in ``profile``'s bins, as the sidecars reading it count them."""
    bins = {}
    for feature in profile.features:
        slots = drift.bin_index(LIVE[:, feature.index], feature.edges)
        bins[feature.name] = {
            str(slot): float((slots == slot).sum()) for slot in range(len(feature.proportions))
        }
    rows = float(len(LIVE))
    return RevisionWindow(requests_by_outcome={"success": rows}, input_rows=rows, feature_bins=bins)


class EachInItsBins:
    """Both revisions measured: the candidate's sidecars count in the new profile's bins,
    the stable's in the profile their pods started with."""

    def __init__(self, stable_profile: Any) -> None:
        self.stable_profile = stable_profile

    async def collect(self, targets, now):
        candidate, stable = targets
        return Collection(
            windows={candidate.key: _binned(NEW), stable.key: _binned(self.stable_profile)}
        )

    async def close(self) -> None:
        pass


class NoApi:
    """The reconciler read the ConfigMap already: nothing is read again."""

    async def get(self, kind: str, namespace: str, name: str) -> None:
        raise AssertionError(f"{kind} {name} read again")


def _stable_deployment(started_with: Any, *, annotated: bool = True) -> dict[str, Any]:
    """The stable's Deployment as the reconciler rendered it when its pods started."""
    spec = parse_spec(
        "wine", {"model": {"version": "1"}, "server": SERVER, "monitoring": REFERENCE}
    )
    digest = reference_digest(_configmap(started_with), KEY) if annotated else ""
    return desired_deployment(
        Owner("wine", "ml", "uid-1"),
        spec,
        RevisionInfo("s1", "id-s1", "stable"),
        sidecar_image="",
        replicas=2,
        reference_digest=digest,
    )


async def _input_drift_gate(
    monkeypatch: pytest.MonkeyPatch, stable_started_with: Any, *, annotated: bool = True
) -> tuple[Any, Any]:
    """The rollout's inputs this cycle and its inputDrift gate, the ConfigMap holding NEW."""
    # The same commit tweaks the config: a candidate, with the same ConfigMap's name.
    spec = parse_spec(
        "wine",
        {
            "model": {"version": "1"},
            "server": SERVER,
            "monitoring": REFERENCE,
            "config": {"WORKERS": "2"},
        },
    )
    candidate = compute_revision(spec, "")
    pods = {
        ("ml", "wine-c-a"): PodInfo("wine", candidate, "10.0.0.7", True),
        ("ml", "wine-s1-a"): PodInfo("wine", "s1", "10.0.0.3", True),
    }
    source = EachInItsBins(stable_started_with)
    rollouts = Rollouts(running_in(lambda: pods), sources=SourcePool(lambda key: source))

    async def answering(*_args: Any) -> str:
        return "http://wine-c.ml.svc:80"

    monkeypatch.setattr(rollouts, "candidate_url", answering)
    body = {
        "metadata": {"namespace": "ml", "name": "wine"},
        "status": {"stable": {"revision": "s1"}},
    }
    deployments = {
        candidate: {},
        "s1": _stable_deployment(stable_started_with, annotated=annotated),
    }
    inputs = await rollouts.inputs(NoApi(), body, spec, deployments, _configmap(NEW))  # type: ignore[arg-type]
    assert inputs is not None and inputs.figures is not None, inputs
    policy = parse_policy({"replacement": {"steps": [{"canary": {"weight": 50}}]}}, "replacement")
    (gate,) = (g for g in gates(policy.steps[0], policy, inputs.figures) if g.name == "inputDrift")
    return inputs, gate


async def test_the_stables_counts_in_the_old_bins_are_not_scored_against_the_edited_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs, gate = await _input_drift_gate(monkeypatch, OLD)

    assert inputs.figures.input_drift == ()
    assert gate.verdict == GateVerdict.UNDECIDED and gate.within  # said, holding no step
    old, new = reference_digest(_configmap(OLD), KEY), reference_digest(_configmap(NEW), KEY)
    assert gate.text == (
        "input drift not judged: the stable's reference ConfigMap wine-ref was edited since "
        f"the stable's pods started (digest {new}, pods {old})"
    )


async def test_a_stable_started_with_the_current_profile_is_judged_as_always(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs, gate = await _input_drift_gate(monkeypatch, NEW)

    assert len(inputs.figures.input_drift) == 2
    assert gate.text.startswith("input drift of ")


async def test_stable_pods_without_a_reference_digest_read_the_configmap_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pods rendered before the digest was written: nothing to compare, today's reading."""
    inputs, gate = await _input_drift_gate(monkeypatch, NEW, annotated=False)

    assert len(inputs.figures.input_drift) == 2
    assert gate.text.startswith("input drift of ")
