"""The Argo CD health check for ModelDeployment, run in real Lua runtimes over status fixtures.

Argo CD runs resource health scripts in gopher-lua, a Lua 5.1 VM; the
script is run here in Lua 5.1 and 5.4 (lupa) so it relies on nothing
version-specific. Fixtures follow docs and api.md: the status shapes the
operator writes in each phase of a rollout.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lupa.lua51
import lupa.lua54
import pytest

import yaml_kit

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = (ROOT / "manifests" / "gitops" / "argocd" / "health.lua").read_text()
PATCH = ROOT / "manifests" / "gitops" / "argocd" / "argocd-cm-patch.yaml"
RUNTIMES = {"lua5.1": lupa.lua51.LuaRuntime, "lua5.4": lupa.lua54.LuaRuntime}


def run(obj: dict[str, Any], runtime: str = "lua5.1", script: str = SCRIPT) -> tuple[str, str]:
    lua = RUNTIMES[runtime](unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return str(result["status"]), str(result["message"])


def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def model(
    *,
    generation: int = 4,
    observed: int | None = 4,
    phase: str | None = "Healthy",
    conditions: list[dict[str, str]] | None = None,
    paused: bool | None = None,
    candidate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "wine", "version": "3"},
        "server": {"image": "seldonio/mlserver:1.7.1-sklearn"},
        "replicas": 2,
    }
    if paused is not None:
        spec["paused"] = paused
    obj: dict[str, Any] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine", "namespace": "ml", "generation": generation},
        "spec": spec,
    }
    status: dict[str, Any] = {
        "stable": {"revision": "7f3c2a1", "modelVersion": "2", "replicas": 2, "readyReplicas": 2}
    }
    if observed is not None:
        status["observedGeneration"] = observed
    if phase is not None:
        status["phase"] = phase
    if conditions is not None:
        status["conditions"] = conditions
    if candidate is not None:
        status["candidate"] = candidate
    obj["status"] = status
    return obj


CANDIDATE = {"revision": "9b1e4d0", "modelVersion": "3", "change": "replacement", "step": 1}
HEALTHY = [
    condition("Ready", "True", "Available", "revision 7f3c2a1 serves 2/2"),
    condition("Progressing", "False", "Complete", "revision 7f3c2a1 serves 2/2"),
    condition("Healthy", "True", "WithinSLO", "ok"),
]
IN_PROGRESS = [
    condition("Ready", "False", "RolloutInProgress", "canary 20%: 1 candidate pod"),
    condition("Progressing", "True", "RolloutInProgress", "step 2/4 (canary 20%)"),
]

FIXTURES: list[tuple[str, dict[str, Any], str, str]] = [
    ("healthy", model(conditions=HEALTHY), "Healthy", "serves 2/2"),
    (
        "never observed",
        model(observed=None, phase=None, conditions=None),
        "Progressing",
        "observe the latest spec",
    ),
    (
        "observedGeneration behind",
        model(generation=5, conditions=HEALTHY),
        "Progressing",
        "observe the latest spec",
    ),
    (
        "behind even after a rollback (a new spec is a new attempt)",
        model(
            generation=5,
            phase="RolledBack",
            conditions=[condition("Ready", "False", "RolledBack", "agreement 0.81 < 0.95")],
        ),
        "Progressing",
        "observe the latest spec",
    ),
    (
        "rollout in progress",
        model(phase="Progressing", conditions=IN_PROGRESS, candidate=CANDIDATE),
        "Progressing",
        "canary 20%",
    ),
    (
        "holding on missing data",
        model(
            phase="Progressing",
            conditions=[
                condition("Ready", "False", "InsufficientData", "12 candidate requests < 50"),
                condition("Progressing", "True", "InsufficientData", "holding"),
                condition("MetricsAvailable", "False", "InsufficientData", "12 < 50"),
            ],
            candidate=CANDIDATE,
        ),
        "Progressing",
        "12 candidate requests",
    ),
    (
        "rolled back",
        model(
            phase="RolledBack",
            conditions=[
                condition("Ready", "False", "RolledBack", "agreement 0.81 vs 0.95 in 2 checks"),
                condition("Progressing", "False", "RolledBack", "rolled back"),
            ],
        ),
        "Degraded",
        "RolledBack: agreement 0.81 vs 0.95",
    ),
    (
        "failed (progress deadline)",
        model(
            phase="Failed",
            conditions=[
                condition("Ready", "False", "ProgressDeadlineExceeded", "candidate not ready"),
            ],
        ),
        "Degraded",
        "Failed: candidate not ready",
    ),
    (
        "degraded while Ready (SLO breach on the stable)",
        model(
            phase="Degraded",
            conditions=[condition("Ready", "True", "Available", "error rate 5% > 1%")],
        ),
        "Degraded",
        "Degraded: error rate",
    ),
    (
        "degraded without conditions",
        model(phase="Degraded", conditions=None),
        "Degraded",
        "Degraded: ",
    ),
    (
        "paused by spec.paused",
        model(
            phase="Progressing",
            paused=True,
            conditions=[
                condition("Ready", "False", "RolloutPaused", "paused (spec.paused)"),
                condition("Progressing", "False", "RolloutPaused", "paused (spec.paused)"),
            ],
            candidate=CANDIDATE,
        ),
        "Suspended",
        "paused (spec.paused)",
    ),
    (
        "paused by a person (kubectl vigil pause)",
        model(
            phase="Progressing",
            conditions=[
                condition("Ready", "False", "RolloutInProgress", "paused by a person at step 2/4"),
                condition("Progressing", "True", "Paused", "paused by a person at step 2/4"),
            ],
            candidate=CANDIDATE,
        ),
        "Suspended",
        "paused by a person",
    ),
    (
        "a pause step waiting for a person",
        model(
            phase="Progressing",
            conditions=[
                condition("Ready", "False", "WaitingForPerson", "kubectl vigil resume wine"),
            ],
            candidate=CANDIDATE,
        ),
        "Suspended",
        "kubectl vigil resume",
    ),
    # Ready True while something is still under way: not Healthy yet (these
    # three read Healthy before the Lua looked at Progressing).
    (
        "baking after the switch (the bake can still send traffic back)",
        model(
            conditions=[
                condition("Ready", "True", "Available", "revision 9b1e4d0 serves 2/2"),
                condition("Progressing", "True", "Baking", "baking revision 9b1e4d0 until 10:30"),
                condition("Reconciling", "True", "Baking", "baking revision 9b1e4d0 until 10:30"),
            ],
        ),
        "Progressing",
        "baking revision 9b1e4d0",
    ),
    (
        "scaling while Ready",
        model(
            conditions=[
                condition("Ready", "True", "Available", "revision 7f3c2a1 serves 2/2"),
                condition("Progressing", "True", "Scaling", "scaling to 4"),
            ],
        ),
        "Progressing",
        "scaling to 4",
    ),
    (
        "a failed bake going back stays Degraded",
        model(
            phase="Degraded",
            conditions=[
                condition("Ready", "True", "Available", "revision 9b1e4d0 serves 2/2"),
                condition("Progressing", "True", "BakeFailed", "going back to 7f3c2a1"),
            ],
        ),
        "Degraded",
        "Degraded: revision 9b1e4d0",
    ),
    # spec.paused holds only rollouts: a first deploy or a scale under it
    # goes on, so it is not Suspended (both read Suspended before).
    (
        "spec.paused on a first deploy",
        model(
            observed=1,
            generation=1,
            phase="Pending",
            paused=True,
            conditions=[
                condition("Ready", "False", "Deploying", "revision 7f3c2a1: 0/2 ready"),
                condition("Progressing", "True", "Deploying", "revision 7f3c2a1: 0/2 ready"),
            ],
        ),
        "Progressing",
        "0/2 ready",
    ),
    (
        "spec.paused during a scale",
        model(
            phase="Progressing",
            paused=True,
            conditions=[
                condition("Ready", "False", "Scaling", "revision 7f3c2a1: 2/4 ready"),
                condition("Progressing", "True", "Scaling", "revision 7f3c2a1: 2/4 ready"),
            ],
        ),
        "Progressing",
        "2/4 ready",
    ),
    (
        "spec.paused with nothing to roll out stays Healthy",
        model(paused=True, conditions=HEALTHY),
        "Healthy",
        "serves 2/2",
    ),
    (
        "spec.paused false is not Suspended",
        model(phase="Progressing", paused=False, conditions=IN_PROGRESS),
        "Progressing",
        "canary",
    ),
]


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize(
    ("obj", "expected", "message"),
    [pytest.param(obj, expected, message, id=name) for name, obj, expected, message in FIXTURES],
)
def test_health(obj, expected, message, runtime):
    status, text = run(copy.deepcopy(obj), runtime)
    assert status == expected
    assert message in text


def test_every_argo_status_is_covered():
    assert {expected for _, _, expected, _ in FIXTURES} == {
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
    }


def test_the_configmap_patch_carries_the_same_script():
    patch = yaml_kit.load(PATCH.read_text())
    embedded = patch["data"]["resource.customizations.health.vigil.dev_ModelDeployment"]
    assert embedded == SCRIPT
    for _, obj, expected, _ in FIXTURES:
        assert run(copy.deepcopy(obj), script=embedded)[0] == expected


def test_no_status_at_all_is_progressing():
    obj = model()
    del obj["status"]
    assert run(obj) == ("Progressing", "Waiting for the operator to observe the latest spec")


def test_the_configmap_patch_ignores_the_plugin_request_annotations():
    from vigil.plugin.cli import FIELD_MANAGER
    from vigil.plugin.requests import REQUEST_ANNOTATIONS

    patch = yaml_kit.load(PATCH.read_text())
    ignore = yaml_kit.load(
        patch["data"]["resource.customizations.ignoreDifferences.vigil.dev_ModelDeployment"]
    )
    pointers = {
        "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        for key in REQUEST_ANNOTATIONS
    }
    assert set(ignore["jsonPointers"]) == pointers
    assert ignore["managedFieldsManagers"] == [FIELD_MANAGER]
