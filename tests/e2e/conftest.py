"""Fixtures for end-to-end tests: a real cluster, a fresh namespace per test.

The cluster is the local control plane (started once per session, or reused
if already running), or the one ``VIGIL_KUBECONFIG`` points at. It is left
running after the session so that the next ``make test`` reuses it;
``make cluster-down`` removes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.incluster import (
    InClusterOperator,
    RealNamespace,
    real_namespace,
    running_incluster_operator,
)
from kit.kube import ROOT, Kube, fresh_namespace
from kit.metrics import running_prometheus
from kit.modeldeployment import ModelStore, model_store
from kit.operator import OperatorProcess, cluster_resolv_conf, install_vigil, running_operator
from kit.workers import GroupsKept, worker_group

from vigil.devcluster import ClusterClient, ClusterError, connect
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.images import ImageArchive, ensure_images
from vigil.devcluster.incluster import running_real_node
from vigil.devcluster.prometheus import LocalPrometheus


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(GroupsKept(), "vigil-groups-kept")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
        group = worker_group(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def cluster() -> ClusterClient:
    try:
        return connect(log=lambda line: print(line, flush=True))
    except ClusterError as error:
        pytest.fail(f"the e2e cluster is not available: {error}", pytrace=False)


@pytest.fixture(scope="session")
def real_node(cluster: ClusterClient) -> LocalCluster:
    """The session's local cluster, which must run its real node."""
    try:
        return running_real_node()
    except ClusterError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def node_images(real_node: LocalCluster) -> dict[str, ImageArchive]:
    """The images built here for model pods (vigil, mlserver-sklearn), in the real node."""
    images = ensure_images(["vigil", "mlserver-sklearn"], real_node.log)
    real_node.node().load_images(list(images.values()))  # one importer at a time
    return images


@pytest.fixture
def store(
    cluster: ClusterClient,
    real_node: LocalCluster,
    node_images: dict[str, ImageArchive],
    namespace: str,
) -> Iterator[ModelStore]:
    """This test's namespace on the real node, and a volume there for its models."""
    server_image = node_images["mlserver-sklearn"].ref
    with model_store(cluster, real_node, namespace, server_image) as models:
        yield models


@pytest.fixture
def namespace(cluster: ClusterClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own, deleted (without waiting) afterwards."""
    with fresh_namespace(cluster, request.node.name) as name:
        yield name


# -- the operator under test (tests/e2e/{operator,health,rollout}) -----------------


@pytest.fixture(scope="session")
def gateway_api_crds(cluster: ClusterClient) -> None:
    """The vendored Gateway API CRDs (hack/gateway-api), installed once (idempotent).

    The operator's RBAC covers HTTPRoutes, and `kubectl auth can-i` only
    answers for resource types the cluster knows: install them before any
    test looks at the operator's rights, whatever the test order.
    """
    files = sorted((ROOT / "hack" / "gateway-api").glob("gateway.networking.k8s.io_*.yaml"))
    if not files:
        pytest.fail("no Gateway API CRDs in hack/gateway-api", pytrace=False)
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in files:
        args += ["-f", str(path)]
    with cluster.setup_lock():
        cluster.kubectl(*args)
        cluster.wait_established(
            "httproutes.gateway.networking.k8s.io",
            "gateways.gateway.networking.k8s.io",
            "gatewayclasses.gateway.networking.k8s.io",
        )


@pytest.fixture(scope="session")
def crd_installed(cluster: ClusterClient) -> None:
    """The ModelDeployment CRD alone (tests that need no operator), installed once."""
    with cluster.setup_lock():
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "modeldeployments.yaml"))
        cluster.wait_established("modeldeployments.vigil.dev")


@pytest.fixture(scope="session")
def vigil_installed(cluster: ClusterClient, gateway_api_crds: None) -> str:
    """The CRD, the operator's namespace, ServiceAccount and RBAC; returns its kubeconfig.

    The operator then runs with that ServiceAccount's token only, so a
    missing RBAC rule fails a test instead of hiding behind admin rights.
    """
    with cluster.setup_lock():
        return install_vigil(cluster)


@pytest.fixture
def kube(cluster: ClusterClient, namespace: str) -> Kube:
    return Kube(cluster, namespace)


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    """Extra `vigil-operator` flags; a folder's conftest overrides this fixture."""
    return ()


@pytest.fixture
def operator(
    vigil_installed: str,
    namespace: str,
    operator_args: tuple[str, ...],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """A real `vigil-operator` process watching this test's namespace.

    For a test whose models run on the real node (it uses ``store``), the
    operator's sidecars are the vigil image built here, and it resolves names
    with the cluster's DNS as it would in a pod (candidates at their Services).
    """
    options: dict[str, Any] = {}
    if "store" in request.fixturenames:
        request.getfixturevalue("store")  # the namespace on the real node first
        images = request.getfixturevalue("node_images")
        options = {
            "sidecar_image": images["vigil"].ref,
            "resolv_conf": cluster_resolv_conf(request.getfixturevalue("real_node"), tmp_path),
        }
    with running_operator(
        vigil_installed, [namespace], operator_args, request=request, **options
    ) as process:
        yield process


@pytest.fixture
def on_real_node(
    cluster: ClusterClient, real_node: LocalCluster, namespace: str
) -> Iterator[RealNamespace]:
    """This test's namespace on the real node: its pods real containers of the images built
    here, under PodSecurity ``restricted``, models on the volume of claim ``models``."""
    with real_namespace(cluster, real_node, namespace) as space:
        yield space


@pytest.fixture
def incluster_operator(
    vigil_installed: str, on_real_node: RealNamespace, request: pytest.FixtureRequest
) -> Iterator[InClusterOperator]:
    """The manifests' operator Deployment (its image, ServiceAccount and only its RBAC) in a
    namespace of its own, watching this test's namespace on the real node."""
    with running_incluster_operator(on_real_node, request) as operator:
        yield operator


@pytest.fixture
def prometheus(cluster: ClusterClient, kube: Kube, tmp_path: Path) -> Iterator[LocalPrometheus]:
    """A real Prometheus discovering this test's pods as the manifests say (1 s scrapes)."""
    with running_prometheus(cluster, tmp_path / "prometheus", kube.namespace) as server:
        yield server


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
