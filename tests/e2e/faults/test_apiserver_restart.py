"""The API server restarted mid-rollout, on a local cluster of the test's own.

Restarting the shared cluster's API server would break every other test
and engineer using it, so this test brings up its own control plane
(``LocalCluster(port_base=26700)``, one kwok node and a real node of its
own: its own network namespace and addresses, 10.167.0.0/16) with its own
model volume and operator, and takes it down afterwards. The model pods are
real containers on that real node; live traffic goes through the Service's
ClusterIP (kube-proxy); the operator, a process with its ServiceAccount's
token, reaches candidates at their Services through the cluster's DNS.

As the canary step starts the API server is stopped (SIGTERM: its graceful
shutdown, as in an upgrade), kept down for ``DOWN_SECONDS`` and started
again with the same flags (``LocalCluster.restart``). Everything keeps
running meanwhile: the containers, live traffic, the operator, and the
node's kubelet, kube-proxy and CoreDNS (they reach the API server through
the node link's forwarder, which dials it anew for each connection). The
kubelet must come back to the API server by itself (its node Lease renewed
after the restart) and the operator must ride through: its watches break and
kopf re-establishes them, its rollout cycles fail and are retried, and the
rollout finishes promoted exactly once. A scale-up applied afterwards proves
the ModelDeployment watch is alive again (only a watch event starts that
reconcile) and the kubelet runs the new pod.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fault_checks import (
    assert_consistent,
    assert_promoted_once,
    deploy,
    manifest,
    record,
)
from kit.kube import ROOT, Kube, safe
from kit.modeldeployment import ModelStore, model_store
from kit.operator import OperatorProcess, cluster_resolv_conf, install_vigil, running_operator
from kit.status import at_step, promoted
from kit.waits import wait_for, watch_until

from vigil.devcluster.cluster import ClusterError, LocalCluster
from vigil.devcluster.images import ImageArchive, ensure_images
from vigil.devcluster.node import NODE_NAME

# A second control plane and real node on fixed ports and addresses (serial: see pyproject).
pytestmark = [pytest.mark.faults, pytest.mark.serial]

PORT_BASE = 26700
NAMESPACE = f"faults-apiserver-{secrets.token_hex(3)}"
DOWN_SECONDS = 5.0
#: The restart comes as the canary starts: its 40 s are counted from there (a step's
#: clock also runs while a slow candidate starts), so the outage falls inside it.
STEPS = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 50, "duration": "40s"}},
]
#: The kubelet renews its node Lease every 10 s (a quarter of its 40 s duration); after
#: the restart it must have reconnected and renewed it within this.
KUBELET_BACK_SECONDS = 60


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A control plane of this test's own on ports 26700-26705 with a real node, removed
    afterwards. Its state is in the checkout's .vigil (pytest's temporary folders let no
    other user through, and the model volume's folder must be readable by the pods)."""
    cluster = LocalCluster(
        state_dir=ROOT / ".vigil" / "apiserver-cluster",
        port_base=PORT_BASE,
        nodes=1,
        log=lambda line: print(line, flush=True),
        real_node=True,
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
def own_images(own_cluster: LocalCluster) -> dict[str, ImageArchive]:
    """The images built here for model pods, in the own cluster's real node."""
    images = ensure_images(["vigil", "mlserver-sklearn"], own_cluster.log)
    own_cluster.node().load_images(list(images.values()))
    return images


@pytest.fixture
def own_kube(own_cluster: LocalCluster) -> Kube:
    """The CRD and the operator's ServiceAccount and RBAC; the test namespace's client."""
    client = own_cluster.client()
    install_vigil(client)
    return Kube(client, NAMESPACE)


@pytest.fixture
def own_store(
    own_cluster: LocalCluster, own_kube: Kube, own_images: dict[str, ImageArchive]
) -> Iterator[ModelStore]:
    """The test namespace on the own real node, and a volume there for its models."""
    server_image = own_images["mlserver-sklearn"].ref
    with model_store(own_kube.cluster, own_cluster, NAMESPACE, server_image) as store:
        yield store


@pytest.fixture
def own_operator(
    own_cluster: LocalCluster,
    own_kube: Kube,
    own_store: ModelStore,
    own_images: dict[str, ImageArchive],
    operator_args: tuple[str, ...],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    kubeconfig = own_kube.cluster.serviceaccount_kubeconfig("vigil-system", "vigil-operator")
    with running_operator(
        kubeconfig,
        [NAMESPACE],
        operator_args,
        request=request,
        sidecar_image=own_images["vigil"].ref,
        resolv_conf=cluster_resolv_conf(own_cluster, tmp_path),
    ) as process:
        yield process


def lease_renewed(kube: Kube) -> datetime | None:
    """When the real node's kubelet last renewed its Lease (None: unread)."""
    result = kube.cluster.kubectl(
        "get", "lease", NODE_NAME, "-n", "kube-node-lease",
        "-o", "jsonpath={.spec.renewTime}", check=False,
    )  # fmt: skip
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return datetime.fromisoformat(result.stdout.strip().replace("Z", "+00:00"))


def test_apiserver_restarted_mid_rollout_the_operator_rides_through(
    own_cluster: LocalCluster,
    own_kube: Kube,
    own_store: ModelStore,
    own_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    kube, store = own_kube, own_store
    setup = deploy(kube, tmp_path, STEPS, store=store)
    try:
        candidate = store.train("wine-2", version="2", seed=1)
        kube.apply(manifest(candidate, STEPS, store))
        watch = watch_until(kube, at_step("canary 50%"), 180, "the canary step")
        revision = watch.last["candidate"]["revision"]
        at_restart = watch.last["candidate"]["stepName"]
        sent_before = setup.traffic.stats.sent
        failed_before = setup.traffic.stats.failed
        started = time.monotonic()
        own_cluster.restart("kube-apiserver", down_seconds=DOWN_SECONDS)
        outage = time.monotonic() - started
        back_at = datetime.now(UTC)
        failed_by_restart = setup.traffic.stats.failed
        assert own_operator.process is not None and own_operator.process.poll() is None, (
            "the operator exited while the API server was away"
        )
        # The kubelet reconnects by itself: its node Lease is renewed once the API server
        # is back.
        wait_for(
            lambda: (renewed := lease_renewed(kube)) is not None and renewed > back_at,
            timeout=KUBELET_BACK_SECONDS,
            what=lambda: (
                f"the kubelet to renew its Lease after {back_at.isoformat()} "
                f"(renewed last: {lease_renewed(kube)})"
            ),
        )
        kubelet_back = time.monotonic() - started
        watch_until(kube, promoted("2"), 180, "the promotion after the restart", watch)
        promoted_after = time.monotonic() - started
        assert_consistent(kube)
        # Only a watch event starts this reconcile: the ModelDeployment watch is back.
        kube.apply(manifest(candidate, STEPS, store, replicas=2))
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
        kubelet_lease_renewed_after_seconds=round(kubelet_back, 1),
        promoted_after_seconds=round(promoted_after, 1),
        reasons=watch.reasons,
        steps=watch.steps,
        traffic={"sent": traffic.sent, "ok": traffic.ok, "failed": traffic.failed},
        # Live requests (through the Service) that failed before, during and after the
        # restart.
        failed_phases=[
            failed_before,
            failed_by_restart - failed_before,
            traffic.failed - failed_by_restart,
        ],
    )
