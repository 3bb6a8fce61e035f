"""What the rollouts keep of a ModelDeployment goes with it, however it is deleted.

A foreground cascade deletion (or one of an object with no children) ends in
a DELETED event and no reconcile that finds the object gone. Kept, the routing
failure, the golden replay's pending reason and the pods' reads would pass to
an object created again under the name: 'routing not applied', and a
RoutingApplied for a failure it never had.
"""

from __future__ import annotations

import datetime
import types

import kopf
from running_pods import running_in
from test_health_loop import GOOD, Loop, md, pod
from test_reconciler import model_deployment
from test_rollout_io import GATEWAY_BODY, RecordingApi

from vigil.core.reconcile import Route
from vigil.core.rollout import Traffic
from vigil.operator import handlers
from vigil.operator.rollouts import Rollouts
from vigil.operator.runtime import OperatorOptions, build_runtime

ACTION = Route("s1", "c1", Traffic(20, 0, 1, 2), http_route="wine")


async def failed_to_route(rollouts: Rollouts) -> None:
    """A routing failure (the HTTPRoute missing), a replay with no result, a pod's read."""
    api = RecordingApi()
    api.route = None  # type: ignore[assignment]
    await rollouts.route(api, GATEWAY_BODY, ACTION)  # type: ignore[arg-type]
    assert rollouts.routing_error("ml", "wine")
    rollouts._golden_pending[("ml", "wine")] = "no address of the candidate"
    rollouts._read[("ml", "wine")] = ("c1", {"wine-c1-a": ("digest", 0.0)})


async def nothing_kept(rollouts: Rollouts) -> None:
    assert rollouts.routing_error("ml", "wine") == ""
    assert rollouts.golden_pending("ml", "wine") == ""
    assert rollouts._read == {}
    # Created again under its name, its first route is no recovery of anything.
    assert await rollouts.route(RecordingApi(), GATEWAY_BODY, ACTION) == []  # type: ignore[arg-type]


async def test_a_model_deleted_in_the_foreground_leaves_nothing_to_one_created_again() -> None:
    runtime = build_runtime(OperatorOptions())
    rollouts = runtime.reconciler.rollouts
    assert rollouts is not None
    await failed_to_route(rollouts)
    body = model_deployment()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    memo = types.SimpleNamespace(runtime=runtime)

    await handlers.model_deployment_seen(type="DELETED", body=kopf.Body(body), memo=memo)
    await runtime.health.stop()

    await nothing_kept(rollouts)


async def test_a_model_a_relisting_no_longer_shows_is_forgotten_by_the_rollouts() -> None:
    from vigil.common.relisting import LISTING_SECONDS

    loop = Loop()
    rollouts = Rollouts(running_in(lambda: {}))
    loop.loop.reconciler.rollouts = rollouts  # type: ignore[attr-defined]
    loop.add(md(), pod("wine-a"))
    del loop.api.objects[("ModelDeployment", "ml", "wine")]  # deleted while the watch was away
    await failed_to_route(rollouts)
    loop.now += datetime.timedelta(seconds=5)
    loop.loop.listing("modeldeployments", "ml", False)
    loop.loop.listing("modeldeployments", "ml", True)
    loop.now += datetime.timedelta(seconds=LISTING_SECONDS)
    loop._source(("direct", "")).windows[("ml", "wine", "r1")] = GOOD

    await loop.cycle()

    assert list(loop.loop.models) == []
    await nothing_kept(rollouts)
