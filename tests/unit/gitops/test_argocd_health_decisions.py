"""The Argo CD health check (manifests/gitops/argocd/health.lua), run by a real Lua interpreter."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import lupa
import pytest

import yaml_kit
from vigil.core.desired import Owner
from vigil.core.reconcile import Observation, decide

ROOT = Path(__file__).resolve().parents[3]
ARGOCD = ROOT / "manifests" / "gitops" / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


def md(generation: int = 2, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"metadata": {"generation": generation}, "spec": spec}
    if status is not None:
        value["status"] = status
    return value


def ready(flag: str, message: str = "m") -> list[dict[str, str]]:
    return [{"type": "Ready", "status": flag, "reason": "R", "message": message}]


def test_the_configmap_patch_embeds_the_same_script() -> None:
    patch = yaml_kit.load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["data"]["resource.customizations.health.vigil.dev_ModelDeployment"] == SCRIPT


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (md(status=None), "Progressing"),
        (md(status={"phase": "Healthy"}), "Progressing"),
        (md(status={"observedGeneration": 1, "phase": "Healthy"}), "Progressing"),
        (
            md(status={"observedGeneration": 2, "phase": "Healthy", "conditions": ready("True")}),
            "Healthy",
        ),
        (
            md(
                status={
                    "observedGeneration": 2,
                    "phase": "Progressing",
                    "conditions": ready("False"),
                }
            ),
            "Progressing",
        ),
        (
            md(status={"observedGeneration": 2, "phase": "Failed", "conditions": ready("False")}),
            "Degraded",
        ),
        (
            md(
                status={
                    "observedGeneration": 2,
                    "phase": "RolledBack",
                    "conditions": ready("False"),
                }
            ),
            "Degraded",
        ),
        (
            md(status={"observedGeneration": 2, "phase": "Degraded", "conditions": ready("True")}),
            "Degraded",
        ),
        # spec.paused alone (no pause reason: a first deploy, a scale) is no pause.
        (
            md(
                status={
                    "observedGeneration": 2,
                    "phase": "Progressing",
                    "conditions": ready("False"),
                },
                paused=True,
            ),
            "Progressing",
        ),
    ],
)
def test_health_follows_the_status(obj: dict[str, Any], expected: str) -> None:
    assert health(obj)[0] == expected


def test_the_message_is_the_ready_condition_message() -> None:
    status = {
        "observedGeneration": 2,
        "phase": "Failed",
        "conditions": ready("False", "revision x did not become available"),
    }
    assert health(md(status=status)) == ("Degraded", "Failed: revision x did not become available")


def test_a_status_the_operator_computes_reads_as_progressing_then_degraded() -> None:
    observation = Observation(
        owner=Owner("wine", "ml", "uid"),
        generation=1,
        spec={"model": {"version": "1"}, "server": {"image": "i"}},
        status={},
        deployments=[],
        service=None,
        configmaps=[],
        reference_found=True,
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        sidecar_image="s",
    )
    status = decide(observation).status
    assert health(md(generation=1, status=status))[0] == "Progressing"
    long_name = Observation(**{**observation.__dict__, "owner": Owner("n" * 60, "ml", "u")})
    status = decide(long_name).status
    assert health(md(generation=1, status=status))[0] == "Degraded"


def test_the_operators_bake_and_spec_paused_read_as_the_tools_should() -> None:
    """A bake reads Progressing until it passes; spec.paused alone suspends no deploy."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "unit" / "core"))
    from core_world import World, judged, promoted_with_bake, spec

    def seen(world: World) -> tuple[str, str]:
        return health(md(generation=world.generation, status=world.status, **world.spec))

    # spec.paused holds rollouts only: the first deploy goes on (was Suspended).
    world = World()
    world.spec = spec("1", 2, paused=True)
    world.reconcile()
    assert seen(world)[0] == "Progressing"
    world.pods_ready(world.status["stable"]["revision"])
    world.reconcile()
    assert seen(world)[0] == "Healthy"

    world, _, _ = promoted_with_bake()
    # Switched, Ready True, baking: not Healthy yet (was Healthy).
    assert world.condition("Ready")["status"] == "True"
    assert seen(world)[0] == "Progressing"
    judged(world, "Healthy", True, "SLOsMet", "error rate 0.0% <= 1.0%")
    world.reconcile(60)
    assert seen(world)[0] == "Progressing"
    world.reconcile(600)
    assert "bake" not in world.status
    assert seen(world)[0] == "Healthy"
