"""The API server restarted mid-rollout, on a local cluster of the test's own.

Restarting the shared cluster's API server would break every other test
and engineer using it, so this test brings up its own control plane
(``LocalCluster(port_base=26700)``, one kwok node, pod IPs 127.167.0.0/24)
with its own workload runner and operator, and takes it down afterwards.

As the canary step starts the API server is stopped (SIGTERM: its graceful
shutdown, as in an upgrade), kept down for ``DOWN_SECONDS`` and started
again with the same flags (``LocalCluster.restart``). Everything keeps
running meanwhile: the pods' processes, live traffic, the operator. The
operator must ride through: its watches break and kopf re-establishes
them, its rollout cycles fail and are retried, and the rollout finishes
promoted exactly once. A scale-up applied afterwards proves the
ModelDeployment watch is alive again (only a watch event starts that
reconcile).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_checks import (
    assert_consistent,
    assert_promoted_once,
    deploy,
    manifest,
    record,
)
from kit.kube import Kube, safe
from kit.operator import OperatorProcess, install_vigil, running_operator
from kit.status import at_step, promoted
from kit.waits import watch_until

from vigil.devcluster.cluster import ClusterError, LocalCluster
from vigil.devcluster.models import train_wine
from vigil.devcluster.runner import workload_runner_process

pytestmark = pytest.mark.faults

PORT_BASE = 26700
NAMESPACE = f"faults-apiserver-{secrets.token_hex(3)}"
DOWN_SECONDS = 5.0
#: The restart comes as the canary starts: its 40 s are counted from there (a step's
#: clock also runs while a slow candidate starts), so the outage falls inside it.
STEPS = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 50, "duration": "40s"}},
]


@pytest.fixture
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A control plane of this test's own on ports 26700-26705, removed afterwards."""
    cluster = LocalCluster(
        state_dir=tmp_path_factory.mktemp("own-cluster") / "cluster",
        port_base=PORT_BASE,
        nodes=1,
        log=lambda line: print(line, flush=True),
    )
    try:
        cluster.up()
    except ClusterError as error:
        cluster.down()
        pytest.fail(f"could not start the test's own cluster: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def own_kube(own_cluster: LocalCluster) -> Kube:
    """The CRD, the operator's ServiceAccount and RBAC, and the test namespace."""
    client = own_cluster.client()
    install_vigil(client)
    client.kubectl("create", "namespace", NAMESPACE)
    return Kube(client, NAMESPACE)


@pytest.fixture
def own_runner(own_kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The workload runner for the test namespace of the own cluster."""
    with workload_runner_process(
        own_kube.cluster.kubeconfig, NAMESPACE, tmp_path_factory.mktemp("own-workloads")
    ) as work_dir:
        yield work_dir


@pytest.fixture
def own_operator(
    own_kube: Kube, own_runner: Path, operator_args: tuple[str, ...], request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    kubeconfig = own_kube.cluster.serviceaccount_kubeconfig("vigil-system", "vigil-operator")
    with running_operator(kubeconfig, [NAMESPACE], operator_args, request=request) as process:
        yield process


def test_apiserver_restarted_mid_rollout_the_operator_rides_through(
    own_cluster: LocalCluster,
    own_kube: Kube,
    own_runner: Path,
    own_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    kube = own_kube
    setup = deploy(kube, tmp_path, STEPS, logs=own_runner)
    try:
        candidate = train_wine(tmp_path / "wine-2", version="2", seed=1)
        kube.apply(manifest(candidate, STEPS))
        watch = watch_until(kube, at_step("canary 50%"), 180, "the canary step")
        revision = watch.last["candidate"]["revision"]
        at_restart = watch.last["candidate"]["stepName"]
        sent_before = setup.traffic.stats.sent
        failed_before = setup.traffic.stats.failed
        started = time.monotonic()
        own_cluster.restart("kube-apiserver", down_seconds=DOWN_SECONDS)
        outage = time.monotonic() - started
        failed_by_restart = setup.traffic.stats.failed
        assert own_operator.process is not None and own_operator.process.poll() is None, (
            "the operator exited while the API server was away"
        )
        watch_until(kube, promoted("2"), 180, "the promotion after the restart", watch)
        promoted_after = time.monotonic() - started
        assert_consistent(kube)
        # Only a watch event starts this reconcile: the ModelDeployment watch is back.
        kube.apply(manifest(candidate, STEPS, replicas=2))
        watch_until(
            kube,
            lambda s: (
                (s.get("stable") or {}).get("revision") == revision
                and s.get("observedGeneration")
                == (kube.get("md", "wine") or {})["metadata"]["generation"]
                and (s.get("stable") or {}).get("readyReplicas") == 2
            ),
            120,
            "the scale-up after the restart",
            watch,
        )
        final = assert_consistent(kube, replicas=2)
        traffic = setup.traffic.stop()
    finally:
        setup.traffic.stop()
    assert_promoted_once(kube, own_operator, final, revision, watch)
    assert traffic.sent > sent_before, "live traffic stopped"
    assert safe(lambda: own_operator.process.poll(), 1) is None  # type: ignore[union-attr]
    record(
        "apiserver-restart",
        step_at_restart=at_restart,
        outage_seconds=round(outage, 1),
        promoted_after_seconds=round(promoted_after, 1),
        reasons=watch.reasons,
        steps=watch.steps,
        traffic={"sent": traffic.sent, "ok": traffic.ok, "failed": traffic.failed},
        # Live requests that failed before, during and after the restart (pod IPs the
        # generator still held while pods moved, see the runner's log).
        failed_phases=[
            failed_before,
            failed_by_restart - failed_before,
            traffic.failed - failed_by_restart,
        ],
    )
