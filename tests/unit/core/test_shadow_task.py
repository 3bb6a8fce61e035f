"""The stable's sidecar is told the task in its shadow settings when the spec names it.

Without a reference profile the stable's sidecar guesses the task from the answers: a
classifier answering P(class 1) per row then reads as a regression. The spec names the
task by its performance limit (``minAccuracy``: a classifier, ``maxMAE``: a regressor);
an older sidecar, which would refuse the key, is not told.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from core_world import RolloutWorld, serving, spec
from figures_kit import figures as seen

from vigil.core.candidate import RolloutInputs
from vigil.sidecar.config import settings_from_mapping

GOOD = seen(requests=100, latency_p95=0.01, compared=100, agreement=0.99)
ROLLOUT = {
    "replacement": {"steps": [{"shadow": {"duration": "10s", "percent": 100}}]},
    "analysis": {"interval": "2s", "minRequests": 20},
}


def _shadowing(monitoring: dict[str, Any] | None = None) -> tuple[RolloutWorld, str]:
    """A shadow step under way: (world, stable revision)."""
    world, stable = serving(ROLLOUT, RolloutWorld())
    extra = {"monitoring": monitoring} if monitoring else {}
    world.set_spec(spec("2", 2, rollout=ROLLOUT, **extra))
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://10.0.0.9:8000")
    world.pods_ready(candidate)
    world.reconcile()
    assert world.shadow(stable)["targetRevision"] == candidate
    return world, stable


@pytest.mark.parametrize(
    "performance, task",
    [({"minAccuracy": 0.8}, "classification"), ({"maxMAE": 2.0}, "regression")],
)
def test_the_spec_names_the_task_to_the_stables_sidecar(performance: dict[str, Any], task: str):
    world, stable = _shadowing({"performance": performance})
    block = world.shadow(stable)
    assert block["task"] == task
    # The sidecar reads the settings as written.
    data = world.objects[("ConfigMap", f"wine-{stable}-sidecar")]["data"]["sidecar.json"]
    assert settings_from_mapping(json.loads(data)).shadow.task == task


def test_without_a_performance_limit_no_task_is_written():
    world, stable = _shadowing()
    assert "task" not in world.shadow(stable)


def test_a_stable_running_another_sidecar_image_is_not_told(monkeypatch):
    # Its sidecar may be older than the key: it would refuse the settings and copy nothing.
    world, stable = serving(ROLLOUT, RolloutWorld())
    sidecar = next(
        c
        for c in world.deployment(stable)["spec"]["template"]["spec"]["containers"]
        if c["name"] == "sidecar"
    )
    sidecar["image"] = "ghcr.io/vigil-dev/vigil:older"
    world.set_spec(spec("2", 2, rollout=ROLLOUT, monitoring={"performance": {"minAccuracy": 0.8}}))
    world.reconcile()
    candidate = world.status["candidate"]["revision"]
    world.inputs = RolloutInputs(figures=GOOD, shadow_target="http://10.0.0.9:8000")
    world.pods_ready(candidate)
    world.reconcile()
    block = world.shadow(stable)
    assert block["targetRevision"] == candidate
    assert "task" not in block


def test_without_one_in_the_spec_a_reference_profiles_task_is_written():
    # The candidate brings the first reference profile: its task tells the stable's sidecar,
    # which has no profile to read it from.
    world, stable = _shadowing()
    world.inputs = RolloutInputs(
        figures=GOOD, shadow_target="http://10.0.0.9:8000", profile_task="classification"
    )
    world.reconcile()
    assert world.shadow(stable)["task"] == "classification"
