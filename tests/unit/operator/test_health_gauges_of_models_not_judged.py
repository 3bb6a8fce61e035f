"""A ModelDeployment the health loop no longer judges exports no health gauges.

Deleting (a foreign finalizer holds it), or its monitoring settings unusable:
the loop skips it, and its last figures were exported as current for as long
(error rate 0.1, metrics available 1, its SLO), an alert on them firing.
Dropped, not marked unavailable: the figures and limits describe nothing the
loop measures any more, and a model with no figures yet shows none either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_health_loop import BAD, Loop, md, pod

from vigil.operator.metrics import HealthFigures

LABELS = {"namespace": "ml", "name": "wine"}
HEALTH_GAUGES = (
    ("vigil_modeldeployment_error_rate", {**LABELS, "revision": "r1"}),
    ("vigil_modeldeployment_metrics_available", LABELS),
    ("vigil_modeldeployment_slo_max_error_rate", LABELS),
)


@pytest.fixture
def loop() -> Loop:
    return Loop()


def deleting(body: dict[str, Any]) -> None:
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["metadata"]["finalizers"] = ["example.com/hold"]


def unusable(body: dict[str, Any]) -> None:
    body["spec"]["monitoring"]["window"] = "soon"


@pytest.mark.parametrize("change", [deleting, unusable], ids=["deleting", "unusable-settings"])
async def test_a_model_the_loop_skips_loses_its_health_gauges(
    loop: Loop, change: Callable[[dict[str, Any]], None]
) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = BAD
    await loop.cycle()
    assert loop.sample("vigil_modeldeployment_error_rate", **LABELS, revision="r1") == 0.1
    loop.metrics.set_phase("ml", "wine", "Degraded")
    change(loop.api.objects[("ModelDeployment", "ml", "wine")])
    loop.loop.observe_model("MODIFIED", loop.api.objects[("ModelDeployment", "ml", "wine")])
    result = await loop.cycle()
    assert result.evaluated == 0
    assert all(loop.sample(metric, **labels) is None for metric, labels in HEALTH_GAUGES)
    # The phase is the reconciler's: it stays.
    assert loop.sample("vigil_modeldeployment_phase", **LABELS, phase="Degraded") == 1


async def test_settings_usable_again_bring_the_gauges_back(loop: Loop) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = BAD
    body = loop.api.objects[("ModelDeployment", "ml", "wine")]
    unusable(body)
    loop.loop.observe_model("MODIFIED", body)
    await loop.cycle()
    assert loop.sample("vigil_modeldeployment_metrics_available", **LABELS) is None
    body["spec"]["monitoring"]["window"] = "30s"
    loop.loop.observe_model("MODIFIED", body)
    await loop.cycle()
    assert loop.sample("vigil_modeldeployment_error_rate", **LABELS, revision="r1") == 0.1


async def test_a_deleted_model_skipped_after_stays_guarded_against_late_writes(
    loop: Loop,
) -> None:
    loop.add(md(), pod("wine-a"))
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = BAD
    await loop.cycle()
    loop.loop.observe_model("DELETED", md())
    loop.metrics.drop_health("ml", "wine")
    # A health write under way at the deletion sets nothing after.
    loop.metrics.set_health("ml", "wine", HealthFigures("r1", error_rate=0.1))
    assert loop.sample("vigil_modeldeployment_error_rate", **LABELS, revision="r1") is None
